//! `aura bench proxy`: the enforcement proxy's added latency. Starts a local HTTP target and the real `aura up`
//! (fresh data dir, a policy that lets a bench agent reach the loopback target), then sends requests at a fixed
//! rate through the proxy and directly to the target, interleaved in the same run, over keep-alive connections,
//! and reports p50/p99 of both and their difference. Every proxied request is decided, audited (its entry through
//! `audit.effect_gate` before the request leaves) and settled (another entry, after the answer), as in production.
//!
//! With `--effect-gate durable` the decision must be fdatasync'd before the request leaves, so the added latency
//! cannot go below one durable append on the data dir's disk; with `written` (the default) the entry must be in the
//! log file (it survives a crash of Aura) while its fdatasync is group-committed on the side. The benchmark measures
//! the fsync floor first (p50/p99 of a small append + `fdatasync` in the data dir) and reports the added latency
//! beyond it, and the kernel decisions per proxied request (from `aura_decisions_total` on `/metrics`).

use std::convert::Infallible;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncBufReadExt as _;
use tokio::io::BufReader;
use tokio::task::JoinSet;

const POLICY: &str = "\
levels:
  bench: { network: [\"*\"] }
agents:
  bench: { level: bench }
rules:
  - id: bench-loopback
    when: { kind: custom, agent: bench, target: [\"egress/loopback/*\"] }
    then: allow
";

/// Proxied requests sent one after another to count the kernel decisions each one takes.
const SEQUENTIAL: usize = 100;

/// Options of `aura bench proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchProxyArgs {
    /// Requests per second on each path (through the proxy, and direct).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    pub rate: u64,
    /// Seconds of measurement (after one second of warm-up).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// When a proxied request may leave, relative to its decision's audit entry (`audit.effect_gate` of the
    /// server under test): `written` (the default) or `durable`.
    #[arg(long, default_value = "written", value_parser = ["written", "durable"])]
    pub effect_gate: String,
    /// Print JSON (`proxied_p50_us`, `proxied_p99_us`, `direct_p50_us`, `direct_p99_us`, `added_p99_us`,
    /// `fsync_floor_p99_us`, `added_beyond_floor_p99_us`, `decisions_per_proxied_request`, …).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    effect_gate: String,
    rate_per_path: u64,
    seconds: u64,
    proxied_requests: usize,
    direct_requests: usize,
    errors: usize,
    proxied_p50_us: f64,
    proxied_p99_us: f64,
    direct_p50_us: f64,
    direct_p99_us: f64,
    added_p50_us: f64,
    added_p99_us: f64,
    goal_added_p99_us: f64,
    fsync_floor_p50_us: f64,
    fsync_floor_p99_us: f64,
    added_beyond_floor_p50_us: f64,
    added_beyond_floor_p99_us: f64,
    decisions_per_proxied_request: f64,
}

/// Runs the benchmark.
pub(crate) async fn run(args: &BenchProxyArgs) -> anyhow::Result<ExitCode> {
    let target = start_target().await?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir(home.path().join("data"))?;
    let floor_dir = home.path().join("data");
    let mut floor = tokio::task::spawn_blocking(move || fsync_floor(&floor_dir, 2000))
        .await
        .context("measuring the fsync floor")??;
    floor.sort_by(f64::total_cmp);
    std::fs::create_dir(home.path().join("policies"))?;
    std::fs::write(home.path().join("policies/bench.yaml"), POLICY)?;
    std::fs::write(
        home.path().join("aura.yaml"),
        format!("audit:\n  effect_gate: {}\n", args.effect_gate),
    )?;
    let exe = std::env::current_exe().context("locating the aura binary")?;
    let mut child = tokio::process::Command::new(&exe)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(home.path().join("data"))
        .env("AURA_LOG", "warn")
        .env_remove("AURA_CONFIG")
        .current_dir(home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning aura up")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut next = async || -> anyhow::Result<String> {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("aura up did not start within 20 s")??
            .context("aura up exited before listening")
    };
    let api = next().await?;
    let Some(api) = api.strip_prefix("listening on ").map(str::to_owned) else {
        bail!("unexpected first line from aura up: {api}");
    };
    let proxy = next().await?;
    let Some(proxy) = proxy.strip_prefix("proxy listening on ").map(str::to_owned) else {
        bail!("aura up did not start the proxy: {proxy}");
    };
    let admin = std::fs::read_to_string(home.path().join("data/admin.token"))?
        .trim()
        .to_owned();
    let plain = reqwest::Client::builder().no_proxy().build()?;
    let created: serde_json::Value = plain
        .post(format!("{api}/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "bench", "role": "agent", "agent": "bench"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = created["token"].as_str().context("no token")?.to_owned();
    let proxied = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy)?.basic_auth("bench", &token))
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;
    let direct = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{target}/bench");
    // Warm-up, then the measured run: one tick per request, alternating paths.
    let _ = measure(&proxied, &direct, &url, args.rate, 1).await;
    let (mut via, mut straight, errors) =
        measure(&proxied, &direct, &url, args.rate, args.seconds).await;
    // Decisions per request, counted apart from the open-loop run (whose timed-out requests would blur it): 100
    // proxied requests one after another.
    let decisions_before = decisions(&plain, &api).await?;
    for i in 0..SEQUENTIAL {
        proxied
            .get(format!("{url}?seq={i}"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
    }
    let decisions_after = decisions(&plain, &api).await?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap_or(0)).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    if via.is_empty() || straight.is_empty() {
        bail!("no successful requests ({errors} errors)");
    }
    via.sort_by(f64::total_cmp);
    straight.sort_by(f64::total_cmp);
    let report = Report {
        effect_gate: args.effect_gate.clone(),
        rate_per_path: args.rate,
        seconds: args.seconds,
        proxied_requests: via.len(),
        direct_requests: straight.len(),
        errors,
        proxied_p50_us: pct(&via, 0.50),
        proxied_p99_us: pct(&via, 0.99),
        direct_p50_us: pct(&straight, 0.50),
        direct_p99_us: pct(&straight, 0.99),
        added_p50_us: pct(&via, 0.50) - pct(&straight, 0.50),
        added_p99_us: pct(&via, 0.99) - pct(&straight, 0.99),
        goal_added_p99_us: 300.0,
        fsync_floor_p50_us: pct(&floor, 0.50),
        fsync_floor_p99_us: pct(&floor, 0.99),
        added_beyond_floor_p50_us: pct(&via, 0.50) - pct(&straight, 0.50) - pct(&floor, 0.50),
        added_beyond_floor_p99_us: pct(&via, 0.99) - pct(&straight, 0.99) - pct(&floor, 0.99),
        decisions_per_proxied_request: (decisions_after - decisions_before) / SEQUENTIAL as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "proxy at {} req/s (and direct at {} req/s), {} s, {} + {} requests, {} errors; audit.effect_gate {}",
            report.rate_per_path,
            report.rate_per_path,
            report.seconds,
            report.proxied_requests,
            report.direct_requests,
            report.errors,
            report.effect_gate
        );
        println!(
            "  through the proxy: p50 {:.0} µs, p99 {:.0} µs",
            report.proxied_p50_us, report.proxied_p99_us
        );
        println!(
            "  direct:            p50 {:.0} µs, p99 {:.0} µs",
            report.direct_p50_us, report.direct_p99_us
        );
        println!(
            "  added:             p50 {:.0} µs, p99 {:.0} µs (goal p99 ≤ 300 µs)",
            report.added_p50_us, report.added_p99_us
        );
        println!(
            "  fsync floor:       p50 {:.0} µs, p99 {:.0} µs (append + fdatasync in the data dir)",
            report.fsync_floor_p50_us, report.fsync_floor_p99_us
        );
        println!(
            "  beyond the floor:  p50 {:.0} µs, p99 {:.0} µs; {:.2} kernel decisions per proxied request",
            report.added_beyond_floor_p50_us,
            report.added_beyond_floor_p99_us,
            report.decisions_per_proxied_request
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `n` appends of 128 bytes, each followed by `fdatasync`, in a scratch file in `dir`: the latency of one durable
/// append on this disk, in microseconds.
fn fsync_floor(dir: &std::path::Path, n: usize) -> anyhow::Result<Vec<f64>> {
    use std::io::Write as _;
    let path = dir.join(".bench-fsync-floor");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let line = [b'x'; 128];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        file.write_all(&line)?;
        file.sync_data()?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(samples)
}

/// The server's kernel decisions so far (the sum of `aura_decisions_total`).
async fn decisions(client: &reqwest::Client, api: &str) -> anyhow::Result<f64> {
    let text = client
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("aura_decisions_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// Open loop: a tick every `1 / (2 × rate)` s, alternating proxied and direct; each request runs in its own task
/// and reports its latency in microseconds.
async fn measure(
    proxied: &reqwest::Client,
    direct: &reqwest::Client,
    url: &str,
    rate: u64,
    seconds: u64,
) -> (Vec<f64>, Vec<f64>, usize) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / (2.0 * rate as f64)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = 2 * rate * seconds;
    let mut set = JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let through = i % 2 == 0;
        let client = if through {
            proxied.clone()
        } else {
            direct.clone()
        };
        // A distinct URL per request, as real traffic has (identical requests would trip loop detection).
        let url = format!("{url}?i={i}");
        set.spawn(async move {
            let started = Instant::now();
            let failure = match client.get(&url).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.bytes().await {
                        Ok(_) if status.is_success() => None,
                        Ok(body) => Some(format!("{status}: {}", String::from_utf8_lossy(&body))),
                        Err(e) => Some(e.to_string()),
                    }
                }
                Err(e) => Some(e.to_string()),
            };
            (through, failure, started.elapsed().as_secs_f64() * 1e6)
        });
    }
    let (mut via, mut straight, mut errors) = (Vec::new(), Vec::new(), 0);
    let mut first_error = None;
    while let Some(done) = set.join_next().await {
        match done {
            Ok((true, None, us)) => via.push(us),
            Ok((false, None, us)) => straight.push(us),
            Ok((through, Some(e), _)) => {
                errors += 1;
                first_error.get_or_insert(format!(
                    "{} {e}",
                    if through { "proxied" } else { "direct" }
                ));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("{errors} request(s) failed; the first: {e}");
    }
    (via, straight, errors)
}

/// A keep-alive HTTP/1.1 target answering `ok`; lives until the process ends (the benchmark is the process).
async fn start_target() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let tasks = tokio_util::task::TaskTracker::new();
    let inner = tasks.clone();
    tasks.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            inner.spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    tasks.close();
    Ok(addr)
}
