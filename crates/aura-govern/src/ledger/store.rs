//! The persistent ledger: counters and holds in SQLite or PostgreSQL through `aura-store`, whose conditional
//! upserts inside one transaction keep every key within its limits even with several `aura` processes sharing a
//! database.

use std::sync::Arc;

use async_trait::async_trait;
use aura_core::{Clock, Timestamp};
use aura_store::{
    BudgetAmounts, BudgetCounterRecord, BudgetFinishOutcome, BudgetHoldLine, BudgetHoldOutcome,
    BudgetHoldRequest, BudgetLimits, BudgetOverrideRecord, GovernStore,
};

use super::{
    Amounts, BudgetKey, ExpiredReservation, FINISHED_RETENTION_MILLIS, KeyUsage, Ledger,
    LedgerError, Limits, OverrideGrant, ReleaseOutcome, Reservation, ReservationId, ReserveRequest,
    SettleOutcome, Usage, exceeded, random_u64, validate, validate_amounts,
};

/// A ledger persisted in the state store. Every call is one transaction.
#[derive(Debug, Clone)]
pub struct StoreLedger {
    store: Arc<dyn GovernStore>,
    clock: Arc<dyn Clock>,
}

impl StoreLedger {
    /// A ledger over `store` (pass the `Arc<dyn Store>` from `aura_store::open`; it coerces), stamping times from
    /// `clock`.
    pub fn new(store: Arc<dyn GovernStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl Ledger for StoreLedger {
    async fn reserve(&self, request: &ReserveRequest) -> Result<Reservation, LedgerError> {
        validate(request)?;
        let id = ReservationId::from_u64(random_u64());
        let hold = BudgetHoldRequest {
            id: id.to_string(),
            lines: request
                .lines
                .iter()
                .map(|line| BudgetHoldLine {
                    key: line.key.as_str().to_owned(),
                    limits: to_store_limits(line.limits),
                })
                .collect(),
            amounts: to_store(request.amounts),
            created_at: self.clock.now(),
            expires_at: request.expires_at,
        };
        match self.store.budget_hold(&hold).await? {
            BudgetHoldOutcome::Held(before) => {
                let keys = request
                    .lines
                    .iter()
                    .zip(before)
                    .map(|(line, counter)| {
                        let mut before = from_counter(&counter);
                        before.limits = line.limits;
                        let mut after = before;
                        after.reserved = Amounts {
                            cost_micros: before.reserved.cost_micros + request.amounts.cost_micros,
                            effort: before.reserved.effort + request.amounts.effort,
                            risk: before.reserved.risk + request.amounts.risk,
                        };
                        KeyUsage {
                            key: line.key.clone(),
                            before,
                            after,
                        }
                    })
                    .collect();
                Ok(Reservation {
                    id,
                    amounts: request.amounts,
                    expires_at: request.expires_at,
                    keys,
                })
            }
            BudgetHoldOutcome::Refused(counter) => {
                let limits = request
                    .lines
                    .iter()
                    .find(|l| l.key.as_str() == counter.key)
                    .map(|l| l.limits)
                    .unwrap_or_default();
                let usage = from_counter(&counter);
                // The counter was read after the refusal; should a concurrent release have made room meanwhile,
                // still report the refusal, with the first limited dimension.
                let err = exceeded(
                    &counter.key,
                    usage.spent,
                    usage.reserved,
                    limits,
                    request.amounts,
                )
                .unwrap_or_else(|| {
                    let dimension = super::Dimension::ALL
                        .into_iter()
                        .find(|d| limits.get(*d).is_some())
                        .unwrap_or(super::Dimension::Cost);
                    LedgerError::Exceeded {
                        key: counter.key.clone(),
                        dimension,
                        limit: limits.get(dimension).unwrap_or(0),
                        spent: usage.spent.get(dimension),
                        reserved: usage.reserved.get(dimension),
                        requested: request.amounts.get(dimension),
                    }
                });
                Err(err)
            }
        }
    }

    async fn settle(
        &self,
        id: ReservationId,
        actual: Amounts,
    ) -> Result<SettleOutcome, LedgerError> {
        validate_amounts(actual)?;
        let outcome = self
            .store
            .budget_settle(&id.to_string(), to_store(actual), self.clock.now())
            .await?;
        Ok(match outcome {
            BudgetFinishOutcome::Settled => SettleOutcome::Settled,
            BudgetFinishOutcome::SettledAfterExpiry => SettleOutcome::SettledAfterExpiry,
            BudgetFinishOutcome::AlreadySettled => SettleOutcome::AlreadySettled,
            BudgetFinishOutcome::AlreadyReleased => SettleOutcome::AlreadyReleased,
            // The store never answers these to a settle; treat them as unknown.
            BudgetFinishOutcome::NotFound
            | BudgetFinishOutcome::Released
            | BudgetFinishOutcome::AlreadyExpired => SettleOutcome::NotFound,
        })
    }

    async fn release(&self, id: ReservationId) -> Result<ReleaseOutcome, LedgerError> {
        let outcome = self
            .store
            .budget_release(&id.to_string(), self.clock.now())
            .await?;
        Ok(match outcome {
            BudgetFinishOutcome::Released => ReleaseOutcome::Released,
            BudgetFinishOutcome::AlreadyReleased => ReleaseOutcome::AlreadyReleased,
            BudgetFinishOutcome::AlreadySettled => ReleaseOutcome::AlreadySettled,
            BudgetFinishOutcome::AlreadyExpired => ReleaseOutcome::AlreadyExpired,
            BudgetFinishOutcome::NotFound
            | BudgetFinishOutcome::Settled
            | BudgetFinishOutcome::SettledAfterExpiry => ReleaseOutcome::NotFound,
        })
    }

    async fn expire(&self, now: Timestamp) -> Result<Vec<ExpiredReservation>, LedgerError> {
        let forget_before =
            Timestamp::from_millis(now.as_millis().saturating_sub(FINISHED_RETENTION_MILLIS));
        let holds = self.store.budget_expire(now, forget_before).await?;
        let mut expired: Vec<ExpiredReservation> = holds
            .into_iter()
            .filter_map(|hold| {
                let Some(id) = ReservationId::parse(&hold.id) else {
                    tracing::warn!(hold = %hold.id, "expired a budget hold with a foreign id");
                    return None;
                };
                Some(ExpiredReservation {
                    id,
                    keys: hold.keys,
                    amounts: from_store(hold.amounts),
                    expires_at: hold.expires_at,
                })
            })
            .collect();
        expired.sort_by_key(|e| (e.expires_at, e.id));
        Ok(expired)
    }

    async fn usage(&self, key: &BudgetKey) -> Result<Usage, LedgerError> {
        Ok(self
            .store
            .budget_counter(key.as_str())
            .await?
            .map(|c| from_counter(&c))
            .unwrap_or_default())
    }

    async fn grant_override(
        &self,
        key: &BudgetKey,
        grant: &OverrideGrant,
    ) -> Result<(), LedgerError> {
        let record = BudgetOverrideRecord {
            by: grant.by.clone(),
            reason: grant.reason.clone(),
            at: self.clock.now(),
        };
        Ok(self.store.budget_override(key.as_str(), &record).await?)
    }
}

fn to_store(a: Amounts) -> BudgetAmounts {
    BudgetAmounts {
        cost_micros: a.cost_micros,
        effort: a.effort,
        risk: a.risk,
    }
}

fn from_store(a: BudgetAmounts) -> Amounts {
    Amounts {
        cost_micros: a.cost_micros,
        effort: a.effort,
        risk: a.risk,
    }
}

fn to_store_limits(l: Limits) -> BudgetLimits {
    BudgetLimits {
        cost_micros: l.cost_micros,
        effort: l.effort,
        risk: l.risk,
    }
}

fn from_counter(c: &BudgetCounterRecord) -> Usage {
    Usage {
        spent: from_store(c.spent),
        reserved: from_store(c.reserved),
        limits: Limits {
            cost_micros: c.limits.cost_micros,
            effort: c.limits.effort,
            risk: c.limits.risk,
        },
        overridden: c.override_grant.is_some(),
    }
}
