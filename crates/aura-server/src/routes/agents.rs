//! The agent registry: an agent is registered when its first token is created.

use axum::Json;
use axum::extract::{Path, State};

use super::wire::{AgentList, AgentView};
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};

/// Every registered agent, by name.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, body = AgentList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    let agents = state.tokens.agents().await?;
    let items: Vec<AgentView> = agents.iter().map(AgentView::from).collect();
    Ok(Json(AgentList {
        total: items.len(),
        items,
    }))
}

/// One registered agent.
#[utoipa::path(get, path = "/api/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "Agent name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let agent = state.tokens.agent(&name).await?;
    Ok(Json(AgentView::from(&agent)))
}
