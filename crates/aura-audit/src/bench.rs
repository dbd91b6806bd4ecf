//! The audit log benchmark behind `aura bench audit`: durable appends per second under group commit for several
//! writer counts, checkpoint lag, and offline verification throughput.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_core::{ActionKind, AgentName, Timestamp, Verdict};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::entry::{Actor, ActorKind, AuditEntry, Resource, RiskLevel};
use crate::error::AuditError;
use crate::log::{AuditConfig, AuditLog};

/// Checkpoint interval used by the benchmark.
const BENCH_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// How long each benchmark run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchLimit {
    /// Append for this long.
    Duration(Duration),
    /// Append this many entries in total.
    Count(u64),
}

/// Results of [`bench()`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// One run per writer count.
    pub runs: Vec<BenchRun>,
    /// Checkpoint interval configured for the runs, in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// Entries checked by the verification pass (the largest run's log).
    pub verify_entries: u64,
    /// Wall time of the verification pass, in seconds.
    pub verify_seconds: f64,
    /// Verification throughput.
    pub verify_entries_per_sec: f64,
}

/// One run: `writers` tasks appending concurrently, each waiting for its own acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchRun {
    /// Concurrent writers.
    pub writers: usize,
    /// Durable appends completed.
    pub appends: u64,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Durable appends per second.
    pub appends_per_sec: f64,
    /// Median append latency (submit to durable acknowledgement), in microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile append latency, in microseconds.
    pub latency_p99_us: u64,
    /// Median time from an entry's acknowledgement to the first checkpoint covering it, in milliseconds.
    pub checkpoint_lag_p50_ms: f64,
    /// 99th percentile checkpoint lag, in milliseconds.
    pub checkpoint_lag_p99_ms: f64,
    /// Largest checkpoint lag, in milliseconds.
    pub checkpoint_lag_max_ms: f64,
    /// Checkpoints signed during the run.
    pub checkpoints: u64,
    /// Average log bytes per entry on disk (segments only).
    pub bytes_per_entry: u64,
}

/// Runs the benchmark in `dir` (a scratch directory; one fresh log per run in `dir/writers-N`). Needs a
/// multi-threaded tokio runtime.
pub async fn bench(
    dir: &Path,
    writers: &[usize],
    limit: BenchLimit,
) -> Result<BenchReport, AuditError> {
    let mut runs = Vec::new();
    let mut biggest: Option<(u64, std::path::PathBuf)> = None;
    for &w in writers {
        let w = w.max(1);
        let run_dir = dir.join(format!("writers-{w}"));
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir).map_err(|e| AuditError::io(&run_dir, e))?;
        }
        let run = run_one(&run_dir, w, limit).await?;
        if biggest.as_ref().is_none_or(|b| run.appends > b.0) {
            biggest = Some((run.appends, run_dir.join("log")));
        }
        runs.push(run);
    }
    let (verify_entries, verify_seconds) = match biggest {
        Some((_, log_dir)) => {
            let started = Instant::now();
            let report = tokio::task::spawn_blocking(move || crate::verify::verify(&log_dir, None))
                .await
                .map_err(|e| AuditError::Poisoned(format!("verify task failed: {e}")))??;
            (report.entries, started.elapsed().as_secs_f64())
        }
        None => (0, 0.0),
    };
    Ok(BenchReport {
        runs,
        checkpoint_interval_ms: BENCH_CHECKPOINT_INTERVAL.as_millis() as u64,
        verify_entries,
        verify_seconds,
        verify_entries_per_sec: if verify_seconds > 0.0 {
            verify_entries as f64 / verify_seconds
        } else {
            0.0
        },
    })
}

async fn run_one(
    run_dir: &Path,
    writers: usize,
    limit: BenchLimit,
) -> Result<BenchRun, AuditError> {
    let config = AuditConfig {
        dir: run_dir.join("log"),
        key_path: run_dir.join("audit.ed25519"),
        origin: "bench.aura.local/audit".into(),
        segment_bytes: 64 << 20,
        checkpoint_interval: BENCH_CHECKPOINT_INTERVAL,
    };
    let (log, _) = AuditLog::open(config)?;
    let log = Arc::new(log);
    let mut watch = log.checkpoint_watch();
    let recorder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while watch.changed().await.is_ok() {
            if let Some(v) = *watch.borrow_and_update() {
                seen.push(v);
            }
        }
        seen
    });
    let started = Instant::now();
    let deadline = match limit {
        BenchLimit::Duration(d) => Some(started + d),
        BenchLimit::Count(_) => None,
    };
    let per_writer = match limit {
        BenchLimit::Count(n) => Some(n.div_ceil(writers as u64)),
        BenchLimit::Duration(_) => None,
    };
    let mut set = JoinSet::new();
    for w in 0..writers {
        let log = log.clone();
        set.spawn(async move {
            let entry = sample_entry(w);
            let mut acks = Vec::new();
            let mut lat = Vec::new();
            let mut i = 0u64;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || per_writer.is_some_and(|n| i >= n)
                {
                    break;
                }
                let t0 = Instant::now();
                let receipt = log.append(entry.clone()).await?;
                let t1 = Instant::now();
                acks.push((receipt.seq, t1));
                lat.push(t1 - t0);
                i += 1;
            }
            Ok::<_, AuditError>((acks, lat))
        });
    }
    let mut acks = Vec::new();
    let mut lat = Vec::new();
    let mut failure = None;
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok((a, l))) => {
                acks.extend(a);
                lat.extend(l);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(AuditError::Poisoned(format!("writer task failed: {e}"))),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the periodic checkpoint cover the last entries, then stop.
    let size = log.tree_size();
    let wait_until = Instant::now() + BENCH_CHECKPOINT_INTERVAL * 20;
    while log.latest_checkpoint().is_none_or(|c| c.tree_size < size) && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    log.close().await?;
    drop(log);
    let cps = recorder.await.unwrap_or_default();
    if let Some(e) = failure {
        return Err(e);
    }
    let seg_bytes: u64 = std::fs::read_dir(run_dir.join("log/segments"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);

    lat.sort_unstable();
    let mut lags: Vec<f64> = acks
        .iter()
        .filter_map(|(seq, t_ack)| {
            let i = cps.partition_point(|(s, _)| s <= seq);
            cps.get(i)
                .map(|(_, t_cp)| t_cp.saturating_duration_since(*t_ack).as_secs_f64() * 1e3)
        })
        .collect();
    lags.sort_unstable_by(f64::total_cmp);
    let appends = acks.len() as u64;
    Ok(BenchRun {
        writers,
        appends,
        seconds,
        appends_per_sec: appends as f64 / seconds.max(1e-9),
        latency_p50_us: pct(&lat, 50).map_or(0, |d| d.as_micros() as u64),
        latency_p99_us: pct(&lat, 99).map_or(0, |d| d.as_micros() as u64),
        checkpoint_lag_p50_ms: pct(&lags, 50).unwrap_or(0.0),
        checkpoint_lag_p99_ms: pct(&lags, 99).unwrap_or(0.0),
        checkpoint_lag_max_ms: lags.last().copied().unwrap_or(0.0),
        checkpoints: cps.len() as u64,
        bytes_per_entry: seg_bytes.checked_div(appends).unwrap_or(0),
    })
}

fn pct<T: Copy>(sorted: &[T], p: usize) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    sorted.get((sorted.len() - 1) * p / 100).copied()
}

/// A realistic kernel decision entry (about 450 bytes encoded).
fn sample_entry(writer: usize) -> AuditEntry {
    let agent = AgentName::new(format!("agent-{writer}")).ok();
    let mut e = AuditEntry::new(
        Timestamp::from_millis(1_795_292_371_042),
        Actor {
            kind: ActorKind::Agent,
            id: format!("agent-{writer}"),
            ip: Some("127.0.0.1".into()),
        },
        Resource {
            kind: "model".into(),
            path: "gpt-4o-mini".into(),
        },
        "kernel.decide",
        "allowed",
        RiskLevel::Low,
    );
    e.agent = agent;
    e.task = Some(format!("task-{writer}"));
    e.human = Some("alice@example.com".into());
    e.action_kind = Some(ActionKind::LlmCall);
    e.target = Some("gpt-4o-mini".into());
    e.args_hash = Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into());
    e.verdict = Some(Verdict::Allow);
    e.rules = vec!["llm-default-allow".into(), "budget-ok".into()];
    e.policy_hash = Some("2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into());
    e.budget_before_micros = Some(12_000_000);
    e.budget_after_micros = Some(11_998_500);
    e.details.insert("estimated_tokens".into(), 1200.into());
    e
}
