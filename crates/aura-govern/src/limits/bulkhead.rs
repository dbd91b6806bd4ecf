//! Bulkheads: at most N actions in flight per agent, tool or key; a permit frees its slots when dropped or
//! released by id.
//!
//! The kernel usually acquires when it decides and releases when the action settles, possibly from another
//! request: [`BulkheadPermit::detach`] turns the guard into a [`PermitId`] for [`Bulkheads::release`]. Permits
//! that are never released (a crashed agent) expire after a lease and are reclaimed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aura_core::{Action, ActionKind, Timestamp};

use super::scope::{Scope, Selector};
use super::{SpecError, lock};

/// One bulkhead as the policy states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadSpec {
    /// Rule id, reported when the bulkhead refuses.
    pub id: String,
    /// What the bulkhead is keyed by.
    pub scope: Scope,
    /// Kinds of action it counts; empty means all.
    pub kinds: Vec<ActionKind>,
    /// Actions in flight at once per key; at least 1.
    pub max_concurrent: u32,
}

/// Identifies an acquired permit, for [`Bulkheads::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PermitId(pub u64);

impl fmt::Display for PermitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A refusal: the bulkhead is full for this key (or too many permits are outstanding overall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    /// The refusing bulkhead's id (`*` when the global permit cap refused).
    pub bulkhead_id: String,
    /// The key.
    pub key: String,
    /// Its limit.
    pub max_concurrent: u32,
}

/// Concurrency limits. Clone to share: clones see the same state.
#[derive(Debug, Clone)]
pub struct Bulkheads {
    inner: Arc<Inner>,
}

impl Bulkheads {
    /// Compiles `specs`. A permit not released within `lease` is reclaimed; at most `max_permits` permits may be
    /// outstanding at once.
    pub fn new(
        specs: Vec<BulkheadSpec>,
        lease: Duration,
        max_permits: usize,
    ) -> Result<Self, SpecError> {
        let mut limits = Vec::with_capacity(specs.len());
        for spec in specs {
            let err = |reason: String| SpecError::Bulkhead {
                id: spec.id.clone(),
                reason,
            };
            if spec.id.is_empty() {
                return Err(err("id must not be empty".into()));
            }
            if limits.iter().any(|l: &Limit| l.id == spec.id) {
                return Err(err("duplicate id".into()));
            }
            if spec.max_concurrent == 0 {
                return Err(err("max_concurrent must be at least 1".into()));
            }
            let selector = Selector::new(&spec.scope, &spec.kinds).map_err(err)?;
            limits.push(Limit {
                id: spec.id,
                selector,
                max: spec.max_concurrent,
            });
        }
        if lease.is_zero() || max_permits == 0 {
            return Err(SpecError::Capacity(
                "bulkhead lease and max_permits must be more than zero".into(),
            ));
        }
        let in_flight = limits.iter().map(|_| HashMap::new()).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                limits,
                lease: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
                max_permits,
                state: Mutex::new(State {
                    in_flight,
                    permits: HashMap::new(),
                    next_id: 1,
                    next_expiry: i64::MAX,
                }),
            }),
        })
    }

    /// Takes one slot in every bulkhead that applies to `action`, or none if any is full.
    pub fn try_acquire(
        &self,
        action: &Action,
        now: Timestamp,
    ) -> Result<BulkheadPermit, BulkheadFull> {
        let targets: Vec<(usize, &str, String)> = self
            .inner
            .limits
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l.selector
                    .key(action)
                    .map(|k| (i, l.id.as_str(), k.into_owned()))
            })
            .collect();
        self.acquire(targets, now)
    }

    /// Takes one slot in the bulkhead `bulkhead_id` for an explicit key. An unknown id is refused (fail closed).
    pub fn try_acquire_key(
        &self,
        bulkhead_id: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<BulkheadPermit, BulkheadFull> {
        match self.inner.limits.iter().position(|l| l.id == bulkhead_id) {
            Some(i) => self.acquire(vec![(i, bulkhead_id, key.to_owned())], now),
            None => Err(BulkheadFull {
                bulkhead_id: bulkhead_id.to_owned(),
                key: key.to_owned(),
                max_concurrent: 0,
            }),
        }
    }

    /// Acquires one slot in each `(bulkhead id, key)` at once, all or nothing (the caller decides which apply).
    /// An unknown id is refused.
    pub fn try_acquire_keys(
        &self,
        keys: &[(String, String)],
        now: Timestamp,
    ) -> Result<BulkheadPermit, BulkheadFull> {
        let mut targets = Vec::with_capacity(keys.len());
        for (id, key) in keys {
            match self.inner.limits.iter().position(|l| &l.id == id) {
                Some(i) => targets.push((i, id.as_str(), key.clone())),
                None => {
                    return Err(BulkheadFull {
                        bulkhead_id: id.clone(),
                        key: key.clone(),
                        max_concurrent: 0,
                    });
                }
            }
        }
        self.acquire(targets, now)
    }

    /// Frees a permit's slots. Returns false if it was already released or reclaimed (releasing twice is harmless).
    pub fn release(&self, id: PermitId) -> bool {
        self.inner.release(id)
    }

    /// Reclaims permits older than the lease; returns their ids (the kernel may log them).
    pub fn release_expired(&self, now: Timestamp) -> Vec<PermitId> {
        let mut state = lock(&self.inner.state);
        state.reap(now.as_millis())
    }

    /// How many actions are in flight in bulkhead `bulkhead_id` for `key`.
    pub fn in_flight(&self, bulkhead_id: &str, key: &str) -> u32 {
        let Some(i) = self.inner.limits.iter().position(|l| l.id == bulkhead_id) else {
            return 0;
        };
        let state = lock(&self.inner.state);
        state
            .in_flight
            .get(i)
            .and_then(|m| m.get(key))
            .copied()
            .unwrap_or(0)
    }

    fn acquire(
        &self,
        targets: Vec<(usize, &str, String)>,
        now: Timestamp,
    ) -> Result<BulkheadPermit, BulkheadFull> {
        let now = now.as_millis();
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        let id = state.next_id;
        state.next_id += 1;
        if targets.is_empty() {
            // Nothing applies: a permit that holds no slot.
            return Ok(BulkheadPermit {
                id: PermitId(id),
                owner: None,
            });
        }
        if now >= state.next_expiry {
            state.reap(now);
        }
        if state.permits.len() >= inner.max_permits {
            return Err(BulkheadFull {
                bulkhead_id: "*".into(),
                key: String::new(),
                max_concurrent: u32::try_from(inner.max_permits).unwrap_or(u32::MAX),
            });
        }
        for (i, limit_id, key) in &targets {
            let max = inner.limits.get(*i).map_or(0, |l| l.max);
            let used = state
                .in_flight
                .get(*i)
                .and_then(|m| m.get(key))
                .copied()
                .unwrap_or(0);
            if used >= max {
                return Err(BulkheadFull {
                    bulkhead_id: (*limit_id).to_owned(),
                    key: key.clone(),
                    max_concurrent: max,
                });
            }
        }
        let mut slots = Vec::with_capacity(targets.len());
        for (i, _, key) in targets {
            if let Some(map) = state.in_flight.get_mut(i) {
                *map.entry(key.clone()).or_insert(0) += 1;
            }
            slots.push((i, key));
        }
        let expires = now.saturating_add(inner.lease);
        state.next_expiry = state.next_expiry.min(expires);
        state.permits.insert(id, Held { slots, expires });
        Ok(BulkheadPermit {
            id: PermitId(id),
            owner: Some(Arc::clone(inner)),
        })
    }
}

/// Slots held in one or more bulkheads. Dropping it releases them; [`detach`](Self::detach) keeps them held
/// until [`Bulkheads::release`] (or the lease ends).
#[derive(Debug)]
#[must_use = "dropping a permit releases its slots at once"]
pub struct BulkheadPermit {
    id: PermitId,
    owner: Option<Arc<Inner>>,
}

impl BulkheadPermit {
    /// The permit's id.
    pub fn id(&self) -> PermitId {
        self.id
    }

    /// Keeps the slots held after this guard is gone; release them later with [`Bulkheads::release`].
    pub fn detach(mut self) -> PermitId {
        self.owner = None;
        self.id
    }
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            owner.release(self.id);
        }
    }
}

#[derive(Debug)]
struct Inner {
    limits: Vec<Limit>,
    lease: i64,
    max_permits: usize,
    state: Mutex<State>,
}

impl Inner {
    fn release(&self, id: PermitId) -> bool {
        let mut state = lock(&self.state);
        match state.permits.remove(&id.0) {
            Some(held) => {
                state.free(held);
                true
            }
            None => false,
        }
    }
}

#[derive(Debug)]
struct Limit {
    id: String,
    selector: Selector,
    max: u32,
}

#[derive(Debug)]
struct State {
    in_flight: Vec<HashMap<String, u32>>,
    permits: HashMap<u64, Held>,
    next_id: u64,
    /// No permit expires before this instant.
    next_expiry: i64,
}

#[derive(Debug)]
struct Held {
    slots: Vec<(usize, String)>,
    expires: i64,
}

impl State {
    fn free(&mut self, held: Held) {
        for (i, key) in held.slots {
            if let Some(map) = self.in_flight.get_mut(i)
                && let Some(count) = map.get_mut(&key)
            {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
    }

    fn reap(&mut self, now: i64) -> Vec<PermitId> {
        let expired: Vec<u64> = self
            .permits
            .iter()
            .filter(|(_, h)| h.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            if let Some(held) = self.permits.remove(id) {
                tracing::warn!(
                    permit = id,
                    "bulkhead permit lease expired; slots reclaimed"
                );
                self.free(held);
            }
        }
        self.next_expiry = self
            .permits
            .values()
            .map(|h| h.expires)
            .min()
            .unwrap_or(i64::MAX);
        expired.into_iter().map(PermitId).collect()
    }
}
