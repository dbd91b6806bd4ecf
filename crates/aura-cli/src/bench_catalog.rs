//! `aura bench catalog`: in-process query latency over N synthetic assets, HTTP queries per second against a real
//! `aura up` holding the same assets, and update→watch latency (asset file written → WebSocket diff received).

use std::io::BufRead as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use aura_catalog::files::AssetSink as _;
use aura_catalog::{Catalog, CatalogSettings, synth};

use crate::cli::BenchCatalogArgs;
use crate::output;

/// The query shapes timed in process.
const SHAPES: &[&str] = &[
    "kind = container and cpu.percent > 80",
    "health = unhealthy",
    "labels.app = web and cpu > 50 sort by cpu desc limit 10 fields name, cpu",
    "id = host-0007",
    "count() by host",
    "count() by kind, health",
    "kind = host | avg(cpu), max(mem)",
    "mem > 95 or disk > 98 limit 20",
];

/// Queries sent over HTTP (small answers, so the server and not JSON volume is measured).
const HTTP_SHAPES: &[&str] = &[
    "kind = container and cpu.percent > 95 limit 10",
    "id = host-0007",
    "count() by kind",
];

#[derive(Debug, Serialize)]
struct ShapeFigures {
    query: String,
    matched: usize,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Debug, Serialize)]
struct CatalogReport {
    assets: u64,
    load_ms: f64,
    query_p50_us: f64,
    query_p99_us: f64,
    shapes: Vec<ShapeFigures>,
    http_queries_per_sec: Option<f64>,
    http_p99_ms: Option<f64>,
    http_clients: u64,
    update_to_watch_p50_ms: Option<f64>,
    update_to_watch_p99_ms: Option<f64>,
    updates: u64,
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// Runs the benchmark.
pub(crate) async fn catalog(args: &BenchCatalogArgs) -> anyhow::Result<ExitCode> {
    let n = args.assets as usize;
    let fleet = synth::fleet(n, 42);
    let catalog = Catalog::new(CatalogSettings::default());
    let t = Instant::now();
    for a in &fleet {
        catalog.upsert(a.clone());
    }
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;

    let mut all = Vec::new();
    let mut shapes = Vec::new();
    for shape in SHAPES {
        let answer = catalog.query(shape)?;
        let mut lat = Vec::with_capacity(args.queries as usize);
        for _ in 0..args.queries {
            let t = Instant::now();
            let a = catalog.query(shape)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(a);
        }
        all.extend_from_slice(&lat);
        lat.sort_by(f64::total_cmp);
        shapes.push(ShapeFigures {
            query: (*shape).to_owned(),
            matched: answer.matched,
            p50_us: pct(&lat, 0.5),
            p99_us: pct(&lat, 0.99),
        });
    }
    all.sort_by(f64::total_cmp);

    let mut report = CatalogReport {
        assets: args.assets,
        load_ms,
        query_p50_us: pct(&all, 0.5),
        query_p99_us: pct(&all, 0.99),
        shapes,
        http_queries_per_sec: None,
        http_p99_ms: None,
        http_clients: args.http_clients,
        update_to_watch_p50_ms: None,
        update_to_watch_p99_ms: None,
        updates: args.updates,
    };
    if args.http_seconds > 0 {
        served(args, &fleet, &mut report).await?;
    }
    let format = if args.json {
        output::Output::Json
    } else {
        output::Output::Table
    };
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.2} {unit}"));
    output::print(format, &report, || {
        let mut rows = vec![
            vec!["assets".into(), report.assets.to_string()],
            vec!["index load".into(), format!("{:.1} ms", report.load_ms)],
            vec![
                "query p50 / p99 (all shapes)".into(),
                format!("{:.1} / {:.1} µs", report.query_p50_us, report.query_p99_us),
            ],
        ];
        for s in &report.shapes {
            rows.push(vec![
                format!("  {}", s.query),
                format!(
                    "{:.1} / {:.1} µs ({} matched)",
                    s.p50_us, s.p99_us, s.matched
                ),
            ]);
        }
        rows.push(vec![
            format!("HTTP queries/s ({} clients)", report.http_clients),
            report
                .http_queries_per_sec
                .map_or("-".to_owned(), |v| format!("{v:.0}")),
        ]);
        rows.push(vec!["HTTP p99".into(), opt(report.http_p99_ms, "ms")]);
        rows.push(vec![
            "update→watch p50 / p99".into(),
            format!(
                "{} / {}",
                opt(report.update_to_watch_p50_ms, "ms"),
                opt(report.update_to_watch_p99_ms, "ms")
            ),
        ]);
        output::table(&["MEASURE", "VALUE"], rows)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Starts `aura up` on a data dir holding the fleet, loads it over HTTP, then times file updates to watch events.
async fn served(
    args: &BenchCatalogArgs,
    fleet: &[aura_catalog::Asset],
    report: &mut CatalogReport,
) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let home = tempfile::tempdir()?;
    let data = home.path().join("data");
    let dir = aura_catalog::files::AssetDir::open(&data)?;
    for a in fleet {
        // Setup only: plain writes (the timed updates below go through the atomic, fsync'd sink).
        std::fs::write(dir.path_of(&a.id), a.to_toml()?)?;
    }
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .current_dir(home.path())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env("AURA_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting aura up")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufReader::new(out).read_line(&mut line)?;
    }
    let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        bail!("aura up did not start: `{}`", line.trim());
    };
    let result = async {
        let token = std::fs::read_to_string(data.join("admin.token"))?
            .trim()
            .to_owned();
        // HTTP load: each client sends queries back to back for the duration.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.http_clients as usize)
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..args.http_clients {
            let (client, url, token, stop, done) = (
                client.clone(),
                url.clone(),
                token.clone(),
                stop.clone(),
                done.clone(),
            );
            tasks.spawn(async move {
                let mut lat = Vec::new();
                let mut i = c as usize;
                while !stop.load(Ordering::Relaxed) {
                    let body = serde_json::json!({"query": HTTP_SHAPES[i % HTTP_SHAPES.len()]});
                    i += 1;
                    let t = Instant::now();
                    let ok = client
                        .post(format!("{url}/api/v1/query"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status().is_success());
                    if matches!(ok, Ok(true)) {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            });
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.http_seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        while let Some(r) = tasks.join_next().await {
            lat.extend(r?);
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        report.http_queries_per_sec = Some(done.load(Ordering::Relaxed) as f64 / secs);
        report.http_p99_ms = Some(pct(&lat, 0.99));

        // update→watch: write one asset file, wait for its diff on the WebSocket.
        let ws_url = format!("{}/api/v1/watch", url.replacen("http", "ws", 1));
        let mut request = ws_url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        // The first message says the subscription is live.
        let _ready = socket.next().await;
        let mut rng = synth::Rng::new(9);
        let mut lat = Vec::new();
        for _ in 0..args.updates {
            let i = rng.below(fleet.len() as u64) as usize;
            let mut a = fleet[i].clone();
            synth::update_metrics(&mut a, &mut rng);
            let t = Instant::now();
            dir.write(&a)?;
            let deadline = t + Duration::from_secs(10);
            loop {
                let msg = tokio::time::timeout_at(deadline.into(), socket.next())
                    .await
                    .context("no watch event within 10 s")?;
                let Some(msg) = msg else {
                    bail!("watch stream closed")
                };
                let text = msg?.into_text()?;
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if v["id"].as_str() == Some(&*a.id) {
                    break;
                }
            }
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        report.update_to_watch_p50_ms = Some(pct(&lat, 0.5));
        report.update_to_watch_p99_ms = Some(pct(&lat, 0.99));
        anyhow::Ok(())
    }
    .await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    result
}
