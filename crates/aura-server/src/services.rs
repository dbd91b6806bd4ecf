//! Services: the layer between edges (HTTP handlers, CLI commands) and the store. They validate input,
//! assign ids and timestamps, and enforce rules that hold whatever the edge (e.g. never revoke the last admin).

pub mod audit;
pub mod catalog;
pub mod context;
pub mod edge;
pub mod gateway;
pub mod govern;
pub mod mesh;

use std::sync::Arc;

use aura_audit::{Actor, RiskLevel};
use aura_core::{AgentName, Clock, IssuedToken, Principal, Role, Timestamp, TokenId};
use aura_store::{AgentRecord, RevokeOutcome, Store, StoreError, TokenRecord};

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// The request clashes with existing state.
    #[error("{0}")]
    Conflict(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Revoking this token would leave no active admin token.
    #[error("refusing to revoke the last active admin token")]
    LastAdmin,
    /// A backend cannot be reached.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else; details are for the log.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(msg) => ServiceError::Conflict(msg),
            StoreError::Unavailable(msg) => ServiceError::Unavailable(msg),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// What a caller asks for when creating a token.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Human-readable name, unique among active tokens.
    pub name: String,
    /// The role the token carries.
    pub role: Role,
    /// The agent the token acts for; registers the agent on its first token.
    pub agent: Option<String>,
}

/// A token just created: its record and the secret form, shown exactly once.
#[derive(Debug)]
pub struct CreatedToken {
    /// The stored record (hash only).
    pub record: TokenRecord,
    /// The printable token; hand it to the user once and forget it.
    pub token: IssuedToken,
    /// The agent registered by this creation, if it was the agent's first token.
    pub registered_agent: Option<AgentRecord>,
}

/// Token and agent-registry operations shared by the HTTP API and the CLI.
#[derive(Debug, Clone)]
pub struct Tokens {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: Option<audit::AuditTrail>,
    /// Token records recently read from the store, by token id. The secret is still checked against the
    /// stored hash on every request; the cache only saves the store round trip. Revocation through this
    /// service drops the entry at once; a revocation by another node sharing the store takes effect
    /// within [`TOKEN_CACHE_TTL`].
    cache: moka::sync::Cache<TokenId, Arc<TokenRecord>>,
}

/// How long a token record read from the store is trusted without reading it again.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl Tokens {
    /// A service over `store`, stamping times from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            audit: None,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TOKEN_CACHE_TTL)
                .build(),
        }
    }

    /// Records every token creation and revocation in `trail`.
    pub fn with_audit(mut self, trail: audit::AuditTrail) -> Self {
        self.audit = Some(trail);
        self
    }

    async fn audit(&self, actor: Actor, token: &TokenRecord, action: &str) {
        let Some(trail) = &self.audit else {
            return;
        };
        let risk = if token.role == Role::Admin {
            RiskLevel::High
        } else {
            RiskLevel::Medium
        };
        let details = serde_json::json!({
            "name": token.name,
            "role": token.role.as_str(),
            "agent": token.agent.as_ref().map(AgentName::as_str),
        });
        let entry = audit::event(
            self.clock.now(),
            actor,
            ("token", token.id.as_str()),
            action,
            risk,
            details,
        );
        if let Err(e) = trail.record(entry).await {
            tracing::error!(error = %e, token_id = %token.id, action, "could not audit a token change");
        }
    }

    /// Creates a token. Agent tokens must name an agent; other roles may name one.
    pub async fn create(
        &self,
        request: NewToken,
        actor: Actor,
    ) -> Result<CreatedToken, ServiceError> {
        validate_token_name(&request.name)?;
        let agent = request
            .agent
            .map(AgentName::new)
            .transpose()
            .map_err(|e| ServiceError::Invalid(format!("agent: {e}")))?;
        if request.role == Role::Agent && agent.is_none() {
            return Err(ServiceError::Invalid(
                "a token with role `agent` must name its agent".into(),
            ));
        }
        let token = IssuedToken::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let record = TokenRecord {
            id: token.id().clone(),
            name: request.name,
            role: request.role,
            agent,
            secret_hash: token.hash(),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        let registered_agent = self.store.insert_token(&record).await?;
        tracing::info!(token_id = %record.id, name = %record.name, role = %record.role, "token created");
        self.audit(actor, &record, "token.create").await;
        Ok(CreatedToken {
            record,
            token,
            registered_agent,
        })
    }

    /// Every token, active and revoked, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenRecord>, ServiceError> {
        Ok(self.store.tokens().await?)
    }

    /// Revokes a token named by id or by name. Refuses to revoke the last active admin token.
    pub async fn revoke(
        &self,
        id_or_name: &str,
        actor: Actor,
    ) -> Result<(TokenRecord, RevokeOutcome), ServiceError> {
        let record = match TokenId::parse(id_or_name) {
            Ok(id) => self.store.token(&id).await?,
            Err(_) => None,
        };
        let record = match record {
            Some(r) => r,
            None => self.store.token_by_name(id_or_name).await?.ok_or_else(|| {
                ServiceError::NotFound(format!("no token with id or name `{id_or_name}`"))
            })?,
        };
        if record.role == Role::Admin
            && record.revoked_at.is_none()
            && self.store.count_active_tokens(Role::Admin).await? <= 1
        {
            return Err(ServiceError::LastAdmin);
        }
        let now = self.clock.now();
        let outcome = self.store.revoke_token(&record.id, now).await?;
        self.cache.invalidate(&record.id);
        let record = self.store.token(&record.id).await?.unwrap_or(record);
        if outcome == RevokeOutcome::Revoked {
            tracing::info!(token_id = %record.id, name = %record.name, "token revoked");
            self.audit(actor, &record, "token.revoke").await;
        }
        Ok((record, outcome))
    }

    /// Resolves a presented bearer string to its principal; `None` for unknown, malformed or revoked tokens.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, ServiceError> {
        let Ok(token) = IssuedToken::parse(presented) else {
            return Ok(None);
        };
        let record = match self.cache.get(token.id()) {
            Some(record) => record,
            None => {
                let Some(record) = self.store.token(token.id()).await? else {
                    return Ok(None);
                };
                let record = Arc::new(record);
                self.cache.insert(record.id.clone(), record.clone());
                record
            }
        };
        if record.revoked_at.is_some() || !token.matches(&record.secret_hash) {
            return Ok(None);
        }
        Ok(Some(Principal {
            token_id: record.id.clone(),
            token_name: record.name.clone(),
            role: record.role,
            agent: record.agent.clone(),
        }))
    }

    /// Creates the first admin token when no active admin token exists. Returns it so the caller can write it
    /// to the admin token file; `None` when an admin already exists.
    pub async fn bootstrap_admin(&self) -> Result<Option<CreatedToken>, ServiceError> {
        if self.store.count_active_tokens(Role::Admin).await? > 0 {
            return Ok(None);
        }
        let name = format!("admin-{}", self.clock.now().as_millis());
        self.create(
            NewToken {
                name,
                role: Role::Admin,
                agent: None,
            },
            audit::system_actor(),
        )
        .await
        .map(Some)
    }

    /// Every registered agent, by name.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, ServiceError> {
        Ok(self.store.agents().await?)
    }

    /// One registered agent.
    pub async fn agent(&self, name: &str) -> Result<AgentRecord, ServiceError> {
        let name = AgentName::new(name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        self.store
            .agent(&name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no agent named `{name}`")))
    }

    /// The current time on this service's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

fn validate_token_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "invalid token name `{name}`: use 1-64 characters of letters, digits, `.`, `_` and `-`"
        )))
    }
}
