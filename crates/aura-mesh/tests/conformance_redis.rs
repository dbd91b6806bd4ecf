//! The conformance suite on the real Redis server at 127.0.0.1:6379.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;
use std::time::Duration;

use aura_mesh::{Mesh, RedisConfig, RedisMesh};

async fn make() -> (Arc<dyn Mesh>, ()) {
    let mesh = RedisMesh::connect(&RedisConfig {
        url: std::env::var("AURA_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        timeout: Duration::from_secs(5),
    })
    .await
    .expect("Redis must run on 127.0.0.1:6379 (scripts/services.sh starts it)");
    (Arc::new(mesh), ())
}

conformance!(make());
