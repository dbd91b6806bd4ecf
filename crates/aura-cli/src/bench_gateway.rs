//! `aura bench gateway`: the LLM gateway's added latency and throughput. Starts the fake upstream (default
//! 20 ms latency) and the real `aura up` in front of it, then measures the same OpenAI chat load sent directly to
//! the upstream and through the gateway, at concurrency 1 and 64: added p50/p99 in µs and requests per second;
//! the maximum requests per second is measured against a zero-latency model. `--target` measures another
//! gateway (LiteLLM's proxy, in `scripts/bench-litellm.sh`) with the same load; `--serve-fake` only runs the fake.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use aura_gateway::fake::FakeUpstream;

/// Options of `aura bench gateway`.
#[derive(Debug, Args)]
pub(crate) struct BenchGatewayArgs {
    /// Latency of the fake upstream in milliseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub latency_ms: u64,
    /// Requests per measurement (each concurrency, direct and through the gateway).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub requests: u64,
    /// Print JSON (`runs[].added_p50_us`, `runs[].added_p99_us`, `max_requests_per_sec`, …).
    #[arg(long)]
    pub json: bool,
    /// Only serve the fake upstream on this port (model `bench-fast` without latency) until Ctrl-C.
    #[arg(long, value_name = "PORT")]
    pub serve_fake: Option<u16>,
    /// Use this running fake upstream (`--serve-fake`) instead of starting one.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Measure this OpenAI-compatible gateway instead of `aura up` (e.g. LiteLLM's proxy).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// The API key for `--target`.
    #[arg(long, env = "BENCH_GATEWAY_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Give the bench agent a daily cost budget, so every call also reserves and settles in the ledger.
    #[arg(long)]
    pub budget: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    concurrency: usize,
    direct_p50_us: u64,
    direct_p99_us: u64,
    gateway_p50_us: u64,
    gateway_p99_us: u64,
    added_p50_us: i64,
    added_p99_us: i64,
    /// Added p50 minus the data dir's fdatasync p50: what the gateway adds beyond the one durable wait.
    added_beyond_fsync_p50_us: i64,
    /// Added p99 minus the data dir's fdatasync p99.
    added_beyond_fsync_p99_us: i64,
    requests_per_sec: f64,
    errors: u64,
    /// Audit entries per group commit (fdatasync) during the run (Aura only).
    audit_entries_per_fsync: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    gateway: String,
    upstream_latency_ms: u64,
    requests: u64,
    /// Latency of one 4 KiB append + fdatasync in the data dir's file system: the floor of a durable decision.
    fdatasync_p50_us: u64,
    /// Its 99th percentile.
    fdatasync_p99_us: u64,
    /// Round trip of one byte between two threads over loopback TCP after an idle pause as long as the upstream
    /// latency: the machine's cost of waking an idle thread (and on a VM an idle vCPU) and back. A gateway pays
    /// about this much more than the direct path even if it did nothing: the call reaches it after the client's
    /// idle wait, and the upstream's answer after 20 ms of idleness.
    idle_wake_rtt_p50_us: u64,
    /// Its 99th percentile.
    idle_wake_rtt_p99_us: u64,
    /// Whether the bench agent had a cost budget (reservation and settlement per call).
    budget: bool,
    runs: Vec<Run>,
    max_requests_per_sec: f64,
    /// The same zero-latency load sent straight to the fake upstream: the ceiling of the bench's own client and
    /// fake on this machine (they share its cores with the gateway under test).
    max_direct_requests_per_sec: f64,
    max_errors: u64,
    /// Audit entries per group commit during the max-throughput run (Aura only).
    max_audit_entries_per_fsync: Option<f64>,
}

const MODEL: &str = "bench-model";
const FAST: &str = "bench-fast";

/// Runs the benchmark.
pub(crate) async fn run(args: &BenchGatewayArgs) -> anyhow::Result<ExitCode> {
    let latency = Duration::from_millis(args.latency_ms);
    if let Some(port) = args.serve_fake {
        let fake = FakeUpstream::start(port, latency).await?;
        fake.fast_model(FAST);
        println!("fake upstream on {}", fake.url());
        tokio::signal::ctrl_c().await?;
        fake.stop().await;
        return Ok(ExitCode::SUCCESS);
    }
    let fake = match &args.upstream {
        Some(_) => None,
        None => {
            let f = FakeUpstream::start(0, latency).await?;
            f.fast_model(FAST);
            Some(f)
        }
    };
    let upstream = match (&args.upstream, &fake) {
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, Some(f)) => f.url(),
        (None, None) => bail!("no upstream"),
    };
    let mut server = None;
    let (target, key, name) = match &args.target {
        Some(t) => (
            t.trim_end_matches('/').to_owned(),
            args.key.clone().unwrap_or_default(),
            "external".to_owned(),
        ),
        None => {
            let s = AuraUnderTest::start(&upstream, args.budget).await?;
            let (url, key) = (s.url.clone(), s.key.clone());
            server = Some(s);
            (url, key, "aura".to_owned())
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let direct = Endpoint {
        url: format!("{upstream}/v1/chat/completions"),
        key: String::new(),
    };
    let gateway = Endpoint {
        url: format!("{target}/v1/chat/completions"),
        key,
    };
    // The durable-append floor, measured in the file system of the data dir (the temporary home of `aura up`, or
    // the system's temporary directory for another gateway).
    let probe_dir = server
        .as_ref()
        .map_or_else(std::env::temp_dir, |s| s.data_dir());
    let probe = probe_dir.join(format!("fdatasync-probe-{}", std::process::id()));
    let (fsync_p50, fsync_p99) =
        tokio::task::spawn_blocking(move || aura_audit::fdatasync_latency(&probe))
            .await
            .context("the fdatasync probe panicked")?
            .context("measuring fdatasync latency")?;
    let (wake_p50, wake_p99) = tokio::task::spawn_blocking(move || idle_round_trip(latency, 200))
        .await
        .context("the idle round-trip probe panicked")?
        .context("measuring the idle round trip")?;
    let metrics_url = server.as_ref().map(|s| format!("{}/metrics", s.url));
    // Warm up connections and code paths.
    load(&client, &gateway, MODEL, 16, 200.min(args.requests)).await?;
    load(&client, &direct, MODEL, 16, 200.min(args.requests)).await?;
    let mut runs = Vec::new();
    for concurrency in [1usize, 64] {
        let n = if concurrency == 1 {
            args.requests.min(1000)
        } else {
            args.requests
        };
        let d = load(&client, &direct, MODEL, concurrency, n).await?;
        let before = audit_counts(&client, metrics_url.as_deref()).await;
        let g = load(&client, &gateway, MODEL, concurrency, n).await?;
        let after = audit_counts(&client, metrics_url.as_deref()).await;
        runs.push(Run {
            concurrency,
            direct_p50_us: d.p(0.50),
            direct_p99_us: d.p(0.99),
            gateway_p50_us: g.p(0.50),
            gateway_p99_us: g.p(0.99),
            added_p50_us: g.p(0.50) as i64 - d.p(0.50) as i64,
            added_p99_us: g.p(0.99) as i64 - d.p(0.99) as i64,
            added_beyond_fsync_p50_us: g.p(0.50) as i64 - d.p(0.50) as i64 - fsync_p50 as i64,
            added_beyond_fsync_p99_us: g.p(0.99) as i64 - d.p(0.99) as i64 - fsync_p99 as i64,
            requests_per_sec: g.rps(),
            errors: g.errors,
            audit_entries_per_fsync: per_sync(before, after),
        });
    }
    let max_direct = load(&client, &direct, FAST, 64, args.requests).await?;
    let before = audit_counts(&client, metrics_url.as_deref()).await;
    let max = load(&client, &gateway, FAST, 64, args.requests).await?;
    let after = audit_counts(&client, metrics_url.as_deref()).await;
    let report = Report {
        gateway: name,
        upstream_latency_ms: args.latency_ms,
        requests: args.requests,
        fdatasync_p50_us: fsync_p50,
        fdatasync_p99_us: fsync_p99,
        idle_wake_rtt_p50_us: wake_p50,
        idle_wake_rtt_p99_us: wake_p99,
        budget: args.budget,
        runs,
        max_requests_per_sec: max.rps(),
        max_direct_requests_per_sec: max_direct.rps(),
        max_errors: max.errors,
        max_audit_entries_per_fsync: per_sync(before, after),
    };
    if let Some(s) = server {
        s.stop().await;
    }
    if let Some(f) = fake {
        f.stop().await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} gateway, upstream latency {} ms, {} requests per run{}",
            report.gateway,
            report.upstream_latency_ms,
            report.requests,
            if report.budget {
                ", with a cost budget"
            } else {
                ""
            }
        );
        println!(
            "  fdatasync floor of the data dir: p50 {} µs, p99 {} µs (one durable decision per call)",
            report.fdatasync_p50_us, report.fdatasync_p99_us
        );
        println!(
            "  loopback round trip after {} ms idle: p50 {} µs, p99 {} µs (the wake-up floor a hop adds)",
            report.upstream_latency_ms, report.idle_wake_rtt_p50_us, report.idle_wake_rtt_p99_us
        );
        for r in &report.runs {
            println!(
                "  concurrency {:>2}: added p50 {:>6} µs, added p99 {:>6} µs (beyond the fsync floor: {} / {} µs), {:>8.0} req/s (direct p50 {} µs, through p50 {} µs; {} errors{})",
                r.concurrency,
                r.added_p50_us,
                r.added_p99_us,
                r.added_beyond_fsync_p50_us,
                r.added_beyond_fsync_p99_us,
                r.requests_per_sec,
                r.direct_p50_us,
                r.gateway_p50_us,
                r.errors,
                r.audit_entries_per_fsync
                    .map(|e| format!("; {e:.1} audit entries per fsync"))
                    .unwrap_or_default()
            );
        }
        println!(
            "  max: {:.0} req/s at concurrency 64 against a zero-latency model (direct to the fake: {:.0} req/s; {} errors{})",
            report.max_requests_per_sec,
            report.max_direct_requests_per_sec,
            report.max_errors,
            report
                .max_audit_entries_per_fsync
                .map(|e| format!("; {e:.1} audit entries per fsync"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// p50 and p99 in µs of a one-byte round trip between two threads over loopback TCP, each after `pause` of
/// idleness (see [`Report::idle_wake_rtt_p50_us`]).
fn idle_round_trip(pause: Duration, rounds: usize) -> std::io::Result<(u64, u64)> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut micros = Vec::with_capacity(rounds);
    let mut b = [0u8; 1];
    for _ in 0..rounds.max(1) {
        std::thread::sleep(pause);
        let t = Instant::now();
        c.write_all(&[1])?;
        c.read_exact(&mut b)?;
        micros.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    drop(c);
    let _ = echo.join();
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.50), at(0.99)))
}

struct Endpoint {
    url: String,
    key: String,
}

/// Audit entries and group commits so far, from the server's `/metrics` (None for another gateway).
async fn audit_counts(client: &reqwest::Client, url: Option<&str>) -> Option<(f64, f64)> {
    let text = client.get(url?).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((
        value("aura_audit_entries_appended_total")?,
        value("aura_audit_batches_synced_total")?,
    ))
}

fn per_sync(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> Option<f64> {
    let ((e0, s0), (e1, s1)) = (before?, after?);
    (s1 > s0).then(|| (e1 - e0) / (s1 - s0))
}

struct Sample {
    micros: Vec<u64>,
    elapsed: Duration,
    errors: u64,
}

impl Sample {
    fn p(&self, q: f64) -> u64 {
        if self.micros.is_empty() {
            return 0;
        }
        let i = ((self.micros.len() - 1) as f64 * q).round() as usize;
        self.micros[i.min(self.micros.len() - 1)]
    }

    fn rps(&self) -> f64 {
        self.micros.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `n` chat requests with `concurrency` workers; latencies of the successful ones, sorted.
async fn load(
    client: &reqwest::Client,
    to: &Endpoint,
    model: &str,
    concurrency: usize,
    n: u64,
) -> anyhow::Result<Sample> {
    let body = Arc::new(serde_json::to_vec(
        &json!({"model": model, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello."}]}),
    )?);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..concurrency {
        let (client, body, next) = (client.clone(), body.clone(), next.clone());
        let (url, key) = (to.url.clone(), to.key.clone());
        workers.spawn(async move {
            let mut micros = Vec::new();
            let mut errors = 0u64;
            while (next.fetch_add(1, Ordering::Relaxed) as u64) < n {
                let t = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone());
                if !key.is_empty() {
                    req = req.bearer_auth(&key);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        if r.bytes().await.is_ok() {
                            micros.push(t.elapsed().as_micros() as u64);
                        } else {
                            errors += 1;
                        }
                    }
                    _ => errors += 1,
                }
            }
            (micros, errors)
        });
    }
    let mut all = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (m, e) = done.context("a load worker failed")?;
        all.extend(m);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Ok(Sample {
        micros: all,
        elapsed,
        errors,
    })
}

/// The real `aura up` in a temporary home, configured to route the bench models to the fake upstream.
struct AuraUnderTest {
    child: tokio::process::Child,
    url: String,
    key: String,
    _home: tempfile::TempDir,
}

impl AuraUnderTest {
    async fn start(upstream: &str, budget: bool) -> anyhow::Result<AuraUnderTest> {
        let home = tempfile::tempdir()?;
        std::fs::create_dir(home.path().join("policies"))?;
        let budgets = if budget {
            "budgets:\n  - id: bench-daily\n    scope: { agent: \"*\" }\n    period: day\n    limit: { cost_usd: 100000 }\n"
        } else {
            ""
        };
        std::fs::write(
            home.path().join("policies/bench.yaml"),
            format!(
                "agents:\n  bench: {{ level: standard }}\nrules:\n  - id: llm\n    description: the bench agent may call models\n    \
                 when: {{ kind: llm_call, agent: [bench] }}\n    then: allow\nloops: {{ repeat: 10000, within: 1s, then: deny }}\n{budgets}"
            ),
        )?;
        std::fs::write(
            home.path().join("aura.yaml"),
            format!(
                "gateway:\n  providers:\n    - {{ name: fake, kind: openai, base_url: \"{upstream}\" }}\n  models:\n    \
                 - {{ name: {MODEL}, deployments: [{{ provider: fake, model: {MODEL} }}] }}\n    \
                 - {{ name: {FAST}, deployments: [{{ provider: fake, model: {FAST} }}] }}\n  pricing:\n    \
                 - {{ model: {MODEL}, input_per_mtok_micros: 150000, output_per_mtok_micros: 600000 }}\n    \
                 - {{ model: {FAST}, input_per_mtok_micros: 150000, output_per_mtok_micros: 600000 }}\n"
            ),
        )?;
        let exe = std::env::current_exe().context("locating the aura binary")?;
        let mut child = tokio::process::Command::new(exe)
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
        let line = tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .context("aura up did not start within 20 s")??
        .context("aura up exited before listening")?;
        let url = line
            .strip_prefix("listening on ")
            .context("unexpected first line from aura up")?
            .trim()
            .to_owned();
        let admin = std::fs::read_to_string(home.path().join("data/admin.token"))?;
        let client = reqwest::Client::new();
        let resp: Value = client
            .post(format!("{url}/api/v1/tokens"))
            .bearer_auth(admin.trim())
            .json(&json!({"name": "bench", "role": "agent", "agent": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let key = resp["token"]
            .as_str()
            .context("no token in the answer")?
            .to_owned();
        Ok(AuraUnderTest {
            child,
            url,
            key,
            _home: home,
        })
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self._home.path().join("data")
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }
}
