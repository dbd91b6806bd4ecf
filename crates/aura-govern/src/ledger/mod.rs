//! The budget ledger: spending is reserved atomically before an action and settled with the real amount after,
//! so concurrent actions can never overspend a budget.
//!
//! A [`BudgetKey`] names one counter: a budget, a [`Scope`] (global, one agent, or a shared pool several agents
//! draw on) and a [`Period`] window derived from the clock in UTC. Each counter tracks three dimensions —
//! cost (integer micro-dollars), effort (steps) and risk (points) — each with an optional limit.
//!
//! A [`ReserveRequest`] holds the same [`Amounts`] on several keys at once (an agent's own budget, its pool and the
//! global budget): all or nothing, and only while `spent + reserved + amounts <= limit` on every limited dimension
//! of every key. [`Ledger::settle`] then records the actual spend (higher or lower than reserved) and drops the
//! hold; [`Ledger::release`] drops it without spending when the action failed; [`Ledger::expire`] drops holds whose
//! owner never came back. Settling or releasing twice is a no-op that says so.
//!
//! Two implementations: [`MemoryLedger`] (one process, a mutex, sub-microsecond) and [`StoreLedger`] (SQLite or
//! PostgreSQL through `aura-store`, safe for several `aura` processes sharing one database).
//!
//! [`graduated`] turns a counter's usage into the policy's graduated actions (warn, downgrade, pause, hard stop,
//! require override); an operator's override ([`Ledger::grant_override`]) lifts the stopping ones for the rest of
//! the key's period.

mod memory;
mod period;
mod store;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aura_core::{AgentName, Estimate, Timestamp};
use aura_store::StoreError;

pub use memory::MemoryLedger;
pub use store::StoreLedger;

/// A budget ledger. Object-safe: hold it as `Arc<dyn Ledger>`.
#[async_trait]
pub trait Ledger: Send + Sync + fmt::Debug {
    /// Reserves `request.amounts` on every line's key, all or nothing.
    ///
    /// Fails with [`LedgerError::Exceeded`] naming the first key (in request order of checking) that would go over
    /// a limit; then nothing is reserved anywhere.
    async fn reserve(&self, request: &ReserveRequest) -> Result<Reservation, LedgerError>;

    /// Records `actual` as spent on every key of the reservation and drops its hold. A reservation that expired
    /// still records its spend ([`SettleOutcome::SettledAfterExpiry`]): the money was spent.
    async fn settle(
        &self,
        id: ReservationId,
        actual: Amounts,
    ) -> Result<SettleOutcome, LedgerError>;

    /// Drops the reservation's hold without spending (the action failed or was not run).
    async fn release(&self, id: ReservationId) -> Result<ReleaseOutcome, LedgerError>;

    /// Drops every hold with `expires_at <= now` and returns them. Also forgets reservations finished more than
    /// [`FINISHED_RETENTION_MILLIS`] before `now`. Run it periodically (e.g. every few seconds).
    async fn expire(&self, now: Timestamp) -> Result<Vec<ExpiredReservation>, LedgerError>;

    /// The counter of one key; all zeroes for a key never used.
    async fn usage(&self, key: &BudgetKey) -> Result<Usage, LedgerError>;

    /// Records an operator's override on a key: [`graduated`] then leaves out the stopping actions for this key
    /// until its period ends (the next period is a new key). Limits themselves still hold.
    async fn grant_override(
        &self,
        key: &BudgetKey,
        grant: &OverrideGrant,
    ) -> Result<(), LedgerError>;
}

/// How long finished (settled, released, expired) reservations are remembered, so that a repeated or late
/// settle gets a precise answer: 24 hours.
pub const FINISHED_RETENTION_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// Amounts of the three dimensions. Money is integer micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Amounts {
    /// Cost in micro-dollars.
    pub cost_micros: i64,
    /// Effort in steps.
    pub effort: i64,
    /// Risk points.
    pub risk: i64,
}

impl Amounts {
    /// The amounts an action's estimate asks for; missing estimates count as zero.
    pub fn from_estimate(estimate: &Estimate) -> Self {
        Self {
            cost_micros: estimate.cost_micros.unwrap_or(0),
            effort: i64::from(estimate.effort.unwrap_or(0)),
            risk: i64::from(estimate.risk.unwrap_or(0)),
        }
    }

    /// The amount of one dimension.
    pub fn get(&self, dimension: Dimension) -> i64 {
        match dimension {
            Dimension::Cost => self.cost_micros,
            Dimension::Effort => self.effort,
            Dimension::Risk => self.risk,
        }
    }
}

/// Limits of the three dimensions; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Cost limit in micro-dollars.
    pub cost_micros: Option<i64>,
    /// Effort limit in steps.
    pub effort: Option<i64>,
    /// Risk limit in points.
    pub risk: Option<i64>,
}

impl Limits {
    /// The limit of one dimension.
    pub fn get(&self, dimension: Dimension) -> Option<i64> {
        match dimension {
            Dimension::Cost => self.cost_micros,
            Dimension::Effort => self.effort,
            Dimension::Risk => self.risk,
        }
    }
}

/// One budget dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Money, in micro-dollars.
    Cost,
    /// Steps.
    Effort,
    /// Risk points.
    Risk,
}

impl Dimension {
    /// Every dimension, in a stable order.
    pub const ALL: [Dimension; 3] = [Dimension::Cost, Dimension::Effort, Dimension::Risk];

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dimension::Cost => "cost_micros",
            Dimension::Effort => "effort",
            Dimension::Risk => "risk",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who draws on a budget counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everyone.
    Global,
    /// One agent.
    Agent(AgentName),
    /// A shared pool, drawn on by every agent assigned to it. The name follows the agent naming rule.
    Pool(String),
}

/// The window a counter covers; a new window is a new counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// A UTC clock hour.
    Hour,
    /// A UTC calendar day.
    Day,
    /// A UTC week starting Monday.
    Week,
    /// A UTC calendar month.
    Month,
    /// Forever.
    Total,
}

/// The name of one counter: budget, scope and period window. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    canonical: Arc<str>,
    window_end: Option<Timestamp>,
}

impl BudgetKey {
    /// The key of `budget` for `scope` in the `period` window that contains `now` (UTC).
    ///
    /// The budget id and a pool name must follow the agent naming rule (`a-z`, `0-9`, `.`, `_`, `-`).
    pub fn new(
        budget: &str,
        scope: &Scope,
        period: Period,
        now: Timestamp,
    ) -> Result<Self, LedgerError> {
        AgentName::new(budget).map_err(|e| LedgerError::Invalid(format!("budget id: {e}")))?;
        let scope = match scope {
            Scope::Global => "global".to_owned(),
            Scope::Agent(agent) => format!("agent:{agent}"),
            Scope::Pool(pool) => {
                AgentName::new(pool.as_str())
                    .map_err(|e| LedgerError::Invalid(format!("pool name: {e}")))?;
                format!("pool:{pool}")
            }
        };
        let (window, window_end) = period::window(period, now);
        Ok(Self {
            canonical: format!("{budget}/{scope}/{window}").into(),
            window_end,
        })
    }

    /// The canonical form, e.g. `llm/agent:planner/day:2026-11-21`; also the storage key.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// When the window ends (exclusive); `None` for [`Period::Total`].
    pub fn window_end(&self) -> Option<Timestamp> {
        self.window_end
    }

    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(&self.canonical)
    }
}

impl fmt::Display for BudgetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl fmt::Debug for BudgetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.canonical, f)
    }
}

/// One key of a reservation and the limits configured for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveLine {
    /// The counter.
    pub key: BudgetKey,
    /// Its limits (from the policy in force).
    pub limits: Limits,
}

/// A request to reserve the same amounts on several keys at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// The keys; at least one, no key twice.
    pub lines: Vec<ReserveLine>,
    /// What to hold on each key; non-negative.
    pub amounts: Amounts,
    /// When [`Ledger::expire`] may drop the hold if it was neither settled nor released.
    pub expires_at: Timestamp,
}

/// Identifies a reservation: 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(u64);

impl ReservationId {
    /// Parses the 16-hex-digit form.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u64::from_str_radix(s, 16).ok().map(Self))
            .flatten()
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A counter's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Settled spend.
    pub spent: Amounts,
    /// Held by open reservations.
    pub reserved: Amounts,
    /// The limits last given for this key (none before its first reservation).
    pub limits: Limits,
    /// Whether an operator override is in force for this key.
    pub overridden: bool,
}

impl Usage {
    /// `spent + reserved` of one dimension: what counts against the limit.
    pub fn used(&self, dimension: Dimension) -> i64 {
        self.spent
            .get(dimension)
            .saturating_add(self.reserved.get(dimension))
    }

    /// What may still be reserved in one dimension (never negative); `None` when unlimited.
    pub fn remaining(&self, dimension: Dimension) -> Option<i64> {
        self.limits
            .get(dimension)
            .map(|limit| limit.saturating_sub(self.used(dimension)).max(0))
    }
}

/// One key of a granted reservation: its counter just before and just after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The counter.
    pub key: BudgetKey,
    /// Before the reservation.
    pub before: Usage,
    /// After it (`reserved` grew by the amounts).
    pub after: Usage,
}

/// A granted reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Pass it to [`Ledger::settle`] or [`Ledger::release`].
    pub id: ReservationId,
    /// The amounts held on every key.
    pub amounts: Amounts,
    /// When the hold expires.
    pub expires_at: Timestamp,
    /// Every key, in request order.
    pub keys: Vec<KeyUsage>,
}

/// A reservation dropped by [`Ledger::expire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredReservation {
    /// Its id.
    pub id: ReservationId,
    /// Its keys, canonical form ([`BudgetKey::as_str`]), in request order.
    pub keys: Vec<String>,
    /// What it held.
    pub amounts: Amounts,
    /// When it expired.
    pub expires_at: Timestamp,
}

/// What [`Ledger::settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Spend recorded, hold dropped.
    Settled,
    /// The hold had expired; the spend was recorded anyway.
    SettledAfterExpiry,
    /// No-op: settled before.
    AlreadySettled,
    /// No-op: released before; nothing was recorded.
    AlreadyReleased,
    /// Unknown id (never granted, or finished long ago); nothing was recorded.
    NotFound,
}

/// What [`Ledger::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Hold dropped.
    Released,
    /// No-op: released before.
    AlreadyReleased,
    /// No-op: it was settled.
    AlreadySettled,
    /// No-op: it had expired.
    AlreadyExpired,
    /// Unknown id.
    NotFound,
}

/// An operator lifting a hard stop on one key until the end of its period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideGrant {
    /// The principal's name.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// Something the kernel does when a counter crosses a threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThresholdAction {
    /// Log and notify.
    Warn,
    /// Route LLM calls to a cheaper model.
    DowngradeModel {
        /// The model to use instead.
        to: String,
    },
    /// Pause these agents.
    PauseAgents {
        /// Who.
        agents: Vec<AgentName>,
    },
    /// Deny every action that draws on the key. Lifted by an override.
    HardStop,
    /// Escalate every action that draws on the key to a human. Lifted by an override.
    RequireOverride,
}

/// A graduated step: `action` applies once `spent + reserved` reaches `at_percent` percent of the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// Percent of the limit (may exceed 100).
    pub at_percent: u32,
    /// What to do.
    pub action: ThresholdAction,
}

/// The actions of every threshold `usage` has reached in `dimension`, lowest threshold first. None when the
/// dimension is unlimited. When an override is in force, [`ThresholdAction::HardStop`] and
/// [`ThresholdAction::RequireOverride`] are left out. Integer arithmetic only.
pub fn graduated(
    usage: &Usage,
    dimension: Dimension,
    thresholds: &[Threshold],
) -> Vec<ThresholdAction> {
    let Some(limit) = usage.limits.get(dimension) else {
        return Vec::new();
    };
    let used = i128::from(usage.used(dimension)) * 100;
    let mut reached: Vec<&Threshold> = thresholds
        .iter()
        .filter(|t| used >= i128::from(t.at_percent) * i128::from(limit))
        .filter(|t| {
            !(usage.overridden
                && matches!(
                    t.action,
                    ThresholdAction::HardStop | ThresholdAction::RequireOverride
                ))
        })
        .collect();
    reached.sort_by_key(|t| t.at_percent);
    reached.into_iter().map(|t| t.action.clone()).collect()
}

/// Why a ledger operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The reservation would take a key over a limit; nothing was reserved.
    #[error(
        "budget `{key}` exceeded: {dimension} limit {limit}, spent {spent}, reserved {reserved}, requested {requested}"
    )]
    Exceeded {
        /// The key, canonical form.
        key: String,
        /// The dimension over its limit.
        dimension: Dimension,
        /// The limit.
        limit: i64,
        /// Settled spend at the time.
        spent: i64,
        /// Held by other reservations at the time.
        reserved: i64,
        /// What this reservation asked for.
        requested: i64,
    },
    /// The request is malformed (no keys, a key twice, a negative amount, a bad name).
    #[error("invalid budget request: {0}")]
    Invalid(String),
    /// The state store failed; fail closed.
    #[error("budget ledger store: {0}")]
    Store(#[from] StoreError),
}

/// Checks what every implementation requires of a request.
pub(crate) fn validate(request: &ReserveRequest) -> Result<(), LedgerError> {
    if request.lines.is_empty() {
        return Err(LedgerError::Invalid("no budget keys".to_owned()));
    }
    validate_amounts(request.amounts)?;
    for (i, line) in request.lines.iter().enumerate() {
        if request.lines[..i].iter().any(|l| l.key == line.key) {
            return Err(LedgerError::Invalid(format!(
                "key `{}` appears twice",
                line.key
            )));
        }
    }
    Ok(())
}

pub(crate) fn validate_amounts(amounts: Amounts) -> Result<(), LedgerError> {
    for dimension in Dimension::ALL {
        if amounts.get(dimension) < 0 {
            return Err(LedgerError::Invalid(format!(
                "{dimension} must not be negative"
            )));
        }
    }
    Ok(())
}

/// The first dimension in which `amounts` on top of `usage` would exceed `limits`, as an error.
pub(crate) fn exceeded(
    key: &str,
    usage_spent: Amounts,
    usage_reserved: Amounts,
    limits: Limits,
    amounts: Amounts,
) -> Option<LedgerError> {
    Dimension::ALL.into_iter().find_map(|dimension| {
        let limit = limits.get(dimension)?;
        let spent = usage_spent.get(dimension);
        let reserved = usage_reserved.get(dimension);
        let requested = amounts.get(dimension);
        let total = i128::from(spent) + i128::from(reserved) + i128::from(requested);
        (total > i128::from(limit)).then(|| LedgerError::Exceeded {
            key: key.to_owned(),
            dimension,
            limit,
            spent,
            reserved,
            requested,
        })
    })
}

/// A random 64-bit number from the standard library's per-process random keys; for ids, not for secrets.
pub(crate) fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one((n, std::process::id()))
}

impl ReservationId {
    pub(crate) fn from_u64(n: u64) -> Self {
        Self(n)
    }
}
