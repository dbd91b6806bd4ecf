//! Helpers shared by the integration tests: configs, sample entries and the on-disk record layout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use aura_audit::{Actor, ActorKind, AuditConfig, AuditEntry, Resource, RiskLevel};
use aura_core::{AgentName, Timestamp, Verdict};

pub fn config(root: &Path, segment_bytes: u64) -> AuditConfig {
    AuditConfig {
        dir: root.join("audit"),
        key_path: root.join("keys/audit.ed25519"),
        origin: "aura.test/audit".into(),
        segment_bytes,
        checkpoint_interval: Duration::from_millis(20),
    }
}

pub fn entry(i: u64, agent: &str) -> AuditEntry {
    let mut e = AuditEntry::new(
        Timestamp::from_millis(1_000_000 + i as i64),
        Actor {
            kind: ActorKind::Agent,
            id: agent.into(),
            ip: None,
        },
        Resource {
            kind: "tool".into(),
            path: format!("tool-{i}"),
        },
        "kernel.decide",
        "allowed",
        RiskLevel::Low,
    );
    e.agent = Some(AgentName::new(agent).unwrap());
    e.task = Some(format!("task-{}", i % 3));
    e.verdict = Some(Verdict::Allow);
    e.details.insert("i".into(), i.into());
    e
}

/// One record as documented in docs/audit-format.md: (offset, total length, seq).
pub fn records(segment: &Path) -> Vec<(usize, usize, u64)> {
    let buf = std::fs::read(segment).unwrap();
    let mut out = Vec::new();
    let mut pos = 16;
    while pos + 20 <= buf.len() {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(buf[pos + 4..pos + 12].try_into().unwrap());
        out.push((pos, 20 + len, seq));
        pos += 20 + len;
    }
    out
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The segment file and record holding entry `seq`.
pub fn locate(dir: &Path, seq: u64) -> (PathBuf, usize, usize) {
    for seg in segments(dir) {
        for (off, len, s) in records(&seg) {
            if s == seq {
                return (seg, off, len);
            }
        }
    }
    panic!("entry {seq} not found");
}
