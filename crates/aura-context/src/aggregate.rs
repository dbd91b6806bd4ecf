//! The aggregator between the change detector and the writer: batches significant section
//! updates into one file write, keeps only the latest value per section (dedupe), flushes at
//! once for critical changes, bounds what it holds (backpressure reaches the sensors through the
//! bounded report channel), and hands everything over on shutdown (emergency flush).

use std::collections::BTreeMap;

use toml::Table;

use crate::aav::Health;

/// When a batch is flushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorOptions {
    /// Flush once this many sections are pending. Default 5 (every sensor).
    pub max_batch: usize,
    /// Flush once the oldest pending update is this old, in milliseconds. Default 100.
    pub max_delay_ms: i64,
}

impl Default for AggregatorOptions {
    fn default() -> Self {
        AggregatorOptions {
            max_batch: 5,
            max_delay_ms: 100,
        }
    }
}

/// Counters of the aggregator.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AggregatorStats {
    /// Updates offered.
    pub offered: u64,
    /// Updates replaced by a newer one of the same section before a flush.
    pub deduplicated: u64,
    /// Batches handed to the writer.
    pub flushes: u64,
    /// Batches flushed at once for a critical change.
    pub critical_flushes: u64,
    /// Batches flushed on shutdown.
    pub emergency_flushes: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    table: Table,
    health: Health,
    since_ms: i64,
}

/// One batch for the writer.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Sections and their latest values.
    pub sections: Vec<(String, Table)>,
    /// Each section's health verdict.
    pub health: Vec<(String, Health)>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Aggregator {
    options: AggregatorOptions,
    pending: BTreeMap<String, Pending>,
    critical: bool,
    stats: AggregatorStats,
}

impl Aggregator {
    /// An empty aggregator.
    #[must_use]
    pub fn new(options: AggregatorOptions) -> Aggregator {
        Aggregator {
            options,
            pending: BTreeMap::new(),
            critical: false,
            stats: AggregatorStats::default(),
        }
    }

    /// Adds the latest value of `section`; a pending older value is replaced.
    pub fn offer(
        &mut self,
        section: &str,
        table: Table,
        health: Health,
        critical: bool,
        now_ms: i64,
    ) {
        self.stats.offered += 1;
        let since_ms = match self.pending.remove(section) {
            Some(old) => {
                self.stats.deduplicated += 1;
                old.since_ms
            }
            None => now_ms,
        };
        self.pending.insert(
            section.to_owned(),
            Pending {
                table,
                health,
                since_ms,
            },
        );
        self.critical |= critical;
    }

    /// When the pending batch must be flushed (milliseconds), if anything is pending.
    #[must_use]
    pub fn deadline(&self) -> Option<i64> {
        if self.critical || self.pending.len() >= self.options.max_batch {
            return self.pending.values().map(|p| p.since_ms).min();
        }
        self.pending
            .values()
            .map(|p| p.since_ms + self.options.max_delay_ms)
            .min()
    }

    /// Whether the batch is due at `now_ms`.
    #[must_use]
    pub fn due(&self, now_ms: i64) -> bool {
        self.deadline().is_some_and(|d| now_ms >= d)
    }

    /// Whether a critical change is pending.
    #[must_use]
    pub fn critical(&self) -> bool {
        self.critical
    }

    /// Takes the pending batch (empty when nothing is pending).
    pub fn take(&mut self) -> Batch {
        if self.pending.is_empty() {
            return Batch::default();
        }
        self.stats.flushes += 1;
        if self.critical {
            self.stats.critical_flushes += 1;
        }
        self.critical = false;
        let mut batch = Batch::default();
        for (name, p) in std::mem::take(&mut self.pending) {
            batch.health.push((name.clone(), p.health));
            batch.sections.push((name, p.table));
        }
        batch
    }

    /// Takes everything on shutdown.
    pub fn emergency_flush(&mut self) -> Batch {
        if !self.pending.is_empty() {
            self.stats.emergency_flushes += 1;
        }
        self.take()
    }

    /// How many sections are pending.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> &AggregatorStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: f64) -> Table {
        let mut t = Table::new();
        t.insert("v".into(), v.into());
        t
    }

    #[test]
    fn batches_dedupes_and_flushes_on_delay() {
        let mut a = Aggregator::new(AggregatorOptions {
            max_batch: 3,
            max_delay_ms: 100,
        });
        a.offer("compute", t(1.0), Health::Healthy, false, 0);
        a.offer("compute", t(2.0), Health::Healthy, false, 50);
        assert!(!a.due(99));
        assert!(a.due(100), "the oldest update's age counts, not the newest");
        let b = a.take();
        assert_eq!(b.sections.len(), 1);
        assert_eq!(b.sections[0].1["v"].as_float(), Some(2.0));
        assert_eq!(a.stats().deduplicated, 1);
        assert!(a.take().sections.is_empty());
    }

    #[test]
    fn critical_and_full_batches_flush_at_once() {
        let mut a = Aggregator::new(AggregatorOptions {
            max_batch: 2,
            max_delay_ms: 1000,
        });
        a.offer("memory", t(1.0), Health::Healthy, true, 10);
        assert!(a.due(10));
        a.take();
        a.offer("compute", t(1.0), Health::Healthy, false, 20);
        a.offer("storage", t(1.0), Health::Healthy, false, 21);
        assert!(a.due(21));
        assert_eq!(a.take().sections.len(), 2);
        a.offer("network", t(1.0), Health::Degraded, false, 30);
        let b = a.emergency_flush();
        assert_eq!(b.health, vec![("network".to_owned(), Health::Degraded)]);
        assert_eq!(a.stats().emergency_flushes, 1);
        assert_eq!(a.stats().critical_flushes, 1);
    }
}
