//! Offline verification: re-reads every record, recomputes the Merkle tree, and checks every checkpoint's
//! signature, chain link and root. Needs only the log directory and the verifier key, not the signing key.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use crate::entry;
use crate::error::AuditError;
use crate::merkle::{EMPTY_ROOT, Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, Verifier};
use crate::record::{
    self, CHECKPOINT_MAGIC, End, FILE_HEADER_LEN, MAX_PAYLOAD, RECORD_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::retention;

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
    /// Entries `0..retired_entries` were retired by retention (their segments deleted after export): not re-read,
    /// and checkpoints below that size were checked for signature and chain only.
    pub retired_entries: u64,
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
    // Retired entries (deleted locally after export) start the tree from the saved compact range; the first
    // checkpoint at or after it checks that range, so a forged one is caught there.
    let retired = retention::load_retired(dir)?;
    let retired_size = retired.as_ref().map_or(0, |r| r.size);
    if retired_size > cps.last().map_or(0, |c| c.tree_size) {
        return Err(AuditError::Tampered {
            seq: retired_size,
            reason: format!(
                "{retired_size} entries are recorded as retired but no checkpoint covers them"
            ),
        });
    }
    let mut targets: Vec<(u64, Target)> = cps
        .iter()
        .enumerate()
        .map(|(i, c)| (c.tree_size, Target::Checkpoint(i as u64)))
        .filter(|(size, _)| *size >= retired_size)
        .collect();
    if let Some(a) = &anchor {
        if a.tree_size < retired_size {
            return Err(AuditError::Anchor(format!(
                "it covers {} entries, inside the {retired_size} retired ones",
                a.tree_size
            )));
        }
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
    let mut frontier = match &retired {
        Some(r) => r.frontier(&dir.join(retention::RETIRED_FILE))?,
        None => Frontier::default(),
    };
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
    // Retired segments left behind by an interrupted retention run are not part of the remaining log.
    if let Some(r) = &retired {
        segs.retain(|(first, _)| !r.segments.iter().any(|s| s.first == *first));
    }
    let mut torn_tail_bytes = 0;
    let count = segs.len();
    let mut scratch = Scratch::new(CHUNK_BYTES);
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
        // Fast path for a clean segment; anything unusual is re-examined from the segment's start by the exact
        // walk below, so errors and torn-tail reports are those of the walk.
        let saved = (frontier.clone(), next_target, last_good);
        let clean = fast_segment(path, *first, &mut scratch, &mut |leaf| {
            frontier.push(*leaf, |_, _, _| {});
            check_targets(
                dir,
                &targets,
                &mut next_target,
                &frontier,
                &root_of,
                &mut last_good,
            )
        })?;
        if clean {
            continue;
        }
        (frontier, next_target, last_good) = saved;
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
        retired_entries: retired_size,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Bytes read from a segment at a time by the fast path (the buffer grows for a larger record).
const CHUNK_BYTES: usize = 4 << 20;
/// Below this many records in a chunk, hashing on a second thread does not pay.
const PARALLEL_MIN_RECORDS: usize = 256;

/// Buffers reused across segments by the fast path.
struct Scratch {
    chunk: usize,
    buf: Vec<u8>,
    /// (offset in `buf`, payload length) of the complete records in the buffer.
    records: Vec<(usize, usize)>,
    leaves: Vec<Hash>,
}

impl Scratch {
    fn new(chunk: usize) -> Self {
        Self {
            chunk: chunk.max(2 * RECORD_HEADER_LEN),
            buf: Vec::new(),
            records: Vec::new(),
            leaves: Vec::new(),
        }
    }
}

/// Reads a segment in large chunks, checks framing, sequence numbers and checksums, and feeds every leaf hash to
/// `on_leaf` in order, hashing on two threads. Returns `Ok(false)` without a judgement as soon as anything is not
/// a clean, complete record (bad header, length or checksum, a gap, a partial record at the end): the caller then
/// re-walks the whole segment exactly. Errors from `on_leaf` are returned as they are.
fn fast_segment(
    path: &Path,
    first: u64,
    s: &mut Scratch,
    on_leaf: &mut dyn FnMut(&Hash) -> Result<(), AuditError>,
) -> Result<bool, AuditError> {
    let Ok(mut file) = File::open(path) else {
        return Ok(false);
    };
    s.buf.resize(s.chunk, 0);
    let mut filled = 0; // bytes of `buf` holding file data
    let mut start = 0; // start of the first unconsumed byte in `buf`
    let mut header_seen = false;
    let mut expected = first;
    loop {
        // Move the unconsumed tail to the front, make room for a record larger than the buffer, and refill.
        s.buf.copy_within(start..filled, 0);
        filled -= start;
        start = 0;
        if header_seen
            && let Some(h) = s
                .buf
                .get(..filled.min(RECORD_HEADER_LEN))
                .filter(|h| h.len() == RECORD_HEADER_LEN)
        {
            let need = RECORD_HEADER_LEN + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if need > s.buf.len() && need <= RECORD_HEADER_LEN + MAX_PAYLOAD {
                s.buf.resize(need, 0);
            }
        }
        let mut eof = false;
        while filled < s.buf.len() {
            match file.read(&mut s.buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(false),
            }
        }
        if !header_seen {
            if record::parse_file_header(&s.buf[..filled], SEGMENT_MAGIC) != Some(first) {
                return Ok(false);
            }
            header_seen = true;
            start = FILE_HEADER_LEN;
        }
        // Frame the complete records of the chunk.
        s.records.clear();
        let mut pos = start;
        while let Some(h) = s.buf[..filled].get(pos..pos + RECORD_HEADER_LEN) {
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let seq = u64::from_le_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
            if len == 0 || len > MAX_PAYLOAD || seq != expected {
                return Ok(false);
            }
            if pos + RECORD_HEADER_LEN + len > filled {
                break;
            }
            s.records.push((pos, len));
            pos += RECORD_HEADER_LEN + len;
            expected += 1;
        }
        hash_records(&s.buf, &s.records, &mut s.leaves);
        for (&(at, _), leaf) in s.records.iter().zip(&s.leaves) {
            if s.buf.get(at + 12..at + 20) != Some(&leaf[..8]) {
                return Ok(false);
            }
            on_leaf(leaf)?;
        }
        start = pos;
        if eof {
            // Clean only if every byte belonged to a complete record.
            return Ok(start == filled);
        }
    }
}

/// Leaf hashes of the records' payloads, in order, on two threads when there are enough of them.
fn hash_records(buf: &[u8], records: &[(usize, usize)], out: &mut Vec<Hash>) {
    let hash = |r: &[(usize, usize)], out: &mut [Hash]| {
        for (&(at, len), o) in r.iter().zip(out.iter_mut()) {
            let body = at + RECORD_HEADER_LEN;
            *o = buf.get(body..body + len).map_or([0; 32], leaf_hash);
        }
    };
    out.clear();
    out.resize(records.len(), [0; 32]);
    if records.len() < PARALLEL_MIN_RECORDS {
        hash(records, out);
        return;
    }
    let mid = records.len() / 2;
    let (r1, r2) = records.split_at(mid);
    let (o1, o2) = out.split_at_mut(mid);
    // `hash` cannot panic (no indexing). If no thread can be started, the second half is hashed here.
    let helped = std::thread::scope(|sc| {
        let spawned = std::thread::Builder::new().spawn_scoped(sc, || hash(r2, o2));
        hash(r1, o1);
        spawned.is_ok()
    });
    if !helped && let Some(o2) = out.get_mut(mid..) {
        hash(r2, o2);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment of `n` records starting at entry 5, payload sizes varying from 1 to about 1 KiB.
    fn segment(n: u64) -> (Vec<u8>, Vec<Hash>) {
        let mut buf = record::file_header(SEGMENT_MAGIC, 5).to_vec();
        let mut leaves = Vec::new();
        for seq in 5..5 + n {
            let payload = vec![b'a' + (seq % 26) as u8; 1 + (seq * 37 % 1000) as usize];
            let leaf = leaf_hash(&payload);
            record::push_frame(&mut buf, seq, &leaf, &payload);
            leaves.push(leaf);
        }
        (buf, leaves)
    }

    fn run(bytes: &[u8], chunk: usize) -> (bool, Vec<Hash>) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, bytes).unwrap();
        let mut got = Vec::new();
        let clean = fast_segment(&path, 5, &mut Scratch::new(chunk), &mut |l| {
            got.push(*l);
            Ok(())
        })
        .unwrap();
        (clean, got)
    }

    #[test]
    fn the_fast_path_reads_clean_segments_across_chunk_boundaries() {
        let (bytes, leaves) = segment(700);
        // Tiny chunks (records larger than the buffer), odd sizes, and one chunk for everything (parallel hashing).
        for chunk in [1, 57, 1000, 4096, 1 << 20] {
            assert_eq!(run(&bytes, chunk), (true, leaves.clone()), "chunk {chunk}");
        }
        let (empty, _) = segment(0);
        assert_eq!(run(&empty, 64), (true, Vec::new()));
    }

    #[test]
    fn the_fast_path_gives_up_on_anything_unusual() {
        let (bytes, _) = segment(400);
        let record_at = |i: usize| {
            let mut pos = FILE_HEADER_LEN;
            for _ in 0..i {
                let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
                pos += RECORD_HEADER_LEN + len;
            }
            pos
        };
        let at = record_at(300);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("flipped payload byte", {
                let mut b = bytes.clone();
                b[at + RECORD_HEADER_LEN] ^= 1;
                b
            }),
            ("wrong sequence number", {
                let mut b = bytes.clone();
                b[at + 4] ^= 1;
                b
            }),
            ("zero length", {
                let mut b = bytes.clone();
                b[at..at + 4].copy_from_slice(&[0; 4]);
                b
            }),
            ("torn tail", bytes[..bytes.len() - 3].to_vec()),
            ("partial header at the end", {
                let mut b = bytes.clone();
                b.extend_from_slice(&[1, 0, 0]);
                b
            }),
            ("bad file header", {
                let mut b = bytes.clone();
                b[8] ^= 1;
                b
            }),
        ];
        for (what, b) in cases {
            for chunk in [64, 1 << 20] {
                assert!(!run(&b, chunk).0, "{what}, chunk {chunk}");
            }
        }
    }
}
