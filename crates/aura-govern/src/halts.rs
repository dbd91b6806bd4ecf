//! Halts, pauses and cascade prevention.
//!
//! The registry lives in memory so the kernel's decision path reads it synchronously ([`Halts::status`], no I/O)
//! and is written through to the state store so a restart restores it ([`Halts::open`]). A halted agent takes no
//! actions and its in-flight actions are cancelled (each holds a [`HaltWatch`]); a paused agent takes no new
//! actions but in-flight ones finish. Other planes follow every change through [`Halts::subscribe`].
//!
//! **Cascade prevention.** Agents form a graph of "sends work to" edges, declared in configuration and learned
//! from traffic ([`Halts::record_interaction`]). When an agent is halted, every agent downstream of it
//! (transitively, each once, loops included) is paused or halted according to the halted agent's
//! [`CascadePolicy`], with the cause `cascade from <agent>`. Resuming the agent resumes what its halt cascaded to.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use aura_core::{AgentName, Clock, Timestamp};
use aura_store::{
    AgentEdgeRecord, GovernStore, HaltCauseRecord, HaltRecord, HaltStateRecord, StoreError,
};
use tokio::sync::{broadcast, watch};

/// The halt registry. Share it as `Arc<Halts>`.
#[derive(Debug)]
pub struct Halts {
    store: Arc<dyn GovernStore>,
    clock: Arc<dyn Clock>,
    config: HaltsConfig,
    registry: RwLock<Registry>,
    /// Lock order: `watches` before `registry`, never the other way round.
    watches: Mutex<HashMap<AgentName, watch::Sender<bool>>>,
    all_watch: watch::Sender<bool>,
    events: broadcast::Sender<HaltEvent>,
}

/// Cascade configuration. No default: choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltsConfig {
    /// Declared "sends work to" edges.
    pub edges: Vec<WorkEdge>,
    /// What a halt of each agent does to its dependents.
    pub policies: HashMap<AgentName, CascadePolicy>,
    /// The policy of agents not in `policies`.
    pub default_policy: CascadePolicy,
}

/// `from` sends work to `to`, so `to` depends on `from`: halting `from` cascades to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkEdge {
    /// The sender of work.
    pub from: AgentName,
    /// The receiver.
    pub to: AgentName,
}

/// What halting an agent does to the agents downstream of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CascadePolicy {
    /// Nothing.
    None,
    /// Pause them.
    PauseDependents,
    /// Halt them.
    HaltDependents,
}

/// Who a halt applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HaltTarget {
    /// Every agent.
    All,
    /// One agent.
    Agent(AgentName),
}

impl fmt::Display for HaltTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltTarget::All => f.write_str("*"),
            HaltTarget::Agent(agent) => write!(f, "{agent}"),
        }
    }
}

/// Paused or halted; halted is the stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HaltState {
    /// No new actions; in-flight ones finish.
    Paused,
    /// No actions; in-flight ones are cancelled.
    Halted,
}

/// What triggered a halt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaltCause {
    /// An operator.
    Manual,
    /// The halt of an agent upstream.
    Cascade {
        /// The agent whose halt cascaded.
        from: AgentName,
    },
    /// Loop detection.
    Loop,
    /// A budget hard stop.
    Budget,
}

/// One halt or pause in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    /// Who.
    pub target: HaltTarget,
    /// Paused or halted.
    pub state: HaltState,
    /// Why, in words.
    pub reason: String,
    /// The principal (`kernel` for automatic halts).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// What triggered it.
    pub cause: HaltCause,
}

/// A change to the registry, broadcast to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaltEvent {
    /// A halt or pause took effect.
    Applied(Halt),
    /// A halt or pause was lifted.
    Resumed {
        /// Who resumed.
        target: HaltTarget,
        /// The principal.
        by: String,
        /// When.
        at: Timestamp,
    },
}

/// Why a halt operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaltError {
    /// The input is unusable.
    #[error("invalid halt request: {0}")]
    Invalid(String),
    /// The halt is in force in this process but could not be persisted; retry to make it survive a restart.
    #[error("halt applied in this process but not persisted: {0}")]
    NotPersisted(StoreError),
    /// The state store failed; for a resume, nothing was resumed.
    #[error("halt registry store: {0}")]
    Store(#[from] StoreError),
}

/// Resolves when an agent is halted: hold one per in-flight action and abandon the action when it fires.
#[derive(Debug)]
pub struct HaltWatch {
    own: watch::Receiver<bool>,
    all: watch::Receiver<bool>,
}

impl HaltWatch {
    /// Whether the agent is halted now.
    pub fn is_halted(&self) -> bool {
        *self.own.borrow() || *self.all.borrow()
    }

    /// Waits until the agent is halted. Also resolves if the registry is dropped (shutdown): fail closed.
    pub async fn halted(&mut self) {
        tokio::select! {
            _ = self.own.wait_for(|halted| *halted) => {}
            _ = self.all.wait_for(|halted| *halted) => {}
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    all: Option<Halt>,
    agents: HashMap<AgentName, Halt>,
    edges: HashMap<AgentName, BTreeSet<AgentName>>,
}

impl Registry {
    fn halted(&self, agent: &AgentName) -> bool {
        let halted = |h: Option<&Halt>| h.is_some_and(|h| h.state == HaltState::Halted);
        halted(self.all.as_ref()) || halted(self.agents.get(agent))
    }

    fn get(&self, target: &HaltTarget) -> Option<&Halt> {
        match target {
            HaltTarget::All => self.all.as_ref(),
            HaltTarget::Agent(agent) => self.agents.get(agent),
        }
    }
}

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_CAPACITY: usize = 1024;

impl Halts {
    /// Loads the persisted halts and learned edges from `store` (an `Arc<dyn Store>` coerces).
    pub async fn open(
        store: Arc<dyn GovernStore>,
        clock: Arc<dyn Clock>,
        config: HaltsConfig,
    ) -> Result<Self, HaltError> {
        let halts = Self {
            store,
            clock,
            config,
            registry: RwLock::default(),
            watches: Mutex::default(),
            all_watch: watch::channel(false).0,
            events: broadcast::channel(EVENT_CAPACITY).0,
        };
        halts.reload().await?;
        Ok(halts)
    }

    /// Re-reads halts and learned edges from the store, e.g. after another process changed them. Emits no events.
    pub async fn reload(&self) -> Result<(), HaltError> {
        let stored = self.store.halts().await?;
        let learned = self.store.agent_edges().await?;
        let mut registry = Registry::default();
        for record in stored {
            let halt = from_record(record);
            match &halt.target {
                HaltTarget::All => registry.all = Some(halt),
                HaltTarget::Agent(agent) => {
                    registry.agents.insert(agent.clone(), halt);
                }
            }
        }
        let declared = self.config.edges.iter().map(|e| (&e.from, &e.to));
        for (from, to) in declared.chain(learned.iter().map(|e| (&e.from, &e.to))) {
            registry
                .edges
                .entry(from.clone())
                .or_default()
                .insert(to.clone());
        }
        *self.write() = registry;
        self.notify_watches(None);
        Ok(())
    }

    /// The halt or pause in force for `agent`, the stronger one if both an every-agent and an own halt apply;
    /// `None` when it may act. Synchronous, no I/O: this is the kernel's decision-path read.
    pub fn status(&self, agent: &AgentName) -> Option<Halt> {
        let registry = self.read();
        let all = registry.all.as_ref();
        let own = registry.agents.get(agent);
        match (all, own) {
            (Some(all), Some(own)) if own.state > all.state => Some(own.clone()),
            (Some(all), _) => Some(all.clone()),
            (None, own) => own.cloned(),
        }
    }

    /// Every halt and pause in force: the every-agent one first, then by agent name.
    pub fn list(&self) -> Vec<Halt> {
        let registry = self.read();
        let mut agents: Vec<Halt> = registry.agents.values().cloned().collect();
        agents.sort_by(|a, b| a.target.cmp(&b.target));
        registry.all.iter().cloned().chain(agents).collect()
    }

    /// Halts `target` and cascades to its dependents per its [`CascadePolicy`]. Returns every halt applied, the
    /// target's first. The halts take effect in memory at once; [`HaltError::NotPersisted`] means they hold in
    /// this process but would not survive a restart.
    pub async fn halt(
        &self,
        target: HaltTarget,
        reason: &str,
        by: &str,
        cause: HaltCause,
    ) -> Result<Vec<Halt>, HaltError> {
        check_principal(by)?;
        let now = self.clock.now();
        let mut applied = vec![Halt {
            target: target.clone(),
            state: HaltState::Halted,
            reason: reason.to_owned(),
            by: by.to_owned(),
            at: now,
            cause,
        }];
        if let HaltTarget::Agent(origin) = &target {
            applied.extend(self.cascade(origin, reason, by, now));
        }
        self.apply(&applied);
        let records: Vec<HaltRecord> = applied.iter().map(to_record).collect();
        self.store
            .halts_put(&records)
            .await
            .map_err(HaltError::NotPersisted)?;
        Ok(applied)
    }

    /// Pauses `target` (no cascade). Effective in memory at once, like [`Halts::halt`].
    pub async fn pause(
        &self,
        target: HaltTarget,
        reason: &str,
        by: &str,
    ) -> Result<Halt, HaltError> {
        check_principal(by)?;
        let pause = Halt {
            target,
            state: HaltState::Paused,
            reason: reason.to_owned(),
            by: by.to_owned(),
            at: self.clock.now(),
            cause: HaltCause::Manual,
        };
        self.apply(std::slice::from_ref(&pause));
        self.store
            .halts_put(&[to_record(&pause)])
            .await
            .map_err(HaltError::NotPersisted)?;
        Ok(pause)
    }

    /// Lifts the halt or pause of `target` and of every agent its halt cascaded to. Persisted first: if the store
    /// fails, nothing is resumed. Returns what was resumed (empty if nothing was halted).
    pub async fn resume(&self, target: HaltTarget, by: &str) -> Result<Vec<HaltTarget>, HaltError> {
        check_principal(by)?;
        let targets: Vec<HaltTarget> = {
            let registry = self.read();
            let mut targets: Vec<HaltTarget> = registry
                .get(&target)
                .map(|_| target.clone())
                .into_iter()
                .collect();
            if let HaltTarget::Agent(origin) = &target {
                let mut cascaded: Vec<HaltTarget> = registry
                    .agents
                    .iter()
                    .filter(
                        |(_, h)| matches!(&h.cause, HaltCause::Cascade { from } if from == origin),
                    )
                    .map(|(agent, _)| HaltTarget::Agent(agent.clone()))
                    .collect();
                cascaded.sort();
                targets.extend(cascaded);
            }
            targets
        };
        if targets.is_empty() {
            return Ok(targets);
        }
        let keys: Vec<Option<AgentName>> = targets
            .iter()
            .map(|t| match t {
                HaltTarget::All => None,
                HaltTarget::Agent(agent) => Some(agent.clone()),
            })
            .collect();
        self.store.halts_remove(&keys).await?;
        let now = self.clock.now();
        {
            let mut registry = self.write();
            for t in &targets {
                match t {
                    HaltTarget::All => registry.all = None,
                    HaltTarget::Agent(agent) => {
                        registry.agents.remove(agent);
                    }
                }
            }
        }
        self.notify_watches(Some(&targets));
        for t in &targets {
            // No subscriber is not an error.
            let _ = self.events.send(HaltEvent::Resumed {
                target: t.clone(),
                by: by.to_owned(),
                at: now,
            });
        }
        Ok(targets)
    }

    /// Learns that `from` sent work to `to`. Returns `true` for a new edge (persisted); a known edge costs one
    /// read lock and no I/O. A new edge is in force in memory even if persisting it fails.
    pub async fn record_interaction(
        &self,
        from: &AgentName,
        to: &AgentName,
    ) -> Result<bool, HaltError> {
        if from == to || self.read().edges.get(from).is_some_and(|s| s.contains(to)) {
            return Ok(false);
        }
        let new = self
            .write()
            .edges
            .entry(from.clone())
            .or_default()
            .insert(to.clone());
        if !new {
            return Ok(false);
        }
        let edge = AgentEdgeRecord {
            from: from.clone(),
            to: to.clone(),
            learned_at: self.clock.now(),
        };
        self.store.agent_edge_insert(&edge).await?;
        Ok(true)
    }

    /// The agents `agent` sends work to (declared or learned), by name.
    pub fn dependents(&self, agent: &AgentName) -> Vec<AgentName> {
        self.read()
            .edges
            .get(agent)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every change from now on. A subscriber that falls more than 1024 events behind gets `Lagged` and should
    /// re-read [`Halts::list`].
    pub fn subscribe(&self) -> broadcast::Receiver<HaltEvent> {
        self.events.subscribe()
    }

    /// A cancellation signal for one in-flight action of `agent`.
    pub fn watch(&self, agent: &AgentName) -> HaltWatch {
        let mut watches = self.watches();
        let own = watches
            .entry(agent.clone())
            .or_insert_with(|| watch::channel(self.read().halted(agent)).0)
            .subscribe();
        HaltWatch {
            own,
            all: self.all_watch.subscribe(),
        }
    }

    /// The cascade of a halt of `origin`: every agent downstream, breadth first, each once, that is not already
    /// at least as stopped as the policy asks.
    fn cascade(&self, origin: &AgentName, reason: &str, by: &str, now: Timestamp) -> Vec<Halt> {
        let policy = self
            .config
            .policies
            .get(origin)
            .copied()
            .unwrap_or(self.config.default_policy);
        let state = match policy {
            CascadePolicy::None => return Vec::new(),
            CascadePolicy::PauseDependents => HaltState::Paused,
            CascadePolicy::HaltDependents => HaltState::Halted,
        };
        let registry = self.read();
        let mut seen: HashSet<&AgentName> = HashSet::from([origin]);
        let mut queue: VecDeque<&AgentName> = VecDeque::from([origin]);
        let mut out = Vec::new();
        while let Some(agent) = queue.pop_front() {
            for dependent in registry.edges.get(agent).into_iter().flatten() {
                if !seen.insert(dependent) {
                    continue;
                }
                queue.push_back(dependent);
                if registry
                    .agents
                    .get(dependent)
                    .is_some_and(|h| h.state >= state)
                {
                    continue;
                }
                out.push(Halt {
                    target: HaltTarget::Agent(dependent.clone()),
                    state,
                    reason: format!("cascade from `{origin}`: {reason}"),
                    by: by.to_owned(),
                    at: now,
                    cause: HaltCause::Cascade {
                        from: origin.clone(),
                    },
                });
            }
        }
        out
    }

    /// Puts halts in force in memory, fires the watches and broadcasts the events.
    fn apply(&self, halts: &[Halt]) {
        {
            let mut registry = self.write();
            for halt in halts {
                match &halt.target {
                    HaltTarget::All => registry.all = Some(halt.clone()),
                    HaltTarget::Agent(agent) => {
                        registry.agents.insert(agent.clone(), halt.clone());
                    }
                }
            }
        }
        let targets: Vec<HaltTarget> = halts.iter().map(|h| h.target.clone()).collect();
        self.notify_watches(Some(&targets));
        for halt in halts {
            tracing::warn!(target_agent = %halt.target, state = ?halt.state, by = %halt.by, reason = %halt.reason, "agent stopped");
            let _ = self.events.send(HaltEvent::Applied(halt.clone()));
        }
    }

    /// Brings the watch channels of `targets` (all of them when `None`) in line with the registry.
    fn notify_watches(&self, targets: Option<&[HaltTarget]>) {
        let watches = self.watches();
        let registry = self.read();
        let all_halted = registry
            .all
            .as_ref()
            .is_some_and(|h| h.state == HaltState::Halted);
        self.all_watch
            .send_if_modified(|v| std::mem::replace(v, all_halted) != all_halted);
        let update = |agent: &AgentName, sender: &watch::Sender<bool>| {
            let halted = registry
                .agents
                .get(agent)
                .is_some_and(|h| h.state == HaltState::Halted);
            sender.send_if_modified(|v| std::mem::replace(v, halted) != halted);
        };
        match targets {
            None => watches
                .iter()
                .for_each(|(agent, sender)| update(agent, sender)),
            Some(targets) => {
                for target in targets {
                    if let HaltTarget::Agent(agent) = target
                        && let Some(sender) = watches.get(agent)
                    {
                        update(agent, sender);
                    }
                }
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        // Nothing panics while holding the lock, so a poisoned lock still guards consistent state.
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn watches(&self) -> MutexGuard<'_, HashMap<AgentName, watch::Sender<bool>>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn check_principal(by: &str) -> Result<(), HaltError> {
    if by.trim().is_empty() {
        return Err(HaltError::Invalid(
            "the acting principal must be named".to_owned(),
        ));
    }
    Ok(())
}

fn to_record(halt: &Halt) -> HaltRecord {
    HaltRecord {
        agent: match &halt.target {
            HaltTarget::All => None,
            HaltTarget::Agent(agent) => Some(agent.clone()),
        },
        state: match halt.state {
            HaltState::Halted => HaltStateRecord::Halted,
            HaltState::Paused => HaltStateRecord::Paused,
        },
        reason: halt.reason.clone(),
        by: halt.by.clone(),
        at: halt.at,
        cause: match &halt.cause {
            HaltCause::Manual => HaltCauseRecord::Manual,
            HaltCause::Cascade { from } => HaltCauseRecord::Cascade { from: from.clone() },
            HaltCause::Loop => HaltCauseRecord::Loop,
            HaltCause::Budget => HaltCauseRecord::Budget,
        },
    }
}

fn from_record(record: HaltRecord) -> Halt {
    Halt {
        target: record.agent.map_or(HaltTarget::All, HaltTarget::Agent),
        state: match record.state {
            HaltStateRecord::Halted => HaltState::Halted,
            HaltStateRecord::Paused => HaltState::Paused,
        },
        reason: record.reason,
        by: record.by,
        at: record.at,
        cause: match record.cause {
            HaltCauseRecord::Manual => HaltCause::Manual,
            HaltCauseRecord::Cascade { from } => HaltCause::Cascade { from },
            HaltCauseRecord::Loop => HaltCause::Loop,
            HaltCauseRecord::Budget => HaltCause::Budget,
        },
    }
}
