//! Tampering with a closed log: `verify` must fail and name the first bad entry or the bad checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use aura_audit::*;
use common::{config, entry, locate};

/// A closed log of 60 entries over several segments with a sealed checkpoint every 10 entries.
async fn build() -> (tempfile::TempDir, PathBuf, Vec<Checkpoint>) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    let mut cps = Vec::new();
    for i in 0..60 {
        if i % 10 == 9 {
            cps.push(log.append_sealed(entry(i, "a")).await.unwrap().1);
        } else {
            log.append(entry(i, "a")).await.unwrap();
        }
    }
    log.close().await.unwrap();
    drop(log);
    let dir = tmp.path().join("audit");
    verify(&dir, None).unwrap();
    (tmp, dir, cps)
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

fn tampered_at(dir: &Path) -> u64 {
    match verify(dir, None) {
        Err(AuditError::Tampered { seq, .. }) => seq,
        other => panic!("expected tampering to be found, got {other:?}"),
    }
}

#[tokio::test]
async fn a_flipped_byte_in_an_entry_is_found() {
    let (_tmp, dir, _) = build().await;
    let (seg, off, len) = locate(&dir, 23);
    edit(&seg, |b| b[off + len - 5] ^= 1);
    assert_eq!(tampered_at(&dir), 23);
}

#[tokio::test]
async fn a_rewritten_entry_with_a_fixed_checksum_is_found() {
    let (_tmp, dir, _) = build().await;
    let (seg, off, len) = locate(&dir, 23);
    edit(&seg, |b| {
        let payload = String::from_utf8(b[off + 20..off + len].to_vec())
            .unwrap()
            .replace("allowed", "denied!");
        let leaf = leaf_hash(payload.as_bytes());
        b[off + 12..off + 20].copy_from_slice(&leaf[..8]);
        b[off + 20..off + len].copy_from_slice(payload.as_bytes());
    });
    assert_eq!(tampered_at(&dir), 23);
}

#[tokio::test]
async fn a_deleted_entry_is_found() {
    let (_tmp, dir, _) = build().await;
    let (seg, off, len) = locate(&dir, 23);
    edit(&seg, |b| drop(b.drain(off..off + len)));
    assert_eq!(tampered_at(&dir), 23);
}

#[tokio::test]
async fn two_reordered_entries_are_found() {
    let (_tmp, dir, _) = build().await;
    let (seg, off_a, len_a) = locate(&dir, 23);
    let (seg_b, off_b, len_b) = locate(&dir, 24);
    assert_eq!(seg, seg_b);
    edit(&seg, |b| {
        let a = b[off_a..off_a + len_a].to_vec();
        let c = b[off_b..off_b + len_b].to_vec();
        b.splice(off_a..off_b + len_b, c.into_iter().chain(a));
    });
    assert_eq!(tampered_at(&dir), 23);
}

#[tokio::test]
async fn a_truncated_log_is_found() {
    let (_tmp, dir, _) = build().await;
    let (seg, off, _) = locate(&dir, 55);
    edit(&seg, |b| b.truncate(off));
    assert_eq!(tampered_at(&dir), 55);
    // A cut inside a record that checkpoints cover is tampering too, not a torn write.
    let (_tmp, dir, _) = build().await;
    let (seg, off, _) = locate(&dir, 55);
    edit(&seg, |b| b.truncate(off + 7));
    assert_eq!(tampered_at(&dir), 55);
}

#[tokio::test]
async fn a_removed_segment_is_found() {
    let (_tmp, dir, _) = build().await;
    let (seg, _, _) = locate(&dir, 23);
    std::fs::remove_file(&seg).unwrap();
    let seq = tampered_at(&dir);
    assert!(seq <= 23, "{seq}");
}

fn checkpoint_records(dir: &Path) -> Vec<(usize, usize)> {
    common::records(&dir.join("checkpoints"))
        .into_iter()
        .map(|(o, l, _)| (o, l))
        .collect()
}

#[tokio::test]
async fn a_replaced_checkpoint_is_found() {
    // Re-signed by another key.
    let (_tmp, dir, _) = build().await;
    let other = tempfile::tempdir().unwrap();
    let (olog, _) = AuditLog::open(config(other.path(), 4096)).unwrap();
    for i in 0..20 {
        olog.append(entry(i, "a")).await.unwrap();
    }
    let foreign = olog.checkpoint_now().await.unwrap();
    olog.close().await.unwrap();
    let recs = checkpoint_records(&dir);
    let (off, len) = recs[2];
    edit(&dir.join("checkpoints"), |b| {
        let mut frame = Vec::new();
        let note = foreign.note.as_bytes();
        frame.extend_from_slice(&(note.len() as u32).to_le_bytes());
        frame.extend_from_slice(&2u64.to_le_bytes());
        frame.extend_from_slice(&leaf_hash(note)[..8]);
        frame.extend_from_slice(note);
        b.splice(off..off + len, frame);
    });
    assert!(
        matches!(
            verify(&dir, None),
            Err(AuditError::BadCheckpoint { index: 2, .. })
        ),
        "{:?}",
        verify(&dir, None)
    );

    // Swapped for a genuine checkpoint of the same log: the chain breaks.
    let (_tmp, dir, cps) = build().await;
    let recs = checkpoint_records(&dir);
    let (off, len) = recs[2];
    edit(&dir.join("checkpoints"), |b| {
        let mut frame = Vec::new();
        let note = cps[3].note.as_bytes();
        frame.extend_from_slice(&(note.len() as u32).to_le_bytes());
        frame.extend_from_slice(&2u64.to_le_bytes());
        frame.extend_from_slice(&leaf_hash(note)[..8]);
        frame.extend_from_slice(note);
        b.splice(off..off + len, frame);
    });
    assert!(
        matches!(
            verify(&dir, None),
            Err(AuditError::BadCheckpoint { index: 2, .. })
        ),
        "{:?}",
        verify(&dir, None)
    );
}

#[tokio::test]
async fn a_log_rewritten_and_resigned_fails_against_a_saved_checkpoint() {
    let (tmp, dir, cps) = build().await;
    let saved = cps[1].note.clone();
    assert_eq!(verify(&dir, Some(&saved)).unwrap().anchor_size, Some(20));
    // The operator rewrites history with the real key: delete everything and log different entries.
    std::fs::remove_dir_all(&dir).unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    for i in 0..60 {
        log.append(entry(i + 1000, "a")).await.unwrap();
    }
    log.close().await.unwrap();
    drop(log);
    verify(&dir, None).unwrap();
    assert!(matches!(
        verify(&dir, Some(&saved)),
        Err(AuditError::Anchor(_))
    ));
}

/// Issue 4: `verify` reads large segments in chunks and hashes on two threads; damage deep inside such a segment is
/// still named exactly.
#[tokio::test]
async fn damage_deep_in_a_large_segment_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    for k in 0..3 {
        let batch = (0..500).map(|i| entry(k * 500 + i, "a")).collect();
        log.append_many(batch).await.unwrap();
    }
    let root = log.root();
    log.close().await.unwrap();
    drop(log);
    let dir = tmp.path().join("audit");
    let v = verify(&dir, None).unwrap();
    assert_eq!((v.entries, v.segments, v.root), (1500, 1, root));
    let (seg, off, len) = locate(&dir, 1234);
    edit(&seg, |b| b[off + len - 2] ^= 0x20);
    assert_eq!(tampered_at(&dir), 1234);
}
