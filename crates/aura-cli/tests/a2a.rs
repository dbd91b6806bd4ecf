//! A2A JSON-RPC on the agent cards' URLs through the real binary with a real HTTP client: `message/send` (a task in
//! the task store assigned to the agent, each step decided and audited), idempotent retries, `tasks/get`,
//! `tasks/cancel` (and -32002 once final), a refused assignment answered as `rejected`, `message/stream` as SSE
//! following the task to its final state, visibility, and the JSON-RPC error codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::{Aura, home_with};
use serde_json::{Value, json};

const POLICY: &str = r#"
levels:
  dev: {}
agents:
  client: { level: dev }
  bot: { level: dev }
  boss: { level: dev }
rules:
  # `[*]` is the literal target `*` (a new, unassigned task); a bare `*` would match every agent.
  - id: client-creates-tasks
    when: { kind: message, agent: client, target: ["[*]"] }
    then: allow
  - id: client-may-task-bot
    when: { kind: message, agent: client, target: ["bot"] }
    then: allow
  - id: bot-reports-on-its-tasks
    when: { kind: message, agent: bot, target: ["bot"] }
    then: allow
"#;

fn send(id: &str, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "kind": "message", "role": "user", "messageId": id,
        "parts": [{"kind": "text", "text": text}, {"kind": "data", "data": {"host": "web-1"}}]}}})
}

async fn rpc(url: &str, token: &str, body: &Value) -> Value {
    let (status, answer) = common::post(url, token, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    answer
}

async fn raw(url: &str, token: &str, body: &str) -> Value {
    let resp = common::client()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn card_url(aura: &Aura, agent: &str) -> String {
    let card = aura
        .get(&format!("/api/v1/a2a/agents/{agent}/agent-card.json"))
        .await;
    assert_eq!(card["capabilities"]["streaming"], true, "{card}");
    card["url"].as_str().unwrap().to_owned()
}

/// Reads SSE `data:` frames from `resp` until `want` frames came (or the stream ended).
async fn frames(resp: &mut reqwest::Response, want: usize) -> Vec<Value> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < want {
        let chunk = tokio::time::timeout(Duration::from_secs(15), resp.chunk())
            .await
            .expect("no SSE frame within 15 s")
            .unwrap();
        let Some(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    out.push(serde_json::from_str(data.trim()).unwrap());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_tasks_through_the_task_store() {
    let home = home_with(&[("a2a.yaml", POLICY)]);
    let aura = Aura::start_in(home.path(), "data");
    let client = aura.token("client-token", "agent", Some("client")).await;
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let boss = aura.token("boss-token", "agent", Some("boss")).await;
    let bot_url = card_url(&aura, "bot").await;

    // message/send: a task assigned to bot, the A2A view of the task store.
    let sent = rpc(&bot_url, &client, &send("m-1", "check the disk on web-1")).await;
    let task = &sent["result"];
    assert_eq!(task["kind"], "task", "{sent}");
    assert_eq!(task["status"]["state"], "submitted", "{sent}");
    assert_eq!(task["metadata"]["aura"]["state"], "assigned", "{sent}");
    assert_eq!(task["metadata"]["aura"]["assignee"], "bot", "{sent}");
    assert_eq!(
        task["history"][0]["parts"][0]["text"],
        "check the disk on web-1"
    );
    let id = task["id"].as_str().unwrap().to_owned();
    // The task store has it, assigned to bot.
    let stored = aura.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(stored["state"], "assigned", "{stored}");
    assert_eq!(stored["assignee"], "bot", "{stored}");
    // The same message again is the same task.
    let again = rpc(&bot_url, &client, &send("m-1", "check the disk on web-1")).await;
    assert_eq!(again["result"]["id"], id.as_str(), "{again}");

    // tasks/get, by the sender and by the assignee; a stranger cannot see it.
    let get = json!({"jsonrpc": "2.0", "id": "g", "method": "tasks/get", "params": {"id": id, "historyLength": 0}});
    let got = rpc(&bot_url, &client, &get).await;
    assert_eq!(got["id"], "g");
    assert_eq!(got["result"]["status"]["state"], "submitted", "{got}");
    assert_eq!(got["result"]["history"], json!([]), "{got}");
    let by_bot = rpc(&bot_url, &bot, &get).await;
    assert_eq!(by_bot["result"]["id"], id.as_str(), "{by_bot}");
    let by_boss = rpc(&bot_url, &boss, &get).await;
    assert_eq!(by_boss["error"]["code"], -32001, "{by_boss}");

    // tasks/cancel, then -32002 once final.
    let cancel = json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": id}});
    let cancelled = rpc(&bot_url, &client, &cancel).await;
    assert_eq!(
        cancelled["result"]["status"]["state"], "canceled",
        "{cancelled}"
    );
    let twice = rpc(&bot_url, &client, &cancel).await;
    assert_eq!(twice["error"]["code"], -32002, "{twice}");

    // A message to an agent the client may not task: created, the assignment refused → rejected, with the rule.
    let boss_url = card_url(&aura, "boss").await;
    let refused = rpc(&boss_url, &client, &send("m-2", "give me a raise")).await;
    assert_eq!(
        refused["result"]["status"]["state"], "rejected",
        "{refused}"
    );
    let why = refused["result"]["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(why.contains("default_deny"), "{why}");
    // A sender with no rule at all is refused before anything is created: -32010 with the verdict.
    let nothing = rpc(&bot_url, &boss, &send("m-3", "hello")).await;
    assert_eq!(nothing["error"]["code"], -32010, "{nothing}");
    assert_eq!(nothing["error"]["data"]["verdict"], "deny", "{nothing}");
    assert_eq!(
        nothing["error"]["data"]["rule"], "default_deny",
        "{nothing}"
    );

    // message/stream: the task first, then its status updates until the final one.
    let stream_req = json!({"jsonrpc": "2.0", "id": 7, "method": "message/stream", "params": {"message": {
        "kind": "message", "role": "user", "messageId": "m-4", "parts": [{"kind": "text", "text": "watch web-1"}]}}});
    let mut resp = common::client()
        .post(&bot_url)
        .bearer_auth(&client)
        .json(&stream_req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = frames(&mut resp, 1).await;
    assert_eq!(first[0]["id"], 7, "{first:?}");
    assert_eq!(first[0]["result"]["kind"], "task", "{first:?}");
    assert_eq!(first[0]["result"]["status"]["state"], "submitted");
    let streamed = first[0]["result"]["id"].as_str().unwrap().to_owned();
    let cancel =
        json!({"jsonrpc": "2.0", "id": 8, "method": "tasks/cancel", "params": {"id": streamed}});
    rpc(&bot_url, &client, &cancel).await;
    let updates = frames(&mut resp, 1).await;
    assert_eq!(updates[0]["result"]["kind"], "status-update", "{updates:?}");
    assert_eq!(updates[0]["result"]["taskId"], streamed.as_str());
    assert_eq!(updates[0]["result"]["status"]["state"], "canceled");
    assert_eq!(updates[0]["result"]["final"], true);
    // The stream ends after the final update.
    assert!(frames(&mut resp, 1).await.is_empty());

    // The agent's side: bot takes a streamed task, asks for input, works on, completes with a result; the client's
    // stream sees every state (each report waits for its frame) and tasks/get shows the artifact.
    let stream_req = json!({"jsonrpc": "2.0", "id": 9, "method": "message/stream", "params": {"message": {
        "kind": "message", "role": "user", "messageId": "m-7", "parts": [{"kind": "text", "text": "free disk on web-1"}]}}});
    let mut resp = common::client()
        .post(&bot_url)
        .bearer_auth(&client)
        .json(&stream_req)
        .send()
        .await
        .unwrap();
    let first = frames(&mut resp, 1).await;
    let work = first[0]["result"]["id"].as_str().unwrap().to_owned();
    let report = aura.url(&format!("/api/v1/a2a/tasks/{work}/status"));
    // Only the assignee reports.
    let (status, body) = common::post(&report, &boss, json!({"state": "working"})).await;
    assert_eq!(status, 403, "{body}");
    for (report_body, want) in [
        (json!({"state": "working"}), "working"),
        (
            json!({"state": "input-required", "message": "which mount?"}),
            "input-required",
        ),
        (json!({"state": "working"}), "working"),
        (
            json!({"state": "completed", "result": {"freed_gb": 12}}),
            "completed",
        ),
    ] {
        let (status, body) = common::post(&report, &bot, report_body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"]["state"], want, "{body}");
        let update = frames(&mut resp, 1).await;
        assert_eq!(update[0]["result"]["status"]["state"], want, "{update:?}");
        assert_eq!(
            update[0]["result"]["final"],
            want == "completed",
            "{update:?}"
        );
        if want == "input-required" {
            assert_eq!(
                update[0]["result"]["status"]["message"]["parts"][0]["text"],
                "which mount?"
            );
        }
    }
    assert!(frames(&mut resp, 1).await.is_empty());
    let done = rpc(
        &bot_url,
        &client,
        &json!({"jsonrpc": "2.0", "id": 10, "method": "tasks/get", "params": {"id": work}}),
    )
    .await;
    assert_eq!(done["result"]["status"]["state"], "completed", "{done}");
    assert_eq!(
        done["result"]["artifacts"][0]["parts"][0]["data"]["freed_gb"],
        12
    );
    // A completed task takes no more reports (the task store refuses the transition).
    let (status, _) = common::post(&report, &bot, json!({"state": "failed"})).await;
    assert_eq!(status, 409);

    // JSON-RPC errors.
    let unknown = rpc(
        &bot_url,
        &client,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/get", "params": {"id": "nope"}}),
    )
    .await;
    assert_eq!(unknown["error"]["code"], -32001, "{unknown}");
    let method = rpc(
        &bot_url,
        &client,
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tasks/frobnicate"}),
    )
    .await;
    assert_eq!(method["error"]["code"], -32601, "{method}");
    let push = rpc(
        &bot_url,
        &client,
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/pushNotificationConfig/set", "params": {}}),
    )
    .await;
    assert_eq!(push["error"]["code"], -32003, "{push}");
    let params = rpc(
        &bot_url,
        &client,
        &json!({"jsonrpc": "2.0", "id": 6, "method": "message/send", "params": {"message": {"parts": []}}}),
    )
    .await;
    assert_eq!(params["error"]["code"], -32602, "{params}");
    assert_eq!(
        raw(&bot_url, &client, "{not json").await["error"]["code"],
        -32700
    );
    assert_eq!(
        raw(&bot_url, &client, r#"{"id": 1, "method": "tasks/get"}"#).await["error"]["code"],
        -32600
    );
    // No token: 401; an unknown agent's endpoint: 404.
    let (status, _) = common::post(&bot_url, "", send("m-5", "x")).await;
    assert_eq!(status, 401);
    let (status, _) = common::post(&aura.url("/a2a/agents/ghost"), &client, send("m-6", "x")).await;
    assert_eq!(status, 404);

    // Every step is a decided, audited `message` action: the refused assignment to boss included.
    let entries = aura
        .get("/api/v1/audit/entries?agent=client&limit=1000")
        .await
        .to_string();
    assert!(entries.contains("client-may-task-bot"), "{entries}");
    assert!(entries.contains("client-creates-tasks"), "{entries}");
    assert!(entries.contains("\"boss\""), "{entries}");
}
