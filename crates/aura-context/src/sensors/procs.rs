//! One sweep of `/proc/<pid>/stat` for every process, with reused buffers: CPU time, RSS,
//! threads and name per process, from which the compute and memory sensors take their top N
//! (never one series per PID). The compute and memory sensors share one [`ProcessTable`], so a
//! tick sweeps `/proc` once, not once per sensor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::procfs::{USER_HZ, pread_all, proc_root};

/// How old a sweep may be before a sensor asks for a new one. The process walk (an open, read
/// and close of `/proc/<pid>/stat` per process) is most of a sample's cost, so at a 1 s sampling
/// interval the top-N tables, counts and per-process CPU percent (measured over the time between
/// two sweeps) are refreshed every 5 s while CPU, load, memory, disks and network move every tick.
pub(crate) const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Most `/proc/<pid>/stat` descriptors kept open between sweeps; processes beyond it are
/// opened and closed each sweep. Never more than a quarter of the process's soft limit of open
/// files (the sweeper also runs inside `aura up`, whose sockets need them): 256 at the common 1024.
const KEPT_OPEN: usize = 512;

/// [`KEPT_OPEN`], lowered to a quarter of the soft `RLIMIT_NOFILE` read from `/proc/self/limits`
/// (none kept when it cannot be read).
fn kept_open_cap() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            let value = line
                .strip_prefix("Max open files")?
                .split_whitespace()
                .next()?;
            Some(if value == "unlimited" {
                usize::MAX
            } else {
                value.parse::<usize>().ok()?
            })
        })
        .unwrap_or(0);
    KEPT_OPEN.min(soft / 4)
}

/// One process as of the last sweep.
#[derive(Debug, Clone, Default)]
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

/// The process table shared by the sensors of one pipeline: swept at most once per `max_age`
/// whoever asks first (cheap to clone).
#[derive(Debug, Clone)]
pub struct ProcessTable {
    inner: Arc<Mutex<Sweeper>>,
}

impl Default for ProcessTable {
    fn default() -> ProcessTable {
        ProcessTable::new()
    }
}

impl ProcessTable {
    /// An empty table (nothing swept yet).
    #[must_use]
    pub fn new() -> ProcessTable {
        ProcessTable {
            inner: Arc::new(Mutex::new(Sweeper::new())),
        }
    }

    /// The table, swept again first when the last sweep is older than `max_age`.
    pub(crate) fn fresh(&self, max_age: Duration) -> std::io::Result<MutexGuard<'_, Sweeper>> {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            // A sensor that panicked mid-sweep leaves a table that is only stale, never unsafe.
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.last.is_none_or(|t| t.elapsed() >= max_age) {
            guard.sweep()?;
        }
        Ok(guard)
    }
}

/// A reusable sweeper.
#[derive(Debug)]
pub(crate) struct Sweeper {
    /// `/proc/<pid>/stat` kept open: a second sweep reads it with one `pread`, where an open,
    /// read and close cost 3 syscalls and a path walk. A descriptor belongs to one process: once
    /// that process has exited it reads as an error (ESRCH) or empty, even if its pid is reused.
    open: HashMap<u32, std::fs::File>,
    /// How many may be kept open ([`kept_open_cap`]).
    open_cap: usize,
    buf: Vec<u8>,
    path: PathBuf,
    previous: HashMap<u32, u64>,
    current: HashMap<u32, u64>,
    page_size: u64,
    last: Option<Instant>,
    /// Valid entries are `procs[..len]`; the slots past it keep their name buffers for reuse.
    procs: Vec<Proc>,
    len: usize,
}

impl Sweeper {
    pub(crate) fn new() -> Sweeper {
        Sweeper {
            open: HashMap::new(),
            open_cap: kept_open_cap(),
            buf: Vec::new(),
            path: PathBuf::with_capacity(32),
            previous: HashMap::new(),
            current: HashMap::new(),
            page_size: 4096,
            last: None,
            procs: Vec::new(),
            len: 0,
        }
    }

    /// When the last sweep was taken.
    pub(crate) fn swept_at(&self) -> Option<Instant> {
        self.last
    }

    /// The processes of the last sweep.
    pub(crate) fn procs(&self) -> &[Proc] {
        &self.procs[..self.len]
    }

    /// Sweeps every process; CPU percent is measured against the previous sweep.
    pub(crate) fn sweep(&mut self) -> std::io::Result<()> {
        let now = Instant::now();
        let elapsed_ticks = self
            .last
            .map_or(0.0, |l| now.duration_since(l).as_secs_f64() * USER_HZ);
        self.last = Some(now);
        let root = proc_root();
        self.len = 0;
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        for entry in std::fs::read_dir(&root)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let kept = match self.open.get(&pid) {
                Some(f) => match pread_all(f, &mut self.buf) {
                    Ok(n) if n > 0 => Some(n),
                    _ => None,
                },
                None => None,
            };
            let text = match kept {
                Some(n) => std::str::from_utf8(&self.buf[..n]).unwrap_or_default(),
                None => {
                    self.open.remove(&pid);
                    self.path.clear();
                    self.path.push(&root);
                    self.path.push(&name);
                    self.path.push("stat");
                    // A process may exit between readdir and open: skip it.
                    let Ok(f) = std::fs::File::open(&self.path) else {
                        continue;
                    };
                    let Ok(n) = pread_all(&f, &mut self.buf) else {
                        continue;
                    };
                    if self.open.len() < self.open_cap {
                        self.open.insert(pid, f);
                    }
                    std::str::from_utf8(&self.buf[..n]).unwrap_or_default()
                }
            };
            if self.len == self.procs.len() {
                self.procs.push(Proc::default());
            }
            let slot = &mut self.procs[self.len];
            if !parse_stat_into(pid, text, self.page_size, slot) {
                continue;
            }
            slot.cpu_percent = match self.previous.get(&pid) {
                Some(prev) if elapsed_ticks > 0.0 => {
                    (slot.cpu_ticks.saturating_sub(*prev)) as f64 * 100.0 / elapsed_ticks
                }
                _ => 0.0,
            };
            self.current.insert(pid, slot.cpu_ticks);
            self.len += 1;
        }
        // Descriptors of processes gone since the last sweep are closed.
        let current = &self.current;
        self.open.retain(|pid, _| current.contains_key(pid));
        // Keep a few spare slots, not the high-water mark of a fork storm.
        self.procs.truncate(self.len + 64);
        Ok(())
    }

    /// The `n` processes with the most of `key`, largest first.
    pub(crate) fn top_by(&self, n: usize, key: impl Fn(&Proc) -> f64) -> Vec<&Proc> {
        let mut v: Vec<&Proc> = self.procs().iter().collect();
        if n < v.len() {
            v.select_nth_unstable_by(n, |a, b| key(b).total_cmp(&key(a)));
            v.truncate(n);
        }
        v.sort_by(|a, b| key(b).total_cmp(&key(a)));
        v
    }
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid …` — `comm` may hold spaces and parentheses,
/// so fields are counted after the last `)`.
#[cfg(test)]
pub(crate) fn parse_stat(pid: u32, text: &str, page_size: u64) -> Option<Proc> {
    let mut p = Proc::default();
    parse_stat_into(pid, text, page_size, &mut p).then_some(p)
}

/// [`parse_stat`] into an existing slot, reusing its name buffer; `false` when malformed.
pub(crate) fn parse_stat_into(pid: u32, text: &str, page_size: u64, slot: &mut Proc) -> bool {
    let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
        return false;
    };
    let (Some(name), Some(rest)) = (text.get(open + 1..close), text.get(close + 2..)) else {
        return false;
    };
    // Field 3 (state) is the first token after the name; field N is token N - 3.
    let mut tokens = rest.split_ascii_whitespace();
    let mut field = |skip: usize| tokens.nth(skip).and_then(|t| t.parse::<u64>().ok());
    let (Some(utime), Some(stime), Some(threads), Some(rss)) =
        (field(11), field(0), field(4), field(3))
    else {
        return false;
    };
    slot.pid = pid;
    slot.name.clear();
    slot.name.push_str(name);
    slot.cpu_ticks = utime + stime;
    slot.threads = threads;
    slot.rss_bytes = rss * page_size;
    slot.cpu_percent = 0.0;
    true
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
        s.sweep().unwrap();
        s.sweep().unwrap();
        let me = std::process::id();
        let p = s.procs().iter().find(|p| p.pid == me).unwrap();
        assert!(p.rss_bytes > 0);
        assert!(s.top_by(3, |p| p.rss_bytes as f64).len() <= 3);
    }

    #[test]
    fn kept_descriptors_follow_processes_that_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut s = Sweeper::new();
        assert!(s.open_cap > 0 && s.open_cap <= KEPT_OPEN);
        s.sweep().unwrap();
        assert!(s.open.contains_key(&pid) || s.open.len() == s.open_cap);
        s.sweep().unwrap();
        let p = s.procs().iter().find(|p| p.pid == pid).unwrap();
        assert_eq!(p.name, "sleep");
        child.kill().unwrap();
        child.wait().unwrap();
        s.sweep().unwrap();
        assert!(s.procs().iter().all(|p| p.pid != pid));
        assert!(!s.open.contains_key(&pid));
    }
}
