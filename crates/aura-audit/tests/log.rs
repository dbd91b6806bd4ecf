//! The durable log through its public API: appends, reopen, checkpoints, proofs, reads, recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_audit::*;
use aura_core::Timestamp;
use common::{config, entry, locate, segments};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_durable_sequence_numbers_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, report) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    assert!(report.created && report.is_clean());
    let log = Arc::new(log);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16u64 {
        let log = log.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let e = entry(w * 100 + i, "planner");
                let r = log.append(e.clone()).await.unwrap();
                out.push((r, e));
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    let seqs: HashSet<u64> = all.iter().map(|(r, _)| r.seq).collect();
    assert_eq!(seqs, (0..400).collect());
    assert_eq!(log.tree_size(), 400);
    for (r, e) in &all {
        assert_eq!(r.leaf_hash, leaf_hash(&canonical_bytes(r.seq, e).unwrap()));
    }
    let root = log.root();
    log.close().await.unwrap();
    assert!(matches!(
        log.append(entry(0, "planner")).await,
        Err(AuditError::Closed)
    ));
    drop(log);

    let (log, report) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    assert!(!report.created && report.is_clean(), "{report:?}");
    assert_eq!(
        (report.entries, log.tree_size(), log.root()),
        (400, 400, root)
    );
    for (r, e) in &all {
        assert_eq!(
            log.entry(r.seq).unwrap().unwrap(),
            LoggedEntry {
                seq: r.seq,
                entry: e.clone()
            }
        );
    }
    assert!(log.entry(400).unwrap().is_none());
    // close() signed a final checkpoint covering everything.
    let cp = log.latest_checkpoint().unwrap();
    assert_eq!((cp.tree_size, cp.root), (400, root));
    assert_eq!(verify_checkpoint(&cp.note, log.public_key()).unwrap(), cp);
    log.close().await.unwrap();
    let v = verify(&tmp.path().join("audit"), Some(&cp.note)).unwrap();
    assert_eq!((v.entries, v.root, v.anchor_size), (400, root, Some(400)));
}

#[tokio::test]
async fn sealed_appends_and_checkpoints_are_signed_chained_and_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    let empty = log.checkpoint_now().await.unwrap();
    assert_eq!(
        (empty.tree_size, empty.root, empty.prev),
        (0, EMPTY_ROOT, None)
    );
    log.append(entry(0, "a")).await.unwrap();
    let (r, cp) = log.append_sealed(entry(1, "a")).await.unwrap();
    assert_eq!(r.seq, 1);
    assert_eq!(cp.tree_size, 2);
    assert_eq!(cp.prev, Some(empty.note_hash()));
    assert_eq!(cp.root, log.root());
    // Nothing new: the same checkpoint comes back.
    assert_eq!(log.checkpoint_now().await.unwrap(), cp);
    assert_eq!(log.latest_checkpoint().unwrap(), cp);

    let vkey = log.public_key().to_owned();
    assert!(vkey.starts_with("aura.test/audit+") && vkey.split('+').nth(1).unwrap().len() == 8);
    let lines: Vec<&str> = cp.note.lines().collect();
    assert_eq!(&lines[..2], ["aura.test/audit", "2"]);
    assert!(lines[3].starts_with("prev "));
    assert_eq!(lines[4], "");
    assert!(lines[5].starts_with("\u{2014} aura.test/audit "));
    log.close().await.unwrap();
    let v = verify(&tmp.path().join("audit"), None).unwrap();
    assert_eq!(
        (v.entries, v.checkpoints, v.latest_checkpoint_size),
        (2, 2, Some(2))
    );
}

#[tokio::test]
async fn a_checkpoint_follows_appends_within_the_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    log.append(entry(0, "a")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.latest_checkpoint().is_none_or(|c| c.tree_size < 1) {
        assert!(Instant::now() < deadline, "no periodic checkpoint");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    log.close().await.unwrap();
}

#[tokio::test]
async fn proofs_from_the_log_verify_against_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 8192)).unwrap();
    let mut leaves = Vec::new();
    let mut cps = Vec::new();
    for i in 0..70 {
        let r = if i % 9 == 8 {
            let (r, cp) = log.append_sealed(entry(i, "a")).await.unwrap();
            cps.push(cp);
            r
        } else {
            log.append(entry(i, "a")).await.unwrap()
        };
        leaves.push(r.leaf_hash);
    }
    cps.push(log.checkpoint_now().await.unwrap());
    for cp in &cps {
        let vcp = verify_checkpoint(&cp.note, log.public_key()).unwrap();
        assert_eq!(log.root_at(vcp.tree_size).unwrap(), vcp.root);
        for i in 0..vcp.tree_size {
            let proof = log.inclusion_proof(i, vcp.tree_size).unwrap();
            verify_inclusion(&leaves[i as usize], &proof, &vcp.root).unwrap();
        }
        for older in &cps {
            if older.tree_size <= vcp.tree_size {
                let proof = log
                    .consistency_proof(older.tree_size, vcp.tree_size)
                    .unwrap();
                verify_consistency(&proof, &older.root, &vcp.root).unwrap();
            }
        }
    }
    assert!(matches!(
        log.inclusion_proof(70, 70),
        Err(AuditError::OutOfRange { .. })
    ));
    assert!(matches!(
        log.inclusion_proof(0, 71),
        Err(AuditError::OutOfRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(5, 71),
        Err(AuditError::OutOfRange { .. })
    ));
    log.close().await.unwrap();
}

#[tokio::test]
async fn segments_seal_and_scans_filter_across_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    for i in 0..120 {
        log.append(entry(i, if i % 2 == 0 { "even" } else { "odd" }))
            .await
            .unwrap();
    }
    assert!(segments(&tmp.path().join("audit")).len() > 3);
    let all: Vec<u64> = log
        .scan(ScanFilter::default())
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(all, (0..120).collect::<Vec<_>>());
    let odd_task1: Vec<u64> = log
        .scan(ScanFilter {
            agent: Some("odd".into()),
            task: Some("task-1".into()),
            ..ScanFilter::default()
        })
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(
        odd_task1,
        (0..120)
            .filter(|i| i % 2 == 1 && i % 3 == 1)
            .collect::<Vec<_>>()
    );
    let window: Vec<u64> = log
        .scan(ScanFilter {
            since: Some(Timestamp::from_millis(1_000_010)),
            until: Some(Timestamp::from_millis(1_000_020)),
            from_seq: 5,
            ..ScanFilter::default()
        })
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(window, (10..20).collect::<Vec<_>>());
    log.close().await.unwrap();
    drop(log);
    let (log, report) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    assert_eq!(report.entries, 120);
    assert_eq!(
        log.scan(ScanFilter {
            from_seq: 100,
            ..ScanFilter::default()
        })
        .count(),
        20
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_torn_tail_is_cut_reported_and_the_log_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    for i in 0..10 {
        log.append(entry(i, "a")).await.unwrap();
    }
    log.close().await.unwrap();
    drop(log);
    // Simulate a write cut short by a crash: half of a record after the last one.
    let (seg, off, len) = locate(&dir, 9);
    let mut bytes = std::fs::read(&seg).unwrap();
    let partial = bytes[off..off + len / 2].to_vec();
    bytes.extend_from_slice(&partial);
    std::fs::write(&seg, &bytes).unwrap();

    let (log, report) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    let torn = report
        .torn_segment_tail
        .clone()
        .expect("torn tail reported");
    assert_eq!(
        (torn.offset as usize, torn.discarded_bytes as usize),
        (off + len, len / 2)
    );
    assert_eq!(report.entries, 10);
    let r = log.append(entry(10, "a")).await.unwrap();
    assert_eq!(r.seq, 10);
    log.close().await.unwrap();
    drop(log);
    assert_eq!(verify(&dir, None).unwrap().entries, 11);
    let (_log, report) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    assert!(report.is_clean());
}

#[tokio::test]
async fn corruption_before_the_tail_is_an_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    for i in 0..10 {
        log.append(entry(i, "a")).await.unwrap();
    }
    log.close().await.unwrap();
    drop(log);
    let (seg, off, _) = locate(&dir, 4);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[off + 30] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let err = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap_err();
    assert!(
        matches!(err, AuditError::Corrupt { offset, .. } if offset as usize == off),
        "{err}"
    );
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing was cut");
}

#[tokio::test]
async fn cutting_checkpointed_entries_is_not_mistaken_for_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    for i in 0..10 {
        log.append(entry(i, "a")).await.unwrap();
    }
    log.close().await.unwrap(); // signs a checkpoint at 10
    drop(log);
    let (seg, off, len) = locate(&dir, 9);
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..off + len - 3]).unwrap();
    let err = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap_err();
    assert!(err.to_string().contains("checkpoint"), "{err}");
}

#[tokio::test]
async fn derived_files_are_rebuilt_from_the_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (log, _) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    for i in 0..50 {
        log.append(entry(i, "a")).await.unwrap();
    }
    let root = log.root();
    log.close().await.unwrap();
    drop(log);
    std::fs::remove_dir_all(dir.join("tree")).unwrap();
    std::fs::remove_file(dir.join("index/offsets")).unwrap();
    let (log, report) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    assert_eq!((report.reindexed_entries, log.root()), (50, root));
    assert_eq!(log.entry(33).unwrap().unwrap().seq, 33);
    let leaf33 = leaf_hash(&canonical_bytes(33, &entry(33, "a")).unwrap());
    verify_inclusion(&leaf33, &log.inclusion_proof(33, 50).unwrap(), &root).unwrap();
    log.close().await.unwrap();
    drop(log);
    // A leaf file cut short (as after a power loss) is completed from the segments.
    let level0 = dir.join("tree/level-00");
    let bytes = std::fs::read(&level0).unwrap();
    std::fs::write(&level0, &bytes[..32 * 45]).unwrap();
    let (log, report) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    assert_eq!((report.reindexed_entries, log.root()), (5, root));
    verify_inclusion(&leaf33, &log.inclusion_proof(33, 50).unwrap(), &root).unwrap();
    // A leaf hash damaged in place never yields a wrong proof: the proof is refused, and reopening rebuilds it.
    log.close().await.unwrap();
    drop(log);
    let mut bytes = std::fs::read(&level0).unwrap();
    bytes[32 * 7..32 * 8].fill(0);
    std::fs::write(&level0, &bytes).unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    assert!(matches!(
        log.inclusion_proof(6, 50),
        Err(AuditError::Corrupt { .. })
    ));
    log.close().await.unwrap();
    drop(log);
    std::fs::remove_file(&level0).unwrap();
    let (log, report) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    assert_eq!((report.reindexed_entries, log.root()), (50, root));
    log.close().await.unwrap();
}

#[tokio::test]
async fn the_directory_is_locked_and_the_key_must_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
    assert!(matches!(
        AuditLog::open(config(tmp.path(), 4096)),
        Err(AuditError::Locked(_))
    ));
    log.append(entry(0, "a")).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    let key = tmp.path().join("keys/audit.ed25519");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::rename(&key, tmp.path().join("moved")).unwrap();
    assert!(matches!(
        AuditLog::open(config(tmp.path(), 4096)),
        Err(AuditError::Key { .. })
    ));
    // A different key is refused too.
    let other = tempfile::tempdir().unwrap();
    drop(AuditLog::open(config(other.path(), 4096)).unwrap());
    std::fs::copy(other.path().join("keys/audit.ed25519"), &key).unwrap();
    assert!(matches!(
        AuditLog::open(config(tmp.path(), 4096)),
        Err(AuditError::Key { .. })
    ));
}

#[test]
fn bad_configs_and_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["", "has space", "a+b"] {
        let mut c = config(tmp.path(), 4096);
        c.origin = bad.into();
        assert!(
            matches!(AuditLog::open(c), Err(AuditError::Config(_))),
            "{bad:?}"
        );
    }
    let mut c = config(tmp.path(), 4096);
    c.checkpoint_interval = Duration::from_secs(5);
    assert!(matches!(AuditLog::open(c), Err(AuditError::Config(_))));
    let mut e = entry(0, "a");
    e.details.insert("x".into(), serde_json::json!(1.5));
    assert!(matches!(canonical_bytes(0, &e), Err(AuditError::Encode(_))));
}

/// Issue 4: batched and pipelined appends. `append_many` takes consecutive numbers in order, mixes with single and
/// sealed appends from other tasks without gaps, refuses a batch with a bad entry as a whole, and a dropped append
/// future still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_many_is_ordered_gap_free_and_all_or_nothing_on_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 8192)).unwrap();
    let log = Arc::new(log);
    assert!(log.append_many(Vec::new()).await.unwrap().is_empty());
    let mut bad = vec![entry(1, "a"), entry(2, "a")];
    bad[1]
        .details
        .insert("ratio".into(), serde_json::json!(0.5));
    assert!(matches!(
        log.append_many(bad).await,
        Err(AuditError::Encode(_))
    ));
    assert_eq!(log.tree_size(), 0);

    let mut set = tokio::task::JoinSet::new();
    for w in 0..6u64 {
        let log = log.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for i in 0..10u64 {
                let base = w * 1000 + i * 10;
                match (w + i) % 3 {
                    0 => {
                        let batch: Vec<AuditEntry> = (0..7).map(|k| entry(base + k, "m")).collect();
                        let receipts = log.append_many(batch.clone()).await.unwrap();
                        let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
                        let first = seqs[0];
                        assert_eq!(seqs, (first..first + 7).collect::<Vec<_>>());
                        out.extend(receipts.into_iter().zip(batch));
                    }
                    1 => {
                        let e = entry(base, "s");
                        let (r, cp) = log.append_sealed(e.clone()).await.unwrap();
                        assert!(cp.tree_size > r.seq);
                        out.push((r, e));
                    }
                    _ => {
                        let e = entry(base, "p");
                        out.push((log.append(e.clone()).await.unwrap(), e));
                    }
                }
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    // A dropped append future (after its first poll) is not cancelled.
    let dropped = entry(99_999, "dropped");
    {
        let fut = log.append(dropped.clone());
        tokio::pin!(fut);
        let _ = tokio::time::timeout(Duration::ZERO, &mut fut).await;
    }
    let n = all.len() as u64 + 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.tree_size() < n && Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(log.tree_size(), n);
    let seqs: HashSet<u64> = all.iter().map(|(r, _)| r.seq).collect();
    assert_eq!(seqs.len() as u64, n - 1);
    for (r, e) in &all {
        assert_eq!(r.leaf_hash, leaf_hash(&canonical_bytes(r.seq, e).unwrap()));
        assert_eq!(log.entry(r.seq).unwrap().unwrap().entry, *e);
    }
    assert_eq!(log.entry(n - 1).unwrap().unwrap().entry, dropped);
    let root = log.root();
    log.close().await.unwrap();
    let v = verify(&tmp.path().join("audit"), None).unwrap();
    assert_eq!((v.entries, v.root), (n, root));
    assert!(v.segments > 1, "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_entries_are_durable_only_when_awaited_and_keep_their_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    let a = log.submit(&entry(1, "planner")).unwrap();
    let b = log.submit(&entry(2, "planner")).unwrap();
    assert_eq!((a.seq, b.seq), (0, 1));
    log.durable_until(b.seq).await.unwrap();
    assert!(log.tree_size() >= 2);
    let stored = log.entry(a.seq).unwrap().unwrap();
    assert_eq!(
        leaf_hash(&canonical_bytes(stored.seq, &stored.entry).unwrap()),
        a.leaf_hash,
        "the receipt given at submission is the stored leaf"
    );
    let stats = log.stats();
    assert_eq!(stats.entries, 2);
    assert!(stats.batches >= 1);
    log.close().await.unwrap();
    assert!(matches!(
        log.submit(&entry(3, "planner")),
        Err(AuditError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_entries_become_durable_and_periodic_checkpoints_cover_only_durable_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 1 << 20);
    cfg.checkpoint_interval = Duration::from_millis(5);
    let (log, _) = AuditLog::open(cfg).unwrap();
    let log = Arc::new(log);
    // Many writers, each releasing on "written": all are readable at once and all become durable.
    let mut set = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let log = log.clone();
        set.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                let r = log.submit(&entry(w * 1000 + i, "planner")).unwrap();
                log.written_until(r.seq).await.unwrap();
                assert!(
                    log.entry(r.seq).unwrap().is_some(),
                    "written means readable"
                );
                seqs.push(r.seq);
            }
            seqs
        });
    }
    let mut all = Vec::new();
    while let Some(seqs) = set.join_next().await {
        all.extend(seqs.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>());
    log.durable_until(399).await.unwrap();
    // The periodic checkpoint catches up with the durable size without another append.
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.latest_checkpoint().map(|c| c.tree_size) != Some(400) {
        assert!(
            Instant::now() < deadline,
            "no checkpoint at the durable size"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stats = log.stats();
    assert!(
        stats.batches >= 1 && stats.batches <= 400,
        "group-committed: {stats:?}"
    );
    log.close().await.unwrap();
    let v = verify(&tmp.path().join("audit"), None).unwrap();
    assert_eq!(v.entries, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_entries_ride_with_the_next_awaited_append_or_linger_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    let log = Arc::new(log);
    // Alone, a lazy entry is written at once by its caller (the write side is free) and made durable by the sync
    // thread's next fdatasync, which nobody hurries: well before its linger, which only bounds how long it may wait
    // in the queue while others write.
    let started = Instant::now();
    log.append_lazy(entry(1, "planner"), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    // With a long linger, an awaited append arriving meanwhile carries it: one fdatasync for both.
    let before = log.stats().batches;
    let lazy = {
        let log = log.clone();
        tokio::spawn(async move {
            log.append_lazy(entry(2, "planner"), Duration::from_secs(30))
                .await
                .unwrap()
        })
    };
    // Awaited appends keep arriving; the lazy entry must become durable with one of them, long before its linger.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lazy.is_finished() {
        let probe = log.submit(&entry(99, "probe")).unwrap();
        log.durable_until(probe.seq).await.unwrap();
        assert!(
            Instant::now() < deadline,
            "the lazy entry was not written with the awaited ones"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let lazy = lazy.await.unwrap();
    assert!(lazy.seq >= 1);
    assert!(log.stats().batches > before);
    assert_eq!(log.tree_size(), log.stats().entries);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_submit_on_an_idle_log_writes_its_entry_before_returning() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(config(tmp.path(), 1 << 20)).unwrap();
    // Nobody else writes: each submitter finds the write side free and writes its own entry (no hand-off to the
    // writer thread), so the entry is readable the moment `submit` returns, without awaiting anything.
    for i in 0..50 {
        let e = entry(i, "planner");
        let r = log.submit(&e).unwrap();
        assert_eq!(r.seq, i);
        let read = log
            .entry(r.seq)
            .unwrap()
            .expect("written inline by the submitter");
        assert_eq!(read.entry, e);
        log.written_until(r.seq).await.unwrap();
    }
    // The entries still become durable and checkpointed as usual.
    log.durable_until(49).await.unwrap();
    let cp = log.checkpoint_now().await.unwrap();
    assert_eq!(cp.tree_size, 50);
    log.close().await.unwrap();
    let v = verify(&tmp.path().join("audit"), None).unwrap();
    assert_eq!(v.entries, 50);
}
