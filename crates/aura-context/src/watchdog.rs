//! The self-watchdog: measures the sensor process's own RSS and CPU (`/proc/self/stat`) and keeps
//! them under configured caps by slowing sampling down; says so when it cannot.

use std::path::PathBuf;
use std::time::Instant;

use crate::sensors::procfs::{ProcFile, USER_HZ, proc_root, round2};

/// The caps.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogOptions {
    /// Most resident memory, in bytes.
    pub max_rss_bytes: u64,
    /// Most CPU, in percent of one core, averaged between checks.
    pub max_cpu_percent: f64,
    /// Largest slowdown factor applied to sampling.
    pub max_slowdown: f64,
}

impl Default for WatchdogOptions {
    fn default() -> Self {
        WatchdogOptions {
            max_rss_bytes: 64 << 20,
            max_cpu_percent: 5.0,
            max_slowdown: 16.0,
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WatchdogReport {
    /// Resident memory now, bytes.
    pub rss_bytes: u64,
    /// CPU since the previous check, percent of one core.
    pub cpu_percent: f64,
    /// The slowdown factor now applied to sampling.
    pub slowdown: f64,
    /// `ok`, `throttled` (slowed down, within caps) or `over_cap` (cannot get under a cap).
    pub state: String,
    /// Why, when not `ok`.
    pub reason: Option<String>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Watchdog {
    options: WatchdogOptions,
    file: ProcFile,
    path: PathBuf,
    last: Option<(Instant, u64)>,
    slowdown: f64,
}

impl Watchdog {
    /// A watchdog with `options`.
    #[must_use]
    pub fn new(options: WatchdogOptions) -> Watchdog {
        Watchdog {
            options,
            file: ProcFile::default(),
            path: proc_root().join("self/stat"),
            last: None,
            slowdown: 1.0,
        }
    }

    /// Measures and adjusts.
    pub fn check(&mut self) -> std::io::Result<WatchdogReport> {
        let now = Instant::now();
        let text = self.file.read(&self.path)?;
        let p = crate::sensors::procfs_self_stat(text)
            .ok_or_else(|| std::io::Error::other("unexpected /proc/self/stat"))?;
        let (ticks, rss) = p;
        let cpu = match self.last {
            Some((t, before)) => {
                let secs = now.duration_since(t).as_secs_f64();
                if secs > 0.0 {
                    ticks.saturating_sub(before) as f64 * 100.0 / USER_HZ / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        Ok(self.judge(rss, cpu))
    }

    /// Adjusts to a measurement (separate from [`Watchdog::check`] for tests).
    pub fn judge(&mut self, rss_bytes: u64, cpu_percent: f64) -> WatchdogReport {
        let o = &self.options;
        let over_cpu = cpu_percent > o.max_cpu_percent;
        let over_rss = rss_bytes > o.max_rss_bytes;
        if over_cpu {
            self.slowdown = (self.slowdown * 2.0).min(o.max_slowdown);
        } else if cpu_percent < o.max_cpu_percent / 2.0 {
            self.slowdown = (self.slowdown / 2.0).max(1.0);
        }
        let (state, reason) = if over_rss {
            (
                "over_cap",
                Some(format!(
                    "rss {} MB over the {} MB cap",
                    rss_bytes >> 20,
                    o.max_rss_bytes >> 20
                )),
            )
        } else if over_cpu && self.slowdown >= o.max_slowdown {
            (
                "over_cap",
                Some(format!(
                    "cpu {:.1}% over the {}% cap at the slowest sampling",
                    cpu_percent, o.max_cpu_percent
                )),
            )
        } else if self.slowdown > 1.0 {
            (
                "throttled",
                Some(format!(
                    "sampling slowed {}× to stay under the CPU cap",
                    self.slowdown
                )),
            )
        } else {
            ("ok", None)
        };
        WatchdogReport {
            rss_bytes,
            cpu_percent: round2(cpu_percent),
            slowdown: self.slowdown,
            state: state.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_down_then_gives_up_loudly_then_recovers() {
        let mut w = Watchdog::new(WatchdogOptions {
            max_rss_bytes: 8 << 20,
            max_cpu_percent: 5.0,
            max_slowdown: 4.0,
        });
        assert_eq!(w.judge(1 << 20, 1.0).state, "ok");
        let r = w.judge(1 << 20, 9.0);
        assert_eq!((r.state.as_str(), r.slowdown), ("throttled", 2.0));
        let r = w.judge(1 << 20, 9.0);
        assert_eq!((r.state.as_str(), r.slowdown), ("over_cap", 4.0));
        assert!(r.reason.unwrap().contains("cpu"));
        assert_eq!(w.judge(1 << 20, 1.0).slowdown, 2.0);
        assert_eq!(w.judge(1 << 20, 1.0).state, "ok");
        assert_eq!(w.judge(9 << 20, 1.0).state, "over_cap");
    }

    #[test]
    fn measures_this_process() {
        let mut w = Watchdog::new(WatchdogOptions::default());
        let r = w.check().unwrap();
        assert!(r.rss_bytes > 0);
    }
}
