//! Supervisor routing: a task goes to a healthy agent that declares every capability it needs, the least loaded
//! first (by load relative to capacity, then by name for a stable choice).

use std::collections::BTreeSet;

/// What the router knows of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The agent.
    pub name: String,
    /// What it can do.
    pub capabilities: BTreeSet<String>,
    /// Tasks it holds now.
    pub load: u32,
    /// Tasks it may hold at once.
    pub capacity: u32,
    /// Whether its heartbeat is fresh.
    pub healthy: bool,
}

/// Picks the agent for a task needing `required`; `None` when no healthy agent has room and every capability.
pub fn route<'a>(
    required: &BTreeSet<String>,
    candidates: &'a [Candidate],
) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| c.healthy && c.load < c.capacity && required.is_subset(&c.capabilities))
        .min_by(|a, b| {
            // Compare load/capacity without floats: a.load * b.cap vs b.load * a.cap.
            let l = u64::from(a.load) * u64::from(b.capacity);
            let r = u64::from(b.load) * u64::from(a.capacity);
            l.cmp(&r).then_with(|| a.name.cmp(&b.name))
        })
}
