//! Scanners against their real wire formats: Docker through bollard against a local fake Docker Engine API
//! serving fixtures in the API v1.47 format, systemd and virsh output parsing, and AWS (EC2, ECS, RDS, Lambda)
//! through the real APIs against a moto server seeded with boto3 (installed by `scripts/services.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/moto.rs"]
mod moto;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use aura_catalog::{AssetKind, Health};
use aura_scan::{NoProgress, ScanContext, Scanner};

fn ctx() -> ScanContext {
    let mut c = ScanContext::new(Arc::new(NoProgress));
    c.local_host = "test-host".into();
    c
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn systemd_units_become_services() {
    let text = std::fs::read_to_string(fixtures().join("systemctl-list-units.json")).unwrap();
    let assets =
        aura_scan::systemd::units_to_assets(&text, "web-01", "2026-11-21T10:00:00Z").unwrap();
    let by: std::collections::HashMap<&str, &aura_catalog::Asset> =
        assets.iter().map(|a| (a.name.as_str(), a)).collect();
    assert_eq!(assets.len(), 3, "sockets and not-found units are left out");
    assert_eq!(by["ssh.service"].health, Health::Healthy);
    assert_eq!(by["postgresql@17-main.service"].health, Health::Unhealthy);
    assert_eq!(by["cron.service"].health, Health::Unknown);
    assert_eq!(&*by["ssh.service"].id, "web-01-ssh.service");
    assert_eq!(by["ssh.service"].host.as_deref(), Some("web-01"));
}

#[test]
fn virsh_dominfo_parses() {
    let info = aura_scan::libvirt::parse_dominfo(
        "Id:             3\nName:           db-vm\nState:          running\nCPU(s):         4\nMax memory:     8388608 KiB\n",
    );
    assert_eq!(info["state"], "running");
    assert_eq!(info["cpu_s"], 4);
    assert_eq!(info["max_memory"], 8388608);
}

#[tokio::test]
async fn libvirt_skips_cleanly_without_virsh() {
    let scanner = aura_scan::libvirt::LibvirtScanner::new(Some("test:///nonexistent".into()));
    // Either virsh is absent (skipped) or cannot connect (skipped): never an error, never a panic.
    match scanner.scan(&ctx()).await {
        Err(aura_scan::ScanError::Unavailable(_)) => {}
        Ok(out) => assert!(out.assets.iter().all(|a| a.kind == AssetKind::Vm)),
        Err(other) => panic!("expected a clean skip, got {other}"),
    }
}

/// A fake Docker Engine: answers the API paths bollard calls with the fixtures, whatever the version prefix.
async fn fake_docker() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{StatusCode, Uri};
    let dir = fixtures().join("docker");
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let dir = dir.clone();
        async move {
            let path = uri.path();
            // Strip `/v1.xx`.
            let path = match path.strip_prefix("/v1.") {
                Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
                None => path,
            };
            let file = match path {
                "/info" => "info.json".to_owned(),
                "/containers/json" => "containers.json".to_owned(),
                "/images/json" => "images.json".to_owned(),
                p if p.starts_with("/containers/") && p.ends_with("/json") => {
                    format!(
                        "inspect-{}.json",
                        &p["/containers/".len()..p.len() - "/json".len()]
                    )
                }
                _ => {
                    return (
                        StatusCode::NOT_FOUND,
                        r#"{"message":"page not found"}"#.to_owned(),
                    );
                }
            };
            match std::fs::read_to_string(dir.join(&file)) {
                Ok(body) => (StatusCode::OK, body),
                Err(_) => (
                    StatusCode::NOT_FOUND,
                    r#"{"message":"No such container"}"#.to_owned(),
                ),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("tcp://{addr}"), server)
}

#[tokio::test]
async fn docker_containers_through_the_engine_api() {
    let (host, server) = fake_docker().await;
    let scanner = aura_scan::docker::DockerScanner::new(Some(host));
    let out = scanner.scan(&ctx()).await.unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.assets.len(), 3);
    let by: std::collections::HashMap<&str, &aura_catalog::Asset> =
        out.assets.iter().map(|a| (a.name.as_str(), a)).collect();
    let web = by["web"];
    assert_eq!(&*web.id, "docker-docker-host-1-web");
    assert_eq!(web.kind, AssetKind::Container);
    assert_eq!(web.health, Health::Healthy);
    assert_eq!(web.host.as_deref(), Some("docker-host-1"));
    let c = &web.doc["container"];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(
        c["image_tags"],
        serde_json::json!(["nginx:1.27", "nginx:latest"])
    );
    assert_eq!(c["ports"], serde_json::json!([80, 443]));
    assert_eq!(c["published"], serde_json::json!(["0.0.0.0:8080->80/tcp"]));
    assert_eq!(c["networks"], serde_json::json!(["shop_default"]));
    assert_eq!(c["ip_addresses"], serde_json::json!(["172.18.0.2"]));
    assert_eq!(c["volumes"], serde_json::json!(["web-static"]));
    assert_eq!(c["compose_project"], "shop");
    assert_eq!(web.doc["labels"]["com.docker.compose.service"], "web");
    let api = by["api"];
    assert_eq!(api.health, Health::Unhealthy);
    assert_eq!(api.doc["container"]["restart_count"], 3);
    assert_eq!(
        api.doc["container"]["env_names"],
        serde_json::json!(["DATABASE_URL", "API_TOKEN", "PORT"])
    );
    assert_eq!(
        by["migrate"].health,
        Health::Unhealthy,
        "exited with code 1"
    );
    // No environment value reaches the asset, in any section.
    for a in &out.assets {
        let text = a.to_toml().unwrap();
        for secret in ["s3cr3t-pw", "tok_live_abcdef123456", "shop.example"] {
            assert!(!text.contains(secret), "{secret} leaked into {}", a.id);
        }
    }
    server.abort();
}

#[tokio::test]
async fn docker_skips_cleanly_when_no_daemon_answers() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scanner = aura_scan::docker::DockerScanner::new(Some(format!("tcp://127.0.0.1:{port}")));
    assert!(matches!(
        scanner.scan(&ctx()).await,
        Err(aura_scan::ScanError::Unavailable(_))
    ));
}

const SEED: &str = r#"
import boto3, io, zipfile
kw = dict(endpoint_url=EP, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
ec2 = boto3.client('ec2', **kw)
img = ec2.describe_images()['Images'][0]['ImageId']
ec2.run_instances(ImageId=img, MinCount=2, MaxCount=2, InstanceType='t3.micro',
    TagSpecifications=[{'ResourceType': 'instance', 'Tags': [{'Key': 'Name', 'Value': 'web'}, {'Key': 'env', 'Value': 'prod'}]}])
rds = boto3.client('rds', **kw)
rds.create_db_instance(DBInstanceIdentifier='orders-db', DBInstanceClass='db.t3.micro', Engine='postgres',
    MasterUsername='admin', MasterUserPassword='hunter2-secret', AllocatedStorage=20)
ecs = boto3.client('ecs', **kw)
ecs.create_cluster(clusterName='shop')
ecs.register_task_definition(family='api', containerDefinitions=[{'name': 'api', 'image': 'api:1', 'memory': 256}])
ecs.create_service(cluster='shop', serviceName='api', taskDefinition='api', desiredCount=2)
iam = boto3.client('iam', **kw)
role = iam.create_role(RoleName='lambda-role', AssumeRolePolicyDocument='{}')['Role']['Arn']
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('index.py', 'def handler(e, c): return 1')
lam = boto3.client('lambda', **kw)
lam.create_function(FunctionName='resize', Runtime='python3.12', Role=role, Handler='index.handler',
    Code={'ZipFile': buf.getvalue()}, Environment={'Variables': {'BUCKET': 'images', 'SIGNING_KEY': 'sk_live_987'}})
"#;

#[tokio::test]
async fn aws_ec2_ecs_rds_lambda_through_the_real_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let moto = moto::start();
    let out = Command::new("python3")
        .args(["-c", &format!("EP = '{}'\n{SEED}", moto.endpoint)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "seeding moto failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scanner = aura_scan::aws::AwsScanner::new(Some(aura_scan::aws::AwsSettings {
        regions: vec!["us-east-1".into()],
        endpoint: Some(moto.endpoint.clone()),
        access_key: "testing".into(),
        secret_key: "testing".into(),
        session_token: None,
        services: vec![],
    }));
    let out = scanner.scan(&ctx()).await.unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let count = |svc: &str| {
        out.assets
            .iter()
            .filter(|a| a.doc["cloud"]["service"] == svc)
            .count()
    };
    assert_eq!(count("ec2"), 2);
    assert_eq!(count("rds"), 1);
    assert_eq!(count("ecs"), 1);
    assert_eq!(count("lambda"), 1);
    let vm = out.assets.iter().find(|a| a.kind == AssetKind::Vm).unwrap();
    assert_eq!(vm.name, "web");
    assert_eq!(vm.doc["labels"]["env"], "prod");
    assert_eq!(vm.doc["cloud"]["instance_type"], "t3.micro");
    assert_eq!(vm.health, Health::Healthy);
    let db = out
        .assets
        .iter()
        .find(|a| a.doc["cloud"]["service"] == "rds")
        .unwrap();
    assert_eq!(db.doc["cloud"]["engine"], "postgres");
    let svc = out
        .assets
        .iter()
        .find(|a| a.doc["cloud"]["service"] == "ecs")
        .unwrap();
    assert_eq!(svc.doc["cloud"]["cluster"], "shop");
    assert_eq!(svc.doc["cloud"]["desired_count"], 2);
    let f = out
        .assets
        .iter()
        .find(|a| a.doc["cloud"]["service"] == "lambda")
        .unwrap();
    assert_eq!(
        f.doc["cloud"]["env_names"],
        serde_json::json!(["BUCKET", "SIGNING_KEY"])
    );
    for a in &out.assets {
        let text = a.to_toml().unwrap();
        assert!(
            !text.contains("sk_live_987") && !text.contains("hunter2-secret"),
            "secret leaked into {}",
            a.id
        );
    }
}

#[tokio::test]
async fn aws_without_credentials_is_skipped() {
    let scanner = aura_scan::aws::AwsScanner::new(None);
    assert!(matches!(
        scanner.scan(&ctx()).await,
        Err(aura_scan::ScanError::Unavailable(_))
    ));
}
