//! Aura's tamper-evident audit trail: an append-only, group-committed log whose entries are the leaves of an
//! RFC 9162 Merkle tree, with signed C2SP checkpoints, inclusion and consistency proofs, and offline verification.
//!
//! **Architecture invariant.** This crate knows files, hashes and signatures; it knows nothing of HTTP, policies
//! or the kernel. Entries are plain Rust values; their canonical byte encoding (`docs/audit-format.md`) is what
//! gets hashed, so a third party can check the log without this code.
//!
//! **API boundary.** [`AuditLog`] (open, append, checkpoints, proofs, reads) and the free functions [`verify`],
//! [`verify_inclusion`], [`verify_consistency`] and [`verify_checkpoint`], which need no access to the log;
//! [`retention`] (local deletion of exported segments, legal hold) and, with the `s3` feature, `export`
//! (upload of sealed segments to S3-compatible storage).

mod bench;
mod canonical;
mod entry;
mod error;
#[cfg(feature = "s3")]
pub mod export;
mod log;
mod merkle;
mod note;
#[cfg(test)]
mod proof_tests;
mod record;
pub mod report;
pub mod retention;
mod store;
mod verify;

pub use bench::{
    BenchConfig, BenchLimit, BenchReport, BenchRun, bench, bench_configs, default_plan,
    fdatasync_latency,
};
pub use entry::{
    Actor, ActorKind, AuditEntry, ENTRY_FORMAT_VERSION, LoggedEntry, MAX_ENTRY_BYTES, Resource,
    RiskLevel, canonical_bytes,
};
pub use error::{AuditError, CheckpointError, ProofError};
pub use log::{
    AuditConfig, AuditLog, AuditScan, AuditStats, Receipt, RecoveryReport, ScanFilter, TornTail,
};
pub use merkle::{
    ConsistencyProof, EMPTY_ROOT, Hash, InclusionProof, leaf_hash, node_hash, verify_consistency,
    verify_inclusion,
};
pub use note::{Checkpoint, verify_checkpoint};
pub use verify::{VerifyReport, verify, verify_with_key};
