//! Real-binary test of `aura up`'s periodic audit export (`audit.export`): a moto S3 server started here on a
//! free loopback port receives the sealed segments, checkpoints and verifier key, and the run is audited.
//! moto is installed by `scripts/services.sh`; without it this test fails.
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `bot` exists; its reads of long paths are denied by its level, and audited like any decision.
const POLICY: &str = r#"
agents:
  bot: { level: standard }
rules:
  - id: reads
    description: bot may read files
    when: { kind: file_read, agent: [bot] }
    then: allow
"#;

#[path = "../../aura-scan/tests/support/moto.rs"]
mod moto_server;
use moto_server::{Moto, start as moto};

/// Runs a boto3 snippet against the server; `s3` is the client.
fn boto(moto: &Moto, code: &str) -> String {
    let script = format!(
        "import boto3, json\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}",
        moto.endpoint
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The keys under `prefix/` in `bucket`.
fn keys(moto: &Moto) -> Vec<String> {
    let out = boto(
        moto,
        "r = s3.list_objects_v2(Bucket='audit', Prefix='prod/')\nprint(json.dumps([o['Key'] for o in r.get('Contents', [])]))",
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// With `audit.export` set, `aura up` exports at start and then every `interval_seconds`: once a segment is
/// sealed it arrives in the bucket with its checkpoints and the verifier key, and each run is audited.
#[tokio::test]
async fn aura_up_exports_the_audit_log_periodically() {
    let moto = moto();
    boto(&moto, "s3.create_bucket(Bucket='audit')");
    let home = home_with(&[("base.yaml", POLICY)]);
    std::fs::write(
        home.path().join("aura.yaml"),
        format!(
            "log:\n  level: warn\naudit:\n  segment_bytes: 1048576\n  checkpoint_interval_ms: 50\n  export:\n    url: s3://audit/prod\n    endpoint: {}\n    allow_http: true\n    interval_seconds: 1\n",
            moto.endpoint
        ),
    )
    .unwrap();
    let mut aura = Aura::start_in_with_envs(
        home.path(),
        "data",
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_ENDPOINT_URL", ""),
        ],
    );
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    // (`log.level` is `warn`: nobody reads the child's piped stderr before it exits.)

    // Enough decisions to seal the first 1 MiB segment: a ~4 KB path is logged twice per entry (resource and
    // target), so 240 decisions write about 2 MB.
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let url = aura.url("/api/v1/decide");
        let bot = bot.clone();
        workers.spawn(async move {
            for i in 0..30 {
                let path = format!("/data/{worker}-{i}/{}", "x".repeat(3900));
                let (status, d) =
                    post(&url, &bot, json!({"kind": "file_read", "target": path})).await;
                assert_eq!(status, 200, "{d}");
                assert!(d["audit_seq"].is_u64(), "{d}");
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }

    // The next export uploads the sealed segment, a checkpoint snapshot and the verifier key.
    let deadline = Instant::now() + Duration::from_secs(20);
    let uploaded = loop {
        let keys = keys(&moto);
        if keys.iter().any(|k| k.starts_with("prod/segments/")) {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "no segment exported within 20 s; bucket holds {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        uploaded.iter().any(|k| k == "prod/verifier.key"),
        "{uploaded:?}"
    );
    assert!(
        uploaded.iter().any(|k| k == "prod/manifest.json"),
        "{uploaded:?}"
    );
    assert!(
        uploaded.iter().any(|k| k.starts_with("prod/checkpoints/")),
        "{uploaded:?}"
    );
    let manifest: Value = serde_json::from_str(&boto(
        &moto,
        "print(s3.get_object(Bucket='audit', Key='prod/manifest.json')['Body'].read().decode())",
    ))
    .unwrap();
    let objects = manifest["objects"].as_array().unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o["key"].as_str().unwrap().starts_with("segments/")),
        "{manifest}"
    );

    // The run that uploaded the segment is in the audit log, without credentials.
    let deadline = Instant::now() + Duration::from_secs(10);
    let export = loop {
        let size = aura.get("/api/v1/audit/entries?limit=1").await["tree_size"]
            .as_u64()
            .unwrap();
        let page = aura
            .get(&format!(
                "/api/v1/audit/entries?limit=1000&from_seq={}",
                size.saturating_sub(1000)
            ))
            .await;
        let found = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["entry"]["action"] == "audit.export"
                    && e["entry"]["details"]["uploaded"]
                        .as_u64()
                        .is_some_and(|n| n > 0)
            })
            .map(|e| e["entry"].clone());
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no audit.export entry with uploads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(export["details"]["url"], "s3://audit/prod", "{export}");
    assert_eq!(export["outcome"], "success", "{export}");
    assert_eq!(export["actor"]["type"], "system", "{export}");
    assert!(!export.to_string().contains("testing"), "{export}");

    // The counter is exposed, and shutdown stops the task cleanly.
    let metrics = client()
        .get(aura.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("aura_audit_exports_total{result=\"ok\"}"),
        "{metrics}"
    );
    promtool_check(&metrics);
    aura.sigterm();
    let (status, stderr) = aura.wait(Duration::from_secs(15));
    assert!(status.success(), "{stderr}");
}
