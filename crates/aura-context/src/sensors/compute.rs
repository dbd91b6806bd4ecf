//! The compute sensor: CPU total and per core (from `/proc/stat` deltas), load 1/5/15, context
//! switches and forks per second, running/blocked and total processes, and the top N processes
//! by CPU.

use std::time::Instant;

use toml::{Table, Value};

use super::procfs::{ProcFd, int, numbers, proc_root, round2};
use super::procs::{ProcessTable, SWEEP_INTERVAL};
use super::{Sample, Sensor, SensorError};
use crate::aav::Health;

/// Reads CPU, load and processes.
#[derive(Debug)]
pub struct ComputeSensor {
    top: usize,
    stat: ProcFd,
    loadavg: ProcFd,
    previous: Option<CpuTimes>,
    table: ProcessTable,
    last: Option<Instant>,
}

#[derive(Debug, Clone, Default)]
struct CpuTimes {
    total: (u64, u64),
    cores: Vec<(u64, u64)>,
    ctxt: u64,
    forks: u64,
}

impl ComputeSensor {
    /// A compute sensor reporting the `top` busiest processes.
    #[must_use]
    pub fn new(top: usize) -> ComputeSensor {
        ComputeSensor::sharing(top, ProcessTable::new())
    }

    /// A compute sensor reading processes from a table it shares with other sensors.
    #[must_use]
    pub fn sharing(top: usize, table: ProcessTable) -> ComputeSensor {
        let root = proc_root();
        ComputeSensor {
            top,
            stat: ProcFd::new(root.join("stat")),
            loadavg: ProcFd::new(root.join("loadavg")),
            previous: None,
            table,
            last: None,
        }
    }

    fn read_times(&mut self) -> Result<(CpuTimes, u64, u64), SensorError> {
        let text = self.stat.text()?;
        let mut t = CpuTimes::default();
        let (mut running, mut blocked) = (0, 0);
        for line in text.lines() {
            if line.starts_with("cpu") {
                let v: Vec<u64> = numbers(line).collect();
                // user nice system idle iowait irq softirq steal (guest is inside user)
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                let busy: u64 = v.iter().take(8).sum::<u64>() - idle;
                if line.starts_with("cpu ") {
                    t.total = (busy, idle);
                } else {
                    t.cores.push((busy, idle));
                }
            } else if let Some(rest) = line.strip_prefix("ctxt ") {
                t.ctxt = rest.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("processes ") {
                t.forks = rest.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("procs_running ") {
                running = rest.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("procs_blocked ") {
                blocked = rest.trim().parse().unwrap_or(0);
            }
        }
        if t.cores.is_empty() {
            return Err(SensorError::Parse {
                path: self.stat.path().display().to_string(),
                message: "no `cpu` lines".into(),
            });
        }
        Ok((t, running, blocked))
    }
}

fn percent(now: (u64, u64), before: (u64, u64)) -> f64 {
    let busy = now.0.saturating_sub(before.0) as f64;
    let idle = now.1.saturating_sub(before.1) as f64;
    if busy + idle == 0.0 {
        0.0
    } else {
        round2(busy * 100.0 / (busy + idle))
    }
}

#[async_trait::async_trait]
impl Sensor for ComputeSensor {
    fn name(&self) -> &'static str {
        "compute"
    }

    async fn sample(&mut self) -> Result<Sample, SensorError> {
        let now = Instant::now();
        let elapsed = self
            .last
            .map(|l| now.duration_since(l).as_secs_f64())
            .unwrap_or(0.0);
        self.last = Some(now);
        let (times, running, blocked) = self.read_times()?;
        let prev = self.previous.replace(times.clone()).unwrap_or_default();
        let first = prev.cores.is_empty();
        let mut s = Table::new();
        let cpu = if first {
            0.0
        } else {
            percent(times.total, prev.total)
        };
        s.insert("cpu_percent".into(), Value::Float(cpu));
        s.insert("cores".into(), Value::Integer(times.cores.len() as i64));
        let per_core: Vec<Value> = times
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let before = prev.cores.get(i).copied().unwrap_or(*c);
                Value::Float(percent(*c, before))
            })
            .collect();
        s.insert("per_core_percent".into(), Value::Array(per_core));
        let text = self.loadavg.text()?;
        let mut loads = text
            .split_whitespace()
            .map(|t| t.parse::<f64>().unwrap_or(0.0));
        let (l1, l5, l15) = (
            loads.next().unwrap_or(0.0),
            loads.next().unwrap_or(0.0),
            loads.next().unwrap_or(0.0),
        );
        s.insert("load_1".into(), Value::Float(l1));
        s.insert("load_5".into(), Value::Float(l5));
        s.insert("load_15".into(), Value::Float(l15));
        let per_sec = |now: u64, before: u64| {
            if first || elapsed <= 0.0 {
                0.0
            } else {
                round2(now.saturating_sub(before) as f64 / elapsed)
            }
        };
        s.insert(
            "context_switches_per_second".into(),
            Value::Float(per_sec(times.ctxt, prev.ctxt)),
        );
        s.insert(
            "forks_per_second".into(),
            Value::Float(per_sec(times.forks, prev.forks)),
        );
        s.insert("procs_running".into(), Value::Integer(int(running)));
        s.insert("procs_blocked".into(), Value::Integer(int(blocked)));
        let root = proc_root();
        // The process walk is refreshed every `SWEEP_INTERVAL` (shared with the memory sensor).
        let procs = self
            .table
            .fresh(SWEEP_INTERVAL)
            .map_err(SensorError::read(&root))?;
        s.insert(
            "process_count".into(),
            Value::Integer(procs.procs().len() as i64),
        );
        let threads: u64 = procs.procs().iter().map(|p| p.threads).sum();
        s.insert("thread_count".into(), Value::Integer(int(threads)));
        let top: Vec<Value> = procs
            .top_by(self.top, |p| p.cpu_percent)
            .into_iter()
            .map(|p| {
                let mut t = Table::new();
                t.insert("pid".into(), Value::Integer(i64::from(p.pid)));
                t.insert("name".into(), Value::String(p.name.clone()));
                t.insert("cpu_percent".into(), Value::Float(round2(p.cpu_percent)));
                Value::Table(t)
            })
            .collect();
        drop(procs);
        s.insert("top_processes".into(), Value::Array(top));
        let cores = times.cores.len().max(1) as f64;
        let health = if cpu >= 95.0 || l5 / cores >= 4.0 {
            Health::Degraded
        } else {
            Health::Healthy
        };
        Ok(Sample { section: s, health })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn samples_this_machine() {
        let mut c = ComputeSensor::new(3);
        c.sample().await.unwrap();
        let s = c.sample().await.unwrap().section;
        let cpu = s["cpu_percent"].as_float().unwrap();
        assert!((0.0..=100.0).contains(&cpu));
        assert!(s["cores"].as_integer().unwrap() >= 1);
        assert!(s["process_count"].as_integer().unwrap() >= 1);
        assert!(s["top_processes"].as_array().unwrap().len() <= 3);
        assert!(s["load_1"].as_float().unwrap() >= 0.0);
    }
}
