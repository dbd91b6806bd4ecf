//! The HTTP enforcement proxy through the real binary, with real clients (reqwest with proxy settings, curl) and
//! a local target: allowed, denied, escalated, halted mid-session, SSRF attempts, missing credentials, body limit,
//! CONNECT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{Aura, client, home_with};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

const POLICY: &str = r#"
levels:
  web: { network: ["*"] }
agents:
  bot: { level: web }
  other: { level: web }
rules:
  - id: no-secrets
    when: { kind: http_request, target: ["http://127.0.0.1:*/secret/**"] }
    then: { verdict: deny, reason: secrets are off limits }
  - id: ask-deploy
    when: { kind: http_request, target: ["http://127.0.0.1:*/deploy/**"] }
    then: escalate
  - id: local-target
    when: { kind: custom, agent: bot, target: ["egress/loopback/*"] }
    then: allow
"#;

/// A local HTTP/1.1 target with keep-alive: answers `hello <method> <path> <body length>` and records the
/// request heads it saw.
struct Target {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn target() -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).await.unwrap();
                    let first = head.lines().next().unwrap_or("").to_owned();
                    let mut parts = first.split(' ');
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let text = format!("hello {method} {path} {len}");
                    log.lock().unwrap().push(head.clone());
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if reader.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Target { addr, seen }
}

fn proxied(proxy: &str, agent: &str, token: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::http(proxy)
                .unwrap()
                .basic_auth(agent, token),
        )
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn start() -> (Aura, String, tempfile::TempDir) {
    let home = home_with(&[("edge.yaml", POLICY)]);
    let mut aura = Aura::start_in(home.path(), "data");
    let proxy = aura.proxy_url();
    (aura, proxy, home)
}

#[tokio::test]
async fn allowed_denied_escalated_and_halted_mid_session() {
    let target = target().await;
    let (aura, proxy, _home) = start().await;
    let token = aura.token("bot-token", "agent", Some("bot")).await;
    let http = proxied(&proxy, "bot", &token);
    let base = format!("http://{}", target.addr);

    // Allowed: forwarded with the body, the proxy's credentials stripped.
    let resp = http
        .post(format!("{base}/ok/hello?x=1"))
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello POST /ok/hello?x=1 12");
    let heads = target.seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        !heads[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization"),
        "{}",
        heads[0]
    );

    // Denied by a rule: 403 naming the rule and reason; nothing reaches the target.
    let resp = http.get(format!("{base}/secret/key")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "denied", "{body}");
    assert_eq!(body["rule"], "no-secrets", "{body}");
    assert_eq!(body["reason"], "secrets are off limits", "{body}");
    assert!(body["audit_seq"].as_u64().unwrap() > 0, "{body}");

    // Escalated: 403 carrying the approval to wait on; approved, the identical retry goes through.
    let resp = http.get(format!("{base}/deploy/web")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "approval_required", "{body}");
    let approval = body["approval_id"].as_str().unwrap().to_owned();
    aura.cli(&["approvals", "approve", &approval, "--reason", "ok"])
        .code(0);
    let resp = http.get(format!("{base}/deploy/web")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(target.seen.lock().unwrap().len(), 2);

    // Halted mid-session: the same keep-alive client is refused from the next request on.
    aura.cli(&["agent", "halt", "bot", "--reason", "runaway"])
        .code(0);
    let resp = http.get(format!("{base}/ok/again")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "halted", "{body}");
    assert_eq!(body["verdict"], "halt", "{body}");
    assert_eq!(target.seen.lock().unwrap().len(), 2);

    // Every request is in the audit trail: decisions of the proxied requests and their settlements.
    let entries = aura.get("/api/v1/audit/entries?agent=bot&limit=1000").await;
    let text = entries.to_string();
    for needle in ["/ok/hello?x=1", "/secret/key", "/deploy/web", "/ok/again"] {
        assert!(text.contains(needle), "{needle} not audited: {text}");
    }
}

#[tokio::test]
async fn ssrf_attempts_are_blocked_unless_a_policy_allows_the_destination() {
    let target = target().await;
    let (aura, proxy, _home) = start().await;
    let other = aura.token("other-token", "agent", Some("other")).await;
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let http = proxied(&proxy, "other", &other);
    let port = target.addr.port();
    // Loopback by address, by name, by decimal form, by IPv4-mapped IPv6; metadata; private ranges.
    for url in [
        format!("http://127.0.0.1:{port}/ok/x"),
        format!("http://localhost:{port}/ok/x"),
        format!("http://2130706433:{port}/ok/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok/x"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{url}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "ssrf_blocked", "{url}: {body}");
        assert_eq!(body["rule"], "default_deny", "{url}: {body}");
    }
    assert!(target.seen.lock().unwrap().is_empty());
    // The agent whose policy allows loopback reaches it; metadata stays closed to it.
    let http = proxied(&proxy, "bot", &bot);
    let resp = http
        .get(format!("http://localhost:{port}/ok/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .get("http://169.254.169.254/latest/meta-data/")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ssrf_blocked", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("egress/"),
        "{body}"
    );
    // `localhost` needs no DNS and the policy allows loopback whatever the counters: the guard's allowance rode
    // in the request's own decision (one durable decision), so no `egress/loopback` decision was taken for bot;
    // refusals are audited as the guard's own decisions.
    let bot_entries = aura
        .get("/api/v1/audit/entries?agent=bot&limit=1000")
        .await
        .to_string();
    assert!(
        bot_entries.contains(&format!("http://localhost:{port}/ok/x")),
        "{bot_entries}"
    );
    assert!(!bot_entries.contains("egress/loopback"), "{bot_entries}");
    assert!(
        bot_entries.contains("egress/metadata/169.254.169.254"),
        "{bot_entries}"
    );
    let other_entries = aura
        .get("/api/v1/audit/entries?agent=other&limit=1000")
        .await
        .to_string();
    assert!(
        other_entries.contains("egress/loopback/127.0.0.1"),
        "{other_entries}"
    );
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_407() {
    let target = target().await;
    let (aura, proxy, _home) = start().await;
    let url = format!("http://{}/ok/x", target.addr);
    // No credentials at all.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let anonymous = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy).unwrap())
        .build()
        .unwrap();
    let resp = anonymous.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 407);
    assert_eq!(resp.headers()["proxy-authenticate"], "Basic realm=\"aura\"");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "proxy_auth_required");
    // A made-up token, and a valid token that acts for no agent.
    for (user, token) in [
        ("bot", "aura_nope_nope".to_owned()),
        ("admin", aura.admin_token()),
    ] {
        let resp = proxied(&proxy, user, &token)
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 407, "{user}");
    }
    assert!(target.seen.lock().unwrap().is_empty());
    // A request in origin form (not a proxy request) is refused.
    let resp = client().get(format!("{proxy}/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 407);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_proxy_plain_connect_and_body_limit() {
    let target = target().await;
    let home = home_with(&[("edge.yaml", POLICY)]);
    std::fs::write(
        home.path().join("aura.yaml"),
        "proxy:\n  max_body_bytes: 1024\n",
    )
    .unwrap();
    let mut aura = Aura::start_in(home.path(), "data");
    let proxy = aura.proxy_url();
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let other = aura.token("other-token", "agent", Some("other")).await;
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-x", &proxy])
            .args(args)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    };
    let url = format!("http://{}/ok/curl", target.addr);
    let user = format!("bot:{bot}");
    // Plain HTTP.
    let (out, err, code) = curl(&["-U", &user, &url]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "hello GET /ok/curl 0");
    // CONNECT (curl -p tunnels even plain HTTP): decided on host:port, then bytes flow both ways.
    let (out, err, code) = curl(&["-p", "-U", &user, &url]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "hello GET /ok/curl 0");
    // CONNECT refused by the SSRF guard for an agent without the loopback rule.
    let (_, err, code) = curl(&["-p", "-U", &format!("other:{other}"), &url]);
    assert_ne!(code, Some(0));
    assert!(err.contains("403"), "{err}");
    // CONNECT without credentials.
    let (_, err, code) = curl(&["-p", &url]);
    assert_ne!(code, Some(0));
    assert!(err.contains("407"), "{err}");
    // A body over proxy.max_body_bytes: 413 before any decision.
    let big = "x".repeat(4096);
    let (out, _, code) = curl(&[
        "-U",
        &user,
        "--data-binary",
        &big,
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    assert_eq!(code, Some(0));
    assert!(out.ends_with("\n413"), "{out}");
    assert!(out.contains("body_too_large"), "{out}");
    assert_eq!(target.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_halt_cuts_an_open_connect_tunnel() {
    let target = target().await;
    let (aura, proxy, _home) = start().await;
    let token = aura.token("bot-token", "agent", Some("bot")).await;
    let proxy_addr = proxy.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&proxy_addr).await.unwrap();
    stream
        .write_all(
            format!(
                "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nProxy-Authorization: Bearer {token}\r\n\r\n",
                target.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    // The tunnel works: one request through it.
    reader
        .get_mut()
        .write_all(b"GET /ok/tunnel HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = String::new();
    reader.read_line(&mut first).await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Halt the agent: the proxy closes the tunnel (EOF) without the client doing anything.
    aura.cli(&["agent", "halt", "bot", "--reason", "runaway"])
        .code(0);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "the tunnel stayed open after the halt");
}
