//! Loop detection: the same action (agent, kind, target, args) repeated too often within a window.
//!
//! Keys are the agent and the action's args hash (which already binds kind, target and canonical args). Each key
//! keeps the times of its last `threshold` occurrences, so the count is exact up to the threshold and saturates
//! there. Memory is bounded per agent (`max_keys_per_agent`) and in agents (`max_agents`); keys whose last
//! occurrence left the window are dropped first, which loses nothing; when an agent's keys are all live, the least
//! recently seen eighth goes at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aura_core::{Action, AgentName, Timestamp};

/// How loop detection is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopSpec {
    /// Occurrences within the window (this one included) that trip the detector; at least 2, at most 10 000.
    pub threshold: u32,
    /// The window.
    pub window: Duration,
    /// Distinct actions remembered per agent.
    pub max_keys_per_agent: usize,
    /// Agents remembered.
    pub max_agents: usize,
}

/// What [`LoopDetector::observe`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopCheck {
    /// Occurrences of this exact action within the window, this one included; saturates at the threshold.
    pub count: u32,
    /// Whether `count` reached the threshold: the kernel turns this into DENY or HALT per policy.
    pub tripped: bool,
}

/// A loop specification that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid loop detection: {0}")]
pub struct LoopSpecError(String);

/// Counts repeats of identical actions. All methods take `&self`.
#[derive(Debug)]
pub struct LoopDetector {
    threshold: usize,
    window: i64,
    max_keys_per_agent: usize,
    max_agents: usize,
    agents: Mutex<HashMap<String, AgentLoops>>,
}

impl LoopDetector {
    /// Validates `spec`.
    pub fn new(spec: LoopSpec) -> Result<Self, LoopSpecError> {
        if !(2..=10_000).contains(&spec.threshold) {
            return Err(LoopSpecError("threshold must be 2-10000".into()));
        }
        if spec.window.is_zero() {
            return Err(LoopSpecError("window must be more than zero".into()));
        }
        if spec.max_keys_per_agent == 0 || spec.max_agents == 0 {
            return Err(LoopSpecError(
                "max_keys_per_agent and max_agents must be at least 1".into(),
            ));
        }
        Ok(Self {
            threshold: spec.threshold as usize,
            window: i64::try_from(spec.window.as_millis()).unwrap_or(i64::MAX),
            max_keys_per_agent: spec.max_keys_per_agent,
            max_agents: spec.max_agents,
            agents: Mutex::new(HashMap::new()),
        })
    }

    /// Records one occurrence of `action` at `now` and says how often it occurred within the window.
    pub fn observe(&self, action: &Action, now: Timestamp) -> LoopCheck {
        let now = now.as_millis();
        let cutoff = now.saturating_sub(self.window);
        let mut agents = crate::limits::lock(&self.agents);
        let agent = action.agent().as_str();
        if !agents.contains_key(agent) {
            if agents.len() >= self.max_agents {
                agents.retain(|_, a| a.last_seen > cutoff);
                if agents.len() >= self.max_agents
                    && let Some(stalest) = agents
                        .iter()
                        .min_by_key(|(_, a)| a.last_seen)
                        .map(|(k, _)| k.clone())
                {
                    agents.remove(&stalest);
                }
            }
            agents.insert(agent.to_owned(), AgentLoops::default());
        }
        let Some(loops) = agents.get_mut(agent) else {
            // INVARIANT: inserted above; fail safe by reporting a trip rather than panicking.
            return LoopCheck {
                count: self.threshold as u32,
                tripped: true,
            };
        };
        loops.last_seen = now;
        let hash = *action.args_hash();
        if !loops.keys.contains_key(&hash) && loops.keys.len() >= self.max_keys_per_agent {
            loops
                .keys
                .retain(|_, times| times.back().is_some_and(|t| *t > cutoff));
            if loops.keys.len() >= self.max_keys_per_agent {
                // Full of live keys: drop the least recently seen eighth at once (at least one), so a stream of
                // distinct actions (every proxied URL is one) costs two scans per max/8 new keys, not per key.
                let drop = (self.max_keys_per_agent / 8).max(1);
                let last = |times: &VecDeque<i64>| times.back().copied().unwrap_or(i64::MIN);
                let mut lasts: Vec<i64> = loops.keys.values().map(last).collect();
                let bound = *lasts.select_nth_unstable(drop - 1).1;
                let mut left = drop;
                loops.keys.retain(|_, times| {
                    if left > 0 && last(times) <= bound {
                        left -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
        }
        let times = loops
            .keys
            .entry(hash)
            .or_insert_with(|| VecDeque::with_capacity(self.threshold.min(16)));
        while times.front().is_some_and(|t| *t <= cutoff) {
            times.pop_front();
        }
        times.push_back(now);
        while times.len() > self.threshold {
            times.pop_front();
        }
        let count = times.len();
        LoopCheck {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            tripped: count >= self.threshold,
        }
    }

    /// Forgets everything about `agent`, e.g. when an operator resumes it after a halt.
    pub fn clear_agent(&self, agent: &AgentName) {
        crate::limits::lock(&self.agents).remove(agent.as_str());
    }

    /// Drops agents and keys with nothing in the window (lossless). Returns how many keys were dropped.
    pub fn evict_idle(&self, now: Timestamp) -> usize {
        let cutoff = now.as_millis().saturating_sub(self.window);
        let mut agents = crate::limits::lock(&self.agents);
        let mut dropped = 0;
        agents.retain(|_, a| {
            let before = a.keys.len();
            a.keys
                .retain(|_, times| times.back().is_some_and(|t| *t > cutoff));
            dropped += before - a.keys.len();
            !a.keys.is_empty()
        });
        dropped
    }

    /// How many (agent, action) keys are remembered.
    pub fn tracked_keys(&self) -> usize {
        crate::limits::lock(&self.agents)
            .values()
            .map(|a| a.keys.len())
            .sum()
    }
}

#[derive(Debug, Default)]
struct AgentLoops {
    keys: HashMap<[u8; 32], VecDeque<i64>>,
    last_seen: i64,
}
