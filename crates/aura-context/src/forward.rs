//! Forwarding a sensor's updates elsewhere (e.g. to a running Aura) through a bounded,
//! coalescing [`Spool`]: while the destination is unreachable, each section keeps only its
//! latest value — with the `*_min` / `*_max` fields merged across the values it replaced, so a
//! spike between deliveries is not lost — and a failed delivery is put back under anything newer.
//! The spool holds at most one pending value per section, so its memory is bounded by the number
//! of sections whatever the outage's length. What is dropped: the intermediate values of a
//! section superseded before delivery (counted in [`SpoolStats::coalesced`]) and, if the process
//! stops while the destination is unreachable, whatever is still pending (the caller counts it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use toml::{Table, Value};

use crate::aav::{AssetKind, Health, SectionUpdate};
use aura_core::Timestamp;

/// Where the pipeline hands each update it would write (see `pipeline::PipelineConfig::forward`).
pub trait UpdateSink: Send + Sync + std::fmt::Debug {
    /// Takes one update; must not block (queue it and return).
    fn offer(&self, update: &SectionUpdate);
}

/// The spool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    /// Updates offered.
    pub offered: u64,
    /// Section values replaced by a newer one before delivery.
    pub coalesced: u64,
    /// Deliveries taken out and put back after a failure.
    pub requeued: u64,
}

/// A bounded, coalescing queue of section updates for one asset (cheap to clone; every clone
/// is the same spool).
#[derive(Debug, Clone, Default)]
pub struct Spool {
    inner: Arc<Mutex<Pending>>,
    ready: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Pending {
    header: Option<(String, AssetKind, String)>,
    sections: BTreeMap<String, Table>,
    status: BTreeMap<String, String>,
    health: Option<Health>,
    at: Option<Timestamp>,
    stats: SpoolStats,
}

impl Spool {
    /// An empty spool.
    #[must_use]
    pub fn new() -> Spool {
        Spool::default()
    }

    /// Resolves when something was offered since the last [`Spool::take`] (at once if it was
    /// offered before this call).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Takes everything pending as one update (`None` when nothing is).
    #[must_use]
    pub fn take(&self) -> Option<SectionUpdate> {
        let mut p = self.lock();
        let (id, kind, name) = p.header.clone()?;
        if p.sections.is_empty() && p.status.is_empty() && p.at.is_none() {
            return None;
        }
        let mut update = SectionUpdate::new(&id, kind, &name);
        update.sections = std::mem::take(&mut p.sections).into_iter().collect();
        update.sensor_status = std::mem::take(&mut p.status).into_iter().collect();
        update.health = p.health.take();
        update.at = p.at.take();
        Some(update)
    }

    /// Puts back an update whose delivery failed, under anything offered since: newer values
    /// win, the min/max fields cover both.
    pub fn requeue(&self, update: SectionUpdate) {
        let mut p = self.lock();
        p.stats.requeued += 1;
        if p.header.is_none() {
            p.header = Some((update.asset_id.clone(), update.kind, update.name.clone()));
        }
        for (name, older) in update.sections {
            match p.sections.get_mut(&name) {
                Some(newer) => merge_extremes(newer, &older),
                None => {
                    p.sections.insert(name, older);
                }
            }
        }
        for (k, v) in update.sensor_status {
            p.status.entry(k).or_insert(v);
        }
        if p.health.is_none() {
            p.health = update.health;
        }
        if p.at.is_none() {
            p.at = update.at;
        }
        drop(p);
        self.ready.notify_one();
    }

    /// Whether nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        let p = self.lock();
        p.sections.is_empty() && p.status.is_empty() && p.at.is_none()
    }

    /// Sections pending.
    #[must_use]
    pub fn pending_sections(&self) -> usize {
        self.lock().sections.len()
    }

    /// A copy of the counters.
    #[must_use]
    pub fn stats(&self) -> SpoolStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        match self.inner.lock() {
            Ok(g) => g,
            // Every mutation leaves the map consistent; a panic elsewhere cannot corrupt it.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl UpdateSink for Spool {
    fn offer(&self, update: &SectionUpdate) {
        let mut p = self.lock();
        p.stats.offered += 1;
        p.header = Some((update.asset_id.clone(), update.kind, update.name.clone()));
        for (name, table) in &update.sections {
            let mut table = table.clone();
            if let Some(older) = p.sections.remove(name) {
                merge_extremes(&mut table, &older);
                p.stats.coalesced += 1;
            }
            p.sections.insert(name.clone(), table);
        }
        for (k, v) in &update.sensor_status {
            p.status.insert(k.clone(), v.clone());
        }
        if update.health.is_some() {
            p.health = update.health;
        }
        // A heartbeat (no sections) still refreshes `updated_at` at the destination.
        p.at = update.at.or(p.at);
        drop(p);
        self.ready.notify_one();
    }
}

/// Widens `newer`'s `*_min` / `*_max` numbers to cover `older`'s.
fn merge_extremes(newer: &mut Table, older: &Table) {
    for (key, old) in older {
        let is_min = key.ends_with("_min");
        if !is_min && !key.ends_with("_max") {
            continue;
        }
        let Some(old_v) = crate::aav::format::as_f64(old) else {
            continue;
        };
        let merged = match newer.get(key).and_then(crate::aav::format::as_f64) {
            Some(new_v) if is_min => new_v.min(old_v),
            Some(new_v) => new_v.max(old_v),
            None => old_v,
        };
        newer.insert(key.clone(), Value::Float(merged));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(cpu: f64, min: f64, max: f64) -> SectionUpdate {
        let mut t = Table::new();
        t.insert("cpu_percent".into(), Value::Float(cpu));
        t.insert("cpu_percent_min".into(), Value::Float(min));
        t.insert("cpu_percent_max".into(), Value::Float(max));
        SectionUpdate::new("web-1", AssetKind::Host, "web-1")
            .section("compute", t)
            .status("compute", "running")
            .health(Health::Healthy)
    }

    #[test]
    fn an_outage_keeps_one_value_per_section_and_every_spike() {
        let spool = Spool::new();
        spool.offer(&update(10.0, 9.0, 95.0)); // a spike
        for _ in 0..1000 {
            spool.offer(&update(12.0, 11.0, 13.0));
        }
        assert_eq!(spool.pending_sections(), 1);
        assert_eq!(spool.stats().coalesced, 1000);
        let u = spool.take().unwrap();
        assert!(spool.take().is_none());
        let (name, t) = &u.sections[0];
        assert_eq!(name, "compute");
        assert_eq!(t["cpu_percent"].as_float(), Some(12.0));
        assert_eq!(t["cpu_percent_min"].as_float(), Some(9.0));
        assert_eq!(t["cpu_percent_max"].as_float(), Some(95.0));
    }

    #[test]
    fn a_failed_delivery_goes_back_under_newer_values() {
        let spool = Spool::new();
        spool.offer(&update(50.0, 40.0, 99.0));
        let failed = spool.take().unwrap();
        spool.offer(&update(20.0, 19.0, 21.0));
        spool.requeue(failed);
        let u = spool.take().unwrap();
        let t = &u.sections[0].1;
        assert_eq!(t["cpu_percent"].as_float(), Some(20.0), "newer value wins");
        assert_eq!(
            t["cpu_percent_max"].as_float(),
            Some(99.0),
            "older spike kept"
        );
        assert_eq!(t["cpu_percent_min"].as_float(), Some(19.0));
        assert_eq!(spool.stats().requeued, 1);
        assert!(spool.is_empty());
    }
}
