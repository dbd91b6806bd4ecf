//! The context plane inside `aura up`: the local host's sensor pipeline (keeping
//! `<data-dir>/assets/<id>.aav` current) and the periodic Guardian, whose every repair is an
//! audit event `guardian.repair`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use aura_config::{Config, ContextConfig};
use aura_context::aav::{WriterOptions, valid_asset_id};
use aura_context::detect::{DetectorOptions, Thresholds};
use aura_context::guardian::{self, FileReport, GuardianOptions, RepairRecord, SensorRestarter};
use aura_context::pipeline::{self, PipelineConfig, PipelineHandle};
use aura_context::sensors::ServiceCheck;
use aura_context::watchdog::WatchdogOptions;
use aura_core::Clock;

use crate::services::audit::{self, AuditTrail};

/// The asset id of this host: `context.sensor.asset_id`, else the host name made into a valid id.
#[must_use]
pub fn local_asset_id(config: &Config) -> String {
    if let Some(id) = &config.context.sensor.asset_id {
        return id.clone();
    }
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let id: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    let id = id.trim_start_matches('.').to_owned();
    if valid_asset_id(&id) {
        id
    } else {
        "localhost".to_owned()
    }
}

/// `<data-dir>/assets`.
#[must_use]
pub fn assets_dir(config: &Config) -> PathBuf {
    ContextConfig::assets_dir(&config.data_dir)
}

/// The pipeline settings for this host from the configuration, writing into `dir`.
#[must_use]
pub fn pipeline_config(config: &Config, dir: PathBuf, asset_id: &str) -> PipelineConfig {
    let c = &config.context;
    let mut p = PipelineConfig::local(dir, asset_id);
    p.interval = Duration::from_secs(c.sensor.interval_seconds);
    p.sensors = c.sensor.sensors.clone();
    if !c.services.is_empty() && !p.sensors.iter().any(|s| s == "services") {
        p.sensors.push("services".to_owned());
    }
    p.services = c
        .services
        .iter()
        .map(|s| ServiceCheck {
            name: s.name.clone(),
            url: s.url.clone(),
            timeout: Duration::from_secs(s.timeout_seconds),
            expect_status: Vec::new(),
            version_header: s.version_header.clone(),
        })
        .collect();
    p.top_processes = usize::try_from(c.sensor.top_processes).unwrap_or(5);
    p.detector = DetectorOptions {
        thresholds: Thresholds {
            cpu_percent: c.changes.cpu_percent as f64,
            memory_percent: c.changes.memory_percent as f64,
            storage_percent: c.changes.storage_percent as f64,
            connections: c.changes.connections as f64,
        },
        min_write_interval_ms: i64::try_from(c.changes.min_write_interval_ms).unwrap_or(1000),
        heartbeat_ms: i64::try_from(c.changes.heartbeat_seconds.saturating_mul(1000))
            .unwrap_or(60_000),
        ..DetectorOptions::default()
    };
    p.writer = WriterOptions {
        backups: usize::try_from(c.files.backups).unwrap_or(5),
        backup_interval_ms: i64::try_from(c.files.backup_interval_seconds.saturating_mul(1000))
            .unwrap_or(60_000),
        history: c.files.history,
        ..WriterOptions::default()
    };
    p.watchdog = WatchdogOptions {
        max_rss_bytes: c.sensor.max_rss_mb.saturating_mul(1 << 20),
        max_cpu_percent: c.sensor.max_cpu_percent as f64,
        ..WatchdogOptions::default()
    };
    p
}

/// The Guardian's bounds from the configuration.
#[must_use]
pub fn guardian_options(config: &Config) -> GuardianOptions {
    GuardianOptions {
        stale_after_ms: i64::try_from(
            config
                .context
                .guardian
                .stale_after_seconds
                .saturating_mul(1000),
        )
        .unwrap_or(i64::MAX),
        ..GuardianOptions::default()
    }
}

/// The outcome of one Guardian run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GuardianRun {
    /// When it ran.
    pub at: String,
    /// What it found.
    pub reports: Vec<FileReport>,
    /// What it repaired.
    pub repairs: Vec<RepairRecord>,
}

/// The running context plane.
#[derive(Debug, Clone)]
pub struct ContextPlane {
    /// The local sensor pipeline, when enabled.
    pub pipeline: Option<PipelineHandle>,
    /// The last Guardian run.
    pub last_guardian_run: Arc<Mutex<Option<GuardianRun>>>,
}

struct LocalRestarter(Option<PipelineHandle>);

impl SensorRestarter for LocalRestarter {
    fn restart(&self, asset_id: &str) -> bool {
        match &self.0 {
            Some(p) if p.asset_id == asset_id => p.restart_and_rewrite(),
            _ => false,
        }
    }
}

/// Audits repair records as `guardian.repair` events (one per attempt).
pub async fn audit_repairs(
    trail: &AuditTrail,
    clock: &dyn Clock,
    actor: aura_audit::Actor,
    records: &[RepairRecord],
) {
    for r in records {
        let entry = audit::event(
            clock.now(),
            actor.clone(),
            ("asset", r.asset_id.as_deref().unwrap_or("-")),
            "guardian.repair",
            if r.level >= 4 {
                aura_audit::RiskLevel::Medium
            } else {
                aura_audit::RiskLevel::Low
            },
            serde_json::json!({
                "path": r.path.display().to_string(),
                "level": r.level,
                "repair": r.action,
                "ok": r.ok,
                "detail": r.detail,
            }),
        );
        if let Err(e) = trail.record(entry).await {
            tracing::error!(error = %e, "could not audit a guardian repair");
        }
    }
}

/// Starts the local sensor and the Guardian on `tasks` (both stop on `cancel`).
pub fn start(
    config: &Config,
    clock: Arc<dyn Clock>,
    trail: AuditTrail,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> ContextPlane {
    aura_context::describe_metrics();
    let dir = assets_dir(config);
    let pipeline = if config.context.sensor.enabled {
        let id = local_asset_id(config);
        match pipeline::spawn(
            pipeline_config(config, dir.clone(), &id),
            clock.clone(),
            tasks,
            cancel.clone(),
        ) {
            Ok(p) => {
                tracing::info!(asset = %id, path = %p.path.display(), "local host sensor started");
                Some(p)
            }
            Err(e) => {
                tracing::error!(error = %e, "local host sensor could not start");
                None
            }
        }
    } else {
        None
    };
    let last = Arc::new(Mutex::new(None));
    if config.context.guardian.enabled {
        let g = config.context.guardian.clone();
        let options = guardian_options(config);
        let restarter = Arc::new(LocalRestarter(pipeline.clone()));
        let last = last.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(g.interval_seconds));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: let the sensor write its first file before checking.
            tick.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (dir, options, restarter, clock2) = (
                    dir.clone(),
                    options.clone(),
                    restarter.clone(),
                    clock.clone(),
                );
                let (repair, level) = (g.repair, u8::try_from(g.max_repair_level).unwrap_or(5));
                let run = tokio::task::spawn_blocking(move || {
                    run_once(
                        &dir,
                        &options,
                        repair,
                        level,
                        Some(restarter.as_ref()),
                        clock2.as_ref(),
                    )
                })
                .await;
                let Ok(run) = run else { continue };
                audit_repairs(&trail, clock.as_ref(), audit::system_actor(), &run.repairs).await;
                if let Ok(mut l) = last.lock() {
                    *l = Some(run);
                }
            }
        });
    }
    ContextPlane {
        pipeline,
        last_guardian_run: last,
    }
}

/// One Guardian pass over `dir`: validate everything, repair what is invalid (when `repair`).
pub fn run_once(
    dir: &Path,
    options: &GuardianOptions,
    repair: bool,
    max_level: u8,
    restarter: Option<&dyn SensorRestarter>,
    clock: &dyn Clock,
) -> GuardianRun {
    let now = clock.now();
    let reports = guardian::scan(dir, options, now).unwrap_or_default();
    let mut repairs = Vec::new();
    if repair {
        for r in reports.iter().filter(|r| !r.valid()) {
            repairs.extend(guardian::repair(r, options, max_level, restarter, now));
        }
    }
    for r in &repairs {
        tracing::warn!(path = %r.path.display(), level = r.level, repair = %r.action, ok = r.ok, "guardian repair");
    }
    GuardianRun {
        at: now.to_rfc3339(),
        reports,
        repairs,
    }
}

/// An update a sensor pushed to this server (`aura sensor --push`), already validated at the edge.
#[derive(Debug)]
pub struct PushedUpdate {
    /// The agent the sensor acts as (its token's agent).
    pub agent: aura_core::AgentName,
    /// The sections, statuses and health to write.
    pub update: aura_context::aav::SectionUpdate,
    /// Size of the request body, recorded in the decision's arguments.
    pub bytes: usize,
}

/// A pushed update that was decided, written and settled.
#[derive(Debug)]
pub struct AppliedPush {
    /// The asset file.
    pub path: PathBuf,
    /// Its checksum after the write.
    pub checksum: String,
    /// The kernel's decision.
    pub decision_id: String,
    /// Where the decision is in the audit log.
    pub audit_seq: u64,
}

/// Why a pushed update was not applied.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The kernel did not allow the write.
    #[error("governance answered {verdict} (audit seq {audit_seq}): {reasons}")]
    Refused {
        /// `deny`, `halt` or `escalate`.
        verdict: &'static str,
        /// Every reason, `rule: message`, joined.
        reasons: String,
        /// Where the decision is in the audit log.
        audit_seq: u64,
    },
    /// The action could not be formed (bad path or agent).
    #[error("{0}")]
    Invalid(String),
    /// The asset file could not be written (the decision is settled as a failure).
    #[error("writing the asset file: {0}")]
    Write(String),
}

/// The writer's options from `context.files`.
#[must_use]
pub fn writer_options(config: &Config) -> WriterOptions {
    let c = &config.context;
    WriterOptions {
        backups: usize::try_from(c.files.backups).unwrap_or(5),
        backup_interval_ms: i64::try_from(c.files.backup_interval_seconds.saturating_mul(1000))
            .unwrap_or(60_000),
        history: c.files.history,
        ..WriterOptions::default()
    }
}

/// Applies a sensor's pushed update: a `file_write` of `<data-dir>/assets/<id>.aav` decided by the
/// kernel and audited before the effect, then written through the atomic [`Writer`] (so the
/// catalog's file watch sees it like any local write) and settled with its outcome.
///
/// [`Writer`]: aura_context::aav::Writer
pub async fn apply_pushed(
    governance: &crate::services::govern::Governance,
    config: &Config,
    caller: aura_audit::Actor,
    pushed: PushedUpdate,
) -> Result<AppliedPush, PushError> {
    let dir = assets_dir(config);
    let path = dir.join(format!("{}.aav", pushed.update.asset_id));
    let sections: Vec<&str> = pushed
        .update
        .sections
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let action = aura_core::Action::extract(aura_core::RawAction {
        agent: pushed.agent.clone(),
        task: None,
        kind: "file_write".into(),
        target: path.display().to_string(),
        args: serde_json::json!({
            "via": "sensor",
            "asset_id": pushed.update.asset_id,
            "sections": sections,
            "bytes": pushed.bytes,
        }),
        estimate: aura_core::Estimate::default(),
        labels: Default::default(),
    })
    .map_err(|e| PushError::Invalid(e.to_string()))?;
    let decided = governance.decide(&action, caller.clone()).await;
    let decision = decided.decision;
    if decision.verdict != aura_core::Verdict::Allow {
        return Err(PushError::Refused {
            verdict: decision.verdict.as_str(),
            reasons: decision
                .reasons
                .iter()
                .map(|r| format!("{}: {}", r.rule, r.message))
                .collect::<Vec<_>>()
                .join("; "),
            audit_seq: decided.audit_seq,
        });
    }
    let options = writer_options(config);
    let update = pushed.update;
    let written = tokio::task::spawn_blocking(move || {
        aura_context::aav::Writer::new(&dir, options)?.update(&update)
    })
    .await;
    let result = match written {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) => Err(PushError::Write(e.to_string())),
        Err(e) => Err(PushError::Write(e.to_string())),
    };
    let outcome = if result.is_ok() {
        aura_govern::kernel::ActionOutcome::Success
    } else {
        aura_govern::kernel::ActionOutcome::Failure
    };
    if let Err(e) = governance
        .settle(
            &decision.id,
            None,
            outcome,
            aura_govern::kernel::Actual::default(),
            caller,
        )
        .await
    {
        tracing::warn!(decision = %decision.id, error = %e, "settling a sensor push failed");
    }
    let outcome = result?;
    metrics::counter!(aura_context::SENSOR_PUSHES).increment(1);
    Ok(AppliedPush {
        path: outcome.path,
        checksum: outcome.checksum,
        decision_id: decision.id,
        audit_seq: decided.audit_seq,
    })
}
