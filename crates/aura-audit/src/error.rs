//! The error types of the audit log: one per fallible area (the log, proof checks, checkpoint notes).

use std::path::PathBuf;

/// An error from opening, writing, reading or verifying an audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file could not be read or written.
    #[error("i/o error on `{path}`: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid audit configuration: {0}")]
    Config(String),
    /// Another process (or another handle in this process) has the log open.
    #[error("audit log `{0}` is already open by another process")]
    Locked(PathBuf),
    /// The signing key file is missing, malformed or unsafe.
    #[error("audit signing key `{path}`: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log on disk is damaged somewhere other than a torn tail; it is left untouched.
    #[error("audit log corrupt in `{path}` at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first bad record.
        offset: u64,
        /// What was found.
        reason: String,
    },
    /// The entry cannot be encoded canonically (for example, a float in `details`).
    #[error("audit entry cannot be encoded: {0}")]
    Encode(String),
    /// A stored entry could not be decoded.
    #[error("audit entry {seq} cannot be decoded: {reason}")]
    Decode {
        /// The entry's sequence number.
        seq: u64,
        /// What went wrong.
        reason: String,
    },
    /// An index or tree size beyond the current tree.
    #[error("{what} {value} is out of range (tree size {tree_size})")]
    OutOfRange {
        /// What was asked for (`leaf index`, `tree size`, ...).
        what: &'static str,
        /// The value asked for.
        value: u64,
        /// The tree size at the time of the call.
        tree_size: u64,
    },
    /// The log was closed; nothing more can be appended.
    #[error("audit log is closed")]
    Closed,
    /// A write or fsync failed earlier; the log refuses further appends until reopened.
    #[error("audit log stopped after a write failure: {0}")]
    Poisoned(String),
    /// Verification found a bad or missing entry: the first bad sequence number is named.
    #[error("audit log tampered at entry {seq}: {reason}")]
    Tampered {
        /// The first sequence number that does not check out.
        seq: u64,
        /// What does not check out.
        reason: String,
    },
    /// Verification found a bad checkpoint: its position in the checkpoint file is named.
    #[error("audit checkpoint {index} (tree size {tree_size}) is bad: {reason}")]
    BadCheckpoint {
        /// Zero-based position of the checkpoint in the checkpoint file.
        index: u64,
        /// The tree size the checkpoint claims.
        tree_size: u64,
        /// What does not check out.
        reason: String,
    },
    /// The trusted checkpoint given to `verify` does not match the log.
    #[error("trusted checkpoint does not match the log: {0}")]
    Anchor(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A Merkle proof that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first tree size is larger than the second.
    #[error("tree size {size1} is larger than tree size {size2}")]
    SizesOutOfOrder {
        /// The older size.
        size1: u64,
        /// The newer size.
        size2: u64,
    },
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The proof does not lead to the expected root.
    #[error("proof does not match the root hash")]
    RootMismatch,
}

/// A checkpoint (signed note) that cannot be parsed or whose signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The verifier key text is malformed.
    #[error("malformed verifier key: {0}")]
    VerifierKey(String),
    /// The note is not a well-formed signed note or checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// No signature line from the verifier key was found.
    #[error("checkpoint has no signature from key `{0}`")]
    NoSignature(String),
    /// A signature from the verifier key did not verify.
    #[error("checkpoint signature from key `{0}` does not verify")]
    BadSignature(String),
}
