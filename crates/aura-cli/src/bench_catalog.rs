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
    /// Requests that failed (connection error or a non-2xx status).
    http_errors: u64,
    /// CPU time of the `aura up` process (user + system) per answered query, µs.
    http_server_cpu_us_per_query: Option<f64>,
    /// CPU time of the load generator's thread per answered query, µs.
    http_client_cpu_us_per_query: Option<f64>,
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
        http_errors: 0,
        http_server_cpu_us_per_query: None,
        http_client_cpu_us_per_query: None,
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
        rows.push(vec!["HTTP errors".into(), report.http_errors.to_string()]);
        rows.push(vec![
            "CPU per query: server / load generator".into(),
            format!(
                "{} / {}",
                opt(report.http_server_cpu_us_per_query, "µs"),
                opt(report.http_client_cpu_us_per_query, "µs")
            ),
        ]);
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
        let mut out = std::io::BufReader::new(out);
        out.read_line(&mut line)?;
        // Keep draining: `aura up` prints more lines (the proxy's address) and stops on a closed stdout.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    }
    let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        bail!("aura up did not start: `{}`", line.trim());
    };
    let result = async {
        let token = std::fs::read_to_string(data.join("admin.token"))?
            .trim()
            .to_owned();
        // HTTP load: C keep-alive connections, each sending queries back to back for the duration, driven by one
        // lean HTTP/1.1 client on its own thread (one core at most), so the server gets the rest of the machine.
        let server_cpu_before = process_cpu_seconds(child.id());
        let load = http_load(&url, &token, args.http_clients as usize, args.http_seconds)?;
        let server_cpu = process_cpu_seconds(child.id())
            .zip(server_cpu_before)
            .map(|(after, before)| after - before);
        let mut lat = load.latencies_ms;
        lat.sort_by(f64::total_cmp);
        report.http_queries_per_sec = Some(load.done as f64 / load.seconds);
        report.http_p99_ms = Some(pct(&lat, 0.99));
        report.http_errors = load.errors;
        if load.done > 0 {
            report.http_server_cpu_us_per_query = server_cpu.map(|s| s * 1e6 / load.done as f64);
            report.http_client_cpu_us_per_query =
                Some(load.client_cpu_seconds * 1e6 / load.done as f64);
        }

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

/// What the HTTP load produced.
struct Load {
    done: u64,
    errors: u64,
    seconds: f64,
    latencies_ms: Vec<f64>,
    client_cpu_seconds: f64,
}

/// User + system CPU seconds of process `pid` so far (`/proc/PID/stat`); `None` where there is no procfs.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

fn cpu_seconds_of(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3; utime and stime are 14, 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks: 100 per second on Linux for every architecture Aura builds for.
    Some((utime + stime) / 100.0)
}

/// Runs `clients` keep-alive connections to `url` sending `POST /api/v1/query` back to back for `seconds`, on a
/// single-threaded runtime in a thread of its own. Each request is prebuilt bytes; each response is read to the end
/// of its `Content-Length` body and counted when its status is 2xx.
fn http_load(url: &str, token: &str, clients: usize, seconds: u64) -> anyhow::Result<Load> {
    let addr = url
        .strip_prefix("http://")
        .context("the server URL is not http://")?
        .trim_end_matches('/')
        .to_owned();
    let requests: Vec<Vec<u8>> = HTTP_SHAPES
        .iter()
        .map(|q| {
            let body = serde_json::json!({ "query": q }).to_string();
            format!(
                "POST /api/v1/query HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let requests = Arc::new(requests);
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> anyhow::Result<Load> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let cpu_before = cpu_seconds_of("/proc/thread-self/stat");
                let load = rt.block_on(async move {
                    let stop = Arc::new(AtomicBool::new(false));
                    let done = Arc::new(AtomicU64::new(0));
                    let errors = Arc::new(AtomicU64::new(0));
                    let mut tasks = tokio::task::JoinSet::new();
                    for c in 0..clients {
                        let stream = tokio::net::TcpStream::connect(&addr).await?;
                        stream.set_nodelay(true)?;
                        let (requests, stop, done, errors) =
                            (requests.clone(), stop.clone(), done.clone(), errors.clone());
                        tasks.spawn(async move {
                            client_loop(stream, &requests, c, &stop, &done, &errors).await
                        });
                    }
                    let started = Instant::now();
                    tokio::time::sleep(Duration::from_secs(seconds)).await;
                    stop.store(true, Ordering::Relaxed);
                    let mut lat = Vec::new();
                    while let Some(r) = tasks.join_next().await {
                        lat.extend(r?);
                    }
                    let seconds = started.elapsed().as_secs_f64();
                    anyhow::Ok(Load {
                        done: done.load(Ordering::Relaxed),
                        errors: errors.load(Ordering::Relaxed),
                        seconds,
                        latencies_ms: lat,
                        client_cpu_seconds: 0.0,
                    })
                })?;
                let cpu_after = cpu_seconds_of("/proc/thread-self/stat");
                Ok(Load {
                    client_cpu_seconds: cpu_after.zip(cpu_before).map_or(0.0, |(a, b)| a - b),
                    ..load
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
    })
}

/// One connection's loop: send, read the whole response, repeat until `stop`. Returns latencies of 2xx answers.
async fn client_loop(
    mut stream: tokio::net::TcpStream,
    requests: &[Vec<u8>],
    first: usize,
    stop: &AtomicBool,
    done: &AtomicU64,
    errors: &AtomicU64,
) -> Vec<f64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut lat = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let request = &requests[i % requests.len()];
        i += 1;
        let t = Instant::now();
        if stream.write_all(request).await.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        // Read until the head is complete, then until the body is.
        let mut ok = None;
        loop {
            if let Some((status, head_len, body_len)) = parse_head(&buf) {
                if buf.len() >= head_len + body_len {
                    buf.drain(..head_len + body_len);
                    ok = Some((200..300).contains(&status));
                    break;
                }
            } else if buf.len() > 64 * 1024 {
                break;
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        match ok {
            Some(true) => {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Some(false) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    lat
}

/// `(status, head length, Content-Length)` once `buf` holds a whole response head; `None` before (or when the head
/// has no `Content-Length`, which the server always sends for JSON answers).
fn parse_head(buf: &[u8]) -> Option<(u16, usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let body_len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())?;
    Some((status, end, body_len))
}
