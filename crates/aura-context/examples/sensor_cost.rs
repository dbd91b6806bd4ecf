//! The CPU cost of the built-in sensors' samples, without the pipeline or the adaptive sampler
//! (which slows down on a loaded host): `cargo run --profile profiling -p aura-context --example
//! sensor_cost -- [TICKS]` samples compute, memory, storage and network once a second (one shared
//! process table, as in `aura sensor`) and prints this process's CPU time per tick
//! (`/proc/self/schedstat`) and its user/kernel clock ticks (`/proc/self/stat`).
//!
//! `sensor_cost -- SECONDS pipeline` runs the whole pipeline of `aura sensor` instead (sensors,
//! change detector, aggregator, atomic writes into a temporary directory) for SECONDS and prints
//! the CPU time per round of compute samples, which stays comparable when the adaptive sampler
//! has slowed down on a loaded host.

use std::time::Duration;

use aura_context::sensors::{self, ProcessTable};

fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |r| r.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
}

/// This process's CPU time so far, nanoseconds (`/proc/self/schedstat`: exact, not tick-sampled).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ticks: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    if std::env::args().nth(2).as_deref() == Some("pipeline") {
        pipeline(ticks).await;
        return;
    }
    let table = ProcessTable::new();
    let mut all: Vec<_> = ["compute", "memory", "storage", "network"]
        .iter()
        .filter_map(|n| sensors::builtin_sharing(n, 5, &table))
        .collect();
    for s in &mut all {
        let _ = s.sample().await;
    }
    let (u0, s0) = cpu_ticks();
    let n0 = cpu_ns();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    for _ in 0..ticks {
        interval.tick().await;
        for s in &mut all {
            if let Err(e) = s.sample().await {
                eprintln!("{}: {e}", s.name());
            }
        }
    }
    let n1 = cpu_ns();
    let (u1, s1) = cpu_ticks();
    let ms = (n1 - n0) as f64 / 1e6 / f64::from(ticks);
    println!(
        "{ticks} ticks: {ms:.3} ms of CPU per tick ({:.3} % of a core); clock ticks user {} kernel {}",
        ms / 10.0,
        u1 - u0,
        s1 - s0
    );
}

async fn pipeline(seconds: u32) {
    use std::sync::Arc;

    use aura_context::pipeline::{self, PipelineConfig};

    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("no temporary directory");
        return;
    };
    let mut config = PipelineConfig::local(dir.path().to_owned(), "cost");
    config.interval = Duration::from_secs(1);
    let tracker = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = match pipeline::spawn(
        config,
        Arc::new(aura_core::SystemClock),
        &tracker,
        cancel.clone(),
    ) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let samples =
        |h: &pipeline::PipelineHandle| h.sensors().get("compute").map_or(0, |s| s.sampler.samples);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (n0, s0, w0) = (cpu_ns(), samples(&handle), handle.stats().writes);
    tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await;
    let (n1, s1, w1) = (cpu_ns(), samples(&handle), handle.stats().writes);
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    let rounds = (s1 - s0).max(1);
    println!(
        "pipeline over {seconds} s: {rounds} sample rounds, {} writes, {:.3} ms of CPU per round, {:.3} % of a core",
        w1 - w0,
        (n1 - n0) as f64 / 1e6 / rounds as f64,
        (n1 - n0) as f64 / 1e7 / f64::from(seconds)
    );
}
