//! Real-binary tests of governance: `aura up` with a policy directory, driven over HTTP with agent tokens and
//! through the `aura` commands (decide, settle, budgets, approvals, halts, policy check/show/reload, audit), and
//! two servers sharing one PostgreSQL budget.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The policy of most tests: `bot` may call tools; deploys escalate; a daily budget; a rate limit on `search`.
const BASE_POLICY: &str = r#"
agents:
  bot: { level: standard }
  helper: { level: standard }
rules:
  - id: tools
    description: bot may call tools
    when: { kind: tool_call, agent: [bot] }
    then: allow
  - id: ask-deploy
    description: deploys need a human
    when: { kind: tool_call, target: [deploy] }
    then: escalate
budgets:
  - id: daily-cost
    scope: { agent: "*" }
    period: day
    limit: { cost_usd: 10 }
rate_limits:
  - { id: search-rpm, scope: { agent: "*", tool: search }, requests: 3/minute }
"#;

fn rules_of(decision: &Value) -> Vec<String> {
    decision["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_owned())
        .collect()
}

/// Decide, settle, budgets, rate limit, approvals, halts, audit replay and verify, metrics: one server.
#[tokio::test]
async fn decisions_approvals_halts_and_the_audit_trail() {
    let home = home_with(&[("base.yaml", BASE_POLICY)]);
    let mut aura = Aura::start_in(home.path(), "data");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let viewer = aura.token("viewer-token", "viewer", None).await;

    // 1. Allow, then settle with the real cost; budgets show it.
    let (status, d) = aura
        .decide(
            &bot,
            json!({"kind": "tool_call", "target": "search", "args": {"q": "rust"},
                   "estimate": {"cost_micros": 20_000}}),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["verdict"], "allow", "{d}");
    assert!(d["reservation_id"].is_string(), "{d}");
    assert_eq!(rules_of(&d), ["tools"]);
    let (status, s) = post(
        &aura.url("/api/v1/settle"),
        &bot,
        json!({"decision_id": d["decision_id"], "outcome": "success", "actual": {"cost_micros": 12_345}}),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["spent_micros"], 12_345);

    // The same through the CLI (admin token acting for bot); --cost-usd is exact decimal arithmetic.
    let run = aura
        .cli(&[
            "decide",
            "--agent",
            "bot",
            "--kind",
            "tool_call",
            "--target",
            "lookup",
            "--cost-usd",
            "0.03",
            "-o",
            "json",
        ])
        .code(0);
    let d2 = run.json();
    assert_eq!(d2["verdict"], "allow");
    let id2 = d2["decision_id"].as_str().unwrap();
    let budget = &d2["budget"][0];
    assert_eq!(
        budget["after_micros"].as_i64().unwrap() - budget["before_micros"].as_i64().unwrap(),
        30_000,
        "{d2}"
    );
    let run = aura
        .cli(&[
            "settle",
            id2,
            "--outcome",
            "success",
            "--cost-usd",
            "0.004321",
        ])
        .code(0);
    assert!(run.stdout.contains("$0.004321"), "{}", run.stdout);
    let budgets = aura
        .cli(&["budgets", "--agent", "bot", "-o", "json"])
        .code(0);
    let budgets = budgets.json();
    assert_eq!(budgets[0]["spent_micros"], 12_345 + 4_321, "{budgets}");
    assert_eq!(budgets[0]["reserved_micros"], 0, "{budgets}");
    assert_eq!(budgets[0]["limit_micros"], 10_000_000, "{budgets}");
    let table = aura.cli(&["budgets", "--agent", "bot"]).code(0);
    assert!(
        table.stdout.contains("$0.016666") && table.stdout.contains("$10.000000"),
        "{}",
        table.stdout
    );
    // Too many decimals is a usage error, not a rounded amount.
    aura.cli(&[
        "decide",
        "--agent",
        "bot",
        "--kind",
        "tool_call",
        "--target",
        "lookup",
        "--cost-usd",
        "0.0000001",
    ])
    .code(2);

    // An unknown kind is refused before the kernel; a viewer may not decide.
    let (status, err) = aura
        .decide(&bot, json!({"kind": "teleport", "target": "mars"}))
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid_action", "{err}");
    let run = aura
        .cli(&[
            "decide", "--agent", "bot", "--kind", "teleport", "--target", "mars",
        ])
        .code(1);
    assert!(run.stderr.contains("invalid_action"), "{}", run.stderr);
    let (status, err) = aura
        .decide(&viewer, json!({"kind": "tool_call", "target": "search"}))
        .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["code"], "forbidden", "{err}");

    // The rate limit: 3 searches a minute (one used above), then deny with a retry hint; exit code 3.
    for q in ["b", "c"] {
        let (_, d) = aura
            .decide(
                &bot,
                json!({"kind": "tool_call", "target": "search", "args": {"q": q}}),
            )
            .await;
        assert_eq!(d["verdict"], "allow", "{d}");
    }
    let run = aura
        .cli(&[
            "decide",
            "--agent",
            "bot",
            "--kind",
            "tool_call",
            "--target",
            "search",
            "--args",
            r#"{"q":"d"}"#,
            "-o",
            "json",
        ])
        .code(3);
    let limited = run.json();
    assert_eq!(limited["verdict"], "deny");
    assert_eq!(rules_of(&limited)[0], "search-rpm", "{limited}");
    assert!(limited["retry_after_ms"].as_u64().unwrap() > 0, "{limited}");

    // 2. Escalate → approval → the identical action is allowed once → escalates again.
    let deploy = json!({"kind": "tool_call", "target": "deploy", "args": {"env": "prod"}});
    let (_, e) = aura.decide(&bot, deploy.clone()).await;
    assert_eq!(e["verdict"], "escalate", "{e}");
    let approval = e["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(e["obligations"][0]["type"], "require_approval", "{e}");
    let pending = aura
        .cli(&["approvals", "list", "--state", "pending", "-o", "json"])
        .code(0)
        .json();
    let listed: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [approval.as_str()], "{pending}");
    assert_eq!(pending[0]["agent"], "bot");
    assert_eq!(pending[0]["target"], "deploy");
    let run = aura
        .cli(&["approvals", "approve", &approval, "--reason", "ok"])
        .code(0);
    assert!(run.stdout.starts_with("approved"), "{}", run.stdout);
    let approved = aura
        .cli(&["approvals", "list", "--state", "approved", "-o", "json"])
        .code(0)
        .json();
    assert_eq!(approved[0]["id"], approval.as_str(), "{approved}");
    let (_, a) = aura.decide(&bot, deploy.clone()).await;
    assert_eq!(a["verdict"], "allow", "{a}");
    assert!(a["approved_by"].is_string(), "{a}");
    assert_eq!(a["approval_id"], approval.as_str(), "{a}");
    let (_, again) = aura.decide(&bot, deploy.clone()).await;
    assert_eq!(again["verdict"], "escalate", "single use: {again}");
    assert_ne!(again["approval_id"], approval.as_str(), "{again}");
    // Through the CLI, escalate is exit code 4, and a denied approval stays denied.
    let run = aura
        .cli(&[
            "decide",
            "--agent",
            "bot",
            "--kind",
            "tool_call",
            "--target",
            "deploy",
            "--args",
            r#"{"env":"dev"}"#,
            "-o",
            "json",
        ])
        .code(4);
    let dev_approval = run.json()["approval_id"].as_str().unwrap().to_owned();
    aura.cli(&["approvals", "deny", &dev_approval, "--reason", "no"])
        .code(0);
    let run = aura.cli(&["approvals", "approve", &dev_approval]).code(1);
    assert!(run.stderr.contains("409"), "{}", run.stderr);

    // 3. Halt → every decision is a halt; resume → allowed again.
    aura.cli(&["agent", "halt", "bot", "--reason", "test"])
        .code(0);
    let halts = aura.cli(&["agent", "halts", "-o", "json"]).code(0).json();
    assert_eq!(halts[0]["agent"], "bot", "{halts}");
    assert_eq!(halts[0]["state"], "halted", "{halts}");
    assert_eq!(halts[0]["reason"], "test", "{halts}");
    let lookup = json!({"kind": "tool_call", "target": "lookup", "args": {"n": 1}});
    let (_, h) = aura.decide(&bot, lookup.clone()).await;
    assert_eq!(h["verdict"], "halt", "{h}");
    aura.cli(&[
        "decide",
        "--agent",
        "bot",
        "--kind",
        "tool_call",
        "--target",
        "lookup",
    ])
    .code(3);
    let run = aura.cli(&["agent", "resume", "bot"]).code(0);
    assert!(run.stdout.contains("resumed bot"), "{}", run.stdout);
    let (_, r) = aura.decide(&bot, lookup).await;
    assert_eq!(r["verdict"], "allow", "{r}");
    let halts = aura.cli(&["agent", "halts", "-o", "json"]).code(0).json();
    assert_eq!(halts, json!([]));
    // The kill switch halts every agent; a pause is listed as such; both lift.
    aura.cli(&["agent", "halt", "--all", "--reason", "stop everything"])
        .code(0);
    let (_, h) = aura
        .decide(
            &bot,
            json!({"kind": "tool_call", "target": "lookup", "args": {"n": 2}}),
        )
        .await;
    assert_eq!(h["verdict"], "halt", "{h}");
    let run = aura.cli(&["agent", "resume", "--all"]).code(0);
    assert!(run.stdout.contains("kill switch lifted"), "{}", run.stdout);
    aura.cli(&["agent", "halt", "helper", "--reason", "later", "--pause"])
        .code(0);
    let halts = aura.cli(&["agent", "halts", "-o", "json"]).code(0).json();
    assert_eq!(halts[0]["agent"], "helper", "{halts}");
    assert_eq!(halts[0]["state"], "paused", "{halts}");
    aura.cli(&["agent", "resume", "helper"]).code(0);
    aura.cli(&["agent", "halt", "--reason", "who?"]).code(2);
    aura.cli(&["agent", "halt", "bot", "--all", "--reason", "both?"])
        .code(2);

    // 6. Replay lists the decisions with their verdicts and rules.
    let replay = aura
        .cli(&["audit", "replay", "--agent", "bot", "-o", "json"])
        .code(0)
        .json();
    let decisions: Vec<&Value> = replay
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "decide")
        .collect();
    let verdicts: Vec<&str> = decisions
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    for v in ["allow", "deny", "escalate", "halt"] {
        assert!(verdicts.contains(&v), "no {v} in {verdicts:?}");
    }
    let rules: Vec<&str> = decisions
        .iter()
        .flat_map(|r| r["rules"].as_array().unwrap())
        .map(|r| r.as_str().unwrap())
        .collect();
    for rule in ["tools", "ask-deploy", "search-rpm"] {
        assert!(rules.contains(&rule), "no {rule} in {rules:?}");
    }
    assert!(
        replay
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "settle"),
        "{replay}"
    );

    // 7. Metrics count decisions by verdict and pass promtool.
    let metrics = client()
        .get(aura.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for verdict in ["allow", "deny", "escalate", "halt"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("aura_decisions_total{")
                    && l.contains(&format!("verdict=\"{verdict}\""))),
            "no aura_decisions_total for {verdict}:\n{metrics}"
        );
    }
    promtool_check(&metrics);

    // The audit log verifies after a clean shutdown.
    aura.sigterm();
    assert_eq!(aura.wait(Duration::from_secs(10)).0.code(), Some(0));
    let run = aura.cli(&["audit", "verify", "-o", "json"]).code(0);
    let verified = run.json();
    assert_eq!(verified["ok"], true);
    assert!(verified["entries"].as_u64().unwrap() >= 15, "{verified}");
}

/// 4. A budget that fits exactly N estimates allows exactly N decisions, then denies with the budget first.
#[tokio::test]
async fn a_budget_allows_exactly_what_it_holds() {
    const N: usize = 5;
    let policy = r#"
agents:
  bot: { level: standard }
rules:
  - { id: tools, when: { kind: tool_call, agent: [bot] }, then: allow }
budgets:
  - { id: tight, scope: { agent: bot }, period: day, limit: { cost_usd: 0.05 } }
"#;
    let home = home_with(&[("base.yaml", policy)]);
    let aura = Aura::start_in(home.path(), "data");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let mut verdicts = Vec::new();
    for i in 0..N + 2 {
        let (status, d) = aura
            .decide(
                &bot,
                json!({"kind": "tool_call", "target": "lookup", "args": {"i": i},
                       "estimate": {"cost_micros": 10_000}}),
            )
            .await;
        assert_eq!(status, 200, "{d}");
        if d["verdict"] == "deny" {
            assert_eq!(rules_of(&d)[0], "tight", "{d}");
        }
        verdicts.push(d["verdict"].as_str().unwrap().to_owned());
    }
    let mut expected = vec!["allow"; N];
    expected.extend(["deny", "deny"]);
    assert_eq!(verdicts, expected);
    let budgets = aura
        .cli(&["budgets", "--agent", "bot", "-o", "json"])
        .code(0)
        .json();
    assert_eq!(budgets[0]["reserved_micros"], 50_000, "{budgets}");
    assert_eq!(budgets[0]["remaining_micros"], 0, "{budgets}");
}

/// 5. A widening reload is refused (exit 1, hash unchanged) until forced; a narrowing edit is hot-reloaded.
#[tokio::test]
async fn reloads_refuse_widening_and_hot_reload_narrowing() {
    let home = home_with(&[("base.yaml", BASE_POLICY)]);
    let aura = Aura::start_in(home.path(), "data");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let h0 = aura.policy_hash().await;
    let shown = aura.cli(&["policy", "show", "-o", "json"]).code(0).json();
    assert_eq!(shown["hash"], h0.as_str());
    assert_eq!(shown["files"], json!(["base.yaml"]));
    assert_eq!(shown["rules"], 2);
    let (_, d) = aura
        .decide(&bot, json!({"kind": "message", "target": "ops"}))
        .await;
    assert_eq!(d["verdict"], "deny", "{d}");

    // Widening: bot may now send messages.
    write_policy(
        home.path(),
        "messages.yaml",
        "rules:\n  - { id: messages, when: { kind: message, agent: [bot] }, then: allow }\n",
    );
    let run = aura.cli(&["policy", "reload"]).code(1);
    assert!(
        run.stderr.contains("widens") && run.stderr.contains("`message`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        aura.policy_hash().await,
        h0,
        "a refused reload changed the policy"
    );
    let run = aura.cli(&["policy", "reload", "--force"]).code(0);
    assert!(run.stdout.starts_with("reloaded"), "{}", run.stdout);
    assert!(run.stdout.contains("accepted widening"), "{}", run.stdout);
    let h1 = aura.policy_hash().await;
    assert_ne!(h1, h0);
    let (_, d) = aura
        .decide(&bot, json!({"kind": "message", "target": "ops"}))
        .await;
    assert_eq!(d["verdict"], "allow", "{d}");

    // An invalid file: reload refused with file:line:col, nothing changes.
    write_policy(
        home.path(),
        "zz-bad.yaml",
        "rules:\n  - id: x\n    when: { kind: [\n",
    );
    let run = aura.cli(&["policy", "reload"]).code(1);
    assert!(run.stderr.contains("zz-bad.yaml:"), "{}", run.stderr);
    assert_eq!(aura.policy_hash().await, h1);
    std::fs::remove_file(home.path().join("policies/zz-bad.yaml")).unwrap();

    // Hot reload (watch is on by default): a narrowing edit applies by itself.
    write_policy(
        home.path(),
        "wipe.yaml",
        "rules:\n  - { id: no-wipe, when: { kind: tool_call, target: [wipe] }, then: deny }\n",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let h2 = loop {
        let h = aura.policy_hash().await;
        if h != h1 {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the policy was not hot-reloaded within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(h2, h0);
    let (_, d) = aura
        .decide(&bot, json!({"kind": "tool_call", "target": "wipe"}))
        .await;
    assert_eq!(d["verdict"], "deny", "{d}");
    assert_eq!(rules_of(&d)[0], "no-wipe", "{d}");
}

/// 8. Two `aura` processes on one PostgreSQL ledger: 200 concurrent decisions across both, exactly N allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_one_postgres_budget() {
    const N: usize = 40;
    const TOTAL: usize = 200;
    let pg = std::env::var("AURA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("aura_e2e_{}_{nanos}", std::process::id());
    let policy = r#"
agents:
  bot: { level: standard }
rules:
  - { id: tools, when: { kind: tool_call, agent: [bot] }, then: allow }
budgets:
  - { id: shared, scope: { agent: bot }, period: day, limit: { cost_usd: 0.40 } }
"#;
    let home = home_with(&[("base.yaml", policy)]);
    std::fs::write(
        home.path().join("aura.yaml"),
        format!(
            "store:\n  url: \"{pg}\"\n  schema: {schema}\n  connect_timeout_seconds: 3\ngovernance:\n  ledger: store\n"
        ),
    )
    .unwrap();
    let _drop = DropSchema {
        url: pg.clone(),
        schema: schema.clone(),
    };
    let first = Aura::start_in(home.path(), "data-1");
    let second = Aura::start_in(home.path(), "data-2");
    // The token lives in the shared store, so it works on both servers.
    let bot = first.token("bot-token", "agent", Some("bot")).await;

    let http = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TOTAL {
        let url = if i % 2 == 0 {
            first.url("/api/v1/decide")
        } else {
            second.url("/api/v1/decide")
        };
        let (http, bot) = (http.clone(), bot.clone());
        tasks.spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(bot)
                .json(
                    &json!({"kind": "tool_call", "target": "lookup", "args": {"i": i},
                              "estimate": {"cost_micros": 10_000}}),
                )
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.json::<Value>().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        });
    }
    let mut allowed = 0;
    let mut denied_by_budget = 0;
    while let Some(d) = tasks.join_next().await {
        let d = d.unwrap();
        match d["verdict"].as_str().unwrap() {
            "allow" => allowed += 1,
            "deny" if rules_of(&d)[0] == "shared" => denied_by_budget += 1,
            _ => panic!("unexpected decision {d}"),
        }
    }
    assert_eq!(allowed, N, "the shared budget allowed {allowed}, not {N}");
    assert_eq!(denied_by_budget, TOTAL - N);
    // The second server has no admin.token of its own (the store already had an admin): use the first's.
    let budgets: Value = client()
        .get(second.url("/api/v1/budgets?agent=bot"))
        .bearer_auth(first.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        budgets[0]["reserved_micros"],
        json!(N as i64 * 10_000),
        "{budgets}"
    );
    assert_eq!(budgets[0]["remaining_micros"], 0, "{budgets}");
    drop((first, second));
}

/// Drops a test schema when the test ends (servers first: declare it before them).
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let out = Command::new("psql")
            .args([
                self.url.as_str(),
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
            ])
            .output();
        match out {
            Ok(out) if !out.status.success() => eprintln!(
                "note: could not drop schema {}: {}",
                self.schema,
                String::from_utf8_lossy(&out.stderr)
            ),
            Ok(_) => {}
            Err(e) => eprintln!(
                "note: psql not available ({e}); schema {} left",
                self.schema
            ),
        }
    }
}

/// `aura policy check` (step 9): findings name the rules (exit 1), a clean set exits 0, a syntax error gives
/// file:line:col (exit 1), a missing directory exits 2.
#[test]
fn policy_check_reports_findings_errors_and_clean_sets() {
    let home = tempfile::tempdir().unwrap();
    let dir = |name: &str, files: &[(&str, &str)]| {
        let d = home.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
        d.display().to_string()
    };
    let check = |args: &[&str]| {
        let mut all = vec!["policy", "check"];
        all.extend(args);
        Run::from(&all, aura_cmd(home.path()).args(&all).output().unwrap())
    };

    let findings = dir(
        "findings",
        &[(
            "p.yaml",
            r#"
agents:
  bot: { level: standard }
rules:
  - id: tools
    when: { kind: tool_call, agent: [bot] }
    then: allow
  - id: search-again
    when: { kind: tool_call, agent: [bot], target: [search] }
    then: allow
  - id: no-deploy
    when: { kind: tool_call, target: [deploy] }
    then: deny
"#,
        )],
    );
    let run = check(&[&findings]).code(1);
    for needle in [
        "shadowed",
        "`search-again`",
        "conflict",
        "`no-deploy`",
        "p.yaml:",
        "example:",
        "-> deny",
    ] {
        assert!(
            run.stdout.contains(needle),
            "no {needle} in:\n{}",
            run.stdout
        );
    }
    let json = check(&[&findings, "-o", "json"]).code(1).json();
    assert_eq!(json["ok"], false);
    let classes: Vec<(&str, &str)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap(),
                f["rule"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        classes.contains(&("shadowed", "search-again")),
        "{classes:?}"
    );
    let conflict = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["class"] == "conflict")
        .unwrap_or_else(|| panic!("no conflict in {json}"));
    assert_eq!(conflict["example"]["target"], "deploy", "{conflict}");
    assert_eq!(conflict["example"]["verdict"], "deny", "{conflict}");
    assert!(conflict["location"]["line"].as_u64().unwrap() > 0);

    let clean = dir(
        "clean",
        &[(
            "p.yaml",
            "agents:\n  bot: { level: standard }\nrules:\n  - { id: search, when: { kind: tool_call, agent: [bot], target: [search] }, then: allow }\n",
        )],
    );
    let run = check(&[&clean]).code(0);
    assert!(
        run.stdout
            .starts_with("ok: 1 files, 1 rules, 1 agents, bundle "),
        "{}",
        run.stdout
    );

    let broken = dir(
        "broken",
        &[(
            "bad.yaml",
            "rules:\n  - id: x\n    when: { kind: [tool_call\n",
        )],
    );
    let run = check(&[&broken]).code(1);
    let located = run.stderr.lines().any(|l| {
        l.contains("bad.yaml:")
            && l.split(':')
                .nth(2)
                .is_some_and(|n| n.parse::<u32>().is_ok())
    });
    assert!(located, "no file:line:col in:\n{}", run.stderr);

    let run = check(&[&home.path().join("missing").display().to_string()]).code(2);
    assert!(run.stderr.contains("missing"), "{}", run.stderr);

    // Without DIR: `policies.dir` of the configuration (here the default ./policies, relative to the cwd).
    std::fs::rename(home.path().join("clean"), home.path().join("policies")).unwrap();
    check(&[]).code(0);
}
