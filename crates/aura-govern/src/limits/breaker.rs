//! Circuit breakers per upstream or tool: closed → open on too many failures → half-open probes → closed or open.
//!
//! Outcomes are counted in a sliding window of 10 buckets (Hystrix-style): a window of 60 s counts the current
//! 6-second bucket and the nine before it, so events between 54 s and 60 s old may already have dropped out. That
//! under-counts by at most one bucket, which is the usual trade for O(1) memory per key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aura_core::Timestamp;

use super::scope::Glob;
use super::{SpecError, lock};

/// Trip on a failure ratio, once enough calls were seen in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRatio {
    /// Trip when at least this percentage (1–100) of calls in the window failed.
    pub percent: u8,
    /// ... and at least this many calls were seen in the window.
    pub min_requests: u32,
}

/// One breaker as the policy states it; it guards every key its glob matches, each key with its own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSpec {
    /// Rule id, reported when the breaker refuses.
    pub id: String,
    /// Glob over keys, e.g. `upstream:*` or `tool:deploy` (`*` matches any run of characters). The first spec
    /// whose glob matches a key governs it.
    pub keys: String,
    /// The window failures are counted in.
    pub window: Duration,
    /// Trip after this many failures within the window.
    pub max_failures: Option<u32>,
    /// Trip on a failure ratio within the window.
    pub failure_ratio: Option<FailureRatio>,
    /// How long the breaker stays open before admitting probes.
    pub cool_down: Duration,
    /// Probes admitted while half-open; that many successes close the breaker, one failure reopens it.
    pub half_open_probes: u32,
}

/// The result of a call, as reported by the kernel when the action settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed (error, timeout, 5xx).
    Failure,
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// A limited number of probe calls are admitted.
    HalfOpen,
}

/// Why a call was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// No breaker guards this key.
    Unguarded,
    /// The breaker is closed.
    Closed,
    /// The breaker is half-open and this call is one of its probes: record its outcome.
    Probe,
}

/// A refusal by an open (or fully probing half-open) breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerOpen {
    /// The breaker's id.
    pub breaker_id: String,
    /// The key.
    pub key: String,
    /// `Open`, or `HalfOpen` when all probes are out.
    pub state: BreakerState,
    /// When the breaker will next admit a call (end of the cool-down, or when outstanding probes are presumed lost).
    pub retry_after: Duration,
}

/// Circuit breakers keyed by upstream or tool. All methods take `&self`.
#[derive(Debug)]
pub struct CircuitBreakers {
    specs: Vec<Spec>,
    max_keys: usize,
    breakers: Mutex<HashMap<String, Breaker>>,
}

impl CircuitBreakers {
    /// Compiles `specs`; at most `max_keys` keys keep state at once (idle closed keys are dropped first).
    pub fn new(specs: Vec<BreakerSpec>, max_keys: usize) -> Result<Self, SpecError> {
        let mut compiled = Vec::with_capacity(specs.len());
        for spec in specs {
            let err = |reason: String| SpecError::Breaker {
                id: spec.id.clone(),
                reason,
            };
            if spec.id.is_empty() {
                return Err(err("id must not be empty".into()));
            }
            let glob = Glob::new(&spec.keys).map_err(err)?;
            if spec.max_failures.is_none() && spec.failure_ratio.is_none() {
                return Err(err("needs max_failures or failure_ratio".into()));
            }
            if spec.max_failures == Some(0) {
                return Err(err("max_failures must be at least 1".into()));
            }
            if let Some(r) = spec.failure_ratio
                && !(1..=100).contains(&r.percent)
            {
                return Err(err("failure ratio percent must be 1-100".into()));
            }
            let window = millis(spec.window);
            if window < BUCKETS {
                return Err(err(format!("window must be at least {BUCKETS} ms")));
            }
            if spec.half_open_probes == 0 {
                return Err(err("half_open_probes must be at least 1".into()));
            }
            compiled.push(Spec {
                id: spec.id,
                glob,
                bucket_width: window / BUCKETS,
                max_failures: spec.max_failures,
                ratio: spec.failure_ratio,
                cool_down: millis(spec.cool_down),
                probes: spec.half_open_probes,
            });
        }
        if max_keys == 0 {
            return Err(SpecError::Capacity("max_keys must be at least 1".into()));
        }
        Ok(Self {
            specs: compiled,
            max_keys,
            breakers: Mutex::new(HashMap::new()),
        })
    }

    /// Asks to make a call to `key`. An open breaker whose cool-down has ended turns half-open here and admits
    /// this call as a probe.
    pub fn allow(&self, key: &str, now: Timestamp) -> Result<Admission, BreakerOpen> {
        let now = now.as_millis();
        let mut breakers = lock(&self.breakers);
        let Some(breaker) = breakers.get_mut(key) else {
            return Ok(if self.spec_for(key).is_some() {
                Admission::Closed
            } else {
                Admission::Unguarded
            });
        };
        let Some(spec) = self.specs.get(breaker.spec) else {
            return Ok(Admission::Unguarded);
        };
        let refuse = |state, until: i64| BreakerOpen {
            breaker_id: spec.id.clone(),
            key: key.to_owned(),
            state,
            retry_after: Duration::from_millis(
                u64::try_from(until.saturating_sub(now)).unwrap_or(0),
            ),
        };
        match &mut breaker.state {
            State::Closed => Ok(Admission::Closed),
            State::Open { until } if now < *until => Err(refuse(BreakerState::Open, *until)),
            State::Open { .. } => {
                breaker.state = State::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                    since: now,
                };
                Ok(Admission::Probe)
            }
            State::HalfOpen {
                admitted,
                succeeded,
                since,
            } => {
                if *admitted < spec.probes {
                    *admitted += 1;
                    Ok(Admission::Probe)
                } else if now.saturating_sub(*since) >= spec.cool_down {
                    // The probes never reported back (cancelled, crashed): presume them lost and probe again.
                    *admitted = 1;
                    *succeeded = 0;
                    *since = now;
                    Ok(Admission::Probe)
                } else {
                    Err(refuse(
                        BreakerState::HalfOpen,
                        since.saturating_add(spec.cool_down),
                    ))
                }
            }
        }
    }

    /// Reports the outcome of a call to `key`.
    pub fn record(&self, key: &str, outcome: Outcome, now: Timestamp) {
        let now = now.as_millis();
        let mut breakers = lock(&self.breakers);
        if !breakers.contains_key(key) {
            let Some(spec) = self.spec_for(key) else {
                return;
            };
            if outcome == Outcome::Success {
                // A success on a closed key with no state changes nothing that could trip it... except the ratio's
                // denominator, so keep it only when a ratio is configured.
                if self.specs.get(spec).is_none_or(|s| s.ratio.is_none()) {
                    return;
                }
            }
            if breakers.len() >= self.max_keys
                && !make_room(&mut breakers, &self.specs, self.max_keys, now)
            {
                tracing::warn!(key, "circuit breaker table full; outcome not recorded");
                return;
            }
            breakers.insert(key.to_owned(), Breaker::new(spec));
        }
        let Some(breaker) = breakers.get_mut(key) else {
            return;
        };
        let Some(spec) = self.specs.get(breaker.spec) else {
            return;
        };
        breaker.last_activity = now;
        match (&mut breaker.state, outcome) {
            (State::Closed, _) => {
                breaker.window.add(spec.bucket_width, now, outcome);
                if outcome == Outcome::Failure && spec.trips(&breaker.window, now) {
                    breaker.open(now, spec.cool_down);
                }
            }
            (State::Open { .. }, _) => {}
            (State::HalfOpen { .. }, Outcome::Failure) => breaker.open(now, spec.cool_down),
            (State::HalfOpen { succeeded, .. }, Outcome::Success) => {
                *succeeded += 1;
                if *succeeded >= spec.probes {
                    breaker.state = State::Closed;
                    breaker.window = Window::default();
                }
            }
        }
    }

    /// The state of `key` as [`allow`](Self::allow) would see it now, without changing anything.
    pub fn state(&self, key: &str, now: Timestamp) -> BreakerState {
        let now = now.as_millis();
        match lock(&self.breakers).get(key).map(|b| &b.state) {
            None | Some(State::Closed) => BreakerState::Closed,
            Some(State::Open { until }) if now < *until => BreakerState::Open,
            Some(State::Open { .. } | State::HalfOpen { .. }) => BreakerState::HalfOpen,
        }
    }

    /// Drops closed keys with nothing in their window (lossless). Returns how many were dropped.
    pub fn evict_idle(&self, now: Timestamp) -> usize {
        let now = now.as_millis();
        let mut breakers = lock(&self.breakers);
        let before = breakers.len();
        breakers.retain(|_, b| !b.is_idle(&self.specs, now));
        before - breakers.len()
    }

    /// How many keys keep state.
    pub fn tracked_keys(&self) -> usize {
        lock(&self.breakers).len()
    }

    fn spec_for(&self, key: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.glob.matches(key))
    }
}

const BUCKETS: i64 = 10;

#[derive(Debug)]
struct Spec {
    id: String,
    glob: Glob,
    bucket_width: i64,
    max_failures: Option<u32>,
    ratio: Option<FailureRatio>,
    cool_down: i64,
    probes: u32,
}

impl Spec {
    fn trips(&self, window: &Window, now: i64) -> bool {
        let (successes, failures) = window.totals(self.bucket_width, now);
        if self
            .max_failures
            .is_some_and(|max| failures >= u64::from(max))
        {
            return true;
        }
        self.ratio.is_some_and(|r| {
            let total = successes + failures;
            total >= u64::from(r.min_requests) && failures * 100 >= u64::from(r.percent) * total
        })
    }
}

#[derive(Debug)]
struct Breaker {
    spec: usize,
    state: State,
    window: Window,
    last_activity: i64,
}

#[derive(Debug)]
enum State {
    Closed,
    Open {
        until: i64,
    },
    HalfOpen {
        admitted: u32,
        succeeded: u32,
        since: i64,
    },
}

impl Breaker {
    fn new(spec: usize) -> Self {
        Self {
            spec,
            state: State::Closed,
            window: Window::default(),
            last_activity: i64::MIN,
        }
    }

    fn open(&mut self, now: i64, cool_down: i64) {
        self.state = State::Open {
            until: now.saturating_add(cool_down),
        };
        self.window = Window::default();
    }

    fn is_idle(&self, specs: &[Spec], now: i64) -> bool {
        matches!(self.state, State::Closed)
            && specs
                .get(self.spec)
                .is_none_or(|s| self.window.totals(s.bucket_width, now) == (0, 0))
    }
}

/// Ten buckets of (epoch, successes, failures); a bucket counts while its epoch is one of the last ten.
#[derive(Debug, Default, Clone)]
struct Window {
    buckets: [(i64, u32, u32); BUCKETS as usize],
}

impl Window {
    fn add(&mut self, width: i64, now: i64, outcome: Outcome) {
        let epoch = now.div_euclid(width);
        // INVARIANT: rem_euclid(BUCKETS) is in 0..BUCKETS, a valid index.
        let slot = &mut self.buckets[epoch.rem_euclid(BUCKETS) as usize];
        if slot.0 != epoch {
            *slot = (epoch, 0, 0);
        }
        match outcome {
            Outcome::Success => slot.1 = slot.1.saturating_add(1),
            Outcome::Failure => slot.2 = slot.2.saturating_add(1),
        }
    }

    fn totals(&self, width: i64, now: i64) -> (u64, u64) {
        let epoch = now.div_euclid(width);
        self.buckets
            .iter()
            .filter(|(e, s, f)| *e > epoch - BUCKETS && *e <= epoch && (*s > 0 || *f > 0))
            .fold((0, 0), |(s, f), b| (s + u64::from(b.1), f + u64::from(b.2)))
    }
}

/// Frees one slot: idle closed keys first (lossless), else the closed key least recently active. Open and
/// half-open keys are never dropped. Returns whether there is room now.
fn make_room(
    breakers: &mut HashMap<String, Breaker>,
    specs: &[Spec],
    max_keys: usize,
    now: i64,
) -> bool {
    breakers.retain(|_, b| !b.is_idle(specs, now));
    if breakers.len() < max_keys {
        return true;
    }
    let victim = breakers
        .iter()
        .filter(|(_, b)| matches!(b.state, State::Closed))
        .min_by_key(|(_, b)| b.last_activity)
        .map(|(k, _)| k.clone());
    match victim {
        Some(key) => {
            breakers.remove(&key);
            true
        }
        None => false,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
