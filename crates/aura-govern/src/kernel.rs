//! The governance kernel: `decide(&Action) -> Decision` and `settle`, combining the policy, halts, content
//! checks, loop detection, breakers, rate limits, bulkheads, budgets and approvals.
//!
//! Invariants: default deny and fail closed (any internal error is a DENY with rule `kernel_error`); verdicts
//! combine HALT > DENY > ESCALATE > ALLOW; capacity (rate cells, bulkhead slots, budget) is only held by an ALLOW
//! and is given back when the decision ends in anything else; a policy reload swaps one compiled snapshot
//! atomically. The kernel does no I/O of its own: state is reached through the injected handles (the ledger, the
//! approvals and halts stores), and the decision is handed back to the caller, which audits it before releasing
//! the effect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use aura_core::{Action, ActionKind, AgentName, Clock, Reason, Timestamp, Verdict};
use aura_policy::{
    BudgetAction, CounterQuery, Facts, InjectionMode, PolicySet, Scope as PolicyScope, SecretsMode,
    Subject, Widening,
};

use crate::approvals::{ApprovalCheck, Approvals};
use crate::content::{ContentChecker, ContentHint, ContentPolicy};
use crate::counters::{CounterEvent, SlidingCounters};
use crate::halts::{HaltCause, HaltState, HaltTarget, Halts};
use crate::ledger::{
    Amounts, BudgetKey, Dimension, Ledger, LedgerError, Limits, Period, ReservationId, ReserveLine,
    ReserveRequest, Scope as LedgerScope, Threshold as LedgerThreshold, ThresholdAction, Usage,
    graduated,
};
use crate::limits::{
    Admission, BreakerSpec, BulkheadSpec, Bulkheads, CircuitBreakers, Cost, Outcome, PermitId,
    Quota, RateLimitSpec, RateLimits, Scope as LimitScope,
};
use crate::loops::{LoopDetector, LoopSpec};

/// Operational settings of the kernel (the policy says what is allowed; these say how the machinery runs).
#[derive(Debug, Clone)]
pub struct KernelSettings {
    /// A reservation not settled within this is released by [`Kernel::expire`].
    pub reservation_ttl: Duration,
    /// Keys tracked per rate limit / breaker (bounded memory).
    pub max_keys: usize,
}

/// What the kernel obliges the caller to do besides following the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obligation {
    /// Forward and store the redacted args instead of the originals (secrets were found).
    Redact {
        /// What was found, e.g. `openai_key at /messages/0/content` (never the secret).
        findings: Vec<String>,
    },
    /// Use this model instead (a budget threshold was crossed).
    DowngradeModel {
        /// The model to use.
        to: String,
    },
    /// Cap the LLM context at this many tokens.
    ReduceContext {
        /// The cap.
        max_tokens: u64,
    },
    /// Wait for this approval, then retry the identical action.
    RequireApproval {
        /// The approval id.
        approval_id: String,
    },
    /// A budget crossed a warning threshold.
    Warn {
        /// The budget key.
        budget: String,
        /// Percent of the limit used.
        percent: u32,
    },
}

/// How a budget moved with this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetMove {
    /// The counter, e.g. `daily-cost/agent:planner/day:2026-11-21`.
    pub key: String,
    /// Spent + reserved micro-dollars before.
    pub before_micros: i64,
    /// Spent + reserved micro-dollars after.
    pub after_micros: i64,
    /// The cost limit, when one is set.
    pub limit_micros: Option<i64>,
}

/// The kernel's answer for one action.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Identifies the decision for [`Kernel::settle`].
    pub id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Every reason (rule id + message), strongest first.
    pub reasons: Vec<Reason>,
    /// What the caller must do besides the verdict.
    pub obligations: Vec<Obligation>,
    /// The budget reservation held for an ALLOW, to settle after the effect.
    pub reservation: Option<ReservationId>,
    /// When to retry (rate limits, open breakers).
    pub retry_after: Option<Duration>,
    /// The approval to wait on (ESCALATE) or that allowed this action.
    pub approval_id: Option<String>,
    /// Who approved, when an approval allowed this action.
    pub approved_by: Option<String>,
    /// The policy bundle the decision was made under.
    pub policy_hash: String,
    /// Budget movement.
    pub budget: Vec<BudgetMove>,
    /// The args with secrets redacted, when secrets were found.
    pub redacted_args: Option<serde_json::Value>,
    /// Agents halted or paused as a consequence of this decision (loops, budget pauses).
    pub halted: Vec<String>,
}

impl Decision {
    /// The decision as text: the verdict, then one `  rule: message` line per reason (data-driven tests).
    pub fn to_text(&self) -> String {
        let mut text = self.verdict.to_string();
        for r in &self.reasons {
            text.push_str(&format!("\n  {}: {}", r.rule, r.message));
        }
        text
    }
}

/// How an allowed action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    /// It ran and succeeded.
    Success,
    /// It ran and failed (counts towards breakers and failure counters).
    Failure,
    /// It did not run (the reservation is released, nothing is spent).
    Cancelled,
}

/// Real usage reported at settle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actual {
    /// Cost in micro-dollars.
    pub cost_micros: Option<i64>,
    /// Tokens used.
    pub tokens: Option<u64>,
    /// Effort in steps.
    pub effort: Option<i64>,
    /// Risk points.
    pub risk: Option<i64>,
}

/// The result of a settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The decision.
    pub decision_id: String,
    /// The agent.
    pub agent: String,
    /// The reservation that was settled or released.
    pub reservation: Option<String>,
    /// What was spent, in micro-dollars.
    pub spent_micros: i64,
    /// Budget keys touched.
    pub keys: Vec<String>,
}

/// Why a call into the kernel (other than `decide`, which never fails) failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No pending decision with this id (unknown, already settled, or expired).
    #[error("no pending decision `{0}`; it was never allowed, is already settled, or expired")]
    UnknownDecision(String),
    /// The reload would widen what an agent may do and was not forced.
    #[error("the new policy widens what agents may do in {} case(s); reload with force to accept", .0.len())]
    Widening(Vec<Widening>),
    /// The policy's limits could not be compiled.
    #[error("policy cannot be enforced: {0}")]
    Spec(String),
    /// A state backend failed.
    #[error("{0}")]
    Backend(String),
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// The bundle hash before.
    pub old_hash: String,
    /// The bundle hash now.
    pub new_hash: String,
    /// Widenings accepted because the reload was forced.
    pub widenings: Vec<Widening>,
}

/// A compiled policy snapshot and the machinery built from it. Swapped whole on reload.
struct Snapshot {
    set: Arc<PolicySet>,
    rates: RateLimits,
    breakers: CircuitBreakers,
    bulkheads: Bulkheads,
    loops: LoopDetector,
    content: ContentChecker,
}

/// What settle needs about an allowed action.
struct Pending {
    agent: AgentName,
    kind: ActionKind,
    reservation: Option<ReservationId>,
    keys: Vec<String>,
    rate_keys: Vec<(String, String)>,
    tokens_estimated: u64,
    permit: Option<PermitId>,
    breaker_keys: Vec<String>,
    created: Timestamp,
    snapshot: Arc<Snapshot>,
}

/// The governance kernel. Share it as `Arc<Kernel>`.
pub struct Kernel {
    settings: KernelSettings,
    clock: Arc<dyn Clock>,
    snapshot: RwLock<Arc<Snapshot>>,
    ledger: Arc<dyn Ledger>,
    approvals: Approvals,
    halts: Halts,
    counters: SlidingCounters,
    pending: Mutex<HashMap<String, Pending>>,
    next_id: std::sync::atomic::AtomicU64,
    id_prefix: String,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("policy_hash", &self.policy_hash())
            .finish_non_exhaustive()
    }
}

const KERNEL: &str = "kernel";

impl Kernel {
    /// A kernel enforcing `policy` with the given state handles.
    pub fn new(
        settings: KernelSettings,
        policy: PolicySet,
        clock: Arc<dyn Clock>,
        ledger: Arc<dyn Ledger>,
        approvals: Approvals,
        halts: Halts,
    ) -> Result<Kernel, KernelError> {
        let snapshot = Arc::new(compile(policy, &settings)?);
        let mut seed = [0u8; 4];
        // Decision ids only need to be unique per process lifetime; the prefix separates restarts.
        let prefix_seed = clock.now().as_millis();
        seed.copy_from_slice(&prefix_seed.to_le_bytes()[..4]);
        Ok(Kernel {
            settings,
            clock,
            snapshot: RwLock::new(snapshot),
            ledger,
            approvals,
            halts,
            counters: SlidingCounters::new(100_000),
            pending: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
            id_prefix: seed.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// The bundle hash of the policy in force.
    pub fn policy_hash(&self) -> String {
        self.current().set.bundle_hash().to_owned()
    }

    /// The policy set in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.current().set.clone()
    }

    /// The approvals registry.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    /// The halt registry.
    pub fn halts(&self) -> &Halts {
        &self.halts
    }

    /// The budget ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Swaps in a new policy set atomically. Refused when it widens what any agent may do, unless `force`.
    /// A refused or failed reload changes nothing.
    pub fn reload(&self, policy: PolicySet, force: bool) -> Result<ReloadReport, KernelError> {
        let current = self.current();
        let widenings = aura_policy::widening(&current.set, &policy);
        if !widenings.is_empty() && !force {
            return Err(KernelError::Widening(widenings));
        }
        let new_hash = policy.bundle_hash().to_owned();
        let snapshot = Arc::new(compile(policy, &self.settings)?);
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = snapshot;
        Ok(ReloadReport {
            old_hash: current.set.bundle_hash().to_owned(),
            new_hash,
            widenings,
        })
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn new_id(&self) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("d-{}-{n:x}", self.id_prefix)
    }

    /// Decides `action`. Never fails: an internal error is a DENY with rule `kernel_error`.
    pub async fn decide(&self, action: &Action) -> Decision {
        let snap = self.current();
        let now = self.clock.now();
        let mut d = Decision {
            id: self.new_id(),
            verdict: Verdict::Allow,
            reasons: Vec::new(),
            obligations: Vec::new(),
            reservation: None,
            retry_after: None,
            approval_id: None,
            approved_by: None,
            policy_hash: snap.set.bundle_hash().to_owned(),
            budget: Vec::new(),
            redacted_args: None,
            halted: Vec::new(),
        };
        let agent = action.agent().clone();

        // 1. Halts and pauses: nothing else matters.
        if let Some(halt) = self.halts.status(&agent) {
            let (verdict, rule) = match halt.state {
                HaltState::Halted => (Verdict::Halt, "halted"),
                HaltState::Paused => (Verdict::Deny, "paused"),
            };
            d.verdict = verdict;
            d.reasons.push(reason(
                rule,
                format!(
                    "agent `{agent}` is {rule}: {} (by {})",
                    halt.reason, halt.by
                ),
            ));
            self.count(&agent, action.kind(), d.verdict, now);
            return d;
        }

        // 2. The policy.
        let facts = CounterFacts {
            counters: &self.counters,
            now,
        };
        let eval = snap.set.evaluate(action, now, &facts);
        d.verdict = eval.verdict;
        d.reasons = eval.reasons;

        // 3. Content checks.
        let spec = snap.set.content();
        let report = snap.content.check(action);
        if report.verdict_hint != ContentHint::Clean {
            let (secrets, others): (Vec<_>, Vec<_>) =
                report.findings.iter().partition(|f| !f.denies());
            if !others.is_empty() {
                let verdict = if others
                    .iter()
                    .all(|f| matches!(f.kind, crate::content::FindingKind::Shell(_)))
                    && spec.shell_injection == InjectionMode::Escalate
                {
                    Verdict::Escalate
                } else if others
                    .iter()
                    .all(|f| matches!(f.kind, crate::content::FindingKind::Shell(_)))
                    && spec.shell_injection == InjectionMode::Allow
                {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                };
                if verdict != Verdict::Allow {
                    let before = d.verdict;
                    d.verdict = d.verdict.combine(verdict);
                    let why = reason("content", describe(&others));
                    // Strongest first: a reason that changed the verdict leads.
                    if d.verdict != before {
                        d.reasons.insert(0, why);
                    } else {
                        d.reasons.push(why);
                    }
                }
            }
            if !secrets.is_empty() {
                match spec.secrets {
                    SecretsMode::Deny => {
                        d.verdict = d.verdict.combine(Verdict::Deny);
                        d.reasons
                            .push(reason("content:secrets", describe(&secrets)));
                    }
                    SecretsMode::Redact => {
                        d.obligations.push(Obligation::Redact {
                            findings: secrets.iter().map(|f| f.to_string()).collect(),
                        });
                        d.redacted_args = report.redacted_args.clone();
                    }
                    SecretsMode::Allow => {}
                }
            }
        }

        // 4. Loops.
        let loops = snap.set.loops();
        let looped = snap.loops.observe(action, now);
        if looped.tripped {
            let before = d.verdict;
            d.verdict = d.verdict.combine(loops.then);
            let why = reason(
                "loop",
                format!(
                    "the same action repeated {} times within {} s",
                    looped.count,
                    loops.within_ms / 1000
                ),
            );
            // Strongest first: a reason that changed the verdict leads.
            if d.verdict != before {
                d.reasons.insert(0, why);
            } else {
                d.reasons.push(why);
            }
        }

        if d.verdict >= Verdict::Deny {
            if d.verdict == Verdict::Halt && looped.tripped {
                self.halt_for(
                    &agent,
                    "repeated the same action (loop)",
                    HaltCause::Loop,
                    &mut d,
                )
                .await;
            }
            self.count(&agent, action.kind(), d.verdict, now);
            return self.finish_denied(d);
        }

        // 5. Approvals first when the policy escalates: a pending approval holds no capacity.
        let mut approved = false;
        if d.verdict == Verdict::Escalate {
            match self.approvals.check(action, now).await {
                Ok(ApprovalCheck::Approved { id, by }) => {
                    approved = true;
                    d.verdict = Verdict::Allow;
                    d.approval_id = Some(id.to_string());
                    d.approved_by = Some(by.clone());
                    d.reasons.insert(
                        0,
                        reason("approved", format!("approval `{id}` granted by `{by}`")),
                    );
                }
                Ok(ApprovalCheck::Pending { id }) => {
                    d.approval_id = Some(id.to_string());
                    d.obligations.push(Obligation::RequireApproval {
                        approval_id: id.to_string(),
                    });
                }
                Ok(ApprovalCheck::Denied {
                    id,
                    by,
                    reason: why,
                }) => {
                    d.verdict = Verdict::Deny;
                    d.approval_id = Some(id.to_string());
                    d.reasons.insert(
                        0,
                        reason(
                            "approval_denied",
                            format!(
                                "approval `{id}` denied by `{by}`{}",
                                why.map(|w| format!(": {w}")).unwrap_or_default()
                            ),
                        ),
                    );
                }
                Ok(ApprovalCheck::Expired { .. } | ApprovalCheck::None) => {
                    let ttl = Duration::from_millis(snap.set.approvals().expire_after_ms);
                    match self.approvals.request(action, ttl).await {
                        Ok(approval) => {
                            d.approval_id = Some(approval.id.to_string());
                            d.obligations.push(Obligation::RequireApproval {
                                approval_id: approval.id.to_string(),
                            });
                        }
                        Err(e) => return self.kernel_error(d, &agent, action.kind(), now, e),
                    }
                }
                Err(e) => return self.kernel_error(d, &agent, action.kind(), now, e),
            }
            if d.verdict != Verdict::Allow {
                self.count(&agent, action.kind(), d.verdict, now);
                return d;
            }
        }

        // 6. Breakers (read + probe admission).
        let mut breaker_keys = Vec::new();
        for b in snap.set.breakers() {
            if b.kind.is_some_and(|k| k != action.kind()) || !b.target.is_match(action.target()) {
                continue;
            }
            let key = format!("{}|{}", b.id, action.target());
            match snap.breakers.allow(&key, now) {
                Ok(Admission::Unguarded) => {}
                Ok(_) => breaker_keys.push(key),
                Err(open) => {
                    d.verdict = Verdict::Deny;
                    d.retry_after = Some(open.retry_after);
                    d.reasons.insert(
                        0,
                        reason(
                            b.id.as_str(),
                            format!(
                                "circuit breaker open for `{}`; retry later",
                                action.target()
                            ),
                        ),
                    );
                    self.count(&agent, action.kind(), d.verdict, now);
                    return self.finish_denied(d);
                }
            }
        }

        // 7. Rate limits, all-or-nothing.
        let pools = snap.set.pools_of(agent.as_str());
        let tokens = crate::limits::action_tokens(action);
        let cost = Cost {
            requests: 1,
            tokens,
        };
        let rate_keys: Vec<(String, String)> = snap
            .set
            .rate_limits()
            .iter()
            .filter(|r| r.scope.applies_to(action, &pools))
            .filter_map(|r| {
                subject_key(&r.scope, &agent, action).map(|k| (r.id.as_str().to_owned(), k))
            })
            .collect();
        if let Err(limited) = snap.rates.check_keys(&rate_keys, cost, now) {
            d.verdict = Verdict::Deny;
            d.retry_after = limited.retry_after;
            let what = match limited.limited_by {
                crate::limits::LimitedBy::Tokens => "token",
                _ => "request",
            };
            d.reasons.insert(
                0,
                reason(
                    &limited.limit_id,
                    format!("{what} rate limit reached for `{}`", limited.key),
                ),
            );
            self.count(&agent, action.kind(), d.verdict, now);
            return self.finish_denied(d);
        }

        // 8. Bulkheads.
        let bulk_keys: Vec<(String, String)> = snap
            .set
            .bulkheads()
            .iter()
            .filter(|b| b.scope.applies_to(action, &pools))
            .filter_map(|b| {
                subject_key(&b.scope, &agent, action).map(|k| (b.id.as_str().to_owned(), k))
            })
            .collect();
        let permit = match snap.bulkheads.try_acquire_keys(&bulk_keys, now) {
            Ok(p) => p.detach(),
            Err(full) => {
                snap.rates.refund_keys(&rate_keys, cost, now);
                d.verdict = Verdict::Deny;
                d.reasons.insert(
                    0,
                    reason(
                        &full.bulkhead_id,
                        format!(
                            "{} actions already in flight for `{}`",
                            full.max_concurrent, full.key
                        ),
                    ),
                );
                self.count(&agent, action.kind(), d.verdict, now);
                return self.finish_denied(d);
            }
        };

        // 9. Budgets: reserve the estimate on every budget and pool in scope at once.
        let amounts = Amounts::from_estimate(action.estimate());
        let (lines, thresholds) = match budget_lines(&snap.set, action, &agent, &pools, now) {
            Ok(x) => x,
            Err(e) => {
                snap.rates.refund_keys(&rate_keys, cost, now);
                snap.bulkheads.release(permit);
                return self.kernel_error(d, &agent, action.kind(), now, e);
            }
        };
        let mut reservation = None;
        let mut keys = Vec::new();
        if !lines.is_empty() {
            let request = ReserveRequest {
                lines,
                amounts,
                expires_at: Timestamp::from_millis(
                    now.as_millis()
                        + i64::try_from(self.settings.reservation_ttl.as_millis())
                            .unwrap_or(i64::MAX),
                ),
            };
            match self.ledger.reserve(&request).await {
                Ok(res) => {
                    for k in &res.keys {
                        keys.push(k.key.to_string());
                        d.budget.push(BudgetMove {
                            key: k.key.to_string(),
                            before_micros: used(&k.before),
                            after_micros: used(&k.after),
                            limit_micros: k.after.limits.cost_micros,
                        });
                        if let Some(steps) = thresholds.get(k.key.as_str()) {
                            for act in graduated(&k.after, Dimension::Cost, steps) {
                                self.apply_threshold(act, &k.key, &k.after, action, &mut d)
                                    .await;
                            }
                        }
                    }
                    reservation = Some(res.id);
                }
                Err(LedgerError::Exceeded {
                    key,
                    dimension,
                    limit,
                    spent,
                    reserved,
                    requested,
                }) => {
                    d.verdict = Verdict::Deny;
                    d.reasons.insert(
                        0,
                        reason(
                            budget_id(&key),
                            format!(
                                "budget `{key}` exhausted: {dimension:?} limit {limit}, spent {spent}, reserved {reserved}, requested {requested}"
                            ),
                        ),
                    );
                }
                Err(e) => {
                    snap.rates.refund_keys(&rate_keys, cost, now);
                    snap.bulkheads.release(permit);
                    return self.kernel_error(d, &agent, action.kind(), now, e);
                }
            }
        }

        if d.verdict != Verdict::Allow {
            // Something after the policy refused: give back every held resource.
            snap.rates.refund_keys(&rate_keys, cost, now);
            snap.bulkheads.release(permit);
            if let Some(id) = reservation.take() {
                let _ = self.ledger.release(id).await;
            }
            if d.verdict == Verdict::Escalate && !approved && d.approval_id.is_none() {
                match self
                    .approvals
                    .request(
                        action,
                        Duration::from_millis(snap.set.approvals().expire_after_ms),
                    )
                    .await
                {
                    Ok(a) => {
                        d.approval_id = Some(a.id.to_string());
                        d.obligations.push(Obligation::RequireApproval {
                            approval_id: a.id.to_string(),
                        });
                    }
                    Err(e) => return self.kernel_error(d, &agent, action.kind(), now, e),
                }
            }
            self.count(&agent, action.kind(), d.verdict, now);
            return d;
        }

        // ALLOW: remember what settle needs.
        d.reservation = reservation;
        if action.kind() == ActionKind::Message
            && let Ok(to) = AgentName::new(action.target())
            && let Err(e) = self.halts.record_interaction(&agent, &to).await
        {
            tracing::warn!(error = %e, "could not record an agent interaction");
        }
        self.pending_lock().insert(
            d.id.clone(),
            Pending {
                agent: agent.clone(),
                kind: action.kind(),
                reservation,
                keys,
                rate_keys,
                tokens_estimated: tokens,
                permit: Some(permit),
                breaker_keys,
                created: now,
                snapshot: snap.clone(),
            },
        );
        self.count(&agent, action.kind(), d.verdict, now);
        d
    }

    /// Reports how an allowed action went: settles its budget reservation with the real amounts (or releases it),
    /// frees its bulkhead slots, feeds breakers and failure counters.
    /// When `owner` is given, only that agent's decisions can be settled (others read as unknown).
    pub async fn settle(
        &self,
        decision_id: &str,
        owner: Option<&AgentName>,
        outcome: ActionOutcome,
        actual: Actual,
    ) -> Result<Settled, KernelError> {
        let pending = {
            let mut map = self.pending_lock();
            match map.get(decision_id) {
                Some(p) if owner.is_none_or(|o| *o == p.agent) => map.remove(decision_id),
                _ => None,
            }
        }
        .ok_or_else(|| KernelError::UnknownDecision(decision_id.to_owned()))?;
        let now = self.clock.now();
        let snap = &pending.snapshot;
        if let Some(permit) = pending.permit {
            snap.bulkheads.release(permit);
        }
        if let Some(actual_tokens) = actual.tokens {
            snap.rates.settle_keys(
                &pending.rate_keys,
                pending.tokens_estimated,
                actual_tokens,
                now,
            );
        }
        let breaker_outcome = match outcome {
            ActionOutcome::Failure => Some(Outcome::Failure),
            ActionOutcome::Success => Some(Outcome::Success),
            ActionOutcome::Cancelled => None,
        };
        if let Some(o) = breaker_outcome {
            for key in &pending.breaker_keys {
                snap.breakers.record(key, o, now);
            }
        }
        if outcome == ActionOutcome::Failure {
            self.counters
                .record(&pending.agent, CounterEvent::Failure, pending.kind, now);
        }
        let mut spent = 0;
        if let Some(id) = &pending.reservation {
            let result = if outcome == ActionOutcome::Cancelled {
                self.ledger.release(*id).await.map(|_| ())
            } else {
                let amounts = Amounts {
                    cost_micros: actual.cost_micros.unwrap_or(0),
                    effort: actual.effort.unwrap_or(0),
                    risk: actual.risk.unwrap_or(0),
                };
                spent = amounts.cost_micros;
                self.ledger.settle(*id, amounts).await.map(|_| ())
            };
            result.map_err(|e| KernelError::Backend(e.to_string()))?;
        }
        Ok(Settled {
            decision_id: decision_id.to_owned(),
            agent: pending.agent.to_string(),
            reservation: pending.reservation.map(|r| r.to_string()),
            spent_micros: spent,
            keys: pending.keys,
        })
    }

    /// Releases reservations and pending decisions older than the reservation TTL; returns how many were dropped.
    pub async fn expire(&self) -> usize {
        let now = self.clock.now();
        let ttl = i64::try_from(self.settings.reservation_ttl.as_millis()).unwrap_or(i64::MAX);
        let stale: Vec<Pending> = {
            let mut pending = self.pending_lock();
            let ids: Vec<String> = pending
                .iter()
                .filter(|(_, p)| now.as_millis().saturating_sub(p.created.as_millis()) > ttl)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for p in &stale {
            if let Some(permit) = p.permit {
                p.snapshot.bulkheads.release(permit);
            }
        }
        if let Err(e) = self.ledger.expire(now).await {
            tracing::warn!(error = %e, "expiring budget reservations");
        }
        let snap = self.current();
        snap.rates.evict_idle(now);
        snap.breakers.evict_idle(now);
        snap.loops.evict_idle(now);
        self.counters.evict_idle(now);
        stale.len()
    }

    /// Current usage of every budget key this agent's actions draw on now (for `GET /budgets`).
    pub async fn budget_usage(
        &self,
        agent: &AgentName,
    ) -> Result<Vec<(String, Usage)>, KernelError> {
        let snap = self.current();
        let now = self.clock.now();
        let pools = snap.set.pools_of(agent.as_str());
        let mut out = Vec::new();
        for (key, _) in all_keys(&snap.set, agent, &pools, now)
            .map_err(|e| KernelError::Backend(e.to_string()))?
        {
            let usage = self
                .ledger
                .usage(&key)
                .await
                .map_err(|e| KernelError::Backend(e.to_string()))?;
            out.push((key.to_string(), usage));
        }
        Ok(out)
    }

    /// Lifts the hard stop and override requirement of a policy budget for the rest of its current period. `agent`
    /// names the agent for per-agent budgets; `pool` the pool for pool budgets. Returns the key overridden.
    pub async fn grant_override(
        &self,
        budget: &str,
        agent: Option<&AgentName>,
        pool: Option<&str>,
        by: &str,
        reason: &str,
    ) -> Result<String, KernelError> {
        let snap = self.current();
        let spec = snap
            .set
            .budgets()
            .iter()
            .find(|b| b.id.as_str() == budget)
            .ok_or_else(|| {
                KernelError::Spec(format!("no budget `{budget}` in the policy in force"))
            })?;
        let scope = match (&spec.scope.subject, agent, pool) {
            (Subject::Global, None, None) => LedgerScope::Global,
            (Subject::Agent(p), Some(a), None) if p.is_match(a.as_str()) => {
                LedgerScope::Agent(a.clone())
            }
            (Subject::Pool(p), None, Some(q)) if p == q => LedgerScope::Pool(p.clone()),
            (Subject::Global, ..) => {
                return Err(KernelError::Spec(format!(
                    "budget `{budget}` is global: name no agent or pool"
                )));
            }
            (Subject::Agent(p), ..) => {
                return Err(KernelError::Spec(format!(
                    "budget `{budget}` is per agent (`{}`): name one matching agent",
                    p.as_str()
                )));
            }
            (Subject::Pool(p), ..) => {
                return Err(KernelError::Spec(format!(
                    "budget `{budget}` is for pool `{p}`: name that pool"
                )));
            }
        };
        let key = BudgetKey::new(budget, &scope, ledger_period(spec.period), self.clock.now())
            .map_err(|e| KernelError::Spec(e.to_string()))?;
        self.ledger
            .grant_override(
                &key,
                &crate::ledger::OverrideGrant {
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                },
            )
            .await
            .map_err(|e| KernelError::Backend(e.to_string()))?;
        Ok(key.to_string())
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, agent: &AgentName, kind: ActionKind, verdict: Verdict, now: Timestamp) {
        match verdict {
            Verdict::Allow => {
                self.counters.record(agent, CounterEvent::Action, kind, now);
                if kind.is_write() {
                    self.counters.record(agent, CounterEvent::Write, kind, now);
                }
            }
            Verdict::Deny | Verdict::Halt => {
                self.counters.record(agent, CounterEvent::Denial, kind, now)
            }
            Verdict::Escalate => {}
        }
    }

    fn finish_denied(&self, d: Decision) -> Decision {
        d
    }

    fn kernel_error(
        &self,
        mut d: Decision,
        agent: &AgentName,
        kind: ActionKind,
        now: Timestamp,
        error: impl std::fmt::Display,
    ) -> Decision {
        tracing::error!(error = %error, agent = %agent, "kernel error; denying");
        d.verdict = Verdict::Deny;
        d.reasons.insert(
            0,
            reason(
                "kernel_error",
                format!("the kernel could not decide: {error}"),
            ),
        );
        d.obligations
            .retain(|o| !matches!(o, Obligation::RequireApproval { .. }));
        self.count(agent, kind, d.verdict, now);
        d
    }

    async fn halt_for(&self, agent: &AgentName, why: &str, cause: HaltCause, d: &mut Decision) {
        match self
            .halts
            .halt(HaltTarget::Agent(agent.clone()), why, KERNEL, cause)
            .await
        {
            Ok(halts) => d.halted.extend(halts.iter().map(|h| h.target.to_string())),
            Err(e) => tracing::error!(error = %e, agent = %agent, "halt not persisted"),
        }
    }

    async fn apply_threshold(
        &self,
        act: ThresholdAction,
        key: &BudgetKey,
        usage: &Usage,
        action: &Action,
        d: &mut Decision,
    ) {
        let percent = match usage.limits.cost_micros {
            Some(limit) if limit > 0 => {
                u32::try_from(used(usage).saturating_mul(100) / limit).unwrap_or(u32::MAX)
            }
            _ => 0,
        };
        match act {
            ThresholdAction::Warn => d.obligations.push(Obligation::Warn {
                budget: key.to_string(),
                percent,
            }),
            ThresholdAction::DowngradeModel { to } => {
                if action.kind() == ActionKind::LlmCall && action.target() != to {
                    d.obligations.push(Obligation::DowngradeModel { to });
                }
            }
            ThresholdAction::PauseAgents { agents } => {
                let targets = if agents.is_empty() {
                    vec![action.agent().clone()]
                } else {
                    agents
                };
                for agent in targets {
                    let why = format!("budget `{key}` at {percent}%");
                    match self
                        .halts
                        .pause(HaltTarget::Agent(agent.clone()), &why, KERNEL)
                        .await
                    {
                        Ok(_) => d.halted.push(agent.to_string()),
                        Err(e) => {
                            tracing::error!(error = %e, agent = %agent, "pause not persisted")
                        }
                    }
                }
            }
            ThresholdAction::HardStop => {
                d.verdict = d.verdict.combine(Verdict::Deny);
                d.reasons.insert(
                    0,
                    reason(
                        budget_id(key.as_str()),
                        format!("budget `{key}` hard stop at {percent}%"),
                    ),
                );
            }
            ThresholdAction::RequireOverride => {
                d.verdict = d.verdict.combine(Verdict::Escalate);
                d.reasons.insert(
                    0,
                    reason(
                        budget_id(key.as_str()),
                        format!("budget `{key}` at {percent}% needs an operator override"),
                    ),
                );
            }
        }
    }
}

fn reason(rule: &str, message: impl Into<String>) -> Reason {
    Reason {
        rule: rule.to_owned(),
        message: message.into(),
    }
}

fn describe(findings: &[&crate::content::Finding]) -> String {
    let list: Vec<String> = findings.iter().take(5).map(|f| f.to_string()).collect();
    let more = findings.len().saturating_sub(5);
    if more > 0 {
        format!("{} (and {more} more)", list.join("; "))
    } else {
        list.join("; ")
    }
}

fn used(u: &Usage) -> i64 {
    u.used(Dimension::Cost)
}

fn budget_id(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

/// The bucket key of a policy scope for this action: per agent, per pool, or global — and, when the scope names a
/// target pattern, per matching target (so `{ agent: "*", kind: tool_call, target: "*" }` limits each tool for each
/// agent, and a global scope with a target limits each tool across agents).
fn subject_key(scope: &PolicyScope, agent: &AgentName, action: &Action) -> Option<String> {
    let who = match &scope.subject {
        Subject::Global => "global".to_owned(),
        Subject::Agent(_) => format!("agent:{agent}"),
        Subject::Pool(pool) => format!("pool:{pool}"),
    };
    Some(match &scope.target {
        Some(_) => format!("{who}|{}", action.target()),
        None => who,
    })
}

fn ledger_period(p: aura_policy::Period) -> Period {
    match p {
        aura_policy::Period::Hour => Period::Hour,
        aura_policy::Period::Day => Period::Day,
        aura_policy::Period::Week => Period::Week,
        aura_policy::Period::Month => Period::Month,
    }
}

fn limits_of(l: &aura_policy::Limit) -> Limits {
    Limits {
        cost_micros: l.cost_micros,
        effort: l.effort.map(|e| i64::try_from(e).unwrap_or(i64::MAX)),
        risk: l.risk.map(|r| i64::try_from(r).unwrap_or(i64::MAX)),
    }
}

fn is_empty(l: &Limits) -> bool {
    l.cost_micros.is_none() && l.effort.is_none() && l.risk.is_none()
}

type Lines = (Vec<ReserveLine>, HashMap<String, Vec<LedgerThreshold>>);

/// Every budget key the action draws on, with its limits and graduated steps.
fn budget_lines(
    set: &PolicySet,
    action: &Action,
    agent: &AgentName,
    pools: &[String],
    now: Timestamp,
) -> Result<Lines, LedgerError> {
    let mut lines = Vec::new();
    let mut steps = HashMap::new();
    for b in set.budgets() {
        if !b.scope.applies_to(action, pools) {
            continue;
        }
        let limits = limits_of(&b.limit);
        if is_empty(&limits) {
            continue;
        }
        let scope = ledger_scope(&b.scope.subject, agent);
        let key = BudgetKey::new(b.id.as_str(), &scope, ledger_period(b.period), now)?;
        steps.insert(key.to_string(), b.actions.iter().map(threshold).collect());
        lines.push(ReserveLine { key, limits });
    }
    for (key, limits) in pool_keys(set, pools, now)? {
        lines.push(ReserveLine { key, limits });
    }
    Ok((lines, steps))
}

/// Budget keys of an agent regardless of the action (for usage reports).
fn all_keys(
    set: &PolicySet,
    agent: &AgentName,
    pools: &[String],
    now: Timestamp,
) -> Result<Vec<(BudgetKey, Limits)>, LedgerError> {
    let mut out = Vec::new();
    for b in set.budgets() {
        let applies = match &b.scope.subject {
            Subject::Global => true,
            Subject::Agent(p) => p.is_match(agent.as_str()),
            Subject::Pool(pool) => pools.contains(pool),
        };
        let limits = limits_of(&b.limit);
        if !applies || is_empty(&limits) {
            continue;
        }
        let scope = ledger_scope(&b.scope.subject, agent);
        out.push((
            BudgetKey::new(b.id.as_str(), &scope, ledger_period(b.period), now)?,
            limits,
        ));
    }
    out.extend(pool_keys(set, pools, now)?);
    Ok(out)
}

fn pool_keys(
    set: &PolicySet,
    pools: &[String],
    now: Timestamp,
) -> Result<Vec<(BudgetKey, Limits)>, LedgerError> {
    let mut out = Vec::new();
    for pool in set.pools().iter().filter(|p| pools.contains(&p.name)) {
        for (suffix, period, limit) in [
            ("daily", Period::Day, &pool.daily),
            ("monthly", Period::Month, &pool.monthly),
        ] {
            let limits = limits_of(limit);
            if is_empty(&limits) {
                continue;
            }
            let key = BudgetKey::new(
                &format!("pool-{suffix}"),
                &LedgerScope::Pool(pool.name.clone()),
                period,
                now,
            )?;
            out.push((key, limits));
        }
    }
    Ok(out)
}

fn ledger_scope(subject: &Subject, agent: &AgentName) -> LedgerScope {
    match subject {
        Subject::Global => LedgerScope::Global,
        Subject::Agent(_) => LedgerScope::Agent(agent.clone()),
        Subject::Pool(p) => LedgerScope::Pool(p.clone()),
    }
}

fn threshold(t: &aura_policy::Threshold) -> LedgerThreshold {
    let action = match &t.action {
        BudgetAction::Warn | BudgetAction::Alert => ThresholdAction::Warn,
        BudgetAction::DowngradeModel { to } => ThresholdAction::DowngradeModel { to: to.clone() },
        BudgetAction::ReduceContext { .. } => ThresholdAction::Warn,
        BudgetAction::Pause { agents } => ThresholdAction::PauseAgents {
            agents: agents
                .iter()
                .filter_map(|a| AgentName::new(a.as_str()).ok())
                .collect(),
        },
        BudgetAction::HardStop => ThresholdAction::HardStop,
        BudgetAction::RequireOverride => ThresholdAction::RequireOverride,
    };
    LedgerThreshold {
        at_percent: t.at_percent,
        action,
    }
}

/// Builds the rate limiters, breakers, bulkheads, loop detector and content checker a policy asks for.
fn compile(set: PolicySet, settings: &KernelSettings) -> Result<Snapshot, KernelError> {
    let spec_err = |e: &dyn std::fmt::Display| KernelError::Spec(e.to_string());
    let rates = RateLimits::new(
        set.rate_limits()
            .iter()
            .map(|r| RateLimitSpec {
                id: r.id.as_str().to_owned(),
                // The kernel decides applicability and keys itself (`check_keys`); the scope here is unused.
                scope: LimitScope::Key("{agent}".to_owned()),
                kinds: Vec::new(),
                requests: r.requests.map(quota),
                tokens: r.tokens.map(quota),
            })
            .collect(),
        settings.max_keys,
    )
    .map_err(|e| spec_err(&e))?;
    let breakers = CircuitBreakers::new(
        set.breakers()
            .iter()
            .map(|b| BreakerSpec {
                id: b.id.as_str().to_owned(),
                keys: format!("{}|*", b.id.as_str()),
                window: Duration::from_millis(b.within_ms),
                max_failures: Some(b.failures),
                failure_ratio: None,
                cool_down: Duration::from_millis(b.cool_down_ms),
                half_open_probes: 1,
            })
            .collect(),
        settings.max_keys,
    )
    .map_err(|e| spec_err(&e))?;
    let bulkheads = Bulkheads::new(
        set.bulkheads()
            .iter()
            .map(|b| BulkheadSpec {
                id: b.id.as_str().to_owned(),
                scope: LimitScope::Key("{agent}".to_owned()),
                kinds: Vec::new(),
                max_concurrent: b.max_concurrent,
            })
            .collect(),
        settings.reservation_ttl,
        settings.max_keys.max(1),
    )
    .map_err(|e| spec_err(&e))?;
    let l = set.loops();
    let loops = LoopDetector::new(LoopSpec {
        threshold: l.repeat.max(2),
        window: Duration::from_millis(l.within_ms),
        max_keys_per_agent: 1024,
        max_agents: 100_000,
    })
    .map_err(|e| spec_err(&e))?;
    let c = set.content();
    let content = ContentChecker::new(ContentPolicy {
        max_args_bytes: usize::try_from(c.max_args_bytes).unwrap_or(usize::MAX),
        max_string_bytes: usize::try_from(c.max_args_bytes).unwrap_or(usize::MAX),
        allowed_mime_types: None,
    })
    .map_err(|e| spec_err(&e))?;
    Ok(Snapshot {
        set: Arc::new(set),
        rates,
        breakers,
        bulkheads,
        loops,
        content,
    })
}

fn quota(r: aura_policy::Rate) -> Quota {
    Quota {
        count: r.count,
        per: Duration::from_millis(r.per_ms),
        burst: None,
    }
}

/// Policy counters read from the kernel's sliding windows.
struct CounterFacts<'a> {
    counters: &'a SlidingCounters,
    now: Timestamp,
}

impl Facts for CounterFacts<'_> {
    fn count(&self, agent: &AgentName, query: &CounterQuery, window_ms: u64) -> u64 {
        let event = match query.event {
            aura_policy::CounterEvent::Failure => CounterEvent::Failure,
            aura_policy::CounterEvent::Denial => CounterEvent::Denial,
            aura_policy::CounterEvent::Action => CounterEvent::Action,
            aura_policy::CounterEvent::Write => CounterEvent::Write,
        };
        self.counters.count(
            agent,
            event,
            query.kind,
            Duration::from_millis(window_ms),
            self.now,
        )
    }
}
