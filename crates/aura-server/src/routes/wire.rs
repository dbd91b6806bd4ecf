//! Request and response bodies of the HTTP API. Domain types never cross the wire directly.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use aura_store::{AgentRecord, TokenRecord};

/// A token as listed (never its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenView {
    /// Public token id (12 hex digits).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// `admin`, `operator`, `agent` or `viewer`.
    pub role: String,
    /// The agent the token acts for.
    pub agent: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 revocation time, when revoked.
    pub revoked_at: Option<String>,
}

impl From<&TokenRecord> for TokenView {
    fn from(r: &TokenRecord) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name.clone(),
            role: r.role.to_string(),
            agent: r.agent.as_ref().map(ToString::to_string),
            created_at: r.created_at.to_rfc3339(),
            revoked_at: r.revoked_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenRequest {
    /// Name, unique among active tokens: 1–64 of letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `admin`, `operator`, `agent` or `viewer`.
    pub role: String,
    /// The agent the token acts for; required for role `agent`. Registers the agent on first use.
    #[serde(default)]
    pub agent: Option<String>,
}

/// A newly created token. `token` is shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedTokenView {
    /// The bearer token to give to the client.
    pub token: String,
    /// The stored token.
    #[serde(flatten)]
    pub info: TokenView,
}

/// Result of a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevokedView {
    /// `revoked`, or `already_revoked` when it was revoked before.
    pub outcome: String,
    /// The token after revocation.
    pub token: TokenView,
}

/// A registered agent.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentView {
    /// Agent name.
    pub name: String,
    /// RFC 3339 time of its first token.
    pub registered_at: String,
    /// Number of its tokens that are not revoked.
    pub active_tokens: u64,
}

impl From<&AgentRecord> for AgentView {
    fn from(r: &AgentRecord) -> Self {
        Self {
            name: r.name.to_string(),
            registered_at: r.registered_at.to_rfc3339(),
            active_tokens: r.active_tokens,
        }
    }
}

/// A list with its total.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentList {
    /// Number of items.
    pub total: usize,
    /// The agents, by name.
    pub items: Vec<AgentView>,
}

/// A list with its total.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenList {
    /// Number of items.
    pub total: usize,
    /// The tokens, oldest first.
    pub items: Vec<TokenView>,
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WhoAmI {
    /// Id of the token used.
    pub token_id: String,
    /// Name of the token used.
    pub token_name: String,
    /// Its role.
    pub role: String,
    /// The agent it acts for.
    pub agent: Option<String>,
}

/// Server status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusView {
    /// Aura version.
    pub version: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// State store backend: `sqlite` or `postgres`.
    pub store_backend: String,
    /// Highest applied store migration.
    pub store_schema_version: i64,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LiveView {
    /// Always `ok` when the process answers.
    pub status: String,
}

/// Readiness with one check per configured backend.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyView {
    /// `ready`, or `not_ready` (answered with 503).
    pub status: String,
    /// One entry per backend.
    pub checks: Vec<CheckView>,
}

/// One backend check.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckView {
    /// What was checked, e.g. `store`.
    pub name: String,
    /// Which implementation, e.g. `sqlite`.
    pub backend: String,
    /// `ok`, `degraded` (answering slowly), or `down`.
    pub status: String,
    /// Round-trip time of the check in milliseconds.
    pub latency_ms: f64,
    /// Why the check failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
