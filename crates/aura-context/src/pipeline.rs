//! The host-sensor pipeline run by `aura up` and `aura sensor`: the [`Manager`]'s sensors send
//! samples over a bounded channel; one task runs the [`ChangeDetector`] and the [`Aggregator`]
//! and writes significant changes (with min/max since the previous write, sensor statuses and
//! the asset's health) through the atomic [`Writer`]; the [`Watchdog`] keeps the process under
//! its caps; on shutdown whatever is pending is flushed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use aura_core::Clock;

use crate::aav::{AavError, AssetKind, Health, Reader, SectionUpdate, Writer, WriterOptions};
use crate::aggregate::{Aggregator, AggregatorOptions, AggregatorStats};
use crate::detect::{ChangeDetector, DetectorOptions};
use crate::forward::UpdateSink;
use crate::metric_names;
use crate::sensors::{
    self, ComponentStatus, Manager, ManagerHandle, ManagerOptions, SensorFactory, SensorReport,
    ServiceCheck, ServicesSensor,
};
use crate::watchdog::{Watchdog, WatchdogOptions, WatchdogReport};

/// Everything the pipeline needs.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Where asset files live (`<data-dir>/assets`).
    pub dir: PathBuf,
    /// The asset written.
    pub asset_id: String,
    /// Its display name.
    pub name: String,
    /// Its kind.
    pub kind: AssetKind,
    /// Which sensors run (of [`sensors::BUILTIN`]).
    pub sensors: Vec<String>,
    /// HTTP checks of the services sensor.
    pub services: Vec<ServiceCheck>,
    /// Base sampling interval.
    pub interval: Duration,
    /// Processes listed in the top-N tables.
    pub top_processes: usize,
    /// Change detection and write pacing.
    pub detector: DetectorOptions,
    /// Batching.
    pub aggregator: AggregatorOptions,
    /// Backups and history.
    pub writer: WriterOptions,
    /// The self-watchdog's caps.
    pub watchdog: WatchdogOptions,
    /// Write the asset file into `dir` (`false`: only forward, e.g. a sidecar pushing to Aura).
    pub write_local: bool,
    /// Every update is also handed here after it is written (or instead, without `write_local`).
    pub forward: Option<Arc<dyn UpdateSink>>,
}

impl PipelineConfig {
    /// Defaults for the local host: every built-in sensor but `services` (it needs checks), 5 s.
    #[must_use]
    pub fn local(dir: PathBuf, asset_id: &str) -> PipelineConfig {
        PipelineConfig {
            dir,
            asset_id: asset_id.to_owned(),
            name: asset_id.to_owned(),
            kind: AssetKind::Host,
            sensors: ["compute", "memory", "storage", "network"]
                .map(str::to_owned)
                .to_vec(),
            services: Vec::new(),
            interval: Duration::from_secs(5),
            top_processes: 5,
            detector: DetectorOptions::default(),
            aggregator: AggregatorOptions::default(),
            writer: WriterOptions::default(),
            watchdog: WatchdogOptions::default(),
            write_local: true,
            forward: None,
        }
    }
}

/// The pipeline's counters and latest watchdog report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PipelineStats {
    /// File writes.
    pub writes: u64,
    /// Samples not written (no significant change).
    pub skipped: u64,
    /// Write failures.
    pub write_errors: u64,
    /// Sample failures reported by sensors.
    pub sample_errors: u64,
    /// The aggregator's counters.
    pub aggregator: AggregatorStats,
    /// The latest self-watchdog report.
    pub watchdog: Option<WatchdogReport>,
    /// The time of the last write.
    pub last_write_at: Option<String>,
    /// Every section written (or forwarded) at least once.
    pub sections_written: std::collections::BTreeSet<String>,
}

/// A running pipeline.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    /// The asset file.
    pub path: PathBuf,
    /// The asset.
    pub asset_id: String,
    /// The sensors' manager (statuses, restarts).
    pub manager: ManagerHandle,
    stats: Arc<Mutex<PipelineStats>>,
    writes: watch::Receiver<u64>,
    inject: mpsc::Sender<SensorReport>,
    rewrite: Arc<tokio::sync::Notify>,
}

impl PipelineHandle {
    /// Restarts every sensor and rewrites the whole file from the latest samples (Guardian
    /// repair level 5). `false` when the pipeline has stopped.
    pub fn restart_and_rewrite(&self) -> bool {
        let ok = self.manager.restart(None);
        self.rewrite.notify_one();
        ok
    }

    /// A copy of the counters.
    #[must_use]
    pub fn stats(&self) -> PipelineStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The sensors' statuses.
    #[must_use]
    pub fn sensors(&self) -> BTreeMap<String, ComponentStatus> {
        self.manager.statuses()
    }

    /// A receiver that changes after every file write (its value counts the writes).
    #[must_use]
    pub fn writes(&self) -> watch::Receiver<u64> {
        self.writes.clone()
    }

    /// Feeds a report as if a sensor had sent it (sidecar pushes, benchmarks, tests).
    pub async fn inject(&self, report: SensorReport) -> bool {
        self.inject.send(report).await.is_ok()
    }
}

/// Starts the pipeline on `tracker`; it stops (after an emergency flush) on `cancel`.
pub fn spawn(
    config: PipelineConfig,
    clock: Arc<dyn Clock>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<PipelineHandle, AavError> {
    if !crate::aav::valid_asset_id(&config.asset_id) {
        return Err(AavError::AssetId(config.asset_id.clone()));
    }
    let path = config.dir.join(format!("{}.aav", config.asset_id));
    let writer = if config.write_local {
        Some(Writer::new(&config.dir, config.writer.clone())?.with_reader(Reader::new(16)))
    } else {
        None
    };
    let mut manager = Manager::new(ManagerOptions::with_interval(config.interval));
    // One process table for the compute and memory sensors: one `/proc` sweep per tick.
    let table = sensors::ProcessTable::new();
    for name in &config.sensors {
        let factory: SensorFactory = if name == "services" {
            let checks = config.services.clone();
            Arc::new(move || {
                Ok(Box::new(ServicesSensor::new(checks.clone())?) as Box<dyn sensors::Sensor>)
            })
        } else {
            let name = name.clone();
            let top = config.top_processes;
            let table = table.clone();
            Arc::new(move || {
                sensors::builtin_sharing(&name, top, &table)
                    .ok_or_else(|| sensors::SensorError::Other(format!("unknown sensor `{name}`")))
            })
        };
        manager.add(name, factory);
    }
    // Bounded: a writer that cannot keep up makes the sensors wait (backpressure).
    let (tx, rx) = mpsc::channel(16);
    let handle_manager = manager.spawn(tracker, cancel.clone(), tx.clone());
    let stats = Arc::new(Mutex::new(PipelineStats::default()));
    let (writes_tx, writes_rx) = watch::channel(0u64);
    let rewrite = Arc::new(tokio::sync::Notify::new());
    tracker.spawn(run(
        rewrite.clone(),
        config.clone(),
        writer,
        clock,
        rx,
        handle_manager.clone(),
        stats.clone(),
        writes_tx,
        cancel,
    ));
    Ok(PipelineHandle {
        path,
        asset_id: config.asset_id,
        manager: handle_manager,
        stats,
        writes: writes_rx,
        inject: tx,
        rewrite,
    })
}

struct State {
    config: PipelineConfig,
    writer: Option<Writer>,
    clock: Arc<dyn Clock>,
    detector: ChangeDetector,
    aggregator: Aggregator,
    health: BTreeMap<String, Health>,
    latest: BTreeMap<String, toml::Table>,
    manager: ManagerHandle,
    stats: Arc<Mutex<PipelineStats>>,
    writes: watch::Sender<u64>,
    watchdog_status: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    rewrite: Arc<tokio::sync::Notify>,
    config: PipelineConfig,
    writer: Option<Writer>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<SensorReport>,
    manager: ManagerHandle,
    stats: Arc<Mutex<PipelineStats>>,
    writes: watch::Sender<u64>,
    cancel: CancellationToken,
) {
    let mut watchdog = Watchdog::new(config.watchdog.clone());
    let mut st = State {
        detector: ChangeDetector::new(config.detector.clone()),
        aggregator: Aggregator::new(config.aggregator.clone()),
        config,
        writer,
        clock,
        health: BTreeMap::new(),
        latest: BTreeMap::new(),
        manager,
        stats,
        writes,
        watchdog_status: None,
    };
    let mut watchdog_tick = tokio::time::interval(Duration::from_secs(5));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = st.clock.now().as_millis();
        let flush_in = st
            .aggregator
            .deadline()
            .map(|d| Duration::from_millis(u64::try_from(d - now).unwrap_or(0)));
        tokio::select! {
            () = cancel.cancelled() => break,
            report = rx.recv() => match report {
                Some(r) => st.on_report(r),
                None => break,
            },
            () = sleep_opt(flush_in) => {}
            () = rewrite.notified() => st.write(Vec::new()).await,
            _ = heartbeat.tick() => {
                let now = st.clock.now().as_millis();
                if st.aggregator.is_empty() && st.detector.heartbeat_due(now) {
                    st.write(Vec::new()).await;
                }
            }
            _ = watchdog_tick.tick() => {
                if let Ok(report) = watchdog.check() {
                    st.manager.pacing.set_slowdown(report.slowdown);
                    if report.state == "over_cap" {
                        tracing::warn!(reason = ?report.reason, "sensor over its resource cap");
                    }
                    st.watchdog_status = Some(match &report.reason {
                        Some(r) => format!("{}: {r}", report.state),
                        None => report.state.clone(),
                    });
                    if let Ok(mut s) = st.stats.lock() {
                        s.watchdog = Some(report);
                    }
                }
            }
        }
        let now = st.clock.now().as_millis();
        if st.aggregator.due(now) && st.detector.may_write(now, st.aggregator.critical()) {
            let batch = st.aggregator.take();
            st.write(batch.sections).await;
        }
    }
    // Emergency flush: whatever is pending is written regardless of the rate limit.
    while let Ok(r) = rx.try_recv() {
        st.on_report(r);
    }
    let batch = st.aggregator.emergency_flush();
    if !batch.sections.is_empty() {
        st.write(batch.sections).await;
    }
    if let Ok(mut s) = st.stats.lock() {
        s.aggregator = st.aggregator.stats().clone();
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl State {
    fn on_report(&mut self, report: SensorReport) {
        let sample = match report.result {
            Ok(s) => s,
            Err(_) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.sample_errors += 1;
                }
                return;
            }
        };
        if report.sensor == "compute" {
            let load = sample
                .section
                .get("load_1")
                .and_then(crate::aav::format::as_f64);
            let cores = sample
                .section
                .get("cores")
                .and_then(toml::Value::as_integer)
                .unwrap_or(1)
                .max(1);
            if let Some(load) = load {
                self.manager.pacing.set_load(load / cores as f64);
            }
        }
        self.health.insert(report.sensor.clone(), sample.health);
        let obs = self.detector.observe(&report.sensor, &sample.section);
        self.latest
            .insert(report.sensor.clone(), sample.section.clone());
        if obs.changed {
            tracing::debug!(sensor = %report.sensor, reasons = ?obs.reasons, "significant change");
            let now = self.clock.now().as_millis();
            self.aggregator.offer(
                &report.sensor,
                sample.section,
                sample.health,
                obs.critical,
                now,
            );
        } else {
            metrics::counter!(metric_names::SKIPPED).increment(1);
            if let Ok(mut s) = self.stats.lock() {
                s.skipped += 1;
            }
        }
    }

    fn asset_health(&self) -> Health {
        let mut worst = None;
        for h in self.health.values() {
            worst = Some(match (worst, *h) {
                (_, Health::Unhealthy) | (Some(Health::Unhealthy), _) => Health::Unhealthy,
                (_, Health::Degraded) | (Some(Health::Degraded), _) => Health::Degraded,
                (_, Health::Healthy) => Health::Healthy,
                (w, Health::Unknown) => w.unwrap_or(Health::Unknown),
            });
        }
        worst.unwrap_or(Health::Unknown)
    }

    /// Writes `sections` (empty: a heartbeat that refreshes every section with its latest value).
    async fn write(&mut self, sections: Vec<(String, toml::Table)>) {
        let now = self.clock.now();
        let sections: Vec<(String, toml::Table)> = if sections.is_empty() {
            self.latest.clone().into_iter().collect()
        } else {
            sections
        };
        let mut update =
            SectionUpdate::new(&self.config.asset_id, self.config.kind, &self.config.name)
                .health(self.asset_health())
                .at(now);
        for (name, mut table) in sections {
            self.detector.annotate(&name, &mut table);
            update.sections.push((name, table));
        }
        for (name, status) in self.manager.statuses() {
            update.sensor_status.push((name, status.summary()));
        }
        if let Some(w) = &self.watchdog_status {
            update.sensor_status.push(("watchdog".into(), w.clone()));
        }
        let written = update.sections.clone();
        let result = match self.writer.clone() {
            Some(writer) => tokio::task::spawn_blocking(move || {
                let r = writer.update(&update).map(|_| ());
                (update, r)
            })
            .await
            .map(|(update, r)| r.map(|()| update)),
            None => Ok(Ok(update)),
        };
        match result {
            Ok(Ok(update)) => {
                if let Some(forward) = &self.config.forward {
                    forward.offer(&update);
                }
                if written.is_empty() {
                    self.detector.touched(now.as_millis());
                }
                for (name, table) in &written {
                    self.detector.committed(name, table, now.as_millis());
                }
                metrics::counter!(metric_names::WRITES).increment(1);
                let mut count = 0;
                if let Ok(mut s) = self.stats.lock() {
                    s.writes += 1;
                    s.last_write_at = Some(now.to_rfc3339());
                    s.sections_written
                        .extend(written.iter().map(|(name, _)| name.clone()));
                    s.aggregator = self.aggregator.stats().clone();
                    count = s.writes;
                }
                self.writes.send_replace(count);
            }
            Ok(Err(e)) => {
                tracing::warn!(asset = %self.config.asset_id, error = %e, "asset file write failed");
                self.detector.touched(now.as_millis());
                if let Ok(mut s) = self.stats.lock() {
                    s.write_errors += 1;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "asset file write task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aav::Document;

    #[tokio::test]
    async fn the_local_pipeline_writes_a_valid_file_and_flushes_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PipelineConfig::local(dir.path().to_owned(), "local-test");
        config.interval = Duration::from_millis(200);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let handle = spawn(
            config,
            Arc::new(aura_core::SystemClock),
            &tracker,
            cancel.clone(),
        )
        .unwrap();
        let mut writes = handle.writes();
        tokio::time::timeout(Duration::from_secs(20), writes.wait_for(|n| *n >= 1))
            .await
            .unwrap()
            .unwrap();
        // Wait until every sensor's section has been written.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let doc = Document::parse(&std::fs::read_to_string(&handle.path).unwrap()).unwrap();
            if ["compute", "memory", "storage", "network"]
                .iter()
                .all(|s| doc.section(s).is_some())
            {
                assert!(
                    doc.schema_problems().is_empty(),
                    "{:?}",
                    doc.schema_problems()
                );
                assert_eq!(
                    doc.stored_checksum(),
                    Some(doc.computed_checksum().as_str())
                );
                assert!(doc.get("compute.cpu_percent_max").is_some());
                assert!(doc.sensor_status().iter().any(|(k, _)| *k == "compute"));
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "sections missing");
            writes.changed().await.unwrap();
        }
        // A change injected right before stopping is not lost.
        let mut section = toml::Table::new();
        section.insert("marker".into(), 1.into());
        handle
            .inject(SensorReport {
                sensor: "custom".into(),
                result: Ok(crate::sensors::Sample {
                    section,
                    health: Health::Healthy,
                }),
                duration: Duration::ZERO,
            })
            .await;
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        let doc = Document::parse(&std::fs::read_to_string(&handle.path).unwrap()).unwrap();
        assert_eq!(
            doc.get("custom.marker").and_then(|v| v.as_integer()),
            Some(1)
        );
        assert!(handle.stats().writes >= 2);
    }
}
