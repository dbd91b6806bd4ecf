//! The conformance suite on a real Kafka-protocol broker: `tansu` (in memory), started on a free port by each test
//! and killed when it ends. `tansu` is installed with `cargo install --locked tansu --features dynostore`
//! (`scripts/services.sh` does it when missing); set `AURA_TEST_KAFKA_URL` to use a running broker instead.

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;

use aura_mesh::{KafkaConfig, KafkaMesh, Mesh};

use common::kafka::Tansu;

async fn make() -> (Arc<dyn Mesh>, Option<Tansu>) {
    let (url, broker) = match std::env::var("AURA_TEST_KAFKA_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let t = Tansu::start().await;
            (t.url(), Some(t))
        }
    };
    // tansu 0.6 (memory engine) loses records of multi-record produce batches: one record per batch here
    // (docs/mesh.md lists the broker's gaps). A real Kafka broker needs no such setting.
    let config = KafkaConfig {
        batch_records: if broker.is_some() { 1 } else { 0 },
        ..KafkaConfig::new(url)
    };
    let mesh = KafkaMesh::connect(&config)
        .await
        .expect("the Kafka broker answers");
    (Arc::new(mesh), broker)
}

conformance!(make());
