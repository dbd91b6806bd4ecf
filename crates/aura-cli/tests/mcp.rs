//! The MCP server with a real client no one here wrote: the official Python `mcp` SDK (installed by
//! `scripts/services.sh`), over Streamable HTTP at `/mcp` and over stdio (`aura mcp`): initialize, list tools,
//! an allowed and a denied call, resources, and a subscription that receives a live update.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::path::Path;
use std::process::Command;

use common::{Aura, BIN, home_with};
use serde_json::Value;

const POLICY: &str = r#"
levels:
  tools: { write: ["/tmp/**"], network: ["http://127.0.0.1:*"] }
agents:
  bot: { level: tools }
rules:
  - id: bot-loopback
    when: { kind: custom, agent: bot, target: ["egress/loopback/*"] }
    then: allow
  - id: context-tools
    when: { kind: tool_call, target: ["mcp/*"] }
    then: allow
  - id: bot-may-ask-ops
    when: { kind: message, agent: bot, target: ["ops"] }
    then: allow
"#;

const WEB: &str = r#"[meta]
asset_id = "web-1"
kind = "host"
name = "web-1"
schema_version = 1
updated_at = "2026-11-21T22:00:00Z"
checksum = "abc"
health = "healthy"
sensor_status = "ok"
[compute]
cpu_percent = 35.5
load_1 = 0.7
[memory]
used_percent = 50.0
available_bytes = 4000000000
"#;

fn client_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_client.py").to_owned()
}

fn python_mcp_available() {
    let ok = Command::new("python3")
        .args(["-c", "import mcp"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Python MCP SDK is missing: run scripts/services.sh (pip install mcp)"
    );
}

fn seed_assets(data_dir: &Path) -> std::path::PathBuf {
    let assets = data_dir.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("web-1.aav"), WEB).unwrap();
    std::fs::write(
        assets.join("db-1.aav"),
        WEB.replace("web-1", "db-1")
            .replace("kind = \"host\"", "kind = \"vm\""),
    )
    .unwrap();
    assets
}

fn check(out: &Value) {
    assert_eq!(out["server"], "aura", "{out}");
    assert_eq!(out["subscribe_capability"], true, "{out}");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tools.len(), 12, "{tools:?}");
    for t in [
        "query_assets",
        "is_safe_to_deploy",
        "my_limits",
        "run_command",
        "fetch_url",
        "publish_message",
    ] {
        assert!(tools.contains(&t), "{t} missing: {tools:?}");
    }
    // Allowed: the context tool answers from the asset files.
    assert_eq!(out["allowed"]["is_error"], false, "{out}");
    let allowed: Value = serde_json::from_str(out["allowed"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(allowed["total"], 1, "{allowed}");
    assert_eq!(allowed["assets"][0]["asset_id"], "web-1");
    assert_eq!(allowed["truncated"], false);
    // Denied: a tool error the model can read, naming the rule.
    assert_eq!(out["denied"]["is_error"], true, "{out}");
    let denied = out["denied"]["text"].as_str().unwrap();
    assert!(denied.starts_with("denied by policy"), "{denied}");
    assert!(denied.contains("level:tools"), "{denied}");
    // publish_message: allowed to `ops` (durably on its inbox), refused to `boss` by the default deny.
    assert_eq!(out["published"]["is_error"], false, "{out}");
    let sent: Value = serde_json::from_str(out["published"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(sent["topic"], "agent.ops", "{sent}");
    assert!(sent["audit_seq"].as_u64().unwrap() > 0, "{sent}");
    assert_eq!(out["publish_denied"]["is_error"], true, "{out}");
    let refused = out["publish_denied"]["text"].as_str().unwrap();
    assert!(refused.starts_with("denied by policy"), "{refused}");
    assert!(refused.contains("default_deny"), "{refused}");
    // my_limits: the policy's view and the budget usage in one answer.
    let limits: Value = serde_json::from_str(out["limits"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(limits["level"], "tools", "{limits}");
    assert!(limits["budget_usage"].is_array(), "{limits}");
    // Resources and the live update.
    let resources = out["resources"].as_array().unwrap();
    assert!(resources.contains(&Value::from("aav://web-1")), "{out}");
    assert!(
        out["resource_text"]
            .as_str()
            .unwrap()
            .contains("cpu_percent = 35.5")
    );
    assert!(
        out["updates"]
            .as_array()
            .unwrap()
            .contains(&Value::from("aav://web-1")),
        "{out}"
    );
    assert!(
        out["after_update"].as_str().unwrap().contains("web-1"),
        "{out}"
    );
}

/// `fetch_url` answered the target's status 200, decided by the kernel.
fn check_fetched(out: &Value) {
    assert_eq!(out["fetched"]["is_error"], false, "{out}");
    let fetched: Value = serde_json::from_str(out["fetched"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(fetched["status"], 200, "{fetched}");
    assert!(fetched["audit_seq"].as_u64().unwrap() > 0, "{fetched}");
}

fn run_client(args: &[&str], fetch: &str) -> Value {
    let out = Command::new("python3")
        .arg(client_script())
        .args(args)
        .env("FETCH_URL", fetch)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python MCP client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_streamable_http() {
    python_mcp_available();
    let home = home_with(&[("edge.yaml", POLICY)]);
    let assets = seed_assets(&home.path().join("data"));
    // Only the seeded assets: the server's own host sensor would add this machine.
    std::fs::write(
        home.path().join("aura.yaml"),
        "context:\n  sensor:\n    enabled: false\n",
    )
    .unwrap();
    let aura = Aura::start_in(home.path(), "data");
    let token = aura.token("bot-token", "agent", Some("bot")).await;
    let url = aura.url("/mcp");
    let fetch = aura.url("/api/health/live");
    let out = run_client(&["http", &url, &token, assets.to_str().unwrap()], &fetch);
    check(&out);
    check_fetched(&out);
    assert_message_arrived(&aura).await;
    // Without a token the endpoint is closed.
    let resp = common::client()
        .post(&url)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // The calls are in the audit trail: the allowed context call and the denied write.
    let entries = aura
        .get("/api/v1/audit/entries?agent=bot&limit=1000")
        .await
        .to_string();
    assert!(entries.contains("mcp/query_assets"), "{entries}");
    assert!(entries.contains("/etc/aura-mcp-test"), "{entries}");
    // fetch_url to a loopback address the policy allows: one decision, the guard's allowance folded into it (no
    // separate `egress/loopback` decision).
    assert!(entries.contains("/api/health/live"), "{entries}");
    assert!(!entries.contains("egress/loopback"), "{entries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_stdio() {
    python_mcp_available();
    let home = home_with(&[("edge.yaml", POLICY)]);
    let data_dir = home.path().join("data");
    let assets = seed_assets(&data_dir);
    // Only the seeded assets: the server's own host sensor would add this machine.
    std::fs::write(
        home.path().join("aura.yaml"),
        "context:\n  sensor:\n    enabled: false\n",
    )
    .unwrap();
    let aura = Aura::start_in(home.path(), "data");
    let token = aura.token("bot-token", "agent", Some("bot")).await;
    let data = data_dir.to_str().unwrap().to_owned();
    let fetch = aura.url("/api/health/live");
    let out = run_client(
        &[
            "stdio",
            BIN,
            assets.to_str().unwrap(),
            "--",
            "--data-dir",
            &data,
            "mcp",
            "--url",
            &aura.url,
            "--token",
            &token,
        ],
        &fetch,
    );
    check(&out);
    check_fetched(&out);
    assert_message_arrived(&aura).await;
    // Over stdio the tools ask the server through its API, which cannot fold the guard into the request's
    // decision: the loopback destination is its own audited decision.
    let entries = aura
        .get("/api/v1/audit/entries?agent=bot&limit=1000")
        .await
        .to_string();
    assert!(entries.contains("egress/loopback/127.0.0.1"), "{entries}");
}

/// The allowed `publish_message` is on `ops`'s inbox; the refused one is nowhere, and both decisions are audited.
async fn assert_message_arrived(aura: &Aura) {
    let inbox = aura.get("/api/v1/mesh/topics/agent.ops/messages").await;
    let bodies: Vec<&Value> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["body"])
        .collect();
    assert_eq!(bodies.len(), 1, "{inbox}");
    assert_eq!(bodies[0]["source"], "bot", "{inbox}");
    assert_eq!(bodies[0]["type"], "query", "{inbox}");
    assert_eq!(bodies[0]["payload"]["ask"], "disk on web-1?", "{inbox}");
    let entries = aura
        .get("/api/v1/audit/entries?agent=bot&limit=1000")
        .await
        .to_string();
    assert!(entries.contains("bot-may-ask-ops"), "{entries}");
    assert!(entries.contains("boss"), "{entries}");
}
