//! `aura usage daily|by-agent|by-model`: LLM gateway usage (calls, tokens, cost) from a running server.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::cli::{ApiArgs, Cli};
use crate::commands::Api;
use crate::output::{self, Output};

/// `aura usage …`
#[derive(Debug, Subcommand)]
pub(crate) enum UsageCommand {
    /// Usage per day, agent and model.
    Daily(UsageArgs),
    /// Usage per agent over the window.
    ByAgent(UsageArgs),
    /// Usage per model over the window.
    ByModel(UsageArgs),
}

/// Options of `aura usage`.
#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// Days back, today included (1 to 366).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UsageRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_micros: i64,
}

/// Runs an `aura usage` command.
pub(crate) async fn run(cli: &Cli, cmd: &UsageCommand) -> anyhow::Result<ExitCode> {
    let (args, group) = match cmd {
        UsageCommand::Daily(a) => (a, None),
        UsageCommand::ByAgent(a) => (a, Some("agent")),
        UsageCommand::ByModel(a) => (a, Some("model")),
    };
    let api = Api::new(cli, &args.api)?;
    let rows: Vec<UsageRow> = api
        .get_json(&format!("/api/v1/usage/daily?days={}", args.days))
        .await?;
    let rows = match group {
        None => rows,
        Some(by) => {
            let mut sums: BTreeMap<String, UsageRow> = BTreeMap::new();
            for r in rows {
                let key = if by == "agent" {
                    r.agent.clone()
                } else {
                    r.model.clone()
                }
                .unwrap_or_default();
                let e = sums.entry(key.clone()).or_insert_with(|| UsageRow {
                    day: None,
                    agent: (by == "agent").then(|| key.clone()),
                    model: (by == "model").then(|| key.clone()),
                    calls: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                    cost_micros: 0,
                });
                e.calls += r.calls;
                e.input_tokens += r.input_tokens;
                e.output_tokens += r.output_tokens;
                e.cost_micros += r.cost_micros;
            }
            sums.into_values().collect()
        }
    };
    output::print(args.output, &rows, || {
        if rows.is_empty() {
            return format!("no LLM calls in the last {} day(s)\n", args.days);
        }
        let mut header = Vec::new();
        if group.is_none() {
            header.extend(["DAY", "AGENT", "MODEL"]);
        } else if group == Some("agent") {
            header.push("AGENT");
        } else {
            header.push("MODEL");
        }
        header.extend(["CALLS", "INPUT", "OUTPUT", "COST"]);
        output::table(
            &header,
            rows.iter().map(|r| {
                let mut line: Vec<String> = [&r.day, &r.agent, &r.model]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                line.extend([
                    r.calls.to_string(),
                    r.input_tokens.to_string(),
                    r.output_tokens.to_string(),
                    usd(r.cost_micros),
                ]);
                line
            }),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Micro-dollars as dollars with 6 decimals.
fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
}
