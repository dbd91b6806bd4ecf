//! The event mesh over HTTP: publish (governed, kind `message`), topics, replay, long-poll consume; tasks; the
//! dead-letter queues; the agents Aura runs. Wire types live here; the service speaks domain types.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use aura_agents::dlq::DeadLetter;
use aura_agents::envelope::{Envelope, MessageType, TraceContext};
use aura_agents::runner::AgentRuntime;
use aura_agents::tasks::{NewTask, Task, TaskFilter, TaskState, Transition};
use aura_core::{AgentName, Principal, Role, Timestamp};
use aura_mesh::{Delivery, Message, StartAt, SubscribeOptions, Subscription, Topic};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::services::audit::actor_of;
use crate::services::mesh::MeshRefusal;

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg)
}

fn refusal(r: MeshRefusal) -> ApiError {
    match r {
        MeshRefusal::Refused {
            verdict,
            reasons,
            audit_seq,
        } => {
            let why: Vec<String> = reasons
                .iter()
                .map(|r| format!("{}: {}", r.rule, r.message))
                .collect();
            ApiError::new(
                StatusCode::FORBIDDEN,
                "message_refused",
                format!(
                    "governance answered {} (audit seq {audit_seq}): {}",
                    verdict.as_str(),
                    why.join("; ")
                ),
            )
        }
        MeshRefusal::Failed(e) => e.into(),
    }
}

fn topic(name: &str) -> Result<Topic, ApiError> {
    Topic::new(name).map_err(|e| invalid(e.to_string()))
}

fn acting(caller: &Principal, requested: Option<&str>) -> Result<AgentName, ApiError> {
    match (&caller.agent, requested) {
        (Some(own), None) => Ok(own.clone()),
        (Some(own), Some(req)) if own.as_str() == req => Ok(own.clone()),
        (Some(own), Some(req)) if caller.role != Role::Admin => Err(ApiError::forbidden(format!(
            "token of agent `{own}` cannot send as `{req}`"
        ))),
        (_, Some(req)) => AgentName::new(req).map_err(|e| invalid(e.to_string())),
        (None, None) => Err(invalid(
            "name the sending agent (`source`); this token acts for no agent",
        )),
    }
}

/// A message to publish: the protocol envelope without the fields the server fills (id, timestamp, source).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishRequest {
    /// The sender; agents may omit it (their token names them); admins must give it.
    #[serde(default)]
    pub source: Option<String>,
    /// The receiving agent, or `*`.
    pub target: String,
    /// `task`, `result`, `handoff`, `query`, `heartbeat` or `learn`.
    #[serde(rename = "type")]
    pub kind: String,
    /// 1-10 (default 5).
    #[serde(default)]
    pub priority: Option<u8>,
    /// Content.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// W3C traceparent.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// Idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The message answered.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Topic for replies.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The task.
    #[serde(default)]
    pub task_id: Option<String>,
}

/// A published message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublishedView {
    /// Envelope id.
    pub id: String,
    /// The topic.
    pub topic: String,
    /// Offset in the topic (or in the local spool).
    pub offset: u64,
    /// Waiting in the local spool for the backend to return.
    pub spooled: bool,
    /// Audit sequence of the decision.
    pub audit_seq: u64,
}

/// A stored message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageView {
    /// Offset.
    pub offset: u64,
    /// RFC 3339.
    pub timestamp: String,
    /// Key.
    pub key: Option<String>,
    /// Delivery attempt (consume only).
    pub attempt: Option<u32>,
    /// Headers.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The envelope (or the raw payload as a string when it is not one).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

fn message_view(m: Message, attempt: Option<u32>) -> MessageView {
    let body = serde_json::from_slice(&m.payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&m.payload).into_owned())
    });
    MessageView {
        offset: m.offset,
        timestamp: m.timestamp.to_rfc3339(),
        key: m.key,
        attempt,
        headers: m.headers,
        body,
    }
}

/// A topic.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopicView {
    /// Name.
    pub topic: String,
    /// Messages retained.
    pub messages: u64,
    /// Oldest offset.
    pub first_offset: u64,
    /// Newest offset.
    pub last_offset: u64,
    /// Consumer groups and their lag.
    pub groups: Vec<GroupView>,
}

/// A consumer group.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupView {
    /// Name.
    pub group: String,
    /// Messages not acknowledged yet.
    pub lag: u64,
}

/// Mesh status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopicsView {
    /// `embedded`, `nats`, `redis` or `kafka`.
    pub backend: String,
    /// Messages waiting in the local spool (remote backends).
    pub spool_pending: Option<u64>,
    /// Topics.
    pub topics: Vec<TopicView>,
}

/// Replay parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    /// First offset.
    pub from: Option<u64>,
    /// First time (RFC 3339).
    pub since: Option<String>,
    /// At most this many (default 100, at most 10000).
    pub max: Option<usize>,
}

/// Consume parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TakeQuery {
    /// At most this many (default 10).
    pub max: Option<usize>,
    /// Wait up to this many milliseconds for messages (default 0, at most 25000).
    pub wait_ms: Option<u64>,
}

/// The acting agent and the envelope of a publish request (HTTP body or WebSocket frame).
fn envelope_of(
    state: &AppState,
    caller: &Principal,
    req: PublishRequest,
) -> Result<(AgentName, Envelope), ApiError> {
    let agent = acting(caller, req.source.as_deref())?;
    let kind: MessageType = serde_json::from_value(serde_json::Value::String(req.kind.clone()))
        .map_err(|_| invalid(format!("unknown message type `{}`, expected task, result, handoff, query, heartbeat or learn", req.kind)))?;
    let mut env = Envelope::new(state.mesh.now(), &agent, &req.target, kind, req.payload);
    env.priority = req.priority.unwrap_or(5);
    env.trace = req.traceparent.map(|traceparent| TraceContext {
        traceparent,
        tracestate: None,
    });
    env.idempotency_key = req.idempotency_key;
    env.correlation_id = req.correlation_id;
    env.reply_to = req.reply_to;
    env.task_id = req.task_id;
    Ok((agent, env))
}

/// Publishes a message to a topic, after the governance kernel allowed it (kind `message`, target = `target`).
#[utoipa::path(post, path = "/api/v1/mesh/topics/{topic}/messages", tag = "mesh", request_body = PublishRequest,
    params(("topic" = String, Path, description = "Topic")),
    responses((status = 200, body = PublishedView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn publish(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<Json<PublishRequest>, JsonRejection>,
) -> Result<Json<PublishedView>, ApiError> {
    let Json(req) = body.map_err(ApiError::from_json)?;
    let topic = topic(&name)?;
    let (agent, env) = envelope_of(&state, &caller, req)?;
    let p = state
        .mesh
        .publish(&agent, &topic, env, actor_of(&caller))
        .await
        .map_err(refusal)?;
    Ok(Json(PublishedView {
        id: p.envelope.id,
        topic: topic.to_string(),
        offset: p.receipt.offset,
        spooled: p.receipt.spooled,
        audit_seq: p.audit_seq,
    }))
}

/// Topics with their consumer groups' lag.
#[utoipa::path(get, path = "/api/v1/mesh/topics", tag = "mesh",
    responses((status = 200, body = TopicsView), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn topics(State(state): State<AppState>) -> Result<Json<TopicsView>, ApiError> {
    let list = state.mesh.topics().await?;
    Ok(Json(TopicsView {
        backend: state.mesh.mesh().backend().into(),
        spool_pending: state.mesh.spool_pending().await,
        topics: list
            .into_iter()
            .map(|t| TopicView {
                topic: t.info.topic.to_string(),
                messages: t.info.messages,
                first_offset: t.info.first_offset,
                last_offset: t.info.last_offset,
                groups: t
                    .lag
                    .into_iter()
                    .map(|(group, lag)| GroupView { group, lag })
                    .collect(),
            })
            .collect(),
    }))
}

/// Replays a topic from an offset or a time.
#[utoipa::path(get, path = "/api/v1/mesh/topics/{topic}/messages", tag = "mesh", params(("topic" = String, Path, description = "Topic"), ReadQuery),
    responses((status = 200, body = Vec<MessageView>), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn read(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let topic = topic(&name)?;
    let from = match (q.from, q.since) {
        (Some(o), None) => StartAt::Offset(o),
        (None, Some(t)) => StartAt::Time(
            Timestamp::parse_rfc3339(&t)
                .ok_or_else(|| invalid(format!("`since` `{t}` is not an RFC 3339 time")))?,
        ),
        (None, None) => StartAt::Earliest,
        (Some(_), Some(_)) => return Err(invalid("give `from` or `since`, not both")),
    };
    let list = state.mesh.read(&topic, from, q.max.unwrap_or(100)).await?;
    Ok(Json(
        list.into_iter().map(|m| message_view(m, None)).collect(),
    ))
}

/// Takes the next messages for a consumer group and acknowledges them (at most once per group over HTTP).
#[utoipa::path(post, path = "/api/v1/mesh/topics/{topic}/groups/{group}/take", tag = "mesh",
    params(("topic" = String, Path, description = "Topic"), ("group" = String, Path, description = "Consumer group"), TakeQuery),
    responses((status = 200, body = Vec<MessageView>), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn take(
    State(state): State<AppState>,
    Path((name, group)): Path<(String, String)>,
    Query(q): Query<TakeQuery>,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let topic = topic(&name)?;
    let got = state
        .mesh
        .take(
            &topic,
            &group,
            q.max.unwrap_or(10),
            Duration::from_millis(q.wait_ms.unwrap_or(0)),
        )
        .await?;
    Ok(Json(
        got.into_iter()
            .map(|(m, a)| message_view(m, Some(a)))
            .collect(),
    ))
}

/// A task.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskView {
    /// Id.
    pub id: String,
    /// Parent.
    pub parent: Option<String>,
    /// Title.
    pub title: String,
    /// State.
    pub state: String,
    /// Phase.
    pub phase: String,
    /// Priority 1-10.
    pub priority: u8,
    /// Holder.
    pub assignee: Option<String>,
    /// Required capabilities.
    pub required: Vec<String>,
    /// Verification criteria.
    pub verification: Vec<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Times started.
    pub attempts: u32,
    /// Recorded side effects (keys).
    pub effects: Vec<String>,
    /// Input.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Result.
    #[schema(value_type = Object)]
    pub result: Option<serde_json::Value>,
    /// Error or reason.
    pub error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Child task ids (show only).
    pub children: Vec<String>,
}

fn task_view(t: Task, children: Vec<Task>) -> TaskView {
    TaskView {
        id: t.id,
        parent: t.parent,
        title: t.title,
        state: t.state.as_str().into(),
        phase: serde_json::to_value(t.phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        priority: t.priority,
        assignee: t.assignee,
        required: t.required.into_iter().collect(),
        verification: t.verification,
        idempotency_key: t.idempotency_key,
        attempts: t.attempts,
        effects: t.effects.into_iter().map(|e| e.key).collect(),
        payload: t.payload,
        result: t.result,
        error: t.error,
        created_at: t.created_at.to_rfc3339(),
        updated_at: t.updated_at.to_rfc3339(),
        children: children.into_iter().map(|c| c.id).collect(),
    }
}

/// Task filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskQuery {
    /// Only in this state.
    pub state: Option<String>,
    /// Only held by this agent.
    pub assignee: Option<String>,
    /// Only children of this task.
    pub parent: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// A task to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTaskRequest {
    /// The creating agent (agents may omit it).
    #[serde(default)]
    pub agent: Option<String>,
    /// Title.
    pub title: String,
    /// Parent task id.
    #[serde(default)]
    pub parent: Option<String>,
    /// Required capabilities.
    #[serde(default)]
    pub required: Vec<String>,
    /// Input.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// 1-10.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Verification criteria.
    #[serde(default)]
    pub verification: Vec<String>,
    /// Idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Cancel a task.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelRequest {
    /// The agent cancelling (agents may omit it).
    #[serde(default)]
    pub agent: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "mesh", params(TaskQuery),
    responses((status = 200, body = Vec<TaskView>), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn tasks(
    State(state): State<AppState>,
    Query(q): Query<TaskQuery>,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let st = match q.state.as_deref() {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            invalid(format!("unknown state `{s}`, expected pending, assigned, in_progress, waiting, completed, failed or cancelled"))
        })?),
    };
    let list = state.mesh.tasks(&TaskFilter {
        state: st,
        assignee: q.assignee,
        parent: q.parent,
        limit: Some(q.limit.unwrap_or(100)),
    });
    Ok(Json(
        list.into_iter().map(|t| task_view(t, Vec::new())).collect(),
    ))
}

/// One task with its children.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "mesh", params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let (t, children) = state
        .mesh
        .task(&id)
        .ok_or_else(|| ApiError::not_found(format!("no task `{id}`")))?;
    Ok(Json(task_view(t, children)))
}

/// Creates a task (governed: kind `message`, op `task.create`); an existing idempotency key returns its task.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "mesh", request_body = CreateTaskRequest,
    responses((status = 201, body = TaskView), (status = 200, body = TaskView), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn create_task(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Json<CreateTaskRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let Json(req) = body.map_err(ApiError::from_json)?;
    let agent = acting(&caller, req.agent.as_deref())?;
    let new = NewTask {
        title: req.title,
        parent: req.parent,
        required: crate::services::mesh::capabilities(&req.required),
        payload: req.payload,
        priority: req.priority.unwrap_or(0),
        verification: req.verification,
        idempotency_key: req.idempotency_key,
    };
    let (t, fresh) = state
        .mesh
        .create_task(&agent, new, actor_of(&caller))
        .await
        .map_err(refusal)?;
    let code = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(task_view(t, Vec::new()))))
}

/// Cancels a task and its unfinished children (governed: op `task.cancelled`).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "mesh", params(("id" = String, Path, description = "Task id")),
    request_body = CancelRequest,
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn cancel_task(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<Json<CancelRequest>>,
) -> Result<Json<TaskView>, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let agent = match (&caller.agent, req.agent.as_deref()) {
        (None, None) => AgentName::new("operator").map_err(|e| invalid(e.to_string()))?,
        _ => acting(&caller, req.agent.as_deref())?,
    };
    let t = state
        .mesh
        .transition(
            &agent,
            &id,
            TaskState::Cancelled,
            Transition {
                error: Some(req.reason.unwrap_or_else(|| "cancelled".into())),
                ..Default::default()
            },
            actor_of(&caller),
        )
        .await
        .map_err(refusal)?;
    let children = state.mesh.task(&t.id).map(|(_, c)| c).unwrap_or_default();
    Ok(Json(task_view(t, children)))
}

/// A dead-letter queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueView {
    /// The original topic.
    pub topic: String,
    /// Entries waiting.
    pub size: u64,
}

/// A dead-lettered message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterView {
    /// Its id (offset in the dead-letter topic).
    pub offset: u64,
    /// The topic it failed on.
    pub topic: String,
    /// Its offset there.
    pub original_offset: u64,
    /// Why it was given up.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// RFC 3339.
    pub failed_at: String,
    /// The message.
    pub message: MessageView,
}

fn dead_view(d: DeadLetter) -> DeadLetterView {
    DeadLetterView {
        offset: d.offset,
        topic: d.topic,
        original_offset: d.original_offset,
        reason: d.reason,
        attempts: d.attempts,
        failed_at: d.failed_at.to_rfc3339(),
        message: message_view(d.message, None),
    }
}

/// Replay request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Only these entries (default: all).
    #[serde(default)]
    pub offsets: Option<Vec<u64>>,
}

/// How many entries an operation touched.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CountView {
    /// Entries.
    pub count: u64,
}

/// Dead-letter queues with their sizes.
#[utoipa::path(get, path = "/api/v1/dlq", tag = "mesh",
    responses((status = 200, body = Vec<QueueView>), (status = 401, body = ErrorBody)))]
pub(super) async fn dlq_queues(
    State(state): State<AppState>,
) -> Result<Json<Vec<QueueView>>, ApiError> {
    let q = state.mesh.dlq_queues().await?;
    Ok(Json(
        q.into_iter()
            .map(|q| QueueView {
                topic: q.topic,
                size: q.size,
            })
            .collect(),
    ))
}

/// The entries of one topic's dead-letter queue.
#[utoipa::path(get, path = "/api/v1/dlq/{topic}", tag = "mesh", params(("topic" = String, Path, description = "Original topic")),
    responses((status = 200, body = Vec<DeadLetterView>), (status = 401, body = ErrorBody)))]
pub(super) async fn dlq_list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    let list = state.mesh.dlq_list(&topic(&name)?, 1000).await?;
    Ok(Json(list.into_iter().map(dead_view).collect()))
}

/// One dead-lettered message.
#[utoipa::path(get, path = "/api/v1/dlq/{topic}/{offset}", tag = "mesh",
    params(("topic" = String, Path, description = "Original topic"), ("offset" = u64, Path, description = "Entry")),
    responses((status = 200, body = DeadLetterView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn dlq_show(
    State(state): State<AppState>,
    Path((name, offset)): Path<(String, u64)>,
) -> Result<Json<DeadLetterView>, ApiError> {
    Ok(Json(dead_view(
        state.mesh.dlq_show(&topic(&name)?, offset).await?,
    )))
}

/// Replays entries to the original topic (audited).
#[utoipa::path(post, path = "/api/v1/dlq/{topic}/replay", tag = "mesh", params(("topic" = String, Path, description = "Original topic")),
    request_body = ReplayRequest,
    responses((status = 200, body = CountView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn dlq_replay(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Option<Json<ReplayRequest>>,
) -> Result<Json<CountView>, ApiError> {
    let offsets = body.and_then(|Json(b)| b.offsets);
    let count = state
        .mesh
        .dlq_replay(&topic(&name)?, offsets, actor_of(&caller))
        .await?;
    Ok(Json(CountView { count }))
}

/// Deletes a dead-letter queue (audited).
#[utoipa::path(delete, path = "/api/v1/dlq/{topic}", tag = "mesh", params(("topic" = String, Path, description = "Original topic")),
    responses((status = 200, body = CountView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn dlq_purge(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<CountView>, ApiError> {
    let count = state
        .mesh
        .dlq_purge(&topic(&name)?, actor_of(&caller))
        .await?;
    Ok(Json(CountView { count }))
}

/// An agent Aura runs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunnerView {
    /// Name.
    pub name: String,
    /// `running`, `backoff`, `failed` or `stopped`.
    pub status: String,
    /// `process` or `tmux`.
    pub mode: String,
    /// Process id.
    pub pid: Option<u32>,
    /// Watchdog restarts.
    pub restarts: u32,
    /// How the last run ended.
    pub last_exit: Option<String>,
    /// RFC 3339.
    pub last_heartbeat: Option<String>,
    /// Captured output.
    pub log_path: String,
    /// tmux target to attach to.
    pub tmux_target: Option<String>,
}

fn runner_view(r: AgentRuntime) -> RunnerView {
    let (mode, tmux_target) = match &r.mode {
        aura_agents::runner::RunMode::Process => ("process".to_owned(), None),
        aura_agents::runner::RunMode::Tmux { session } => {
            ("tmux".to_owned(), Some(format!("{session}:{}", r.name)))
        }
    };
    RunnerView {
        name: r.name,
        status: r.status.as_str().into(),
        mode,
        pid: r.pid,
        restarts: r.restarts,
        last_exit: r.last_exit,
        last_heartbeat: r.last_heartbeat.map(|t| t.to_rfc3339()),
        log_path: r.log_path.display().to_string(),
        tmux_target,
    }
}

/// The agents declared in `mesh.agents` and what they are doing.
#[utoipa::path(get, path = "/api/v1/runner", tag = "mesh",
    responses((status = 200, body = Vec<RunnerView>), (status = 401, body = ErrorBody)))]
pub(super) async fn runner(State(state): State<AppState>) -> Json<Vec<RunnerView>> {
    Json(state.mesh.agents().into_iter().map(runner_view).collect())
}

/// Starts, stops or restarts a declared agent (audited).
#[utoipa::path(post, path = "/api/v1/runner/{name}/{op}", tag = "mesh",
    params(("name" = String, Path, description = "Agent"), ("op" = String, Path, description = "start, stop or restart")),
    responses((status = 200, body = RunnerView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn control(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((name, op)): Path<(String, String)>,
) -> Result<Json<RunnerView>, ApiError> {
    Ok(Json(runner_view(
        state
            .mesh
            .control_agent(&name, &op, actor_of(&caller))
            .await?,
    )))
}

/// WebSocket parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SocketQuery {
    /// Receive messages as a member of this consumer group (omit for a publish-only socket).
    pub group: Option<String>,
    /// Deliveries sent and not yet acknowledged before the server waits (default 100, 1-1000).
    pub max_in_flight: Option<usize>,
    /// A delivery not acknowledged within this many milliseconds is redelivered (default 30000, 100-3600000).
    pub ack_wait_ms: Option<u64>,
    /// Where a new group starts: `earliest` (default) or `latest`.
    pub start: Option<String>,
}

/// A frame the client sends on the mesh WebSocket.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    /// Publish `message` on the socket's topic (or `topic`), governed like `POST …/messages`.
    Publish {
        /// Echoed in the answer.
        #[serde(default, rename = "ref")]
        reference: Option<String>,
        /// Another topic to publish on.
        #[serde(default)]
        topic: Option<String>,
        /// The message, as the HTTP publish body.
        message: Box<PublishRequest>,
    },
    /// The delivery `id` is done.
    Ack {
        /// The delivery id of a `message` frame.
        id: u64,
    },
    /// The delivery `id` failed: redeliver after `delay_ms` (default 0).
    Nack {
        /// The delivery id of a `message` frame.
        id: u64,
        /// Milliseconds before redelivery.
        #[serde(default)]
        delay_ms: u64,
    },
}

/// Largest frame a client may send.
const MAX_FRAME_BYTES: usize = 4 << 20;

/// WebSocket: publish and consume on one topic. Server frames are JSON text: `ready`; `message` (`id`, `offset`,
/// `attempt`, `timestamp`, `key`, `headers`, `body`) for each delivery to `group`; `published` (`ref`, `id`,
/// `offset`, `spooled`, `audit_seq`); `acked`/`nacked` (`id`); `error` (`code`, `message`, and `ref` or `id`).
/// Client frames: `{"op":"publish","ref":…,"message":{…}}` (each decided by the kernel as a `message` action),
/// `{"op":"ack","id":…}`, `{"op":"nack","id":…,"delay_ms":…}`. At most `max_in_flight` deliveries are
/// unacknowledged at a time (backpressure); on close, unacknowledged deliveries go back to the group at once.
#[utoipa::path(get, path = "/api/v1/mesh/topics/{topic}/ws", tag = "mesh",
    params(("topic" = String, Path, description = "Topic"), SocketQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn socket(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Query(q): Query<SocketQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let topic = topic(&name)?;
    let max_in_flight = q.max_in_flight.unwrap_or(100);
    if !(1..=1000).contains(&max_in_flight) {
        return Err(invalid("`max_in_flight` must be 1-1000"));
    }
    let ack_wait = q.ack_wait_ms.unwrap_or(30_000);
    if !(100..=3_600_000).contains(&ack_wait) {
        return Err(invalid("`ack_wait_ms` must be 100-3600000"));
    }
    let start = match q.start.as_deref() {
        None | Some("earliest") => StartAt::Earliest,
        Some("latest") => StartAt::Latest,
        Some(other) => {
            return Err(invalid(format!(
                "`start` `{other}` must be `earliest` or `latest`"
            )));
        }
    };
    let sub = match &q.group {
        Some(g) => Some(
            state
                .mesh
                .subscribe(
                    &topic,
                    g,
                    SubscribeOptions {
                        start,
                        ack_wait: Duration::from_millis(ack_wait),
                    },
                )
                .await?,
        ),
        None => None,
    };
    let session = Session {
        state,
        caller,
        topic,
        group: q.group,
        max_in_flight,
    };
    Ok(ws
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| session.run(socket, sub)))
}

struct Session {
    state: AppState,
    caller: Principal,
    topic: Topic,
    group: Option<String>,
    max_in_flight: usize,
}

impl Session {
    async fn run(self, socket: WebSocket, sub: Option<Box<dyn Subscription>>) {
        use futures_util::{SinkExt as _, StreamExt as _};
        let (mut tx, mut rx) = socket.split();
        let stop = self.state.mesh.closing().child_token();
        let credit = Arc::new(Semaphore::new(self.max_in_flight));
        let (dtx, mut drx) = mpsc::channel::<Delivery>(self.max_in_flight);
        // Owned: cancelled through `stop` and awaited before this function returns.
        let fetcher = sub.map(|sub| {
            tokio::spawn(fetch_loop(
                sub,
                credit.clone(),
                dtx,
                stop.clone(),
                self.max_in_flight,
            ))
        });
        let mut inflight: HashMap<u64, Delivery> = HashMap::new();
        let mut next_id = 0u64;
        let ready = serde_json::json!({
            "type": "ready",
            "topic": self.topic.as_str(),
            "group": self.group,
            "backend": self.state.mesh.mesh().backend(),
            "max_in_flight": self.max_in_flight,
        });
        let mut open = tx.send(text(&ready)).await.is_ok();
        while open {
            let out = tokio::select! {
                () = stop.cancelled() => {
                    let _ = tx.send(WsMessage::Close(None)).await;
                    break;
                }
                d = drx.recv(), if fetcher.is_some() => match d {
                    Some(d) => {
                        next_id += 1;
                        let topic = self.topic.to_string();
                        metrics::counter!(aura_agents::worker::DELIVERED, "topic" => topic.clone()).increment(1);
                        if d.attempt > 1 {
                            metrics::counter!(aura_agents::worker::REDELIVERED, "topic" => topic).increment(1);
                        }
                        let view = message_view(d.message.clone(), Some(d.attempt));
                        let mut frame = serde_json::to_value(&view).unwrap_or_default();
                        frame["type"] = "message".into();
                        frame["id"] = next_id.into();
                        inflight.insert(next_id, d);
                        Some(frame)
                    }
                    None => {
                        let e = serde_json::json!({"type": "error", "code": "unavailable",
                            "message": "the mesh backend stopped delivering; reconnect"});
                        let _ = tx.send(text(&e)).await;
                        break;
                    }
                },
                frame = rx.next() => match frame {
                    Some(Ok(WsMessage::Text(t))) => Some(self.frame(t.as_str(), &mut inflight, &credit).await),
                    Some(Ok(WsMessage::Binary(_))) => Some(serde_json::json!({"type": "error", "code": "invalid_frame",
                        "message": "send JSON text frames"})),
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => None,
                },
            };
            if let Some(out) = out {
                open = tx.send(text(&out)).await.is_ok();
            }
        }
        stop.cancel();
        if let Some(f) = fetcher
            && let Err(e) = f.await
        {
            tracing::warn!(error = %e, "mesh socket fetcher failed");
        }
        // Whatever the client did not acknowledge goes back to the group now, not after `ack_wait`.
        drx.close();
        while let Ok(d) = drx.try_recv() {
            let _ = d.nack(Duration::ZERO).await;
        }
        for d in inflight.into_values() {
            let _ = d.nack(Duration::ZERO).await;
        }
    }

    async fn frame(
        &self,
        raw: &str,
        inflight: &mut HashMap<u64, Delivery>,
        credit: &Semaphore,
    ) -> serde_json::Value {
        let frame: ClientFrame = match serde_json::from_str(raw) {
            Ok(f) => f,
            Err(e) => {
                return serde_json::json!({"type": "error", "code": "invalid_frame",
                    "message": format!("bad frame: {e}")});
            }
        };
        match frame {
            ClientFrame::Publish {
                reference,
                topic: other,
                message,
            } => {
                let published = async {
                    let topic = match other {
                        Some(t) => topic(&t)?,
                        None => self.topic.clone(),
                    };
                    let (agent, env) = envelope_of(&self.state, &self.caller, *message)?;
                    let p = self
                        .state
                        .mesh
                        .publish(&agent, &topic, env, actor_of(&self.caller))
                        .await
                        .map_err(refusal)?;
                    Ok::<_, ApiError>(serde_json::json!({"type": "published", "ref": reference,
                        "id": p.envelope.id, "topic": topic.as_str(), "offset": p.receipt.offset,
                        "spooled": p.receipt.spooled, "audit_seq": p.audit_seq}))
                }
                .await;
                published.unwrap_or_else(|e| {
                    serde_json::json!({"type": "error", "ref": reference, "code": e.code(), "message": e.message()})
                })
            }
            ClientFrame::Ack { id } | ClientFrame::Nack { id, .. }
                if !inflight.contains_key(&id) =>
            {
                serde_json::json!({"type": "error", "id": id, "code": "unknown_delivery",
                    "message": format!("no unacknowledged delivery {id} on this socket")})
            }
            ClientFrame::Ack { id } => {
                let Some(d) = inflight.remove(&id) else {
                    return serde_json::Value::Null;
                };
                credit.add_permits(1);
                match d.ack().await {
                    Ok(()) => serde_json::json!({"type": "acked", "id": id}),
                    Err(e) => {
                        let e = ApiError::from(crate::services::mesh::mesh_err(e));
                        serde_json::json!({"type": "error", "id": id, "code": e.code(), "message": e.message()})
                    }
                }
            }
            ClientFrame::Nack { id, delay_ms } => {
                let Some(d) = inflight.remove(&id) else {
                    return serde_json::Value::Null;
                };
                credit.add_permits(1);
                match d.nack(Duration::from_millis(delay_ms.min(3_600_000))).await {
                    Ok(()) => serde_json::json!({"type": "nacked", "id": id}),
                    Err(e) => {
                        let e = ApiError::from(crate::services::mesh::mesh_err(e));
                        serde_json::json!({"type": "error", "id": id, "code": e.code(), "message": e.message()})
                    }
                }
            }
        }
    }
}

fn text(v: &serde_json::Value) -> WsMessage {
    WsMessage::Text(v.to_string().into())
}

/// Fetches for a socket while it has credit (deliveries not yet acknowledged stay under `max_in_flight`).
async fn fetch_loop(
    mut sub: Box<dyn Subscription>,
    credit: Arc<Semaphore>,
    out: mpsc::Sender<Delivery>,
    stop: CancellationToken,
    max: usize,
) {
    loop {
        // Wait for one unit of credit, then take whatever else is free.
        let first = tokio::select! {
            () = stop.cancelled() => return,
            p = credit.acquire() => p,
        };
        let Ok(first) = first else { return };
        first.forget();
        let mut n = 1;
        while n < max {
            match credit.try_acquire() {
                Ok(p) => {
                    p.forget();
                    n += 1;
                }
                Err(_) => break,
            }
        }
        let got = tokio::select! {
            () = stop.cancelled() => {
                credit.add_permits(n);
                return;
            }
            got = sub.fetch(n, Duration::from_secs(1)) => got,
        };
        match got {
            Ok(batch) => {
                credit.add_permits(n - batch.len().min(n));
                for d in batch {
                    if let Err(mpsc::error::SendError(d)) = out.send(d).await {
                        let _ = d.nack(Duration::ZERO).await;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "mesh socket: fetch failed");
                return;
            }
        }
    }
}
