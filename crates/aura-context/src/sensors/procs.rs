//! One sweep of `/proc/<pid>/stat` for every process, with reused buffers: CPU time, RSS,
//! threads and name per process, from which the compute and memory sensors take their top N
//! (never one series per PID).

use std::collections::HashMap;
use std::path::PathBuf;

use super::procfs::{ProcFile, proc_root};

/// One process as of the last sweep.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub pid: u32,
    pub name: String,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    pub threads: u64,
    /// CPU percent of one core since the previous sweep (0 on the first).
    pub cpu_percent: f64,
}

/// A reusable sweeper.
#[derive(Debug)]
pub(crate) struct Sweeper {
    file: ProcFile,
    path: PathBuf,
    previous: HashMap<u32, u64>,
    current: HashMap<u32, u64>,
    page_size: u64,
    pub procs: Vec<Proc>,
}

impl Sweeper {
    pub(crate) fn new() -> Sweeper {
        Sweeper {
            file: ProcFile::default(),
            path: PathBuf::with_capacity(32),
            previous: HashMap::new(),
            current: HashMap::new(),
            page_size: 4096,
            procs: Vec::new(),
        }
    }

    /// Sweeps every process; `elapsed_ticks` is the wall time since the previous sweep in clock
    /// ticks (for CPU percent).
    pub(crate) fn sweep(&mut self, elapsed_ticks: f64) -> std::io::Result<()> {
        let root = proc_root();
        self.procs.clear();
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        for entry in std::fs::read_dir(&root)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            self.path.clear();
            self.path.push(&root);
            self.path.push(&name);
            self.path.push("stat");
            // A process may exit between readdir and open: skip it.
            let Ok(text) = self.file.read(&self.path) else {
                continue;
            };
            let Some(p) = parse_stat(pid, text, self.page_size) else {
                continue;
            };
            let cpu_percent = match self.previous.get(&pid) {
                Some(prev) if elapsed_ticks > 0.0 => {
                    (p.cpu_ticks.saturating_sub(*prev)) as f64 * 100.0 / elapsed_ticks
                }
                _ => 0.0,
            };
            self.current.insert(pid, p.cpu_ticks);
            self.procs.push(Proc { cpu_percent, ..p });
        }
        Ok(())
    }

    /// The `n` processes with the most of `key`, largest first.
    pub(crate) fn top_by(&self, n: usize, key: impl Fn(&Proc) -> f64) -> Vec<&Proc> {
        let mut v: Vec<&Proc> = self.procs.iter().collect();
        v.sort_by(|a, b| key(b).total_cmp(&key(a)));
        v.truncate(n);
        v
    }
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid …` — `comm` may hold spaces and parentheses,
/// so fields are counted after the last `)`.
pub(crate) fn parse_stat(pid: u32, text: &str, page_size: u64) -> Option<Proc> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).and_then(|t| t.parse::<u64>().ok());
    Some(Proc {
        pid,
        name,
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        rss_bytes: field(24)? * page_size,
        cpu_percent: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_with_spaces_and_parens() {
        let text = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100 1000000 300 18446744073709551615";
        let p = parse_stat(42, text, 4096).unwrap();
        assert_eq!(p.name, "my (odd) name");
        assert_eq!(p.cpu_ticks, 300);
        assert_eq!(p.threads, 7);
        assert_eq!(p.rss_bytes, 300 * 4096);
    }

    #[test]
    fn sweeping_this_machine_finds_this_process() {
        let mut s = Sweeper::new();
        s.sweep(0.0).unwrap();
        s.sweep(100.0).unwrap();
        let me = std::process::id();
        let p = s.procs.iter().find(|p| p.pid == me).unwrap();
        assert!(p.rss_bytes > 0);
        assert!(s.top_by(3, |p| p.rss_bytes as f64).len() <= 3);
    }
}
