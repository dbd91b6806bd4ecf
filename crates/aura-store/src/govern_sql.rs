//! The SQL behind [`crate::GovernStore`] (portable between SQLite and PostgreSQL), row decoding, retry of
//! transactions that lost a lock race, and the `impl_govern_store!` macro that writes the implementation for each
//! backend's pool type.
//!
//! **Lock order.** Every transaction that touches budget counters takes the hold row first, then the counters in
//! ascending key order, so concurrent reservations, settles and expiries on overlapping keys cannot deadlock with
//! each other; a deadlock or serialization failure reported anyway (two expiry sweeps racing) is retried.

use aura_core::{AgentName, Timestamp};

use crate::StoreError;
use crate::error::TargetLabel;
use crate::govern::{
    AgentEdgeRecord, ApprovalRecord, ApprovalStatus, BudgetAmounts, BudgetCounterRecord,
    BudgetLimits, BudgetOverrideRecord, HaltCauseRecord, HaltRecord, HaltStateRecord,
};

/// How many times a transaction that lost a lock race is retried before the error is returned.
pub(crate) const MAX_RETRIES: u32 = 8;

pub(crate) const COUNTER_HOLD: &str = "INSERT INTO budget_counters \
     (key, reserved_cost, reserved_effort, reserved_risk, limit_cost, limit_effort, limit_risk, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (key) DO UPDATE SET \
     reserved_cost = budget_counters.reserved_cost + excluded.reserved_cost, \
     reserved_effort = budget_counters.reserved_effort + excluded.reserved_effort, \
     reserved_risk = budget_counters.reserved_risk + excluded.reserved_risk, \
     limit_cost = excluded.limit_cost, limit_effort = excluded.limit_effort, limit_risk = excluded.limit_risk, \
     updated_at = excluded.updated_at \
     WHERE (excluded.limit_cost IS NULL \
            OR budget_counters.spent_cost + budget_counters.reserved_cost + excluded.reserved_cost <= excluded.limit_cost) \
       AND (excluded.limit_effort IS NULL \
            OR budget_counters.spent_effort + budget_counters.reserved_effort + excluded.reserved_effort <= excluded.limit_effort) \
       AND (excluded.limit_risk IS NULL \
            OR budget_counters.spent_risk + budget_counters.reserved_risk + excluded.reserved_risk <= excluded.limit_risk) \
     RETURNING key, spent_cost, spent_effort, spent_risk, reserved_cost, reserved_effort, reserved_risk, \
     limit_cost, limit_effort, limit_risk, override_by, override_reason, override_at";

pub(crate) const COUNTER_BY_KEY: &str = "SELECT key, spent_cost, spent_effort, spent_risk, \
     reserved_cost, reserved_effort, reserved_risk, limit_cost, limit_effort, limit_risk, \
     override_by, override_reason, override_at FROM budget_counters WHERE key = $1";

/// Releases `$2..$4` and spends `$5..$7` on one counter.
pub(crate) const COUNTER_APPLY: &str = "UPDATE budget_counters SET \
     reserved_cost = reserved_cost - $2, reserved_effort = reserved_effort - $3, reserved_risk = reserved_risk - $4, \
     spent_cost = spent_cost + $5, spent_effort = spent_effort + $6, spent_risk = spent_risk + $7, \
     updated_at = $8 WHERE key = $1";

pub(crate) const COUNTER_OVERRIDE: &str = "INSERT INTO budget_counters \
     (key, override_by, override_reason, override_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
     ON CONFLICT (key) DO UPDATE SET override_by = excluded.override_by, \
     override_reason = excluded.override_reason, override_at = excluded.override_at, \
     updated_at = excluded.updated_at";

pub(crate) const HOLD_INSERT: &str = "INSERT INTO budget_holds \
     (id, state, cost, effort, risk, created_at, expires_at) VALUES ($1, 'held', $2, $3, $4, $5, $6)";

pub(crate) const HOLD_KEY_INSERT: &str =
    "INSERT INTO budget_hold_keys (hold_id, position, key) VALUES ($1, $2, $3)";

/// Moves a hold from `$4` to `$2`, returning its amounts.
pub(crate) const HOLD_FINISH: &str = "UPDATE budget_holds SET state = $2, finished_at = $3 \
     WHERE id = $1 AND state = $4 RETURNING cost, effort, risk";

pub(crate) const HOLD_STATE: &str = "SELECT state FROM budget_holds WHERE id = $1";

pub(crate) const HOLD_KEYS_SORTED: &str =
    "SELECT key FROM budget_hold_keys WHERE hold_id = $1 ORDER BY key";

pub(crate) const HOLD_KEYS_IN_ORDER: &str =
    "SELECT key FROM budget_hold_keys WHERE hold_id = $1 ORDER BY position";

pub(crate) const HOLDS_EXPIRE: &str = "UPDATE budget_holds SET state = 'expired', finished_at = $1 \
     WHERE state = 'held' AND expires_at <= $1 RETURNING id, cost, effort, risk, created_at, expires_at";

pub(crate) const HOLDS_FORGET: &str =
    "DELETE FROM budget_holds WHERE state <> 'held' AND finished_at < $1";

pub(crate) const APPROVAL_EXPIRE_PENDING: &str = "UPDATE approvals SET status = 'expired' \
     WHERE agent = $1 AND action_hash = $2 AND status = 'pending' AND expires_at <= $3";

pub(crate) const APPROVAL_INSERT: &str = "INSERT INTO approvals \
     (id, agent, action_hash, kind, target, created_at, expires_at, status, decided_by, decided_at, reason, \
     consumed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING";

pub(crate) const APPROVAL_PENDING: &str = "SELECT id, agent, action_hash, kind, target, created_at, \
     expires_at, status, decided_by, decided_at, reason, consumed_at FROM approvals \
     WHERE agent = $1 AND action_hash = $2 AND status = 'pending'";

pub(crate) const APPROVAL_BY_ID: &str = "SELECT id, agent, action_hash, kind, target, created_at, \
     expires_at, status, decided_by, decided_at, reason, consumed_at FROM approvals WHERE id = $1";

pub(crate) const APPROVALS_ALL: &str = "SELECT id, agent, action_hash, kind, target, created_at, \
     expires_at, status, decided_by, decided_at, reason, consumed_at FROM approvals ORDER BY created_at, id";

pub(crate) const APPROVALS_OF_AGENT: &str = "SELECT id, agent, action_hash, kind, target, created_at, \
     expires_at, status, decided_by, decided_at, reason, consumed_at FROM approvals WHERE agent = $1 \
     ORDER BY created_at, id";

pub(crate) const APPROVAL_LATEST: &str = "SELECT id, agent, action_hash, kind, target, created_at, \
     expires_at, status, decided_by, decided_at, reason, consumed_at FROM approvals \
     WHERE agent = $1 AND action_hash = $2 ORDER BY created_at DESC, id DESC LIMIT 1";

pub(crate) const APPROVAL_DECIDE: &str = "UPDATE approvals SET status = $2, decided_by = $3, \
     decided_at = $4, reason = $5 WHERE id = $1 AND status = 'pending' AND expires_at > $4 \
     RETURNING id, agent, action_hash, kind, target, created_at, expires_at, status, decided_by, decided_at, \
     reason, consumed_at";

pub(crate) const APPROVAL_MARK_EXPIRED: &str = "UPDATE approvals SET status = 'expired' \
     WHERE id = $1 AND status = 'pending' AND expires_at <= $2 \
     RETURNING id, agent, action_hash, kind, target, created_at, expires_at, status, decided_by, decided_at, \
     reason, consumed_at";

/// The re-check of `consumed_at IS NULL` makes a concurrent second consumer of the same row update nothing.
pub(crate) const APPROVAL_CONSUME: &str = "UPDATE approvals SET consumed_at = $3 \
     WHERE id = (SELECT id FROM approvals WHERE agent = $1 AND action_hash = $2 AND status = 'approved' \
                 AND consumed_at IS NULL AND expires_at > $3 ORDER BY created_at, id LIMIT 1) \
       AND consumed_at IS NULL \
     RETURNING id, agent, action_hash, kind, target, created_at, expires_at, status, decided_by, decided_at, \
     reason, consumed_at";

pub(crate) const HALT_UPSERT: &str = "INSERT INTO halts \
     (agent, state, reason, by_principal, at, cause, cause_from) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (agent) DO UPDATE SET state = excluded.state, reason = excluded.reason, \
     by_principal = excluded.by_principal, at = excluded.at, cause = excluded.cause, \
     cause_from = excluded.cause_from";

pub(crate) const HALT_DELETE: &str = "DELETE FROM halts WHERE agent = $1";

pub(crate) const HALTS_ALL: &str =
    "SELECT agent, state, reason, by_principal, at, cause, cause_from FROM halts ORDER BY agent";

pub(crate) const EDGE_INSERT: &str = "INSERT INTO agent_edges (from_agent, to_agent, learned_at) \
     VALUES ($1, $2, $3) ON CONFLICT (from_agent, to_agent) DO NOTHING";

pub(crate) const EDGES_ALL: &str =
    "SELECT from_agent, to_agent, learned_at FROM agent_edges ORDER BY from_agent, to_agent";

/// The key stored for the every-agent halt.
pub(crate) const ALL_AGENTS: &str = "*";

/// A `budget_counters` row in the column order of the statements above.
pub(crate) type CounterRow = (
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The amounts columns of a hold.
pub(crate) type AmountsRow = (i64, i64, i64);

/// A hold as returned by [`HOLDS_EXPIRE`].
pub(crate) type ExpiredRow = (String, i64, i64, i64, i64, i64);

/// An `approvals` row in the column order of the statements above.
pub(crate) type ApprovalRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

/// A `halts` row.
pub(crate) type HaltRow = (String, String, String, String, i64, String, Option<String>);

/// An `agent_edges` row.
pub(crate) type EdgeRow = (String, String, i64);

/// Decodes a counter row.
pub(crate) fn counter_from_row(row: CounterRow) -> BudgetCounterRecord {
    let (key, sc, se, sr, rc, re, rr, lc, le, lr, by, reason, at) = row;
    let override_grant = match (by, at) {
        (Some(by), Some(at)) => Some(BudgetOverrideRecord {
            by,
            reason: reason.unwrap_or_default(),
            at: Timestamp::from_millis(at),
        }),
        _ => None,
    };
    BudgetCounterRecord {
        key,
        spent: amounts(sc, se, sr),
        reserved: amounts(rc, re, rr),
        limits: BudgetLimits {
            cost_micros: lc,
            effort: le,
            risk: lr,
        },
        override_grant,
    }
}

/// A counter never written: all zeroes, no limits.
pub(crate) fn empty_counter(key: &str) -> BudgetCounterRecord {
    BudgetCounterRecord {
        key: key.to_owned(),
        spent: BudgetAmounts::default(),
        reserved: BudgetAmounts::default(),
        limits: BudgetLimits::default(),
        override_grant: None,
    }
}

pub(crate) fn amounts(cost_micros: i64, effort: i64, risk: i64) -> BudgetAmounts {
    BudgetAmounts {
        cost_micros,
        effort,
        risk,
    }
}

/// `after - amounts`, per dimension: the counter as it was before a hold.
pub(crate) fn before_hold(
    mut after: BudgetCounterRecord,
    held: BudgetAmounts,
) -> BudgetCounterRecord {
    after.reserved.cost_micros -= held.cost_micros;
    after.reserved.effort -= held.effort;
    after.reserved.risk -= held.risk;
    after
}

/// Whether `amounts` alone exceed a limit (then no counter state can admit them).
pub(crate) fn exceeds_alone(amounts: BudgetAmounts, limits: BudgetLimits) -> bool {
    let over = |amount: i64, limit: Option<i64>| limit.is_some_and(|l| amount > l);
    over(amounts.cost_micros, limits.cost_micros)
        || over(amounts.effort, limits.effort)
        || over(amounts.risk, limits.risk)
}

/// Decodes an approval row.
pub(crate) fn approval_from_row(row: ApprovalRow) -> Result<ApprovalRecord, StoreError> {
    let (
        id,
        agent,
        action_hash,
        kind,
        target,
        created_at,
        expires_at,
        status,
        decided_by,
        decided_at,
        reason,
        consumed_at,
    ) = row;
    let agent =
        AgentName::new(agent).map_err(|e| StoreError::Corrupt(format!("approval `{id}`: {e}")))?;
    let status = ApprovalStatus::parse(&status).ok_or_else(|| {
        StoreError::Corrupt(format!("approval `{id}`: unknown status `{status}`"))
    })?;
    Ok(ApprovalRecord {
        id,
        agent,
        action_hash,
        kind,
        target,
        created_at: Timestamp::from_millis(created_at),
        expires_at: Timestamp::from_millis(expires_at),
        status,
        decided_by,
        decided_at: decided_at.map(Timestamp::from_millis),
        reason,
        consumed_at: consumed_at.map(Timestamp::from_millis),
    })
}

/// A halt as bind values: agent key, state, cause, cause_from.
pub(crate) fn halt_columns(halt: &HaltRecord) -> (&str, &'static str, &'static str, Option<&str>) {
    let agent = halt.agent.as_ref().map_or(ALL_AGENTS, AgentName::as_str);
    let state = match halt.state {
        HaltStateRecord::Halted => "halted",
        HaltStateRecord::Paused => "paused",
    };
    let (cause, from) = match &halt.cause {
        HaltCauseRecord::Manual => ("manual", None),
        HaltCauseRecord::Cascade { from } => ("cascade", Some(from.as_str())),
        HaltCauseRecord::Loop => ("loop", None),
        HaltCauseRecord::Budget => ("budget", None),
    };
    (agent, state, cause, from)
}

/// Decodes a halt row.
pub(crate) fn halt_from_row(row: HaltRow) -> Result<HaltRecord, StoreError> {
    let (agent, state, reason, by, at, cause, cause_from) = row;
    let corrupt = |what: String| StoreError::Corrupt(format!("halt of `{agent}`: {what}"));
    let name = match agent.as_str() {
        ALL_AGENTS => None,
        name => Some(AgentName::new(name).map_err(|e| corrupt(e.to_string()))?),
    };
    let state = match state.as_str() {
        "halted" => HaltStateRecord::Halted,
        "paused" => HaltStateRecord::Paused,
        other => return Err(corrupt(format!("unknown state `{other}`"))),
    };
    let cause = match (cause.as_str(), cause_from) {
        ("manual", _) => HaltCauseRecord::Manual,
        ("loop", _) => HaltCauseRecord::Loop,
        ("budget", _) => HaltCauseRecord::Budget,
        ("cascade", Some(from)) => HaltCauseRecord::Cascade {
            from: AgentName::new(from).map_err(|e| corrupt(e.to_string()))?,
        },
        (other, _) => return Err(corrupt(format!("bad cause `{other}`"))),
    };
    Ok(HaltRecord {
        agent: name,
        state,
        reason,
        by,
        at: Timestamp::from_millis(at),
        cause,
    })
}

/// Decodes an edge row.
pub(crate) fn edge_from_row(row: EdgeRow) -> Result<AgentEdgeRecord, StoreError> {
    let (from, to, learned_at) = row;
    let name =
        |n: String| AgentName::new(n).map_err(|e| StoreError::Corrupt(format!("agent edge: {e}")));
    Ok(AgentEdgeRecord {
        from: name(from)?,
        to: name(to)?,
        learned_at: Timestamp::from_millis(learned_at),
    })
}

/// Why one attempt at a transaction failed.
pub(crate) enum Attempt {
    /// It lost a lock race (deadlock, serialization failure, busy database): run it again.
    Retry(sqlx::Error),
    /// Anything else.
    Fail(StoreError),
}

impl From<StoreError> for Attempt {
    fn from(err: StoreError) -> Self {
        Attempt::Fail(err)
    }
}

/// Classifies a driver error met inside a retryable transaction.
pub(crate) fn attempt_error(target: &TargetLabel, err: sqlx::Error) -> Attempt {
    let retry = match &err {
        // PostgreSQL deadlock_detected, serialization_failure; SQLite BUSY and its extended codes, LOCKED.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| matches!(&*code, "40P01" | "40001" | "5" | "261" | "517" | "6")),
        _ => false,
    };
    if retry {
        Attempt::Retry(err)
    } else {
        Attempt::Fail(target.error(err))
    }
}

/// Runs `$attempt` (an expression yielding `Result<T, Attempt>`) until it succeeds, fails for good, or has been
/// retried [`MAX_RETRIES`] times.
macro_rules! retry {
    ($self:ident, $attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            match $attempt.await {
                Ok(value) => break Ok(value),
                Err($crate::govern_sql::Attempt::Fail(err)) => break Err(err),
                Err($crate::govern_sql::Attempt::Retry(err)) => {
                    if tries >= $crate::govern_sql::MAX_RETRIES {
                        break Err($self.target.error(err));
                    }
                    tries += 1;
                    tracing::debug!(error = %err, attempt = tries, "retrying a governance transaction");
                }
            }
        }
    }};
}

pub(crate) use retry;

/// Writes `impl GovernStore for $store`, with the same requirements as `impl_store!`.
macro_rules! impl_govern_store {
    ($store:ty) => {
        impl $store {
            fn attempt(&self, err: sqlx::Error) -> $crate::govern_sql::Attempt {
                $crate::govern_sql::attempt_error(&self.target, err)
            }

            async fn begin_attempt(
                &self,
            ) -> Result<
                sqlx::Transaction<'static, <$store as $crate::govern_sql::Backend>::Db>,
                $crate::govern_sql::Attempt,
            > {
                self.begin_write()
                    .await
                    .map_err($crate::govern_sql::Attempt::Fail)
            }

            async fn try_budget_hold(
                &self,
                request: &$crate::BudgetHoldRequest,
            ) -> Result<$crate::BudgetHoldOutcome, $crate::govern_sql::Attempt> {
                use $crate::govern_sql as sql;
                let mut order: Vec<usize> = (0..request.lines.len()).collect();
                order.sort_by(|&a, &b| request.lines[a].key.cmp(&request.lines[b].key));
                if order
                    .windows(2)
                    .any(|w| request.lines[w[0]].key == request.lines[w[1]].key)
                {
                    return Err($crate::StoreError::Conflict(format!(
                        "budget hold `{}` names a key twice",
                        request.id
                    ))
                    .into());
                }
                let a = request.amounts;
                // A line whose limits the amounts exceed on their own can never be held: refuse before locking.
                if let Some(&i) = order
                    .iter()
                    .find(|&&i| sql::exceeds_alone(a, request.lines[i].limits))
                {
                    let counter = self.budget_counter_now(&request.lines[i].key).await?;
                    return Ok($crate::BudgetHoldOutcome::Refused(counter));
                }
                let mut tx = self.begin_attempt().await?;
                sqlx::query(sql::HOLD_INSERT)
                    .bind(request.id.as_str())
                    .bind(a.cost_micros)
                    .bind(a.effort)
                    .bind(a.risk)
                    .bind(request.created_at.as_millis())
                    .bind(request.expires_at.as_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match &e {
                        sqlx::Error::Database(db) if db.is_unique_violation() => {
                            $crate::govern_sql::Attempt::Fail($crate::StoreError::Conflict(
                                format!("a budget hold with id `{}` already exists", request.id),
                            ))
                        }
                        _ => self.attempt(e),
                    })?;
                let mut before = vec![None; request.lines.len()];
                for &i in &order {
                    let line = &request.lines[i];
                    let row: Option<sql::CounterRow> = sqlx::query_as(sql::COUNTER_HOLD)
                        .bind(line.key.as_str())
                        .bind(a.cost_micros)
                        .bind(a.effort)
                        .bind(a.risk)
                        .bind(line.limits.cost_micros)
                        .bind(line.limits.effort)
                        .bind(line.limits.risk)
                        .bind(request.created_at.as_millis())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| self.attempt(e))?;
                    match row {
                        Some(row) => {
                            before[i] = Some(sql::before_hold(sql::counter_from_row(row), a))
                        }
                        None => {
                            tx.rollback().await.map_err(|e| self.attempt(e))?;
                            let counter = self.budget_counter_now(&line.key).await?;
                            return Ok($crate::BudgetHoldOutcome::Refused(counter));
                        }
                    }
                }
                for (position, line) in request.lines.iter().enumerate() {
                    sqlx::query(sql::HOLD_KEY_INSERT)
                        .bind(request.id.as_str())
                        .bind(i64::try_from(position).unwrap_or(i64::MAX))
                        .bind(line.key.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.attempt(e))?;
                }
                tx.commit().await.map_err(|e| self.attempt(e))?;
                // INVARIANT: the loop above filled every slot or returned.
                Ok($crate::BudgetHoldOutcome::Held(
                    before.into_iter().flatten().collect(),
                ))
            }

            async fn budget_counter_now(
                &self,
                key: &str,
            ) -> Result<$crate::BudgetCounterRecord, $crate::StoreError> {
                let row: Option<$crate::govern_sql::CounterRow> =
                    sqlx::query_as($crate::govern_sql::COUNTER_BY_KEY)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.target.error(e))?;
                Ok(row.map_or_else(
                    || $crate::govern_sql::empty_counter(key),
                    $crate::govern_sql::counter_from_row,
                ))
            }

            /// Finishes a hold: `actual` is `Some` to settle, `None` to release.
            async fn try_budget_finish(
                &self,
                id: &str,
                actual: Option<$crate::BudgetAmounts>,
                at: aura_core::Timestamp,
            ) -> Result<$crate::BudgetFinishOutcome, $crate::govern_sql::Attempt> {
                use $crate::BudgetFinishOutcome as Outcome;
                use $crate::govern_sql as sql;
                let mut tx = self.begin_attempt().await?;
                let to_state = if actual.is_some() {
                    "settled"
                } else {
                    "released"
                };
                let held: Option<sql::AmountsRow> = sqlx::query_as(sql::HOLD_FINISH)
                    .bind(id)
                    .bind(to_state)
                    .bind(at.as_millis())
                    .bind("held")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                let (release, outcome) = match held {
                    Some((c, e, r)) => (
                        sql::amounts(c, e, r),
                        if actual.is_some() {
                            Outcome::Settled
                        } else {
                            Outcome::Released
                        },
                    ),
                    None => {
                        let late = match actual {
                            Some(_) => sqlx::query_as::<_, sql::AmountsRow>(sql::HOLD_FINISH)
                                .bind(id)
                                .bind("settled")
                                .bind(at.as_millis())
                                .bind("expired")
                                .fetch_optional(&mut *tx)
                                .await
                                .map_err(|e| self.attempt(e))?,
                            None => None,
                        };
                        if late.is_some() {
                            (
                                $crate::BudgetAmounts::default(),
                                Outcome::SettledAfterExpiry,
                            )
                        } else {
                            let state: Option<String> = sqlx::query_scalar(sql::HOLD_STATE)
                                .bind(id)
                                .fetch_optional(&mut *tx)
                                .await
                                .map_err(|e| self.attempt(e))?;
                            return Ok(match state.as_deref() {
                                None => Outcome::NotFound,
                                Some("settled") => Outcome::AlreadySettled,
                                Some("released") => Outcome::AlreadyReleased,
                                Some("expired") => Outcome::AlreadyExpired,
                                Some(other) => {
                                    return Err($crate::StoreError::Corrupt(format!(
                                        "budget hold `{id}` has unknown state `{other}`"
                                    ))
                                    .into());
                                }
                            });
                        }
                    }
                };
                let spend = actual.unwrap_or_default();
                let keys: Vec<String> = sqlx::query_scalar(sql::HOLD_KEYS_SORTED)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                for key in &keys {
                    self.apply_counter(&mut tx, key, release, spend, at).await?;
                }
                tx.commit().await.map_err(|e| self.attempt(e))?;
                Ok(outcome)
            }

            async fn apply_counter(
                &self,
                tx: &mut sqlx::Transaction<'static, <$store as $crate::govern_sql::Backend>::Db>,
                key: &str,
                release: $crate::BudgetAmounts,
                spend: $crate::BudgetAmounts,
                at: aura_core::Timestamp,
            ) -> Result<(), $crate::govern_sql::Attempt> {
                sqlx::query($crate::govern_sql::COUNTER_APPLY)
                    .bind(key)
                    .bind(release.cost_micros)
                    .bind(release.effort)
                    .bind(release.risk)
                    .bind(spend.cost_micros)
                    .bind(spend.effort)
                    .bind(spend.risk)
                    .bind(at.as_millis())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                Ok(())
            }

            async fn try_budget_expire(
                &self,
                now: aura_core::Timestamp,
                forget_before: aura_core::Timestamp,
            ) -> Result<Vec<$crate::BudgetHoldRecord>, $crate::govern_sql::Attempt> {
                use $crate::govern_sql as sql;
                let mut tx = self.begin_attempt().await?;
                let rows: Vec<sql::ExpiredRow> = sqlx::query_as(sql::HOLDS_EXPIRE)
                    .bind(now.as_millis())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                let mut totals = std::collections::BTreeMap::<String, $crate::BudgetAmounts>::new();
                let mut expired = Vec::with_capacity(rows.len());
                for (id, c, e, r, created_at, expires_at) in rows {
                    let keys: Vec<String> = sqlx::query_scalar(sql::HOLD_KEYS_IN_ORDER)
                        .bind(id.as_str())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(|e| self.attempt(e))?;
                    for key in &keys {
                        let total = totals.entry(key.clone()).or_default();
                        total.cost_micros += c;
                        total.effort += e;
                        total.risk += r;
                    }
                    expired.push($crate::BudgetHoldRecord {
                        id,
                        keys,
                        amounts: sql::amounts(c, e, r),
                        created_at: aura_core::Timestamp::from_millis(created_at),
                        expires_at: aura_core::Timestamp::from_millis(expires_at),
                    });
                }
                for (key, total) in &totals {
                    self.apply_counter(&mut tx, key, *total, $crate::BudgetAmounts::default(), now)
                        .await?;
                }
                sqlx::query(sql::HOLDS_FORGET)
                    .bind(forget_before.as_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                tx.commit().await.map_err(|e| self.attempt(e))?;
                Ok(expired)
            }

            async fn try_approval_request(
                &self,
                request: &$crate::ApprovalRecord,
            ) -> Result<$crate::ApprovalRecord, $crate::govern_sql::Attempt> {
                use $crate::govern_sql as sql;
                let mut tx = self.begin_attempt().await?;
                sqlx::query(sql::APPROVAL_EXPIRE_PENDING)
                    .bind(request.agent.as_str())
                    .bind(request.action_hash.as_str())
                    .bind(request.created_at.as_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                sqlx::query(sql::APPROVAL_INSERT)
                    .bind(request.id.as_str())
                    .bind(request.agent.as_str())
                    .bind(request.action_hash.as_str())
                    .bind(request.kind.as_str())
                    .bind(request.target.as_str())
                    .bind(request.created_at.as_millis())
                    .bind(request.expires_at.as_millis())
                    .bind(request.status.as_str())
                    .bind(request.decided_by.as_deref())
                    .bind(request.decided_at.map(|t| t.as_millis()))
                    .bind(request.reason.as_deref())
                    .bind(request.consumed_at.map(|t| t.as_millis()))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                let row: Option<sql::ApprovalRow> = sqlx::query_as(sql::APPROVAL_PENDING)
                    .bind(request.agent.as_str())
                    .bind(request.action_hash.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                tx.commit().await.map_err(|e| self.attempt(e))?;
                match row {
                    Some(row) => Ok(sql::approval_from_row(row)?),
                    None => Err($crate::StoreError::Conflict(format!(
                        "an approval with id `{}` already exists",
                        request.id
                    ))
                    .into()),
                }
            }

            async fn try_approval_decide(
                &self,
                id: &str,
                decision: &$crate::ApprovalDecision,
            ) -> Result<$crate::ApprovalDecideOutcome, $crate::govern_sql::Attempt> {
                use $crate::ApprovalDecideOutcome as Outcome;
                use $crate::govern_sql as sql;
                let status = if decision.approve {
                    $crate::ApprovalStatus::Approved
                } else {
                    $crate::ApprovalStatus::Denied
                };
                let mut tx = self.begin_attempt().await?;
                let decided: Option<sql::ApprovalRow> = sqlx::query_as(sql::APPROVAL_DECIDE)
                    .bind(id)
                    .bind(status.as_str())
                    .bind(decision.by.as_str())
                    .bind(decision.at.as_millis())
                    .bind(decision.reason.as_deref())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.attempt(e))?;
                let outcome = match decided {
                    Some(row) => Outcome::Decided(sql::approval_from_row(row)?),
                    None => {
                        let expired: Option<sql::ApprovalRow> =
                            sqlx::query_as(sql::APPROVAL_MARK_EXPIRED)
                                .bind(id)
                                .bind(decision.at.as_millis())
                                .fetch_optional(&mut *tx)
                                .await
                                .map_err(|e| self.attempt(e))?;
                        match expired {
                            Some(row) => Outcome::Expired(sql::approval_from_row(row)?),
                            None => {
                                let row: Option<sql::ApprovalRow> =
                                    sqlx::query_as(sql::APPROVAL_BY_ID)
                                        .bind(id)
                                        .fetch_optional(&mut *tx)
                                        .await
                                        .map_err(|e| self.attempt(e))?;
                                match row.map(sql::approval_from_row).transpose()? {
                                    None => Outcome::NotFound,
                                    Some(r) if r.status == $crate::ApprovalStatus::Expired => {
                                        Outcome::Expired(r)
                                    }
                                    Some(r) => Outcome::AlreadyDecided(r),
                                }
                            }
                        }
                    }
                };
                tx.commit().await.map_err(|e| self.attempt(e))?;
                Ok(outcome)
            }

            async fn try_halts_put(
                &self,
                halts: &[$crate::HaltRecord],
            ) -> Result<(), $crate::govern_sql::Attempt> {
                let mut tx = self.begin_attempt().await?;
                for halt in halts {
                    let (agent, state, cause, from) = $crate::govern_sql::halt_columns(halt);
                    sqlx::query($crate::govern_sql::HALT_UPSERT)
                        .bind(agent)
                        .bind(state)
                        .bind(halt.reason.as_str())
                        .bind(halt.by.as_str())
                        .bind(halt.at.as_millis())
                        .bind(cause)
                        .bind(from)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.attempt(e))?;
                }
                tx.commit().await.map_err(|e| self.attempt(e))
            }

            async fn try_halts_remove(
                &self,
                agents: &[Option<aura_core::AgentName>],
            ) -> Result<(), $crate::govern_sql::Attempt> {
                let mut tx = self.begin_attempt().await?;
                for agent in agents {
                    let key = agent
                        .as_ref()
                        .map_or($crate::govern_sql::ALL_AGENTS, aura_core::AgentName::as_str);
                    sqlx::query($crate::govern_sql::HALT_DELETE)
                        .bind(key)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.attempt(e))?;
                }
                tx.commit().await.map_err(|e| self.attempt(e))
            }
        }

        #[async_trait::async_trait]
        impl $crate::GovernStore for $store {
            async fn budget_hold(
                &self,
                request: &$crate::BudgetHoldRequest,
            ) -> Result<$crate::BudgetHoldOutcome, $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_budget_hold(request))
            }

            async fn budget_settle(
                &self,
                id: &str,
                actual: $crate::BudgetAmounts,
                at: aura_core::Timestamp,
            ) -> Result<$crate::BudgetFinishOutcome, $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_budget_finish(id, Some(actual), at))
            }

            async fn budget_release(
                &self,
                id: &str,
                at: aura_core::Timestamp,
            ) -> Result<$crate::BudgetFinishOutcome, $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_budget_finish(id, None, at))
            }

            async fn budget_expire(
                &self,
                now: aura_core::Timestamp,
                forget_before: aura_core::Timestamp,
            ) -> Result<Vec<$crate::BudgetHoldRecord>, $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_budget_expire(now, forget_before))
            }

            async fn budget_counter(
                &self,
                key: &str,
            ) -> Result<Option<$crate::BudgetCounterRecord>, $crate::StoreError> {
                let row: Option<$crate::govern_sql::CounterRow> =
                    sqlx::query_as($crate::govern_sql::COUNTER_BY_KEY)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.target.error(e))?;
                Ok(row.map($crate::govern_sql::counter_from_row))
            }

            async fn budget_override(
                &self,
                key: &str,
                grant: &$crate::BudgetOverrideRecord,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::govern_sql::COUNTER_OVERRIDE)
                    .bind(key)
                    .bind(grant.by.as_str())
                    .bind(grant.reason.as_str())
                    .bind(grant.at.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?;
                Ok(())
            }

            async fn approval_request(
                &self,
                request: &$crate::ApprovalRecord,
            ) -> Result<$crate::ApprovalRecord, $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_approval_request(request))
            }

            async fn approval(
                &self,
                id: &str,
            ) -> Result<Option<$crate::ApprovalRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::govern_sql::ApprovalRow>(
                    $crate::govern_sql::APPROVAL_BY_ID,
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.target.error(e))?
                .map($crate::govern_sql::approval_from_row)
                .transpose()
            }

            async fn approvals(
                &self,
                agent: Option<&aura_core::AgentName>,
            ) -> Result<Vec<$crate::ApprovalRecord>, $crate::StoreError> {
                let rows: Vec<$crate::govern_sql::ApprovalRow> = match agent {
                    Some(agent) => {
                        sqlx::query_as($crate::govern_sql::APPROVALS_OF_AGENT)
                            .bind(agent.as_str())
                            .fetch_all(&self.pool)
                            .await
                    }
                    None => {
                        sqlx::query_as($crate::govern_sql::APPROVALS_ALL)
                            .fetch_all(&self.pool)
                            .await
                    }
                }
                .map_err(|e| self.target.error(e))?;
                rows.into_iter()
                    .map($crate::govern_sql::approval_from_row)
                    .collect()
            }

            async fn approval_latest(
                &self,
                agent: &aura_core::AgentName,
                action_hash: &str,
            ) -> Result<Option<$crate::ApprovalRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::govern_sql::ApprovalRow>(
                    $crate::govern_sql::APPROVAL_LATEST,
                )
                .bind(agent.as_str())
                .bind(action_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.target.error(e))?
                .map($crate::govern_sql::approval_from_row)
                .transpose()
            }

            async fn approval_decide(
                &self,
                id: &str,
                decision: &$crate::ApprovalDecision,
            ) -> Result<$crate::ApprovalDecideOutcome, $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_approval_decide(id, decision))
            }

            async fn approval_consume(
                &self,
                agent: &aura_core::AgentName,
                action_hash: &str,
                at: aura_core::Timestamp,
            ) -> Result<Option<$crate::ApprovalRecord>, $crate::StoreError> {
                let mut tries = 0u32;
                loop {
                    let result = sqlx::query_as::<_, $crate::govern_sql::ApprovalRow>(
                        $crate::govern_sql::APPROVAL_CONSUME,
                    )
                    .bind(agent.as_str())
                    .bind(action_hash)
                    .bind(at.as_millis())
                    .fetch_optional(&self.pool)
                    .await;
                    match result {
                        Ok(row) => {
                            return row.map($crate::govern_sql::approval_from_row).transpose();
                        }
                        Err(err) => match self.attempt(err) {
                            $crate::govern_sql::Attempt::Retry(err)
                                if tries >= $crate::govern_sql::MAX_RETRIES =>
                            {
                                return Err(self.target.error(err));
                            }
                            $crate::govern_sql::Attempt::Retry(_) => tries += 1,
                            $crate::govern_sql::Attempt::Fail(err) => return Err(err),
                        },
                    }
                }
            }

            async fn halts_put(
                &self,
                halts: &[$crate::HaltRecord],
            ) -> Result<(), $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_halts_put(halts))
            }

            async fn halts_remove(
                &self,
                agents: &[Option<aura_core::AgentName>],
            ) -> Result<(), $crate::StoreError> {
                $crate::govern_sql::retry!(self, self.try_halts_remove(agents))
            }

            async fn halts(&self) -> Result<Vec<$crate::HaltRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::govern_sql::HaltRow>($crate::govern_sql::HALTS_ALL)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?
                    .into_iter()
                    .map($crate::govern_sql::halt_from_row)
                    .collect()
            }

            async fn agent_edge_insert(
                &self,
                edge: &$crate::AgentEdgeRecord,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query($crate::govern_sql::EDGE_INSERT)
                    .bind(edge.from.as_str())
                    .bind(edge.to.as_str())
                    .bind(edge.learned_at.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn agent_edges(
                &self,
            ) -> Result<Vec<$crate::AgentEdgeRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::govern_sql::EdgeRow>($crate::govern_sql::EDGES_ALL)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?
                    .into_iter()
                    .map($crate::govern_sql::edge_from_row)
                    .collect()
            }
        }
    };
}

pub(crate) use impl_govern_store;

/// Names a backend's database type, so the macro can spell its transaction type.
pub(crate) trait Backend {
    /// The sqlx database.
    type Db: sqlx::Database;
}
