//! What both backends share: the SQL (portable: `$n` parameters work in SQLite too), row decoding, and the
//! `impl_store!` macro that writes the one `Store` implementation for each backend's concrete pool type.

use aura_core::{AgentName, Role, Timestamp, TokenHash, TokenId};

use crate::{AgentRecord, StoreError, TokenRecord};

pub(crate) const SELECT_ONE: &str = "SELECT 1";

pub(crate) const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";

pub(crate) const INSERT_AGENT: &str =
    "INSERT INTO agents (name, registered_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

pub(crate) const INSERT_TOKEN: &str = "INSERT INTO tokens \
     (id, name, role, agent, secret_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const TOKEN_BY_ID: &str = "SELECT id, name, role, agent, secret_hash, created_at, revoked_at \
     FROM tokens WHERE id = $1";

pub(crate) const TOKEN_BY_NAME: &str = "SELECT id, name, role, agent, secret_hash, created_at, revoked_at \
     FROM tokens WHERE name = $1 \
     ORDER BY CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, created_at DESC, id DESC LIMIT 1";

pub(crate) const ALL_TOKENS: &str = "SELECT id, name, role, agent, secret_hash, created_at, revoked_at \
     FROM tokens ORDER BY created_at, id";

pub(crate) const REVOKE_TOKEN: &str =
    "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";

pub(crate) const TOKEN_REVOKED_AT: &str = "SELECT revoked_at FROM tokens WHERE id = $1";

pub(crate) const COUNT_ACTIVE_BY_ROLE: &str =
    "SELECT COUNT(*) FROM tokens WHERE role = $1 AND revoked_at IS NULL";

pub(crate) const ALL_AGENTS: &str = "SELECT a.name, a.registered_at, COUNT(t.id) FROM agents a \
     LEFT JOIN tokens t ON t.agent = a.name AND t.revoked_at IS NULL \
     GROUP BY a.name, a.registered_at ORDER BY a.name";

pub(crate) const AGENT_BY_NAME: &str = "SELECT a.name, a.registered_at, COUNT(t.id) FROM agents a \
     LEFT JOIN tokens t ON t.agent = a.name AND t.revoked_at IS NULL \
     WHERE a.name = $1 GROUP BY a.name, a.registered_at";

/// A `tokens` row as the driver returns it, in the column order of the `SELECT`s above.
pub(crate) type TokenRow = (
    String,
    String,
    String,
    Option<String>,
    Vec<u8>,
    i64,
    Option<i64>,
);

/// An agent row with its active token count.
pub(crate) type AgentRow = (String, i64, i64);

/// Decodes a token row; a value that breaks a domain rule is [`StoreError::Corrupt`].
pub(crate) fn token_from_row(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (id, name, role, agent, secret_hash, created_at, revoked_at) = row;
    let corrupt = |what: String| StoreError::Corrupt(format!("token `{id}`: {what}"));
    let parsed_id =
        TokenId::parse(&id).map_err(|_| corrupt("id is not 12 lowercase hex digits".to_owned()))?;
    let role = role
        .parse::<Role>()
        .map_err(|_| corrupt(format!("unknown role `{role}`")))?;
    let agent = agent
        .map(AgentName::new)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let secret_hash = TokenHash::from_slice(&secret_hash).ok_or_else(|| {
        corrupt(format!(
            "secret hash is {} bytes, expected 32",
            secret_hash.len()
        ))
    })?;
    Ok(TokenRecord {
        id: parsed_id,
        name,
        role,
        agent,
        secret_hash,
        created_at: Timestamp::from_millis(created_at),
        revoked_at: revoked_at.map(Timestamp::from_millis),
    })
}

/// Decodes an agent row.
pub(crate) fn agent_from_row(row: AgentRow) -> Result<AgentRecord, StoreError> {
    let (name, registered_at, active_tokens) = row;
    let name = AgentName::new(name).map_err(|e| StoreError::Corrupt(format!("agent: {e}")))?;
    let active_tokens = u64::try_from(active_tokens).map_err(|_| {
        StoreError::Corrupt(format!(
            "agent `{name}`: negative token count {active_tokens}"
        ))
    })?;
    Ok(AgentRecord {
        name,
        registered_at: Timestamp::from_millis(registered_at),
        active_tokens,
    })
}

/// Converts a count from the database.
pub(crate) fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

/// Which uniqueness rule a failed token insert broke.
pub(crate) fn insert_conflict(err: &sqlx::Error, token: &TokenRecord) -> Option<StoreError> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    if !db.is_unique_violation() {
        return None;
    }
    // PostgreSQL names the constraint; SQLite says "UNIQUE constraint failed: tokens.id".
    let id_clash = db.constraint() == Some("tokens_pkey") || db.message().contains("tokens.id");
    Some(StoreError::Conflict(if id_clash {
        format!("a token with id `{}` already exists", token.id)
    } else {
        format!("an active token named `{}` already exists", token.name)
    }))
}

/// Writes `impl Store for $store`. The type must have fields `pool: sqlx::Pool<_>` and `target: TargetLabel`, and
/// inherent methods `begin_write(&self)` (a write transaction) and `close_pool(&self)`.
macro_rules! impl_store {
    ($store:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::common::SELECT_ONE)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?;
                Ok(())
            }

            async fn schema_version(&self) -> Result<i64, $crate::StoreError> {
                let version: Option<i64> = sqlx::query_scalar($crate::common::SCHEMA_VERSION)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?;
                Ok(version.unwrap_or(0))
            }

            async fn insert_token(
                &self,
                token: &$crate::TokenRecord,
            ) -> Result<Option<$crate::AgentRecord>, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let mut registered = None;
                if let Some(agent) = &token.agent {
                    let done = sqlx::query($crate::common::INSERT_AGENT)
                        .bind(agent.as_str())
                        .bind(token.created_at.as_millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.target.error(e))?;
                    if done.rows_affected() == 1 {
                        registered = Some($crate::AgentRecord {
                            name: agent.clone(),
                            registered_at: token.created_at,
                            active_tokens: u64::from(token.revoked_at.is_none()),
                        });
                    }
                }
                sqlx::query($crate::common::INSERT_TOKEN)
                    .bind(token.id.as_str())
                    .bind(token.name.as_str())
                    .bind(token.role.as_str())
                    .bind(token.agent.as_ref().map(|a| a.as_str()))
                    .bind(token.secret_hash.as_bytes().as_slice())
                    .bind(token.created_at.as_millis())
                    .bind(token.revoked_at.map(|t| t.as_millis()))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        $crate::common::insert_conflict(&e, token)
                            .unwrap_or_else(|| self.target.error(e))
                    })?;
                tx.commit().await.map_err(|e| self.target.error(e))?;
                Ok(registered)
            }

            async fn token(
                &self,
                id: &aura_core::TokenId,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::common::TokenRow>($crate::common::TOKEN_BY_ID)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?
                    .map($crate::common::token_from_row)
                    .transpose()
            }

            async fn token_by_name(
                &self,
                name: &str,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::common::TokenRow>($crate::common::TOKEN_BY_NAME)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?
                    .map($crate::common::token_from_row)
                    .transpose()
            }

            async fn tokens(&self) -> Result<Vec<$crate::TokenRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::common::TokenRow>($crate::common::ALL_TOKENS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?
                    .into_iter()
                    .map($crate::common::token_from_row)
                    .collect()
            }

            async fn revoke_token(
                &self,
                id: &aura_core::TokenId,
                at: aura_core::Timestamp,
            ) -> Result<$crate::RevokeOutcome, $crate::StoreError> {
                let done = sqlx::query($crate::common::REVOKE_TOKEN)
                    .bind(at.as_millis())
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?;
                if done.rows_affected() > 0 {
                    return Ok($crate::RevokeOutcome::Revoked);
                }
                // Tokens are never deleted, so a token that exists now existed at the update.
                let found: Option<Option<i64>> =
                    sqlx::query_scalar($crate::common::TOKEN_REVOKED_AT)
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.target.error(e))?;
                Ok(match found {
                    Some(_) => $crate::RevokeOutcome::AlreadyRevoked,
                    None => $crate::RevokeOutcome::NotFound,
                })
            }

            async fn count_active_tokens(
                &self,
                role: aura_core::Role,
            ) -> Result<u64, $crate::StoreError> {
                let n: i64 = sqlx::query_scalar($crate::common::COUNT_ACTIVE_BY_ROLE)
                    .bind(role.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?;
                $crate::common::count(n)
            }

            async fn agents(&self) -> Result<Vec<$crate::AgentRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::common::AgentRow>($crate::common::ALL_AGENTS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?
                    .into_iter()
                    .map($crate::common::agent_from_row)
                    .collect()
            }

            async fn agent(
                &self,
                name: &aura_core::AgentName,
            ) -> Result<Option<$crate::AgentRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::common::AgentRow>($crate::common::AGENT_BY_NAME)
                    .bind(name.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.target.error(e))?
                    .map($crate::common::agent_from_row)
                    .transpose()
            }

            async fn close(&self) {
                self.close_pool().await;
            }
        }
    };
}

pub(crate) use impl_store;
