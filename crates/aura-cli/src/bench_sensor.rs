//! `aura bench sensor`: the host sensor's own footprint (RSS, CPU) at 1 s sampling, optionally
//! side by side with Debian's `prometheus-node-exporter` scraped every second; atomic write
//! latency (fsync included), cached read latency and change→file latency.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;

use aura_context::aav::{AssetKind, Reader, SectionUpdate, Writer, WriterOptions};
use aura_context::pipeline::{self, PipelineConfig};
use aura_context::sensors::{Sample, SensorReport};

/// Options of `aura bench sensor`.
#[derive(Debug, Args)]
pub(crate) struct BenchSensorArgs {
    /// Seconds the sensor (and node_exporter) run.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub seconds: u64,
    /// Also run `prometheus-node-exporter`, scraped every second, and print the ratios.
    #[arg(long)]
    pub vs_node_exporter: bool,
    /// Print JSON (`rss_mb`, `cpu_percent`, `write_p99_ms`, `cached_read_p50_us`, …).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Footprint {
    rss_mb: f64,
    /// Anonymous (heap, stacks) part of the RSS: what the process allocated, without its mapped binary.
    rss_anon_mb: f64,
    rss_max_mb: f64,
    cpu_percent: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    seconds: u64,
    sampling_interval_seconds: u64,
    rss_mb: f64,
    rss_max_mb: f64,
    rss_anon_mb: f64,
    cpu_percent: f64,
    node_exporter: Option<Footprint>,
    rss_ratio: Option<f64>,
    cpu_ratio: Option<f64>,
    writes: u64,
    fsync_floor_p50_ms: f64,
    fsync_floor_p99_ms: f64,
    write_p50_ms: f64,
    write_p99_ms: f64,
    cached_read_p50_us: f64,
    cached_read_p99_us: f64,
    change_to_file_p50_ms: f64,
    change_to_file_p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Anonymous RSS of a process, bytes.
fn rss_anon(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

/// (cpu ticks, rss bytes) of a process.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks, rss_kb * 1024))
}

struct Watched {
    child: Child,
    start: Option<(Instant, u64)>,
    rss_max: u64,
    last_rss: u64,
}

impl Watched {
    fn new(child: Child) -> Watched {
        Watched {
            child,
            start: None,
            rss_max: 0,
            last_rss: 0,
        }
    }

    fn begin(&mut self) {
        if let Some((ticks, rss)) = proc_usage(self.child.id()) {
            self.start = Some((Instant::now(), ticks));
            self.last_rss = rss;
        }
    }

    fn observe(&mut self) {
        if let Some((_, rss)) = proc_usage(self.child.id()) {
            self.rss_max = self.rss_max.max(rss);
            self.last_rss = rss;
        }
    }

    fn finish(mut self) -> Footprint {
        self.observe();
        let anon = rss_anon(self.child.id());
        let cpu = match (self.start, proc_usage(self.child.id())) {
            (Some((t, before)), Some((after, _))) => {
                after.saturating_sub(before) as f64 / 100.0 / t.elapsed().as_secs_f64() * 100.0
            }
            _ => 0.0,
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        Footprint {
            rss_mb: round(self.last_rss as f64 / 1_048_576.0, 2),
            rss_max_mb: round(self.rss_max as f64 / 1_048_576.0, 2),
            rss_anon_mb: round(anon as f64 / 1_048_576.0, 2),
            cpu_percent: round(cpu, 3),
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `aura bench sensor`.
pub(crate) async fn sensor(args: &BenchSensorArgs) -> anyhow::Result<ExitCode> {
    let scratch = tempfile::tempdir()?;
    let exe = std::env::current_exe().context("locating the aura binary")?;
    let sensor = Command::new(&exe)
        .args([
            "sensor",
            "--interval",
            "1",
            "--asset-id",
            "bench-host",
            "--dir",
        ])
        .arg(scratch.path().join("sensor"))
        .arg("--data-dir")
        .arg(scratch.path())
        .env_remove("AURA_CONFIG")
        .env("AURA_LOG", "warn")
        .current_dir(scratch.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting `aura sensor`")?;
    let mut sensor = Watched::new(sensor);
    let mut exporter = None;
    let mut scrape_url = None;
    if args.vs_node_exporter {
        let port = free_port()?;
        let child = Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `prometheus-node-exporter` (Debian package prometheus-node-exporter; scripts/services.sh installs it)")?;
        exporter = Some(Watched::new(child));
        scrape_url = Some(format!("http://127.0.0.1:{port}/metrics"));
    }
    // Warm-up: both processes start and take their first samples/scrapes.
    let client = reqwest::Client::new();
    let warm = Instant::now() + Duration::from_secs(2);
    while Instant::now() < warm {
        if let Some(url) = &scrape_url {
            let _ = client.get(url).send().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sensor.begin();
    if let Some(e) = exporter.as_mut() {
        e.begin();
    }
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < end {
        tick.tick().await;
        if let Some(url) = &scrape_url
            && let Ok(r) = client.get(url).send().await
        {
            let _ = r.bytes().await;
        }
        sensor.observe();
        if let Some(e) = exporter.as_mut() {
            e.observe();
        }
    }
    let ours = sensor.finish();
    let theirs = exporter.map(Watched::finish);
    if !scratch.path().join("sensor/bench-host.aav").exists() {
        bail!("the sensor wrote no asset file");
    }

    let (floor_p50, floor_p99) = fsync_floor(scratch.path())?;
    let (writes, write_p50, write_p99) = write_latency(&scratch.path().join("writes"))?;
    let (read_p50, read_p99) = cached_read_latency(&scratch.path().join("writes"))?;
    let (change_p50, change_p99) = change_latency(&scratch.path().join("changes")).await?;
    let report = Report {
        seconds: args.seconds,
        sampling_interval_seconds: 1,
        rss_mb: ours.rss_mb,
        rss_max_mb: ours.rss_max_mb,
        rss_anon_mb: ours.rss_anon_mb,
        cpu_percent: ours.cpu_percent,
        rss_ratio: theirs
            .as_ref()
            .map(|t| round(ours.rss_mb / t.rss_mb.max(0.01), 3)),
        cpu_ratio: theirs
            .as_ref()
            .map(|t| round(ours.cpu_percent / t.cpu_percent.max(0.001), 3)),
        node_exporter: theirs,
        writes,
        fsync_floor_p50_ms: round(floor_p50, 3),
        fsync_floor_p99_ms: round(floor_p99, 3),
        write_p50_ms: round(write_p50, 3),
        write_p99_ms: round(write_p99, 3),
        cached_read_p50_us: round(read_p50, 3),
        cached_read_p99_us: round(read_p99, 3),
        change_to_file_p50_ms: round(change_p50, 3),
        change_to_file_p99_ms: round(change_p99, 3),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "sensor at 1 s sampling over {} s: rss {} MB (max {}), cpu {} %",
            report.seconds, report.rss_mb, report.rss_max_mb, report.cpu_percent
        );
        if let Some(t) = &report.node_exporter {
            println!(
                "node_exporter scraped every 1 s:   rss {} MB (max {}, anonymous {}), cpu {} %  → ratios rss {:.3}, cpu {:.3}",
                t.rss_mb,
                t.rss_max_mb,
                t.rss_anon_mb,
                t.cpu_percent,
                report.rss_ratio.unwrap_or(0.0),
                report.cpu_ratio.unwrap_or(0.0)
            );
        }
        println!(
            "atomic write (fsync, rename, dir fsync) over {} writes: p50 {} ms, p99 {} ms",
            report.writes, report.write_p50_ms, report.write_p99_ms
        );
        println!(
            "this disk's floor (write 2 KiB + fsync, same dir): p50 {} ms, p99 {} ms",
            report.fsync_floor_p50_ms, report.fsync_floor_p99_ms
        );
        println!(
            "cached read: p50 {} µs, p99 {} µs",
            report.cached_read_p50_us, report.cached_read_p99_us
        );
        println!(
            "change → file: p50 {} ms, p99 {} ms",
            report.change_to_file_p50_ms, report.change_to_file_p99_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn realistic_section(i: u64) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("cpu_percent".into(), ((i % 100) as f64).into());
    t.insert("load_1".into(), 0.42.into());
    t.insert("load_5".into(), 0.40.into());
    t.insert("load_15".into(), 0.38.into());
    t.insert("process_count".into(), 231.into());
    let top: Vec<toml::Value> = (0..5)
        .map(|k| {
            let mut p = toml::Table::new();
            p.insert("pid".into(), (1000 + k).into());
            p.insert("name".into(), format!("proc-{k}").into());
            p.insert("cpu_percent".into(), 1.5.into());
            toml::Value::Table(p)
        })
        .collect();
    t.insert("top_processes".into(), toml::Value::Array(top));
    t
}

/// The disk's own cost: overwrite 2 KiB and fsync, 200 times.
fn fsync_floor(dir: &Path) -> anyhow::Result<(f64, f64)> {
    use std::io::Write as _;
    let path = dir.join("floor.bin");
    let mut file = std::fs::File::create(&path)?;
    let block = [7u8; 2048];
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_all()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

fn write_latency(dir: &Path) -> anyhow::Result<(u64, f64, f64)> {
    let w = Writer::new(dir, WriterOptions::default())?;
    let n = 500u64;
    let mut times = Vec::with_capacity(n as usize);
    for i in 0..n {
        let start = Instant::now();
        w.update(
            &SectionUpdate::new("bench", AssetKind::Host, "bench")
                .section("compute", realistic_section(i))
                .status("compute", "ok"),
        )?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((n, percentile(&times, 0.5), percentile(&times, 0.99)))
}

fn cached_read_latency(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("bench.aav");
    let reader = Reader::new(16);
    reader.read(&path)?;
    let mut times = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let start = Instant::now();
        let doc = reader.read(&path)?;
        std::hint::black_box(doc.get("compute.cpu_percent"));
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

async fn change_latency(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let mut config = PipelineConfig::local(dir.to_owned(), "bench-change");
    // No sensors: changes are injected, so only detector → aggregator → writer is timed.
    config.sensors.clear();
    let tracker = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = pipeline::spawn(
        config,
        Arc::new(aura_core::SystemClock),
        &tracker,
        cancel.clone(),
    )?;
    let mut writes = handle.writes();
    let mut times = Vec::new();
    for i in 0..200u64 {
        // Alternate between 10 % and 60 % CPU: a spike, written at once.
        let mut section = realistic_section(0);
        section.insert(
            "cpu_percent".into(),
            (if i % 2 == 0 { 60.0 } else { 10.0 }).into(),
        );
        let before = *writes.borrow_and_update();
        let start = Instant::now();
        handle
            .inject(SensorReport {
                sensor: "compute".into(),
                result: Ok(Sample {
                    section,
                    health: aura_context::aav::Health::Healthy,
                }),
                duration: Duration::ZERO,
            })
            .await;
        tokio::time::timeout(Duration::from_secs(5), writes.wait_for(|n| *n > before))
            .await
            .context("no write after a change")?
            .context("pipeline stopped")?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}
