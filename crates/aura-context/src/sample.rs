//! The adaptive sampler: how long a sensor waits before its next sample. It slows down while the
//! host is loaded (or the self-watchdog asks), backs off exponentially on errors, recovers fast
//! (straight back to the base interval on the first success after errors, halving per quiet
//! sample after load), and keeps its own statistics.

use std::time::Duration;

/// Bounds and thresholds of a sampler.
#[derive(Debug, Clone)]
pub struct SamplerOptions {
    /// The normal interval.
    pub base: Duration,
    /// The longest interval (load, errors and the watchdog never push past it).
    pub max: Duration,
    /// Host load per core above which sampling slows (×1.5 per sample).
    pub load_high: f64,
    /// Host load per core below which sampling speeds back up (÷2 per sample).
    pub load_low: f64,
}

impl SamplerOptions {
    /// Options with `base` and a maximum of 10 × base (at least 60 s).
    #[must_use]
    pub fn with_base(base: Duration) -> SamplerOptions {
        SamplerOptions {
            base,
            max: (base * 10).max(Duration::from_secs(60)),
            load_high: 0.9,
            load_low: 0.6,
        }
    }
}

/// The sampler's statistics, reported in status and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SamplerStats {
    /// Successful samples.
    pub samples: u64,
    /// Failed samples.
    pub errors: u64,
    /// Times load made it slow down.
    pub slowdowns: u64,
    /// Times it sped back up.
    pub recoveries: u64,
    /// The interval now, in milliseconds.
    pub interval_ms: u64,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct AdaptiveSampler {
    opts: SamplerOptions,
    current: Duration,
    error_streak: u32,
    stats: SamplerStats,
}

impl AdaptiveSampler {
    /// A sampler starting at the base interval.
    #[must_use]
    pub fn new(opts: SamplerOptions) -> AdaptiveSampler {
        let current = opts.base;
        AdaptiveSampler {
            stats: SamplerStats {
                interval_ms: current.as_millis() as u64,
                ..SamplerStats::default()
            },
            opts,
            current,
            error_streak: 0,
        }
    }

    /// Records a successful sample taken while the host had `load_per_core`; `slowdown` (≥ 1)
    /// is the watchdog's factor. Returns the wait before the next sample.
    pub fn on_success(&mut self, load_per_core: f64, slowdown: f64) -> Duration {
        self.stats.samples += 1;
        if self.error_streak > 0 {
            self.error_streak = 0;
            self.current = self.opts.base;
            self.stats.recoveries += 1;
        } else if load_per_core > self.opts.load_high {
            let next = self.current.mul_f64(1.5).min(self.opts.max);
            if next > self.current {
                self.stats.slowdowns += 1;
            }
            self.current = next;
        } else if load_per_core < self.opts.load_low && self.current > self.opts.base {
            self.current = (self.current / 2).max(self.opts.base);
            self.stats.recoveries += 1;
        }
        self.effective(slowdown)
    }

    /// Records a failed sample. Returns the wait before the retry: base × 2^failures, capped.
    pub fn on_error(&mut self) -> Duration {
        self.stats.errors += 1;
        self.error_streak = self.error_streak.saturating_add(1);
        let factor = 2u32.saturating_pow(self.error_streak.min(16));
        self.current = self.opts.base.saturating_mul(factor).min(self.opts.max);
        self.effective(1.0)
    }

    fn effective(&mut self, slowdown: f64) -> Duration {
        let d = self.current.mul_f64(slowdown.max(1.0)).min(self.opts.max);
        self.stats.interval_ms = d.as_millis() as u64;
        d
    }

    /// The statistics.
    #[must_use]
    pub fn stats(&self) -> &SamplerStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> AdaptiveSampler {
        AdaptiveSampler::new(SamplerOptions {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            load_high: 0.9,
            load_low: 0.6,
        })
    }

    #[test]
    fn slows_under_load_and_recovers_fast() {
        let mut a = s();
        assert_eq!(a.on_success(0.1, 1.0), Duration::from_secs(1));
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = a.on_success(2.0, 1.0);
        }
        assert_eq!(last, Duration::from_secs(30), "capped at max");
        let mut steps = 0;
        while a.on_success(0.1, 1.0) > Duration::from_secs(1) {
            steps += 1;
        }
        assert!(steps <= 5, "recovery took {steps} samples");
        assert!(a.stats().slowdowns > 0 && a.stats().recoveries > 0);
    }

    #[test]
    fn backs_off_on_errors_and_resets_on_success() {
        let mut a = s();
        assert_eq!(a.on_error(), Duration::from_secs(2));
        assert_eq!(a.on_error(), Duration::from_secs(4));
        assert_eq!(a.on_error(), Duration::from_secs(8));
        for _ in 0..10 {
            a.on_error();
        }
        assert_eq!(a.on_error(), Duration::from_secs(30));
        assert_eq!(a.on_success(0.1, 1.0), Duration::from_secs(1));
        assert_eq!(a.stats().errors, 14);
    }

    #[test]
    fn the_watchdog_factor_stretches_the_interval() {
        let mut a = s();
        assert_eq!(a.on_success(0.1, 3.0), Duration::from_secs(3));
        assert_eq!(a.stats().interval_ms, 3000);
    }
}
