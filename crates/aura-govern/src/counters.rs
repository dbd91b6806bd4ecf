//! Sliding-window event counters per agent, for stateful policy conditions such as "no write actions after 3
//! failures in 10 minutes".
//!
//! **Bucket scheme.** Each (agent, event, kind) series keeps sparse buckets: one per *second* that saw events for
//! the last 11 minutes, then one per *minute* up to [`MAX_WINDOW`] (24 h). Every bucket also stores the running
//! total through its end, so a count is a binary search, not a scan. A bucket counts if any part of it lies in the
//! window, so `count` returns every event in `(now − window, now]` plus, at the trailing edge, events up to one
//! second older (windows up to 10 minutes) or one minute older (longer windows). It never under-counts: a policy
//! condition errs towards holding a restriction a little longer (fail closed).
//!
//! **Memory.** At most 660 second-buckets and 1 441 minute-buckets (24 bytes each) per series, and only for
//! series that saw events; agents are capped at `max_agents`, idle ones dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aura_core::{ActionKind, AgentName, Timestamp};

/// The longest window [`SlidingCounters::count`] answers; longer windows count this much.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterEvent {
    /// An action that failed when it ran.
    Failure,
    /// An action the kernel refused.
    Denial,
    /// An action the kernel allowed.
    Action,
    /// An allowed action that changes the world.
    Write,
}

impl CounterEvent {
    const ALL: [CounterEvent; 4] = [
        CounterEvent::Failure,
        CounterEvent::Denial,
        CounterEvent::Action,
        CounterEvent::Write,
    ];

    fn index(self) -> usize {
        match self {
            CounterEvent::Failure => 0,
            CounterEvent::Denial => 1,
            CounterEvent::Action => 2,
            CounterEvent::Write => 3,
        }
    }
}

/// Per-agent sliding-window counters. All methods take `&self`.
#[derive(Debug)]
pub struct SlidingCounters {
    max_agents: usize,
    agents: Mutex<HashMap<String, AgentSeries>>,
}

impl SlidingCounters {
    /// Counters for at most `max_agents` agents (at least 1).
    pub fn new(max_agents: usize) -> Self {
        Self {
            max_agents: max_agents.max(1),
            agents: Mutex::new(HashMap::new()),
        }
    }

    /// Records one `event` of an action of `kind` by `agent` at `now`.
    pub fn record(&self, agent: &AgentName, event: CounterEvent, kind: ActionKind, now: Timestamp) {
        let now_ms = now.as_millis();
        let mut agents = crate::limits::lock(&self.agents);
        if !agents.contains_key(agent.as_str()) {
            if agents.len() >= self.max_agents {
                make_room(&mut agents, self.max_agents, now_ms);
            }
            agents.insert(agent.as_str().to_owned(), AgentSeries::new());
        }
        if let Some(series) = agents.get_mut(agent.as_str()) {
            series.last_seen = series.last_seen.max(now_ms);
            let sec = now_ms.div_euclid(1000);
            for index in [series_index(event, Some(kind)), series_index(event, None)] {
                if let Some(s) = series.series.get_mut(index) {
                    s.record(sec);
                }
            }
        }
    }

    /// How many `event`s `agent` had within `window` before `now` (of `kind`, or of any kind). See the module
    /// docs for the precision at the window's trailing edge.
    pub fn count(
        &self,
        agent: &AgentName,
        event: CounterEvent,
        kind: Option<ActionKind>,
        window: Duration,
        now: Timestamp,
    ) -> u64 {
        let window = i64::try_from(window.min(MAX_WINDOW).as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.as_millis().saturating_sub(window);
        let agents = crate::limits::lock(&self.agents);
        agents
            .get(agent.as_str())
            .and_then(|a| a.series.get(series_index(event, kind)))
            .map_or(0, |s| s.count_after(cutoff))
    }

    /// Drops agents with no event in the last [`MAX_WINDOW`] (lossless). Returns how many were dropped.
    pub fn evict_idle(&self, now: Timestamp) -> usize {
        let mut agents = crate::limits::lock(&self.agents);
        let before = agents.len();
        agents.retain(|_, a| !a.is_idle(now.as_millis()));
        before - agents.len()
    }

    /// How many agents are tracked.
    pub fn tracked_agents(&self) -> usize {
        crate::limits::lock(&self.agents).len()
    }
}

const KINDS: usize = ActionKind::ALL.len() + 1;
const FINE_SECS: i64 = 11 * 60;
const COARSE_SECS: i64 = 60;
const MAX_SECS: i64 = 24 * 3600;

fn series_index(event: CounterEvent, kind: Option<ActionKind>) -> usize {
    let kind = kind
        .and_then(|k| ActionKind::ALL.iter().position(|x| *x == k))
        .unwrap_or(KINDS - 1);
    event.index() * KINDS + kind
}

fn make_room(agents: &mut HashMap<String, AgentSeries>, max_agents: usize, now: i64) {
    agents.retain(|_, a| !a.is_idle(now));
    if agents.len() < max_agents {
        return;
    }
    if let Some(stalest) = agents
        .iter()
        .min_by_key(|(_, a)| a.last_seen)
        .map(|(k, _)| k.clone())
    {
        tracing::warn!(agent = %stalest, "counter table full; dropping the least recently active agent");
        agents.remove(&stalest);
    }
}

#[derive(Debug)]
struct AgentSeries {
    series: Vec<Series>,
    last_seen: i64,
}

impl AgentSeries {
    fn new() -> Self {
        Self {
            series: (0..CounterEvent::ALL.len() * KINDS)
                .map(|_| Series::default())
                .collect(),
            last_seen: i64::MIN,
        }
    }

    fn is_idle(&self, now: i64) -> bool {
        self.last_seen.div_euclid(1000) + COARSE_SECS <= now.div_euclid(1000) - MAX_SECS
    }
}

/// Sparse buckets, oldest first: minute buckets, then second buckets.
#[derive(Debug, Default)]
struct Series {
    coarse: VecDeque<Bucket>,
    fine: VecDeque<Bucket>,
    total: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Start, seconds since the epoch.
    start: i64,
    count: u64,
    /// Events recorded through the end of this bucket.
    through: u64,
}

impl Series {
    fn record(&mut self, sec: i64) {
        self.compact(sec);
        self.total += 1;
        match self.fine.back_mut() {
            // Same second, or the clock stepped back: add to the newest bucket.
            Some(last) if last.start >= sec => {
                last.count += 1;
                last.through = self.total;
            }
            _ => self.fine.push_back(Bucket {
                start: sec,
                count: 1,
                through: self.total,
            }),
        }
    }

    /// Folds second buckets older than `FINE_SECS` into minute buckets and drops minutes past `MAX_SECS`.
    fn compact(&mut self, sec: i64) {
        while let Some(first) = self.fine.front().copied()
            && first.start < sec - FINE_SECS
        {
            self.fine.pop_front();
            let minute = first.start - first.start.rem_euclid(COARSE_SECS);
            match self.coarse.back_mut() {
                Some(last) if last.start == minute => {
                    last.count += first.count;
                    last.through = first.through;
                }
                _ => self.coarse.push_back(Bucket {
                    start: minute,
                    count: first.count,
                    through: first.through,
                }),
            }
        }
        while self
            .coarse
            .front()
            .is_some_and(|b| b.start + COARSE_SECS <= sec - MAX_SECS)
        {
            self.coarse.pop_front();
        }
    }

    /// Events in buckets that end after `cutoff` (milliseconds).
    fn count_after(&self, cutoff: i64) -> u64 {
        let ends_after = |b: &Bucket, width: i64| (b.start + width).saturating_mul(1000) > cutoff;
        let i = self.coarse.partition_point(|b| !ends_after(b, COARSE_SECS));
        let first = self.coarse.get(i).or_else(|| {
            let j = self.fine.partition_point(|b| !ends_after(b, 1));
            self.fine.get(j)
        });
        first.map_or(0, |b| self.total - (b.through - b.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_bounded_under_constant_load() {
        let mut series = Series::default();
        // One event per second for 25 hours.
        let start = 1_795_292_371;
        for sec in start..start + 25 * 3600 {
            series.record(sec);
        }
        assert!(series.fine.len() <= 661, "{}", series.fine.len());
        assert!(series.coarse.len() <= 1_441, "{}", series.coarse.len());
        let now_ms = (start + 25 * 3600) * 1000;
        let day = series.count_after(now_ms - 24 * 3600 * 1000);
        assert!((86_400..=86_460).contains(&day), "{day}");
    }
}
