//! The embedded SQLite backend: one database file in WAL mode, written durably.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::error::TargetLabel;
use crate::{ConnectOptions, StoreError, common, govern_sql, migrations};

/// How long a writer waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite-backed store.
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    target: TargetLabel,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and migrates it.
    pub(crate) async fn open(path: &Path, options: &ConnectOptions) -> Result<Self, StoreError> {
        let target = TargetLabel::sqlite(path);
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| target.cannot_connect(&e))?;
        let store = Self { pool, target };
        if let Err(err) = store.migrate().await {
            store.pool.close().await;
            return Err(err);
        }
        Ok(store)
    }

    /// Applies pending migrations inside one `BEGIN IMMEDIATE` transaction: SQLite's migrator takes no lock, so
    /// this is what keeps two processes opening the same fresh file from both applying migration 1.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // `run_direct` rather than `run`: `run`'s `Acquire<'a>` bound makes the `open` future fail the
        // higher-ranked `Send` check ("implementation of `Acquire` is not general enough"), so it could not be spawned.
        migrations::sqlite()
            .run_direct(None, &mut *tx, false)
            .await
            .map_err(|e| self.target.migration(e))?;
        tx.commit().await.map_err(|e| self.target.error(e))
    }

    /// A transaction that holds the write lock from its start, so it never fails mid-way on a lock upgrade.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.target.error(e))
    }

    async fn close_pool(&self) {
        if self.pool.is_closed() {
            return;
        }
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(target = %self.target, error = %err, "wal checkpoint before close failed");
        }
        self.pool.close().await;
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

common::impl_store!(SqliteStore, "sqlite");
govern_sql::impl_govern_store!(SqliteStore);
crate::usage::impl_usage_store!(SqliteStore);

impl govern_sql::Backend for SqliteStore {
    type Db = Sqlite;
}
