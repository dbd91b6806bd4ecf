//! Aura's state store: one [`Store`] trait with an embedded SQLite backend and a PostgreSQL backend.
//!
//! The store persists what it is given, as given: services assign ids and timestamps and call the store through an
//! `Arc<dyn Store>` obtained from [`open`]. Both backends run the same SQL (bind parameters are written `$1`, which
//! SQLite also understands) and pass the same conformance suite (`tests/conformance.rs`).
//!
//! Governance state (budget counters and holds, approvals, halts, the agent dependency graph) sits behind
//! [`GovernStore`], a supertrait of [`Store`]: `aura-govern` takes the same `Arc<dyn Store>` as an
//! `Arc<dyn GovernStore>`.
//!
//! # Backends
//!
//! - **SQLite** (the default for a single node): WAL journal, `synchronous=FULL` so a committed token survives a power
//!   cut, a 5 s busy timeout, foreign keys on. The file is created if missing; its directory must exist.
//! - **PostgreSQL**: optionally confined to one schema. The schema is created if missing and every pooled connection
//!   runs `SET search_path TO <schema>` when it connects, so all tables, including the migration ledger, live there.
//!
//! # Migrations
//!
//! Migrations are versioned SQL scripts compiled into the binary (`src/migrations/{sqlite,postgres}/NNNN_*.sql`,
//! listed in `src/migrations.rs`) and applied by [`open`] before it returns; sqlx records them in the
//! `_sqlx_migrations` table with a checksum. To add tables, **append** a new migration with the next version to both
//! backend lists; never edit an applied one (the checksum check makes `open` fail with [`StoreError::Migration`]).
//! A database migrated by a newer build (an unknown version in the ledger) is refused the same way.
//!
//! Concurrent [`open`] calls are safe: on PostgreSQL the migrator holds a database-wide advisory lock while it
//! creates the schema and applies migrations; on SQLite migrations run inside one `BEGIN IMMEDIATE` transaction, so
//! a second process waits for the first (SQLite migrations therefore must not contain statements that cannot run in a
//! transaction, such as `PRAGMA journal_mode` or `VACUUM`).

mod common;
mod error;
mod govern;
mod govern_sql;
mod migrations;
mod postgres;
mod sqlite;
mod usage;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aura_core::{AgentName, Role, Timestamp, TokenHash, TokenId};

pub use error::StoreError;
pub use govern::{
    AgentEdgeRecord, ApprovalDecideOutcome, ApprovalDecision, ApprovalRecord, ApprovalStatus,
    BudgetAmounts, BudgetCounterRecord, BudgetFinishOutcome, BudgetHoldLine, BudgetHoldOutcome,
    BudgetHoldRecord, BudgetHoldRequest, BudgetLimits, BudgetOverrideRecord, GovernStore,
    HaltCauseRecord, HaltRecord, HaltStateRecord,
};
pub use usage::{UsageRecord, UsageStore, UsageSummary};

/// Where the state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// An embedded SQLite database file, created if missing.
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// Connection URL, e.g. `postgres://aura:secret@db:5432/aura`. Its password is never shown.
        url: String,
        /// Schema to keep all tables in; created if missing. Must match `[a-z_][a-z0-9_]{0,62}` and not start
        /// with `pg_`. `None` uses the server's default `search_path`.
        schema: Option<String>,
    },
}

/// Shows the target with any password masked; safe to log.
impl fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreTarget::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            StoreTarget::Postgres { url, schema } => {
                f.write_str(&error::mask_url(url))?;
                match schema {
                    Some(schema) => write!(f, " (schema `{schema}`)"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Like `Display`: the password is masked.
impl fmt::Debug for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreTarget::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            StoreTarget::Postgres { url, schema } => f
                .debug_struct("Postgres")
                .field("url", &error::mask_url(url))
                .field("schema", schema)
                .finish(),
        }
    }
}

/// How to reach the store. There is no default: the caller chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Which database.
    pub target: StoreTarget,
    /// Upper bound of the connection pool; at least 1.
    pub max_connections: u32,
    /// How long to wait for a connection, when opening and for every operation, before giving up with
    /// [`StoreError::Unavailable`].
    pub connect_timeout: Duration,
}

/// Connects, creates the PostgreSQL schema if one is given, applies pending migrations and returns the store.
///
/// Fails with [`StoreError::InvalidOptions`] for a bad schema name or pool size, [`StoreError::Unavailable`] when
/// the database cannot be reached and [`StoreError::Migration`] when the schema cannot be brought up to date.
pub async fn open(options: &ConnectOptions) -> Result<Arc<dyn Store>, StoreError> {
    if options.max_connections == 0 {
        return Err(StoreError::InvalidOptions(
            "max_connections must be at least 1".to_owned(),
        ));
    }
    let store: Arc<dyn Store> = match &options.target {
        StoreTarget::Sqlite { path } => Arc::new(sqlite::SqliteStore::open(path, options).await?),
        StoreTarget::Postgres { url, schema } => {
            Arc::new(postgres::PgStore::open(url, schema.as_deref(), options).await?)
        }
    };
    let version = store.schema_version().await?;
    tracing::info!(
        backend = store.backend(),
        target = %options.target,
        schema_version = version,
        "state store opened"
    );
    Ok(store)
}

/// A stored API token. The secret itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public id; primary key.
    pub id: TokenId,
    /// Human-readable name, unique among active (non-revoked) tokens.
    pub name: String,
    /// The role the token carries.
    pub role: Role,
    /// The agent the token acts for, if any.
    pub agent: Option<AgentName>,
    /// SHA-256 of the secret.
    pub secret_hash: TokenHash,
    /// When the token was created.
    pub created_at: Timestamp,
    /// When the token was revoked; `None` while it is active.
    pub revoked_at: Option<Timestamp>,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's name; primary key.
    pub name: AgentName,
    /// When the first token naming this agent was stored.
    pub registered_at: Timestamp,
    /// How many non-revoked tokens act for this agent.
    pub active_tokens: u64,
}

/// What [`Store::revoke_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The token was active and is now revoked.
    Revoked,
    /// The token was already revoked; its `revoked_at` is unchanged.
    AlreadyRevoked,
    /// No token has this id.
    NotFound,
}

/// Aura's persistent state. Object-safe: hold it as `Arc<dyn Store>`.
///
/// Every method is one round trip or one transaction; none holds a lock across calls. The governance state
/// ([`GovernStore`]) is a supertrait: an `Arc<dyn Store>` coerces to `Arc<dyn GovernStore>`.
#[async_trait]
pub trait Store: GovernStore + UsageStore + Send + Sync + fmt::Debug {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// A cheap round trip (`SELECT 1`), for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The highest applied migration version.
    async fn schema_version(&self) -> Result<i64, StoreError>;

    /// Stores a token in one transaction. If it names an agent that is not registered yet, registers the agent with
    /// `registered_at = token.created_at` and returns it.
    ///
    /// Fails with [`StoreError::Conflict`] when the id exists or when the token is active and another active token
    /// has the same name; then nothing is stored and no agent is registered.
    async fn insert_token(&self, token: &TokenRecord) -> Result<Option<AgentRecord>, StoreError>;

    /// The token with this id.
    async fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError>;

    /// The active token with this name, else the most recently created revoked one.
    async fn token_by_name(&self, name: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// All tokens, revoked ones included, ordered by `created_at`, then id.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Marks the token revoked at `at`, unless it already is.
    async fn revoke_token(&self, id: &TokenId, at: Timestamp) -> Result<RevokeOutcome, StoreError>;

    /// How many non-revoked tokens carry `role`.
    async fn count_active_tokens(&self, role: Role) -> Result<u64, StoreError>;

    /// All registered agents, ordered by name (bytewise).
    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;

    /// One registered agent.
    async fn agent(&self, name: &AgentName) -> Result<Option<AgentRecord>, StoreError>;

    /// Flushes and closes the pool; later calls fail with [`StoreError::Unavailable`]. Idempotent.
    ///
    /// SQLite first folds the write-ahead log back into the database file (`PRAGMA wal_checkpoint(TRUNCATE)`).
    async fn close(&self);
}
