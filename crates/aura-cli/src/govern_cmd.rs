//! Governance from the terminal: `aura policy`, `aura approvals`, `aura agent halt|resume|halts`, `aura budgets`,
//! `aura decide` and `aura settle`. `policy check` works offline on the files; everything else drives a running
//! server through its HTTP API.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use aura_policy::{Finding, Location, PolicyError, PolicySet};

use crate::cli::{
    AgentHaltArgs, AgentResumeArgs, ApiOutputArgs, ApprovalDecideArgs, ApprovalStateArg,
    ApprovalsCommand, ApprovalsListArgs, BudgetsArgs, Cli, DecideArgs, OutcomeArg, PolicyCheckArgs,
    PolicyCommand, PolicyReloadArgs, SettleArgs,
};
use crate::commands::{Api, ApiFailure, load_config};
use crate::output;

/// Exit code of `policy check` when the directory or a file cannot be read.
const EXIT_UNREADABLE: u8 = 2;
/// Exit code of `decide` for deny and halt.
const EXIT_REFUSED: u8 = 3;
/// Exit code of `decide` for escalate.
const EXIT_ESCALATE: u8 = 4;

/// Runs an `aura policy` command.
pub(crate) async fn policy(cli: &Cli, cmd: &PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check(args) => policy_check(cli, args),
        PolicyCommand::Show(args) => policy_show(cli, args).await,
        PolicyCommand::Reload(args) => policy_reload(cli, args).await,
    }
}

/// Runs an `aura approvals` command.
pub(crate) async fn approvals(cli: &Cli, cmd: &ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCommand::List(args) => approvals_list(cli, args).await,
        ApprovalsCommand::Approve(args) => approval_decide(cli, args, true).await,
        ApprovalsCommand::Deny(args) => approval_decide(cli, args, false).await,
    }
}

/// `aura agent halt NAME|--all --reason R [--pause]`.
pub(crate) async fn halt(cli: &Cli, args: &AgentHaltArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let body = match &args.name {
        Some(name) => json!({"agent": name, "reason": args.reason, "pause": args.pause}),
        None => json!({"all": true, "reason": args.reason, "pause": args.pause}),
    };
    let applied: Vec<HaltWire> =
        decode(api.call(Method::POST, "/api/v1/halts", Some(&body)).await?)?;
    output::print(args.output, &applied, || halts_table(&applied))?;
    Ok(ExitCode::SUCCESS)
}

/// `aura agent resume NAME|--all`.
pub(crate) async fn resume(cli: &Cli, args: &AgentResumeArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let target = args
        .name
        .as_deref()
        .map_or_else(|| "*".to_owned(), urlencode);
    let resumed: Vec<String> = decode(
        api.call(Method::DELETE, &format!("/api/v1/halts/{target}"), None)
            .await?,
    )?;
    let names: Vec<&str> = resumed
        .iter()
        .map(|n| {
            if n == "*" {
                "all agents (kill switch lifted)"
            } else {
                n.as_str()
            }
        })
        .collect();
    if names.is_empty() {
        let what = args.name.as_deref().unwrap_or("the kill switch (--all)");
        println!("nothing to resume: {what} was not halted or paused");
    } else {
        println!("resumed {}", names.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `aura agent halts`.
pub(crate) async fn halts(cli: &Cli, args: &ApiOutputArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let list: Vec<HaltWire> = api.get_json("/api/v1/halts").await?;
    output::print(args.output, &list, || {
        if list.is_empty() {
            "no agent is halted or paused\n".to_owned()
        } else {
            halts_table(&list)
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `aura budgets --agent A`.
pub(crate) async fn budgets(cli: &Cli, args: &BudgetsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let list: Vec<BudgetWire> = api
        .get_json(&format!("/api/v1/budgets?agent={}", urlencode(&args.agent)))
        .await?;
    output::print(args.output, &list, || {
        if list.is_empty() {
            return format!("no budget applies to `{}`\n", args.agent);
        }
        let opt = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), usd);
        output::table(
            &["KEY", "SPENT", "RESERVED", "LIMIT", "REMAINING", "OVERRIDE"],
            list.iter().map(|b| {
                vec![
                    b.key.clone(),
                    usd(b.spent_micros),
                    usd(b.reserved_micros),
                    opt(b.limit_micros),
                    opt(b.remaining_micros),
                    if b.overridden { "yes" } else { "-" }.to_owned(),
                ]
            }),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `aura decide …`: exit 0 for allow, 3 for deny or halt, 4 for escalate.
pub(crate) async fn decide(cli: &Cli, args: &DecideArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let mut body = json!({"kind": args.kind, "target": args.target});
    if let Some(agent) = &args.agent {
        body["agent"] = json!(agent);
    }
    if let Some(task) = &args.task {
        body["task"] = json!(task);
    }
    if let Some(a) = &args.args {
        body["args"] = a.clone();
    }
    if !args.labels.is_empty() {
        let labels: BTreeMap<&str, &str> = args
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        body["labels"] = json!(labels);
    }
    let cost = args.cost_usd.or(args.cost_micros);
    if cost.is_some() || args.tokens.is_some() {
        body["estimate"] = json!({"cost_micros": cost, "tokens": args.tokens});
    }
    let d: DecisionWire = decode(
        api.call(Method::POST, "/api/v1/decide", Some(&body))
            .await?,
    )?;
    output::print(args.output, &d, || decision_table(&d))?;
    Ok(ExitCode::from(match d.verdict.as_str() {
        "allow" => 0,
        "escalate" => EXIT_ESCALATE,
        // deny, halt, and anything this client does not know: the action must not run.
        _ => EXIT_REFUSED,
    }))
}

/// `aura settle DECISION_ID --outcome …`.
pub(crate) async fn settle(cli: &Cli, args: &SettleArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let outcome = match args.outcome {
        OutcomeArg::Success => "success",
        OutcomeArg::Failure => "failure",
        OutcomeArg::Cancelled => "cancelled",
    };
    let mut body = json!({"decision_id": args.decision_id, "outcome": outcome});
    let cost = args.cost_usd.or(args.cost_micros);
    if cost.is_some() || args.tokens.is_some() {
        body["actual"] = json!({"cost_micros": cost, "tokens": args.tokens});
    }
    let s: SettledWire = decode(
        api.call(Method::POST, "/api/v1/settle", Some(&body))
            .await?,
    )?;
    output::print(args.output, &s, || {
        let keys = if s.keys.is_empty() {
            "no budget".to_owned()
        } else {
            s.keys.join(", ")
        };
        format!(
            "settled {} ({outcome}): spent {} on {keys}\n",
            s.decision_id,
            usd(s.spent_micros)
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Parses US dollars with at most 6 decimals (`0.03`, `12`, `12.5`) into micro-dollars, exactly: decimal string
/// arithmetic, never floating point.
pub(crate) fn parse_usd(text: &str) -> Result<i64, String> {
    let invalid = || format!("`{text}` is not an amount in dollars like 0.03 or 12.50");
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return Err(invalid());
    }
    let frac = frac.unwrap_or("");
    if frac.len() > 6 {
        return Err(format!(
            "`{text}` has {} decimal places, more than 6 (money is kept in whole micro-dollars)",
            frac.len()
        ));
    }
    let too_large = || format!("`{text}` is too large");
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let frac_micros: i64 = format!("{frac:0<6}").parse().map_err(|_| invalid())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|m| m.checked_add(frac_micros))
        .ok_or_else(too_large)
}

/// Parses `--args`: a JSON object.
pub(crate) fn parse_json_object(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err("give a JSON object, e.g. '{\"env\":\"prod\"}'".to_owned())
    }
}

/// Parses `--label KEY=VALUE`.
pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// aura policy check

#[derive(Serialize)]
struct CheckView {
    ok: bool,
    dir: String,
    bundle: Option<String>,
    files: Vec<String>,
    rules: usize,
    agents: usize,
    errors: Vec<ErrorView>,
    findings: Vec<FindingView>,
}

#[derive(Serialize)]
struct LocationView {
    file: String,
    line: u32,
    column: u32,
}

impl From<&Location> for LocationView {
    fn from(l: &Location) -> Self {
        LocationView {
            file: l.file.to_string(),
            line: l.line,
            column: l.column,
        }
    }
}

#[derive(Serialize)]
struct ErrorView {
    /// `unreadable` or `invalid`.
    kind: &'static str,
    /// The file or directory that could not be read.
    path: Option<String>,
    location: Option<LocationView>,
    message: String,
    hint: String,
    /// The complete message, as printed.
    text: String,
}

#[derive(Serialize)]
struct FindingView {
    class: &'static str,
    location: Option<LocationView>,
    rule: Option<String>,
    other: Option<String>,
    message: String,
    hint: String,
    example: Option<ExampleView>,
    /// The complete finding, as printed.
    text: String,
}

#[derive(Serialize)]
struct ExampleView {
    agent: String,
    kind: String,
    target: String,
    args: Value,
    labels: BTreeMap<String, String>,
    at: String,
    /// The example action in words.
    action: String,
    /// What the policy decides for it.
    verdict: String,
    matched_rules: Vec<String>,
    reasons: Vec<ReasonWire>,
}

impl From<&Finding> for FindingView {
    fn from(f: &Finding) -> Self {
        FindingView {
            class: f.class.as_str(),
            location: f.at.as_ref().map(LocationView::from),
            rule: f.rule.as_ref().map(|r| r.as_str().to_owned()),
            other: f.other.as_ref().map(|r| r.as_str().to_owned()),
            message: f.message.clone(),
            hint: f.hint.clone(),
            example: f.example.as_ref().map(|(w, e)| {
                let a = &w.action;
                ExampleView {
                    agent: a.agent().to_string(),
                    kind: a.kind().to_string(),
                    target: a.target().to_owned(),
                    args: a.args().clone(),
                    labels: a.labels().clone(),
                    at: w.at.to_rfc3339(),
                    action: w.to_string(),
                    verdict: e.verdict.as_str().to_owned(),
                    matched_rules: e
                        .matched_rules
                        .iter()
                        .map(|r| r.as_str().to_owned())
                        .collect(),
                    reasons: e
                        .reasons
                        .iter()
                        .map(|r| ReasonWire {
                            rule: r.rule.clone(),
                            message: r.message.clone(),
                        })
                        .collect(),
                }
            }),
            text: f.to_string(),
        }
    }
}

fn error_view(e: &PolicyError) -> ErrorView {
    match e {
        PolicyError::Read { path, reason, hint } => ErrorView {
            kind: "unreadable",
            path: Some(path.clone()),
            location: None,
            message: reason.clone(),
            hint: hint.clone(),
            text: e.to_string(),
        },
        PolicyError::Invalid { at, message, hint } => ErrorView {
            kind: "invalid",
            path: None,
            location: Some(at.into()),
            message: message.clone(),
            hint: hint.clone(),
            text: e.to_string(),
        },
        // A kind of error this client does not know: report it whole, as invalid.
        other => ErrorView {
            kind: "invalid",
            path: None,
            location: None,
            message: other.to_string(),
            hint: String::new(),
            text: other.to_string(),
        },
    }
}

/// Offline: load, validate and statically check a policy directory.
fn policy_check(cli: &Cli, args: &PolicyCheckArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => load_config(cli, None)?.0.policies.dir,
    };
    let mut view = CheckView {
        ok: false,
        dir: dir.display().to_string(),
        bundle: None,
        files: Vec::new(),
        rules: 0,
        agents: 0,
        errors: Vec::new(),
        findings: Vec::new(),
    };
    let set = match PolicySet::load_dir(&dir) {
        Ok(set) => set,
        Err(errors) => {
            let unreadable = errors
                .errors()
                .iter()
                .any(|e| matches!(e, PolicyError::Read { .. }));
            view.errors = errors.errors().iter().map(error_view).collect();
            if args.output == output::Output::Table {
                for e in &view.errors {
                    eprintln!("{}", e.text);
                }
                eprintln!(
                    "{} error(s) in `{}`; nothing was checked further",
                    view.errors.len(),
                    view.dir
                );
            } else {
                output::print(args.output, &view, String::new)?;
            }
            return Ok(ExitCode::from(if unreadable { EXIT_UNREADABLE } else { 1 }));
        }
    };
    let findings = aura_policy::check(&set);
    view.ok = findings.is_empty();
    view.bundle = Some(set.bundle_hash().to_owned());
    view.files = set.files().to_vec();
    view.rules = set.rules().len();
    view.agents = set.agents().len();
    view.findings = findings.iter().map(FindingView::from).collect();
    output::print(args.output, &view, || {
        let summary = format!(
            "{} files, {} rules, {} agents, bundle {}",
            view.files.len(),
            view.rules,
            view.agents,
            set.bundle_hash()
        );
        if view.ok {
            return format!("ok: {summary}\n");
        }
        let mut text = String::new();
        for f in &view.findings {
            text.push_str(&f.text);
            text.push('\n');
        }
        text.push_str(&format!(
            "{} finding(s) in {summary}\n",
            view.findings.len()
        ));
        text
    })?;
    Ok(if view.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

// ---------------------------------------------------------------------------------------------------------------
// aura policy show | reload

#[derive(Serialize, Deserialize)]
struct PolicyWire {
    dir: String,
    hash: String,
    files: Vec<String>,
    rules: usize,
    agents: Vec<String>,
}

async fn policy_show(cli: &Cli, args: &ApiOutputArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let p: PolicyWire = api.get_json("/api/v1/policies").await?;
    output::print(args.output, &p, || {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        output::table(
            &["", ""],
            [
                vec!["dir".into(), p.dir.clone()],
                vec!["bundle".into(), p.hash.clone()],
                vec!["files".into(), list(&p.files)],
                vec!["rules".into(), p.rules.to_string()],
                vec!["agents".into(), list(&p.agents)],
            ],
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize, Deserialize)]
struct ReloadWire {
    old_hash: String,
    new_hash: String,
    #[serde(default)]
    widenings: Vec<String>,
}

async fn policy_reload(cli: &Cli, args: &PolicyReloadArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let body = json!({"force": args.force});
    let (status, answer) = api
        .send_json(Method::POST, "/api/v1/policies/reload", Some(&body))
        .await?;
    match status {
        s if s.is_success() => {}
        StatusCode::CONFLICT => {
            let failure = ApiFailure::new(&api.url, status, &answer);
            eprintln!(
                "reload refused; the running policy stays in force: {}",
                failure.message
            );
            eprintln!("to accept these widenings: aura policy reload --force");
            return Ok(ExitCode::from(1));
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            let failure = ApiFailure::new(&api.url, status, &answer);
            eprintln!(
                "the policy files are invalid; the running policy stays in force:\n{}",
                failure.message
            );
            return Ok(ExitCode::from(1));
        }
        _ => return Err(ApiFailure::new(&api.url, status, &answer).into()),
    }
    let r: ReloadWire = decode(answer)?;
    output::print(args.output, &r, || {
        let mut text = if r.old_hash == r.new_hash {
            format!("unchanged: bundle {}\n", r.new_hash)
        } else {
            format!("reloaded: bundle {} -> {}\n", r.old_hash, r.new_hash)
        };
        for w in &r.widenings {
            text.push_str(&format!("  accepted widening: {w}\n"));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------------------------
// aura approvals

#[derive(Serialize, Deserialize)]
struct ApprovalWire {
    id: String,
    agent: String,
    kind: String,
    target: String,
    action_hash: String,
    state: String,
    created_at: String,
    expires_at: String,
    decided_by: Option<String>,
}

async fn approvals_list(cli: &Cli, args: &ApprovalsListArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let mut query = Vec::new();
    if let Some(state) = args.state {
        let state = match state {
            ApprovalStateArg::Pending => "pending",
            ApprovalStateArg::Approved => "approved",
            ApprovalStateArg::Denied => "denied",
            ApprovalStateArg::Expired => "expired",
        };
        query.push(format!("state={state}"));
    }
    if let Some(agent) = &args.agent {
        query.push(format!("agent={}", urlencode(agent)));
    }
    let path = if query.is_empty() {
        "/api/v1/approvals".to_owned()
    } else {
        format!("/api/v1/approvals?{}", query.join("&"))
    };
    let list: Vec<ApprovalWire> = api.get_json(&path).await?;
    output::print(args.output, &list, || {
        if list.is_empty() {
            return "no approvals\n".to_owned();
        }
        output::table(
            &[
                "ID",
                "AGENT",
                "KIND",
                "TARGET",
                "STATE",
                "CREATED",
                "EXPIRES",
                "DECIDED BY",
            ],
            list.iter().map(|a| {
                vec![
                    a.id.clone(),
                    a.agent.clone(),
                    a.kind.clone(),
                    a.target.clone(),
                    a.state.clone(),
                    a.created_at.clone(),
                    a.expires_at.clone(),
                    a.decided_by.clone().unwrap_or_else(|| "-".into()),
                ]
            }),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn approval_decide(
    cli: &Cli,
    args: &ApprovalDecideArgs,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let verb = if approve { "approve" } else { "deny" };
    let body = json!({"reason": args.reason});
    let a: ApprovalWire = decode(
        api.call(
            Method::POST,
            &format!("/api/v1/approvals/{}/{verb}", urlencode(&args.id)),
            Some(&body),
        )
        .await?,
    )?;
    output::print(args.output, &a, || {
        format!(
            "{}: `{}` `{}` by `{}` (decided by {})\n",
            a.state,
            a.kind,
            a.target,
            a.agent,
            a.decided_by.as_deref().unwrap_or("-")
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------------------------
// Wire types of the answers, and their rendering

#[derive(Serialize, Deserialize)]
struct HaltWire {
    agent: String,
    state: String,
    reason: String,
    by: String,
    at: String,
    cause: String,
}

fn halts_table(list: &[HaltWire]) -> String {
    output::table(
        &["AGENT", "STATE", "CAUSE", "REASON", "BY", "AT"],
        list.iter().map(|h| {
            vec![
                h.agent.clone(),
                h.state.clone(),
                h.cause.clone(),
                h.reason.clone(),
                h.by.clone(),
                h.at.clone(),
            ]
        }),
    )
}

#[derive(Serialize, Deserialize)]
struct BudgetWire {
    key: String,
    spent_micros: i64,
    reserved_micros: i64,
    limit_micros: Option<i64>,
    remaining_micros: Option<i64>,
    overridden: bool,
}

#[derive(Serialize, Deserialize)]
struct ReasonWire {
    rule: String,
    message: String,
}

#[derive(Serialize, Deserialize)]
struct BudgetMoveWire {
    key: String,
    before_micros: i64,
    after_micros: i64,
    limit_micros: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct DecisionWire {
    decision_id: String,
    verdict: String,
    reasons: Vec<ReasonWire>,
    #[serde(default)]
    obligations: Vec<Value>,
    reservation_id: Option<String>,
    retry_after_ms: Option<u64>,
    approval_id: Option<String>,
    approved_by: Option<String>,
    policy_hash: String,
    #[serde(default)]
    budget: Vec<BudgetMoveWire>,
    redacted_args: Option<Value>,
    #[serde(default)]
    halted: Vec<String>,
    audit_seq: u64,
}

fn decision_table(d: &DecisionWire) -> String {
    let mut rows = vec![
        vec!["verdict".to_owned(), d.verdict.clone()],
        vec!["decision".to_owned(), d.decision_id.clone()],
    ];
    for r in &d.reasons {
        rows.push(vec!["reason".into(), format!("{}: {}", r.rule, r.message)]);
    }
    for o in &d.obligations {
        let kind = o["type"].as_str().unwrap_or("?").to_owned();
        let mut rest = o.clone();
        if let Some(map) = rest.as_object_mut() {
            map.remove("type");
        }
        rows.push(vec!["obligation".into(), format!("{kind} {rest}")]);
    }
    if let Some(id) = &d.approval_id {
        let text = if d.approved_by.is_some() {
            id.clone()
        } else {
            format!("{id} (approve with `aura approvals approve {id}`)")
        };
        rows.push(vec!["approval".into(), text]);
    }
    if let Some(by) = &d.approved_by {
        rows.push(vec!["approved by".into(), by.clone()]);
    }
    if let Some(ms) = d.retry_after_ms {
        rows.push(vec!["retry after".into(), format!("{ms} ms")]);
    }
    for b in &d.budget {
        let limit = b
            .limit_micros
            .map_or_else(String::new, |l| format!(" of {}", usd(l)));
        rows.push(vec![
            "budget".into(),
            format!(
                "{}: {} -> {}{limit}",
                b.key,
                usd(b.before_micros),
                usd(b.after_micros)
            ),
        ]);
    }
    if let Some(args) = &d.redacted_args {
        rows.push(vec!["redacted args".into(), args.to_string()]);
    }
    if !d.halted.is_empty() {
        rows.push(vec!["halted".into(), d.halted.join(", ")]);
    }
    rows.push(vec!["policy".into(), d.policy_hash.clone()]);
    rows.push(vec!["audit seq".into(), d.audit_seq.to_string()]);
    output::table(&["", ""], rows)
}

#[derive(Serialize, Deserialize)]
struct SettledWire {
    decision_id: String,
    reservation_id: Option<String>,
    spent_micros: i64,
    #[serde(default)]
    keys: Vec<String>,
}

/// Decodes a server answer into its wire type.
fn decode<T: serde::de::DeserializeOwned>(value: Value) -> anyhow::Result<T> {
    serde_json::from_value(value).context("the server's answer has an unexpected shape")
}

/// Micro-dollars as dollars with 6 decimals: `$0.030000`, `-$1.500000`.
fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// Percent-encodes a path segment or query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_parse_to_exact_micros() {
        for (text, micros) in [
            ("0.03", 30_000),
            ("0", 0),
            ("12", 12_000_000),
            ("12.5", 12_500_000),
            ("0.000001", 1),
            ("0.1", 100_000),
            ("1.999999", 1_999_999),
            ("9223372036854.775807", i64::MAX),
        ] {
            assert_eq!(parse_usd(text), Ok(micros), "{text}");
        }
        for bad in [
            "",
            ".5",
            "1.",
            "-1",
            "+1",
            "1e3",
            "0.0000001",
            "1,5",
            " 1",
            "abc",
            "1.2.3",
            "9223372036854.775808",
            "99999999999999999999",
        ] {
            assert!(parse_usd(bad).is_err(), "`{bad}` should be rejected");
        }
        assert!(
            parse_usd("0.1234567")
                .unwrap_err()
                .contains("7 decimal places")
        );
    }

    #[test]
    fn micros_print_as_dollars_with_six_decimals() {
        assert_eq!(usd(30_000), "$0.030000");
        assert_eq!(usd(12_500_000), "$12.500000");
        assert_eq!(usd(-1_500_000), "-$1.500000");
        assert_eq!(usd(i64::MIN), "-$9223372036854.775808");
    }

    #[test]
    fn args_and_labels_are_checked_before_sending() {
        assert_eq!(
            parse_json_object(r#"{"env":"prod"}"#),
            Ok(json!({"env": "prod"}))
        );
        assert!(parse_json_object("[1]").is_err());
        assert!(parse_json_object("{").is_err());
        assert_eq!(
            parse_label("env=prod"),
            Ok(("env".to_owned(), "prod".to_owned()))
        );
        assert!(parse_label("=x").is_err());
        assert!(parse_label("env").is_err());
    }
}
