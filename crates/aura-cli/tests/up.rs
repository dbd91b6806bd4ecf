//! Real-binary tests: start `aura up` on port 0 with a temp data dir and talk to it over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use common::*;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let aura = Aura::start(&[]);
    let http = client();

    let live = http.get(aura.url("/api/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert!(live.headers().contains_key("x-request-id"));
    assert_eq!(live.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let ready: Value = http
        .get(aura.url("/api/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"][0]["name"], "store");
    assert_eq!(ready["checks"][0]["backend"], "sqlite");
    assert_eq!(ready["checks"][0]["status"], "ok");

    // A client-supplied request id is echoed back.
    let echoed = http
        .get(aura.url("/api/health/live"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");

    // The OpenAPI document needs a token and lists every route.
    let unauth = http
        .get(aura.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let doc: Value = http
        .get(aura.url("/api/openapi.json"))
        .bearer_auth(aura.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/health/live",
        "/api/health/ready",
        "/metrics",
        "/api/openapi.json",
        "/api/v1/whoami",
        "/api/v1/status",
        "/api/v1/config",
        "/api/v1/agents",
        "/api/v1/agents/{name}",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi misses {path}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let metrics = http.get(aura.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE aura_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE aura_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains(
            "aura_http_requests_total{method=\"GET\",route=\"/api/health/live\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "aura_http_requests_total{method=\"GET\",route=\"/api/openapi.json\",status=\"401\"}"
        ),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    promtool_check(&text);
}

#[tokio::test]
async fn tokens_and_roles_gate_every_route() {
    let aura = Aura::start(&[]);
    let http = client();
    let admin = aura.admin_token();

    // Admin token file is private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(aura.data_dir.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // No token, garbage, wrong scheme: 401 with a machine-readable code.
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic YWRtaW46YWRtaW4="),
        Some("Bearer aura_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let mut req = http.get(aura.url("/api/v1/tokens"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert!(resp.headers().contains_key("www-authenticate"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    // Admin: 200.
    let list = http
        .get(aura.url("/api/v1/tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["role"], "admin");
    assert!(
        !list.to_string().contains(&admin),
        "a listing must never carry a secret"
    );

    // Admin creates a viewer and an agent token.
    let viewer: Value = http
        .post(aura.url("/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "dash", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer_token = viewer["token"].as_str().unwrap().to_owned();
    let created = http
        .post(aura.url("/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "planner-key", "role": "agent", "agent": "planner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let agent_token = created.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Viewer on an admin route: 403; on a read route: 200.
    let forbidden = http
        .get(aura.url("/api/v1/tokens"))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(
        forbidden.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );
    let agents: Value = http
        .get(aura.url("/api/v1/agents"))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents["total"], 1);
    assert_eq!(agents["items"][0]["name"], "planner");
    assert_eq!(agents["items"][0]["active_tokens"], 1);

    // Agent: whoami yes, inventory no, config no.
    let me: Value = http
        .get(aura.url("/api/v1/whoami"))
        .bearer_auth(&agent_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "agent");
    assert_eq!(me["agent"], "planner");
    for path in ["/api/v1/agents", "/api/v1/config", "/api/v1/tokens"] {
        let resp = http
            .get(aura.url(path))
            .bearer_auth(&agent_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
    }

    // Bad requests get 4xx with a code and change nothing.
    for (body, status, code) in [
        (json!({"name": "x", "role": "root"}), 422, "invalid"),
        (json!({"name": "x", "role": "agent"}), 422, "invalid"),
        (
            json!({"name": "bad name!", "role": "viewer"}),
            422,
            "invalid",
        ),
        (json!({"name": "dash", "role": "viewer"}), 409, "conflict"),
        (
            json!({"name": "x", "role": "viewer", "extra": 1}),
            400,
            "invalid_body",
        ),
    ] {
        let resp = http
            .post(aura.url("/api/v1/tokens"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{body}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"]["code"],
            code,
            "{body}"
        );
    }
    let huge = format!(
        r#"{{"name":"big","role":"viewer","agent":"{}"}}"#,
        "a".repeat(3 << 20)
    );
    // A fresh client: the server may close the connection after refusing an oversized body.
    let resp = client()
        .post(aura.url("/api/v1/tokens"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "too_large"
    );
    let total = http
        .get(aura.url("/api/v1/tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["total"]
        .clone();
    assert_eq!(total, 3);

    // Revocation takes effect at once; the last admin cannot be revoked.
    let revoked = http
        .delete(aura.url("/api/v1/tokens/dash"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let after = http
        .get(aura.url("/api/v1/agents"))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let admin_id = list["items"][0]["id"].as_str().unwrap();
    let last = http
        .delete(aura.url(&format!("/api/v1/tokens/{admin_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 409);
    assert_eq!(
        last.json::<Value>().await.unwrap()["error"]["code"],
        "last_admin"
    );

    // Unknown routes: JSON 404.
    let missing = http
        .get(aura.url("/api/v1/nope"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

#[tokio::test]
async fn cli_tokens_work_against_the_running_server() {
    let aura = Aura::start(&[]);
    let out = aura_cmd(aura.home())
        .args([
            "token",
            "create",
            "--name",
            "ci-bot",
            "--role",
            "agent",
            "--agent",
            "ci",
            "--data-dir",
        ])
        .arg(&aura.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap().trim().to_owned();
    assert!(token.starts_with("aura_"), "{stdout}");

    let me: Value = client()
        .get(aura.url("/api/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["token_name"], "ci-bot");
    assert_eq!(me["agent"], "ci");

    for format in ["json", "yaml", "table"] {
        let list = aura_cmd(aura.home())
            .args(["token", "list", "--output", format, "--data-dir"])
            .arg(&aura.data_dir)
            .output()
            .unwrap();
        assert!(list.status.success());
        let text = String::from_utf8(list.stdout).unwrap();
        assert!(text.contains("ci-bot"), "{format}: {text}");
        assert!(!text.contains(&token), "listing leaks the secret");
    }
    let json_list: Value = serde_json::from_slice(
        &aura_cmd(aura.home())
            .args(["token", "list", "-o", "json", "--data-dir"])
            .arg(&aura.data_dir)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(json_list.as_array().unwrap().len(), 2);

    let agents = aura_cmd(aura.home())
        .args(["agent", "list", "-o", "json", "--data-dir"])
        .arg(&aura.data_dir)
        .output()
        .unwrap();
    let agents: Value = serde_json::from_slice(&agents.stdout).unwrap();
    assert_eq!(agents[0]["name"], "ci");

    let status = aura_cmd(aura.home())
        .args(["status", "-o", "json", "--url", &aura.url, "--data-dir"])
        .arg(&aura.data_dir)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["ready"]["status"], "ready");
    assert_eq!(status["status"]["store_backend"], "sqlite");

    let revoke = aura_cmd(aura.home())
        .args(["token", "revoke", "ci-bot", "--data-dir"])
        .arg(&aura.data_dir)
        .output()
        .unwrap();
    assert!(revoke.status.success());
    // Revoked offline (the CLI did not find the server on its default address): the server re-reads token
    // records at least every `TOKEN_CACHE_TTL` (2 s), so the token stops working within that bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    loop {
        let after = client()
            .get(aura.url("/api/v1/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if after.status() == 401 {
            break;
        }
        assert_eq!(after.status(), 200);
        assert!(
            std::time::Instant::now() < deadline,
            "a revoked token still works after 4 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// SIGTERM while a request is in flight: the request completes, new connections are refused, exit 0 within 5 s.
#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut aura = Aura::start(&["--log-format", "json"]);
    let admin = aura.admin_token();
    let body = r#"{"name":"late","role":"viewer"}"#;
    let mut conn = TcpStream::connect(&aura.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST /api/v1/tokens HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        aura.addr,
        body.len()
    )
    .unwrap();
    // `100 Continue` arrives when the handler starts reading the body: the request is now in flight.
    let first = read_line(&mut conn);
    assert!(first.starts_with("HTTP/1.1 100"), "{first}");
    assert_eq!(read_line(&mut conn), "\r");

    aura.sigterm();
    let stopped = Instant::now();
    // The listener closes: new connections are refused while the in-flight one stays open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&aura.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    conn.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (status, stderr) = aura.wait(Duration::from_secs(5));
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "in-flight request got `{response}`; aura exited {status}; stderr:\n{stderr}"
    );
    assert!(response.contains("\"name\":\"late\""), "{response}");
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    // Logs are JSON lines and never contain a token.
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(!stderr.contains(&admin), "a token was logged");
    // The token created by the drained request is durable.
    let list = aura_cmd(aura.home())
        .args(["token", "list", "-o", "json", "--data-dir"])
        .arg(&aura.data_dir)
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(
        list.as_array().unwrap().iter().any(|t| t["name"] == "late"),
        "{list}"
    );
}

#[test]
fn an_invalid_config_stops_up_with_file_line_column() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("aura.yaml"),
        "server:\n  listn: 127.0.0.1:1\n",
    )
    .unwrap();
    // Picked up from the working directory…
    let out = aura_cmd(home.path()).arg("up").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("aura.yaml:2:3: unknown key `listn` in `server`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: did you mean `listen`?"), "{stderr}");
    // …and through AURA_CONFIG, with a bad value this time.
    std::fs::write(home.path().join("bad.yaml"), "server:\n  listen: nope\n").unwrap();
    let out = aura_cmd(home.path())
        .arg("up")
        .env("AURA_CONFIG", "bad.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("bad.yaml:2:11:"), "{stderr}");
    assert!(stderr.contains("`nope`"), "{stderr}");
    assert!(
        !home.path().join("aura-data").exists(),
        "a failed start must not create the data dir"
    );
}

#[test]
fn init_writes_a_config_that_up_accepts() {
    let home = tempfile::tempdir().unwrap();
    let out = aura_cmd(home.path())
        .args(["init", "site"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let site = home.path().join("site");
    assert!(site.join("aura.yaml").is_file());
    assert!(site.join("policies").is_dir());
    let again = aura_cmd(home.path())
        .args(["init", "site"])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(1),
        "init must not overwrite without --force"
    );
    let check = aura_cmd(&site).args(["config", "check"]).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let shown = aura_cmd(&site)
        .args(["config", "show", "-o", "json"])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["server"]["listen"], "127.0.0.1:7470");
    // Flags and environment override the file.
    let shown = aura_cmd(&site)
        .args([
            "config",
            "show",
            "-o",
            "json",
            "--data-dir",
            "/tmp/elsewhere",
        ])
        .env("AURA_LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["data_dir"], "/tmp/elsewhere");
    assert_eq!(shown["server"]["listen"], "127.0.0.1:9999");
}

#[test]
fn help_version_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let help = aura_cmd(dir.path()).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for group in ["Run:", "Access:", "Inspect:", "Tools:"] {
        assert!(help.contains(group), "{help}");
    }
    for cmd in [
        "up",
        "init",
        "token",
        "agent",
        "status",
        "config",
        "completions",
        "bench",
    ] {
        let out = aura_cmd(dir.path()).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
    }
    for read in [&["token", "list"][..], &["agent", "list"], &["status"]] {
        let out = aura_cmd(dir.path())
            .args(read)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            String::from_utf8(out.stdout).unwrap().contains("--output"),
            "{read:?}"
        );
    }
    let version = aura_cmd(dir.path()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("aura {}", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = aura_cmd(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("aura") && script.contains("token"),
            "{shell}"
        );
    }
}

/// `aura up` on PostgreSQL: the same binary, `store.url` in aura.yaml, its own schema on the local server.
#[tokio::test]
async fn up_runs_on_postgres() {
    let home = tempfile::tempdir().unwrap();
    let url = std::env::var("AURA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".to_owned());
    let schema = format!("aura_up_{}", std::process::id());
    std::fs::write(
        home.path().join("aura.yaml"),
        format!("store:\n  url: \"{url}\"\n  schema: {schema}\n  connect_timeout_seconds: 3\n"),
    )
    .unwrap();
    let data_dir = home.path().join("data");
    let mut child = aura_cmd(home.path())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = read_line(child.stdout.as_mut().unwrap());
    let Some(base) = line.strip_prefix("listening on ") else {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!(
            "aura up on PostgreSQL did not start (is PostgreSQL running? scripts/services.sh): {line}\n{err}"
        );
    };
    let ready: Value = client()
        .get(format!("{base}/api/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"][0]["backend"], "postgres");
    let admin = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
    let me = client()
        .get(format!("{base}/api/v1/whoami"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let config: Value = client()
        .get(format!("{base}/api/v1/config"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["store"]["schema"], schema.as_str());
    let _ = child.kill();
    let _ = child.wait();
    let drop = Command::new("psql")
        .args([
            url.as_str(),
            "-q",
            "-c",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        ])
        .output();
    if let Ok(out) = drop {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_unreachable_store_fails_fast_with_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        home.path().join("aura.yaml"),
        format!("store:\n  url: \"postgres://u:hunter2@127.0.0.1:{port}/db\"\n  connect_timeout_seconds: 1\n"),
    )
    .unwrap();
    let started = Instant::now();
    let out = aura_cmd(home.path())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("state store"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "a password leaked: {stderr}");
    assert!(
        String::from_utf8(out.stdout).unwrap().is_empty(),
        "must not claim to be listening"
    );
}

/// With a server running, `aura token create` goes through its API, so the change is in the server's audit log.
#[tokio::test]
async fn token_changes_go_through_the_running_server_and_are_audited() {
    let aura = Aura::start(&[]);
    let out = aura_cmd(aura.home())
        .env("AURA_URL", &aura.url)
        .args([
            "token",
            "create",
            "--name",
            "via-api",
            "--role",
            "viewer",
            "--data-dir",
        ])
        .arg(&aura.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("through the running server"), "{stderr}");
    assert!(!stderr.contains("not in the audit log"), "{stderr}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let me: Value = client()
        .get(aura.url("/api/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["token_name"], "via-api");
    let entries: Value = client()
        .get(aura.url("/api/v1/audit/entries?limit=100"))
        .bearer_auth(aura.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let creations: Vec<&Value> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["entry"]["action"] == "token.create" && e["entry"]["details"]["name"] == "via-api"
        })
        .collect();
    assert_eq!(creations.len(), 1, "{entries}");
}
