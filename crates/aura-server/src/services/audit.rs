//! The audit trail as a service: open the log under the data dir, record administrative and system events, and
//! read entries, checkpoints and proofs for the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aura_config::EffectGate;

use aura_audit::{
    Actor, ActorKind, AuditConfig, AuditEntry, AuditLog, Checkpoint, ConsistencyProof,
    InclusionProof, LoggedEntry, Receipt, RecoveryReport, Resource, RiskLevel, ScanFilter,
};
use aura_core::Principal;

use super::ServiceError;

/// Audit entries durable in the log.
pub const AUDIT_ENTRIES: &str = "aura_audit_entries_appended_total";
/// Group commits (batches written and fdatasync'd); entries per sync = entries / this.
pub const AUDIT_SYNCS: &str = "aura_audit_batches_synced_total";

/// The default checkpoint origin line.
pub const DEFAULT_ORIGIN: &str = "aura.local/audit";

/// Where the audit log and its signing key live under a data dir.
pub fn paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (
        data_dir.join("audit"),
        data_dir.join("keys").join("audit.ed25519"),
    )
}

/// Settings for opening the trail.
#[derive(Debug, Clone)]
pub struct TrailSettings {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Checkpoint origin line.
    pub origin: String,
    /// Seal segments at this size.
    pub segment_bytes: u64,
    /// Emit a signed checkpoint at least this often while entries arrive.
    pub checkpoint_interval: Duration,
    /// When an effect may be released after its decision's entry was submitted (`audit.effect_gate`).
    pub effect_gate: EffectGate,
}

/// The process's audit trail. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    log: Arc<AuditLog>,
    gate: EffectGate,
}

impl AuditTrail {
    /// Opens (or creates) the log and its signing key; recovery I/O runs on a blocking thread.
    pub async fn open(
        settings: TrailSettings,
    ) -> Result<(AuditTrail, RecoveryReport), ServiceError> {
        let (dir, key_path) = paths(&settings.data_dir);
        let gate = settings.effect_gate;
        if let Some(keys) = key_path.parent() {
            create_private_dir(keys)
                .map_err(|e| ServiceError::Internal(format!("`{}`: {e}", keys.display())))?;
        }
        let config = AuditConfig {
            dir,
            key_path,
            origin: settings.origin,
            segment_bytes: settings.segment_bytes,
            checkpoint_interval: settings.checkpoint_interval,
        };
        metrics::describe_counter!(
            AUDIT_ENTRIES,
            metrics::Unit::Count,
            "Audit entries durable in the log (its tree size)."
        );
        metrics::describe_counter!(
            AUDIT_SYNCS,
            metrics::Unit::Count,
            "Audit group commits (one write and fdatasync each) since the server started."
        );
        let (log, report) = tokio::task::spawn_blocking(move || AuditLog::open(config))
            .await
            .map_err(|e| ServiceError::Internal(format!("audit open task: {e}")))?
            .map_err(|e| ServiceError::Internal(format!("audit log: {e}")))?;
        Ok((
            AuditTrail {
                log: Arc::new(log),
                gate,
            },
            report,
        ))
    }

    /// Appends an entry once it is durable.
    pub async fn record(&self, entry: AuditEntry) -> Result<Receipt, ServiceError> {
        self.log
            .append(entry)
            .await
            .map_err(|e| ServiceError::Internal(format!("audit append: {e}")))
    }

    /// Queues an entry and returns its receipt at once, not yet durable: await [`AuditTrail::durable_until`]
    /// before releasing the effect it records (the time in between can prepare the effect).
    pub fn submit(&self, entry: &AuditEntry) -> Result<Receipt, ServiceError> {
        self.log
            .submit(entry)
            .map_err(|e| ServiceError::Internal(format!("audit append: {e}")))
    }

    /// Resolves once entry `seq` is durable; an error means it never will be.
    pub async fn durable_until(&self, seq: u64) -> Result<(), ServiceError> {
        self.log
            .durable_until(seq)
            .await
            .map_err(|e| ServiceError::Internal(format!("audit append: {e}")))
    }

    /// Resolves once the effect recorded by entry `seq` may be released, per `audit.effect_gate`: once the entry is
    /// written to the log file (`written`: it survives a crash of Aura; its fdatasync is group-committed meanwhile)
    /// or once it is fdatasync'd (`durable`). An error means it never will be, so the effect must not happen.
    pub async fn effect_gate(&self, seq: u64) -> Result<(), ServiceError> {
        match self.gate {
            EffectGate::Written => self.log.written_until(seq).await,
            EffectGate::Durable => self.log.durable_until(seq).await,
        }
        .map_err(|e| ServiceError::Internal(format!("audit append: {e}")))
    }

    /// The configured effect gate.
    pub fn gate(&self) -> EffectGate {
        self.gate
    }

    /// Records an entry nobody waits on (a settlement after its effect): written at once when the write side is
    /// free, else group-committed with the next entries or on its own after `linger`; its fdatasync follows within
    /// the sync thread's gathering window. Returns without waiting for either (nothing is released by it).
    pub fn record_lazy(
        &self,
        entry: &AuditEntry,
        linger: Duration,
    ) -> Result<Receipt, ServiceError> {
        self.log
            .submit_lazy(entry, linger)
            .map_err(|e| ServiceError::Internal(format!("audit append: {e}")))
    }

    /// Entries durable and batches fdatasync'd since open.
    pub fn stats(&self) -> aura_audit::AuditStats {
        self.log.stats()
    }

    /// Appends an entry and signs a checkpoint covering it before returning (HALT, ESCALATE, approvals).
    pub async fn record_sealed(
        &self,
        entry: AuditEntry,
    ) -> Result<(Receipt, Checkpoint), ServiceError> {
        self.log
            .append_sealed(entry)
            .await
            .map_err(|e| ServiceError::Internal(format!("audit append: {e}")))
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.log.latest_checkpoint()
    }

    /// The verifier key (public).
    pub fn public_key(&self) -> &str {
        self.log.public_key()
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.log.tree_size()
    }

    /// One entry with its leaf hash.
    pub async fn entry(&self, seq: u64) -> Result<Option<LoggedEntry>, ServiceError> {
        let log = self.log.clone();
        blocking(move || log.entry(seq)).await
    }

    /// Entries matching `filter`, at most `limit`; the flag says whether more matched.
    pub async fn scan(
        &self,
        filter: ScanFilter,
        limit: usize,
    ) -> Result<(Vec<LoggedEntry>, bool), ServiceError> {
        let log = self.log.clone();
        blocking(move || {
            let mut items = Vec::new();
            for entry in log.scan(filter) {
                if items.len() == limit {
                    return Ok((items, true));
                }
                items.push(entry?);
            }
            Ok((items, false))
        })
        .await
    }

    /// Inclusion proof of entry `seq` in the tree of `size` entries, with that tree's root.
    pub async fn inclusion(
        &self,
        seq: u64,
        size: u64,
    ) -> Result<(InclusionProof, [u8; 32]), ServiceError> {
        let log = self.log.clone();
        blocking(move || Ok((log.inclusion_proof(seq, size)?, log.root_at(size)?))).await
    }

    /// Consistency proof between two tree sizes, with both roots.
    pub async fn consistency(
        &self,
        from: u64,
        to: u64,
    ) -> Result<(ConsistencyProof, [u8; 32], [u8; 32]), ServiceError> {
        let log = self.log.clone();
        blocking(move || {
            Ok((
                log.consistency_proof(from, to)?,
                log.root_at(from)?,
                log.root_at(to)?,
            ))
        })
        .await
    }

    /// Signs a final checkpoint and stops the writer.
    pub async fn close(&self) {
        if let Err(e) = self.log.close().await {
            tracing::error!(error = %e, "closing the audit log");
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, aura_audit::AuditError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("audit task: {e}")))?
        .map_err(|e| match e {
            aura_audit::AuditError::OutOfRange { .. } => ServiceError::Invalid(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        })
}

/// Periodic export of the audit log by `aura up` (`audit.export`, cargo feature `s3`).
#[cfg(feature = "s3")]
pub(crate) mod periodic {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use aura_audit::RiskLevel;
    use aura_audit::export::{ExportTarget, LockMode, Retention};
    use aura_config::AuditExportConfig;
    use tokio_util::sync::CancellationToken;

    use aura_core::Clock;

    use super::{AuditTrail, event, system_actor};

    /// Periodic exports, by result (`ok` or `error`).
    pub(crate) const EXPORTS: &str = "aura_audit_exports_total";

    /// The export target of an `audit.export` section; credentials come from the AWS environment variables.
    pub(crate) fn target(config: &AuditExportConfig) -> ExportTarget {
        ExportTarget {
            url: config.url.clone(),
            endpoint: config.endpoint.clone(),
            region: config.region.clone(),
            allow_http: config.allow_http,
            retention: config.retention_days.map(|days| Retention {
                mode: LockMode::Compliance,
                period: Duration::from_secs(days.saturating_mul(86_400)),
            }),
            credentials: None,
        }
    }

    /// Exports the log under `data_dir` to `config` at once and then every `interval_seconds` until `cancel`;
    /// each run is logged, counted in [`EXPORTS`] and audited as `audit.export`. An export cut short by
    /// `cancel` is simply resumed by the next start (exports are idempotent).
    pub(crate) async fn run(
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
        data_dir: PathBuf,
        config: AuditExportConfig,
        cancel: CancellationToken,
    ) {
        metrics::describe_counter!(
            EXPORTS,
            metrics::Unit::Count,
            "Periodic audit log exports to object storage, by result."
        );
        let target = target(&config);
        let (dir, _) = super::paths(&data_dir);
        let mut tick = tokio::time::interval(Duration::from_secs(config.interval_seconds));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let outcome = tokio::select! {
                () = cancel.cancelled() => break,
                outcome = aura_audit::export::export(&dir, &target, clock.now()) => outcome,
            };
            let (result, outcome, details) = match outcome {
                Ok(report) => {
                    tracing::info!(
                        url = %target.url,
                        uploaded = report.uploaded.len(),
                        uploaded_bytes = report.uploaded_bytes,
                        already_exported = report.already_exported,
                        entries = report.exported_entries,
                        manifest = %report.manifest_key,
                        "audit log exported"
                    );
                    let details = serde_json::json!({
                        "url": target.url,
                        "endpoint": target.endpoint,
                        "uploaded": report.uploaded.len(),
                        "uploaded_bytes": report.uploaded_bytes,
                        "exported_entries": report.exported_entries,
                        "manifest": report.manifest_key,
                    });
                    ("ok", "success", details)
                }
                Err(e) => {
                    tracing::warn!(url = %target.url, error = %e, "audit log export failed");
                    let details = serde_json::json!({
                        "url": target.url,
                        "endpoint": target.endpoint,
                        "error": e.to_string(),
                    });
                    ("error", "failure", details)
                }
            };
            metrics::counter!(EXPORTS, "result" => result).increment(1);
            let mut entry = event(
                clock.now(),
                system_actor(),
                ("audit", &target.url),
                "audit.export",
                RiskLevel::Low,
                details,
            );
            entry.outcome = outcome.to_owned();
            if let Err(e) = trail.record(entry).await {
                tracing::error!(error = %e, "could not audit the audit log export");
            }
        }
    }
}

/// The audit actor for an authenticated API caller.
pub fn actor_of(principal: &Principal) -> Actor {
    Actor {
        kind: if principal.agent.is_some() {
            ActorKind::Agent
        } else {
            ActorKind::Human
        },
        id: format!("token:{}:{}", principal.token_id, principal.token_name),
        ip: None,
    }
}

/// The audit actor for a local command-line user.
pub fn cli_actor() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor {
        kind: ActorKind::Human,
        id: format!("cli:{user}"),
        ip: None,
    }
}

/// The audit actor for Aura itself.
pub fn system_actor() -> Actor {
    Actor {
        kind: ActorKind::System,
        id: "aura".into(),
        ip: None,
    }
}

/// An entry for an administrative or system event.
pub fn event(
    time: aura_core::Timestamp,
    actor: Actor,
    resource: (&str, &str),
    action: &str,
    risk: RiskLevel,
    details: serde_json::Value,
) -> AuditEntry {
    let mut entry = AuditEntry::new(
        time,
        actor,
        Resource {
            kind: resource.0.into(),
            path: resource.1.into(),
        },
        action,
        "success",
        risk,
    );
    if let serde_json::Value::Object(map) = details {
        entry.details = map;
    }
    entry
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}
