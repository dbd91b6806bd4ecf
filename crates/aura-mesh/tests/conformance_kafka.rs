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
    let mesh = KafkaMesh::connect(&KafkaConfig::new(url))
        .await
        .expect("the Kafka broker answers");
    (Arc::new(mesh), broker)
}

conformance!(make());
