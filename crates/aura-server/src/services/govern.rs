//! Governance as a service: builds the kernel from the configuration, the store and the policy directory; decides
//! and settles actions, writing every decision to the audit trail before it is returned (decide before effect);
//! reloads policies atomically; decides approvals; halts and resumes agents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_audit::{Actor, ActorKind, AuditEntry, Resource, RiskLevel};
use aura_config::{Config, LedgerKind};
use aura_core::{Action, AgentName, Clock, Verdict};
use aura_govern::approvals::{Approval, ApprovalFilter, ApprovalId, Approvals, ApprovalsConfig};
use aura_govern::halts::{
    CascadePolicy, Halt, HaltCause, HaltTarget, Halts, HaltsConfig, WorkEdge,
};
use aura_govern::kernel::{
    ActionOutcome, Actual, Decision, Kernel, KernelError, KernelSettings, ReloadReport, Settled,
};
use aura_govern::ledger::{Ledger, MemoryLedger, StoreLedger, Usage};
use aura_policy::{OnHalt, PolicySet};
use aura_store::Store;

use super::ServiceError;
use super::audit::{self, AuditTrail};

/// Decisions by verdict and rule.
pub const DECISIONS: &str = "aura_decisions_total";
/// Decision latency, kernel plus audit append.
pub const DECISION_DURATION: &str = "aura_decision_duration_seconds";
/// Halts and pauses applied, by cause.
pub const HALTS: &str = "aura_halts_total";
/// Budget spent + reserved against the limit, by budget and scope (micro-dollars), updated on every decision.
pub const BUDGET_USED: &str = "aura_budget_used_micros";
/// Policy reloads by result.
pub const RELOADS: &str = "aura_policy_reloads_total";
/// Remaining budget by budget and scope (micro-dollars), updated on every decision that reserves.
pub const BUDGET_REMAINING: &str = "aura_budget_remaining_micros";
/// Settled spend by budget and scope (micro-dollars); its rate is the drain rate.
pub const BUDGET_SPENT: &str = "aura_budget_spent_micros_total";
/// Allowed actions (steps) by agent.
pub const STEPS: &str = "aura_agent_steps_total";

/// The governance plane of a running server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Governance {
    kernel: Arc<Kernel>,
    audit: AuditTrail,
    clock: Arc<dyn Clock>,
    policies_dir: PathBuf,
    shared_store: bool,
}

/// A decision as the edge returns it: the kernel's answer plus where it sits in the audit log.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The decision.
    pub decision: Decision,
    /// The audit sequence number of the decision.
    pub audit_seq: u64,
}

/// A decision submitted to the audit trail but not yet known durable (from [`Governance::decide_staged`]).
#[derive(Debug)]
pub struct Staged {
    governance: Governance,
    agent: AgentName,
    decision: Decision,
    record: Record,
    started: Instant,
}

#[derive(Debug)]
enum Record {
    Pending(u64),
    Durable(u64),
    Failed(ServiceError),
}

impl Staged {
    /// The kernel's decision as submitted: plan the effect from it, but act only on what [`Staged::durable`]
    /// returns.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Waits until the decision's audit entry passes the effect gate (`audit.effect_gate`: written to the log
    /// file, or fdatasync'd) and returns it; if it cannot be recorded it becomes DENY (`audit_unavailable`) and
    /// anything it held is released.
    pub async fn durable(self) -> Decided {
        let Staged {
            governance,
            agent,
            decision,
            record,
            started,
        } = self;
        let appended = match record {
            Record::Durable(seq) => Ok(seq),
            Record::Pending(seq) => governance.audit.effect_gate(seq).await.map(|()| seq),
            Record::Failed(e) => Err(e),
        };
        governance.finish(&agent, decision, appended, started).await
    }
}

/// Loads the policy set in `dir`; a missing directory is an empty set (every action denied).
pub fn load_policies(dir: &Path) -> Result<PolicySet, ServiceError> {
    if !dir.exists() {
        tracing::warn!(dir = %dir.display(), "no policy directory: every action will be denied");
        return Ok(PolicySet::empty());
    }
    PolicySet::load_dir(dir).map_err(|e| ServiceError::Invalid(e.to_string()))
}

impl Governance {
    /// Builds the kernel: policies from `policies.dir`, the ledger per `governance.ledger`, approvals and halts in
    /// the store.
    pub async fn open(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        audit: AuditTrail,
    ) -> Result<Governance, ServiceError> {
        let dir = config.policies.dir.clone();
        let set = load_policies(&dir)?;
        tracing::info!(
            dir = %dir.display(),
            hash = %set.bundle_hash(),
            rules = set.rules().len(),
            agents = set.agents().len(),
            "policies loaded"
        );
        let ledger: Arc<dyn Ledger> = match config.governance.ledger {
            LedgerKind::Store => Arc::new(StoreLedger::new(store.clone(), clock.clone())),
            LedgerKind::Memory => Arc::new(MemoryLedger::new(clock.clone())),
        };
        let approvals = Approvals::new(
            store.clone(),
            clock.clone(),
            ApprovalsConfig { single_use: true },
        );
        let halts = Halts::open(store.clone(), clock.clone(), halts_config(&set))
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let kernel = Kernel::new(
            KernelSettings {
                reservation_ttl: Duration::from_secs(config.governance.reservation_ttl_seconds),
                max_keys: 100_000,
            },
            set,
            clock.clone(),
            ledger,
            approvals,
            halts,
        )
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        metrics::describe_counter!(
            DECISIONS,
            metrics::Unit::Count,
            "Kernel decisions, by verdict and deciding rule."
        );
        metrics::describe_histogram!(
            DECISION_DURATION,
            metrics::Unit::Seconds,
            "Time to decide an action, including the durable audit append."
        );
        metrics::describe_counter!(
            HALTS,
            metrics::Unit::Count,
            "Halts and pauses applied, by cause."
        );
        metrics::describe_gauge!(
            BUDGET_USED,
            "Budget spent plus reserved, in micro-dollars, by budget key."
        );
        metrics::describe_counter!(RELOADS, metrics::Unit::Count, "Policy reloads, by result.");
        metrics::describe_gauge!(
            BUDGET_REMAINING,
            "Budget remaining in micro-dollars, by budget and scope."
        );
        metrics::describe_counter!(
            BUDGET_SPENT,
            "Settled spend in micro-dollars, by budget and scope; rate() is the drain rate."
        );
        metrics::describe_counter!(
            STEPS,
            metrics::Unit::Count,
            "Allowed actions (steps), by agent."
        );
        let shared_store = store.backend() == "postgres";
        Ok(Governance {
            kernel: Arc::new(kernel),
            audit,
            clock,
            policies_dir: dir,
            shared_store,
        })
    }

    /// The kernel (for benchmarks and maintenance).
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The current time on the governance clock.
    pub fn now(&self) -> aura_core::Timestamp {
        self.clock.now()
    }

    /// Where policies are read from.
    pub fn policies_dir(&self) -> &Path {
        &self.policies_dir
    }

    /// Decides `action` and appends the decision to the audit trail before returning it. If the audit append
    /// fails, the decision becomes DENY (`audit_unavailable`) and anything it held is released: no effect without
    /// a record.
    pub async fn decide(&self, action: &Action, caller: Actor) -> Decided {
        self.decide_staged(action, caller).await.durable().await
    }

    /// Decides `action` and submits the decision to the audit trail without waiting for it to be durable, so the
    /// caller can prepare the effect during the group commit; [`Staged::durable`] then waits and yields the
    /// decision to act on (DENY `audit_unavailable` if the record failed). Nothing may be released before it.
    pub async fn decide_staged(&self, action: &Action, caller: Actor) -> Staged {
        let started = Instant::now();
        let decision = self.kernel.decide(action).await;
        let entry = decision_entry(self.clock.now(), caller, action, &decision);
        let sealed = matches!(decision.verdict, Verdict::Halt | Verdict::Escalate)
            || decision.approved_by.is_some();
        let record = if sealed {
            match self.audit.record_sealed(entry).await {
                Ok((r, _)) => Record::Durable(r.seq),
                Err(e) => Record::Failed(e),
            }
        } else {
            match self.audit.submit(&entry) {
                Ok(r) => Record::Pending(r.seq),
                Err(e) => Record::Failed(e),
            }
        };
        Staged {
            governance: self.clone(),
            agent: action.agent().clone(),
            decision,
            record,
            started,
        }
    }

    async fn finish(
        &self,
        agent: &AgentName,
        mut decision: Decision,
        appended: Result<u64, ServiceError>,
        started: Instant,
    ) -> Decided {
        let audit_seq = match appended {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = %e, "audit append failed; denying");
                if decision.verdict == Verdict::Allow {
                    let _ = self
                        .kernel
                        .settle(
                            &decision.id,
                            None,
                            ActionOutcome::Cancelled,
                            Actual::default(),
                        )
                        .await;
                }
                decision.verdict = Verdict::Deny;
                decision.reservation = None;
                decision.reasons.insert(
                    0,
                    aura_core::Reason {
                        rule: "audit_unavailable".into(),
                        message: "the decision could not be recorded, so it is refused".into(),
                    },
                );
                0
            }
        };
        let rule = decision
            .reasons
            .first()
            .map_or_else(|| "none".to_owned(), |r| r.rule.clone());
        metrics::counter!(DECISIONS, "verdict" => decision.verdict.as_str(), "rule" => rule)
            .increment(1);
        metrics::histogram!(DECISION_DURATION).record(started.elapsed().as_secs_f64());
        for b in &decision.budget {
            let budget = budget_label(&b.key);
            metrics::gauge!(BUDGET_USED, "budget" => budget.clone()).set(b.after_micros as f64);
            if let Some(limit) = b.limit_micros {
                metrics::gauge!(BUDGET_REMAINING, "budget" => budget)
                    .set((limit - b.after_micros) as f64);
            }
        }
        if decision.verdict == Verdict::Allow {
            metrics::counter!(STEPS, "agent" => agent.to_string()).increment(1);
        }
        if !decision.halted.is_empty() {
            metrics::counter!(HALTS, "cause" => "kernel").increment(decision.halted.len() as u64);
        }
        Decided {
            decision,
            audit_seq,
        }
    }

    /// Settles an allowed decision and audits it. `owner` restricts settling to that agent's decisions.
    pub async fn settle(
        &self,
        decision_id: &str,
        owner: Option<&AgentName>,
        outcome: ActionOutcome,
        actual: Actual,
        caller: Actor,
    ) -> Result<Settled, ServiceError> {
        self.settle_recorded(decision_id, owner, outcome, actual, caller, None)
            .await
    }

    /// [`Governance::settle`] for a settlement that releases no effect (it follows one): its audit entry is written
    /// at once when the audit log's write side is free, else rides with the next decisions' batch or is written on
    /// its own after `linger`. Resolves once the entry is recorded, without waiting for its fdatasync (which
    /// follows within the sync thread's gathering window), since nothing waits on it.
    pub async fn settle_lazy(
        &self,
        decision_id: &str,
        owner: Option<&AgentName>,
        outcome: ActionOutcome,
        actual: Actual,
        caller: Actor,
        linger: Duration,
    ) -> Result<Settled, ServiceError> {
        self.settle_recorded(decision_id, owner, outcome, actual, caller, Some(linger))
            .await
    }

    async fn settle_recorded(
        &self,
        decision_id: &str,
        owner: Option<&AgentName>,
        outcome: ActionOutcome,
        actual: Actual,
        caller: Actor,
        linger: Option<Duration>,
    ) -> Result<Settled, ServiceError> {
        let settled = self
            .kernel
            .settle(decision_id, owner, outcome, actual)
            .await
            .map_err(|e| match e {
                KernelError::UnknownDecision(_) => ServiceError::NotFound(e.to_string()),
                other => ServiceError::Unavailable(other.to_string()),
            })?;
        if settled.spent_micros > 0 {
            for key in &settled.keys {
                metrics::counter!(BUDGET_SPENT, "budget" => budget_label(key))
                    .increment(u64::try_from(settled.spent_micros).unwrap_or(0));
            }
        }
        let outcome_text = match outcome {
            ActionOutcome::Success => "success",
            ActionOutcome::Failure => "failure",
            ActionOutcome::Cancelled => "cancelled",
        };
        let mut entry = AuditEntry::new(
            self.clock.now(),
            caller,
            Resource {
                kind: "decision".into(),
                path: decision_id.into(),
            },
            "settle",
            outcome_text,
            RiskLevel::Low,
        );
        entry.agent = AgentName::new(settled.agent.as_str()).ok();
        entry.budget_after_micros = Some(settled.spent_micros);
        if let serde_json::Value::Object(map) = serde_json::json!({
            "decision_id": decision_id,
            "reservation": settled.reservation,
            "spent_micros": settled.spent_micros,
            "tokens": actual.tokens,
            "keys": settled.keys,
        }) {
            entry.details = map;
        }
        match linger {
            Some(linger) => self.audit.record_lazy(&entry, linger)?,
            None => self.audit.record(entry).await?,
        };
        Ok(settled)
    }

    /// Reloads the policy directory atomically. A set that widens what agents may do is refused unless `force`.
    pub async fn reload(&self, force: bool, caller: Actor) -> Result<ReloadReport, ServiceError> {
        let dir = self.policies_dir.clone();
        let set = tokio::task::spawn_blocking(move || load_policies(&dir))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let set = match set {
            Ok(set) => set,
            Err(e) => {
                metrics::counter!(RELOADS, "result" => "invalid").increment(1);
                return Err(e);
            }
        };
        let report = match self.kernel.reload(set, force) {
            Ok(r) => r,
            Err(KernelError::Widening(w)) => {
                metrics::counter!(RELOADS, "result" => "refused").increment(1);
                let lines: Vec<String> = w.iter().take(20).map(|x| format!("  {x}")).collect();
                return Err(ServiceError::Conflict(format!(
                    "the new policy widens what agents may do ({} case(s)); reload with force to accept:\n{}",
                    w.len(),
                    lines.join("\n")
                )));
            }
            Err(e) => {
                metrics::counter!(RELOADS, "result" => "invalid").increment(1);
                return Err(ServiceError::Invalid(e.to_string()));
            }
        };
        metrics::counter!(RELOADS, "result" => "applied").increment(1);
        let mut entry = audit::event(
            self.clock.now(),
            caller,
            ("policy", &self.policies_dir.display().to_string()),
            "policy.reload",
            if report.widenings.is_empty() {
                RiskLevel::Medium
            } else {
                RiskLevel::High
            },
            serde_json::json!({
                "old_hash": report.old_hash,
                "new_hash": report.new_hash,
                "forced": force,
                "widenings": report.widenings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            }),
        );
        entry.policy_hash = Some(report.new_hash.clone());
        self.audit.record_sealed(entry).await?;
        tracing::info!(old = %report.old_hash, new = %report.new_hash, widened = report.widenings.len(), "policies reloaded");
        Ok(report)
    }

    /// Approvals, optionally filtered.
    pub async fn approvals(&self, filter: ApprovalFilter) -> Result<Vec<Approval>, ServiceError> {
        self.kernel
            .approvals()
            .list(&filter)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))
    }

    /// Approves or denies a pending approval, recording who did it.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        reason: Option<&str>,
        caller: Actor,
    ) -> Result<Approval, ServiceError> {
        let id = ApprovalId::parse(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no approval `{id}`")))?;
        let by = caller.id.clone();
        let approvals = self.kernel.approvals();
        let result = if approve {
            approvals.approve(&id, &by, reason).await
        } else {
            approvals.deny(&id, &by, reason).await
        };
        let approval = result.map_err(|e| match e {
            aura_govern::approvals::ApprovalError::NotFound(_) => {
                ServiceError::NotFound(e.to_string())
            }
            aura_govern::approvals::ApprovalError::AlreadyDecided { .. }
            | aura_govern::approvals::ApprovalError::Expired { .. } => {
                ServiceError::Conflict(e.to_string())
            }
            other => ServiceError::Unavailable(other.to_string()),
        })?;
        let mut entry = audit::event(
            self.clock.now(),
            caller,
            ("approval", approval.id.as_str()),
            if approve {
                "approval.approve"
            } else {
                "approval.deny"
            },
            RiskLevel::High,
            serde_json::json!({
                "reason": reason,
                "kind": approval.kind,
                "target": approval.target,
                "action_hash": approval.action_hash,
            }),
        );
        entry.agent = Some(approval.agent.clone());
        entry.approval = Some(approval.id.to_string());
        entry.args_hash = Some(approval.action_hash.clone());
        self.audit.record_sealed(entry).await?;
        Ok(approval)
    }

    /// Current halts and pauses.
    pub fn halts(&self) -> Vec<Halt> {
        self.kernel.halts().list()
    }

    /// Halts (or pauses) an agent or every agent, cascading per policy; audited and sealed.
    pub async fn halt(
        &self,
        target: HaltTarget,
        reason: &str,
        pause: bool,
        caller: Actor,
    ) -> Result<Vec<Halt>, ServiceError> {
        let halts = self.kernel.halts();
        let applied = if pause {
            halts
                .pause(target.clone(), reason, &caller.id)
                .await
                .map(|h| vec![h])
        } else {
            halts
                .halt(target.clone(), reason, &caller.id, HaltCause::Manual)
                .await
        }
        .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        metrics::counter!(HALTS, "cause" => "manual").increment(applied.len() as u64);
        let mut entry = audit::event(
            self.clock.now(),
            caller,
            ("agent", &target.to_string()),
            if pause { "agent.pause" } else { "agent.halt" },
            RiskLevel::Critical,
            serde_json::json!({
                "reason": reason,
                "applied": applied.iter().map(|h| serde_json::json!({
                    "agent": h.target.to_string(),
                    "state": format!("{:?}", h.state).to_lowercase(),
                    "cause": cause_text(&h.cause),
                })).collect::<Vec<_>>(),
            }),
        );
        entry.cause = Some(format!("manual: {reason}"));
        if let HaltTarget::Agent(a) = &target {
            entry.agent = Some(a.clone());
        }
        self.audit.record_sealed(entry).await?;
        Ok(applied)
    }

    /// Lifts a halt or pause (and the cascades it caused); audited.
    pub async fn resume(
        &self,
        target: HaltTarget,
        caller: Actor,
    ) -> Result<Vec<String>, ServiceError> {
        let resumed = self
            .kernel
            .halts()
            .resume(target.clone(), &caller.id)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let names: Vec<String> = resumed.iter().map(ToString::to_string).collect();
        let entry = audit::event(
            self.clock.now(),
            caller,
            ("agent", &target.to_string()),
            "agent.resume",
            RiskLevel::High,
            serde_json::json!({ "resumed": names }),
        );
        self.audit.record_sealed(entry).await?;
        Ok(names)
    }

    /// Budget usage of the keys an agent draws on.
    pub async fn budgets(&self, agent: &AgentName) -> Result<Vec<(String, Usage)>, ServiceError> {
        self.kernel
            .budget_usage(agent)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))
    }

    /// Grants an operator override on a budget (lifts hard stop / require-override until the period ends); audited.
    pub async fn grant_override(
        &self,
        budget: &str,
        agent: Option<&AgentName>,
        pool: Option<&str>,
        reason: &str,
        caller: Actor,
    ) -> Result<String, ServiceError> {
        let key = self
            .kernel
            .grant_override(budget, agent, pool, &caller.id, reason)
            .await
            .map_err(|e| match e {
                KernelError::Spec(msg) => ServiceError::Invalid(msg),
                other => ServiceError::Unavailable(other.to_string()),
            })?;
        let mut entry = audit::event(
            self.clock.now(),
            caller,
            ("budget", &key),
            "budget.override",
            RiskLevel::High,
            serde_json::json!({ "reason": reason }),
        );
        entry.agent = agent.cloned();
        self.audit.record_sealed(entry).await?;
        Ok(key)
    }

    /// Periodic upkeep: expire reservations and stale decisions; with a shared store, pick up halts made by other
    /// nodes.
    pub async fn upkeep(&self) {
        let dropped = self.kernel.expire().await;
        if dropped > 0 {
            tracing::info!(dropped, "released decisions that were never settled");
        }
        if self.shared_store
            && let Err(e) = self.kernel.halts().reload().await
        {
            tracing::warn!(error = %e, "could not refresh halts from the shared store");
        }
    }
}

/// A budget key without its period window (`daily/agent:bot/day:2026-11-21` → `daily/agent:bot`), so metric
/// series do not multiply with every new day.
fn budget_label(key: &str) -> String {
    key.rsplit_once('/')
        .map_or(key, |(head, _)| head)
        .to_owned()
}

fn cause_text(cause: &HaltCause) -> String {
    match cause {
        HaltCause::Manual => "manual".into(),
        HaltCause::Cascade { from } => format!("cascade from {from}"),
        HaltCause::Loop => "loop".into(),
        HaltCause::Budget => "budget".into(),
    }
}

/// The cascade graph declared in the policy: `depends_on: [x]` means x sends work to this agent.
fn halts_config(set: &PolicySet) -> HaltsConfig {
    let mut edges = Vec::new();
    let mut policies = HashMap::new();
    for spec in set.agents() {
        let Ok(agent) = AgentName::new(spec.name.as_str()) else {
            continue;
        };
        for upstream in &spec.depends_on {
            if let Ok(from) = AgentName::new(upstream.as_str()) {
                edges.push(WorkEdge {
                    from,
                    to: agent.clone(),
                });
            }
        }
        let policy = match spec.on_halt {
            OnHalt::None => CascadePolicy::None,
            OnHalt::PauseDependents => CascadePolicy::PauseDependents,
            OnHalt::HaltDependents => CascadePolicy::HaltDependents,
        };
        policies.insert(agent, policy);
    }
    HaltsConfig {
        edges,
        policies,
        default_policy: CascadePolicy::None,
    }
}

fn decision_entry(
    now: aura_core::Timestamp,
    caller: Actor,
    action: &Action,
    d: &Decision,
) -> AuditEntry {
    let risk = match d.verdict {
        Verdict::Halt => RiskLevel::Critical,
        Verdict::Escalate => RiskLevel::High,
        Verdict::Deny => RiskLevel::Medium,
        Verdict::Allow => RiskLevel::Low,
    };
    let actor = if caller.kind == ActorKind::Agent {
        caller
    } else {
        Actor {
            kind: caller.kind,
            id: caller.id,
            ip: caller.ip,
        }
    };
    let mut entry = AuditEntry::new(
        now,
        actor,
        Resource {
            kind: action.kind().as_str().into(),
            path: action.target().into(),
        },
        "decide",
        d.verdict.as_str(),
        risk,
    );
    entry.agent = Some(action.agent().clone());
    entry.task = action.task().map(str::to_owned);
    entry.action_kind = Some(action.kind());
    entry.target = Some(action.target().to_owned());
    entry.args_hash = Some(action.args_hash_hex());
    entry.verdict = Some(d.verdict);
    entry.rules = d.reasons.iter().map(|r| r.rule.clone()).collect();
    entry.policy_hash = Some(d.policy_hash.clone());
    entry.budget_before_micros = d.budget.first().map(|b| b.before_micros);
    entry.budget_after_micros = d.budget.first().map(|b| b.after_micros);
    entry.approval = d.approval_id.clone();
    if !d.halted.is_empty() {
        entry.cause = Some(format!("halted: {}", d.halted.join(", ")));
    }
    if let serde_json::Value::Object(map) = serde_json::json!({
        "decision_id": d.id,
        "reasons": d.reasons.iter().map(|r| serde_json::json!({"rule": r.rule, "message": r.message})).collect::<Vec<_>>(),
        "obligations": d.obligations.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>(),
        "reservation": d.reservation.map(|r| r.to_string()),
        "retry_after_ms": d.retry_after.map(|r| r.as_millis() as u64),
        "approved_by": d.approved_by,
        "budget": d.budget.iter().map(|b| serde_json::json!({"key": b.key, "before_micros": b.before_micros, "after_micros": b.after_micros, "limit_micros": b.limit_micros})).collect::<Vec<_>>(),
        "estimate": action.estimate(),
    }) {
        entry.details = map;
    }
    entry
}
