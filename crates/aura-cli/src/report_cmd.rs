//! `aura report compliance`: reads the audit log directly (no lock, so it works beside a running server), verifies
//! it, and renders the compliance report as Markdown or self-contained HTML.

use std::process::ExitCode;

use anyhow::{Context as _, bail};

use aura_audit::report::{self, ComplianceReport, ReportRange};
use aura_core::Timestamp;

use crate::audit_cmd::parse_time;
use crate::cli::{Cli, ReportCommand, ReportComplianceArgs, ReportFormat};
use crate::commands::load_config;

/// Runs an `aura report` command.
pub(crate) async fn run(cli: &Cli, cmd: &ReportCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportCommand::Compliance(args) => compliance(cli, args).await,
    }
}

async fn compliance(cli: &Cli, args: &ReportComplianceArgs) -> anyhow::Result<ExitCode> {
    let (config, _) = load_config(cli, None)?;
    let dir = aura_server::services::audit::paths(&config.data_dir).0;
    if !dir.join("verifier.key").exists() {
        bail!(
            "no audit log at `{}`; start `aura up` once to create it",
            dir.display()
        );
    }
    let since = args.since.as_deref().map(parse_time).transpose()?;
    let until = match args.until.as_deref() {
        Some(t) => parse_time(t)?,
        None => aura_core::Clock::now(&aura_core::SystemClock),
    };
    if since.is_some_and(|s| s > until) {
        bail!("--since is after --until");
    }
    let report = tokio::task::spawn_blocking(move || build(&dir, since, until)).await??;
    let text = match args.format {
        ReportFormat::Md => report::render_markdown(&report),
        ReportFormat::Html => report::render_html(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing the report to `{}`", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifies the log, then reads it once; `since` defaults to the log's first entry.
fn build(
    dir: &std::path::Path,
    since: Option<Timestamp>,
    until: Timestamp,
) -> anyhow::Result<ComplianceReport> {
    let verification = aura_audit::verify(dir, None);
    let since = match since {
        Some(s) => s,
        None => report::read_entries(dir)?
            .next()
            .and_then(Result::ok)
            .map_or(until, |e| e.entry.time.min(until)),
    };
    let mut read_error = None;
    let entries = report::read_entries(dir)?.map_while(|e| match e {
        Ok(e) => Some(e),
        Err(err) => {
            read_error = Some(err.to_string());
            None
        }
    });
    let mut report = ComplianceReport::build(entries, &verification, ReportRange { since, until });
    report.read_error = read_error;
    Ok(report)
}
