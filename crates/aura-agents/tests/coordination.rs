//! Tasks, retries, the dead-letter queue, routing and the request/reply patterns, on the embedded mesh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aura_agents::AgentsError;
use aura_agents::dlq::DeadLetters;
use aura_agents::envelope::{Envelope, MessageType, inbox};
use aura_agents::patterns::{self, MeshOutbox, Outbox, Replies};
use aura_agents::retry::{RetryPolicy, parse_retry_after, parse_retry_after_at};
use aura_agents::routing::{Candidate, route};
use aura_agents::tasks::{NewTask, Phase, Retention, TaskFilter, TaskState, TaskStore, Transition};
use aura_agents::worker::{self, Handler, Heartbeat, Outcome, WorkerConfig};
use aura_core::{AgentName, Clock, SystemClock};
use aura_mesh::{
    EmbeddedConfig, EmbeddedMesh, Mesh, Message, Outgoing, StartAt, SubscribeOptions, Topic,
};
use tokio_util::sync::CancellationToken;

fn mesh(dir: &std::path::Path) -> Arc<dyn Mesh> {
    Arc::new(
        EmbeddedMesh::open(EmbeddedConfig::new(dir.join("mesh")), Arc::new(SystemClock)).unwrap(),
    )
}

#[tokio::test]
async fn task_lifecycle_children_idempotency_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = TaskStore::open(dir.path(), Arc::new(SystemClock), Retention::default()).unwrap();
    let new = NewTask {
        title: "deploy".into(),
        idempotency_key: Some("deploy-42".into()),
        priority: 8,
        verification: vec!["web answers 200".into()],
        ..Default::default()
    };
    let (parent, created) = store.create(new.clone()).await.unwrap();
    assert!(created);
    let (again, created) = store.create(new).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, parent.id);
    let (child, _) = store
        .create(NewTask {
            title: "build".into(),
            parent: Some(parent.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(child.priority, 5);
    let err = store
        .transition(&parent.id, TaskState::Completed, Transition::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AgentsError::Conflict(_)), "{err}");
    store
        .transition(
            &parent.id,
            TaskState::Assigned,
            Transition {
                assignee: Some("ops".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .transition(&parent.id, TaskState::InProgress, Transition::default())
        .await
        .unwrap();
    store.set_phase(&parent.id, Phase::Execute).await.unwrap();
    // Completing needs the child finished; cancelling the child lets it through.
    assert!(
        store
            .transition(&parent.id, TaskState::Completed, Transition::default())
            .await
            .is_err()
    );
    store
        .transition(
            &child.id,
            TaskState::Cancelled,
            Transition {
                error: Some("not needed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let done = store
        .transition(
            &parent.id,
            TaskState::Completed,
            Transition {
                result: Some(serde_json::json!({"ok": true})),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            done.state,
            done.phase,
            done.assignee.as_deref(),
            done.attempts
        ),
        (TaskState::Completed, Phase::Execute, Some("ops"), 1)
    );
    assert_eq!(
        store
            .list(&TaskFilter {
                state: Some(TaskState::Cancelled),
                ..Default::default()
            })
            .len(),
        1
    );
    // Durable across reopen, and after compaction.
    drop(store);
    let store = TaskStore::open(dir.path(), Arc::new(SystemClock), Retention::default()).unwrap();
    assert_eq!(store.get(&parent.id).unwrap().state, TaskState::Completed);
    assert_eq!(store.compact().await.unwrap(), 0);
    let store = TaskStore::open(
        dir.path(),
        Arc::new(SystemClock),
        Retention {
            keep_finished: Duration::ZERO,
            ..Retention::default()
        },
    )
    .unwrap();
    assert_eq!(store.get(&parent.id).unwrap().effects.len(), 0);
    assert_eq!(store.compact().await.unwrap(), 2);
    assert!(store.get(&parent.id).is_none());
}

#[test]
fn backoff_is_jittered_exponential_and_honours_retry_after() {
    let p = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    let mut rng = fastrand::Rng::with_seed(7);
    for attempt in 1..=6 {
        let ceiling = p.ceiling(attempt);
        let d = p.delay(attempt, None, &mut rng);
        assert!(
            d >= ceiling / 2 && d <= ceiling,
            "attempt {attempt}: {d:?} outside [{:?}, {ceiling:?}]",
            ceiling / 2
        );
    }
    assert_eq!(p.ceiling(10), Duration::from_secs(2));
    assert_eq!(
        p.delay(1, Some(Duration::from_secs(1)), &mut rng),
        Duration::from_secs(1)
    );
    // Retry-After is honoured in full past `max`, up to the limit.
    assert_eq!(
        p.delay(1, Some(Duration::from_secs(60)), &mut rng),
        Duration::from_secs(60)
    );
    assert_eq!(
        p.delay(1, Some(Duration::from_secs(7200)), &mut rng),
        aura_agents::retry::RETRY_AFTER_LIMIT
    );
    assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
    // HTTP dates: 1994-11-06T08:49:37Z is 784111777 s after the epoch.
    let now = aura_core::Timestamp::from_millis(784_111_777_000 - 90_000);
    assert_eq!(
        parse_retry_after_at("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        parse_retry_after_at(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            aura_core::Timestamp::from_millis(800_000_000_000)
        ),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after_at("7", now), Some(Duration::from_secs(7)));
    assert_eq!(
        parse_retry_after_at("Sunday, 06-Nov-94 08:49:37 GMT", now),
        None
    );
    assert_eq!(parse_retry_after_at("soon", now), None);
    assert!(p.should_retry(4) && !p.should_retry(5));
}

struct Flaky {
    calls: AtomicU32,
}

#[async_trait]
impl Handler for Flaky {
    async fn handle(&self, m: &Message, _attempt: u32) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match m.payload.as_slice() {
            b"ok" => Outcome::Done,
            b"poison" => Outcome::Reject {
                reason: "cannot parse".into(),
            },
            _ => Outcome::Retry {
                reason: "upstream 503".into(),
                retry_after: Some(Duration::from_millis(20)),
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_retries_then_dead_letters_and_the_dlq_replays_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path());
    let topic = Topic::new("jobs").unwrap();
    for p in ["ok", "flaky", "poison"] {
        mesh.publish(&topic, Outgoing::new(p)).await.unwrap();
    }
    let dlq = DeadLetters::new(mesh.clone(), 2);
    let handler = Arc::new(Flaky {
        calls: AtomicU32::new(0),
    });
    let cancel = CancellationToken::new();
    let config = WorkerConfig {
        topic: topic.clone(),
        group: "workers".into(),
        subscribe: SubscribeOptions::default(),
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        batch: 10,
        drain_timeout: Duration::from_secs(1),
        seed: 1,
        heartbeat: Some(Heartbeat {
            agent: AgentName::new("worker-1").unwrap(),
            outbox: Arc::new(MeshOutbox(mesh.clone())),
            every: Duration::from_secs(60),
        }),
    };
    let run = tokio::spawn(worker::run(
        mesh.clone(),
        dlq.clone(),
        Arc::new(SystemClock),
        handler.clone(),
        config,
        cancel.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dlq.size(&topic).await.unwrap() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        (report.done, report.retried, report.dead_lettered),
        (1, 2, 2)
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1 + 3 + 1);
    // Heartbeats: one when the loop starts, a final one after the drain with what it did.
    let beats = mesh
        .read(
            &Topic::new(aura_agents::envelope::HEARTBEAT_TOPIC).unwrap(),
            aura_mesh::StartAt::Earliest,
            100,
        )
        .await
        .unwrap();
    let beats: Vec<Envelope> = beats
        .iter()
        .map(|m| Envelope::from_message(m).unwrap())
        .collect();
    assert!(beats.len() >= 2, "{beats:?}");
    assert!(
        beats
            .iter()
            .all(|b| b.source == "worker-1" && b.kind == MessageType::Heartbeat)
    );
    assert_eq!(beats[0].payload["status"], "running");
    let last = beats.last().unwrap();
    assert_eq!(last.payload["status"], "stopped");
    assert_eq!(last.payload["done"], 1);
    assert_eq!(last.payload["dead_lettered"], 2);
    let entries = dlq.list(&topic, 10).await.unwrap();
    let flaky = entries
        .iter()
        .find(|d| d.message.payload == b"flaky")
        .unwrap();
    assert_eq!(
        (flaky.attempts, flaky.reason.as_str(), flaky.topic.as_str()),
        (3, "upstream 503", "jobs")
    );
    assert_eq!(
        dlq.show(&topic, flaky.offset)
            .await
            .unwrap()
            .unwrap()
            .original_offset,
        2
    );
    assert_eq!(dlq.queues().await.unwrap()[0].size, 2);
    // Replay one: it goes back to the topic and leaves the queue.
    assert_eq!(dlq.replay(&topic, Some(&[flaky.offset])).await.unwrap(), 1);
    let back = mesh.read(&topic, StartAt::Offset(4), 10).await.unwrap();
    assert_eq!(back[0].payload, b"flaky");
    assert!(!back[0].headers.contains_key("aura-dlq-reason"));
    assert_eq!(dlq.size(&topic).await.unwrap(), 1);
    assert!(matches!(
        dlq.replay(&topic, Some(&[999])).await,
        Err(AgentsError::NotFound(_))
    ));
    assert_eq!(dlq.purge(&topic).await.unwrap(), 1);
    assert_eq!(dlq.size(&topic).await.unwrap(), 0);
}

#[test]
fn routing_picks_a_capable_healthy_least_loaded_agent() {
    let c = |name: &str, caps: &[&str], load, capacity, healthy| Candidate {
        name: name.into(),
        capabilities: caps.iter().map(|s| s.to_string()).collect(),
        load,
        capacity,
        healthy,
    };
    let agents = vec![
        c("a", &["deploy", "k8s"], 3, 4, true),
        c("b", &["deploy", "k8s"], 1, 4, true),
        c("c", &["deploy", "k8s"], 0, 4, false),
        c("d", &["deploy"], 0, 4, true),
        c("e", &["deploy", "k8s"], 2, 2, true),
    ];
    let need: BTreeSet<String> = ["deploy".to_owned(), "k8s".to_owned()].into();
    assert_eq!(route(&need, &agents).unwrap().name, "b");
    let need: BTreeSet<String> = ["gpu".to_owned()].into();
    assert!(route(&need, &agents).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consult_fan_out_and_handoff_over_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path());
    let outbox = MeshOutbox(mesh.clone());
    let clock = SystemClock;
    let boss = AgentName::new("boss").unwrap();
    // Two peers answer queries with their name and the question's number doubled.
    let cancel = CancellationToken::new();
    let mut peers = tokio::task::JoinSet::new();
    for name in ["alice", "bob"] {
        let mesh = mesh.clone();
        let cancel = cancel.clone();
        peers.spawn(async move {
            let me = AgentName::new(name).unwrap();
            let mut sub = mesh
                .subscribe(
                    &Topic::new(&inbox(name)).unwrap(),
                    name,
                    SubscribeOptions::default(),
                )
                .await
                .unwrap();
            while !cancel.is_cancelled() {
                for d in sub.fetch(10, Duration::from_millis(100)).await.unwrap() {
                    let q = Envelope::from_message(&d.message).unwrap();
                    let n = q.payload["n"].as_i64().unwrap();
                    let r = q.reply(
                        SystemClock.now(),
                        &me,
                        serde_json::json!({"by": name, "n": n * 2}),
                    );
                    let topic = Topic::new(q.reply_to.as_deref().unwrap()).unwrap();
                    MeshOutbox(mesh.clone()).send(&topic, &r).await.unwrap();
                    d.ack().await.unwrap();
                }
            }
        });
    }
    let mut replies = Replies::open(mesh.as_ref(), &boss).await.unwrap();
    let q = Envelope::new(
        clock.now(),
        &boss,
        "alice",
        MessageType::Query,
        serde_json::json!({"n": 21}),
    );
    let answer = patterns::consult(&outbox, &mut replies, q.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answer.payload["n"], 42);
    assert_eq!(answer.correlation_id.as_deref(), Some(q.id.as_str()));
    let fan = vec![
        Envelope::new(
            clock.now(),
            &boss,
            "alice",
            MessageType::Query,
            serde_json::json!({"n": 1}),
        ),
        Envelope::new(
            clock.now(),
            &boss,
            "bob",
            MessageType::Query,
            serde_json::json!({"n": 2}),
        ),
        Envelope::new(
            clock.now(),
            &boss,
            "nobody",
            MessageType::Query,
            serde_json::json!({"n": 3}),
        ),
    ];
    let got = patterns::fan_out_in(&outbox, &mut replies, fan, Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(got[0].as_ref().unwrap().payload["by"], "alice");
    assert_eq!(got[1].as_ref().unwrap().payload["n"], 4);
    assert!(
        got[2].is_none(),
        "no answer from an absent peer: partial result"
    );
    let steps = vec![
        Envelope::new(
            clock.now(),
            &boss,
            "alice",
            MessageType::Query,
            serde_json::json!({"n": 5}),
        ),
        Envelope::new(
            clock.now(),
            &boss,
            "bob",
            MessageType::Query,
            serde_json::json!({"n": 7}),
        ),
    ];
    let seq = patterns::sequential(&outbox, &mut replies, steps, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(seq.len(), 2);
    let timeout = patterns::consult(
        &outbox,
        &mut replies,
        Envelope::new(
            clock.now(),
            &boss,
            "nobody",
            MessageType::Query,
            serde_json::json!({"n": 0}),
        ),
        Duration::from_millis(200),
    )
    .await;
    assert!(matches!(timeout, Err(AgentsError::Timeout(_))));
    let h = patterns::handoff(
        clock.now(),
        &boss,
        &AgentName::new("bob").unwrap(),
        "task-1",
        "half done",
        &["s3://bucket/plan.md".into()],
    );
    h.validate().unwrap();
    assert_eq!(h.payload["artifacts"][0], "s3://bucket/plan.md");
    let b = patterns::broadcast(
        &outbox,
        clock.now(),
        &boss,
        MessageType::Learn,
        serde_json::json!({"fact": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(b.target, "*");
    cancel.cancel();
    while peers.join_next().await.is_some() {}
}

#[test]
fn envelope_validation_and_round_trip() {
    let src = AgentName::new("a").unwrap();
    let mut e = Envelope::new(
        SystemClock.now(),
        &src,
        "*",
        MessageType::Heartbeat,
        serde_json::json!({}),
    );
    e.validate().unwrap();
    let json = serde_json::to_vec(&e).unwrap();
    assert_eq!(Envelope::from_json(&json).unwrap(), e);
    e.priority = 11;
    assert!(e.validate().is_err());
    e.priority = 1;
    e.target = "Not A Name".into();
    assert!(e.validate().is_err());
    let bad = br#"{"id":"x","timestamp":"2026-01-01T00:00:00Z","source":"a","target":"b","type":"gossip","priority":5}"#;
    assert!(
        Envelope::from_json(bad)
            .unwrap_err()
            .to_string()
            .contains("gossip")
    );
}
