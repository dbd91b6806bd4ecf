//! The catalog's cache tiers and discovery through the real binary: `aura up` with a `cache:` section writes
//! every asset version to the Redis tier and archives it to an S3-compatible cold tier (a local moto server),
//! `aura cache stats` reports the three tiers, and (feature `k8s`) `discovery:` runs the Kubernetes scanner at
//! start against a fake API server so pods become catalog assets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../aura-scan/tests/support/moto.rs"]
mod moto;

use std::process::Command;
use std::time::{Duration, Instant};

use aura_catalog::files::{AssetDir, AssetSink as _};
use aura_catalog::{Asset, AssetKind, Health};
use common::Aura;
use serde_json::Value;

fn host(id: &str, cpu: f64) -> Asset {
    let mut a = Asset::new(id, AssetKind::Host, id, "2026-11-22T02:00:00Z");
    a.set_health(Health::Healthy);
    let mut c = serde_json::Map::new();
    c.insert("cpu_percent".into(), serde_json::json!(cpu));
    a.set_section("compute", c);
    a
}

/// Polls `GET /api/v1/cache` until `done` holds, with a deadline.
async fn cache_until(aura: &Aura, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = aura.get("/api/v1/cache").await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn boto_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let script = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\nfor o in s3.list_objects_v2(Bucket='{bucket}', Prefix='{prefix}').get('Contents', []): print(o['Key'])"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn up_archives_history_to_the_cold_tier_and_writes_redis() {
    let moto = moto::start();
    let made = Command::new("python3")
        .args(["-c", &format!(
            "import boto3\nboto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='aura-history')",
            moto.endpoint
        )])
        .status()
        .unwrap();
    assert!(made.success());
    let home = tempfile::tempdir().unwrap();
    let prefix = format!("auratest:{}:", std::process::id());
    std::fs::write(
        home.path().join("aura.yaml"),
        format!(
            "context:\n  sensor:\n    enabled: false\ncache:\n  hot_capacity: 100\n  redis_url: redis://127.0.0.1:6379/0\n  redis_prefix: \"{prefix}\"\n  cold:\n    url: s3://aura-history/fleet\n    endpoint: {}\n    allow_http: true\n",
            moto.endpoint
        ),
    )
    .unwrap();
    let aura = Aura::start_in_with_envs(
        home.path(),
        "data",
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    let dir = AssetDir::open(&aura.data_dir).unwrap();
    dir.write(&host("db-01", 10.0)).unwrap();
    let v = cache_until(&aura, "first version archived", |v| {
        v["cold"]["objects"].as_u64() == Some(1) && v["redis"]["entries"].as_u64() == Some(1)
    })
    .await;
    assert_eq!(v["hot"]["entries"], 1);
    assert_eq!(v["cold"]["bucket"], "aura-history");
    assert_eq!(v["activity"]["archived"], 1);
    // A new version is archived next to the first one; the old one is never overwritten.
    dir.write(&host("db-01", 95.0)).unwrap();
    cache_until(&aura, "second version archived", |v| {
        v["cold"]["objects"].as_u64() == Some(2)
    })
    .await;
    let keys = boto_keys(&moto.endpoint, "aura-history", "fleet/db-01/");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.ends_with(".aav")), "{keys:?}");

    let stats = aura.cli(&["cache", "stats", "-o", "json"]).code(0).json();
    assert_eq!(stats["source"], "server");
    assert_eq!(stats["cold"]["objects"], 2);
    assert_eq!(stats["redis"]["entries"], 1);
    let table = aura.cli(&["cache", "stats"]).code(0).stdout;
    assert!(
        table.contains("cold") && table.contains("redis") && table.contains("hot"),
        "{table}"
    );

    // Removing the asset invalidates it in Redis; its archived history stays.
    std::fs::remove_file(dir.path_of("db-01")).unwrap();
    cache_until(&aura, "redis invalidated", |v| {
        v["redis"]["entries"].as_u64() == Some(0)
    })
    .await;
    assert_eq!(
        boto_keys(&moto.endpoint, "aura-history", "fleet/db-01/").len(),
        2
    );
}

#[test]
fn bad_cache_section_stops_up_with_a_position() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("aura.yaml"),
        "cache:\n  redis_url: http://127.0.0.1:6379\n",
    )
    .unwrap();
    let out = common::aura_cmd(home.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("aura.yaml:2:14"), "{err}");
    assert!(err.contains("not a Redis URL"), "{err}");
}

#[cfg(feature = "k8s")]
#[path = "../../aura-scan/tests/support/fake_k8s.rs"]
mod fake_k8s;

/// `discovery:` with the Kubernetes scanner: `aura up` scans at start and the pods become catalog assets;
/// `aura scan --scanner kubernetes` with a namespace and a selector writes just those.
#[cfg(feature = "k8s")]
// Multi-threaded: the fake API server runs on this runtime while the test blocks on `aura scan`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_runs_the_kubernetes_scanner_at_start() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../aura-scan/tests/fixtures/k8s");
    let token = "scanner-token";
    let server = fake_k8s::start(fixtures, token).await;
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = fake_k8s::kubeconfig(home.path(), &server.url, token);
    std::fs::write(
        home.path().join("aura.yaml"),
        format!(
            "context:\n  sensor:\n    enabled: false\ndiscovery:\n  scanners: [kubernetes]\n  kubernetes:\n    kubeconfig: {}\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    let aura = Aura::start_in(home.path(), "data");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = aura
            .cli(&["query", "kind = pod", "-o", "json"])
            .code(0)
            .json();
        if out["total"] == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "pods did not arrive: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = aura
        .cli(&[
            "query",
            "kubernetes.namespace = shop and kind = service",
            "-o",
            "json",
        ])
        .code(0)
        .json();
    assert_eq!(
        out["total"], 5,
        "3 services, 1 deployment, 1 statefulset: {out}"
    );

    let other = tempfile::tempdir().unwrap();
    let out = common::aura_cmd(other.path())
        .args(["scan", "--scanner", "k8s", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["-n", "monitoring", "-l", "app=node-exporter", "--data-dir"])
        .arg(other.path().join("data"))
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["written"], 2, "{report}");
    assert!(
        other
            .path()
            .join("data/assets/k8s-kind-shop-monitoring-ds-node-exporter.aav")
            .exists()
    );
}
