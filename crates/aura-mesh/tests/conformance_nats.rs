//! The conformance suite on the real NATS JetStream server at 127.0.0.1:4222.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;
use std::time::Duration;

use aura_mesh::{Mesh, NatsConfig, NatsMesh};

async fn make() -> (Arc<dyn Mesh>, ()) {
    let mesh = NatsMesh::connect(&NatsConfig {
        url: std::env::var("AURA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        timeout: Duration::from_secs(5),
    })
    .await
    .expect("NATS with JetStream must run on 127.0.0.1:4222 (scripts/services.sh starts it)");
    (Arc::new(mesh), ())
}

conformance!(make());
