//! The LLM gateway endpoints on the main listener — OpenAI (`/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/models`), Anthropic (`/v1/messages`, `/v1/messages/count_tokens`), Gemini
//! (`/v1beta/models/{model}:generateContent` and `:streamGenerateContent`) — and usage reports. Agents present
//! their Aura agent token the way each SDK sends its key; errors leave in the endpoint's own error format.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use aura_config::ProviderKind;
use aura_core::{AgentName, Principal, Role};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::services::audit::actor_of;
use crate::services::gateway::{Failure, Inbound, Reply};

/// Headers forwarded upstream as the client sent them.
const PASS_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta"];

#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway",
    request_body(content = Object, description = "An OpenAI chat completion request"),
    responses((status = 200, description = "An OpenAI chat completion, or server-sent chunks when `stream` is true"),
        (status = 401, body = ErrorBody), (status = 403, description = "Refused by governance"),
        (status = 404, description = "Model not served"), (status = 429, description = "Rate limited")))]
pub(super) async fn chat_completions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(state, caller, headers, Inbound::OpenaiChat, body).await
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway",
    request_body(content = Object, description = "An OpenAI embeddings request"),
    responses((status = 200, description = "OpenAI embeddings"), (status = 401, body = ErrorBody),
        (status = 403, description = "Refused by governance"), (status = 404, description = "Model not served")))]
pub(super) async fn embeddings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(state, caller, headers, Inbound::OpenaiEmbeddings, body).await
}

#[utoipa::path(post, path = "/v1/responses", tag = "gateway",
    request_body(content = Object, description = "An OpenAI Responses API request"),
    responses((status = 200, description = "An OpenAI response object, or server-sent events (`response.created`, `response.output_text.delta`, …, `response.completed`) when `stream` is true"),
        (status = 401, body = ErrorBody), (status = 403, description = "Refused by governance"),
        (status = 404, description = "Model not served"), (status = 429, description = "Rate limited")))]
pub(super) async fn responses(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(state, caller, headers, Inbound::OpenaiResponses, body).await
}

/// One model in the OpenAI list format.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelView {
    /// The model name.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Always 0.
    pub created: i64,
    /// Always `aura`.
    pub owned_by: &'static str,
}

/// The OpenAI model list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<ModelView>,
}

#[utoipa::path(get, path = "/v1/models", tag = "gateway",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody)))]
pub(super) async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: state
            .gateway
            .models()
            .into_iter()
            .map(|id| ModelView {
                id,
                object: "model",
                created: 0,
                owned_by: "aura",
            })
            .collect(),
    })
}

#[utoipa::path(post, path = "/v1/messages", tag = "gateway",
    request_body(content = Object, description = "An Anthropic Messages request"),
    responses((status = 200, description = "An Anthropic message, or server-sent events when `stream` is true"),
        (status = 401, body = ErrorBody), (status = 403, description = "Refused by governance"),
        (status = 404, description = "Model not served")))]
pub(super) async fn messages(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(state, caller, headers, Inbound::AnthropicMessages, body).await
}

#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "gateway",
    request_body(content = Object, description = "An Anthropic Messages request"),
    responses((status = 200, description = "`{\"input_tokens\": n}`, counted by Aura"), (status = 401, body = ErrorBody)))]
pub(super) async fn count_tokens(State(state): State<AppState>, body: Bytes) -> Response {
    match state.gateway.count_tokens(&body) {
        Ok(n) => Json(json!({"input_tokens": n})).into_response(),
        Err(f) => failure(ProviderKind::Anthropic, f),
    }
}

#[utoipa::path(post, path = "/v1beta/models/{target}", tag = "gateway",
    params(("target" = String, Path, description = "`MODEL:generateContent` or `MODEL:streamGenerateContent`")),
    request_body(content = Object, description = "A Gemini generateContent request"),
    responses((status = 200, description = "A Gemini response, or server-sent events for streamGenerateContent"),
        (status = 401, body = ErrorBody), (status = 403, description = "Refused by governance"),
        (status = 404, description = "Model or method not served")))]
pub(super) async fn gemini(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inbound = match target.split_once(':') {
        Some((model, "generateContent")) => Inbound::Gemini {
            model: model.to_owned(),
            stream: false,
        },
        Some((model, "streamGenerateContent")) => Inbound::Gemini {
            model: model.to_owned(),
            stream: true,
        },
        _ => {
            return failure(
                ProviderKind::Gemini,
                Failure {
                    status: 404,
                    code: "not_found",
                    message: format!(
                        "no method `{target}`; use MODEL:generateContent or MODEL:streamGenerateContent"
                    ),
                    retry_after: None,
                    upstream_body: None,
                },
            );
        }
    };
    serve(state, caller, headers, inbound, body).await
}

#[utoipa::path(post, path = "/v1/models/{target}", tag = "gateway",
    params(("target" = String, Path, description = "`MODEL:generateContent` or `MODEL:streamGenerateContent`")),
    request_body(content = Object, description = "A Gemini generateContent request (API version v1)"),
    responses((status = 200, description = "A Gemini response, or server-sent events for streamGenerateContent"),
        (status = 401, body = ErrorBody), (status = 403, description = "Refused by governance"),
        (status = 404, description = "Model or method not served")))]
pub(super) async fn gemini_v1(
    state: State<AppState>,
    caller: Caller,
    target: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gemini(state, caller, target, headers, body).await
}

async fn serve(
    state: AppState,
    caller: Principal,
    headers: HeaderMap,
    inbound: Inbound,
    body: Bytes,
) -> Response {
    let protocol = inbound.protocol();
    let agent = match gateway_agent(&caller, &headers) {
        Ok(a) => a,
        Err(f) => return failure(protocol, f),
    };
    let pass = PASS_HEADERS
        .iter()
        .filter_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(|v| ((*h).to_owned(), v.to_owned()))
        })
        .collect();
    match state
        .gateway
        .call(agent, actor_of(&caller), inbound, &body, pass)
        .await
    {
        Ok(Reply::Json {
            status,
            body,
            cached,
        }) => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if cached {
                r.headers_mut()
                    .insert("x-aura-cache", HeaderValue::from_static("hit"));
            }
            r
        }
        Ok(Reply::Stream(rx)) => {
            // An `Err` aborts the response (a cut stream). hyper polls the body again right after writing a
            // chunk and drops what it buffered when the body fails, so the body returns `Pending` once before
            // the `Err`: hyper flushes the events it holds (the `upstream_cut` event among them) first.
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                let item = rx.recv().await?;
                if item.is_err() {
                    tokio::task::yield_now().await;
                }
                Some((item, rx))
            });
            let mut r = Response::new(Body::from_stream(stream));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        Err(f) => failure(protocol, f),
    }
}

/// The agent a gateway call acts for: the token's agent; an admin token names one in `x-aura-agent`.
fn gateway_agent(caller: &Principal, headers: &HeaderMap) -> Result<AgentName, Failure> {
    let named = headers.get("x-aura-agent").and_then(|v| v.to_str().ok());
    let refuse = |msg: String| Failure {
        status: 403,
        code: "forbidden",
        message: msg,
        retry_after: None,
        upstream_body: None,
    };
    match (&caller.agent, named) {
        (Some(own), None) => Ok(own.clone()),
        (Some(own), Some(n)) if own.as_str() == n => Ok(own.clone()),
        (_, Some(n)) if caller.role == Role::Admin => {
            AgentName::new(n).map_err(|e| refuse(e.to_string()))
        }
        (Some(own), Some(n)) => Err(refuse(format!(
            "token of agent `{own}` cannot act as `{n}`"
        ))),
        (None, Some(n)) => Err(refuse(format!(
            "only an admin token may name an agent (`{n}`) in `x-aura-agent`"
        ))),
        (None, None) => Err(refuse(
            "the gateway needs an agent token (or an admin token with an `x-aura-agent` header)"
                .into(),
        )),
    }
}

/// A failure in the endpoint's own error format (so each SDK raises its usual exception).
fn failure(protocol: ProviderKind, f: Failure) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = if let Some(body) = f.upstream_body {
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    } else {
        let body = match protocol {
            ProviderKind::Openai => {
                json!({"error": {"message": f.message, "type": f.code, "param": null, "code": f.code}})
            }
            ProviderKind::Anthropic => {
                json!({"type": "error", "error": {"type": f.code, "message": f.message}})
            }
            ProviderKind::Gemini => {
                json!({"error": {"code": f.status, "message": f.message, "status": f.code}})
            }
        };
        Json(body).into_response()
    };
    *r.status_mut() = status;
    if let Some(after) = f.retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&after.as_millis().to_string()) {
            r.headers_mut().insert("retry-after-ms", v);
        }
    }
    r
}

/// The window of a usage report.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageQuery {
    /// Days back, today included, 1..=366. Default 7.
    #[serde(default)]
    pub days: Option<u32>,
}

/// Usage of one day, agent and model.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The agent.
    pub agent: String,
    /// The model.
    pub model: String,
    /// Calls.
    pub calls: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Cost in micro-dollars.
    pub cost_micros: i64,
}

#[utoipa::path(get, path = "/api/v1/usage/daily", tag = "gateway", params(UsageQuery),
    responses((status = 200, body = Vec<UsageRow>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn usage_daily(
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Vec<UsageRow>>, ApiError> {
    let days = q.days.unwrap_or(7);
    if !(1..=366).contains(&days) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "`days` must be 1..=366",
        ));
    }
    let rows = state.gateway.usage(days).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| UsageRow {
                day: r.day,
                agent: r.agent,
                model: r.model,
                calls: r.calls,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cost_micros: r.cost_micros,
            })
            .collect(),
    ))
}

/// Whose budgets to show.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageBudgetQuery {
    /// The agent.
    pub agent: String,
}

/// One budget an agent's LLM calls draw on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageBudgetView {
    /// The budget key (budget, scope, period window).
    pub key: String,
    /// Spent, micro-dollars.
    pub spent_micros: i64,
    /// Reserved by calls in flight, micro-dollars.
    pub reserved_micros: i64,
    /// The limit, if any.
    pub limit_micros: Option<i64>,
    /// What is left, if limited.
    pub remaining_micros: Option<i64>,
    /// Percent of the limit spent or reserved.
    pub percent_used: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/usage/budget", tag = "gateway", params(UsageBudgetQuery),
    responses((status = 200, body = Vec<UsageBudgetView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn usage_budget(
    State(state): State<AppState>,
    Query(q): Query<UsageBudgetQuery>,
) -> Result<Json<Vec<UsageBudgetView>>, ApiError> {
    let agent = AgentName::new(q.agent)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let usage = state.governance.budgets(&agent).await?;
    Ok(Json(
        usage
            .into_iter()
            .map(|(key, u)| {
                let used = u.spent.cost_micros + u.reserved.cost_micros;
                let limit = u.limits.cost_micros;
                UsageBudgetView {
                    key,
                    spent_micros: u.spent.cost_micros,
                    reserved_micros: u.reserved.cost_micros,
                    limit_micros: limit,
                    remaining_micros: limit.map(|l| l - used),
                    percent_used: limit
                        .filter(|l| *l > 0)
                        .map(|l| u32::try_from(used.saturating_mul(100) / l).unwrap_or(u32::MAX)),
                }
            })
            .collect(),
    ))
}
