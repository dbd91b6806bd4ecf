//! Human approvals for escalated actions, bound to the exact action.
//!
//! When the kernel's verdict is ESCALATE it calls [`Approvals::request`], which stores a pending approval for the
//! agent and the action's hash (kind + target + canonical args, [`Action::args_hash`]); asking again for the same
//! pending action returns the same approval. An operator approves or denies it before it expires. When the agent
//! retries, [`Approvals::check`] allows the action only if it is identical (same hash, same agent) and the approval
//! is unexpired, and — unless configured otherwise — consumes it, so one approval admits one execution.

use std::sync::Arc;
use std::time::Duration;

use aura_core::{Action, AgentName, Clock, Timestamp};
use aura_store::{
    ApprovalDecideOutcome, ApprovalDecision, ApprovalRecord, ApprovalStatus as StoredStatus,
    GovernStore, StoreError,
};

/// The approvals service.
#[derive(Debug, Clone)]
pub struct Approvals {
    store: Arc<dyn GovernStore>,
    clock: Arc<dyn Clock>,
    config: ApprovalsConfig,
}

/// How approvals behave. No default: choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// Whether an approval admits one execution only (`true`) or every identical retry until it expires.
    pub single_use: bool,
}

/// Identifies an approval: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApprovalId(String);

impl ApprovalId {
    /// Parses the 32-hex-digit form.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn random() -> Self {
        let (a, b) = (crate::ledger::random_u64(), crate::ledger::random_u64());
        Self(format!("{a:016x}{b:016x}"))
    }
}

impl std::fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an approval stands, as of the time it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Waiting for a decision.
    Pending,
    /// Approved.
    Approved,
    /// Denied.
    Denied,
    /// Expired before anyone decided.
    Expired,
}

impl ApprovalState {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
        }
    }
}

/// An approval request and its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Its id.
    pub id: ApprovalId,
    /// The acting agent.
    pub agent: AgentName,
    /// The action's hash, lowercase hex.
    pub action_hash: String,
    /// The action's kind.
    pub kind: String,
    /// The action's target.
    pub target: String,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When it expires (undecided, or unused).
    pub expires_at: Timestamp,
    /// Its state as of the read (a pending approval past `expires_at` reads as expired).
    pub state: ApprovalState,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Timestamp>,
    /// The decider's reason.
    pub reason: Option<String>,
    /// When the approved action was executed (single-use approvals).
    pub consumed_at: Option<Timestamp>,
}

/// Which approvals [`Approvals::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only this agent's.
    pub agent: Option<AgentName>,
    /// Only in this state.
    pub state: Option<ApprovalState>,
}

/// What [`Approvals::check`] found for an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalCheck {
    /// Approved, unexpired, and (single-use) now consumed: allow this execution.
    Approved {
        /// The approval.
        id: ApprovalId,
        /// Who approved.
        by: String,
    },
    /// Waiting for a decision.
    Pending {
        /// The approval.
        id: ApprovalId,
    },
    /// Denied (and the denial has not expired).
    Denied {
        /// The approval.
        id: ApprovalId,
        /// Who denied.
        by: String,
        /// Why.
        reason: Option<String>,
    },
    /// The latest approval expired: request a new one.
    Expired {
        /// The approval.
        id: ApprovalId,
    },
    /// No usable approval: none was requested, or the last one was used.
    None,
}

/// Why an approvals operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No approval has this id.
    #[error("approval `{0}` not found")]
    NotFound(String),
    /// It was decided before.
    #[error("approval `{id}` was already {state} by `{by}`")]
    AlreadyDecided {
        /// The approval.
        id: String,
        /// `approved` or `denied`.
        state: &'static str,
        /// Who decided it.
        by: String,
    },
    /// It expired before anyone decided.
    #[error("approval `{id}` expired at {expires_at} before it was decided")]
    Expired {
        /// The approval.
        id: String,
        /// When it expired.
        expires_at: Timestamp,
    },
    /// The input is unusable (a zero or enormous ttl, an empty principal).
    #[error("invalid approval request: {0}")]
    Invalid(String),
    /// The state store failed; fail closed.
    #[error("approvals store: {0}")]
    Store(#[from] StoreError),
}

impl Approvals {
    /// The service over `store` (an `Arc<dyn Store>` coerces), stamping times from `clock`.
    pub fn new(
        store: Arc<dyn GovernStore>,
        clock: Arc<dyn Clock>,
        config: ApprovalsConfig,
    ) -> Self {
        Self {
            store,
            clock,
            config,
        }
    }

    /// Requests approval of `action`, valid for `ttl`. If a request for the same agent and action is pending,
    /// returns it unchanged (its expiry is not extended).
    pub async fn request(&self, action: &Action, ttl: Duration) -> Result<Approval, ApprovalError> {
        let ttl = i64::try_from(ttl.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| {
                ApprovalError::Invalid("ttl must be at least 1 ms and finite".to_owned())
            })?;
        let now = self.clock.now();
        let record = ApprovalRecord {
            id: ApprovalId::random().0,
            agent: action.agent().clone(),
            action_hash: action.args_hash_hex(),
            kind: action.kind().as_str().to_owned(),
            target: action.target().to_owned(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.as_millis().saturating_add(ttl)),
            status: StoredStatus::Pending,
            decided_by: None,
            decided_at: None,
            reason: None,
            consumed_at: None,
        };
        let stored = self.store.approval_request(&record).await?;
        Ok(to_approval(stored, now))
    }

    /// Approves a pending, unexpired approval.
    pub async fn approve(
        &self,
        id: &ApprovalId,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval, ApprovalError> {
        self.decide(id, true, by, reason).await
    }

    /// Denies a pending, unexpired approval.
    pub async fn deny(
        &self,
        id: &ApprovalId,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval, ApprovalError> {
        self.decide(id, false, by, reason).await
    }

    /// One approval.
    pub async fn get(&self, id: &ApprovalId) -> Result<Option<Approval>, ApprovalError> {
        let now = self.clock.now();
        Ok(self
            .store
            .approval(id.as_str())
            .await?
            .map(|r| to_approval(r, now)))
    }

    /// Approvals matching `filter`, oldest first.
    pub async fn list(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, ApprovalError> {
        let now = self.clock.now();
        Ok(self
            .store
            .approvals(filter.agent.as_ref())
            .await?
            .into_iter()
            .map(|r| to_approval(r, now))
            .filter(|a| filter.state.is_none_or(|s| a.state == s))
            .collect())
    }

    /// Whether `action` may run now on the strength of an approval. With single-use approvals, an `Approved`
    /// answer consumes the approval: call this only when the action will run if the rest of the decision allows
    /// it.
    pub async fn check(
        &self,
        action: &Action,
        now: Timestamp,
    ) -> Result<ApprovalCheck, ApprovalError> {
        let hash = action.args_hash_hex();
        let agent = action.agent();
        if self.config.single_use
            && let Some(used) = self.store.approval_consume(agent, &hash, now).await?
        {
            return Ok(ApprovalCheck::Approved {
                id: ApprovalId(used.id),
                by: used.decided_by.unwrap_or_default(),
            });
        }
        let Some(latest) = self.store.approval_latest(agent, &hash).await? else {
            return Ok(ApprovalCheck::None);
        };
        let live = latest.expires_at > now;
        let id = ApprovalId(latest.id);
        Ok(match latest.status {
            StoredStatus::Pending if live => ApprovalCheck::Pending { id },
            StoredStatus::Denied if live => ApprovalCheck::Denied {
                id,
                by: latest.decided_by.unwrap_or_default(),
                reason: latest.reason,
            },
            // Used up: a new request is needed.
            StoredStatus::Approved if latest.consumed_at.is_some() => ApprovalCheck::None,
            StoredStatus::Approved if live && !self.config.single_use => ApprovalCheck::Approved {
                id,
                by: latest.decided_by.unwrap_or_default(),
            },
            // Single-use, unconsumed and live, yet the consume above found nothing: another check raced us to it.
            StoredStatus::Approved if live => ApprovalCheck::None,
            StoredStatus::Pending
            | StoredStatus::Denied
            | StoredStatus::Approved
            | StoredStatus::Expired => ApprovalCheck::Expired { id },
        })
    }

    async fn decide(
        &self,
        id: &ApprovalId,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval, ApprovalError> {
        if by.trim().is_empty() {
            return Err(ApprovalError::Invalid(
                "the deciding principal must be named".to_owned(),
            ));
        }
        let now = self.clock.now();
        let decision = ApprovalDecision {
            approve,
            by: by.to_owned(),
            reason: reason.map(str::to_owned),
            at: now,
        };
        match self.store.approval_decide(id.as_str(), &decision).await? {
            ApprovalDecideOutcome::Decided(record) => Ok(to_approval(record, now)),
            ApprovalDecideOutcome::AlreadyDecided(record) => Err(ApprovalError::AlreadyDecided {
                id: record.id,
                state: if record.status == StoredStatus::Approved {
                    "approved"
                } else {
                    "denied"
                },
                by: record.decided_by.unwrap_or_default(),
            }),
            ApprovalDecideOutcome::Expired(record) => Err(ApprovalError::Expired {
                id: record.id,
                expires_at: record.expires_at,
            }),
            ApprovalDecideOutcome::NotFound => Err(ApprovalError::NotFound(id.to_string())),
        }
    }
}

fn to_approval(r: ApprovalRecord, now: Timestamp) -> Approval {
    let state = match r.status {
        StoredStatus::Pending if r.expires_at <= now => ApprovalState::Expired,
        StoredStatus::Pending => ApprovalState::Pending,
        StoredStatus::Approved => ApprovalState::Approved,
        StoredStatus::Denied => ApprovalState::Denied,
        StoredStatus::Expired => ApprovalState::Expired,
    };
    Approval {
        id: ApprovalId(r.id),
        agent: r.agent,
        action_hash: r.action_hash,
        kind: r.kind,
        target: r.target,
        created_at: r.created_at,
        expires_at: r.expires_at,
        state,
        decided_by: r.decided_by,
        decided_at: r.decided_at,
        reason: r.reason,
        consumed_at: r.consumed_at,
    }
}
