//! The mesh conformance suite: the same behaviour checked on every backend.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aura_core::Timestamp;
use aura_mesh::{Mesh, MeshError, Outgoing, StartAt, SubscribeOptions, Topic};

#[cfg(feature = "kafka")]
pub mod kafka;

/// A topic name no other test (or run) uses.
pub fn fresh_topic(prefix: &str) -> Topic {
    Topic::new(&format!("{prefix}-{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn opts(ack_wait_ms: u64) -> SubscribeOptions {
    SubscribeOptions {
        start: StartAt::Earliest,
        ack_wait: Duration::from_millis(ack_wait_ms),
    }
}

/// Fetches until `n` deliveries arrived (or the deadline passes), acking each when `ack`.
async fn collect(
    sub: &mut Box<dyn aura_mesh::Subscription>,
    n: usize,
    ack: bool,
) -> Vec<aura_mesh::Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut out = Vec::new();
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let batch = sub
            .fetch(n - out.len(), Duration::from_millis(500))
            .await
            .unwrap();
        for d in batch {
            if ack {
                d.ack().await.unwrap();
            }
            out.push(d);
        }
    }
    out
}

pub async fn publish_is_ordered_per_key(mesh: Arc<dyn Mesh>) {
    let topic = fresh_topic("order");
    let mut receipts = Vec::new();
    for i in 0..30 {
        let key = format!("k{}", i % 3);
        let r = mesh
            .publish(
                &topic,
                Outgoing::new(format!("{i}"))
                    .with_key(key)
                    .with_header("n", i.to_string()),
            )
            .await
            .unwrap();
        assert!(!r.spooled);
        receipts.push(r.offset);
    }
    assert!(
        receipts.windows(2).all(|w| w[0] < w[1]),
        "offsets grow: {receipts:?}"
    );
    let mut sub = mesh.subscribe(&topic, "g1", opts(30_000)).await.unwrap();
    let got = collect(&mut sub, 30, true).await;
    assert_eq!(got.len(), 30);
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for d in &got {
        let n: u32 = String::from_utf8(d.message.payload.clone())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(d.message.headers.get("n").unwrap(), &n.to_string());
        assert_eq!(d.attempt, 1);
        per_key
            .entry(d.message.key.clone().unwrap())
            .or_default()
            .push(n);
    }
    for (k, v) in per_key {
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "key {k} out of order: {v:?}"
        );
    }
    let offsets: Vec<u64> = got.iter().map(|d| d.message.offset).collect();
    assert_eq!(offsets, receipts);
    mesh.delete_topic(&topic).await.unwrap();
}

pub async fn unacked_is_redelivered_and_nack_retries(mesh: Arc<dyn Mesh>) {
    let topic = fresh_topic("redeliver");
    mesh.publish(&topic, Outgoing::new("a")).await.unwrap();
    mesh.publish(&topic, Outgoing::new("b")).await.unwrap();
    let mut sub = mesh.subscribe(&topic, "g", opts(1_000)).await.unwrap();
    let first = collect(&mut sub, 2, false).await;
    assert_eq!(first.len(), 2);
    // Ack "a", nack "b" right away: only "b" comes back, as attempt 2.
    first[0].ack().await.unwrap();
    first[1].nack(Duration::ZERO).await.unwrap();
    let again = collect(&mut sub, 1, false).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.payload, b"b");
    assert_eq!(again[0].attempt, 2);
    // Not acked at all: redelivered after ack_wait as attempt 3.
    let third = collect(&mut sub, 1, false).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].message.payload, b"b");
    assert_eq!(third[0].attempt, 3);
    third[0].ack().await.unwrap();
    let none = sub.fetch(10, Duration::from_millis(1_500)).await.unwrap();
    assert!(none.is_empty(), "acked messages came back: {none:?}");
    mesh.delete_topic(&topic).await.unwrap();
}

pub async fn groups_are_independent_and_members_share(mesh: Arc<dyn Mesh>) {
    let topic = fresh_topic("groups");
    let msgs: Vec<Outgoing> = (0..40).map(|i| Outgoing::new(format!("{i}"))).collect();
    let receipts = mesh.publish_batch(&topic, msgs).await.unwrap();
    assert_eq!(receipts.len(), 40);
    // Group A has two members that split the messages between them, no duplicates.
    let mut a1 = mesh.subscribe(&topic, "a", opts(30_000)).await.unwrap();
    let mut a2 = mesh.subscribe(&topic, "a", opts(30_000)).await.unwrap();
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < 40 && tokio::time::Instant::now() < deadline {
        for sub in [&mut a1, &mut a2] {
            for d in sub.fetch(7, Duration::from_millis(200)).await.unwrap() {
                assert!(
                    seen.insert(d.message.offset),
                    "duplicate {}",
                    d.message.offset
                );
                d.ack().await.unwrap();
            }
        }
    }
    assert_eq!(seen.len(), 40);
    // Group B still sees everything.
    let mut b = mesh.subscribe(&topic, "b", opts(30_000)).await.unwrap();
    assert_eq!(collect(&mut b, 40, true).await.len(), 40);
    let lag_a = mesh.lag(&topic, "a").await.unwrap();
    assert_eq!(lag_a, Some(0));
    mesh.delete_topic(&topic).await.unwrap();
}

pub async fn group_resumes_after_reconnect(mesh: Arc<dyn Mesh>) {
    let topic = fresh_topic("resume");
    for i in 0..10 {
        mesh.publish(&topic, Outgoing::new(format!("{i}")))
            .await
            .unwrap();
    }
    {
        let mut sub = mesh.subscribe(&topic, "worker", opts(1_000)).await.unwrap();
        let got = collect(&mut sub, 4, true).await;
        assert_eq!(got.len(), 4);
    }
    assert_eq!(mesh.lag(&topic, "worker").await.unwrap(), Some(6));
    let mut sub = mesh.subscribe(&topic, "worker", opts(1_000)).await.unwrap();
    let rest = collect(&mut sub, 6, true).await;
    let payloads: Vec<String> = rest
        .iter()
        .map(|d| String::from_utf8(d.message.payload.clone()).unwrap())
        .collect();
    // Anything fetched but not acked earlier may come back; acked ones must not.
    for p in &payloads {
        let n: u32 = p.parse().unwrap();
        assert!(n >= 4, "acked message {n} was redelivered");
    }
    assert_eq!(payloads.len(), 6);
    mesh.delete_topic(&topic).await.unwrap();
}

pub async fn replay_from_offset_and_time(mesh: Arc<dyn Mesh>) {
    let topic = fresh_topic("replay");
    let mut offsets = Vec::new();
    for i in 0..5 {
        offsets.push(
            mesh.publish(&topic, Outgoing::new(format!("early{i}")))
                .await
                .unwrap()
                .offset,
        );
    }
    // Wait until the wall clock moves past the early messages' millisecond.
    let before = Timestamp::from_millis(now_ms());
    while now_ms() <= before.as_millis() + 5 {
        tokio::task::yield_now().await;
    }
    let cut = Timestamp::from_millis(now_ms());
    for i in 0..5 {
        offsets.push(
            mesh.publish(&topic, Outgoing::new(format!("late{i}")))
                .await
                .unwrap()
                .offset,
        );
    }
    let all = mesh.read(&topic, StartAt::Earliest, 100).await.unwrap();
    assert_eq!(all.len(), 10);
    let from3 = mesh
        .read(&topic, StartAt::Offset(offsets[3]), 100)
        .await
        .unwrap();
    assert_eq!(from3.len(), 7);
    assert_eq!(from3[0].payload, b"early3");
    let two = mesh
        .read(&topic, StartAt::Offset(offsets[3]), 2)
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    let late = mesh.read(&topic, StartAt::Time(cut), 100).await.unwrap();
    assert_eq!(late.len(), 5, "{late:?}");
    assert_eq!(late[0].payload, b"late0");
    assert!(late[0].timestamp >= cut);
    // A new group can start at an offset too.
    let mut sub = mesh
        .subscribe(
            &topic,
            "from-offset",
            SubscribeOptions {
                start: StartAt::Offset(offsets[8]),
                ack_wait: Duration::from_secs(30),
            },
        )
        .await
        .unwrap();
    let got = collect(&mut sub, 2, true).await;
    assert_eq!(
        got.iter()
            .map(|d| d.message.payload.clone())
            .collect::<Vec<_>>(),
        vec![b"late3".to_vec(), b"late4".to_vec()]
    );
    // And at "latest": only what comes after.
    let mut latest = mesh
        .subscribe(
            &topic,
            "latest",
            SubscribeOptions {
                start: StartAt::Latest,
                ack_wait: Duration::from_secs(30),
            },
        )
        .await
        .unwrap();
    mesh.publish(&topic, Outgoing::new("newest")).await.unwrap();
    let got = collect(&mut latest, 1, true).await;
    assert_eq!(got[0].message.payload, b"newest");
    mesh.delete_topic(&topic).await.unwrap();
}

pub async fn topic_management(mesh: Arc<dyn Mesh>) {
    let topic = fresh_topic("admin");
    mesh.ensure_topic(&topic).await.unwrap();
    mesh.ensure_topic(&topic).await.unwrap();
    let listed = mesh.topics().await.unwrap();
    let info = listed
        .iter()
        .find(|t| t.topic == topic)
        .expect("topic listed");
    assert_eq!(info.messages, 0);
    mesh.publish(&topic, Outgoing::new("x")).await.unwrap();
    let _sub = mesh
        .subscribe(&topic, "watchers", opts(30_000))
        .await
        .unwrap();
    let info = mesh
        .topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.topic == topic)
        .unwrap();
    assert_eq!(info.messages, 1);
    assert!(
        info.groups.contains(&"watchers".to_owned()),
        "{:?}",
        info.groups
    );
    assert!(mesh.delete_topic(&topic).await.unwrap());
    assert!(
        !mesh
            .topics()
            .await
            .unwrap()
            .iter()
            .any(|t| t.topic == topic)
    );
    assert!(!mesh.delete_topic(&topic).await.unwrap());
    assert!(matches!(
        mesh.read(&topic, StartAt::Earliest, 1).await,
        Err(MeshError::NoTopic(_))
    ));
    assert!(matches!(
        mesh.subscribe(&topic, "bad group!", opts(1000)).await,
        Err(MeshError::Invalid(_))
    ));
}

pub async fn concurrent_publishers_lose_nothing(mesh: Arc<dyn Mesh>) {
    let topic = fresh_topic("concurrent");
    let mut set = tokio::task::JoinSet::new();
    for p in 0..8 {
        let mesh = mesh.clone();
        let topic = topic.clone();
        set.spawn(async move {
            for i in 0..50 {
                mesh.publish(
                    &topic,
                    Outgoing::new(format!("{p}-{i}")).with_key(format!("p{p}")),
                )
                .await
                .unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let all = mesh.read(&topic, StartAt::Earliest, 1000).await.unwrap();
    assert_eq!(all.len(), 400);
    // Per key (publisher), order is publish order.
    let mut last: BTreeMap<String, i32> = BTreeMap::new();
    for m in &all {
        let s = String::from_utf8(m.payload.clone()).unwrap();
        let (p, i) = s.split_once('-').unwrap();
        let i: i32 = i.parse().unwrap();
        let prev = last.insert(p.to_owned(), i).unwrap_or(-1);
        assert_eq!(i, prev + 1);
    }
    mesh.delete_topic(&topic).await.unwrap();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Generates one `#[tokio::test]` per conformance case for a backend built by `$make`.
#[macro_export]
macro_rules! conformance {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn publish_is_ordered_per_key() {
            let (mesh, _guard) = $make.await;
            common::publish_is_ordered_per_key(mesh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unacked_is_redelivered_and_nack_retries() {
            let (mesh, _guard) = $make.await;
            common::unacked_is_redelivered_and_nack_retries(mesh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn groups_are_independent_and_members_share() {
            let (mesh, _guard) = $make.await;
            common::groups_are_independent_and_members_share(mesh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn group_resumes_after_reconnect() {
            let (mesh, _guard) = $make.await;
            common::group_resumes_after_reconnect(mesh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn replay_from_offset_and_time() {
            let (mesh, _guard) = $make.await;
            common::replay_from_offset_and_time(mesh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn topic_management() {
            let (mesh, _guard) = $make.await;
            common::topic_management(mesh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_publishers_lose_nothing() {
            let (mesh, _guard) = $make.await;
            common::concurrent_publishers_lose_nothing(mesh).await;
        }
    };
}
