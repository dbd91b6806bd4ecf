//! Context-plane commands: `aura validate`, `aura guardian status|run|repair`, `aura sensor`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use aura_context::aav::{Document, Reader};
use aura_context::guardian::{self, FileReport, GuardianOptions};
use aura_core::{Clock as _, SystemClock};
use aura_server::services::audit::{AuditTrail, cli_actor};
use aura_server::services::context as ctx;

use aura_context::forward::Spool;

use crate::cli::{Cli, Globals};
use crate::commands::{load_config, load_config_with};
use crate::output::{self, Output};
use crate::sensor_push::PushTarget;

/// Options of `aura validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Asset files or directories of them [default: assets/ in the data dir].
    pub paths: Vec<PathBuf>,
    /// Seconds without an update after which a file is stale; 0 skips the check
    /// [default: `context.guardian.stale_after_seconds`].
    #[arg(long, value_name = "SECONDS")]
    pub stale_after: Option<u64>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `aura guardian …`
#[derive(Debug, Subcommand)]
pub(crate) enum GuardianCommand {
    /// Every asset file: health, age, sensor statuses and problems found.
    Status(GuardianStatusArgs),
    /// Validate every asset file and repair what is broken (each repair is audited).
    Run(GuardianRunArgs),
    /// Repair one asset file, up to a repair level.
    Repair(GuardianRepairArgs),
}

/// Options of `aura guardian status`.
#[derive(Debug, Args)]
pub(crate) struct GuardianStatusArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura guardian run`.
#[derive(Debug, Args)]
pub(crate) struct GuardianRunArgs {
    /// Only report; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Highest repair level (1 syntax fix, 2 backup, 3 partial, 4 skeleton; 5 needs the running sensor).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub max_level: u8,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura guardian repair`.
#[derive(Debug, Args)]
pub(crate) struct GuardianRepairArgs {
    /// The asset file.
    pub path: PathBuf,
    /// Highest repair level to try.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub level: u8,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura sensor`.
#[derive(Debug, Args)]
pub(crate) struct SensorArgs {
    /// Directory the asset file is written to [default: assets/ in the data dir; with --push,
    /// no local file unless --dir is given].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Asset id [default: `context.sensor.asset_id`, else the host name].
    #[arg(long, env = "AURA_ASSET_ID")]
    pub asset_id: Option<String>,
    /// Send every update to the running Aura at URL (`POST /api/v1/assets/{id}/sensor`), which
    /// decides, audits and writes it; spooled and retried while Aura is unreachable.
    #[arg(long, visible_alias = "server", value_name = "URL")]
    pub push: Option<String>,
    /// File holding the token for --push [default: the AURA_TOKEN environment variable].
    #[arg(long, value_name = "FILE", requires = "push")]
    pub token_file: Option<PathBuf>,
    /// Base sampling interval in seconds [default: `context.sensor.interval_seconds`].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: Option<u64>,
    /// Take one sample of every sensor, write the file, print it and exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: output format of the printed file.
    #[arg(long, short, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

fn stale_options(config: &aura_config::Config, stale_after: Option<u64>) -> GuardianOptions {
    let mut o = ctx::guardian_options(config);
    if let Some(s) = stale_after {
        o.stale_after_ms = i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    }
    o
}

fn issues_text(r: &FileReport) -> String {
    if r.issues.is_empty() {
        "ok".to_owned()
    } else {
        r.issues
            .iter()
            .map(|i| format!("{}: {}", i.class.as_str(), i.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `aura validate [PATHS]`: exit 0 when every file is valid, 1 otherwise.
pub(crate) async fn validate(cli: &Cli, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let (config, _) = load_config(cli, None)?;
    let options = stale_options(&config, args.stale_after);
    let now = SystemClock.now();
    let paths = if args.paths.is_empty() {
        vec![ctx::assets_dir(&config)]
    } else {
        args.paths.clone()
    };
    let mut reports = Vec::new();
    for p in &paths {
        if p.is_dir() {
            reports.extend(
                guardian::scan(p, &options, now)
                    .with_context(|| format!("reading `{}`", p.display()))?,
            );
        } else if p.exists() {
            reports.push(guardian::validate_file(p, &options, now));
        } else {
            bail!("`{}` does not exist", p.display());
        }
    }
    let invalid = reports.iter().filter(|r| !r.valid()).count();
    output::print(args.output, &reports, || {
        let mut t = output::table(
            &["PATH", "RESULT"],
            reports
                .iter()
                .map(|r| vec![r.path.display().to_string(), issues_text(r)]),
        );
        t.push_str(&format!("{} file(s), {invalid} invalid\n", reports.len()));
        t
    })?;
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Serialize)]
struct StatusRow {
    asset_id: String,
    kind: String,
    health: String,
    updated_at: String,
    age_seconds: Option<i64>,
    sensors: Vec<(String, String)>,
    valid: bool,
    issues: Vec<String>,
}

/// `aura guardian …`
pub(crate) async fn guardian(cli: &Cli, cmd: &GuardianCommand) -> anyhow::Result<ExitCode> {
    let (config, _) = load_config(cli, None)?;
    let dir = ctx::assets_dir(&config);
    let options = ctx::guardian_options(&config);
    match cmd {
        GuardianCommand::Status(args) => {
            let now = SystemClock.now();
            let reports = if dir.is_dir() {
                guardian::scan(&dir, &options, now)?
            } else {
                Vec::new()
            };
            let reader = Reader::new(1024);
            let rows: Vec<StatusRow> = reports
                .iter()
                .map(|r| {
                    let doc = reader.read(&r.path).ok();
                    let d = doc.as_deref();
                    StatusRow {
                        asset_id: r.asset_id.clone().unwrap_or_default(),
                        kind: d
                            .and_then(Document::kind)
                            .map(|k| k.to_string())
                            .unwrap_or_default(),
                        health: r.health.clone().unwrap_or_else(|| "-".into()),
                        updated_at: d
                            .and_then(Document::updated_at)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default(),
                        age_seconds: d
                            .and_then(Document::updated_at)
                            .map(|t| (now.as_millis() - t.as_millis()) / 1000),
                        sensors: d
                            .map(|d| {
                                d.sensor_status()
                                    .into_iter()
                                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        valid: r.valid(),
                        issues: r
                            .issues
                            .iter()
                            .map(|i| format!("{}: {}", i.class.as_str(), i.message))
                            .collect(),
                    }
                })
                .collect();
            output::print(args.output, &rows, || {
                output::table(
                    &["ASSET", "KIND", "HEALTH", "AGE", "SENSORS", "PROBLEMS"],
                    rows.iter().map(|r| {
                        vec![
                            r.asset_id.clone(),
                            r.kind.clone(),
                            r.health.clone(),
                            r.age_seconds
                                .map(|a| format!("{a}s"))
                                .unwrap_or_else(|| "-".into()),
                            r.sensors
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(" "),
                            if r.issues.is_empty() {
                                "-".into()
                            } else {
                                r.issues.join("; ")
                            },
                        ]
                    }),
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        GuardianCommand::Run(args) => {
            if !dir.is_dir() {
                bail!(
                    "no asset files: `{}` does not exist (start `aura up` or `aura sensor` first)",
                    dir.display()
                );
            }
            let run = ctx::run_once(
                &dir,
                &options,
                !args.dry_run,
                args.max_level,
                None,
                &SystemClock,
            );
            audit(&config, &run.repairs).await;
            let after = guardian::scan(&dir, &options, SystemClock.now())?;
            let invalid = after.iter().filter(|r| !r.valid()).count();
            output::print(args.output, &run, || {
                let mut t = output::table(
                    &["PATH", "FOUND"],
                    run.reports
                        .iter()
                        .filter(|r| !r.issues.is_empty())
                        .map(|r| vec![r.path.display().to_string(), issues_text(r)]),
                );
                t.push_str(&repairs_table(&run.repairs));
                t.push_str(&format!(
                    "{} file(s) checked, {} repair(s), {invalid} still invalid\n",
                    run.reports.len(),
                    run.repairs.len()
                ));
                t
            })?;
            Ok(if invalid == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        GuardianCommand::Repair(args) => {
            let now = SystemClock.now();
            let report = guardian::validate_file(&args.path, &options, now);
            let records = guardian::repair(&report, &options, args.level, None, now);
            audit(&config, &records).await;
            let after = guardian::validate_file(&args.path, &options, SystemClock.now());
            output::print(args.output, &records, || {
                let mut t = if report.issues.is_empty() {
                    "nothing to repair\n".to_owned()
                } else {
                    format!("found: {}\n", issues_text(&report))
                };
                t.push_str(&repairs_table(&records));
                t.push_str(&format!("now: {}\n", issues_text(&after)));
                t
            })?;
            Ok(if after.valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn repairs_table(records: &[guardian::RepairRecord]) -> String {
    if records.is_empty() {
        return String::new();
    }
    output::table(
        &["PATH", "LEVEL", "REPAIR", "OK", "DETAIL"],
        records.iter().map(|r| {
            vec![
                r.path.display().to_string(),
                r.level.to_string(),
                r.action.clone(),
                r.ok.to_string(),
                r.detail.clone(),
            ]
        }),
    )
}

/// Records repairs in the audit trail (a warning when it is held by a running `aura up`).
async fn audit(config: &aura_config::Config, records: &[guardian::RepairRecord]) {
    if records.is_empty() {
        return;
    }
    let settings = aura_server::services::audit::TrailSettings {
        data_dir: config.data_dir.clone(),
        origin: config.audit.origin.clone(),
        segment_bytes: config.audit.segment_bytes,
        checkpoint_interval: Duration::from_millis(config.audit.checkpoint_interval_ms),
        effect_gate: config.audit.effect_gate,
    };
    match AuditTrail::open(settings).await {
        Ok((trail, _)) => {
            ctx::audit_repairs(&trail, &SystemClock, cli_actor(), records).await;
            trail.close().await;
        }
        Err(e) => eprintln!("warning: these repairs are not in the audit log ({e})"),
    }
}

/// `aura sensor`: runs the host sensor on its own (e.g. as a sidecar) until SIGINT/SIGTERM,
/// writing the asset file into a directory and/or pushing its updates to a running Aura.
pub(crate) async fn sensor(globals: &Globals, args: &SensorArgs) -> anyhow::Result<ExitCode> {
    let (mut config, _) = load_config_with(globals, None)?;
    if let Some(i) = args.interval {
        config.context.sensor.interval_seconds = i;
    }
    if let Some(id) = &args.asset_id {
        if !aura_context::aav::valid_asset_id(id) {
            bail!(
                "invalid asset id `{id}`: use 1 to 200 letters, digits, `.`, `_` or `-`, not starting with `.`"
            );
        }
        config.context.sensor.asset_id = Some(id.clone());
    }
    let push = match &args.push {
        Some(url) => Some(push_target(url, args.token_file.as_deref())?),
        None => None,
    };
    let dir = args.dir.clone().unwrap_or_else(|| ctx::assets_dir(&config));
    let id = ctx::local_asset_id(&config);
    let mut pc = ctx::pipeline_config(&config, dir, &id);
    pc.write_local = push.is_none() || args.dir.is_some();
    let spool = Spool::new();
    if push.is_some() {
        pc.forward = Some(Arc::new(spool.clone()));
    }
    if args.once {
        // Every first sample is critical, so the first batch is written at once.
        pc.interval = Duration::from_secs(3600);
    }
    let tracker = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let push_cancel = tokio_util::sync::CancellationToken::new();
    let pusher = push.clone().map(|target| {
        tokio::spawn(crate::sensor_push::run(
            spool.clone(),
            target,
            push_cancel.clone(),
        ))
    });
    let handle =
        aura_context::pipeline::spawn(pc.clone(), Arc::new(SystemClock), &tracker, cancel.clone())?;
    if args.once {
        let mut writes = handle.writes();
        let expected = pc.sensors.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while handle.stats().sections_written.len() < expected {
            tokio::select! {
                _ = writes.changed() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    } else {
        let mut to = Vec::new();
        if pc.write_local {
            to.push(handle.path.display().to_string());
        }
        if let Some(t) = &push {
            to.push(t.base.clone());
        }
        eprintln!(
            "aura sensor: asset `{id}` to {} every {}s (Ctrl-C to stop)",
            to.join(" and "),
            pc.interval.as_secs()
        );
        shutdown().await;
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    // The pipeline has flushed into the spool; the pusher delivers it (bounded) and stops.
    push_cancel.cancel();
    let mut code = ExitCode::SUCCESS;
    if let Some(p) = pusher {
        let report = p.await.unwrap_or_default();
        if args.once && report.delivered == 0 {
            eprintln!("error: nothing was delivered to the server");
            code = ExitCode::from(1);
        }
    }
    if args.once && pc.write_local {
        let doc = Reader::new(1).read(&handle.path)?;
        print_doc(args.output, &doc)?;
    }
    Ok(code)
}

/// The server URL and the token for `--push`: `--token-file`, else `AURA_TOKEN`.
fn push_target(url: &str, token_file: Option<&std::path::Path>) -> anyhow::Result<PushTarget> {
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("--push: `{url}` is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--push: `{url}` must be an http:// or https:// URL");
    }
    let token = match token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file `{}`", f.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("AURA_TOKEN")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    if token.is_empty() {
        bail!("--push needs a token: --token-file FILE or the AURA_TOKEN environment variable");
    }
    Ok(PushTarget {
        base: url.trim_end_matches('/').to_owned(),
        token,
    })
}

fn print_doc(format: Output, doc: &Document) -> anyhow::Result<()> {
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(&doc.to_json())?),
        Output::Yaml => print!("{}", doc.to_yaml().map_err(anyhow::Error::msg)?),
        Output::Table => print!("{}", doc.render().map_err(anyhow::Error::msg)?),
    }
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
