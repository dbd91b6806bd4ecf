//! The in-process ledger: every counter and hold behind one mutex, so a reservation checks and takes all of its
//! keys in one critical section of a few hundred nanoseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use aura_core::{Clock, Timestamp};

use super::{
    Amounts, BudgetKey, ExpiredReservation, FINISHED_RETENTION_MILLIS, KeyUsage, Ledger,
    LedgerError, Limits, OverrideGrant, ReleaseOutcome, Reservation, ReservationId, ReserveRequest,
    SettleOutcome, Usage, exceeded, random_u64, validate, validate_amounts,
};

/// A ledger for a single process. State is lost on restart; use [`super::StoreLedger`] to persist it or to share
/// budgets between processes.
#[derive(Debug)]
pub struct MemoryLedger {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    counters: HashMap<Arc<str>, Counter>,
    holds: HashMap<u64, Hold>,
    next_id: u64,
}

#[derive(Debug, Default)]
struct Counter {
    spent: Amounts,
    reserved: Amounts,
    limits: Limits,
    overridden: bool,
}

impl Counter {
    fn usage(&self) -> Usage {
        Usage {
            spent: self.spent,
            reserved: self.reserved,
            limits: self.limits,
            overridden: self.overridden,
        }
    }
}

#[derive(Debug)]
struct Hold {
    keys: Vec<Arc<str>>,
    amounts: Amounts,
    expires_at: Timestamp,
    state: HoldState,
    finished_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldState {
    Held,
    Settled,
    Released,
    Expired,
}

impl MemoryLedger {
    /// An empty ledger; `clock` stamps when reservations finish (for forgetting them later).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State {
                counters: HashMap::new(),
                holds: HashMap::new(),
                next_id: random_u64(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, so a poisoned mutex still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn reserve(&self, request: &ReserveRequest) -> Result<Reservation, LedgerError> {
        validate(request)?;
        let amounts = request.amounts;
        let mut state = self.lock();
        for line in &request.lines {
            let (spent, reserved) = state
                .counters
                .get(line.key.as_str())
                .map_or((Amounts::default(), Amounts::default()), |c| {
                    (c.spent, c.reserved)
                });
            if let Some(err) = exceeded(line.key.as_str(), spent, reserved, line.limits, amounts) {
                return Err(err);
            }
        }
        let id = state.next_id;
        state.next_id = id.wrapping_add(1);
        let mut keys = Vec::with_capacity(request.lines.len());
        let mut hold_keys = Vec::with_capacity(request.lines.len());
        for line in &request.lines {
            let counter = state.counters.entry(line.key.shared()).or_default();
            counter.limits = line.limits;
            let before = counter.usage();
            counter.reserved = add(counter.reserved, amounts);
            keys.push(KeyUsage {
                key: line.key.clone(),
                before,
                after: counter.usage(),
            });
            hold_keys.push(line.key.shared());
        }
        state.holds.insert(
            id,
            Hold {
                keys: hold_keys,
                amounts,
                expires_at: request.expires_at,
                state: HoldState::Held,
                finished_at: Timestamp::from_millis(i64::MAX),
            },
        );
        Ok(Reservation {
            id: ReservationId::from_u64(id),
            amounts,
            expires_at: request.expires_at,
            keys,
        })
    }

    async fn settle(
        &self,
        id: ReservationId,
        actual: Amounts,
    ) -> Result<SettleOutcome, LedgerError> {
        validate_amounts(actual)?;
        let now = self.clock.now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(hold) = state.holds.get_mut(&id.0) else {
            return Ok(SettleOutcome::NotFound);
        };
        let (release, outcome) = match hold.state {
            HoldState::Held => (hold.amounts, SettleOutcome::Settled),
            HoldState::Expired => (Amounts::default(), SettleOutcome::SettledAfterExpiry),
            HoldState::Settled => return Ok(SettleOutcome::AlreadySettled),
            HoldState::Released => return Ok(SettleOutcome::AlreadyReleased),
        };
        hold.state = HoldState::Settled;
        hold.finished_at = now;
        for key in &hold.keys {
            let counter = state.counters.entry(Arc::clone(key)).or_default();
            counter.reserved = sub(counter.reserved, release);
            counter.spent = add(counter.spent, actual);
        }
        Ok(outcome)
    }

    async fn release(&self, id: ReservationId) -> Result<ReleaseOutcome, LedgerError> {
        let now = self.clock.now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(hold) = state.holds.get_mut(&id.0) else {
            return Ok(ReleaseOutcome::NotFound);
        };
        match hold.state {
            HoldState::Held => {}
            HoldState::Released => return Ok(ReleaseOutcome::AlreadyReleased),
            HoldState::Settled => return Ok(ReleaseOutcome::AlreadySettled),
            HoldState::Expired => return Ok(ReleaseOutcome::AlreadyExpired),
        }
        hold.state = HoldState::Released;
        hold.finished_at = now;
        for key in &hold.keys {
            let counter = state.counters.entry(Arc::clone(key)).or_default();
            counter.reserved = sub(counter.reserved, hold.amounts);
        }
        Ok(ReleaseOutcome::Released)
    }

    async fn expire(&self, now: Timestamp) -> Result<Vec<ExpiredReservation>, LedgerError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut expired = Vec::new();
        for (id, hold) in &mut state.holds {
            if hold.state != HoldState::Held || hold.expires_at > now {
                continue;
            }
            hold.state = HoldState::Expired;
            hold.finished_at = now;
            for key in &hold.keys {
                let counter = state.counters.entry(Arc::clone(key)).or_default();
                counter.reserved = sub(counter.reserved, hold.amounts);
            }
            expired.push(ExpiredReservation {
                id: ReservationId::from_u64(*id),
                keys: hold.keys.iter().map(|k| k.to_string()).collect(),
                amounts: hold.amounts,
                expires_at: hold.expires_at,
            });
        }
        let forget_before = now.as_millis().saturating_sub(FINISHED_RETENTION_MILLIS);
        state.holds.retain(|_, hold| {
            hold.state == HoldState::Held || hold.finished_at.as_millis() >= forget_before
        });
        expired.sort_by_key(|e| (e.expires_at, e.id));
        Ok(expired)
    }

    async fn usage(&self, key: &BudgetKey) -> Result<Usage, LedgerError> {
        Ok(self
            .lock()
            .counters
            .get(key.as_str())
            .map(Counter::usage)
            .unwrap_or_default())
    }

    async fn grant_override(
        &self,
        key: &BudgetKey,
        _grant: &OverrideGrant,
    ) -> Result<(), LedgerError> {
        self.lock()
            .counters
            .entry(key.shared())
            .or_default()
            .overridden = true;
        Ok(())
    }
}

fn add(a: Amounts, b: Amounts) -> Amounts {
    Amounts {
        cost_micros: a.cost_micros.saturating_add(b.cost_micros),
        effort: a.effort.saturating_add(b.effort),
        risk: a.risk.saturating_add(b.risk),
    }
}

fn sub(a: Amounts, b: Amounts) -> Amounts {
    Amounts {
        cost_micros: a.cost_micros.saturating_sub(b.cost_micros),
        effort: a.effort.saturating_sub(b.effort),
        risk: a.risk.saturating_sub(b.risk),
    }
}
