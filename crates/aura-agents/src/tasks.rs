//! The durable task store: tasks with states, parent and child tasks, priority, seed 004's seven phases,
//! verification criteria, idempotency keys and a side-effect journal — so a resumed task never repeats an effect
//! it recorded. Kept in `<data-dir>/tasks/`: an append-only JSON-lines event log (fdatasync'd before a change is
//! acknowledged) folded into memory on open, compacted into `snapshot.json` with bounded retention of finished tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aura_core::{Clock, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AgentsError;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for an agent.
    Pending,
    /// Given to an agent that has not started.
    Assigned,
    /// Being worked on.
    InProgress,
    /// Blocked on something (a child task, an approval, a peer).
    Waiting,
    /// Done and verified.
    Completed,
    /// Gave up (may be retried: back to pending).
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 7] = [
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::InProgress,
        TaskState::Waiting,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::InProgress => "in_progress",
            TaskState::Waiting => "waiting",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<TaskState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether nothing more happens to the task (completed or cancelled; failed can be retried).
    pub const fn is_final(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Cancelled)
    }

    /// Whether the task is finished for now (final or failed).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Cancelled | TaskState::Failed
        )
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_move_to(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Pending, Assigned | InProgress | Cancelled)
                | (Assigned, InProgress | Pending | Failed | Cancelled)
                | (InProgress, Waiting | Completed | Failed | Cancelled)
                | (Waiting, InProgress | Failed | Cancelled)
                | (Failed, Pending)
        )
    }
}

/// Seed 004's seven phases of agent work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Look at the situation.
    Observe,
    /// Reason about it.
    Think,
    /// Decide the steps.
    Plan,
    /// Prepare the change.
    Build,
    /// Carry it out.
    Execute,
    /// Check it against the verification criteria.
    Verify,
    /// Record what was learned.
    Learn,
}

/// A recorded side effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The effect's key, unique within the task (e.g. `deploy:web-1`).
    pub key: String,
    /// When it was recorded.
    pub at: Timestamp,
    /// What it produced.
    pub output: Value,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Id (UUID v7).
    pub id: String,
    /// The parent task.
    pub parent: Option<String>,
    /// Short description.
    pub title: String,
    /// Capabilities an agent needs for it.
    pub required: BTreeSet<String>,
    /// Input.
    pub payload: Value,
    /// 1 (lowest) to 10 (highest).
    pub priority: u8,
    /// State.
    pub state: TaskState,
    /// Phase of the work.
    pub phase: Phase,
    /// The agent holding it.
    pub assignee: Option<String>,
    /// What must be true for it to count as completed.
    pub verification: Vec<String>,
    /// Creating twice with one key gives the same task.
    pub idempotency_key: Option<String>,
    /// Times it was started.
    pub attempts: u32,
    /// Result on completion.
    pub result: Option<Value>,
    /// Error on failure or reason of cancellation.
    pub error: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// The side-effect journal.
    pub effects: Vec<Effect>,
}

/// What a caller gives to create a task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTask {
    /// Short description.
    pub title: String,
    /// Parent task id.
    pub parent: Option<String>,
    /// Required capabilities.
    pub required: BTreeSet<String>,
    /// Input.
    pub payload: Value,
    /// 1-10 (0 = default 5).
    pub priority: u8,
    /// Verification criteria.
    pub verification: Vec<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
}

/// A change to a task's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transition {
    /// The agent (for `assigned`; `in_progress` keeps the current one unless set).
    pub assignee: Option<String>,
    /// Result (for `completed`).
    pub result: Option<Value>,
    /// Error or reason (for `failed`, `cancelled`).
    pub error: Option<String>,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only in this state.
    pub state: Option<TaskState>,
    /// Only held by this agent.
    pub assignee: Option<String>,
    /// Only children of this task.
    pub parent: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

/// How finished tasks are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished tasks older than this are dropped at compaction.
    pub keep_finished: Duration,
    /// At most this many finished tasks are kept (oldest dropped first).
    pub max_finished: usize,
    /// Compact once the event log holds this many events.
    pub compact_after_events: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_finished: Duration::from_secs(7 * 24 * 3600),
            max_finished: 100_000,
            compact_after_events: 50_000,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Event {
    Create {
        task: Box<Task>,
    },
    Transition {
        id: String,
        to: TaskState,
        at: Timestamp,
        assignee: Option<String>,
        result: Option<Value>,
        error: Option<String>,
    },
    Phase {
        id: String,
        phase: Phase,
        at: Timestamp,
    },
    Effect {
        id: String,
        effect: Effect,
    },
}

/// The task store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskStore {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    tasks: BTreeMap<String, Task>,
    by_key: HashMap<String, String>,
    log: File,
    events: usize,
    retention: Retention,
    /// Bumped after every recorded change (create, transition, phase, effect), for watchers of tasks.
    changes: tokio::sync::watch::Sender<u64>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TaskStore {
    /// Opens the store in `dir`, replaying the snapshot and the event log (a torn last line is dropped).
    pub fn open(
        dir: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
        retention: Retention,
    ) -> Result<TaskStore, AgentsError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut tasks = BTreeMap::new();
        match fs::read(dir.join("snapshot.json")) {
            Ok(bytes) => {
                let list: Vec<Task> = serde_json::from_slice(&bytes)
                    .map_err(|e| AgentsError::Invalid(format!("task snapshot: {e}")))?;
                for t in list {
                    tasks.insert(t.id.clone(), t);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let log_path = dir.join("events.jsonl");
        let mut events = 0;
        let mut good_len = 0u64;
        if let Ok(f) = File::open(&log_path) {
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                let Ok(ev) = serde_json::from_str::<Event>(&line) else {
                    break;
                };
                apply(&mut tasks, ev);
                events += 1;
                good_len += n as u64;
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&log_path)?;
        if log.metadata()?.len() != good_len {
            tracing::warn!(path = %log_path.display(), "task log: dropped a torn last event");
            log.set_len(good_len)?;
            log.sync_all()?;
        }
        let by_key = tasks
            .values()
            .filter_map(|t| t.idempotency_key.clone().map(|k| (k, t.id.clone())))
            .collect();
        Ok(TaskStore {
            inner: Arc::new(Mutex::new(Inner {
                dir,
                tasks,
                by_key,
                log,
                events,
                retention,
                changes: tokio::sync::watch::Sender::new(0),
            })),
            clock,
        })
    }

    /// Creates a task (or returns the existing one with the same idempotency key; `false` then).
    pub async fn create(&self, new: NewTask) -> Result<(Task, bool), AgentsError> {
        let now = self.clock.now();
        if new.title.trim().is_empty() || new.title.len() > 500 {
            return Err(AgentsError::Invalid(
                "`title` must be 1-500 characters".into(),
            ));
        }
        let priority = if new.priority == 0 { 5 } else { new.priority };
        if !(1..=10).contains(&priority) {
            return Err(AgentsError::Invalid(format!(
                "`priority` {priority} must be between 1 and 10"
            )));
        }
        let inner = self.inner.clone();
        blocking(move || {
            let mut g = lock(&inner);
            if let Some(key) = &new.idempotency_key
                && let Some(id) = g.by_key.get(key)
                && let Some(t) = g.tasks.get(id)
            {
                return Ok((t.clone(), false));
            }
            if let Some(p) = &new.parent {
                match g.tasks.get(p) {
                    None => return Err(AgentsError::NotFound(format!("no parent task `{p}`"))),
                    Some(t) if t.state.is_final() => {
                        return Err(AgentsError::Conflict(format!(
                            "parent task `{p}` is {}",
                            t.state.as_str()
                        )));
                    }
                    Some(_) => {}
                }
            }
            let task = Task {
                id: uuid::Uuid::now_v7().to_string(),
                parent: new.parent,
                title: new.title,
                required: new.required,
                payload: new.payload,
                priority,
                state: TaskState::Pending,
                phase: Phase::Observe,
                assignee: None,
                verification: new.verification,
                idempotency_key: new.idempotency_key,
                attempts: 0,
                result: None,
                error: None,
                created_at: now,
                updated_at: now,
                effects: Vec::new(),
            };
            g.record(Event::Create {
                task: Box::new(task.clone()),
            })?;
            Ok((task, true))
        })
        .await
    }

    /// A receiver that sees a new value after every change recorded in the store: subscribe, read the task, then
    /// await `changed()` to learn of the next change without polling.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        lock(&self.inner).changes.subscribe()
    }

    /// One task.
    pub fn get(&self, id: &str) -> Option<Task> {
        lock(&self.inner).tasks.get(id).cloned()
    }

    /// The children of `id`.
    pub fn children(&self, id: &str) -> Vec<Task> {
        lock(&self.inner)
            .tasks
            .values()
            .filter(|t| t.parent.as_deref() == Some(id))
            .cloned()
            .collect()
    }

    /// Tasks matching `filter`, newest first.
    pub fn list(&self, filter: &TaskFilter) -> Vec<Task> {
        let g = lock(&self.inner);
        g.tasks
            .values()
            .rev()
            .filter(|t| filter.state.is_none_or(|s| t.state == s))
            .filter(|t| {
                filter
                    .assignee
                    .as_ref()
                    .is_none_or(|a| t.assignee.as_ref() == Some(a))
            })
            .filter(|t| {
                filter
                    .parent
                    .as_ref()
                    .is_none_or(|p| t.parent.as_ref() == Some(p))
            })
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Counts by state.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for t in lock(&self.inner).tasks.values() {
            *out.entry(t.state.as_str()).or_insert(0) += 1;
        }
        out
    }

    /// Moves task `id` to `to`. Cancelling cascades to unfinished children; completing needs every child finished.
    pub async fn transition(
        &self,
        id: &str,
        to: TaskState,
        change: Transition,
    ) -> Result<Task, AgentsError> {
        let now = self.clock.now();
        let inner = self.inner.clone();
        let id = id.to_owned();
        blocking(move || {
            let mut g = lock(&inner);
            let task = g
                .tasks
                .get(&id)
                .ok_or_else(|| AgentsError::NotFound(format!("no task `{id}`")))?;
            if !task.state.can_move_to(to) {
                return Err(AgentsError::Conflict(format!(
                    "task `{id}` cannot go from {} to {}",
                    task.state.as_str(),
                    to.as_str()
                )));
            }
            if to == TaskState::Assigned && change.assignee.is_none() {
                return Err(AgentsError::Invalid(
                    "assigning a task needs an agent".into(),
                ));
            }
            let children: Vec<(String, TaskState)> = g
                .tasks
                .values()
                .filter(|t| t.parent.as_deref() == Some(id.as_str()))
                .map(|t| (t.id.clone(), t.state))
                .collect();
            if to == TaskState::Completed
                && let Some((c, s)) = children.iter().find(|(_, s)| !s.is_final())
            {
                return Err(AgentsError::Conflict(format!(
                    "task `{id}` has an unfinished child `{c}` ({})",
                    s.as_str()
                )));
            }
            g.record(Event::Transition {
                id: id.clone(),
                to,
                at: now,
                assignee: change.assignee.clone(),
                result: change.result.clone(),
                error: change.error.clone(),
            })?;
            if to == TaskState::Cancelled {
                for (c, s) in children {
                    if !s.is_terminal() {
                        g.record(Event::Transition {
                            id: c,
                            to: TaskState::Cancelled,
                            at: now,
                            assignee: None,
                            result: None,
                            error: Some(format!("parent `{id}` cancelled")),
                        })?;
                    }
                }
            }
            g.maybe_compact(now)?;
            g.tasks
                .get(&id)
                .cloned()
                .ok_or_else(|| AgentsError::NotFound(id.clone()))
        })
        .await
    }

    /// Records that task `id` entered `phase`.
    pub async fn set_phase(&self, id: &str, phase: Phase) -> Result<Task, AgentsError> {
        let now = self.clock.now();
        let inner = self.inner.clone();
        let id = id.to_owned();
        blocking(move || {
            let mut g = lock(&inner);
            let task = g
                .tasks
                .get(&id)
                .ok_or_else(|| AgentsError::NotFound(format!("no task `{id}`")))?;
            if task.state.is_terminal() {
                return Err(AgentsError::Conflict(format!(
                    "task `{id}` is {}",
                    task.state.as_str()
                )));
            }
            g.record(Event::Phase {
                id: id.clone(),
                phase,
                at: now,
            })?;
            g.tasks
                .get(&id)
                .cloned()
                .ok_or_else(|| AgentsError::NotFound(id.clone()))
        })
        .await
    }

    /// The recorded output of effect `key` of task `id`, if it was recorded.
    pub fn recorded(&self, id: &str, key: &str) -> Option<Value> {
        lock(&self.inner).tasks.get(id).and_then(|t| {
            t.effects
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.output.clone())
        })
    }

    /// Runs side effect `key` of task `id` once: if the journal holds it, returns the recorded output without
    /// running `effect`; otherwise runs it and records its output durably before returning. An effect that ran but
    /// crashed before being recorded runs again on resume, so effects should be idempotent at their target too.
    pub async fn effect<F, Fut, E>(
        &self,
        id: &str,
        key: &str,
        effect: F,
    ) -> Result<Result<Value, E>, AgentsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
    {
        if let Some(out) = self.recorded(id, key) {
            return Ok(Ok(out));
        }
        if self.get(id).is_none() {
            return Err(AgentsError::NotFound(format!("no task `{id}`")));
        }
        let output = match effect().await {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let now = self.clock.now();
        let inner = self.inner.clone();
        let (id, key) = (id.to_owned(), key.to_owned());
        let out = output.clone();
        blocking(move || {
            let mut g = lock(&inner);
            g.record(Event::Effect {
                id,
                effect: Effect {
                    key,
                    at: now,
                    output: out,
                },
            })
        })
        .await?;
        Ok(Ok(output))
    }

    /// Drops old finished tasks and rewrites the snapshot, emptying the event log.
    pub async fn compact(&self) -> Result<usize, AgentsError> {
        let now = self.clock.now();
        let inner = self.inner.clone();
        blocking(move || lock(&inner).compact(now)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentsError> + Send + 'static,
) -> Result<T, AgentsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentsError::Io(std::io::Error::other(e.to_string())))?
}

fn apply(tasks: &mut BTreeMap<String, Task>, ev: Event) {
    match ev {
        Event::Create { task } => {
            tasks.entry(task.id.clone()).or_insert(*task);
        }
        Event::Transition {
            id,
            to,
            at,
            assignee,
            result,
            error,
        } => {
            if let Some(t) = tasks.get_mut(&id) {
                if to == TaskState::InProgress && t.state != TaskState::Waiting {
                    t.attempts += 1;
                }
                if to == TaskState::Pending {
                    t.assignee = None;
                }
                t.state = to;
                t.updated_at = at;
                if assignee.is_some() {
                    t.assignee = assignee;
                }
                if result.is_some() {
                    t.result = result;
                }
                if error.is_some() {
                    t.error = error;
                }
            }
        }
        Event::Phase { id, phase, at } => {
            if let Some(t) = tasks.get_mut(&id) {
                t.phase = phase;
                t.updated_at = at;
            }
        }
        Event::Effect { id, effect } => {
            if let Some(t) = tasks.get_mut(&id)
                && !t.effects.iter().any(|e| e.key == effect.key)
            {
                t.updated_at = effect.at;
                t.effects.push(effect);
            }
        }
    }
}

impl Inner {
    fn record(&mut self, ev: Event) -> Result<(), AgentsError> {
        let mut line = serde_json::to_vec(&ev).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        line.push(b'\n');
        self.log.write_all(&line)?;
        self.log.sync_data()?;
        self.events += 1;
        if let Event::Create { task } = &ev
            && let Some(k) = &task.idempotency_key
        {
            self.by_key.insert(k.clone(), task.id.clone());
        }
        apply(&mut self.tasks, ev);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    fn maybe_compact(&mut self, now: Timestamp) -> Result<(), AgentsError> {
        if self.events >= self.retention.compact_after_events {
            self.compact(now)?;
        }
        Ok(())
    }

    fn compact(&mut self, now: Timestamp) -> Result<usize, AgentsError> {
        let cutoff = now.as_millis() - self.retention.keep_finished.as_millis() as i64;
        let mut finished: Vec<(Timestamp, String)> = self
            .tasks
            .values()
            .filter(|t| t.state.is_final())
            .map(|t| (t.updated_at, t.id.clone()))
            .collect();
        finished.sort();
        let over = finished.len().saturating_sub(self.retention.max_finished);
        let mut dropped = 0;
        for (i, (at, id)) in finished.iter().enumerate() {
            // A finished task stays while an unfinished child still points at it.
            let has_open_child = self
                .tasks
                .values()
                .any(|c| c.parent.as_deref() == Some(id.as_str()) && !c.state.is_final());
            if (i < over || at.as_millis() < cutoff) && !has_open_child {
                if let Some(t) = self.tasks.remove(id)
                    && let Some(k) = t.idempotency_key
                {
                    self.by_key.remove(&k);
                }
                dropped += 1;
            }
        }
        let list: Vec<&Task> = self.tasks.values().collect();
        let bytes = serde_json::to_vec(&list).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        let tmp = self.dir.join("snapshot.json.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join("snapshot.json"))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.log.set_len(0)?;
        self.log.sync_all()?;
        self.events = 0;
        Ok(dropped)
    }
}
