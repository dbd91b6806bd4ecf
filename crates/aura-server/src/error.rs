//! The one error type of the HTTP edge: a status, a stable machine-readable `code`, and a message safe to show.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::services::ServiceError;

/// An error answered to an HTTP client. 5xx details are logged, never sent.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// The machine-readable code and a human message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable identifier of the error kind, e.g. `unauthorized`, `forbidden`, `not_found`, `invalid_body`.
    code: &'static str,
    /// Human-readable explanation.
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A body the JSON extractor refused: 413 `too_large` past the body limit, else 400 `invalid_body`.
    pub(crate) fn from_json(rejection: axum::extract::rejection::JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body exceeds the size limit",
            )
        } else {
            Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                rejection.body_text(),
            )
        }
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// The machine-readable code (WebSocket error frames carry it).
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The message safe to show the client.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %error, "backend unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a backend is unavailable; retry later",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(msg) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg)
            }
            ServiceError::Conflict(msg) => Self::new(StatusCode::CONFLICT, "conflict", msg),
            ServiceError::NotFound(msg) => Self::not_found(msg),
            ServiceError::LastAdmin => Self::new(
                StatusCode::CONFLICT,
                "last_admin",
                "refusing to revoke the last active admin token; create another admin token first",
            ),
            ServiceError::Unavailable(msg) => Self::unavailable(msg),
            ServiceError::Internal(msg) => Self::internal(msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"aura\""),
            );
        }
        response
    }
}
