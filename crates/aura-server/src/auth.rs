//! Authentication and role-based access: bearer tokens resolve to a [`Principal`]; each route group requires
//! one [`Permission`]. 401 for a missing, malformed, unknown or revoked token; 403 for the wrong role.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use aura_core::{Permission, Principal};

use crate::app::AppState;
use crate::error::ApiError;
use crate::services::ServiceError;

/// Resolves the bearer token of every request to protected routes and records the caller.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = bearer(&request)?;
    let principal = match state.tokens.authenticate(presented).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return Err(ApiError::unauthorized("invalid or revoked token")),
        Err(ServiceError::Unavailable(msg)) => return Err(ApiError::unavailable(msg)),
        Err(other) => return Err(ApiError::internal(other)),
    };
    tracing::Span::current().record("principal", principal.token_id.as_str());
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// Rejects callers whose role does not grant `permission`. Runs after [`authenticate`].
pub(crate) async fn require(
    permission: Permission,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(principal) = request.extensions().get::<Principal>() else {
        return Err(ApiError::unauthorized("missing bearer token"));
    };
    if !principal.may(permission) {
        return Err(ApiError::forbidden(format!(
            "role `{}` may not do this (requires {})",
            principal.role,
            describe(permission)
        )));
    }
    Ok(next.run(request).await)
}

fn describe(permission: Permission) -> &'static str {
    match permission {
        Permission::Authenticated => "any valid token",
        Permission::ReadInventory => "role admin, operator or viewer",
        Permission::ReadConfig => "role admin or operator",
        Permission::ManageTokens => "role admin",
        Permission::ReadAudit => "role admin, operator or viewer",
        Permission::Act => "role agent or admin",
        Permission::Govern => "role admin or operator",
    }
}

fn bearer(request: &Request) -> Result<&str, ApiError> {
    // LLM SDKs send their API key as `x-api-key` (Anthropic) or `x-goog-api-key` (Gemini): accept the Aura
    // token there too when no Authorization header is present.
    if request.headers().get(AUTHORIZATION).is_none() {
        for name in ["x-api-key", "x-goog-api-key"] {
            if let Some(v) = request.headers().get(name) {
                return v
                    .to_str()
                    .map(str::trim)
                    .map_err(|_| ApiError::unauthorized("malformed api key header"));
            }
        }
    }
    let value = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("malformed authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "authorization scheme must be Bearer",
        ));
    }
    Ok(token.trim())
}

/// The authenticated caller, for handlers behind [`authenticate`].
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))
    }
}
