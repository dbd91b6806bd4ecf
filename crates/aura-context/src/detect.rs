//! The change detector: decides whether a sample differs enough from what the file holds to be
//! worth a write (seed 001 §2.2.1: CPU 5 points, memory 5, storage 1, 10 connections, any
//! service state change), flags spikes as critical, adapts thresholds to noisy metrics, keeps
//! the min and max of each tracked value since the previous write (so a spike between writes is
//! not lost), and rate-limits writes.

use std::collections::HashMap;

use toml::{Table, Value};

use crate::aav::format::as_f64;

/// Thresholds of significance, in the metric's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// `compute.cpu_percent`, percentage points. Default 5.
    pub cpu_percent: f64,
    /// `memory.used_percent`, percentage points. Default 5.
    pub memory_percent: f64,
    /// `storage.used_percent_max`, percentage points. Default 1.
    pub storage_percent: f64,
    /// `network.connections`, connections. Default 10.
    pub connections: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cpu_percent: 5.0,
            memory_percent: 5.0,
            storage_percent: 1.0,
            connections: 10.0,
        }
    }
}

/// How the detector decides and paces writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorOptions {
    /// The thresholds.
    pub thresholds: Thresholds,
    /// Least time between two writes, in milliseconds; critical changes skip it. Default 1000.
    pub min_write_interval_ms: i64,
    /// A write happens at least this often even without change (keeps the file fresh for the
    /// Guardian), in milliseconds. Default 60 000.
    pub heartbeat_ms: i64,
    /// A jump of at least `spike_factor` × the threshold between two consecutive samples is a
    /// spike: critical, written at once. Default 3.
    pub spike_factor: f64,
    /// Raise a metric's threshold (up to 3×) while it is noisy. Default on.
    pub adaptive: bool,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            thresholds: Thresholds::default(),
            min_write_interval_ms: 1000,
            heartbeat_ms: 60_000,
            spike_factor: 3.0,
            adaptive: true,
        }
    }
}

/// What the detector concluded about one sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Worth a write.
    pub changed: bool,
    /// Worth a write right now (spike, service state change, first sample).
    pub critical: bool,
    /// Why, for logs (`compute.cpu_percent 10 → 16`).
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Metric {
    written: Option<f64>,
    last: Option<f64>,
    min: f64,
    max: f64,
    noise: f64,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ChangeDetector {
    options: DetectorOptions,
    metrics: HashMap<&'static str, Metric>,
    states: HashMap<String, String>,
    sections_written: HashMap<String, ()>,
    last_write_ms: Option<i64>,
}

/// (section, key, threshold selector).
const NUMERIC: &[(&str, &str, &str)] = &[
    ("compute", "cpu_percent", "compute.cpu_percent"),
    ("memory", "used_percent", "memory.used_percent"),
    ("storage", "used_percent_max", "storage.used_percent_max"),
    ("network", "connections", "network.connections"),
];

impl ChangeDetector {
    /// A detector with `options`.
    #[must_use]
    pub fn new(options: DetectorOptions) -> ChangeDetector {
        ChangeDetector {
            options,
            metrics: HashMap::new(),
            states: HashMap::new(),
            sections_written: HashMap::new(),
            last_write_ms: None,
        }
    }

    fn threshold(&self, id: &str) -> f64 {
        let t = &self.options.thresholds;
        match id {
            "compute.cpu_percent" => t.cpu_percent,
            "memory.used_percent" => t.memory_percent,
            "storage.used_percent_max" => t.storage_percent,
            _ => t.connections,
        }
    }

    /// Looks at a sample of `section`.
    pub fn observe(&mut self, section: &str, table: &Table) -> Observation {
        let mut obs = Observation::default();
        if !self.sections_written.contains_key(section) {
            obs.changed = true;
            obs.critical = true;
            obs.reasons.push(format!("{section}: first sample"));
        }
        for (sec, key, id) in NUMERIC {
            if *sec != section {
                continue;
            }
            let Some(v) = table.get(*key).and_then(as_f64) else {
                continue;
            };
            let base = self.threshold(id);
            let adaptive = self.options.adaptive;
            let spike_factor = self.options.spike_factor;
            let m = self.metrics.entry(id).or_default();
            if let Some(last) = m.last {
                let step = (v - last).abs();
                m.noise = 0.8 * m.noise + 0.2 * step;
                if step >= spike_factor * base {
                    obs.changed = true;
                    obs.critical = true;
                    obs.reasons.push(format!("{id} spike {last} → {v}"));
                }
                m.min = m.min.min(v);
                m.max = m.max.max(v);
            } else {
                m.min = v;
                m.max = v;
            }
            m.last = Some(v);
            let threshold = if adaptive {
                base.max((2.0 * m.noise).min(3.0 * base))
            } else {
                base
            };
            if let Some(w) = m.written
                && (v - w).abs() >= threshold
            {
                obs.changed = true;
                obs.reasons.push(format!("{id} {w} → {v}"));
            }
        }
        for (key, state) in states_of(section, table) {
            match self.states.get(&key) {
                Some(old) if *old != state => {
                    obs.changed = true;
                    obs.critical = true;
                    obs.reasons.push(format!("{key} {old} → {state}"));
                }
                None if self.sections_written.contains_key(section) => {
                    obs.changed = true;
                    obs.critical = true;
                    obs.reasons.push(format!("{key} → {state}"));
                }
                _ => {}
            }
        }
        obs
    }

    /// Whether a write may happen at `now_ms` (the rate limit; critical changes always may).
    #[must_use]
    pub fn may_write(&self, now_ms: i64, critical: bool) -> bool {
        critical
            || self
                .last_write_ms
                .is_none_or(|t| now_ms - t >= self.options.min_write_interval_ms)
    }

    /// Whether the heartbeat write is due at `now_ms`.
    #[must_use]
    pub fn heartbeat_due(&self, now_ms: i64) -> bool {
        self.last_write_ms
            .is_some_and(|t| now_ms - t >= self.options.heartbeat_ms)
    }

    /// Adds `<key>_min` and `<key>_max` (since the previous write) next to each tracked value of
    /// `section` in `table`.
    pub fn annotate(&self, section: &str, table: &mut Table) {
        for (sec, key, id) in NUMERIC {
            if *sec != section || !table.contains_key(*key) {
                continue;
            }
            if let Some(m) = self.metrics.get(id) {
                table.insert(format!("{key}_min"), Value::Float(m.min));
                table.insert(format!("{key}_max"), Value::Float(m.max));
            }
        }
    }

    /// Records that `section` was written with `table` at `now_ms`: it becomes the baseline and
    /// the min/max window restarts.
    pub fn committed(&mut self, section: &str, table: &Table, now_ms: i64) {
        self.sections_written.insert(section.to_owned(), ());
        self.last_write_ms = Some(now_ms);
        for (sec, key, id) in NUMERIC {
            if *sec != section {
                continue;
            }
            if let Some(v) = table.get(*key).and_then(as_f64) {
                let m = self.metrics.entry(id).or_default();
                m.written = Some(v);
                m.min = v;
                m.max = v;
            }
        }
        for (key, state) in states_of(section, table) {
            self.states.insert(key, state);
        }
    }

    /// Records a write that carried no section (a heartbeat) at `now_ms`.
    pub fn touched(&mut self, now_ms: i64) {
        self.last_write_ms = Some(now_ms);
    }
}

/// The discrete states of a section that trigger a write whenever they change.
fn states_of(section: &str, table: &Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match section {
        "services" => {
            if let Some(checks) = table.get("checks").and_then(Value::as_table) {
                for (name, c) in checks {
                    if let Some(s) = c.get("status").and_then(Value::as_str) {
                        out.push((format!("services.checks.{name}.status"), s.to_owned()));
                    }
                }
            }
        }
        "memory" => {
            if let Some(r) = table.get("oom_risk").and_then(Value::as_str) {
                out.push(("memory.oom_risk".into(), r.to_owned()));
            }
            if let Some(b) = table
                .get("leak")
                .and_then(|l| l.get("suspected"))
                .and_then(Value::as_bool)
            {
                out.push(("memory.leak.suspected".into(), b.to_string()));
            }
        }
        _ => {}
    }
    out
}
