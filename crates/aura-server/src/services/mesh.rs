//! The event mesh and agent coordination as a service: opens the configured mesh backend (with the local fallback
//! spool), the task store, the dead-letter queues and the agent runner; every published message and every task
//! transition is first an action of kind `message` decided by the governance kernel (decide before effect), then
//! published and settled. Administrative operations (DLQ replay/purge, starting and stopping agents) are audited.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aura_agents::AgentsError;
use aura_agents::dlq::{DeadLetter, DeadLetters, QueueSummary};
use aura_agents::envelope::{Envelope, HEARTBEAT_TOPIC, MessageType};
use aura_agents::runner::{AgentRuntime, AgentSpec, Backoff, RunMode, Runner};
use aura_agents::tasks::{NewTask, Retention, Task, TaskFilter, TaskState, TaskStore, Transition};
use aura_audit::{Actor, RiskLevel};
use aura_config::{Config, MeshBackend};
use aura_core::{Action, AgentName, Clock, Estimate, RawAction, Reason, Verdict};
use aura_govern::kernel::{ActionOutcome, Actual};
use aura_mesh::{
    EmbeddedConfig, EmbeddedMesh, Mesh, MeshError, Message, Receipt, Spooled, StartAt,
    SubscribeOptions, Topic, TopicInfo,
};
use tokio_util::sync::CancellationToken;

use super::ServiceError;
use super::audit::{self, AuditTrail};
use super::govern::Governance;

/// Counter: messages published, by topic.
pub const PUBLISHED: &str = "aura_mesh_published_total";
/// Counter: messages refused by governance, by topic and verdict.
pub const REFUSED: &str = "aura_mesh_refused_total";
/// Gauge: messages not yet acknowledged by a group, by topic and group.
pub const LAG: &str = "aura_mesh_consumer_lag";

/// The mesh plane of a running server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MeshService {
    mesh: Arc<dyn Mesh>,
    spool: Option<Spooled>,
    governance: Governance,
    audit: AuditTrail,
    clock: Arc<dyn Clock>,
    tasks: TaskStore,
    dlq: DeadLetters,
    runner: Runner,
    tasks_topic: Topic,
    closing: CancellationToken,
}

/// Why a message or transition did not happen.
#[derive(Debug)]
pub enum MeshRefusal {
    /// Governance did not allow it.
    Refused {
        /// The verdict.
        verdict: Verdict,
        /// Its reasons.
        reasons: Vec<Reason>,
        /// Where the decision is in the audit log.
        audit_seq: u64,
    },
    /// Anything else.
    Failed(ServiceError),
}

impl From<ServiceError> for MeshRefusal {
    fn from(e: ServiceError) -> Self {
        MeshRefusal::Failed(e)
    }
}

/// A published message.
#[derive(Debug, Clone)]
pub struct PublishedMessage {
    /// The envelope as published.
    pub envelope: Envelope,
    /// The durable receipt.
    pub receipt: Receipt,
    /// The decision's audit sequence number.
    pub audit_seq: u64,
}

/// A topic with its consumer groups' lag.
#[derive(Debug, Clone)]
pub struct TopicView {
    /// The topic.
    pub info: TopicInfo,
    /// (group, lag).
    pub lag: Vec<(String, u64)>,
}

pub(crate) fn mesh_err(e: MeshError) -> ServiceError {
    match e {
        MeshError::Invalid(m) => ServiceError::Invalid(m),
        MeshError::NoTopic(t) => ServiceError::NotFound(format!("no topic `{t}`")),
        MeshError::Unavailable(m) => ServiceError::Unavailable(m),
        other => ServiceError::Internal(other.to_string()),
    }
}

pub(crate) fn agents_err(e: AgentsError) -> ServiceError {
    match e {
        AgentsError::Invalid(m) => ServiceError::Invalid(m),
        AgentsError::NotFound(m) => ServiceError::NotFound(m),
        AgentsError::Conflict(m) => ServiceError::Conflict(m),
        AgentsError::Mesh(e) => mesh_err(e),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// Opens the backend named by `mesh.backend` (wrapped in the spool when `mesh.spool` and remote).
pub async fn open_mesh(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn Mesh>, Option<Spooled>), ServiceError> {
    let m = &config.mesh;
    let embedded = |dir: &str| {
        let mut c = EmbeddedConfig::new(config.data_dir.join(dir));
        c.segment_bytes = m.segment_bytes;
        EmbeddedMesh::open(c, clock.clone()).map_err(mesh_err)
    };
    let url = || {
        m.url.clone().ok_or_else(|| {
            ServiceError::Invalid(format!(
                "`mesh.backend: {}` needs `mesh.url`",
                m.backend.as_str()
            ))
        })
    };
    let timeout = Duration::from_secs(5);
    let remote: Arc<dyn Mesh> = match m.backend {
        MeshBackend::Embedded => return Ok((Arc::new(embedded("mesh")?), None)),
        MeshBackend::Nats => Arc::new(
            aura_mesh::NatsMesh::connect(&aura_mesh::NatsConfig {
                url: url()?,
                timeout,
            })
            .await
            .map_err(mesh_err)?,
        ),
        MeshBackend::Redis => Arc::new(
            aura_mesh::RedisMesh::connect(&aura_mesh::RedisConfig {
                url: url()?,
                timeout,
            })
            .await
            .map_err(mesh_err)?,
        ),
        #[cfg(feature = "kafka")]
        MeshBackend::Kafka => Arc::new(
            aura_mesh::KafkaMesh::connect(&aura_mesh::KafkaConfig {
                timeout,
                ..aura_mesh::KafkaConfig::new(url()?)
            })
            .await
            .map_err(mesh_err)?,
        ),
        #[cfg(not(feature = "kafka"))]
        MeshBackend::Kafka => {
            return Err(ServiceError::Invalid(
                "`mesh.backend: kafka` is not available in this binary: build aura with `--features kafka`".into(),
            ));
        }
    };
    if !m.spool {
        return Ok((remote, None));
    }
    let spooled = Spooled::new(
        remote,
        embedded("mesh-spool")?,
        Duration::from_secs(2),
        Duration::from_millis(500),
    );
    Ok((Arc::new(spooled.clone()), Some(spooled)))
}

impl MeshService {
    /// Opens the mesh, the task store, the DLQs and the runner (agents are not started yet).
    pub async fn open(
        config: &Config,
        governance: Governance,
        audit: AuditTrail,
        clock: Arc<dyn Clock>,
    ) -> Result<MeshService, ServiceError> {
        let (mesh, spool) = open_mesh(config, clock.clone()).await?;
        let tasks = TaskStore::open(
            config.data_dir.join("tasks"),
            clock.clone(),
            Retention::default(),
        )
        .map_err(agents_err)?;
        let dlq = DeadLetters::new(mesh.clone(), config.mesh.dlq_alert_threshold);
        let mut specs = Vec::new();
        for a in &config.mesh.agents {
            AgentName::new(a.name.as_str())
                .map_err(|e| ServiceError::Invalid(format!("mesh.agents: {e}")))?;
            if a.command.is_empty() {
                return Err(ServiceError::Invalid(format!(
                    "mesh.agents: `{}` has an empty command",
                    a.name
                )));
            }
            let mode = match a.mode.as_str() {
                "process" => RunMode::Process,
                "tmux" => RunMode::Tmux {
                    session: "ai-infrastructure".into(),
                },
                other => {
                    return Err(ServiceError::Invalid(format!(
                        "mesh.agents: `{}` has mode `{other}`; use process or tmux",
                        a.name
                    )));
                }
            };
            specs.push(AgentSpec {
                name: a.name.clone(),
                command: a.command.clone(),
                env: Default::default(),
                cwd: None,
                heartbeat_timeout: a.heartbeat_timeout_seconds.map(Duration::from_secs),
                mode,
                autostart: a.autostart,
            });
        }
        let runner = Runner::new(
            specs,
            config.data_dir.join("agents"),
            Backoff::default(),
            clock.clone(),
        );
        metrics::describe_counter!(
            PUBLISHED,
            metrics::Unit::Count,
            "Messages published to the mesh, by topic."
        );
        metrics::describe_counter!(
            REFUSED,
            metrics::Unit::Count,
            "Messages refused by governance, by topic and verdict."
        );
        metrics::describe_gauge!(
            LAG,
            "Messages not yet acknowledged by a consumer group, by topic and group."
        );
        metrics::describe_gauge!(
            aura_agents::dlq::DLQ_SIZE,
            "Entries waiting in a dead-letter queue, by topic."
        );
        metrics::describe_counter!(
            aura_agents::dlq::DEAD_LETTERED,
            metrics::Unit::Count,
            "Messages dead-lettered, by topic."
        );
        metrics::describe_counter!(
            aura_agents::dlq::DLQ_ALERTS,
            metrics::Unit::Count,
            "Times a dead-letter queue passed its alert threshold, by topic."
        );
        metrics::describe_counter!(
            aura_agents::worker::DELIVERED,
            metrics::Unit::Count,
            "Messages delivered to consumers, by topic."
        );
        metrics::describe_counter!(
            aura_agents::worker::REDELIVERED,
            metrics::Unit::Count,
            "Messages delivered again after a nack or timeout, by topic."
        );
        metrics::describe_counter!(
            aura_agents::runner::RESTARTS,
            metrics::Unit::Count,
            "Agent restarts by the watchdog, by agent and cause."
        );
        tracing::info!(
            backend = mesh.backend(),
            spool = spool.is_some(),
            "event mesh opened"
        );
        let tasks_topic = Topic::new("aura.tasks").map_err(mesh_err)?;
        Ok(MeshService {
            mesh,
            spool,
            governance,
            audit,
            clock,
            tasks,
            dlq,
            runner,
            tasks_topic,
            closing: CancellationToken::new(),
        })
    }

    /// The mesh (for benchmarks and tests).
    pub fn mesh(&self) -> &Arc<dyn Mesh> {
        &self.mesh
    }

    /// The agent runner.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The current time.
    pub fn now(&self) -> aura_core::Timestamp {
        self.clock.now()
    }

    /// Asks the kernel whether `agent` may send `envelope` on `topic`; settles nothing yet.
    async fn govern(
        &self,
        agent: &AgentName,
        topic: &Topic,
        envelope: &Envelope,
        op: &str,
        caller: &Actor,
    ) -> Result<(String, u64), MeshRefusal> {
        let action = Action::extract(RawAction {
            agent: agent.clone(),
            task: envelope.task_id.clone(),
            kind: "message".into(),
            target: envelope.target.clone(),
            args: serde_json::json!({
                "op": op,
                "topic": topic.as_str(),
                "type": envelope.kind.as_str(),
                "priority": envelope.priority,
                "id": envelope.id,
                "bytes": serde_json::to_vec(&envelope.payload).map(|v| v.len()).unwrap_or(0),
            }),
            estimate: Estimate::default(),
            labels: Default::default(),
        })
        .map_err(|e| MeshRefusal::Failed(ServiceError::Invalid(e.to_string())))?;
        let decided = self.governance.decide(&action, caller.clone()).await;
        if decided.decision.verdict != Verdict::Allow {
            metrics::counter!(REFUSED, "topic" => topic.to_string(), "verdict" => decided.decision.verdict.as_str()).increment(1);
            return Err(MeshRefusal::Refused {
                verdict: decided.decision.verdict,
                reasons: decided.decision.reasons,
                audit_seq: decided.audit_seq,
            });
        }
        Ok((decided.decision.id, decided.audit_seq))
    }

    async fn settle(&self, decision: &str, ok: bool, caller: &Actor) {
        let outcome = if ok {
            ActionOutcome::Success
        } else {
            ActionOutcome::Failure
        };
        if let Err(e) = self
            .governance
            .settle(decision, None, outcome, Actual::default(), caller.clone())
            .await
        {
            tracing::warn!(decision, error = %e, "could not settle a mesh decision");
        }
    }

    /// Publishes `envelope` from `agent` on `topic` once governance allows it.
    pub async fn publish(
        &self,
        agent: &AgentName,
        topic: &Topic,
        mut envelope: Envelope,
        caller: Actor,
    ) -> Result<PublishedMessage, MeshRefusal> {
        envelope.source = agent.to_string();
        envelope
            .validate()
            .map_err(|e| MeshRefusal::Failed(agents_err(e)))?;
        let (decision, audit_seq) = self
            .govern(agent, topic, &envelope, "publish", &caller)
            .await?;
        let outgoing = envelope
            .to_outgoing()
            .map_err(|e| MeshRefusal::Failed(agents_err(e)));
        let published = match outgoing {
            Ok(o) => self
                .mesh
                .publish(topic, o)
                .await
                .map_err(|e| MeshRefusal::Failed(mesh_err(e))),
            Err(e) => Err(e),
        };
        self.settle(&decision, published.is_ok(), &caller).await;
        let receipt = published?;
        metrics::counter!(PUBLISHED, "topic" => topic.to_string()).increment(1);
        if topic.as_str() == HEARTBEAT_TOPIC || envelope.kind == MessageType::Heartbeat {
            self.runner.heartbeat(agent.as_str());
        }
        Ok(PublishedMessage {
            envelope,
            receipt,
            audit_seq,
        })
    }

    /// Topics with their groups' lag.
    pub async fn topics(&self) -> Result<Vec<TopicView>, ServiceError> {
        let mut out = Vec::new();
        for info in self.mesh.topics().await.map_err(mesh_err)? {
            let mut lag = Vec::new();
            for g in &info.groups {
                if let Some(l) = self.mesh.lag(&info.topic, g).await.map_err(mesh_err)? {
                    lag.push((g.clone(), l));
                }
            }
            out.push(TopicView { info, lag });
        }
        Ok(out)
    }

    /// Reads (replays) a topic from `from`.
    pub async fn read(
        &self,
        topic: &Topic,
        from: StartAt,
        max: usize,
    ) -> Result<Vec<Message>, ServiceError> {
        self.mesh
            .read(topic, from, max.min(10_000))
            .await
            .map_err(mesh_err)
    }

    /// Fetches up to `max` messages for `group` and acknowledges them (HTTP consumers: at most once per group).
    pub async fn take(
        &self,
        topic: &Topic,
        group: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Message, u32)>, ServiceError> {
        let mut sub = self
            .mesh
            .subscribe(topic, group, SubscribeOptions::default())
            .await
            .map_err(mesh_err)?;
        let got = sub
            .fetch(max.clamp(1, 1000), wait.min(Duration::from_secs(25)))
            .await
            .map_err(mesh_err)?;
        let mut out = Vec::with_capacity(got.len());
        for d in got {
            d.ack().await.map_err(mesh_err)?;
            metrics::counter!(aura_agents::worker::DELIVERED, "topic" => topic.to_string())
                .increment(1);
            if d.attempt > 1 {
                metrics::counter!(aura_agents::worker::REDELIVERED, "topic" => topic.to_string())
                    .increment(1);
            }
            out.push((d.message, d.attempt));
        }
        Ok(out)
    }

    /// Subscribes `group` on `topic` (for WebSocket consumers, which ack themselves).
    pub async fn subscribe(
        &self,
        topic: &Topic,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn aura_mesh::Subscription>, ServiceError> {
        self.mesh
            .subscribe(topic, group, options)
            .await
            .map_err(mesh_err)
    }

    /// Cancelled when the server shuts down: WebSocket consumers close then, handing back what they hold.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Creates a task (a governed `message` to `*`, op `task.create`).
    pub async fn create_task(
        &self,
        agent: &AgentName,
        new: NewTask,
        caller: Actor,
    ) -> Result<(Task, bool), MeshRefusal> {
        let env = Envelope::new(
            self.clock.now(),
            agent,
            "*",
            MessageType::Task,
            serde_json::json!({"title": new.title}),
        );
        let topic = self.tasks_topic.clone();
        let (decision, _) = self
            .govern(agent, &topic, &env, "task.create", &caller)
            .await?;
        let created = self.tasks.create(new).await.map_err(agents_err);
        self.settle(&decision, created.is_ok(), &caller).await;
        let (task, fresh) = created?;
        if fresh {
            self.notify(agent, &task, "created").await;
        }
        Ok((task, fresh))
    }

    /// Moves a task (a governed `message` to its assignee or `*`, op `task.<state>`).
    pub async fn transition(
        &self,
        agent: &AgentName,
        id: &str,
        to: TaskState,
        change: Transition,
        caller: Actor,
    ) -> Result<Task, MeshRefusal> {
        let task = self
            .tasks
            .get(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no task `{id}`")))?;
        let target = change
            .assignee
            .clone()
            .or(task.assignee.clone())
            .unwrap_or_else(|| "*".into());
        let mut env = Envelope::new(
            self.clock.now(),
            agent,
            &target,
            MessageType::Task,
            serde_json::json!({"to": to.as_str()}),
        );
        env.task_id = Some(id.to_owned());
        let (decision, _) = self
            .govern(
                agent,
                &self.tasks_topic,
                &env,
                &format!("task.{}", to.as_str()),
                &caller,
            )
            .await?;
        let moved = self
            .tasks
            .transition(id, to, change)
            .await
            .map_err(agents_err);
        self.settle(&decision, moved.is_ok(), &caller).await;
        let task = moved?;
        self.notify(agent, &task, to.as_str()).await;
        Ok(task)
    }

    async fn notify(&self, agent: &AgentName, task: &Task, what: &str) {
        let target = task.assignee.clone().unwrap_or_else(|| "*".into());
        let mut env = Envelope::new(
            self.clock.now(),
            agent,
            &target,
            MessageType::Task,
            serde_json::json!({"event": what, "state": task.state.as_str(), "title": task.title}),
        );
        env.task_id = Some(task.id.clone());
        env.priority = task.priority;
        if let Ok(o) = env.to_outgoing() {
            match self.mesh.publish(&self.tasks_topic, o).await {
                Ok(_) => metrics::counter!(PUBLISHED, "topic" => self.tasks_topic.to_string())
                    .increment(1),
                Err(e) => {
                    tracing::warn!(task = %task.id, error = %e, "could not publish a task event");
                }
            }
        }
    }

    /// Tasks.
    pub fn tasks(&self, filter: &TaskFilter) -> Vec<Task> {
        self.tasks.list(filter)
    }

    /// Sees a new value after every change to the task store (subscribe before reading a task, then await
    /// `changed()`).
    pub fn task_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tasks.changes()
    }

    /// One task and its children.
    pub fn task(&self, id: &str) -> Option<(Task, Vec<Task>)> {
        self.tasks.get(id).map(|t| {
            let children = self.tasks.children(id);
            (t, children)
        })
    }

    /// Dead-letter queues.
    pub async fn dlq_queues(&self) -> Result<Vec<QueueSummary>, ServiceError> {
        self.dlq.queues().await.map_err(agents_err)
    }

    /// Entries of one queue.
    pub async fn dlq_list(
        &self,
        topic: &Topic,
        max: usize,
    ) -> Result<Vec<DeadLetter>, ServiceError> {
        self.dlq.list(topic, max).await.map_err(agents_err)
    }

    /// One entry.
    pub async fn dlq_show(&self, topic: &Topic, offset: u64) -> Result<DeadLetter, ServiceError> {
        self.dlq
            .show(topic, offset)
            .await
            .map_err(agents_err)?
            .ok_or_else(|| ServiceError::NotFound(format!("no dead letter {offset} in `{topic}`")))
    }

    /// Replays entries (audited).
    pub async fn dlq_replay(
        &self,
        topic: &Topic,
        offsets: Option<Vec<u64>>,
        caller: Actor,
    ) -> Result<u64, ServiceError> {
        let n = self
            .dlq
            .replay(topic, offsets.as_deref())
            .await
            .map_err(agents_err)?;
        self.record(
            caller,
            ("dlq", topic.as_str()),
            "dlq.replay",
            serde_json::json!({"replayed": n, "offsets": offsets}),
        )
        .await?;
        Ok(n)
    }

    /// Purges a queue (audited).
    pub async fn dlq_purge(&self, topic: &Topic, caller: Actor) -> Result<u64, ServiceError> {
        let n = self.dlq.purge(topic).await.map_err(agents_err)?;
        self.record(
            caller,
            ("dlq", topic.as_str()),
            "dlq.purge",
            serde_json::json!({"purged": n}),
        )
        .await?;
        Ok(n)
    }

    /// Every declared agent's runtime state.
    pub fn agents(&self) -> Vec<AgentRuntime> {
        self.runner.statuses()
    }

    /// Starts, stops or restarts a declared agent (audited).
    pub async fn control_agent(
        &self,
        name: &str,
        op: &str,
        caller: Actor,
    ) -> Result<AgentRuntime, ServiceError> {
        match op {
            "start" => self.runner.start(name).map_err(agents_err)?,
            "stop" => self.runner.stop(name).await.map_err(agents_err)?,
            "restart" => self.runner.restart(name).await.map_err(agents_err)?,
            other => {
                return Err(ServiceError::Invalid(format!(
                    "unknown operation `{other}`"
                )));
            }
        }
        self.record(
            caller,
            ("agent", name),
            &format!("agent.{op}"),
            serde_json::json!({}),
        )
        .await?;
        self.runner
            .status(name)
            .ok_or_else(|| ServiceError::NotFound(format!("no agent `{name}`")))
    }

    async fn record(
        &self,
        caller: Actor,
        resource: (&str, &str),
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        let entry = audit::event(
            self.clock.now(),
            caller,
            resource,
            action,
            RiskLevel::Medium,
            details,
        );
        self.audit.record(entry).await.map(|_| ())
    }

    /// Spool counters, when a remote backend is spooled.
    pub async fn spool_pending(&self) -> Option<u64> {
        match &self.spool {
            Some(s) => s.status().await.ok().map(|s| s.pending),
            None => None,
        }
    }

    /// Refreshes per-topic gauges (lag, DLQ size) and makes every topic's series visible on `/metrics` (published,
    /// delivered and redelivered counters at zero until something happens; DLQ size 0 without a queue), whatever
    /// the backend.
    pub async fn upkeep(&self) {
        let topics = match self.topics().await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "mesh upkeep: topics unavailable");
                return;
            }
        };
        let queues: std::collections::BTreeMap<String, u64> = match self.dlq.queues().await {
            Ok(q) => q.into_iter().map(|q| (q.topic, q.size)).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "mesh upkeep: dead-letter queues unavailable");
                Default::default()
            }
        };
        for t in topics {
            if t.info.topic.is_dead_letter() {
                continue;
            }
            let name = t.info.topic.to_string();
            metrics::counter!(PUBLISHED, "topic" => name.clone()).increment(0);
            metrics::counter!(aura_agents::worker::DELIVERED, "topic" => name.clone()).increment(0);
            metrics::counter!(aura_agents::worker::REDELIVERED, "topic" => name.clone())
                .increment(0);
            let dlq = queues.get(&name).copied().unwrap_or(0);
            metrics::gauge!(aura_agents::dlq::DLQ_SIZE, "topic" => name.clone()).set(dlq as f64);
            for (g, lag) in &t.lag {
                metrics::gauge!(LAG, "topic" => name.clone(), "group" => g.clone())
                    .set(*lag as f64);
            }
        }
    }

    /// Feeds heartbeats published on `agents.heartbeat` to the watchdog until `cancel`; then closes the
    /// WebSocket consumers ([`MeshService::closing`]).
    pub async fn watch_heartbeats(&self, cancel: CancellationToken) {
        self.heartbeat_loop(&cancel).await;
        cancel.cancelled().await;
        self.closing.cancel();
    }

    async fn heartbeat_loop(&self, cancel: &CancellationToken) {
        let Ok(topic) = Topic::new(HEARTBEAT_TOPIC) else {
            return;
        };
        let mut sub = match self
            .mesh
            .subscribe(
                &topic,
                "aura-watchdog",
                SubscribeOptions {
                    start: StartAt::Latest,
                    ack_wait: Duration::from_secs(30),
                },
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat watch unavailable");
                return;
            }
        };
        loop {
            let batch = tokio::select! {
                () = cancel.cancelled() => return,
                b = sub.fetch(256, Duration::from_secs(1)) => b,
            };
            match batch {
                Ok(b) => {
                    for d in b {
                        if let Ok(e) = Envelope::from_message(&d.message) {
                            self.runner.heartbeat(&e.source);
                        }
                        let _ = d.ack().await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat watch: fetch failed");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Graceful stop: agents are stopped, the spool flushed where possible, the mesh closed.
    pub async fn shutdown(&self) {
        self.runner.shutdown().await;
        if let Err(e) = self.tasks.compact().await {
            tracing::warn!(error = %e, "could not compact the task store at shutdown");
        }
        self.mesh.close().await;
    }
}

/// Capabilities parsed from a comma list.
pub fn capabilities(list: &[String]) -> BTreeSet<String> {
    list.iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}
