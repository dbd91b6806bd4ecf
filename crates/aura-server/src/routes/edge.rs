//! Edge routes: what an agent may read about itself (`/api/v1/edge/me`, used by `aura mcp` over stdio), and A2A
//! agent cards — Aura's own card at `/.well-known/agent-card.json` listing every registered agent as a skill, and
//! one card per registered agent at `/api/v1/a2a/agents/{name}/agent-card.json`. The cards' `url`s are the A2A
//! JSON-RPC endpoints in `routes::a2a`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use aura_store::AgentRecord;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::services::edge;

/// The calling agent's budget usage and policy limits.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeView {
    /// The agent.
    pub agent: String,
    /// Budget usage (micro-dollars) per budget key.
    #[schema(value_type = Object)]
    pub budget: serde_json::Value,
    /// Level, grants, pools, rate limits and budgets from the policy in force.
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
}

/// The calling agent's own budget and limits (agent tokens).
#[utoipa::path(get, path = "/api/v1/edge/me", tag = "edge",
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn me(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<MeView>, ApiError> {
    let agent = edge::agent_of(&caller)?;
    let budget = edge::budget_view(&state.governance, &agent).await?;
    let limits = edge::limits_view(&state.governance, &agent);
    Ok(Json(MeView {
        agent: agent.to_string(),
        budget,
        limits,
    }))
}

fn base_url(headers: &HeaderMap, state: &AppState) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| state.config.server.listen.to_string(), str::to_owned);
    format!("http://{host}")
}

fn skill(a: &AgentRecord) -> serde_json::Value {
    serde_json::json!({
        "id": a.name.as_str(),
        "name": a.name.as_str(),
        "description": format!("Work handled by the governed agent `{}`; every action it takes is decided and audited by Aura.", a.name),
        "tags": ["aura", "governed"],
    })
}

fn card(
    name: &str,
    description: String,
    url: String,
    skills: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "protocolVersion": "0.3.0",
        "name": name,
        "description": description,
        "url": url,
        "preferredTransport": "JSONRPC",
        "version": env!("CARGO_PKG_VERSION"),
        "provider": {"organization": "Aura", "url": "https://example.invalid/aura"},
        "capabilities": {"streaming": true, "pushNotifications": false, "stateTransitionHistory": false},
        "defaultInputModes": ["application/json", "text/plain"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "security": [{"bearer": []}],
        "skills": skills,
    })
}

/// Aura's A2A agent card: one skill per registered agent.
#[utoipa::path(get, path = "/.well-known/agent-card.json", tag = "edge",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub(super) async fn well_known(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agents = state.tokens.agents().await?;
    let base = base_url(&headers, &state);
    Ok(Json(card(
        "aura",
        "Aura control plane: governed agents, each listed as a skill with its own card under /api/v1/a2a/agents/{name}/agent-card.json.".to_owned(),
        format!("{base}/a2a"),
        agents.iter().map(skill).collect(),
    )))
}

/// The A2A agent card of one registered agent.
#[utoipa::path(get, path = "/api/v1/a2a/agents/{name}/agent-card.json", tag = "edge",
    params(("name" = String, Path, description = "Agent name")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn agent_card(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agent = state.tokens.agent(&name).await?;
    let base = base_url(&headers, &state);
    Ok(Json(card(
        agent.name.as_str(),
        format!(
            "The governed agent `{}`, registered {}.",
            agent.name, agent.registered_at
        ),
        format!("{base}/a2a/agents/{}", agent.name),
        vec![skill(&agent)],
    )))
}
