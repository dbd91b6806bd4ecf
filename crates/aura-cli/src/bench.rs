//! `aura bench …`: measurements of Aura itself, run against the real binary.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::cli::BenchStartupArgs;
use crate::output;

#[derive(Debug, Serialize)]
struct StartupReport {
    runs: u32,
    /// Median milliseconds from spawn to the `listening on` line.
    listening_ms_median: f64,
    /// Median milliseconds from spawn to the first 200 from `/api/health/ready`.
    ready_ms_median: f64,
    /// Slowest time to ready.
    ready_ms_max: f64,
    /// Median resident memory one second after ready, idle, in MiB.
    idle_rss_mib_median: f64,
    /// Median milliseconds from SIGTERM to exit.
    shutdown_ms_median: f64,
}

/// Starts `aura up` `runs` times, each on a fresh data dir and port 0, and reports medians.
pub(crate) async fn startup(args: &BenchStartupArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the aura binary")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let (mut listening, mut ready, mut rss, mut shutdown) = (vec![], vec![], vec![], vec![]);
    for run in 0..args.runs {
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&exe)
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("AURA_LOG", "warn")
            .env_remove("AURA_CONFIG")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning aura up")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("aura up did not print `listening on` within 10 s")??
            .context("aura up exited before listening")?;
        listening.push(started.elapsed().as_secs_f64() * 1000.0);
        let Some(url) = line.strip_prefix("listening on ") else {
            bail!("unexpected first line from aura up: {line}");
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = client
                .get(format!("{url}/api/health/ready"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                bail!("run {run}: not ready within 10 s");
            }
            tokio::task::yield_now().await;
        }
        ready.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = child.id().context("child has no pid")?;
        rss.push(rss_mib(pid)?);
        let stop = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid)?),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .context("aura up did not exit within 10 s of SIGTERM")??;
        shutdown.push(stop.elapsed().as_secs_f64() * 1000.0);
        if !status.success() {
            bail!("run {run}: aura up exited with {status}");
        }
    }
    let report = StartupReport {
        runs: args.runs,
        listening_ms_median: median(&mut listening),
        ready_ms_median: median(&mut ready),
        ready_ms_max: ready.iter().copied().fold(0.0, f64::max),
        idle_rss_mib_median: median(&mut rss),
        shutdown_ms_median: median(&mut shutdown),
    };
    output::print(args.output, &report, || {
        output::table(
            &["MEASURE", "VALUE"],
            [
                vec!["runs".into(), report.runs.to_string()],
                vec![
                    "spawn → listening (median)".into(),
                    format!("{:.1} ms", report.listening_ms_median),
                ],
                vec![
                    "spawn → ready (median)".into(),
                    format!("{:.1} ms", report.ready_ms_median),
                ],
                vec![
                    "spawn → ready (max)".into(),
                    format!("{:.1} ms", report.ready_ms_max),
                ],
                vec![
                    "idle RSS (median)".into(),
                    format!("{:.1} MiB", report.idle_rss_mib_median),
                ],
                vec![
                    "SIGTERM → exit (median)".into(),
                    format!("{:.1} ms", report.shutdown_ms_median),
                ],
            ],
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kib / 1024.0)
}
