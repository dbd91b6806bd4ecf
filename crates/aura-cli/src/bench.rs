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
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--proxy-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
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

#[derive(Debug, Serialize)]
struct KernelReport {
    rules: usize,
    decisions: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    /// Percentiles of a second pass over the action shapes that touched no storage (allow and deny), with no
    /// ESCALATE (which persists an approval request) in the run.
    memory_path_p50_us: f64,
    memory_path_p99_us: f64,
    decisions_per_sec: f64,
    allowed: u64,
    denied: u64,
    escalated: u64,
    halted: u64,
    policy_compile_ms: f64,
}

/// Times `Kernel::decide` over a realistic generated policy with in-memory budgets (approvals and halts on a
/// temporary SQLite store, as `aura up` keeps them). Each timed decision is a distinct action, so loop detection
/// sees real traffic; allowed decisions are settled outside the timed region.
pub(crate) async fn kernel(args: &crate::cli::BenchKernelArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;

    use aura_core::{Action, Clock, RawAction, SystemClock, Verdict};
    use aura_govern::approvals::{Approvals, ApprovalsConfig};
    use aura_govern::halts::{CascadePolicy, Halts, HaltsConfig};
    use aura_govern::kernel::{ActionOutcome, Actual, Kernel, KernelSettings};
    use aura_govern::ledger::MemoryLedger;

    let dir = tempfile::tempdir()?;
    let store = aura_store::open(&aura_store::ConnectOptions {
        target: aura_store::StoreTarget::Sqlite {
            path: dir.path().join("bench.db"),
        },
        max_connections: 4,
        connect_timeout: Duration::from_secs(5),
    })
    .await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let compile = Instant::now();
    let (set, workload) = aura_policy::synth::realistic(args.rules, 42);
    let kernel = Kernel::new(
        KernelSettings {
            reservation_ttl: Duration::from_secs(300),
            max_keys: 1_000_000,
        },
        set,
        clock.clone(),
        Arc::new(MemoryLedger::new(clock.clone())),
        Approvals::new(
            store.clone(),
            clock.clone(),
            ApprovalsConfig { single_use: true },
        ),
        Halts::open(
            store.clone(),
            clock.clone(),
            HaltsConfig {
                edges: vec![],
                policies: Default::default(),
                default_policy: CascadePolicy::None,
            },
        )
        .await?,
    )?;
    let policy_compile_ms = compile.elapsed().as_secs_f64() * 1000.0;
    if workload.is_empty() {
        bail!("the generated workload is empty");
    }
    // Distinct actions: the workload's shapes with a unique argument each.
    let actions: Vec<Action> = (0..args.decisions)
        .map(|i| {
            let a = &workload[(i as usize) % workload.len()];
            let mut args_obj = a.args().clone();
            if let Some(map) = args_obj.as_object_mut() {
                map.insert("bench_seq".into(), serde_json::json!(i));
            }
            Action::extract(RawAction {
                agent: a.agent().clone(),
                task: a.task().map(str::to_owned),
                kind: a.kind().as_str().to_owned(),
                target: a.target().to_owned(),
                args: args_obj,
                estimate: *a.estimate(),
                labels: a.labels().clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut latencies = Vec::with_capacity(actions.len());
    let mut memory_path = Vec::with_capacity(actions.len());
    let mut storage_free: Vec<&Action> = Vec::with_capacity(actions.len());
    let (mut allowed, mut denied, mut escalated, mut halted) = (0u64, 0u64, 0u64, 0u64);
    let mut busy = Duration::ZERO;
    for action in &actions {
        let t = Instant::now();
        let d = kernel.decide(action).await;
        let spent = t.elapsed();
        busy += spent;
        latencies.push(spent.as_secs_f64() * 1e6);
        if matches!(d.verdict, Verdict::Allow | Verdict::Deny) {
            storage_free.push(action);
        }
        match d.verdict {
            Verdict::Allow => {
                allowed += 1;
                let _ = kernel
                    .settle(&d.id, None, ActionOutcome::Success, Actual::default())
                    .await;
            }
            Verdict::Deny => denied += 1,
            Verdict::Escalate => escalated += 1,
            Verdict::Halt => halted += 1,
        }
    }
    // Second pass over the shapes that touched no storage, with fresh arguments: without ESCALATEs there is no
    // SQLite work in the background competing for the two cores, so this isolates the in-memory decision path.
    for (i, a) in storage_free.iter().enumerate() {
        let mut args_obj = a.args().clone();
        if let Some(map) = args_obj.as_object_mut() {
            map.insert("bench_pass".into(), serde_json::json!(i));
        }
        let action = Action::extract(RawAction {
            agent: a.agent().clone(),
            task: a.task().map(str::to_owned),
            kind: a.kind().as_str().to_owned(),
            target: a.target().to_owned(),
            args: args_obj,
            estimate: *a.estimate(),
            labels: a.labels().clone(),
        })?;
        let t = Instant::now();
        let d = kernel.decide(&action).await;
        memory_path.push(t.elapsed().as_secs_f64() * 1e6);
        if d.verdict == Verdict::Allow {
            let _ = kernel
                .settle(&d.id, None, ActionOutcome::Success, Actual::default())
                .await;
        }
    }
    store.close().await;
    latencies.sort_by(f64::total_cmp);
    memory_path.sort_by(f64::total_cmp);
    let pct_of = |v: &[f64], p: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    let pct = |p: f64| pct_of(&latencies, p);
    let report = KernelReport {
        rules: args.rules,
        decisions: args.decisions,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        max_us: latencies.last().copied().unwrap_or(0.0),
        memory_path_p50_us: pct_of(&memory_path, 0.50),
        memory_path_p99_us: pct_of(&memory_path, 0.99),
        decisions_per_sec: args.decisions as f64 / busy.as_secs_f64().max(1e-9),
        allowed,
        denied,
        escalated,
        halted,
        policy_compile_ms,
    };
    let format = if args.json {
        output::Output::Json
    } else {
        output::Output::Table
    };
    output::print(format, &report, || {
        output::table(
            &["MEASURE", "VALUE"],
            [
                vec!["rules".into(), report.rules.to_string()],
                vec!["decisions".into(), report.decisions.to_string()],
                vec!["p50".into(), format!("{:.2} µs", report.p50_us)],
                vec!["p90".into(), format!("{:.2} µs", report.p90_us)],
                vec!["p99".into(), format!("{:.2} µs", report.p99_us)],
                vec!["max".into(), format!("{:.1} µs", report.max_us)],
                vec![
                    "allow/deny only (no storage) p50 / p99".into(),
                    format!(
                        "{:.2} / {:.2} µs",
                        report.memory_path_p50_us, report.memory_path_p99_us
                    ),
                ],
                vec![
                    "decisions/s (one core)".into(),
                    format!("{:.0}", report.decisions_per_sec),
                ],
                vec![
                    "verdicts".into(),
                    format!(
                        "{} allow, {} deny, {} escalate, {} halt",
                        report.allowed, report.denied, report.escalated, report.halted
                    ),
                ],
                vec![
                    "policy load + compile".into(),
                    format!("{:.1} ms", report.policy_compile_ms),
                ],
            ],
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the audit log's own benchmark (group-committed durable appends, checkpoint lag, verify rate).
pub(crate) async fn audit(args: &crate::cli::BenchAuditArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let report = aura_audit::bench(
        &dir,
        &[1, 8, 64],
        aura_audit::BenchLimit::Duration(Duration::from_secs(args.seconds)),
    )
    .await?;
    let value = serde_json::to_value(&report)?;
    let best = value["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|r| r["appends_per_sec"].as_f64())
                .fold(0.0, f64::max)
        })
        .unwrap_or(0.0);
    let mut out = serde_json::json!({ "appends_per_sec": best });
    if let (Some(o), Some(v)) = (out.as_object_mut(), value.as_object()) {
        for (k, val) in v {
            o.entry(k.clone()).or_insert(val.clone());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut rows = vec![vec!["appends/s (best)".to_owned(), format!("{best:.0}")]];
        if let Some(runs) = value["runs"].as_array() {
            for r in runs {
                let label = r
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(k, _)| k.as_str() != "appends_per_sec")
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                rows.push(vec![
                    format!(
                        "{:.0} appends/s",
                        r["appends_per_sec"].as_f64().unwrap_or(0.0)
                    ),
                    label,
                ]);
            }
        }
        rows.push(vec![
            "verify".into(),
            format!(
                "{:.0} entries/s",
                value["verify_entries_per_sec"].as_f64().unwrap_or(0.0)
            ),
        ]);
        print!("{}", output::table(&["MEASURE", "VALUE"], rows));
    }
    Ok(ExitCode::SUCCESS)
}
