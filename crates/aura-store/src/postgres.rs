//! The PostgreSQL backend, optionally confined to one schema through `search_path`.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use crate::error::TargetLabel;
use crate::{ConnectOptions, StoreError, common, govern_sql, migrations};

/// A PostgreSQL-backed store.
pub(crate) struct PgStore {
    pool: PgPool,
    target: TargetLabel,
}

impl PgStore {
    /// Connects, creates `schema` if given, and migrates.
    pub(crate) async fn open(
        url: &str,
        schema: Option<&str>,
        options: &ConnectOptions,
    ) -> Result<Self, StoreError> {
        if let Some(schema) = schema {
            validate_schema(schema)?;
        }
        let target = TargetLabel::postgres(url, schema);
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| {
                StoreError::InvalidOptions(target.scrub(format!("bad postgres url {target}: {e}")))
            })?
            .application_name("aura");
        let mut pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout);
        if let Some(schema) = schema {
            // The schema is validated, so quoting it is enough; it may not exist yet, which `SET` allows.
            let set_path: Arc<str> = format!("SET search_path TO \"{schema}\"").into();
            pool = pool.after_connect(move |conn, _meta| {
                let set_path = Arc::clone(&set_path);
                Box::pin(async move {
                    sqlx::raw_sql(AssertSqlSafe(set_path)).execute(conn).await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(connect)
            .await
            .map_err(|e| target.cannot_connect(&e))?;
        let store = Self { pool, target };
        if let Err(err) = store.migrate(schema).await {
            // Closing also ends the session holding the migrator's advisory lock, should it have failed mid-way.
            store.pool.close().await;
            return Err(err);
        }
        Ok(store)
    }

    /// Creates the schema and applies pending migrations under sqlx's advisory lock.
    async fn migrate(&self, schema: Option<&str>) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.target.error(e))?;
        // `run_direct` rather than `run`: see `SqliteStore::migrate`.
        migrations::postgres(schema)
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|e| self.target.migration(e))
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(|e| self.target.error(e))
    }

    async fn close_pool(&self) {
        self.pool.close().await;
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

common::impl_store!(PgStore, "postgres");
govern_sql::impl_govern_store!(PgStore);
crate::usage::impl_usage_store!(PgStore);

impl govern_sql::Backend for PgStore {
    type Db = Postgres;
}

/// Accepts `[a-z_][a-z0-9_]{0,62}` that does not start with `pg_` (reserved by PostgreSQL).
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let well_formed = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Err(StoreError::InvalidOptions(format!(
            "schema name `{schema}` must be 1-63 characters of a-z, 0-9 and `_`, not starting with a digit"
        )));
    }
    if schema.starts_with("pg_") {
        return Err(StoreError::InvalidOptions(format!(
            "schema name `{schema}` is reserved: names starting with `pg_` belong to PostgreSQL"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_follow_the_identifier_rule() {
        let longest = "a".repeat(63);
        for ok in ["aura", "_x", "tenant_01", "a", longest.as_str()] {
            assert_eq!(validate_schema(ok), Ok(()), "{ok}");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "",
            "1abc",
            "Aura",
            "a-b",
            "a b",
            "a;drop",
            "x\"y",
            "é",
            "pg_catalog",
            too_long.as_str(),
        ] {
            let err = validate_schema(bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidOptions(_)), "{bad}");
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }
}
