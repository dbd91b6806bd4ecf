//! The Kubernetes scanner (feature `k8s`) through `kube` against a fake API server speaking the real Kubernetes
//! API JSON (List fixtures in `tests/fixtures/k8s/`, written from the documented API shapes), reached through a
//! kubeconfig with a bearer token: pods, services, deployments, statefulsets and daemonsets, the namespace filter,
//! label selectors, annotations, per-namespace errors and clean skips.
#![cfg(feature = "k8s")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/fake_k8s.rs"]
mod fake_k8s;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aura_catalog::{Asset, AssetKind, Health};
use aura_scan::kubernetes::{KubernetesScanner, KubernetesSettings};
use aura_scan::{NoProgress, ScanContext, ScanError, Scanner};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.scanner-token-abc123";

fn ctx() -> ScanContext {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut c = ScanContext::new(Arc::new(NoProgress));
    c.now = "2026-11-22T02:00:00Z".into();
    c
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s")
}

fn by_id(assets: &[Asset]) -> HashMap<&str, &Asset> {
    assets.iter().map(|a| (&*a.id, a)).collect()
}

#[tokio::test]
async fn every_namespace_pods_services_and_workloads() {
    let server = fake_k8s::start(fixtures(), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let scanner = KubernetesScanner::new(KubernetesSettings {
        kubeconfig: Some(fake_k8s::kubeconfig(dir.path(), &server.url, TOKEN)),
        ..KubernetesSettings::default()
    });
    let out = scanner.scan(&ctx()).await.unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let count = |kind: AssetKind| out.assets.iter().filter(|a| a.kind == kind).count();
    assert_eq!(count(AssetKind::Pod), 5);
    assert_eq!(
        count(AssetKind::Service),
        4 + 2 + 1 + 1,
        "services, deployments, statefulsets, daemonsets"
    );
    let by = by_id(&out.assets);

    let web = by["k8s-kind-shop-shop-web-7d4b9c8f6-abcde"];
    assert_eq!(web.kind, AssetKind::Pod);
    assert_eq!(web.health, Health::Healthy);
    assert_eq!(web.host.as_deref(), Some("worker-1"));
    assert_eq!(web.parent.as_deref(), Some("k8s-kind-shop-shop-deploy-web"));
    let pod = &web.doc["pod"];
    assert_eq!(pod["phase"], "Running");
    assert_eq!(pod["ready"], "1/1");
    assert_eq!(pod["pod_ip"], "10.244.1.23");
    assert_eq!(pod["qos_class"], "Burstable");
    assert_eq!(pod["images"], serde_json::json!(["ghcr.io/acme/web:2.4.1"]));
    assert_eq!(pod["container_ports"], serde_json::json!([8080]));
    assert_eq!(pod["cpu_requests"], serde_json::json!(["web=250m"]));
    assert_eq!(
        pod["env_names"],
        serde_json::json!(["API_TOKEN", "DATABASE_PASSWORD", "PORT"])
    );
    let k = &web.doc["kubernetes"];
    assert_eq!(k["cluster"], "kind-shop");
    assert_eq!(k["namespace"], "shop");
    assert_eq!(k["server_version"], "v1.31.4");
    assert_eq!(k["owner_kind"], "ReplicaSet");
    assert_eq!(web.doc["labels"]["tier"], "frontend");
    assert_eq!(web.doc["annotations"]["prometheus.io/scrape"], "true");
    assert!(
        web.doc["annotations"]
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_none(),
        "last-applied-configuration can hold env values and is dropped"
    );

    let crashing = by["k8s-kind-shop-shop-web-7d4b9c8f6-fghij"];
    assert_eq!(crashing.health, Health::Unhealthy);
    assert_eq!(crashing.doc["pod"]["restart_count"], 7);
    assert_eq!(
        crashing.doc["pod"]["waiting_reasons"],
        serde_json::json!(["CrashLoopBackOff"])
    );
    assert_eq!(
        by["k8s-kind-shop-shop-db-0"].parent.as_deref(),
        Some("k8s-kind-shop-shop-sts-db")
    );
    let exporter = by["k8s-kind-shop-monitoring-node-exporter-x7k2p"];
    assert_eq!(exporter.health, Health::Degraded, "pending");
    assert_eq!(
        exporter.parent.as_deref(),
        Some("k8s-kind-shop-monitoring-ds-node-exporter")
    );

    let deploy = by["k8s-kind-shop-shop-deploy-web"];
    assert_eq!(deploy.health, Health::Degraded, "1 of 2 ready");
    assert_eq!(deploy.doc["workload"]["workload"], "deployment");
    assert_eq!(deploy.doc["workload"]["desired"], 2);
    assert_eq!(deploy.doc["workload"]["ready"], 1);
    assert_eq!(deploy.doc["workload"]["strategy"], "RollingUpdate");
    assert_eq!(
        deploy.doc["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );
    assert_eq!(
        by["k8s-kind-shop-kube-system-deploy-coredns"].health,
        Health::Healthy
    );
    assert_eq!(
        by["k8s-kind-shop-shop-sts-db"].doc["workload"]["service_name"],
        "db"
    );
    let ds = by["k8s-kind-shop-monitoring-ds-node-exporter"];
    assert_eq!(ds.doc["workload"]["desired"], 3);
    assert_eq!(ds.health, Health::Degraded);

    let svc = by["k8s-kind-shop-shop-svc-web"];
    assert_eq!(svc.doc["service"]["type"], "ClusterIP");
    assert_eq!(svc.doc["service"]["cluster_ip"], "10.96.120.15");
    assert_eq!(
        svc.doc["service"]["ports"],
        serde_json::json!(["80->http/TCP"])
    );
    assert_eq!(svc.doc["service"]["selector"], "app=web,tier=frontend");
    assert_eq!(svc.doc["annotations"]["team"], "storefront");
    let lb = by["k8s-kind-shop-shop-svc-web-public"];
    assert_eq!(
        lb.doc["service"]["ports"],
        serde_json::json!(["443:31443->8080/TCP"])
    );
    assert_eq!(lb.health, Health::Degraded, "no load balancer address yet");

    for a in &out.assets {
        let text = a.to_toml().unwrap();
        for secret in ["s3cr3t-db-pw", TOKEN, "last-applied"] {
            assert!(!text.contains(secret), "{secret} leaked into {}", a.id);
        }
        aura_catalog::asset::validate_id(&a.id).unwrap();
    }
    // One list per resource over every namespace, with the token.
    let seen = server.requests.lock().unwrap().clone();
    for path in [
        "/api/v1/pods",
        "/api/v1/services",
        "/apis/apps/v1/deployments",
        "/apis/apps/v1/statefulsets",
        "/apis/apps/v1/daemonsets",
    ] {
        assert!(
            seen.iter().any(|r| r.starts_with(path)),
            "{path} not requested: {seen:?}"
        );
    }
}

#[tokio::test]
async fn namespace_filter_and_label_selector() {
    let server = fake_k8s::start(fixtures(), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let scanner = KubernetesScanner::new(KubernetesSettings {
        kubeconfig: Some(fake_k8s::kubeconfig(dir.path(), &server.url, TOKEN)),
        context: Some("test".into()),
        namespaces: vec!["shop".into(), "forbidden".into()],
        label_selector: Some("app=web,exposure!=public".into()),
    });
    let out = scanner.scan(&ctx()).await.unwrap();
    let mut ids: Vec<&str> = out.assets.iter().map(|a| &*a.id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "k8s-kind-shop-shop-deploy-web",
            "k8s-kind-shop-shop-svc-web",
            "k8s-kind-shop-shop-web-7d4b9c8f6-abcde",
            "k8s-kind-shop-shop-web-7d4b9c8f6-fghij",
        ]
    );
    // The forbidden namespace is a per-target error for each resource, not a failed scan.
    assert_eq!(out.errors.len(), 5, "{:?}", out.errors);
    assert!(
        out.errors
            .iter()
            .any(|e| e.target == "pods in namespace forbidden" && e.message.contains("forbidden"))
    );
    let seen = server.requests.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("/api/v1/namespaces/shop/pods?")
                && r.contains("labelSelector=app%3Dweb")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|r| r.starts_with("/api/v1/pods")),
        "no cluster-wide list: {seen:?}"
    );
}

#[tokio::test]
async fn wrong_token_is_unavailable_not_a_crash() {
    let server = fake_k8s::start(fixtures(), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let scanner = KubernetesScanner::new(KubernetesSettings {
        kubeconfig: Some(fake_k8s::kubeconfig(dir.path(), &server.url, "wrong-token")),
        ..KubernetesSettings::default()
    });
    match scanner.scan(&ctx()).await {
        Err(ScanError::Unavailable(why)) => assert!(why.contains("not reachable"), "{why}"),
        other => panic!("expected a clean skip, got {other:?}"),
    }
}

#[tokio::test]
async fn no_cluster_is_a_clean_skip() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scanner = KubernetesScanner::new(KubernetesSettings {
        kubeconfig: Some(fake_k8s::kubeconfig(
            dir.path(),
            &format!("http://127.0.0.1:{port}"),
            TOKEN,
        )),
        ..KubernetesSettings::default()
    });
    assert!(matches!(
        scanner.scan(&ctx()).await,
        Err(ScanError::Unavailable(_))
    ));
    let missing = KubernetesScanner::new(KubernetesSettings {
        kubeconfig: Some(dir.path().join("no-such-kubeconfig")),
        ..KubernetesSettings::default()
    });
    match missing.scan(&ctx()).await {
        Err(ScanError::Unavailable(why)) => assert!(why.contains("no-such-kubeconfig"), "{why}"),
        other => panic!("expected a clean skip, got {other:?}"),
    }
}
