//! GCRA rate limits on requests and on tokens, keyed per agent, tool or template, checked all-or-nothing.
//!
//! The generic cell rate algorithm keeps one number per key and dimension: the theoretical arrival time (TAT). A
//! request costing `n` cells is admitted iff `max(TAT, now) + n·T − now ≤ burst·T` (`T` = period / count); admitting
//! moves the TAT there. A key whose TAT is in the past is indistinguishable from a fresh key, so idle keys are
//! dropped without losing anything: that is what keeps memory bounded.
//!
//! Time is the injected [`Timestamp`] (milliseconds); arithmetic is in nanoseconds so `retry_after` is exact.
//! We do not use `governor` here: it has no way to check several limits and commit only if all pass, no refund,
//! and it reads its own clock; GCRA over the injected clock is a few lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aura_core::{Action, ActionKind, Timestamp};
use serde_json::Value;

use super::scope::{Scope, Selector};
use super::{SpecError, lock};

/// `count` cells per `per`, with up to `burst` cells usable at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Cells (requests or tokens) per period; at least 1.
    pub count: u64,
    /// The period; more than zero.
    pub per: Duration,
    /// Cells that may be spent at once; `None` means `count` (a full period's allowance).
    pub burst: Option<u64>,
}

/// One rate limit as the policy states it. The kernel builds these from the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Rule id, reported when the limit refuses.
    pub id: String,
    /// What the limit is keyed by.
    pub scope: Scope,
    /// Kinds of action the limit counts; empty means all.
    pub kinds: Vec<ActionKind>,
    /// Quota on actions (each costs one cell).
    pub requests: Option<Quota>,
    /// Quota on tokens (an action costs its estimated tokens).
    pub tokens: Option<Quota>,
}

/// What a check costs: cells in each dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Request cells, usually 1.
    pub requests: u64,
    /// Token cells.
    pub tokens: u64,
}

/// The dimension (or resource) that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedBy {
    /// The request quota.
    Requests,
    /// The token quota.
    Tokens,
    /// The limit tracks as many keys as it may and none of them is idle yet (fail closed).
    KeyCapacity,
}

/// A refusal: which limit, which key, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The refusing limit's id.
    pub limit_id: String,
    /// The bucket key.
    pub key: String,
    /// The dimension that refused.
    pub limited_by: LimitedBy,
    /// How long until the same request would be admitted; `None` if it never can (it costs more than the burst).
    pub retry_after: Option<Duration>,
}

/// A set of rate limits and their per-key state. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct RateLimits {
    limits: Vec<Limit>,
    max_keys: usize,
    tables: Mutex<Vec<Table>>,
}

impl RateLimits {
    /// Compiles `specs`. Each limit tracks at most `max_keys` keys at once (idle keys are dropped first).
    pub fn new(specs: Vec<RateLimitSpec>, max_keys: usize) -> Result<Self, SpecError> {
        let mut limits = Vec::with_capacity(specs.len());
        for spec in specs {
            let err = |reason: String| SpecError::RateLimit {
                id: spec.id.clone(),
                reason,
            };
            if spec.id.is_empty() {
                return Err(err("id must not be empty".into()));
            }
            if limits.iter().any(|l: &Limit| l.id == spec.id) {
                return Err(err("duplicate id".into()));
            }
            if spec.requests.is_none() && spec.tokens.is_none() {
                return Err(err("needs a request or a token quota".into()));
            }
            let selector = Selector::new(&spec.scope, &spec.kinds).map_err(err)?;
            let requests = spec.requests.map(Rate::new).transpose().map_err(err)?;
            let tokens = spec.tokens.map(Rate::new).transpose().map_err(err)?;
            limits.push(Limit {
                id: spec.id,
                selector,
                requests,
                tokens,
            });
        }
        if max_keys == 0 {
            return Err(SpecError::Capacity("max_keys must be at least 1".into()));
        }
        let tables = limits.iter().map(|_| Table::default()).collect();
        Ok(Self {
            limits,
            max_keys,
            tables: Mutex::new(tables),
        })
    }

    /// Checks every limit that applies to `action` (one request cell, and [`action_tokens`] token cells) and
    /// consumes capacity only if all of them admit it. On refusal nothing is consumed.
    pub fn check(&self, action: &Action, now: Timestamp) -> Result<(), RateLimited> {
        let targets = self.targets(action);
        if targets.is_empty() {
            return Ok(());
        }
        let cost = Cost {
            requests: 1,
            tokens: action_tokens(action),
        };
        self.admit(&targets, cost, nanos(now))
    }

    /// Checks one limit by id for an explicit key and cost, consuming only on success. An unknown id is refused
    /// (fail closed) with `retry_after: None`.
    pub fn check_key(
        &self,
        limit_id: &str,
        key: &str,
        cost: Cost,
        now: Timestamp,
    ) -> Result<(), RateLimited> {
        match self.limits.iter().position(|l| l.id == limit_id) {
            Some(index) => self.admit(&[(index, Cow::Borrowed(key))], cost, nanos(now)),
            None => Err(RateLimited {
                limit_id: limit_id.to_owned(),
                key: key.to_owned(),
                limited_by: LimitedBy::Requests,
                retry_after: None,
            }),
        }
    }

    /// Gives back what a successful [`check`](Self::check) of `action` consumed, e.g. when a later check of the
    /// same decision refused. Exact as long as the limits have not been rebuilt in between.
    pub fn refund(&self, action: &Action, now: Timestamp) {
        let tokens = i128::from(action_tokens(action));
        self.adjust(action, -1, -tokens, nanos(now));
    }

    /// Corrects the token cells an admitted `action` consumed once its real usage is known: `actual` tokens instead
    /// of the estimate. More usage is charged without a check (it already happened); less is given back.
    pub fn settle_tokens(&self, action: &Action, actual: u64, now: Timestamp) {
        let delta = i128::from(actual) - i128::from(action_tokens(action));
        if delta != 0 {
            self.adjust(action, 0, delta, nanos(now));
        }
    }

    /// Drops every key whose buckets are full again (lossless). Returns how many were dropped.
    pub fn evict_idle(&self, now: Timestamp) -> usize {
        let now = nanos(now);
        let mut tables = lock(&self.tables);
        tables.iter_mut().map(|t| t.sweep(now)).sum()
    }

    /// How many keys are tracked across all limits.
    pub fn tracked_keys(&self) -> usize {
        lock(&self.tables).iter().map(|t| t.map.len()).sum()
    }

    fn targets<'a>(&self, action: &'a Action) -> Vec<(usize, Cow<'a, str>)> {
        self.limits
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.selector.key(action).map(|k| (i, k)))
            .collect()
    }

    fn admit(
        &self,
        targets: &[(usize, Cow<'_, str>)],
        cost: Cost,
        now: i128,
    ) -> Result<(), RateLimited> {
        let mut tables = lock(&self.tables);
        let mut plan: Vec<(usize, &str, Entry)> = Vec::with_capacity(targets.len());
        // Phase 1: every limit must admit. Nothing is written except lossless sweeps.
        for (index, key) in targets {
            let (limit, table) = match (self.limits.get(*index), tables.get_mut(*index)) {
                (Some(l), Some(t)) => (l, t),
                _ => continue,
            };
            let entry = table.map.get(key.as_ref()).copied();
            if entry.is_none() && table.map.len() >= self.max_keys {
                table.sweep_if_due(now);
                if table.map.len() >= self.max_keys {
                    return Err(limit.refusal(
                        key,
                        LimitedBy::KeyCapacity,
                        Some(to_duration(table.next_sweep.saturating_sub(now))),
                    ));
                }
            }
            let entry = entry.unwrap_or(Entry {
                requests: now,
                tokens: now,
            });
            let requests = match &limit.requests {
                Some(rate) => rate
                    .advance(entry.requests, cost.requests, now)
                    .map_err(|retry| limit.refusal(key, LimitedBy::Requests, retry))?,
                None => entry.requests,
            };
            let tokens = match &limit.tokens {
                Some(rate) => rate
                    .advance(entry.tokens, cost.tokens, now)
                    .map_err(|retry| limit.refusal(key, LimitedBy::Tokens, retry))?,
                None => entry.tokens,
            };
            plan.push((*index, key.as_ref(), Entry { requests, tokens }));
        }
        // Phase 2: commit.
        for (index, key, entry) in plan {
            if let Some(table) = tables.get_mut(index) {
                match table.map.get_mut(key) {
                    Some(slot) => *slot = entry,
                    None => {
                        table.map.insert(key.to_owned(), entry);
                    }
                }
            }
        }
        Ok(())
    }

    fn adjust(&self, action: &Action, requests: i128, tokens: i128, now: i128) {
        let targets = self.targets(action);
        self.adjust_targets(&targets, requests, tokens, now);
    }

    fn indexed<'a>(
        &self,
        keys: &'a [(String, String)],
    ) -> Result<Vec<(usize, Cow<'a, str>)>, RateLimited> {
        keys.iter()
            .map(
                |(id, key)| match self.limits.iter().position(|l| &l.id == id) {
                    Some(index) => Ok((index, Cow::Borrowed(key.as_str()))),
                    None => Err(RateLimited {
                        limit_id: id.clone(),
                        key: key.clone(),
                        limited_by: LimitedBy::Requests,
                        retry_after: None,
                    }),
                },
            )
            .collect()
    }

    /// Checks several `(limit id, key)` buckets at once for the same cost, consuming only if all admit it
    /// (used when the caller, not the limit's own scope, decides which buckets apply). Unknown ids are refused.
    pub fn check_keys(
        &self,
        keys: &[(String, String)],
        cost: Cost,
        now: Timestamp,
    ) -> Result<(), RateLimited> {
        let targets = self.indexed(keys)?;
        self.admit(&targets, cost, nanos(now))
    }

    /// Gives back what a successful [`check_keys`](Self::check_keys) consumed.
    pub fn refund_keys(&self, keys: &[(String, String)], cost: Cost, now: Timestamp) {
        if let Ok(targets) = self.indexed(keys) {
            self.adjust_targets(
                &targets,
                -i128::from(cost.requests),
                -i128::from(cost.tokens),
                nanos(now),
            );
        }
    }

    /// Corrects the token cells of buckets admitted by [`check_keys`](Self::check_keys) once real usage is known.
    pub fn settle_keys(
        &self,
        keys: &[(String, String)],
        estimated: u64,
        actual: u64,
        now: Timestamp,
    ) {
        let delta = i128::from(actual) - i128::from(estimated);
        if delta != 0
            && let Ok(targets) = self.indexed(keys)
        {
            self.adjust_targets(&targets, 0, delta, nanos(now));
        }
    }

    fn adjust_targets(
        &self,
        targets: &[(usize, Cow<'_, str>)],
        requests: i128,
        tokens: i128,
        now: i128,
    ) {
        if targets.is_empty() {
            return;
        }
        let mut tables = lock(&self.tables);
        for (index, key) in targets {
            let (limit, table) = match (self.limits.get(*index), tables.get_mut(*index)) {
                (Some(l), Some(t)) => (l, t),
                _ => continue,
            };
            let Some(entry) = table.map.get_mut(key.as_ref()) else {
                // Never admitted, or idle and dropped: nothing left to correct.
                continue;
            };
            if let Some(rate) = &limit.requests {
                entry.requests = rate.shift(entry.requests, requests, now);
            }
            if let Some(rate) = &limit.tokens {
                entry.tokens = rate.shift(entry.tokens, tokens, now);
            }
        }
    }
}

/// The token cells an action costs: its estimate, else (for `llm_call`) `args.max_tokens`, else 0.
pub fn action_tokens(action: &Action) -> u64 {
    action.estimate().tokens.unwrap_or_else(|| {
        if action.kind() == ActionKind::LlmCall {
            action
                .args()
                .get("max_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        } else {
            0
        }
    })
}

#[derive(Debug)]
struct Limit {
    id: String,
    selector: Selector,
    requests: Option<Rate>,
    tokens: Option<Rate>,
}

impl Limit {
    fn refusal(
        &self,
        key: &str,
        limited_by: LimitedBy,
        retry_after: Option<Duration>,
    ) -> RateLimited {
        RateLimited {
            limit_id: self.id.clone(),
            key: key.to_owned(),
            limited_by,
            retry_after,
        }
    }
}

/// One quota in nanoseconds: a cell costs `per / count`; up to `tolerance` of debt may be outstanding.
#[derive(Debug)]
struct Rate {
    per: i128,
    count: i128,
    tolerance: i128,
}

/// Cap on any single increment, so sums of increments cannot overflow `i128` in practice (sums saturate anyway).
const MAX_SPAN: i128 = i128::MAX >> 8;
/// Cap on a period (about 146 years), so `cells × period` fits `i128`.
const MAX_PER: i128 = 1 << 62;

impl Rate {
    fn new(quota: Quota) -> Result<Self, String> {
        if quota.count == 0 {
            return Err("quota count must be at least 1".into());
        }
        if quota.per.is_zero() {
            return Err("quota period must be more than zero".into());
        }
        let burst = quota.burst.unwrap_or(quota.count);
        if burst == 0 {
            return Err("burst must be at least 1".into());
        }
        let per = i128::try_from(quota.per.as_nanos()).map_or(MAX_PER, |p| p.min(MAX_PER));
        let count = i128::from(quota.count);
        let mut rate = Self {
            per,
            count,
            tolerance: 0,
        };
        rate.tolerance = rate.cells(i128::from(burst));
        Ok(rate)
    }

    /// The time `n` cells take to replenish.
    fn cells(&self, n: i128) -> i128 {
        // INVARIANT: count >= 1, per <= 2^62 and |n| <= 2^64, so the product fits `i128`.
        (n.clamp(-(1 << 64), 1 << 64) * self.per / self.count).clamp(-MAX_SPAN, MAX_SPAN)
    }

    /// The new TAT if `n` cells are admitted now, or the wait (`None` = never) if they are not.
    fn advance(&self, tat: i128, n: u64, now: i128) -> Result<i128, Option<Duration>> {
        let increment = self.cells(i128::from(n));
        let new_tat = tat.max(now).saturating_add(increment);
        let excess = new_tat.saturating_sub(now).saturating_sub(self.tolerance);
        if excess <= 0 {
            Ok(new_tat)
        } else if increment > self.tolerance {
            Err(None)
        } else {
            Err(Some(to_duration(excess)))
        }
    }

    /// The TAT after charging (`n > 0`, unchecked) or giving back (`n < 0`) cells.
    fn shift(&self, tat: i128, n: i128, now: i128) -> i128 {
        if n >= 0 {
            tat.max(now).saturating_add(self.cells(n))
        } else {
            tat.saturating_add(self.cells(n))
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    requests: i128,
    tokens: i128,
}

impl Entry {
    /// When both buckets are full again.
    fn idle_at(&self) -> i128 {
        self.requests.max(self.tokens)
    }
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<String, Entry>,
    /// No entry becomes idle before this instant, so sweeping earlier frees nothing.
    next_sweep: i128,
}

impl Table {
    fn sweep_if_due(&mut self, now: i128) {
        if now >= self.next_sweep {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: i128) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| e.idle_at() > now);
        self.next_sweep = self.map.values().map(Entry::idle_at).min().unwrap_or(now);
        before - self.map.len()
    }
}

fn nanos(t: Timestamp) -> i128 {
    i128::from(t.as_millis()) * 1_000_000
}

fn to_duration(nanos: i128) -> Duration {
    let nanos = u64::try_from(nanos.max(0)).unwrap_or(u64::MAX);
    Duration::from_nanos(nanos)
}
