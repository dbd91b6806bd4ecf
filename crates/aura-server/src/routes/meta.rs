//! Who am I, server status, the effective configuration and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::wire::{StatusView, WhoAmI};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// The caller's token, role and agent.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "meta",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub(super) async fn whoami(Caller(principal): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        token_id: principal.token_id.to_string(),
        token_name: principal.token_name,
        role: principal.role.to_string(),
        agent: principal.agent.map(|a| a.to_string()),
    })
}

/// Version, uptime and store backend.
#[utoipa::path(get, path = "/api/v1/status", tag = "meta",
    responses((status = 200, body = StatusView), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn status(State(state): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    let schema = state
        .store
        .schema_version()
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(StatusView {
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: state.started_at.to_rfc3339(),
        uptime_seconds: state.started.elapsed().as_secs(),
        store_backend: state.store.backend().into(),
        store_schema_version: schema,
    }))
}

/// The effective configuration, secrets redacted.
#[utoipa::path(get, path = "/api/v1/config", tag = "meta",
    responses((status = 200, description = "Effective configuration", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn config(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    serde_json::to_value(state.config.redacted())
        .map(Json)
        .map_err(ApiError::internal)
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"),
        (status = 401, body = ErrorBody)))]
pub(super) async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json.to_string(),
    )
}
