//! Offline verification: re-reads every record, recomputes the Merkle tree, and checks every checkpoint's
//! signature, chain link and root. Needs only the log directory and the verifier key, not the signing key.

use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::entry;
use crate::error::AuditError;
use crate::merkle::{EMPTY_ROOT, Frontier, Hash};
use crate::note::{Checkpoint, Verifier};
use crate::record::{self, CHECKPOINT_MAGIC, End, SEGMENT_MAGIC};

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries re-read and hashed.
    pub entries: u64,
    /// Segment files read.
    pub segments: usize,
    /// Checkpoints whose signature, chain link and root were checked.
    pub checkpoints: u64,
    /// Merkle root of all entries.
    pub root: Hash,
    /// Tree size of the latest checkpoint.
    pub latest_checkpoint_size: Option<u64>,
    /// Tree size of the trusted checkpoint that was matched, when one was given.
    pub anchor_size: Option<u64>,
    /// Bytes of an uncovered torn tail (an unacknowledged partial write that the next open will cut off).
    pub torn_tail_bytes: u64,
    /// The verifier key the checkpoints were checked with; compare it with the one you trust.
    pub verifier_key: String,
    /// Wall time spent, in milliseconds.
    pub elapsed_ms: u64,
}

/// Verifies the log in `dir` with the verifier key stored beside it (`<dir>/verifier.key`).
///
/// `from_checkpoint` is a checkpoint note the caller trusts (saved earlier, or obtained from a witness): it must be
/// signed by the same key and its root must match the log at its size, so a log rewritten since then, even with
/// re-signed checkpoints or a swapped key, fails. On tampering the error names the first bad sequence number
/// ([`AuditError::Tampered`]) or the bad checkpoint ([`AuditError::BadCheckpoint`]).
pub fn verify(dir: &Path, from_checkpoint: Option<&str>) -> Result<VerifyReport, AuditError> {
    let vkey_path = dir.join("verifier.key");
    let vkey = fs::read_to_string(&vkey_path).map_err(|e| AuditError::io(&vkey_path, e))?;
    verify_with_key(dir, vkey.trim(), from_checkpoint)
}

/// Like [`verify`], with a verifier key the caller supplies (the one they trust) instead of the stored one.
pub fn verify_with_key(
    dir: &Path,
    verifier_key: &str,
    from_checkpoint: Option<&str>,
) -> Result<VerifyReport, AuditError> {
    let started = Instant::now();
    let verifier = Verifier::parse(verifier_key).map_err(|e| AuditError::Key {
        path: dir.join("verifier.key"),
        reason: e.to_string(),
    })?;

    // 1. Checkpoints: signatures, chain, monotonic sizes.
    let cps = read_checkpoints(dir, &verifier)?;
    let anchor = match from_checkpoint {
        Some(note) => Some(
            verifier
                .verify(note)
                .map_err(|e| AuditError::Anchor(e.to_string()))?,
        ),
        None => None,
    };

    // 2. Entries: stream every segment, check framing and sequence, recompute the tree, match checkpoint roots.
    let mut targets: Vec<(u64, Target)> = cps
        .iter()
        .enumerate()
        .map(|(i, c)| (c.tree_size, Target::Checkpoint(i as u64)))
        .collect();
    if let Some(a) = &anchor {
        targets.push((a.tree_size, Target::Anchor));
    }
    targets.sort_by_key(|t| t.0);
    let root_of = |t: &Target| match t {
        Target::Checkpoint(i) => cps.get(*i as usize).map(|c| c.root),
        Target::Anchor => anchor.as_ref().map(|a| a.root),
    };
    let covered = targets.last().map_or(0, |t| t.0);
    let mut next_target = 0;
    let mut last_good = 0u64;
    let mut frontier = Frontier::default();
    // Check targets at size 0 before any entry.
    check_targets(
        dir,
        &targets,
        &mut next_target,
        &frontier,
        &root_of,
        &mut last_good,
    )?;

    let seg_dir = dir.join("segments");
    let mut segs: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for ent in fs::read_dir(&seg_dir).map_err(|e| AuditError::io(&seg_dir, e))? {
        let ent = ent.map_err(|e| AuditError::io(&seg_dir, e))?;
        let name = ent.file_name();
        if let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            segs.push((first, ent.path()));
        }
    }
    segs.sort();
    let mut torn_tail_bytes = 0;
    let count = segs.len();
    for (i, (first, path)) in segs.iter().enumerate() {
        let expected = frontier.size();
        if *first != expected {
            return Err(AuditError::Tampered {
                seq: expected.min(*first),
                reason: format!(
                    "segment `{}` starts at entry {first}, expected {expected}",
                    path.display()
                ),
            });
        }
        let buf = fs::read(path).map_err(|e| AuditError::io(path, e))?;
        if record::parse_file_header(&buf, SEGMENT_MAGIC) != Some(*first) {
            return Err(AuditError::Tampered {
                seq: expected,
                reason: format!("segment `{}` has a bad header", path.display()),
            });
        }
        let w = record::walk(&buf, *first, |r| {
            frontier.push(r.leaf, |_, _, _| {});
            check_targets(
                dir,
                &targets,
                &mut next_target,
                &frontier,
                &root_of,
                &mut last_good,
            )
        })?;
        let bad_seq = first + w.count;
        match w.end {
            End::Clean => {}
            End::Torn { reason, .. } if i + 1 == count && bad_seq >= covered => {
                torn_tail_bytes = buf.len() as u64 - w.valid_end;
                let _ = reason;
            }
            End::Torn { reason, .. } | End::Corrupt { reason, .. } => {
                return Err(AuditError::Tampered {
                    seq: bad_seq,
                    reason,
                });
            }
        }
    }
    let n = frontier.size();
    if let Some((size, target)) = targets.get(next_target) {
        return Err(match target {
            Target::Checkpoint(i) => AuditError::Tampered {
                seq: n,
                reason: format!("the log ends after {n} entries but checkpoint {i} covers {size}"),
            },
            Target::Anchor => {
                AuditError::Anchor(format!("it covers {size} entries but the log has only {n}"))
            }
        });
    }
    Ok(VerifyReport {
        entries: n,
        segments: count,
        checkpoints: cps.len() as u64,
        root: frontier.root(),
        latest_checkpoint_size: cps.last().map(|c| c.tree_size),
        anchor_size: anchor.map(|a| a.tree_size),
        torn_tail_bytes,
        verifier_key: verifier_key.to_owned(),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Checkpoint(u64),
    Anchor,
}

/// Compares the recomputed root with every target at the current size.
fn check_targets(
    dir: &Path,
    targets: &[(u64, Target)],
    next: &mut usize,
    frontier: &Frontier,
    root_of: &dyn Fn(&Target) -> Option<Hash>,
    last_good: &mut u64,
) -> Result<(), AuditError> {
    while let Some((size, target)) = targets.get(*next) {
        if *size != frontier.size() {
            break;
        }
        let root = if *size == 0 {
            EMPTY_ROOT
        } else {
            frontier.root()
        };
        if root_of(target) != Some(root) {
            return Err(match target {
                Target::Checkpoint(i) => localize(dir, *last_good, *size).unwrap_or_else(|| AuditError::BadCheckpoint {
                    index: *i,
                    tree_size: *size,
                    reason: format!(
                        "its root does not match the entries: entries {last_good}..{size} were rewritten or the checkpoint replaced"
                    ),
                }),
                Target::Anchor => AuditError::Anchor(format!("its root does not match the log at tree size {size}")),
            });
        }
        *last_good = *size;
        *next += 1;
    }
    Ok(())
}

/// Looks for the first bad entry in `from..to` once a root mismatch is known: an entry whose own sequence field
/// disagrees with its position, or whose leaf hash differs from the one recorded when it was appended.
fn localize(dir: &Path, from: u64, to: u64) -> Option<AuditError> {
    let hints = fs::read(dir.join("tree").join("level-00")).unwrap_or_default();
    let seg_dir = dir.join("segments");
    let mut segs: Vec<(u64, std::path::PathBuf)> = fs::read_dir(&seg_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let first = e
                .file_name()
                .to_str()?
                .strip_suffix(".seg")?
                .parse::<u64>()
                .ok()?;
            Some((first, e.path()))
        })
        .collect();
    segs.sort();
    let mut found = None;
    for (first, path) in segs {
        if found.is_some() {
            break;
        }
        let Ok(buf) = fs::read(&path) else { continue };
        let _ = record::walk(&buf, first, |r| {
            if r.seq < from || r.seq >= to || found.is_some() {
                return Ok(());
            }
            if let Err(e) = entry::decode(r.seq, r.payload) {
                found = Some(AuditError::Tampered {
                    seq: r.seq,
                    reason: e.to_string(),
                });
                return Err(());
            }
            let at = (r.seq * 32) as usize;
            if hints.get(at..at + 32).is_some_and(|h| h != r.leaf) {
                found = Some(AuditError::Tampered {
                    seq: r.seq,
                    reason: "entry differs from the leaf hash recorded when it was appended".into(),
                });
                return Err(());
            }
            Ok(())
        });
    }
    found
}

/// Reads and checks every checkpoint: signature, origin, chain link, non-decreasing size.
fn read_checkpoints(dir: &Path, verifier: &Verifier) -> Result<Vec<Checkpoint>, AuditError> {
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
    let mut out: Vec<Checkpoint> = Vec::new();
    let w = record::walk(&buf, 0, |r| {
        let bad = |reason: String| AuditError::BadCheckpoint {
            index: r.seq,
            tree_size: 0,
            reason,
        };
        let note = std::str::from_utf8(r.payload).map_err(|_| bad("not UTF-8".into()))?;
        let cp = verifier.verify(note).map_err(|e| bad(e.to_string()))?;
        let bad = |reason: String| AuditError::BadCheckpoint {
            index: r.seq,
            tree_size: cp.tree_size,
            reason,
        };
        match out.last() {
            None if cp.prev.is_some() => {
                return Err(bad("the first checkpoint must not have a prev line".into()));
            }
            None => {}
            Some(prev) => {
                if cp.prev != Some(prev.note_hash()) {
                    return Err(bad(
                        "chain broken: its prev hash does not match the previous checkpoint".into(),
                    ));
                }
                if cp.tree_size < prev.tree_size {
                    return Err(bad(format!("tree size went back from {}", prev.tree_size)));
                }
                if cp.origin != prev.origin {
                    return Err(bad(format!("origin changed from `{}`", prev.origin)));
                }
            }
        }
        out.push(cp);
        Ok(())
    })?;
    match w.end {
        End::Clean | End::Torn { .. } => Ok(out),
        End::Corrupt { reason, .. } => Err(AuditError::BadCheckpoint {
            index: w.count,
            tree_size: 0,
            reason,
        }),
    }
}
