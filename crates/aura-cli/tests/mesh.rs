//! Real-binary tests of the event mesh: `aura up` with the embedded mesh, governed publishing over HTTP (kind
//! `message`), `aura mesh topics|read|sub`, tasks through the API and `aura tasks`, `aura dlq`, and agents declared in
//! `mesh.agents` run and stopped with `aura agents`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use common::*;

use serde_json::{Value, json};

const POLICY: &str = r#"
agents:
  bot: { level: standard }
  helper: { level: standard }
  operator: { level: standard }
rules:
  - id: bot-talks
    description: bot and the operator may send messages
    when: { kind: message, agent: [bot, operator] }
    then: allow
"#;

const CONFIG: &str = r#"
mesh:
  backend: embedded
  agents:
    - name: sleeper
      command: [sh, -c, "echo started; exec sleep 300"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governed_publish_topics_tasks_dlq_and_agents_from_the_binary() {
    let home = home_with(&[("base.yaml", POLICY)]);
    std::fs::write(home.path().join("aura.yaml"), CONFIG).unwrap();
    let aura = Aura::start_in(home.path(), "data");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let helper = aura.token("helper-token", "agent", Some("helper")).await;

    // Allowed: bot publishes; refused: helper (no rule: default deny), with a machine-readable code.
    let url = aura.url("/api/v1/mesh/topics/work/messages");
    let (status, body) = post(
        &url,
        &bot,
        json!({"target": "helper", "type": "task", "payload": {"n": 1}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offset"], 1);
    assert_eq!(body["spooled"], false);
    let (status, body) = post(
        &url,
        &helper,
        json!({"target": "bot", "type": "result", "payload": {}}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "message_refused");
    let (status, body) = post(&url, &bot, json!({"target": "helper", "type": "gossip"})).await;
    assert_eq!(status, 422, "{body}");

    let topics = aura.cli(&["mesh", "topics", "-o", "json"]).code(0).json();
    let work = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "work")
        .unwrap()
        .clone();
    assert_eq!(work["messages"], 1);
    let read = aura
        .cli(&["mesh", "read", "work", "-o", "json"])
        .code(0)
        .json();
    assert_eq!(read[0]["body"]["source"], "bot");
    assert_eq!(read[0]["body"]["payload"]["n"], 1);
    let sub = aura
        .cli(&["mesh", "sub", "work", "--group", "cli-test"])
        .code(0);
    let line: Value = serde_json::from_str(sub.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["attempt"], 1);
    assert_eq!(line["body"]["target"], "helper");
    let sub = aura
        .cli(&[
            "mesh",
            "sub",
            "work",
            "--group",
            "cli-test",
            "--wait-ms",
            "0",
        ])
        .code(0);
    assert!(sub.stdout.is_empty(), "acknowledged: {}", sub.stdout);
    let published = aura
        .cli(&[
            "mesh",
            "pub",
            "work",
            "--to",
            "*",
            "--type",
            "learn",
            "--source",
            "operator",
            "--payload",
            r#"{"fact":"x"}"#,
            "-o",
            "json",
        ])
        .code(0)
        .json();
    assert_eq!(published["offset"], 2);
    let refused = aura.cli(&["mesh", "pub", "work", "--source", "helper"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("message_refused") || refused.stderr.contains("governance"),
        "{}",
        refused.stderr
    );

    // Tasks: created by bot (governed), idempotent, listed, cancelled by the operator with its child.
    let tasks_url = aura.url("/api/v1/tasks");
    let (status, parent) = post(
        &tasks_url,
        &bot,
        json!({"title": "deploy web", "idempotency_key": "deploy-1", "verification": ["200 OK"]}),
    )
    .await;
    assert_eq!(status, 201, "{parent}");
    let (status, again) = post(
        &tasks_url,
        &bot,
        json!({"title": "deploy web", "idempotency_key": "deploy-1"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], parent["id"]);
    let pid = parent["id"].as_str().unwrap();
    let (status, child) = post(&tasks_url, &bot, json!({"title": "build", "parent": pid})).await;
    assert_eq!(status, 201, "{child}");
    let (status, _) = post(&tasks_url, &helper, json!({"title": "sneaky"})).await;
    assert_eq!(status, 403);
    let list = aura.cli(&["tasks", "list", "-o", "json"]).code(0).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let shown = aura
        .cli(&["tasks", "show", pid, "-o", "json"])
        .code(0)
        .json();
    assert_eq!(shown["children"][0], child["id"]);
    assert_eq!(shown["state"], "pending");
    let cancelled = aura
        .cli(&[
            "tasks",
            "cancel",
            pid,
            "--reason",
            "not today",
            "-o",
            "json",
        ])
        .code(0)
        .json();
    assert_eq!(cancelled["state"], "cancelled");
    let child_now = aura
        .get(&format!("/api/v1/tasks/{}", child["id"].as_str().unwrap()))
        .await;
    assert_eq!(child_now["state"], "cancelled");
    aura.cli(&["tasks", "cancel", pid]).code(1);
    let events = aura
        .cli(&["mesh", "read", "aura.tasks", "-o", "json"])
        .code(0)
        .json();
    assert!(
        events.as_array().unwrap().len() >= 3,
        "task events published: {events}"
    );

    // Dead-letter queues: none yet.
    let dlq = aura.cli(&["dlq", "list", "-o", "json"]).code(0).json();
    assert_eq!(dlq, json!([]));
    aura.cli(&["dlq", "show", "work", "1"]).code(1);

    // The declared agent runs; it can be stopped and started again; its output is captured.
    let status = aura.cli(&["agents", "status", "-o", "json"]).code(0).json();
    assert_eq!(status[0]["name"], "sleeper");
    assert_eq!(status[0]["status"], "running");
    aura.cli(&["agents", "stop", "sleeper"]).code(0);
    let status = aura.cli(&["agents", "status", "-o", "json"]).code(0).json();
    assert_eq!(status[0]["status"], "stopped");
    aura.cli(&["agents", "start", "sleeper"]).code(0);
    aura.cli(&["agents", "restart", "nobody"]).code(1);
    let log = std::fs::read_to_string(home.path().join("data/agents/sleeper.log")).unwrap();
    assert!(log.contains("started"), "{log}");

    // Per-topic metrics, valid for Prometheus.
    let metrics = client()
        .get(aura.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("aura_mesh_published_total{topic=\"work\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("aura_mesh_refused_total"), "{metrics}");
    promtool_check(&metrics);
}
