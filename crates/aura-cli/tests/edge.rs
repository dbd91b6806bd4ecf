//! Claude Code hooks (data-driven fixtures through the real binary), `aura tools export`, and A2A agent cards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{Aura, BIN, home_with};
use serde_json::Value;

const POLICY: &str = r#"
levels:
  dev:
    read: ["/workspace/**"]
    write: ["/workspace/**"]
    exec: [git, ls]
    network: ["https://docs.rs"]
agents:
  bot: { level: dev }
rules:
  - id: ask-prod
    when: { kind: file_write, target: ["/workspace/prod/**"] }
    then: escalate
  - id: claude-tools
    when: { kind: tool_call, target: ["claude/*"] }
    then: allow
"#;

fn hook(aura_url: &str, token: &str, event: &str, input: &Value) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::aura_cmd(dir.path())
        .args(["hook", event, "--url", aura_url, "--token", token])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn claude_code_hook_fixtures() {
    let home = home_with(&[("edge.yaml", POLICY)]);
    let aura = Aura::start_in(home.path(), "data");
    let token = aura.token("bot-token", "agent", Some("bot")).await;
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hooks.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (code, stdout, stderr) = hook(&aura.url, &token, "pre-tool-use", &case["input"]);
        let out: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        let spec = &out["hookSpecificOutput"];
        let reason = spec["permissionDecisionReason"].as_str().unwrap_or("");
        if code != Some(0)
            || spec["hookEventName"] != "PreToolUse"
            || spec["permissionDecision"] != case["decision"]
            || !reason.contains(case["reason_contains"].as_str().unwrap())
        {
            failures.push(format!("{name}: exit {code:?}\n{stdout}\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    // post-tool-use settles the allowed call and the settlement is audited.
    let post = serde_json::json!({"session_id": "s-1", "hook_event_name": "PostToolUse", "tool_use_id": "toolu_ls",
        "tool_name": "Bash", "tool_input": {"command": "ls -la src"}, "tool_response": {"stdout": "a\n", "stderr": "", "interrupted": false}});
    let (code, _, stderr) = hook(&aura.url, &token, "post-tool-use", &post);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let entries = aura.get("/api/v1/audit/entries?agent=bot&limit=1000").await;
    let settled = entries.to_string().matches("\"settle\"").count();
    assert_eq!(settled, 1, "{entries}");
    // A server that cannot be reached: fail closed (deny), still a valid hook answer.
    let (code, stdout, _) = hook(
        "http://127.0.0.1:9",
        &token,
        "pre-tool-use",
        &cases[0]["input"],
    );
    assert_eq!(code, Some(0));
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        out["hookSpecificOutput"]["permissionDecision"], "deny",
        "{out}"
    );
}

#[test]
fn tools_export_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let export = |format: &str| -> Value {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(["tools", "export", "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{format}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let openai = export("openai");
    assert_eq!(openai.as_array().unwrap().len(), 12);
    assert_eq!(openai[0]["type"], "function");
    assert_eq!(openai[0]["function"]["parameters"]["type"], "object");
    let names: Vec<&str> = openai
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    // The issue's thirteen capabilities in twelve tools: budgets and limits are one tool.
    assert!(names.contains(&"publish_message"), "{names:?}");
    assert!(names.contains(&"my_limits"), "{names:?}");
    assert!(!names.contains(&"my_budget"), "{names:?}");
    let anthropic = export("anthropic");
    assert!(anthropic[0]["input_schema"].is_object());
    let langchain = export("langchain");
    assert!(langchain[0]["args_schema"].is_object());
    let mcp = export("mcp");
    assert_eq!(mcp["tools"].as_array().unwrap().len(), 12);
    assert!(mcp["tools"][0]["inputSchema"].is_object());
    let bad = Command::new(BIN)
        .current_dir(dir.path())
        .args(["tools", "export", "--format", "gemini"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn a2a_agent_cards_per_registered_agent() {
    let home = home_with(&[("edge.yaml", POLICY)]);
    let aura = Aura::start_in(home.path(), "data");
    let token = aura.token("bot-token", "agent", Some("bot")).await;
    let card = aura.get("/.well-known/agent-card.json").await;
    assert_eq!(card["name"], "aura");
    assert_eq!(card["skills"][0]["id"], "bot", "{card}");
    assert!(card["securitySchemes"]["bearer"].is_object());
    let bot = aura.get("/api/v1/a2a/agents/bot/agent-card.json").await;
    assert_eq!(bot["name"], "bot");
    assert!(
        bot["url"].as_str().unwrap().ends_with("/a2a/agents/bot"),
        "{bot}"
    );
    let missing = common::client()
        .get(aura.url("/api/v1/a2a/agents/ghost/agent-card.json"))
        .bearer_auth(aura.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The agent reads its own limits.
    let me = common::client()
        .get(aura.url("/api/v1/edge/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["limits"]["level"], "dev", "{me}");
}
