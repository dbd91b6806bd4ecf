//! A2A (Agent2Agent protocol 0.3) JSON-RPC 2.0 on the agent cards' `url`s: `POST /a2a/agents/{name}` (one
//! registered agent) and `POST /a2a` (Aura's own card: the agent is named in the message's `metadata.agent`, else
//! the task is left for any agent to claim).
//!
//! Methods: `message/send` (a task in the task store, assigned to the agent — each step a `message` action the
//! kernel decides and audits, the assignment being the `task` envelope to the agent on `aura.tasks`),
//! `message/stream` and `tasks/resubscribe` (Server-Sent Events: the task, then a `status-update` per change until a
//! final state), `tasks/get` and `tasks/cancel`. A2A states are read from the task store's (`docs/integrations.md`
//! has the table). Errors use the JSON-RPC and A2A codes (-32001 task not found, -32002 not cancelable, …); a
//! governance refusal is -32010 with the verdict, rule and reason in `error.data`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, http::StatusCode};
use serde_json::{Value, json};

use aura_agents::tasks::{NewTask, Task, TaskState, Transition};
use aura_core::{AgentName, Permission, Principal};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::services::ServiceError;
use crate::services::audit::actor_of;
use crate::services::mesh::MeshRefusal;

/// JSON-RPC: the body is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a request object.
const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: no such method.
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: bad parameters.
const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: the server failed.
const INTERNAL_ERROR: i64 = -32603;
/// A2A: no such task (or not one this caller may see).
const TASK_NOT_FOUND: i64 = -32001;
/// A2A: the task is already final.
const TASK_NOT_CANCELABLE: i64 = -32002;
/// A2A: push notifications are not offered.
const PUSH_NOT_SUPPORTED: i64 = -32003;
/// A2A: the operation is not supported.
const UNSUPPORTED_OPERATION: i64 = -32004;
/// A2A: no authenticated extended card.
const NO_EXTENDED_CARD: i64 = -32007;
/// Aura: governance did not allow the message (verdict, rule, reason in `data`).
const REFUSED: i64 = -32010;

/// How long one stream follows a task at most (clients resubscribe after).
const FOLLOW_AT_MOST: Duration = Duration::from_secs(600);

/// The A2A JSON-RPC endpoint of one registered agent (its card's `url`).
#[utoipa::path(post, path = "/a2a/agents/{name}", tag = "edge",
    params(("name" = String, Path, description = "Agent name")), request_body = Object,
    responses((status = 200, description = "A JSON-RPC response; `text/event-stream` for message/stream and tasks/resubscribe"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn agent_rpc(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let agent = state.tokens.agent(&name).await?;
    Ok(rpc(state, caller, Some(agent.name), body).await)
}

/// The A2A JSON-RPC endpoint of Aura's own card: the receiving agent is `message.metadata.agent` (or none).
#[utoipa::path(post, path = "/a2a", tag = "edge", request_body = Object,
    responses((status = 200, description = "A JSON-RPC response; `text/event-stream` for message/stream and tasks/resubscribe"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn aura_rpc(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    Ok(rpc(state, caller, None, body).await)
}

/// What the agent working on an A2A task reports.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusRequest {
    /// The A2A state: `working`, `input-required`, `auth-required`, `completed` or `failed`.
    pub state: String,
    /// The status message the A2A client sees (the question, the approval awaited, the error).
    #[serde(default)]
    pub message: Option<String>,
    /// The result of a completed task (text or JSON), answered as the artifact `result`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub result: Option<Value>,
}

/// The agent side of an A2A task: the assigned agent (or, for an unassigned task, the agent taking it with
/// `working`) reports progress; each change is a governed `message` transition in the task store, and A2A clients
/// see it through `tasks/get` and their streams. Answers the A2A `Task`.
#[utoipa::path(post, path = "/api/v1/a2a/tasks/{id}/status", tag = "edge", request_body = StatusRequest,
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn report_status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Result<Json<StatusRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(req) = body.map_err(ApiError::from_json)?;
    let agent = crate::services::edge::agent_of(&caller)?;
    let (task, _) = state
        .mesh
        .task(&id)
        .ok_or_else(|| ApiError::not_found(format!("no task `{id}`")))?;
    let claim = req.state == "working" && task.assignee.is_none();
    if !claim && task.assignee.as_deref() != Some(agent.as_str()) {
        return Err(ApiError::forbidden(format!(
            "task `{id}` is not assigned to `{agent}`"
        )));
    }
    let note = req.message.clone().unwrap_or_default();
    let (to, change) = match req.state.as_str() {
        "working" => (
            TaskState::InProgress,
            Transition {
                assignee: Some(agent.to_string()),
                ..Default::default()
            },
        ),
        "input-required" => (
            TaskState::Waiting,
            Transition {
                error: Some(format!("input: {note}")),
                ..Default::default()
            },
        ),
        "auth-required" => (
            TaskState::Waiting,
            Transition {
                error: Some(format!("approval: {note}")),
                ..Default::default()
            },
        ),
        "completed" => (
            TaskState::Completed,
            Transition {
                result: req
                    .result
                    .clone()
                    .or_else(|| req.message.clone().map(Value::String)),
                ..Default::default()
            },
        ),
        "failed" => (
            TaskState::Failed,
            Transition {
                error: Some(if note.is_empty() {
                    "failed".to_owned()
                } else {
                    note
                }),
                ..Default::default()
            },
        ),
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "unknown state `{other}`: use working, input-required, auth-required, completed or failed"
                ),
            ));
        }
    };
    let task = state
        .mesh
        .transition(&agent, &id, to, change, actor_of(&caller))
        .await
        .map_err(|r| match r {
            MeshRefusal::Refused {
                verdict,
                reasons,
                audit_seq,
            } => ApiError::new(
                StatusCode::FORBIDDEN,
                "message_refused",
                format!(
                    "governance answered {} (audit seq {audit_seq}): {}",
                    verdict.as_str(),
                    reasons
                        .iter()
                        .map(|r| format!("{}: {}", r.rule, r.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            MeshRefusal::Failed(e) => e.into(),
        })?;
    Ok(Json(task_json(&task, None)))
}

/// A JSON-RPC error.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }

    fn not_found(id: &str) -> RpcError {
        RpcError::new(TASK_NOT_FOUND, format!("task `{id}` not found"))
    }
}

fn answer(id: Value, result: Result<Value, RpcError>) -> Response {
    let body = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            let mut error = json!({"code": e.code, "message": e.message});
            if let Some(data) = e.data {
                error["data"] = data;
            }
            json!({"jsonrpc": "2.0", "id": id, "error": error})
        }
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// Who sends: the agent of the token, else `operator` (a person's token; the policy decides what it may send).
fn sender(caller: &Principal) -> Result<AgentName, RpcError> {
    match &caller.agent {
        Some(a) => Ok(a.clone()),
        None => {
            AgentName::new("operator").map_err(|e| RpcError::new(INTERNAL_ERROR, e.to_string()))
        }
    }
}

struct Ctx {
    state: AppState,
    caller: Principal,
    sender: AgentName,
    /// The agent of the endpoint (`None` on Aura's own).
    agent: Option<AgentName>,
}

async fn rpc(
    state: AppState,
    caller: Principal,
    agent: Option<AgentName>,
    body: Bytes,
) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return answer(
                Value::Null,
                Err(RpcError::new(
                    PARSE_ERROR,
                    format!("the body is not JSON: {e}"),
                )),
            );
        }
    };
    let id = match req.get("id") {
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => v.clone(),
        _ => Value::Null,
    };
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .filter(|_| req.get("jsonrpc").and_then(Value::as_str) == Some("2.0"));
    let Some(method) = method else {
        return answer(
            id,
            Err(RpcError::new(
                INVALID_REQUEST,
                "expected a JSON-RPC 2.0 request object: {\"jsonrpc\": \"2.0\", \"id\", \"method\", \"params\"}",
            )),
        );
    };
    let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
    if !params.is_object() {
        return answer(id, Err(RpcError::params("`params` must be an object")));
    }
    let sender = match sender(&caller) {
        Ok(s) => s,
        Err(e) => return answer(id, Err(e)),
    };
    let ctx = Ctx {
        state,
        caller,
        sender,
        agent,
    };
    match method {
        "message/send" => {
            let sent = send(&ctx, &params).await;
            let blocking = params["configuration"]["blocking"].as_bool() == Some(true);
            match sent {
                Ok(task) if blocking => {
                    let task = settle_or_interrupt(&ctx, task).await;
                    answer(id, Ok(task_json(&task, history_length(&params))))
                }
                Ok(task) => answer(id, Ok(task_json(&task, history_length(&params)))),
                Err(e) => answer(id, Err(e)),
            }
        }
        "message/stream" => match send(&ctx, &params).await {
            Ok(task) => follow(ctx, id, task),
            Err(e) => answer(id, Err(e)),
        },
        "tasks/get" => answer(
            id,
            visible_task(&ctx, &params).map(|t| task_json(&t, history_length(&params))),
        ),
        "tasks/cancel" => answer(id, cancel(&ctx, &params).await),
        "tasks/resubscribe" => match visible_task(&ctx, &params) {
            Ok(task) => follow(ctx, id, task),
            Err(e) => answer(id, Err(e)),
        },
        m if m.starts_with("tasks/pushNotificationConfig/") => answer(
            id,
            Err(RpcError::new(
                PUSH_NOT_SUPPORTED,
                "push notifications are not supported; use message/stream or tasks/resubscribe",
            )),
        ),
        "agent/getAuthenticatedExtendedCard" => answer(
            id,
            Err(RpcError::new(
                NO_EXTENDED_CARD,
                "no authenticated extended card: the public card is complete",
            )),
        ),
        other => answer(
            id,
            Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!(
                    "unknown method `{other}`; supported: message/send, message/stream, tasks/get, tasks/cancel, tasks/resubscribe"
                ),
            )),
        ),
    }
}

fn history_length(params: &Value) -> Option<usize> {
    params["historyLength"]
        .as_u64()
        .or_else(|| params["configuration"]["historyLength"].as_u64())
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

fn refused(r: MeshRefusal) -> RpcError {
    match r {
        MeshRefusal::Refused {
            verdict,
            reasons,
            audit_seq,
        } => {
            let first = reasons.first();
            let rule = first.map_or("default_deny", |r| r.rule.as_str());
            let reason = first.map_or("", |r| r.message.as_str());
            RpcError {
                code: REFUSED,
                message: format!(
                    "{} by policy: {reason} ({rule})",
                    verdict_word(verdict.as_str())
                ),
                data: Some(
                    json!({"verdict": verdict.as_str(), "rule": rule, "reason": reason,
                    "audit_seq": audit_seq}),
                ),
            }
        }
        MeshRefusal::Failed(e) => match e {
            ServiceError::NotFound(m) => RpcError::new(TASK_NOT_FOUND, m),
            ServiceError::Conflict(m) => RpcError::new(TASK_NOT_CANCELABLE, m),
            ServiceError::Invalid(m) => RpcError::params(m),
            other => {
                tracing::warn!(error = %other, "a2a request failed");
                RpcError::new(INTERNAL_ERROR, "internal error; see the server log")
            }
        },
    }
}

fn verdict_word(verdict: &str) -> &'static str {
    match verdict {
        "halt" => "halted",
        "escalate" => "needs approval",
        _ => "denied",
    }
}

/// `message/send`: a new task (or a follow-up message on an existing one, `message.taskId`).
async fn send(ctx: &Ctx, params: &Value) -> Result<Task, RpcError> {
    let message = params
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| RpcError::params("`params.message` is required"))?;
    let message_id = message["messageId"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .ok_or_else(|| RpcError::params("`message.messageId` is required (1-200 characters)"))?;
    let parts = message["parts"]
        .as_array()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| RpcError::params("`message.parts` must list at least one part"))?;
    for part in parts {
        match part["kind"].as_str() {
            Some("text") if part["text"].is_string() => {}
            Some("data") if part["data"].is_object() => {}
            Some("file") => {
                return Err(RpcError::new(
                    UNSUPPORTED_OPERATION,
                    "file parts are not supported; send text or data parts",
                ));
            }
            _ => {
                return Err(RpcError::params(
                    "each part needs `kind` text (with `text`) or data (with an object `data`)",
                ));
            }
        }
    }
    let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    let actor = actor_of(&ctx.caller);
    let mesh = &ctx.state.mesh;
    if let Some(task_id) = message["taskId"].as_str() {
        return follow_up(ctx, task_id, message).await;
    }
    let agent = match &ctx.agent {
        Some(a) => Some(a.clone()),
        None => match message["metadata"]["agent"]
            .as_str()
            .or_else(|| params["metadata"]["agent"].as_str())
        {
            Some(name) => Some(
                ctx.state
                    .tokens
                    .agent(name)
                    .await
                    .map_err(|_| {
                        RpcError::params(format!("no registered agent `{name}` (metadata.agent)"))
                    })?
                    .name,
            ),
            None => None,
        },
    };
    let context_id = message["contextId"]
        .as_str()
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let title = match text.first() {
        Some(t) => t.chars().take(200).collect::<String>(),
        None => format!("A2A message {message_id}"),
    };
    let title = if title.trim().is_empty() {
        format!("A2A message {message_id}")
    } else {
        title
    };
    let new = NewTask {
        title,
        payload: json!({
            "a2a": {
                "sender": ctx.sender.as_str(),
                "agent": agent.as_ref().map(AgentName::as_str),
                "context_id": context_id,
                "message": message,
            },
            "text": text.join("\n"),
        }),
        priority: 0,
        idempotency_key: Some(format!("a2a:{}:{message_id}", ctx.sender)),
        ..Default::default()
    };
    let (task, fresh) = mesh
        .create_task(&ctx.sender, new, actor.clone())
        .await
        .map_err(refused)?;
    let Some(agent) = agent.filter(|_| fresh && task.state == TaskState::Pending) else {
        return Ok(task);
    };
    // The task envelope to the agent: assigning it is a `message` to that agent, decided and audited.
    let assigned = mesh
        .transition(
            &ctx.sender,
            &task.id,
            TaskState::Assigned,
            Transition {
                assignee: Some(agent.to_string()),
                ..Default::default()
            },
            actor.clone(),
        )
        .await;
    match assigned {
        Ok(task) => Ok(task),
        Err(MeshRefusal::Refused {
            verdict,
            reasons,
            audit_seq,
        }) => {
            // Not allowed to reach that agent: the task is rejected (kept, cancelled with the reason).
            let first = reasons.first();
            let why = format!(
                "rejected: {} by policy: {} ({}); audit seq {audit_seq}",
                verdict_word(verdict.as_str()),
                first.map_or("", |r| r.message.as_str()),
                first.map_or("default_deny", |r| r.rule.as_str()),
            );
            let cancelled = mesh
                .transition(
                    &ctx.sender,
                    &task.id,
                    TaskState::Cancelled,
                    Transition {
                        error: Some(why.clone()),
                        ..Default::default()
                    },
                    actor,
                )
                .await;
            match cancelled {
                Ok(task) => Ok(task),
                Err(_) => Err(refused(MeshRefusal::Refused {
                    verdict,
                    reasons,
                    audit_seq,
                })),
            }
        }
        Err(e) => Err(refused(e)),
    }
}

/// A message on an existing task: published to the assignee's inbox (`agent.<name>`) as a `task` envelope.
async fn follow_up(ctx: &Ctx, task_id: &str, message: &Value) -> Result<Task, RpcError> {
    let task = visible(ctx, task_id)?;
    if task.state.is_terminal() {
        return Err(RpcError::new(
            UNSUPPORTED_OPERATION,
            format!(
                "task `{task_id}` is {}; send a new message without taskId",
                a2a_state(&task)
            ),
        ));
    }
    let Some(assignee) = task.assignee.clone() else {
        return Err(RpcError::new(
            UNSUPPORTED_OPERATION,
            format!("task `{task_id}` has no agent yet; wait for one to take it"),
        ));
    };
    let topic = aura_mesh::Topic::new(&aura_agents::envelope::inbox(&assignee))
        .map_err(|e| RpcError::new(INTERNAL_ERROR, e.to_string()))?;
    let mut env = aura_agents::envelope::Envelope::new(
        ctx.state.mesh.now(),
        &ctx.sender,
        &assignee,
        aura_agents::envelope::MessageType::Task,
        json!({"a2a": {"message": message}}),
    );
    env.task_id = Some(task.id.clone());
    env.priority = task.priority;
    env.idempotency_key = message["messageId"].as_str().map(|m| format!("a2a:{m}"));
    ctx.state
        .mesh
        .publish(&ctx.sender, &topic, env, actor_of(&ctx.caller))
        .await
        .map_err(refused)?;
    visible(ctx, task_id)
}

/// The task `id` if this caller may see it: its A2A sender, its assignee, or a token that reads the inventory.
fn visible(ctx: &Ctx, id: &str) -> Result<Task, RpcError> {
    let (task, _) = ctx
        .state
        .mesh
        .task(id)
        .ok_or_else(|| RpcError::not_found(id))?;
    let sender = task.payload["a2a"]["sender"].as_str();
    let mine = sender == Some(ctx.sender.as_str())
        || task.assignee.as_deref() == Some(ctx.sender.as_str())
        || ctx.caller.role.allows(Permission::ReadInventory);
    if mine {
        Ok(task)
    } else {
        Err(RpcError::not_found(id))
    }
}

fn visible_task(ctx: &Ctx, params: &Value) -> Result<Task, RpcError> {
    let id = params["id"]
        .as_str()
        .ok_or_else(|| RpcError::params("`params.id` (the task id) is required"))?;
    visible(ctx, id)
}

/// `tasks/cancel`: a governed `task.cancelled`; a final task cannot be cancelled.
async fn cancel(ctx: &Ctx, params: &Value) -> Result<Value, RpcError> {
    let task = visible_task(ctx, params)?;
    if task.state.is_terminal() {
        return Err(RpcError::new(
            TASK_NOT_CANCELABLE,
            format!(
                "task `{}` is {} and cannot be canceled",
                task.id,
                a2a_state(&task)
            ),
        ));
    }
    let reason = params["metadata"]["reason"]
        .as_str()
        .map_or_else(|| "canceled by the A2A client".to_owned(), str::to_owned);
    let task = ctx
        .state
        .mesh
        .transition(
            &ctx.sender,
            &task.id,
            TaskState::Cancelled,
            Transition {
                error: Some(reason),
                ..Default::default()
            },
            actor_of(&ctx.caller),
        )
        .await
        .map_err(refused)?;
    Ok(task_json(&task, None))
}

/// The A2A state of a task-store task.
pub(crate) fn a2a_state(t: &Task) -> &'static str {
    let error = t.error.as_deref().unwrap_or_default();
    match t.state {
        TaskState::Pending | TaskState::Assigned => "submitted",
        TaskState::InProgress => "working",
        TaskState::Waiting if error.starts_with("approval") => "auth-required",
        TaskState::Waiting => "input-required",
        TaskState::Completed => "completed",
        TaskState::Failed if error.starts_with("denied") || error.starts_with("rejected") => {
            "rejected"
        }
        TaskState::Failed => "failed",
        TaskState::Cancelled if error.starts_with("rejected") => "rejected",
        TaskState::Cancelled => "canceled",
    }
}

/// Whether A2A calls the state final (the stream ends there) or interrupted (a blocking send returns there).
fn a2a_final(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "canceled" | "rejected")
}

fn context_id(t: &Task) -> String {
    t.payload["a2a"]["context_id"]
        .as_str()
        .map_or_else(|| t.id.clone(), str::to_owned)
}

fn status_json(t: &Task) -> Value {
    let state = a2a_state(t);
    let mut status = json!({"state": state, "timestamp": t.updated_at.to_rfc3339()});
    let note = match t.state {
        TaskState::Waiting => t.error.as_deref().map(|e| {
            e.strip_prefix("input: ")
                .or_else(|| e.strip_prefix("approval: "))
                .unwrap_or(e)
                .to_owned()
        }),
        TaskState::Failed | TaskState::Cancelled => t.error.clone(),
        TaskState::Assigned => t.assignee.as_ref().map(|a| format!("assigned to `{a}`")),
        _ => None,
    };
    if let Some(text) = note {
        status["message"] = json!({
            "kind": "message", "role": "agent", "messageId": format!("{}-{}", t.id, t.state.as_str()),
            "taskId": t.id, "contextId": context_id(t),
            "parts": [{"kind": "text", "text": text}],
        });
    }
    status
}

/// A task-store task as an A2A `Task`.
fn task_json(t: &Task, history_length: Option<usize>) -> Value {
    let mut task = json!({
        "kind": "task",
        "id": t.id,
        "contextId": context_id(t),
        "status": status_json(t),
        "metadata": {
            "aura": {"state": t.state.as_str(), "assignee": t.assignee, "priority": t.priority,
                "attempts": t.attempts, "title": t.title},
        },
    });
    let mut history = Vec::new();
    if let Some(m) = t.payload["a2a"]["message"].as_object() {
        let mut m = Value::Object(m.clone());
        m["taskId"] = json!(t.id);
        m["contextId"] = json!(context_id(t));
        history.push(m);
    }
    let keep = history_length.unwrap_or(history.len()).min(history.len());
    task["history"] = Value::Array(history.split_off(history.len() - keep));
    if let Some(result) = &t.result {
        let part = match result {
            Value::String(s) => json!({"kind": "text", "text": s}),
            Value::Object(_) => json!({"kind": "data", "data": result}),
            other => json!({"kind": "data", "data": {"result": other}}),
        };
        task["artifacts"] =
            json!([{"artifactId": format!("{}-result", t.id), "name": "result", "parts": [part]}]);
    }
    task
}

fn status_update(t: &Task) -> Value {
    let state = a2a_state(t);
    json!({
        "kind": "status-update",
        "taskId": t.id,
        "contextId": context_id(t),
        "status": status_json(t),
        "final": a2a_final(state),
    })
}

/// A blocking `message/send`: waits until the task is final or interrupted (input or auth required), bounded.
async fn settle_or_interrupt(ctx: &Ctx, task: Task) -> Task {
    let deadline = Instant::now() + FOLLOW_AT_MOST.min(Duration::from_secs(25));
    let closing = ctx.state.catalog.closing();
    // Subscribed before the task is read again, so no change between the read and the wait is missed.
    let mut changes = ctx.state.mesh.task_changes();
    let mut current = ctx.state.mesh.task(&task.id).map_or(task, |(t, _)| t);
    loop {
        let state = a2a_state(&current);
        if a2a_final(state) || matches!(state, "input-required" | "auth-required") {
            return current;
        }
        tokio::select! {
            () = closing.cancelled() => return current,
            () = tokio::time::sleep_until(deadline.into()) => return current,
            changed = changes.changed() => if changed.is_err() {
                return current;
            },
        }
        if let Some((t, _)) = ctx.state.mesh.task(&current.id) {
            current = t;
        }
    }
}

/// SSE: the task, then a `status-update` each time its state (or note) changes, until a final state, the bound,
/// the client leaving, or the server closing.
fn follow(ctx: Ctx, id: Value, task: Task) -> Response {
    struct Follow {
        ctx: Ctx,
        id: Value,
        task_id: String,
        changes: tokio::sync::watch::Receiver<u64>,
        last: Option<(TaskState, Option<String>, Option<String>)>,
        first: Option<Task>,
        done: bool,
        until: Instant,
    }
    let frame =
        |id: &Value, result: Value| -> Result<Event, Infallible> {
            Ok(Event::default()
                .data(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()))
        };
    // Subscribed before the task is read again for the first frame, so no later change is missed.
    let changes = ctx.state.mesh.task_changes();
    let task = ctx.state.mesh.task(&task.id).map_or(task, |(t, _)| t);
    let start = Follow {
        id,
        task_id: task.id.clone(),
        changes,
        last: None,
        first: Some(task),
        done: false,
        until: Instant::now() + FOLLOW_AT_MOST,
        ctx,
    };
    let stream = futures_util::stream::unfold(start, move |mut f| async move {
        if f.done {
            return None;
        }
        if let Some(task) = f.first.take() {
            f.last = Some((task.state, task.assignee.clone(), task.error.clone()));
            f.done = a2a_final(a2a_state(&task));
            let event = frame(&f.id, task_json(&task, None));
            return Some((event, f));
        }
        let closing = f.ctx.state.catalog.closing();
        loop {
            // Woken by the task store on every change (not polled); the state is compared to what was sent.
            tokio::select! {
                () = closing.cancelled() => return None,
                () = tokio::time::sleep_until(f.until.into()) => return None,
                changed = f.changes.changed() => changed.ok()?,
            }
            let (task, _) = f.ctx.state.mesh.task(&f.task_id)?;
            let seen = (task.state, task.assignee.clone(), task.error.clone());
            if f.last.as_ref() != Some(&seen) {
                f.last = Some(seen);
                let update = status_update(&task);
                f.done = update["final"] == true;
                let event = frame(&f.id, update);
                return Some((event, f));
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: TaskState, error: Option<&str>) -> Task {
        Task {
            id: "t1".into(),
            parent: None,
            title: "x".into(),
            required: Default::default(),
            payload: json!({"a2a": {"context_id": "c1", "message": {"kind": "message", "messageId": "m1",
                "role": "user", "parts": [{"kind": "text", "text": "hi"}]}}}),
            priority: 5,
            state,
            phase: aura_agents::tasks::Phase::Observe,
            assignee: Some("bot".into()),
            verification: Vec::new(),
            idempotency_key: None,
            attempts: 0,
            result: None,
            error: error.map(str::to_owned),
            created_at: aura_core::Timestamp::from_millis(0),
            updated_at: aura_core::Timestamp::from_millis(0),
            effects: Vec::new(),
        }
    }

    /// The table in docs/integrations.md, row by row.
    #[test]
    fn task_store_states_map_onto_a2a_states() {
        let rows = [
            (TaskState::Pending, None, "submitted"),
            (TaskState::Assigned, None, "submitted"),
            (TaskState::InProgress, None, "working"),
            (
                TaskState::Waiting,
                Some("input: which region?"),
                "input-required",
            ),
            (TaskState::Waiting, Some("approval 0193…"), "auth-required"),
            (TaskState::Completed, None, "completed"),
            (TaskState::Failed, Some("disk full"), "failed"),
            (TaskState::Failed, Some("denied by policy"), "rejected"),
            (
                TaskState::Cancelled,
                Some("canceled by the A2A client"),
                "canceled",
            ),
            (
                TaskState::Cancelled,
                Some("rejected: denied by policy"),
                "rejected",
            ),
        ];
        for (state, error, want) in rows {
            let t = task(state, error);
            assert_eq!(a2a_state(&t), want, "{state:?} {error:?}");
            let json = task_json(&t, None);
            assert_eq!(json["status"]["state"], want);
            assert_eq!(json["contextId"], "c1");
            assert_eq!(json["history"][0]["taskId"], "t1");
        }
        let mut done = task(TaskState::Completed, None);
        done.result = Some(json!({"answer": 42}));
        assert_eq!(
            task_json(&done, Some(0))["artifacts"][0]["parts"][0]["data"]["answer"],
            42
        );
        assert_eq!(task_json(&done, Some(0))["history"], json!([]));
    }
}
