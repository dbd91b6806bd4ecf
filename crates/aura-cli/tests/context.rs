//! Real-binary tests of the context plane (issue 5): `aura up` keeps the local host's asset file
//! current and its Guardian repairs (and audits) a corrupted file; `aura sensor --once`,
//! `aura validate` and `aura guardian` work offline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Aura, Run, aura_cmd};

fn write_config(home: &Path) {
    std::fs::write(
        home.join("aura.yaml"),
        "context:\n  sensor:\n    asset_id: test-host\n    interval_seconds: 1\n  guardian:\n    interval_seconds: 1\n",
    )
    .unwrap();
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(home: &Path, args: &[&str]) -> Run {
    let out = aura_cmd(home).args(args).output().unwrap();
    Run::from(args, out)
}

#[tokio::test]
async fn aura_up_keeps_the_host_file_current_and_the_guardian_repairs_and_audits() {
    let home = tempfile::tempdir().unwrap();
    write_config(home.path());
    // A corrupted file of another asset, waiting for the Guardian.
    let assets = home.path().join("data/assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(
        assets.join("broken.aav"),
        "[meta]\nasset_id = \"broken\nkind = \"host\"\n",
    )
    .unwrap();
    let aura = Aura::start_in(home.path(), "data");
    let file = assets.join("test-host.aav");
    wait_until("the host's asset file with every section", || {
        std::fs::read_to_string(&file).is_ok_and(|t| {
            ["[compute]", "[memory]", "[storage]", "[network]"]
                .iter()
                .all(|s| t.contains(s))
        })
    });
    let data = home.path().join("data");
    let data = data.to_str().unwrap();
    run(
        home.path(),
        &["--data-dir", data, "validate", file.to_str().unwrap()],
    )
    .code(0);
    wait_until("the guardian's repair", || {
        run(
            home.path(),
            &[
                "--data-dir",
                data,
                "validate",
                assets.join("broken.aav").to_str().unwrap(),
            ],
        )
        .code
            == Some(0)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let entries = aura
            .get("/api/v1/audit/entries?limit=1000")
            .await
            .to_string();
        if entries.contains("guardian.repair") && entries.contains("broken") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no guardian.repair audit entry: {entries}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = reqwest::get(aura.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "aura_asset_writes_total",
        "aura_guardian_repairs_total",
        "aura_sensor_sample_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    common::promtool_check(&metrics);
    let status = run(
        home.path(),
        &["--data-dir", data, "guardian", "status", "-o", "json"],
    )
    .code(0)
    .json();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["asset_id"] == "test-host")
    );
}

#[test]
fn sensor_once_validate_and_offline_repair() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("assets");
    let d = dir.to_str().unwrap();
    let out = run(
        home.path(),
        &["sensor", "--once", "--dir", d, "--asset-id", "side-1"],
    )
    .code(0)
    .json();
    assert_eq!(out["meta"]["asset_id"], "side-1");
    assert!(out["memory"]["used_percent"].is_number());
    let file = dir.join("side-1.aav");
    run(home.path(), &["validate", file.to_str().unwrap()]).code(0);
    // Corrupt it: `aura validate` fails (exit 1), `aura guardian repair` fixes it.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("[memory]", "[memory", 1)).unwrap();
    run(home.path(), &["validate", "--stale-after", "0", d]).code(1);
    run(
        home.path(),
        &[
            "--data-dir",
            home.path().to_str().unwrap(),
            "guardian",
            "repair",
            file.to_str().unwrap(),
        ],
    )
    .code(0);
    run(home.path(), &["validate", "--stale-after", "0", d]).code(0);
    // A path that does not exist is an error.
    run(
        home.path(),
        &["validate", home.path().join("nope.aav").to_str().unwrap()],
    )
    .code(1);
}

/// A child process whose stderr is collected by a thread (so waits are on what it printed).
struct Child {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Child {
    fn spawn(mut cmd: std::process::Command) -> Child {
        use std::io::Read as _;
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Child { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sections_of(path: &Path) -> Option<aura_context::aav::Document> {
    aura_context::aav::Document::parse(&std::fs::read_to_string(path).ok()?).ok()
}

/// Issue 5: `aura sensor --push` sends its updates to a running Aura, which decides (`file_write`
/// of the asset file), audits and writes them; bad pushes get 4xx codes; while Aura is down the
/// sensor spools and delivers again once it is back.
#[tokio::test]
async fn sensor_push_writes_through_a_running_aura_and_survives_its_restart() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let assets = data.join("assets");
    std::fs::create_dir_all(home.path().join("policies")).unwrap();
    common::write_policy(
        home.path(),
        "sensors.yaml",
        &format!(
            "levels:\n  sensor:\n    write: [\"{}/*.aav\"]\nagents:\n  edge-sensor: {{ level: sensor }}\n  other: {{ level: restricted }}\n",
            assets.display()
        ),
    );
    // No host sensor in `aura up`: the pushed asset is the only writer.
    std::fs::write(
        home.path().join("aura.yaml"),
        "context:\n  sensor:\n    enabled: false\n",
    )
    .unwrap();
    let mut aura = Aura::start_in(home.path(), "data");
    let token = aura.token("edge", "agent", Some("edge-sensor")).await;
    let token_file = home.path().join("sensor.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    let side = tempfile::tempdir().unwrap();
    let mut cmd = aura_cmd(side.path());
    cmd.args(["sensor", "--push", &aura.url, "--token-file"])
        .arg(&token_file)
        .args(["--asset-id", "edge-1", "--interval", "1"]);
    let sensor = Child::spawn(cmd);
    let file = assets.join("edge-1.aav");
    wait_until("the pushed asset file with every section", || {
        sections_of(&file).is_some_and(|d| {
            ["compute", "memory", "storage", "network"]
                .iter()
                .all(|s| d.section(s).is_some())
        })
    });
    let doc = sections_of(&file).unwrap();
    assert!(
        doc.schema_problems().is_empty(),
        "{:?}",
        doc.schema_problems()
    );
    assert_eq!(
        doc.stored_checksum(),
        Some(doc.computed_checksum().as_str())
    );
    assert!(doc.get("compute.cpu_percent_max").is_some());
    assert!(doc.sensor_status().iter().any(|(k, _)| *k == "compute"));
    // Push only: the sidecar wrote no local file.
    assert!(!side.path().join("aura-data/assets/edge-1.aav").exists());
    // The catalog sees it through its file watch.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = common::client()
            .get(aura.url("/api/v1/assets/edge-1"))
            .bearer_auth(aura.admin_token())
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            let body = resp.text().await.unwrap();
            if body.contains("cpu_percent") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET /api/v1/assets/edge-1 never showed the sensor's data"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Decided and audited as a file_write of the asset file.
    let entries = aura
        .get("/api/v1/audit/entries?limit=1000")
        .await
        .to_string();
    assert!(
        entries.contains("file_write") && entries.contains("edge-1.aav"),
        "no file_write audit entry for the push: {entries}"
    );

    // Bad pushes: machine-readable 4xx codes, nothing written.
    let url = |id: &str| aura.url(&format!("/api/v1/assets/{id}/sensor"));
    let cpu = serde_json::json!({"compute": {"cpu_percent": 1.0}});
    let (status, body) = common::post(
        &url("edge-1"),
        &token,
        serde_json::json!({"sections": {"secrets": {"a": 1}}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unknown_section")),
        "{body}"
    );
    let (status, body) = common::post(
        &url(".hidden"),
        &token,
        serde_json::json!({"sections": cpu}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_asset_id")),
        "{body}"
    );
    let (status, body) = common::post(
        &url("edge-1"),
        &token,
        serde_json::json!({"sections": {"compute": {"blob": "x".repeat(300 * 1024)}}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    let (status, body) = common::post(
        &url("edge-1"),
        &token,
        serde_json::json!({"sections": {"compute": {"gone": null}}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_section")),
        "{body}"
    );
    // An agent whose level may not write there: refused by the kernel (fail closed), file untouched.
    let other = aura.token("other", "agent", Some("other")).await;
    let before = std::fs::read_to_string(&file).unwrap();
    let (status, body) =
        common::post(&url("edge-2"), &other, serde_json::json!({"sections": cpu})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("write_refused")),
        "{body}"
    );
    assert!(!assets.join("edge-2.aav").exists());
    assert!(before.contains("[compute]"));

    // Aura goes away: the sensor spools; Aura comes back on the same address: delivery resumes.
    let addr = aura.addr.clone();
    aura.sigterm();
    let (status, _) = aura.wait(Duration::from_secs(30));
    assert!(status.success());
    wait_until("the sensor noticing Aura is gone", || {
        sensor.stderr().contains("spooling and retrying")
    });
    let stamp = |d: &aura_context::aav::Document| d.updated_at().map(|t| t.as_millis());
    let last = stamp(&sections_of(&file).unwrap());
    let mut up = aura_cmd(home.path());
    up.args([
        "up",
        "--listen",
        &addr,
        "--proxy-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(&data);
    let _again = Child::spawn(up);
    wait_until("delivery after the restart", || {
        sensor.stderr().contains("reachable again")
            && sections_of(&file).is_some_and(|d| stamp(&d) > last)
    });
    sensor.sigterm();
}
