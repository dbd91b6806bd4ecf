//! The conformance suite on the embedded segment log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;

use aura_core::SystemClock;
use aura_mesh::{EmbeddedConfig, EmbeddedMesh, Mesh};

async fn make() -> (Arc<dyn Mesh>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path().join("mesh"));
    config.segment_bytes = 4096; // many segments, so segment boundaries are exercised
    let mesh = EmbeddedMesh::open(config, Arc::new(SystemClock)).unwrap();
    (Arc::new(mesh), dir)
}

conformance!(make());
