//! Crash safety: a child process appends as fast as it can and is killed with SIGKILL at random points, over and
//! over; after every kill, each entry it reported as acknowledged (durable, or for one writer only written with
//! [`AuditLog::written_until`]) must be in the reopened log and `verify` must pass.
//!
//! The child is this test binary itself, re-executed to run only `crash_child` with `CRASH_CHILD_DIR` set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aura_audit::{AuditLog, verify};
use common::{config, entry};

const CHILD_ENV: &str = "CRASH_CHILD_DIR";
const ROUNDS: usize = 40;
const CYCLES_PER_ROUND: usize = 5;

/// Not a test on its own: the append loop of the child process. Returns at once unless `CRASH_CHILD_DIR` is set.
#[test]
fn crash_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut cfg = config(Path::new(&root), 4096);
        cfg.checkpoint_interval = Duration::from_millis(200);
        let (log, _) = AuditLog::open(cfg).unwrap();
        let log = Arc::new(log);
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let stop_at = Instant::now() + Duration::from_secs(20); // in case the parent is gone
        let mut set = tokio::task::JoinSet::new();
        for w in 0..4u64 {
            let (log, out) = (log.clone(), out.clone());
            set.spawn(async move {
                let mut i = 0u64;
                while Instant::now() < stop_at {
                    i += 1;
                    let e = entry(w * 1_000_000 + i, "crasher");
                    let seq = if i.is_multiple_of(20) {
                        log.append_sealed(e).await.unwrap().0.seq
                    } else if w == 3 {
                        // Written (not yet fdatasync'd) must survive a kill -9 of the process as well.
                        let r = log.submit(&e).unwrap();
                        log.written_until(r.seq).await.unwrap();
                        r.seq
                    } else {
                        log.append(e).await.unwrap().seq
                    };
                    let mut out = out.lock().unwrap();
                    writeln!(out, "\nACK {seq}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
        while set.join_next().await.is_some() {}
    });
}

fn parse_ack(line: &str) -> Option<u64> {
    line.rsplit_once("ACK ")
        .and_then(|(_, n)| n.trim().parse().ok())
}

#[test]
fn kill_9_never_loses_an_acknowledged_entry() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed}");
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = Instant::now();
    let mut cycles = 0usize;
    let mut torn = 0;
    for _ in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        let mut acked: Vec<u64> = Vec::new();
        for _ in 0..CYCLES_PER_ROUND {
            let target = 1 + (rand() % 50) as usize;
            let mut child = Command::new(&exe)
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, tmp.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut this_cycle = 0;
            for line in lines.by_ref() {
                if let Some(seq) = parse_ack(&line.unwrap()) {
                    acked.push(seq);
                    this_cycle += 1;
                    if this_cycle >= target {
                        break;
                    }
                }
            }
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            // Acknowledgements printed before the kill landed count too.
            acked.extend(lines.map_while(Result::ok).filter_map(|l| parse_ack(&l)));
            if this_cycle < target {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                panic!("child stopped after {this_cycle} acks ({status}): {err}");
            }
            cycles += 1;
            // Emulate a power loss in the middle of a write: garbage (a partial record) after the last record of
            // the active segment, and sometimes of the checkpoint file. Recovery must cut it and keep every ack.
            if cycles.is_multiple_of(3) {
                let newest = common::segments(&tmp.path().join("audit")).pop().unwrap();
                let garbage: Vec<u8> = (0..1 + rand() % 60).map(|_| rand() as u8).collect();
                append_bytes(&newest, &garbage);
                if cycles.is_multiple_of(2) {
                    append_bytes(
                        &tmp.path().join("audit/checkpoints"),
                        &garbage[..garbage.len().min(19)],
                    );
                }
            }

            let (log, report) = AuditLog::open(config(tmp.path(), 4096)).unwrap();
            torn += usize::from(!report.is_clean());
            // Injected garbage is always found and cut. A kill alone may also leave a torn tail: SIGKILL stops a
            // write(2) that crosses a page boundary between pages. Either way, nothing acknowledged may be lost.
            if cycles.is_multiple_of(3) {
                assert!(!report.is_clean(), "injected garbage not found: {report:?}");
            }
            let size = log.tree_size();
            for &seq in &acked {
                assert!(
                    seq < size,
                    "acknowledged entry {seq} lost (tree size {size}, cycle {cycles})"
                );
                assert_eq!(log.entry(seq).unwrap().unwrap().seq, seq);
            }
            drop(log);
            let v = verify(&tmp.path().join("audit"), None).unwrap();
            assert_eq!(v.entries, size);
        }
    }
    println!(
        "{cycles} kill -9 cycles, {torn} torn tails repaired, {:?}",
        started.elapsed()
    );
    assert_eq!(cycles, ROUNDS * CYCLES_PER_ROUND);
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}
