//! Governance state: budget counters and their holds (reservations), approval requests, halts and the learned
//! agent dependency graph. [`GovernStore`] is a supertrait of [`crate::Store`], so an `Arc<dyn Store>` upcasts to
//! the `Arc<dyn GovernStore>` that `aura-govern` takes.
//!
//! The store knows no budget, period or policy semantics: keys are opaque strings chosen by the caller. What it
//! guarantees is atomicity: a hold is taken on all of its keys or on none, and only while every key stays within
//! the limits given with the request, also with several processes sharing one PostgreSQL database.

use async_trait::async_trait;
use aura_core::{AgentName, Timestamp};

use crate::StoreError;

/// Amounts of the three budget dimensions. Money is integer micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetAmounts {
    /// Cost in micro-dollars.
    pub cost_micros: i64,
    /// Effort in steps.
    pub effort: i64,
    /// Risk points.
    pub risk: i64,
}

/// Limits of the three budget dimensions; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Cost limit in micro-dollars.
    pub cost_micros: Option<i64>,
    /// Effort limit in steps.
    pub effort: Option<i64>,
    /// Risk limit in points.
    pub risk: Option<i64>,
}

/// An operator's override recorded on a budget counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetOverrideRecord {
    /// Principal who granted it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// One budget counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCounterRecord {
    /// The opaque key.
    pub key: String,
    /// Settled spend.
    pub spent: BudgetAmounts,
    /// Held by open reservations.
    pub reserved: BudgetAmounts,
    /// The limits given with the latest reservation on this key.
    pub limits: BudgetLimits,
    /// The operator override on this key, if any.
    pub override_grant: Option<BudgetOverrideRecord>,
}

/// One key of a hold request and the limits it must stay within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetHoldLine {
    /// The opaque key.
    pub key: String,
    /// Limits checked against `spent + reserved + amounts`.
    pub limits: BudgetLimits,
}

/// A request to hold `amounts` on every line's key at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetHoldRequest {
    /// Unique id chosen by the caller.
    pub id: String,
    /// The keys; distinct.
    pub lines: Vec<BudgetHoldLine>,
    /// Amounts held on each key; non-negative.
    pub amounts: BudgetAmounts,
    /// When the request is made.
    pub created_at: Timestamp,
    /// When [`GovernStore::budget_expire`] may drop the hold.
    pub expires_at: Timestamp,
}

/// What [`GovernStore::budget_hold`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetHoldOutcome {
    /// Held on every key; the counters as they were just before, in request order.
    Held(Vec<BudgetCounterRecord>),
    /// Nothing held: this key would exceed a limit. The counter as read after the refusal (a fresh key reads as
    /// all zeroes).
    Refused(BudgetCounterRecord),
}

/// A hold dropped by [`GovernStore::budget_expire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetHoldRecord {
    /// The hold's id.
    pub id: String,
    /// Its keys, in request order.
    pub keys: Vec<String>,
    /// The amounts it held.
    pub amounts: BudgetAmounts,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it expired.
    pub expires_at: Timestamp,
}

/// What [`GovernStore::budget_settle`] and [`GovernStore::budget_release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetFinishOutcome {
    /// Settled: the hold was released and the actual amounts added to `spent`.
    Settled,
    /// The hold had expired (its amounts were already released); the actual amounts were added to `spent`.
    SettledAfterExpiry,
    /// Released: nothing spent.
    Released,
    /// No-op: the hold was settled before.
    AlreadySettled,
    /// No-op: the hold was released before.
    AlreadyReleased,
    /// No-op (release only): the hold had expired.
    AlreadyExpired,
    /// No hold has this id (never made, or finished long enough ago to be forgotten).
    NotFound,
}

/// Status of a stored approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved by a principal.
    Approved,
    /// Denied by a principal.
    Denied,
    /// Expired before anyone decided.
    Expired,
}

impl ApprovalStatus {
    /// The lowercase name used in storage and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// A stored approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// Unique id chosen by the caller.
    pub id: String,
    /// The acting agent.
    pub agent: AgentName,
    /// SHA-256 of the action's kind, target and canonical args, lowercase hex.
    pub action_hash: String,
    /// The action's kind (for display).
    pub kind: String,
    /// The action's target (for display).
    pub target: String,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When it stops being decidable and usable.
    pub expires_at: Timestamp,
    /// The stored status; a `Pending` record past `expires_at` is expired in effect.
    pub status: ApprovalStatus,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at: Option<Timestamp>,
    /// The decider's reason.
    pub reason: Option<String>,
    /// When an approved request was used up by the retried action.
    pub consumed_at: Option<Timestamp>,
}

/// A decision on an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    /// `true` to approve, `false` to deny.
    pub approve: bool,
    /// Who decides.
    pub by: String,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// What [`GovernStore::approval_decide`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalDecideOutcome {
    /// Decided; the updated record.
    Decided(ApprovalRecord),
    /// No-op: it was decided before; the record as it stands.
    AlreadyDecided(ApprovalRecord),
    /// No-op: it expired undecided (now stored as expired); the record.
    Expired(ApprovalRecord),
    /// No approval has this id.
    NotFound,
}

/// Whether an agent is halted or paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaltStateRecord {
    /// Stopped; in-flight actions are cancelled.
    Halted,
    /// Takes no new actions.
    Paused,
}

/// Why an agent was halted or paused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaltCauseRecord {
    /// An operator did it.
    Manual,
    /// The halt of another agent cascaded to it.
    Cascade {
        /// The agent whose halt cascaded.
        from: AgentName,
    },
    /// Loop detection.
    Loop,
    /// A budget hard stop.
    Budget,
}

/// A halted or paused agent (or every agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltRecord {
    /// The agent; `None` for every agent.
    pub agent: Option<AgentName>,
    /// Halted or paused.
    pub state: HaltStateRecord,
    /// Why, in words.
    pub reason: String,
    /// Principal who did it (`kernel` for automatic halts).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// What triggered it.
    pub cause: HaltCauseRecord,
}

/// A learned "sends work to" edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEdgeRecord {
    /// The agent that sends work.
    pub from: AgentName,
    /// The agent that receives it (and so depends on `from`).
    pub to: AgentName,
    /// When the edge was first seen.
    pub learned_at: Timestamp,
}

/// Governance state. Every method is one transaction; none holds a lock across calls.
#[async_trait]
pub trait GovernStore: Send + Sync + std::fmt::Debug {
    /// Holds `request.amounts` on every key atomically, each only if `spent + reserved + amounts` stays within
    /// that line's limits, and records each line's limits on its counter. Safe under any concurrency, including
    /// several processes on one PostgreSQL database.
    ///
    /// Fails with [`StoreError::Conflict`] when the id exists or a key is repeated.
    async fn budget_hold(
        &self,
        request: &BudgetHoldRequest,
    ) -> Result<BudgetHoldOutcome, StoreError>;

    /// Settles a hold: releases what it held (unless it expired) and adds `actual` to `spent` on each of its keys.
    /// Settling a settled or released hold changes nothing.
    async fn budget_settle(
        &self,
        id: &str,
        actual: BudgetAmounts,
        at: Timestamp,
    ) -> Result<BudgetFinishOutcome, StoreError>;

    /// Releases a hold without spending. Releasing a finished hold changes nothing.
    async fn budget_release(
        &self,
        id: &str,
        at: Timestamp,
    ) -> Result<BudgetFinishOutcome, StoreError>;

    /// Marks every hold with `expires_at <= now` expired, releases what they held and returns them; forgets
    /// finished holds whose `finished_at` is before `forget_before` (a later settle of those reports `NotFound`).
    async fn budget_expire(
        &self,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<Vec<BudgetHoldRecord>, StoreError>;

    /// One counter; `None` if no reservation or override ever touched the key.
    async fn budget_counter(&self, key: &str) -> Result<Option<BudgetCounterRecord>, StoreError>;

    /// Records an operator override on a key (replacing any earlier one), creating the counter if needed.
    async fn budget_override(
        &self,
        key: &str,
        grant: &BudgetOverrideRecord,
    ) -> Result<(), StoreError>;

    /// Stores a new pending request, unless one is already pending for the same agent and action: then that one
    /// is returned unchanged. A pending request past its expiry (at `request.created_at`) is marked expired first.
    async fn approval_request(
        &self,
        request: &ApprovalRecord,
    ) -> Result<ApprovalRecord, StoreError>;

    /// One approval request.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Approval requests, optionally of one agent, ordered by `created_at`, then id.
    async fn approvals(&self, agent: Option<&AgentName>)
    -> Result<Vec<ApprovalRecord>, StoreError>;

    /// The most recent request for this agent and action.
    async fn approval_latest(
        &self,
        agent: &AgentName,
        action_hash: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Decides a pending, unexpired request.
    async fn approval_decide(
        &self,
        id: &str,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalDecideOutcome, StoreError>;

    /// Atomically marks the oldest approved, unexpired, unconsumed request for this agent and action consumed at
    /// `at` and returns it. Of several concurrent callers, at most one gets a given request.
    async fn approval_consume(
        &self,
        agent: &AgentName,
        action_hash: &str,
        at: Timestamp,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Stores these halts (replacing the rows of the same agents) in one transaction.
    async fn halts_put(&self, halts: &[HaltRecord]) -> Result<(), StoreError>;

    /// Removes the halts of these agents (`None`: the every-agent halt) in one transaction.
    async fn halts_remove(&self, agents: &[Option<AgentName>]) -> Result<(), StoreError>;

    /// Every stored halt, the every-agent one first, then by agent name.
    async fn halts(&self) -> Result<Vec<HaltRecord>, StoreError>;

    /// Stores a learned edge unless it is known; `true` if it was new.
    async fn agent_edge_insert(&self, edge: &AgentEdgeRecord) -> Result<bool, StoreError>;

    /// Every learned edge, ordered by `from`, then `to`.
    async fn agent_edges(&self) -> Result<Vec<AgentEdgeRecord>, StoreError>;
}
