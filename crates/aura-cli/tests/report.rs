//! Real-binary test of `aura report compliance`: decisions, an approval and a halt through a running `aura up`,
//! the report built while the server runs (the reader takes no lock), then a flipped byte makes it say FAILED.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use common::*;

use std::time::Duration;

use serde_json::json;

/// `bot` may call tools; `deploy` needs a human on top.
const POLICY: &str = r#"
agents:
  bot: { level: standard }
rules:
  - id: ask-deploy
    description: deploys need a human
    when: { kind: tool_call, target: [deploy] }
    then: escalate
  - id: tools
    description: bot may call tools
    when: { kind: tool_call, agent: [bot] }
    then: allow
"#;

/// Runs `aura report compliance` with `args` on this server's data dir; asserts success and returns stdout.
fn report(aura: &Aura, args: &[&str]) -> String {
    let out = aura_cmd(aura.home())
        .arg("--data-dir")
        .arg(&aura.data_dir)
        .args(["report", "compliance"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aura report compliance {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn compliance_report_covers_decisions_approvals_halts_and_verification() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("policies")).unwrap();
    std::fs::write(home.path().join("policies/base.yaml"), POLICY).unwrap();
    let mut aura = Aura::start_in(home.path(), "data");
    let admin = aura.admin_token();

    let (status, t) = post(
        &aura.url("/api/v1/tokens"),
        &admin,
        json!({"name": "bot-token", "role": "agent", "agent": "bot"}),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let bot = t["token"].as_str().unwrap().to_owned();

    let decide = |target: &'static str| {
        let (url, bot) = (aura.url("/api/v1/decide"), bot.clone());
        async move {
            let (status, d) = post(
                &url,
                &bot,
                json!({"kind": "tool_call", "target": target, "args": {"x": 1}}),
            )
            .await;
            assert_eq!(status, 200, "{d}");
            d
        }
    };
    assert_eq!(decide("search").await["verdict"], "allow");
    let e = decide("deploy").await;
    assert_eq!(e["verdict"], "escalate", "{e}");
    let approval = e["approval_id"].as_str().unwrap().to_owned();
    let (status, a) = post(
        &aura.url(&format!("/api/v1/approvals/{approval}/approve")),
        &admin,
        json!({"reason": "reviewed"}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    let (status, h) = post(
        &aura.url("/api/v1/halts"),
        &admin,
        json!({"agent": "bot", "reason": "runaway spend"}),
    )
    .await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(decide("search").await["verdict"], "halt");

    // While the server runs: the reader takes no lock.
    let html_path = home.path().join("r.html");
    let out = report(
        &aura,
        &["--format", "html", "--out", html_path.to_str().unwrap()],
    );
    assert!(out.is_empty(), "--out writes nothing to stdout: {out}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg "), "charts");
    assert!(html.contains("class=\"status ok\""), "verified");
    assert!(!html.contains("<script"));
    let md = report(&aura, &["--since", "1d", "--format", "md"]);
    for section in [
        "## Verification status of the covered range",
        "## Art. 12 — automatic logging: events by type",
        "## Art. 14(4)(e) — human oversight: halts and their causes",
        "## Art. 14 — approvals and approvers",
        "## Art. 19 and 26(6) — retention",
        "## Art. 73 — serious incident candidates",
        "## ISO/IEC 42001 9.1 — monitoring and measurement: decisions by verdict",
        "## Access: token changes",
    ] {
        assert!(md.contains(section), "missing {section}\n{md}");
        assert!(html.contains(&section[3..]), "html misses {section}");
    }
    assert!(md.contains("**✅ Verification OK"), "{md}");
    assert!(md.contains("| status | verified |"), "{md}");
    // Counts: 3 decisions (allow, escalate, halt), one of each.
    assert!(md.contains("| allow | 1 | 33.3% |"), "{md}");
    assert!(md.contains("| escalate | 1 | 33.3% |"), "{md}");
    assert!(md.contains("| halt | 1 | 33.3% |"), "{md}");
    assert!(md.contains("| total | 3 | 100.0% |"), "{md}");
    assert!(md.contains("| decide | 3 |"), "{md}");
    assert!(
        md.contains("| token.create | 2 |"),
        "the bootstrap admin token and bot's\n{md}"
    );
    // The approver, the halt and its cause, the token change.
    let approval_row = md
        .lines()
        .find(|l| l.contains(&approval) && l.contains("approved"))
        .unwrap_or_else(|| panic!("no approval row\n{md}"));
    assert!(approval_row.contains("| reviewed |"), "{approval_row}");
    assert!(
        approval_row.contains(":admin-"),
        "the approver is the admin token: {approval_row}"
    );
    assert!(approval_row.contains("| deploy |"), "{approval_row}");
    let halt_row = md
        .lines()
        .find(|l| l.contains("| agent.halt |") && l.contains("(human)"))
        .unwrap_or_else(|| panic!("no halt row\n{md}"));
    assert!(halt_row.contains("manual: runaway spend"), "{halt_row}");
    assert!(
        md.contains("halt: manual: runaway spend | 15 |"),
        "Art. 73 candidate\n{md}"
    );
    assert!(md.contains("| token.create |"), "{md}");
    assert!(md.contains("| bot-token | agent | bot |"), "{md}");
    assert!(
        md.contains("| six months (183 days) retained | no |"),
        "{md}"
    );

    // After shutdown, a flipped byte inside the first record: verification FAILED.
    aura.sigterm();
    assert!(aura.wait(Duration::from_secs(20)).0.success());
    let seg = std::fs::read_dir(aura.data_dir.join("audit/segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[16 + 20 + 10] ^= 0x01;
    std::fs::write(&seg, bytes).unwrap();
    let md = report(&aura, &["--format", "md"]);
    assert!(md.contains("**❌ Verification FAILED:"), "{md}");
    assert!(md.contains("Reading stopped early"), "{md}");
    let html = report(&aura, &["--format", "html"]);
    assert!(html.contains("class=\"status fail\""), "{html}");
}
