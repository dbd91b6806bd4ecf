//! API token management (admin only). The secret of a new token is returned once, in the creation response.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use aura_core::Role;
use aura_store::RevokeOutcome;

use super::wire::{CreateTokenRequest, CreatedTokenView, RevokedView, TokenList, TokenView};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::services::{NewToken, audit};

/// Every token, active and revoked, oldest first. Secrets are never listed.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.tokens.list().await?;
    let items: Vec<TokenView> = tokens.iter().map(TokenView::from).collect();
    Ok(Json(TokenList {
        total: items.len(),
        items,
    }))
}

/// Creates a token and returns its secret once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedTokenView), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Json<CreateTokenRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedTokenView>), ApiError> {
    let Json(body) = body.map_err(ApiError::from_json)?;
    let role: Role = body.role.parse().map_err(|e: aura_core::RoleParseError| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
    })?;
    let created = state
        .tokens
        .create(
            NewToken {
                name: body.name,
                role,
                agent: body.agent,
            },
            audit::actor_of(&caller),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTokenView {
            token: created.token.reveal(),
            info: TokenView::from(&created.record),
        }),
    ))
}

/// Revokes a token by id or name. Refuses to revoke the last active admin token (409 `last_admin`).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id or name")),
    responses((status = 200, body = RevokedView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<RevokedView>, ApiError> {
    let (record, outcome) = state.tokens.revoke(&id, audit::actor_of(&caller)).await?;
    let outcome = match outcome {
        RevokeOutcome::Revoked => "revoked",
        RevokeOutcome::AlreadyRevoked => "already_revoked",
        RevokeOutcome::NotFound => return Err(ApiError::not_found(format!("no token `{id}`"))),
    };
    Ok(Json(RevokedView {
        outcome: outcome.into(),
        token: TokenView::from(&record),
    }))
}
