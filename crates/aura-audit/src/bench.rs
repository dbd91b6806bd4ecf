//! The audit log benchmark behind `aura bench audit`: durable appends per second under group commit for several
//! writer counts, in-flight windows and batch sizes, checkpoint lag, and offline verification throughput.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_core::{ActionKind, AgentName, Timestamp, Verdict};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::entry::{Actor, ActorKind, AuditEntry, Resource, RiskLevel};
use crate::error::AuditError;
use crate::log::{AuditConfig, AuditLog, History};

/// Checkpoint interval used by the benchmark.
const BENCH_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// Appends each writer of the default plan keeps in flight in its windowed runs.
const DEFAULT_WINDOW: usize = 64;

/// Entries per `append_many` call in the default plan's batched run.
const DEFAULT_BATCH: usize = 256;

/// How long each benchmark run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchLimit {
    /// Append for this long.
    Duration(Duration),
    /// Append this many entries in total.
    Count(u64),
}

/// One benchmark configuration: `writers` concurrent writers, each keeping `in_flight` calls outstanding, each call
/// appending `batch` entries (`append` when 1, `append_many` otherwise) and waiting for their durable
/// acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BenchConfig {
    /// Concurrent writers (think: kernel connections).
    pub writers: usize,
    /// Calls each writer keeps outstanding (think: concurrent decisions per connection).
    pub in_flight: usize,
    /// Entries per call.
    pub batch: usize,
}

impl BenchConfig {
    /// Entries outstanding at once: writers × in flight × batch.
    pub fn entries_in_flight(&self) -> usize {
        self.writers * self.in_flight * self.batch
    }

    /// A short human description, e.g. `64 writers × 64 in flight`.
    pub fn label(&self) -> String {
        let mut s = format!(
            "{} writer{}",
            self.writers,
            if self.writers == 1 { "" } else { "s" }
        );
        if self.in_flight > 1 {
            s.push_str(&format!(" × {} in flight", self.in_flight));
        }
        if self.batch > 1 {
            s.push_str(&format!(" × batches of {}", self.batch));
        }
        s
    }
}

/// The configurations [`bench()`] runs for `writers`: each writer count with one append in flight, each with a
/// window of 64 appends in flight per writer, and one writer appending batches of 256 with `append_many`.
pub fn default_plan(writers: &[usize]) -> Vec<BenchConfig> {
    let one = |w: usize, in_flight, batch| BenchConfig {
        writers: w.max(1),
        in_flight,
        batch,
    };
    let mut plan: Vec<BenchConfig> = writers.iter().map(|&w| one(w, 1, 1)).collect();
    plan.extend(writers.iter().map(|&w| one(w, DEFAULT_WINDOW, 1)));
    plan.push(one(1, 1, DEFAULT_BATCH));
    plan
}

/// Results of [`bench()`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// The best durable appends per second of all runs.
    pub appends_per_sec: f64,
    /// The configuration that achieved it (see [`BenchConfig::label`]).
    pub best: String,
    /// One run per configuration.
    pub runs: Vec<BenchRun>,
    /// Checkpoint interval configured for the runs, in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// Median checkpoint lag over the entries of all runs, in milliseconds.
    pub checkpoint_lag_p50_ms: f64,
    /// 99th percentile checkpoint lag over all runs, in milliseconds.
    pub checkpoint_lag_p99_ms: f64,
    /// Largest checkpoint lag of any run, in milliseconds.
    pub checkpoint_lag_max_ms: f64,
    /// Median latency of one 4 KiB write + fdatasync in the benchmark directory: the floor of an acknowledgement.
    pub fdatasync_p50_us: u64,
    /// 99th percentile of the same.
    pub fdatasync_p99_us: u64,
    /// Entries checked by the verification pass (the largest run's log).
    pub verify_entries: u64,
    /// Wall time of the verification pass, in seconds.
    pub verify_seconds: f64,
    /// Verification throughput.
    pub verify_entries_per_sec: f64,
}

/// One run of one [`BenchConfig`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchRun {
    /// Concurrent writers.
    pub writers: usize,
    /// Calls each writer keeps outstanding.
    pub in_flight: usize,
    /// Entries per call.
    pub batch: usize,
    /// A short description of the configuration.
    pub label: String,
    /// Durable appends completed.
    pub appends: u64,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Durable appends per second.
    pub appends_per_sec: f64,
    /// Average entries written per fdatasync (the group-commit batch size).
    pub entries_per_sync: f64,
    /// Median latency of one call (submit to durable acknowledgement), in microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile call latency, in microseconds.
    pub latency_p99_us: u64,
    /// Median time from an entry becoming durable (its batch fdatasync'd) to the first checkpoint covering it being
    /// stored, in milliseconds; both instants are taken on the writer thread.
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

/// Runs the benchmark in `dir` (a scratch directory; one fresh log per run in `dir/run-N`, only the largest of
/// which is kept, for the verification pass) with the [`default_plan`] for `writers`. Needs a multi-threaded tokio
/// runtime.
pub async fn bench(
    dir: &Path,
    writers: &[usize],
    limit: BenchLimit,
) -> Result<BenchReport, AuditError> {
    bench_configs(dir, &default_plan(writers), limit).await
}

/// Runs the benchmark for the given configurations. Needs a multi-threaded tokio runtime.
pub async fn bench_configs(
    dir: &Path,
    configs: &[BenchConfig],
    limit: BenchLimit,
) -> Result<BenchReport, AuditError> {
    std::fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
    let probe = dir.join("fdatasync-probe");
    let (fdatasync_p50_us, fdatasync_p99_us) =
        tokio::task::spawn_blocking(move || fdatasync_latency(&probe))
            .await
            .map_err(|e| AuditError::Poisoned(format!("fdatasync probe failed: {e}")))??;
    let mut runs = Vec::new();
    let mut all_lags = Vec::new();
    let mut biggest: Option<(u64, PathBuf)> = None;
    for (i, config) in configs.iter().enumerate() {
        let config = BenchConfig {
            writers: config.writers.max(1),
            in_flight: config.in_flight.max(1),
            batch: config.batch.max(1),
        };
        let run_dir = dir.join(format!("run-{i}"));
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir).map_err(|e| AuditError::io(&run_dir, e))?;
        }
        let (run, lags) = run_one(&run_dir, config, limit).await?;
        all_lags.extend(lags);
        // Keep only the largest log (for the verification pass): at these rates a run writes up to a gigabyte.
        let drop_dir = if biggest.as_ref().is_none_or(|b| run.appends > b.0) {
            biggest.replace((run.appends, run_dir.clone())).map(|b| b.1)
        } else {
            Some(run_dir)
        };
        if let Some(d) = drop_dir {
            std::fs::remove_dir_all(&d).map_err(|e| AuditError::io(&d, e))?;
        }
        runs.push(run);
    }
    let (verify_entries, verify_seconds) = match biggest {
        Some((_, run_dir)) => {
            let log_dir = run_dir.join("log");
            let started = Instant::now();
            let report = tokio::task::spawn_blocking(move || crate::verify::verify(&log_dir, None))
                .await
                .map_err(|e| AuditError::Poisoned(format!("verify task failed: {e}")))??;
            (report.entries, started.elapsed().as_secs_f64())
        }
        None => (0, 0.0),
    };
    all_lags.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let best = runs
        .iter()
        .max_by(|a, b| a.appends_per_sec.total_cmp(&b.appends_per_sec));
    Ok(BenchReport {
        appends_per_sec: best.map_or(0.0, |r| r.appends_per_sec),
        best: best.map(|r| r.label.clone()).unwrap_or_default(),
        checkpoint_interval_ms: BENCH_CHECKPOINT_INTERVAL.as_millis() as u64,
        checkpoint_lag_p50_ms: weighted_pct(&all_lags, 50),
        checkpoint_lag_p99_ms: weighted_pct(&all_lags, 99),
        checkpoint_lag_max_ms: all_lags.last().map_or(0.0, |l| l.0),
        runs,
        fdatasync_p50_us,
        fdatasync_p99_us,
        verify_entries,
        verify_seconds,
        verify_entries_per_sec: if verify_seconds > 0.0 {
            verify_entries as f64 / verify_seconds
        } else {
            0.0
        },
    })
}

/// Median and 99th percentile of 200 appending 4 KiB writes each followed by fdatasync, in microseconds: the
/// floor of any durable acknowledgement in the directory of `path` (a scratch file, removed afterwards). Blocking.
pub fn fdatasync_latency(path: &Path) -> Result<(u64, u64), AuditError> {
    let io = |e| AuditError::io(path, e);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let block = [0x5au8; 4096];
    let mut lat = Vec::with_capacity(200);
    for _ in 0..200 {
        let t0 = Instant::now();
        f.write_all(&block).map_err(io)?;
        f.sync_data().map_err(io)?;
        lat.push(t0.elapsed());
    }
    drop(f);
    std::fs::remove_file(path).map_err(io)?;
    lat.sort_unstable();
    let us = |d: Option<Duration>| d.map_or(0, |d| d.as_micros() as u64);
    Ok((us(pct(&lat, 50)), us(pct(&lat, 99))))
}

/// What one writer slot measured: entries appended, and per call its latency.
type SlotResult = (u64, Vec<Duration>);

async fn run_one(
    run_dir: &Path,
    c: BenchConfig,
    limit: BenchLimit,
) -> Result<(BenchRun, Vec<(f64, u64)>), AuditError> {
    let config = AuditConfig {
        dir: run_dir.join("log"),
        key_path: run_dir.join("audit.ed25519"),
        origin: "bench.aura.local/audit".into(),
        segment_bytes: 64 << 20,
        checkpoint_interval: BENCH_CHECKPOINT_INTERVAL,
    };
    let (log, _) = AuditLog::open(config)?;
    let log = Arc::new(log);
    log.record_history();
    let syncs_before = log.batches_written();
    let started = Instant::now();
    let deadline = match limit {
        BenchLimit::Duration(d) => Some(started + d),
        BenchLimit::Count(_) => None,
    };
    // Every slot (writer × in-flight position) runs its calls one after the other.
    let slots = (c.writers * c.in_flight) as u64;
    let per_slot_calls = match limit {
        BenchLimit::Count(n) => Some(n.div_ceil(slots * c.batch as u64)),
        BenchLimit::Duration(_) => None,
    };
    let mut set = JoinSet::new();
    for w in 0..c.writers {
        for _ in 0..c.in_flight {
            let log = log.clone();
            set.spawn(async move {
                let entry = sample_entry(w);
                let mut appended = 0u64;
                let mut lat = Vec::new();
                let mut i = 0u64;
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d)
                        || per_slot_calls.is_some_and(|n| i >= n)
                    {
                        break;
                    }
                    let t0 = Instant::now();
                    if c.batch == 1 {
                        log.append(entry.clone()).await?;
                    } else {
                        log.append_many(vec![entry.clone(); c.batch]).await?;
                    }
                    lat.push(t0.elapsed());
                    appended += c.batch as u64;
                    i += 1;
                }
                Ok::<SlotResult, AuditError>((appended, lat))
            });
        }
    }
    let mut appends = 0;
    let mut lat = Vec::new();
    let mut failure = None;
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok((a, l))) => {
                appends += a;
                lat.extend(l);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(AuditError::Poisoned(format!("writer task failed: {e}"))),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let syncs = log.batches_written() - syncs_before;
    // Let the periodic checkpoint cover the last entries, then stop.
    let size = log.tree_size();
    let wait_until = Instant::now() + BENCH_CHECKPOINT_INTERVAL * 20;
    while log.latest_checkpoint().is_none_or(|c| c.tree_size < size) && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    log.close().await?;
    let history = log.take_history();
    drop(log);
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
    let lags = checkpoint_lags(&history);
    let cps = history.checkpoints;
    let run = BenchRun {
        writers: c.writers,
        in_flight: c.in_flight,
        batch: c.batch,
        label: c.label(),
        appends,
        seconds,
        appends_per_sec: appends as f64 / seconds.max(1e-9),
        entries_per_sync: if syncs > 0 {
            appends as f64 / syncs as f64
        } else {
            0.0
        },
        latency_p50_us: pct(&lat, 50).map_or(0, |d| d.as_micros() as u64),
        latency_p99_us: pct(&lat, 99).map_or(0, |d| d.as_micros() as u64),
        checkpoint_lag_p50_ms: weighted_pct(&lags, 50),
        checkpoint_lag_p99_ms: weighted_pct(&lags, 99),
        checkpoint_lag_max_ms: lags.last().map_or(0.0, |l| l.0),
        checkpoints: cps.len() as u64,
        bytes_per_entry: seg_bytes.checked_div(appends).unwrap_or(0),
    };
    Ok((run, lags))
}

/// Checkpoint lag of every entry: from the instant its batch was fdatasync'd to the instant the first checkpoint
/// covering it was stored, both taken by the writer thread. Returned as (lag in ms, entries), sorted by lag.
fn checkpoint_lags(h: &History) -> Vec<(f64, u64)> {
    let mut prev = 0;
    let mut lags: Vec<(f64, u64)> = h
        .durable
        .iter()
        .filter_map(|&(size, t_durable)| {
            let entries = size - prev;
            prev = size;
            let i = h.checkpoints.partition_point(|&(s, _)| s < size);
            h.checkpoints.get(i).map(|&(_, t_cp)| {
                (
                    t_cp.saturating_duration_since(t_durable).as_secs_f64() * 1e3,
                    entries,
                )
            })
        })
        .collect();
    lags.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    lags
}

/// The `p`th percentile of (value, weight) pairs sorted by value.
fn weighted_pct(sorted: &[(f64, u64)], p: u64) -> f64 {
    let total: u64 = sorted.iter().map(|w| w.1).sum();
    let rank = total.saturating_sub(1) * p / 100;
    let mut seen = 0;
    for &(value, weight) in sorted {
        seen += weight;
        if seen > rank {
            return value;
        }
    }
    0.0
}

fn pct<T: Copy>(sorted: &[T], p: usize) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    sorted.get((sorted.len() - 1) * p / 100).copied()
}

/// A realistic kernel decision entry (about 630 bytes encoded).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_smoke_run_reports_every_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = [
            BenchConfig {
                writers: 2,
                in_flight: 1,
                batch: 1,
            },
            BenchConfig {
                writers: 2,
                in_flight: 4,
                batch: 1,
            },
            BenchConfig {
                writers: 1,
                in_flight: 1,
                batch: 16,
            },
        ];
        let r = bench_configs(tmp.path(), &plan, BenchLimit::Count(160))
            .await
            .unwrap();
        assert_eq!(r.runs.len(), 3);
        for (run, c) in r.runs.iter().zip(&plan) {
            assert_eq!(
                (run.writers, run.in_flight, run.batch),
                (c.writers, c.in_flight, c.batch)
            );
            assert!(run.appends >= 160 && run.appends_per_sec > 0.0, "{run:?}");
            assert!(run.entries_per_sync >= 1.0, "{run:?}");
            assert!(run.checkpoints >= 1, "{run:?}");
        }
        assert_eq!(r.runs[2].label, "1 writer × batches of 16");
        assert!(r.runs.iter().any(|run| run.label == r.best));
        assert!(r.verify_entries >= 160 && r.verify_entries_per_sec > 0.0);
        assert!(r.checkpoint_lag_max_ms >= r.checkpoint_lag_p50_ms);
        // Only the verified log is kept.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        assert_eq!(default_plan(&[1, 8]).len(), 5);
    }
}
