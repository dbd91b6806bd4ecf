//! Local retention and legal hold: deletes old sealed segments that were exported (listed in the export manifest
//! with the same SHA-256), never while a legal hold is set, and records them as *retired* so `verify` still checks
//! everything that remains.
//!
//! Retirement is a prefix of the log: segments are retired oldest first and the walk stops at the first one that
//! must be kept, so the remaining segments are contiguous. `<dir>/retired` keeps, for the retired prefix, the list
//! of retired segments and the Merkle compact range (`O(log n)` hashes) at its end; `verify` starts from it and
//! checks it against the first signed checkpoint at or after it. The derived `tree/` files are kept, so the log
//! still opens and inclusion proofs for retired entries still work.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aura_core::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entry;
use crate::error::AuditError;
use crate::merkle::{Frontier, Hash};
use crate::note::Verifier;
use crate::record::{self, CHECKPOINT_MAGIC, End, SEGMENT_MAGIC};

/// Default local retention: 183 days (six months).
pub const DEFAULT_KEEP: Duration = Duration::from_secs(183 * 24 * 3600);

/// File name of the legal hold marker inside the audit directory.
pub const LEGAL_HOLD_FILE: &str = "LEGAL_HOLD";
/// File name of the local copy of the export manifest inside the audit directory.
pub const LOCAL_MANIFEST_FILE: &str = "export-manifest.json";
/// File name of the retired-segments record inside the audit directory.
pub const RETIRED_FILE: &str = "retired";

/// What local retention keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Sealed segments whose newest entry is older than this may be deleted (once exported).
    pub keep: Duration,
    /// A hold from configuration: when set, nothing is deleted (as with a `LEGAL_HOLD` file).
    pub legal_hold: bool,
}

/// What [`apply`] (or [`plan`]) did or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// First sequence numbers of the segments deleted now (or that would be, for [`plan`]).
    pub deleted: Vec<u64>,
    /// Entries in the deleted segments.
    pub deleted_entries: u64,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// Old enough, but not exported (or exported with a different hash): kept.
    pub kept_unexported: Vec<u64>,
    /// Younger than the retention period, or not yet covered by a checkpoint: kept.
    pub kept_recent: usize,
    /// The legal hold that prevented any deletion.
    pub hold: Option<LegalHold>,
    /// All entries retired so far (before this segment number the log lives only in the export).
    pub retired_entries: u64,
}

/// A legal hold: while it is set, retention deletes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    /// Who set it.
    pub by: String,
    /// Why (case number, request).
    pub reason: String,
    /// When it was set, RFC 3339.
    pub since: String,
}

/// The export manifest: what was uploaded, with sizes and SHA-256. Stored as `<prefix>/manifest.json` remotely and
/// as `<dir>/export-manifest.json` locally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, `1`.
    pub version: u32,
    /// The verifier key of the exported log.
    pub verifier_key: String,
    /// Object key (relative to the prefix) of the newest checkpoint file snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_checkpoints: Option<String>,
    /// Every uploaded object, in upload order.
    pub objects: Vec<ManifestObject>,
}

/// One uploaded object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestObject {
    /// Key relative to the prefix (`segments/<20 digits>.seg`, `checkpoints/<20 digits>`, `verifier.key`).
    pub key: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// The ETag the store returned, used to notice a replaced object cheaply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// For segments: the first sequence number and the number of entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// For segments: number of entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// S3 Object Lock retain-until date requested for it, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
}

impl Manifest {
    /// The entry for `key`, if it was uploaded.
    pub fn get(&self, key: &str) -> Option<&ManifestObject> {
        self.objects.iter().find(|o| o.key == key)
    }
}

/// Deletes the local sealed segments that policy allows (see the module docs) and records them as retired.
pub fn apply(
    dir: &Path,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<RetentionReport, AuditError> {
    run(dir, policy, now, true)
}

/// What [`apply`] would delete, without deleting anything.
pub fn plan(
    dir: &Path,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<RetentionReport, AuditError> {
    run(dir, policy, now, false)
}

/// Sets a legal hold (`<dir>/LEGAL_HOLD`): retention deletes nothing until [`clear_legal_hold`]. Replaces an
/// existing hold's text.
pub fn set_legal_hold(
    dir: &Path,
    by: &str,
    reason: &str,
    now: Timestamp,
) -> Result<LegalHold, AuditError> {
    if reason.trim().is_empty() {
        return Err(AuditError::Config("a legal hold needs a reason".into()));
    }
    let hold = LegalHold {
        by: by.to_owned(),
        reason: reason.to_owned(),
        since: now.to_rfc3339(),
    };
    write_json(&dir.join(LEGAL_HOLD_FILE), &hold)?;
    Ok(hold)
}

/// Removes the legal hold; returns the one that was set, if any.
pub fn clear_legal_hold(dir: &Path) -> Result<Option<LegalHold>, AuditError> {
    let hold = legal_hold(dir)?;
    let path = dir.join(LEGAL_HOLD_FILE);
    match fs::remove_file(&path) {
        Ok(()) => Ok(hold),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io(&path, e)),
    }
}

/// The legal hold currently set, if any. A marker file that cannot be parsed still counts as a hold.
pub fn legal_hold(dir: &Path) -> Result<Option<LegalHold>, AuditError> {
    let path = dir.join(LEGAL_HOLD_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            LegalHold {
                by: "unknown".into(),
                reason: String::from_utf8_lossy(&bytes).trim().to_owned(),
                since: String::new(),
            }
        }))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io(&path, e)),
    }
}

/// Reads the local copy of the export manifest (an empty manifest when nothing was exported yet).
pub fn local_manifest(dir: &Path) -> Result<Manifest, AuditError> {
    let path = dir.join(LOCAL_MANIFEST_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuditError::Corrupt {
            path,
            offset: 0,
            reason: format!("export manifest: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(AuditError::io(&path, e)),
    }
}

/// The retired prefix of the log, as stored in `<dir>/retired`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Retired {
    pub(crate) version: u32,
    /// Retired segments, oldest first.
    pub(crate) segments: Vec<RetiredSegment>,
    /// Entries `0..size` are retired.
    pub(crate) size: u64,
    /// The compact range at `size`, hex, one slot per level.
    pub(crate) frontier: Vec<String>,
}

/// One retired segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetiredSegment {
    pub(crate) first: u64,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
    pub(crate) retired_at: String,
}

impl Retired {
    /// The compact range at the end of the retired prefix.
    pub(crate) fn frontier(&self, path: &Path) -> Result<Frontier, AuditError> {
        let mut pending = Vec::with_capacity(self.frontier.len());
        for h in &self.frontier {
            let mut out: Hash = [0; 32];
            hex::decode_to_slice(h, &mut out).map_err(|_| AuditError::Corrupt {
                path: path.to_owned(),
                offset: 0,
                reason: "retired frontier hash is not 64 hex digits".into(),
            })?;
            pending.push(out);
        }
        Ok(Frontier::from_parts(self.size, pending))
    }
}

/// Reads `<dir>/retired`, if present.
pub(crate) fn load_retired(dir: &Path) -> Result<Option<Retired>, AuditError> {
    let path = dir.join(RETIRED_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuditError::Corrupt {
                path,
                offset: 0,
                reason: format!("retired segments record: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io(&path, e)),
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Segment files `(first, path)`, sorted.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let seg_dir = dir.join("segments");
    let mut segs = Vec::new();
    for ent in fs::read_dir(&seg_dir).map_err(|e| AuditError::io(&seg_dir, e))? {
        let ent = ent.map_err(|e| AuditError::io(&seg_dir, e))?;
        if let Some(first) = ent
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            segs.push((first, ent.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

/// A sealed segment read whole: its bytes' hash, entries, leaves and the time of its newest entry.
pub(crate) struct SealedSegment {
    pub(crate) bytes: Vec<u8>,
    pub(crate) leaves: Vec<Hash>,
    pub(crate) last_time: Option<Timestamp>,
}

/// Reads a sealed segment; it must be complete and clean (sealed segments are never written again).
pub(crate) fn read_sealed(path: &Path, first: u64) -> Result<SealedSegment, AuditError> {
    let bytes = fs::read(path).map_err(|e| AuditError::io(path, e))?;
    if record::parse_file_header(&bytes, SEGMENT_MAGIC) != Some(first) {
        return Err(AuditError::Tampered {
            seq: first,
            reason: format!("segment `{}` has a bad header", path.display()),
        });
    }
    let mut leaves = Vec::new();
    let mut last = None;
    let w = record::walk(&bytes, first, |r| {
        leaves.push(r.leaf);
        last = Some((r.seq, r.payload.to_vec()));
        Ok::<(), AuditError>(())
    })?;
    if let End::Torn { reason, .. } | End::Corrupt { reason, .. } = w.end {
        return Err(AuditError::Tampered {
            seq: first + w.count,
            reason,
        });
    }
    let last_time = match last {
        Some((seq, payload)) => Some(entry::decode(seq, &payload)?.entry.time),
        None => None,
    };
    Ok(SealedSegment {
        bytes,
        leaves,
        last_time,
    })
}

/// Tree sizes of the valid checkpoints in `<dir>/checkpoints`, with the byte offset just past each record.
pub(crate) fn checkpoint_sizes(dir: &Path) -> Result<Vec<(u64, u64)>, AuditError> {
    let vkey_path = dir.join("verifier.key");
    let vkey = fs::read_to_string(&vkey_path).map_err(|e| AuditError::io(&vkey_path, e))?;
    let verifier = Verifier::parse(vkey.trim()).map_err(|e| AuditError::Key {
        path: vkey_path.clone(),
        reason: e.to_string(),
    })?;
    let path = dir.join("checkpoints");
    let buf = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io(&path, e)),
    };
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    if record::parse_file_header(&buf, CHECKPOINT_MAGIC) != Some(0) {
        return Err(AuditError::BadCheckpoint {
            index: 0,
            tree_size: 0,
            reason: "the checkpoint file has a bad header".into(),
        });
    }
    let mut out = Vec::new();
    record::walk(&buf, 0, |r| {
        let bad = |reason: String| AuditError::BadCheckpoint {
            index: r.seq,
            tree_size: 0,
            reason,
        };
        let note = std::str::from_utf8(r.payload).map_err(|_| bad("not UTF-8".into()))?;
        let cp = verifier.verify(note).map_err(|e| bad(e.to_string()))?;
        let end = r.offset + (record::RECORD_HEADER_LEN + r.payload.len()) as u64;
        out.push((cp.tree_size, end));
        Ok::<(), AuditError>(())
    })?;
    Ok(out)
}

/// Writes `value` as JSON to `path` atomically (temporary file, fsync, rename).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AuditError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| AuditError::Encode(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| AuditError::io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| AuditError::io(&tmp, e))?;
    f.sync_all().map_err(|e| AuditError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| AuditError::io(path, e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

fn run(
    dir: &Path,
    policy: &RetentionPolicy,
    now: Timestamp,
    delete: bool,
) -> Result<RetentionReport, AuditError> {
    let mut report = RetentionReport::default();
    let mut retired = load_retired(dir)?.unwrap_or(Retired {
        version: 1,
        ..Retired::default()
    });
    let retired_path = dir.join(RETIRED_FILE);
    let segs = list_segments(dir)?;
    if delete {
        // Finish an interrupted run: segments already recorded as retired but still on disk.
        for (first, path) in &segs {
            if retired.segments.iter().any(|r| r.first == *first) {
                fs::remove_file(path).map_err(|e| AuditError::io(path, e))?;
            }
        }
    }
    let segs: Vec<_> = segs
        .into_iter()
        .filter(|(first, _)| !retired.segments.iter().any(|r| r.first == *first))
        .collect();
    report.retired_entries = retired.size;
    let hold = legal_hold(dir)?.or_else(|| {
        policy.legal_hold.then(|| LegalHold {
            by: "configuration".into(),
            reason: "legal_hold is set in the retention policy".into(),
            since: String::new(),
        })
    });
    if let Some(hold) = hold {
        report.hold = Some(hold);
        return Ok(report);
    }
    let manifest = local_manifest(dir)?;
    let checkpointed = checkpoint_sizes(dir)?.last().map_or(0, |c| c.0);
    let keep_ms = i64::try_from(policy.keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now.as_millis().saturating_sub(keep_ms);
    let mut frontier = retired.frontier(&retired_path)?;
    let mut doomed: Vec<PathBuf> = Vec::new();
    // Every segment but the newest is sealed.
    let sealed = segs.len().saturating_sub(1);
    let mut stopped = false;
    for (first, path) in segs.iter().take(sealed) {
        if stopped {
            report.kept_recent += 1;
            continue;
        }
        if *first != frontier.size() {
            return Err(AuditError::Tampered {
                seq: frontier.size().min(*first),
                reason: format!(
                    "segment `{}` starts at entry {first}, expected {}",
                    path.display(),
                    frontier.size()
                ),
            });
        }
        let seg = read_sealed(path, *first)?;
        let entries = seg.leaves.len() as u64;
        let old = seg.last_time.is_some_and(|t| t.as_millis() < cutoff);
        if !old || first + entries > checkpointed {
            report.kept_recent += 1;
            stopped = true;
            continue;
        }
        let hash = sha256_hex(&seg.bytes);
        let key = segment_key(*first);
        if manifest.get(&key).is_none_or(|o| o.sha256 != hash) {
            report.kept_unexported.push(*first);
            stopped = true;
            continue;
        }
        for leaf in &seg.leaves {
            frontier.push(*leaf, |_, _, _| {});
        }
        report.deleted.push(*first);
        report.deleted_entries += entries;
        report.deleted_bytes += seg.bytes.len() as u64;
        retired.segments.push(RetiredSegment {
            first: *first,
            entries,
            bytes: seg.bytes.len() as u64,
            sha256: hash,
            retired_at: now.to_rfc3339(),
        });
        doomed.push(path.clone());
    }
    retired.size = frontier.size();
    retired.frontier = frontier.pending().iter().map(hex::encode).collect();
    report.retired_entries = retired.size;
    if delete && !doomed.is_empty() {
        // Record first, then delete: a crash in between leaves files that the next run removes.
        write_json(&retired_path, &retired)?;
        for path in &doomed {
            fs::remove_file(path).map_err(|e| AuditError::io(path, e))?;
            tracing::info!(segment = %path.display(), "audit retention: deleted exported segment");
        }
    }
    Ok(report)
}

/// Object key (relative to the export prefix) of the segment starting at `first`.
pub(crate) fn segment_key(first: u64) -> String {
    format!("segments/{first:020}.seg")
}
