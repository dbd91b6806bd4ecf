//! The catalog through the real binary: assets in the data dir are served by `aura up`, `aura query` answers
//! (and exits 2 on a bad query), `aura watch` in plain mode prints diffs as asset files change, the HTTP routes
//! answer, `aura scan` writes assets the running server picks up, and `aura instrument` writes hardened manifests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use aura_catalog::files::{AssetDir, AssetSink as _};
use aura_catalog::{Asset, AssetKind, Health};
use common::{Aura, aura_cmd};

fn container(id: &str, cpu: f64, health: Health) -> Asset {
    let mut a = Asset::new(id, AssetKind::Container, id, "2026-11-21T10:00:00Z");
    a.set_health(health);
    a.set_host("web-01");
    let mut c = serde_json::Map::new();
    c.insert("cpu_percent".into(), serde_json::json!(cpu));
    a.set_section("compute", c);
    a
}

fn seeded() -> (tempfile::TempDir, Aura, AssetDir) {
    let home = tempfile::tempdir().unwrap();
    let dir = AssetDir::open(&home.path().join("data")).unwrap();
    dir.write(&container("api-1", 12.0, Health::Unhealthy))
        .unwrap();
    dir.write(&container("web-1", 40.0, Health::Healthy))
        .unwrap();
    let mut host = Asset::new("web-01", AssetKind::Host, "web-01", "2026-11-21T10:00:00Z");
    host.set_health(Health::Degraded);
    dir.write(&host).unwrap();
    // Only the seeded assets: the server's own host sensor would add this machine as a fourth.
    std::fs::write(
        home.path().join("aura.yaml"),
        "context:\n  sensor:\n    enabled: false\n",
    )
    .unwrap();
    let aura = Aura::start_in(home.path(), "data");
    (home, aura, dir)
}

#[tokio::test]
async fn query_routes_status_and_errors() {
    let (_home, aura, _dir) = seeded();
    let out = aura
        .cli(&["query", "kind = container", "-o", "json"])
        .code(0)
        .json();
    assert_eq!(out["total"], 2);
    assert_eq!(out["rows"][0]["meta"]["asset_id"], "api-1");
    let out = aura
        .cli(&["query", "count() by kind", "-o", "json"])
        .code(0)
        .json();
    assert_eq!(out["kind"], "groups");
    let table = aura
        .cli(&["query", "health != healthy", "sort", "by", "id"])
        .code(0);
    assert!(
        table.stdout.contains("api-1") && table.stdout.contains("web-01"),
        "{}",
        table.stdout
    );
    let bad = aura.cli(&["query", "kind = container limt 3"]).code(2);
    assert!(
        bad.stderr.contains("column 18") && bad.stderr.contains("did you mean `limit`"),
        "{}",
        bad.stderr
    );
    let offline = aura
        .cli(&["query", "--offline", "kind = host", "-o", "json"])
        .code(0)
        .json();
    assert_eq!(offline["total"], 1);

    let list = aura.get("/api/v1/assets?kind=container&limit=1").await;
    assert_eq!(
        (list["total"].as_u64(), list["returned"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(list["truncated"], true);
    let one = aura.get("/api/v1/assets/web-01").await;
    assert_eq!(one["meta"]["kind"], "host");
    let summary = aura.get("/api/v1/health/summary").await;
    assert_eq!(summary["total"], 3);
    assert_eq!(summary["by_health"]["unhealthy"], 1);
    let unhealthy = aura.get("/api/v1/health/unhealthy").await;
    assert_eq!(unhealthy["total"], 2);
    let metrics = aura.get("/api/v1/metrics/system").await;
    assert_eq!(metrics["assets"], 3);
    assert_eq!(metrics["cpu_percent"]["max"], 40);
    let (code, body) = common::post(
        &aura.url("/api/v1/query"),
        &aura.admin_token(),
        serde_json::json!({"query": "kind ="}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["code"], "invalid_query");
    let missing = common::client()
        .get(aura.url("/api/v1/assets/nope"))
        .bearer_auth(aura.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let (code, advice) = common::post(
        &aura.url("/api/v1/advise"),
        &aura.admin_token(),
        serde_json::json!({"helper": "is_safe_to_deploy", "service": "api-1"}),
    )
    .await;
    assert_eq!(code, 200, "{advice}");
    assert_eq!(advice["verdict"], "unsafe");
    assert!(!advice["evidence"].as_array().unwrap().is_empty());
    assert!(!advice["blind_spots"].as_array().unwrap().is_empty());

    let status = aura.cli(&["status", "-o", "json"]).code(0).json();
    assert_eq!(status["assets"]["total"], 3);
}

#[test]
fn watch_prints_plain_diffs_as_files_change() {
    let (_home, aura, dir) = seeded();
    let mut child = aura_cmd(aura.home())
        .env("AURA_URL", &aura.url)
        .arg("--data-dir")
        .arg(&aura.data_dir)
        .args(["watch", "kind = container and cpu > 80", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // stdout is a pipe, not a terminal: plain lines. The first says the subscription is live.
    assert_eq!(lines.next().unwrap().unwrap(), "watching (ready)");
    dir.write(&container("web-1", 95.0, Health::Healthy))
        .unwrap();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "added web-1 kind=container health=healthy"
    );
    dir.write(&container("web-1", 97.5, Health::Degraded))
        .unwrap();
    let changed = lines.next().unwrap().unwrap();
    assert!(changed.starts_with("changed web-1 "), "{changed}");
    assert!(
        changed.contains("compute.cpu_percent: 95 -> 97.5"),
        "{changed}"
    );
    assert!(
        changed.contains("meta.health: healthy -> degraded"),
        "{changed}"
    );
    dir.delete("web-1").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "removed web-1 (deleted)");
    let status = child.wait().unwrap();
    assert!(status.success());
    // A bad filter is a usage error.
    let bad = aura.cli(&["watch", "cpu >"]).code(2);
    assert!(bad.stderr.contains("invalid filter"), "{}", bad.stderr);
}

#[tokio::test]
async fn scan_writes_assets_the_server_follows() {
    let (_home, aura, _dir) = seeded();
    let out = aura
        .cli(&["scan", "--scanner", "local", "-o", "json"])
        .code(0)
        .json();
    assert_eq!(out["written"], 1);
    let id = out["ids"][0].as_str().unwrap().to_owned();
    // The server follows the directory: poll with a deadline until the new host is served.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let hosts = aura
            .cli(&["query", "kind = host and exists cpu", "-o", "json"])
            .code(0)
            .json();
        if hosts["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["meta"]["asset_id"] == id.as_str())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scanned host never reached the catalog"
        );
        std::thread::yield_now();
    }
    let bad = aura.cli(&["scan", "--kind", "toaster"]).code(2);
    assert!(bad.stderr.contains("toaster"), "{}", bad.stderr);
}

#[test]
fn instrument_writes_hardened_manifests() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("gen");
    let run = aura_cmd(home.path())
        .args(["instrument", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success());
    let ds = std::fs::read_to_string(out.join("kubernetes/daemonset.yaml")).unwrap();
    for needle in [
        "runAsUser: 1000",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
        "localhostProfile: profiles/aura-sensor.json",
        "kind: DaemonSet",
    ] {
        assert!(ds.contains(needle), "daemonset lacks {needle}");
    }
    let seccomp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("kubernetes/seccomp/aura-sensor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
    let unit = std::fs::read_to_string(out.join("systemd/aura-sensor.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/aura sensor")
            && unit.contains("CapabilityBoundingSet=")
    );
    assert!(
        std::fs::read_to_string(out.join("Containerfile"))
            .unwrap()
            .contains("USER 1000:1000")
    );
    // Existing files are not overwritten without --force.
    let again = aura_cmd(home.path())
        .args(["instrument", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
}
