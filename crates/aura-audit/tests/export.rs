//! Export to a real S3-compatible server (moto, started here on a free loopback port), then local retention and
//! legal hold against what was exported. moto is installed by `scripts/services.sh`; without it these tests fail.
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aura_audit::export::{ExportError, ExportTarget, LockMode, Retention, S3Credentials, export};
use aura_audit::retention::{self, RetentionPolicy};
use aura_audit::{AuditLog, verify};
use aura_core::Timestamp;

#[path = "../../aura-scan/tests/support/moto.rs"]
mod moto_server;
use moto_server::{Moto, start as moto};

/// Runs a boto3 snippet against the server; `s3` is the client.
fn boto(moto: &Moto, code: &str) -> String {
    let script = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}",
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

/// A closed log with several sealed segments.
fn write_log(root: &Path, n: u64) -> std::path::PathBuf {
    let cfg = common::config(root, 4096);
    let dir = cfg.dir.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (log, _) = AuditLog::open(cfg).unwrap();
        for i in 0..n {
            log.append(common::entry(i, "planner")).await.unwrap();
            // A checkpoint every 5 entries, so every sealed segment boundary is covered by one (appends this fast
            // could otherwise all land before the first periodic checkpoint, and export uploads only checkpoints
            // that cover nothing beyond the sealed segments).
            if i % 5 == 4 {
                log.checkpoint_now().await.unwrap();
            }
        }
        log.close().await.unwrap();
    });
    dir
}

fn target(moto: &Moto, bucket: &str, retention: Option<Retention>) -> ExportTarget {
    ExportTarget {
        url: format!("s3://{bucket}/audit/prod"),
        endpoint: Some(moto.endpoint.clone()),
        region: "us-east-1".into(),
        allow_http: true,
        retention,
        credentials: Some(S3Credentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        }),
    }
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

#[test]
fn export_is_idempotent_verifiable_and_refuses_to_overwrite_evidence() {
    let moto = moto();
    boto(
        &moto,
        "s3.create_bucket(Bucket='evidence', ObjectLockEnabledForBucket=True)",
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_log(tmp.path(), 80);
    let sealed = common::segments(&dir).len() - 1;
    assert!(sealed >= 3, "want several sealed segments, got {sealed}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lock = Some(Retention {
        mode: LockMode::Compliance,
        period: Duration::from_secs(3600),
    });
    let t = target(&moto, "evidence", lock);

    let first = rt.block_on(export(&dir, &t, now())).unwrap();
    // Sealed segments, one checkpoint snapshot, the verifier key.
    assert_eq!(first.uploaded.len(), sealed + 2, "{first:?}");
    assert!(first.exported_entries > 0);

    // Object Lock was applied per object.
    let mode = boto(
        &moto,
        "print(s3.head_object(Bucket='evidence', Key='audit/prod/verifier.key').get('ObjectLockMode'))",
    );
    assert_eq!(mode.trim(), "COMPLIANCE");

    let again = rt.block_on(export(&dir, &t, now())).unwrap();
    assert!(again.uploaded.is_empty(), "{again:?}");
    assert_eq!(again.already_exported, sealed + 2);

    // A downloaded copy verifies on its own.
    let copy = tmp.path().join("copy");
    boto(
        &moto,
        &format!(
            "import os, json\nroot = {copy:?}\nm = json.loads(s3.get_object(Bucket='evidence', Key='audit/prod/manifest.json')['Body'].read())\nos.makedirs(root + '/segments')\nfor o in m['objects']:\n    body = s3.get_object(Bucket='evidence', Key='audit/prod/' + o['key'])['Body'].read()\n    name = 'checkpoints' if o['key'] == m['latest_checkpoints'] else o['key']\n    if o['key'].startswith('checkpoints/') and name != 'checkpoints':\n        continue\n    open(root + '/' + name, 'wb').write(body)\n",
            copy = copy.display().to_string()
        ),
    );
    let report = verify(&copy, None).unwrap();
    assert_eq!(report.entries, first.exported_entries);

    // Tampering with an exported object is noticed by the next export.
    boto(
        &moto,
        "s3.put_object(Bucket='evidence', Key='audit/prod/segments/00000000000000000000.seg', Body=b'forged')",
    );
    let err = rt.block_on(export(&dir, &t, now())).unwrap_err();
    assert!(matches!(err, ExportError::Conflict { .. }), "{err}");
}

#[test]
fn retention_deletes_only_exported_old_segments_and_respects_legal_hold() {
    let moto = moto();
    boto(&moto, "s3.create_bucket(Bucket='archive')");
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_log(tmp.path(), 80);
    let segs = common::segments(&dir).len();
    let policy = RetentionPolicy {
        keep: retention::DEFAULT_KEEP,
        legal_hold: false,
    };

    // Nothing exported yet: old segments are kept.
    let r = retention::apply(&dir, &policy, now()).unwrap();
    assert!(r.deleted.is_empty());
    assert_eq!(r.kept_unexported, vec![0]);
    assert_eq!(common::segments(&dir).len(), segs);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(export(&dir, &target(&moto, "archive", None), now()))
        .unwrap();

    // A legal hold prevents any deletion.
    retention::set_legal_hold(&dir, "legal@example.com", "case 42", now()).unwrap();
    let r = retention::apply(&dir, &policy, now()).unwrap();
    assert!(r.deleted.is_empty());
    assert_eq!(r.hold.unwrap().reason, "case 42");
    assert_eq!(common::segments(&dir).len(), segs);
    assert!(retention::clear_legal_hold(&dir).unwrap().is_some());

    // Young segments are kept.
    let young = Timestamp::from_millis(1_000_000 + 1000);
    assert!(
        retention::apply(&dir, &policy, young)
            .unwrap()
            .deleted
            .is_empty()
    );

    // Old exported segments go; the active one stays; verification still passes.
    let plan = retention::plan(&dir, &policy, now()).unwrap();
    assert_eq!(plan.deleted.len(), segs - 1);
    assert_eq!(common::segments(&dir).len(), segs);
    let r = retention::apply(&dir, &policy, now()).unwrap();
    assert_eq!(r.deleted, plan.deleted);
    assert_eq!(common::segments(&dir).len(), 1);
    let v = verify(&dir, None).unwrap();
    assert_eq!(v.retired_entries, r.retired_entries);
    assert!(v.retired_entries > 0);

    // The log still opens and appends; verification still passes afterwards.
    let rt2 = tokio::runtime::Runtime::new().unwrap();
    rt2.block_on(async {
        let (log, _) = AuditLog::open(common::config(tmp.path(), 4096)).unwrap();
        log.append(common::entry(80, "planner")).await.unwrap();
        log.close().await.unwrap();
    });
    assert_eq!(verify(&dir, None).unwrap().entries, 81);
}
