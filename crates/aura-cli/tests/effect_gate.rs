//! Decide before effect, through the real binary: the moment a proxied request reaches its target (the effect),
//! `aura up` is killed with SIGKILL; the decision that released it must be in the audit log afterwards, with both
//! `audit.effect_gate` settings (`written`, the default, and `durable`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use aura_audit::report::read_entries;
use common::{Aura, home_with};
use tokio::io::AsyncReadExt as _;

const POLICY: &str = r#"
levels:
  web: { network: ["*"] }
agents:
  bot: { level: web }
rules:
  - id: local-target
    when: { kind: custom, agent: bot, target: ["egress/loopback/*"] }
    then: allow
"#;

/// Starts Aura, sends one request through its proxy to a target that reports when the request arrives, kills Aura
/// at that moment and returns the audit entries' targets and verdicts found afterwards.
async fn kill_at_effect(gate: Option<&str>, path: &str) -> (String, Vec<(String, String)>) {
    let home = home_with(&[("edge.yaml", POLICY)]);
    if let Some(gate) = gate {
        std::fs::write(
            home.path().join("aura.yaml"),
            format!("audit:\n  effect_gate: {gate}\n"),
        )
        .unwrap();
    }
    let mut aura = Aura::start_in(home.path(), "data");
    let proxy = aura.proxy_url();
    let token = aura.token("bot-token", "agent", Some("bot")).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        let _ = arrived_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        // Never answer (the connection stays open until the test's runtime ends): the effect happened, the
        // process dies now.
        std::future::pending::<()>().await;
        drop(stream);
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::http(&proxy)
                .unwrap()
                .basic_auth("bot", &token),
        )
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let request = tokio::spawn(http.get(url.clone()).send());
    let head = tokio::time::timeout(Duration::from_secs(20), arrived)
        .await
        .expect("the request never reached the target")
        .unwrap();
    aura.kill9();
    assert!(head.starts_with("GET "), "{head}");
    let _ = aura.wait(Duration::from_secs(10));
    let _ = request.await;

    let entries = read_entries(&home.path().join("data/audit"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let target = e.entry.target.clone()?;
            let verdict = e.entry.verdict.map(|v| v.as_str().to_owned())?;
            Some((target, verdict))
        })
        .collect();
    drop(home);
    (url, entries)
}

#[tokio::test]
async fn a_released_effect_is_in_the_audit_log_after_kill_9() {
    for (round, gate) in [None, Some("written"), Some("durable"), None]
        .into_iter()
        .enumerate()
    {
        let (url, entries) = kill_at_effect(gate, &format!("/effect/{round}")).await;
        assert!(
            entries.iter().any(|(t, v)| t == &url && v == "allow"),
            "gate {gate:?}: no ALLOW decision for {url} in the audit log after kill -9: {entries:?}"
        );
    }
}
