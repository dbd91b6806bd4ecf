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
