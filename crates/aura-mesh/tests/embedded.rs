//! Embedded log specifics: durability across reopen, torn-tail recovery, retention, the data-dir lock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aura_core::SystemClock;
use aura_mesh::{
    EmbeddedConfig, EmbeddedMesh, Mesh, MeshError, Outgoing, StartAt, SubscribeOptions, Topic,
};

fn open(dir: &std::path::Path) -> EmbeddedMesh {
    EmbeddedMesh::open(EmbeddedConfig::new(dir), Arc::new(SystemClock)).unwrap()
}

#[tokio::test]
async fn messages_and_group_progress_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::new("jobs").unwrap();
    {
        let mesh = open(dir.path());
        for i in 0..10 {
            mesh.publish(&topic, Outgoing::new(format!("{i}")).with_key("k"))
                .await
                .unwrap();
        }
        let mut sub = mesh
            .subscribe(&topic, "w", SubscribeOptions::default())
            .await
            .unwrap();
        let got = sub.fetch(3, Duration::from_secs(1)).await.unwrap();
        for d in &got {
            d.ack().await.unwrap();
        }
        mesh.close().await;
    }
    let mesh = open(dir.path());
    let r = mesh.publish(&topic, Outgoing::new("10")).await.unwrap();
    assert_eq!(r.offset, 11, "offsets continue after reopen");
    let mut sub = mesh
        .subscribe(&topic, "w", SubscribeOptions::default())
        .await
        .unwrap();
    let got = sub.fetch(100, Duration::from_secs(1)).await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|d| d.message.offset).collect();
    assert_eq!(offsets, (4..=11).collect::<Vec<_>>());
    assert_eq!(got[0].message.key.as_deref(), Some("k"));
    mesh.close().await;
}

#[tokio::test]
async fn torn_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::new("t").unwrap();
    {
        let mesh = open(dir.path());
        for i in 0..5 {
            mesh.publish(&topic, Outgoing::new(format!("{i}")))
                .await
                .unwrap();
        }
        mesh.close().await;
    }
    // A crash mid-write leaves half a record at the end of the newest segment.
    let seg = dir.path().join("topics/t/00000000000000000001.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[42, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let mesh = open(dir.path());
    let all = mesh.read(&topic, StartAt::Earliest, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    let r = mesh.publish(&topic, Outgoing::new("5")).await.unwrap();
    assert_eq!(r.offset, 6);
    assert_eq!(
        mesh.read(&topic, StartAt::Offset(6), 10).await.unwrap()[0].payload,
        b"5"
    );
    mesh.close().await;
}

#[tokio::test]
async fn retention_drops_old_segments_and_groups_skip_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path());
    config.segment_bytes = 4096;
    config.retention_bytes = Some(16 << 10);
    let mesh = EmbeddedMesh::open(config, Arc::new(SystemClock)).unwrap();
    let topic = Topic::new("metrics").unwrap();
    let mut sub = mesh
        .subscribe(&topic, "slow", SubscribeOptions::default())
        .await
        .unwrap();
    for chunk in 0..20 {
        let batch = (0..100)
            .map(|i| Outgoing::new(format!("{:0>64}", chunk * 100 + i)))
            .collect();
        mesh.publish_batch(&topic, batch).await.unwrap();
    }
    let info = mesh.topics().await.unwrap().remove(0);
    assert!(info.first_offset > 1, "old segments deleted: {info:?}");
    assert_eq!(info.last_offset, 2000);
    let got = sub.fetch(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got[0].message.offset, info.first_offset);
    mesh.close().await;
}

#[tokio::test]
async fn a_second_open_of_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = open(dir.path());
    let second = EmbeddedMesh::open(EmbeddedConfig::new(dir.path()), Arc::new(SystemClock));
    assert!(matches!(second, Err(MeshError::Unavailable(_))));
    mesh.close().await;
    let topic = Topic::new("x").unwrap();
    assert!(matches!(
        mesh.publish(&topic, Outgoing::new("x")).await,
        Err(MeshError::Closed)
    ));
}
