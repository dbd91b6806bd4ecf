//! Test support shared by the ledger, approvals and halts tests: real stores on both backends — SQLite in a
//! temporary directory and the PostgreSQL server on this machine in a fresh schema per test, dropped afterwards.
//!
//! PostgreSQL is reached at `AURA_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`); if it is
//! not running the postgres tests fail and say so, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aura_store::{ConnectOptions, Store, StoreTarget};
use sqlx::{Connection, Executor};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";

/// A migrated store; a PostgreSQL schema is dropped when this is dropped (also when the test panics).
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub options: ConnectOptions,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestStore {
    /// Opens the same database again: an independent pool, as a second process would have.
    pub async fn open_again(&self) -> Arc<dyn Store> {
        aura_store::open(&self.options).await.unwrap()
    }

    /// The PostgreSQL schema, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let url = postgres_url();
        // Drop is synchronous and may run inside a runtime: use a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test schema: {dropped:?}");
        }
    }
}

/// A fresh SQLite store.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let options = ConnectOptions {
        target: StoreTarget::Sqlite {
            path: dir.path().join("aura.db"),
        },
        max_connections: 4,
        connect_timeout: Duration::from_secs(30),
    };
    let store = aura_store::open(&options).await.unwrap();
    TestStore {
        store,
        options,
        _dir: Some(dir),
        schema: None,
    }
}

/// A fresh PostgreSQL schema; panics with instructions if the server is down.
pub async fn postgres() -> TestStore {
    postgres_in(&format!("aura_test_{}", random_hex()), 8).await
}

/// A store on the PostgreSQL `schema` (created if missing) with a pool of `connections`. The schema is dropped
/// with the returned value.
pub async fn postgres_in(schema: &str, connections: u32) -> TestStore {
    let mut store = attach_postgres(schema, connections).await;
    store.schema = Some(schema.to_owned());
    store
}

/// Like [`postgres_in`], but leaves the schema in place when dropped (for a child process).
pub async fn attach_postgres(schema: &str, connections: u32) -> TestStore {
    let url = postgres_url();
    if let Err(err) = sqlx::PgConnection::connect(&url).await {
        panic!(
            "PostgreSQL is not reachable at AURA_TEST_POSTGRES_URL (default {DEFAULT_POSTGRES_URL}): {err}\n\
             Start PostgreSQL (e.g. `pg_ctlcluster 15 main start`, or `.ci/run`, which restarts it) and rerun."
        );
    }
    let options = ConnectOptions {
        target: StoreTarget::Postgres {
            url,
            schema: Some(schema.to_owned()),
        },
        max_connections: connections,
        connect_timeout: Duration::from_secs(30),
    };
    let store = aura_store::open(&options).await.unwrap();
    TestStore {
        store,
        options,
        _dir: None,
        schema: None,
    }
}

pub fn postgres_url() -> String {
    std::env::var("AURA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// 16 hex digits, different per call and per process.
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        RandomState::new().hash_one((std::process::id(), n))
    )
}
