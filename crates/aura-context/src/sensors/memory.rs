//! The memory sensor: total/used/available memory and swap (`/proc/meminfo`), pressure
//! (`/proc/pressure/memory` when present), the top N processes by RSS, leak detection by the
//! slope and r² of a linear fit over a window (warm-up skipped), and OOM risk.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use toml::{Table, Value};

use super::procfs::{ProcFd, field_u64, int, proc_root, round2};
use super::procs::{ProcessTable, SWEEP_INTERVAL};
use super::{Sample, Sensor, SensorError};
use crate::aav::Health;

/// Least-squares fit of `points` (x, y): `(slope, r²)`. `None` for fewer than 3 points or no
/// spread in x. A flat series (no variance in y) has r² = 0.
#[must_use]
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in points {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
        syy += (y - my) * (y - my);
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    Some((slope, r2))
}

/// Leak detection over a sliding window of (seconds, bytes) samples.
#[derive(Debug, Clone)]
pub struct LeakDetector {
    /// Samples ignored at the start (a process warming up its caches is not leaking).
    pub warmup_samples: usize,
    /// Window length in samples.
    pub window: usize,
    /// Least growth that counts, bytes per second.
    pub min_slope_bytes_per_second: f64,
    /// Least r² that counts (how straight the growth is).
    pub min_r2: f64,
}

impl Default for LeakDetector {
    fn default() -> Self {
        LeakDetector {
            warmup_samples: 5,
            window: 30,
            min_slope_bytes_per_second: 64.0 * 1024.0,
            min_r2: 0.8,
        }
    }
}

/// What the leak detector concluded for one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakVerdict {
    /// Growth, bytes per second.
    pub slope: f64,
    /// Goodness of the linear fit.
    pub r2: f64,
    /// Whether it looks like a leak.
    pub suspected: bool,
}

/// One tracked series.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    seen: usize,
    points: VecDeque<(f64, f64)>,
    scratch: Vec<(f64, f64)>,
}

impl LeakDetector {
    /// Adds a point to `series` and judges it (`None` while warming up or too few points).
    pub(crate) fn observe(&self, series: &mut Series, t: f64, bytes: f64) -> Option<LeakVerdict> {
        series.seen += 1;
        if series.seen <= self.warmup_samples {
            return None;
        }
        series.points.push_back((t, bytes));
        while series.points.len() > self.window.max(3) {
            series.points.pop_front();
        }
        self.verdict(series)
    }

    /// Judges `series` as it is, adding no point (`None` while too few points).
    pub(crate) fn verdict(&self, series: &mut Series) -> Option<LeakVerdict> {
        if series.seen <= self.warmup_samples || series.points.len() < self.window.max(3) / 2 {
            return None;
        }
        series.scratch.clear();
        series.scratch.extend(series.points.iter().copied());
        let (slope, r2) = linear_fit(&series.scratch)?;
        Some(LeakVerdict {
            slope,
            r2,
            suspected: slope >= self.min_slope_bytes_per_second && r2 >= self.min_r2,
        })
    }

    /// Judges a whole series at once (used by tests and the bench).
    #[must_use]
    pub fn judge(&self, points: &[(f64, f64)]) -> Option<LeakVerdict> {
        let mut s = Series::default();
        let mut last = None;
        for (t, y) in points {
            last = self.observe(&mut s, *t, *y).or(last);
        }
        last
    }
}

/// Reads memory, swap, top processes by RSS; detects leaks and OOM risk.
#[derive(Debug)]
pub struct MemorySensor {
    top: usize,
    leak: LeakDetector,
    meminfo: ProcFd,
    pressure: ProcFd,
    table: ProcessTable,
    started: Instant,
    system: Series,
    procs: HashMap<u32, (String, Series)>,
    last_sweep: Option<Instant>,
}

/// Most processes tracked for leaks at once (the biggest by RSS).
const TRACKED: usize = 16;

impl MemorySensor {
    /// A memory sensor reporting the `top` largest processes and detecting leaks with `leak`.
    #[must_use]
    pub fn new(top: usize, leak: LeakDetector) -> MemorySensor {
        MemorySensor::sharing(top, leak, ProcessTable::new())
    }

    /// A memory sensor reading processes from a table it shares with other sensors.
    #[must_use]
    pub fn sharing(top: usize, leak: LeakDetector, table: ProcessTable) -> MemorySensor {
        let root = proc_root();
        MemorySensor {
            top,
            leak,
            meminfo: ProcFd::new(root.join("meminfo")),
            pressure: ProcFd::new(root.join("pressure/memory")),
            table,
            started: Instant::now(),
            system: Series::default(),
            procs: HashMap::new(),
            last_sweep: None,
        }
    }
}

#[async_trait::async_trait]
impl Sensor for MemorySensor {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn sample(&mut self) -> Result<Sample, SensorError> {
        let text = self.meminfo.text()?;
        let kib = |k: &str| field_u64(text, k).map(|v| v * 1024);
        let parse_err = |k: &str| SensorError::Parse {
            path: "/proc/meminfo".into(),
            message: format!("no `{k}`"),
        };
        let total = kib("MemTotal").ok_or_else(|| parse_err("MemTotal"))?;
        let available = kib("MemAvailable")
            .or_else(|| Some(kib("MemFree")? + kib("Cached")? + kib("Buffers")?))
            .ok_or_else(|| parse_err("MemAvailable"))?;
        let swap_total = kib("SwapTotal").unwrap_or(0);
        let swap_free = kib("SwapFree").unwrap_or(0);
        let cached = kib("Cached").unwrap_or(0);
        let used = total.saturating_sub(available);
        let used_percent = if total == 0 {
            0.0
        } else {
            round2(used as f64 * 100.0 / total as f64)
        };
        let mut s = Table::new();
        s.insert("total_bytes".into(), Value::Integer(int(total)));
        s.insert("used_bytes".into(), Value::Integer(int(used)));
        s.insert("available_bytes".into(), Value::Integer(int(available)));
        s.insert("cached_bytes".into(), Value::Integer(int(cached)));
        s.insert("used_percent".into(), Value::Float(used_percent));
        s.insert("swap_total_bytes".into(), Value::Integer(int(swap_total)));
        s.insert(
            "swap_used_bytes".into(),
            Value::Integer(int(swap_total.saturating_sub(swap_free))),
        );
        s.insert(
            "swap_used_percent".into(),
            Value::Float(if swap_total == 0 {
                0.0
            } else {
                round2(swap_total.saturating_sub(swap_free) as f64 * 100.0 / swap_total as f64)
            }),
        );
        if let Ok(p) = self.pressure.read() {
            // "some avg10=0.00 avg60=0.00 avg300=0.00 total=0"
            if let Some(avg) = p
                .lines()
                .find(|l| l.starts_with("some"))
                .and_then(|l| l.split_whitespace().find_map(|t| t.strip_prefix("avg10=")))
                .and_then(|v| v.parse::<f64>().ok())
            {
                s.insert("pressure_some_avg10".into(), Value::Float(avg));
            }
        }
        let t = self.started.elapsed().as_secs_f64();
        let system = self.leak.observe(&mut self.system, t, used as f64);
        // The process walk is refreshed every `SWEEP_INTERVAL` (shared with the compute sensor).
        let table = self.table.clone();
        let procs = table
            .fresh(SWEEP_INTERVAL)
            .map_err(SensorError::read(&proc_root()))?;
        let top = procs.top_by(self.top.max(TRACKED), |p| p.rss_bytes as f64);
        // Each sweep is one point of the per-process series (a sweep reused is not a new point).
        let new_sweep = procs.swept_at() != self.last_sweep;
        self.last_sweep = procs.swept_at();
        let mut suspects = Vec::new();
        let mut keep = HashMap::with_capacity(TRACKED);
        for p in top.iter().take(TRACKED) {
            let (name, mut series) = self
                .procs
                .remove(&p.pid)
                .filter(|(n, _)| *n == p.name)
                .unwrap_or_else(|| (p.name.clone(), Series::default()));
            let verdict = if new_sweep {
                self.leak.observe(&mut series, t, p.rss_bytes as f64)
            } else {
                self.leak.verdict(&mut series)
            };
            if let Some(v) = verdict
                && v.suspected
            {
                let mut row = Table::new();
                row.insert("pid".into(), Value::Integer(i64::from(p.pid)));
                row.insert("name".into(), Value::String(name.clone()));
                row.insert(
                    "slope_bytes_per_second".into(),
                    Value::Float(round2(v.slope)),
                );
                row.insert("r2".into(), Value::Float(round2(v.r2)));
                suspects.push(Value::Table(row));
            }
            keep.insert(p.pid, (name, series));
        }
        self.procs = keep;
        let rows: Vec<Value> = top
            .iter()
            .take(self.top)
            .map(|p| {
                let mut row = Table::new();
                row.insert("pid".into(), Value::Integer(i64::from(p.pid)));
                row.insert("name".into(), Value::String(p.name.clone()));
                row.insert("rss_bytes".into(), Value::Integer(int(p.rss_bytes)));
                Value::Table(row)
            })
            .collect();
        drop(procs);
        s.insert("top_processes".into(), Value::Array(rows));
        let mut leak = Table::new();
        let growth = system.map(|v| v.slope).unwrap_or(0.0);
        leak.insert(
            "suspected".into(),
            Value::Boolean(system.is_some_and(|v| v.suspected) || !suspects.is_empty()),
        );
        leak.insert(
            "system_slope_bytes_per_second".into(),
            Value::Float(round2(growth)),
        );
        leak.insert(
            "system_r2".into(),
            Value::Float(round2(system.map(|v| v.r2).unwrap_or(0.0))),
        );
        leak.insert("processes".into(), Value::Array(suspects));
        s.insert("leak".into(), Value::Table(leak));
        let free_ratio = if total == 0 {
            1.0
        } else {
            available as f64 / total as f64
        };
        let seconds_to_exhaustion =
            if growth > 0.0 && system.is_some_and(|v| v.r2 >= self.leak.min_r2) {
                Some(available as f64 / growth)
            } else {
                None
            };
        let risk = if free_ratio < 0.05 || seconds_to_exhaustion.is_some_and(|s| s < 600.0) {
            "high"
        } else if free_ratio < 0.10 || seconds_to_exhaustion.is_some_and(|s| s < 3600.0) {
            "medium"
        } else {
            "low"
        };
        s.insert("oom_risk".into(), Value::String(risk.into()));
        if let Some(secs) = seconds_to_exhaustion {
            s.insert("seconds_to_exhaustion".into(), Value::Integer(secs as i64));
        }
        let health = match risk {
            "high" if free_ratio < 0.03 => Health::Unhealthy,
            "high" | "medium" => Health::Degraded,
            _ if used_percent >= 90.0 => Health::Degraded,
            _ => Health::Healthy,
        };
        Ok(Sample { section: s, health })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_of_a_line_and_of_noise() {
        let line: Vec<_> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        let (slope, r2) = linear_fit(&line).unwrap();
        assert!((slope - 3.0).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9);
        let flat: Vec<_> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(linear_fit(&flat), Some((0.0, 0.0)));
        assert_eq!(linear_fit(&line[..2]), None);
    }

    #[test]
    fn a_steady_climb_is_a_leak_and_a_sawtooth_is_not() {
        let d = LeakDetector {
            warmup_samples: 5,
            window: 20,
            min_slope_bytes_per_second: 1000.0,
            min_r2: 0.8,
        };
        let leak: Vec<_> = (0..40)
            .map(|i| (i as f64, 1e8 + 5000.0 * i as f64))
            .collect();
        assert!(d.judge(&leak).unwrap().suspected);
        let saw: Vec<_> = (0..40)
            .map(|i| (i as f64, 1e8 + if i % 4 < 2 { 0.0 } else { 4e6 }))
            .collect();
        assert!(!d.judge(&saw).unwrap().suspected);
        // Warm-up growth only (first 5 samples), flat afterwards: not a leak.
        let warm: Vec<_> = (0..40)
            .map(|i| (i as f64, 1e8 + 1e7 * (i.min(5) as f64)))
            .collect();
        assert!(!d.judge(&warm).unwrap().suspected);
    }

    #[tokio::test]
    async fn samples_this_machine() {
        let mut m = MemorySensor::new(3, LeakDetector::default());
        let s = m.sample().await.unwrap().section;
        assert!(s["total_bytes"].as_integer().unwrap() > 0);
        let p = s["used_percent"].as_float().unwrap();
        assert!((0.0..=100.0).contains(&p));
        assert_eq!(s["top_processes"].as_array().unwrap().len(), 3);
        assert!(s["leak"]["suspected"].is_bool());
    }
}
