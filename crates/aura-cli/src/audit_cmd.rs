//! `aura audit …`: verify the log offline, check proofs served by a running server, replay an agent's history,
//! export sealed segments to S3-compatible storage, apply local retention and set or clear a legal hold.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use aura_audit::{AuditEntry, ConsistencyProof, Hash, InclusionProof};
use aura_core::Timestamp;

use crate::cli::{
    AuditCommand, AuditExportArgs, AuditHoldCommand, AuditProveArgs, AuditReplayArgs,
    AuditRetentionArgs, AuditVerifyArgs, Cli,
};
use crate::commands::{Api, load_config};
use crate::output;

/// Runs an `aura audit` command.
pub(crate) async fn run(cli: &Cli, cmd: &AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Pubkey => pubkey(cli),
        AuditCommand::Verify(args) => verify(cli, args).await,
        AuditCommand::Prove(args) => prove(cli, args).await,
        AuditCommand::Replay(args) => replay(cli, args).await,
        AuditCommand::Export(args) => export(cli, args).await,
        AuditCommand::Retention(args) => retention(cli, args),
        AuditCommand::Hold(cmd) => hold(cli, cmd),
    }
}

#[cfg(feature = "s3")]
async fn export(cli: &Cli, args: &AuditExportArgs) -> anyhow::Result<ExitCode> {
    use aura_audit::export::{ExportTarget, LockMode, Retention};
    let dir = audit_dir(cli)?;
    if !dir.join("verifier.key").exists() {
        bail!("no audit log at `{}`", dir.display());
    }
    let target = ExportTarget {
        url: args.to.clone(),
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        allow_http: args.allow_http,
        retention: args.retention_days.map(|d| Retention {
            mode: LockMode::Compliance,
            period: std::time::Duration::from_secs(d.saturating_mul(86_400)),
        }),
        credentials: None,
    };
    let report = aura_audit::export::export(&dir, &target, now()).await?;
    eprintln!(
        "exported {} object(s), {} bytes ({} already there, {} entries covered); manifest `{}`",
        report.uploaded.len(),
        report.uploaded_bytes,
        report.already_exported,
        report.exported_entries,
        report.manifest_key
    );
    for key in &report.uploaded {
        println!("{key}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "s3"))]
async fn export(_cli: &Cli, _args: &AuditExportArgs) -> anyhow::Result<ExitCode> {
    eprintln!("error: this `aura` binary was built without S3 support (cargo feature `s3`)");
    Ok(ExitCode::from(2))
}

fn retention(cli: &Cli, args: &AuditRetentionArgs) -> anyhow::Result<ExitCode> {
    use aura_audit::retention::{self, RetentionPolicy};
    let dir = audit_dir(cli)?;
    let policy = RetentionPolicy {
        keep: std::time::Duration::from_secs(args.keep_days.saturating_mul(86_400)),
        legal_hold: false,
    };
    let report = if args.dry_run {
        retention::plan(&dir, &policy, now())?
    } else {
        retention::apply(&dir, &policy, now())?
    };
    if let Some(hold) = &report.hold {
        eprintln!(
            "legal hold set by {} since {}: {}; nothing deleted",
            hold.by, hold.since, hold.reason
        );
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    eprintln!(
        "{verb} {} segment(s), {} entries, {} bytes; kept {} unexported and {} recent; {} entries retired in total",
        report.deleted.len(),
        report.deleted_entries,
        report.deleted_bytes,
        report.kept_unexported.len(),
        report.kept_recent,
        report.retired_entries
    );
    Ok(ExitCode::SUCCESS)
}

fn hold(cli: &Cli, cmd: &AuditHoldCommand) -> anyhow::Result<ExitCode> {
    let dir = audit_dir(cli)?;
    match cmd {
        AuditHoldCommand::Set { reason, by } => {
            let hold = aura_audit::retention::set_legal_hold(&dir, by, reason, now())?;
            eprintln!("legal hold set by {} at {}", hold.by, hold.since);
        }
        AuditHoldCommand::Clear => match aura_audit::retention::clear_legal_hold(&dir)? {
            Some(h) => eprintln!("legal hold cleared (was set by {}: {})", h.by, h.reason),
            None => eprintln!("no legal hold was set"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn now() -> Timestamp {
    use aura_core::Clock as _;
    aura_core::SystemClock.now()
}

fn audit_dir(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    let (config, _) = load_config(cli, None)?;
    Ok(aura_server::services::audit::paths(&config.data_dir).0)
}

fn pubkey(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = audit_dir(cli)?;
    let path = dir.join("verifier.key");
    let key = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no audit log at `{}`; start `aura up` once to create it",
            dir.display()
        )
    })?;
    println!("{}", key.trim());
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct VerifyView {
    ok: bool,
    entries: u64,
    segments: usize,
    checkpoints: u64,
    root: String,
    latest_checkpoint_size: Option<u64>,
    anchor_size: Option<u64>,
    torn_tail_bytes: u64,
    verifier_key: String,
    elapsed_ms: u64,
}

async fn verify(cli: &Cli, args: &AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = audit_dir(cli)?;
    if !dir.join("verifier.key").exists() {
        bail!("no audit log at `{}`", dir.display());
    }
    let anchor = match &args.from_checkpoint {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading checkpoint `{}`", path.display()))?,
        ),
        None => None,
    };
    let result =
        tokio::task::spawn_blocking(move || aura_audit::verify(&dir, anchor.as_deref())).await?;
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            eprintln!("audit log verification FAILED: {err}");
            return Ok(ExitCode::from(1));
        }
    };
    let view = VerifyView {
        ok: true,
        entries: report.entries,
        segments: report.segments,
        checkpoints: report.checkpoints,
        root: hex::encode(report.root),
        latest_checkpoint_size: report.latest_checkpoint_size,
        anchor_size: report.anchor_size,
        torn_tail_bytes: report.torn_tail_bytes,
        verifier_key: report.verifier_key,
        elapsed_ms: report.elapsed_ms,
    };
    output::print(args.output, &view, || {
        let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        output::table(
            &["", ""],
            [
                vec!["verified".into(), "ok".into()],
                vec!["entries".into(), view.entries.to_string()],
                vec!["segments".into(), view.segments.to_string()],
                vec![
                    "checkpoints (signatures and chain checked)".into(),
                    view.checkpoints.to_string(),
                ],
                vec![
                    "latest checkpoint size".into(),
                    opt(view.latest_checkpoint_size),
                ],
                vec!["anchored at size".into(), opt(view.anchor_size)],
                vec!["root".into(), view.root.clone()],
                vec!["verifier key".into(), view.verifier_key.clone()],
                vec!["time".into(), format!("{} ms", view.elapsed_ms)],
            ],
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Deserialize)]
struct CheckpointWire {
    tree_size: u64,
    note: String,
    verifier_key: String,
}

#[derive(Deserialize)]
struct EntryWire {
    seq: u64,
    entry: serde_json::Value,
}

#[derive(Deserialize)]
struct InclusionWire {
    leaf_index: u64,
    tree_size: u64,
    path: Vec<String>,
    root: String,
}

#[derive(Deserialize)]
struct ConsistencyWire {
    from: u64,
    to: u64,
    path: Vec<String>,
    root_from: String,
    root_to: String,
}

#[derive(Serialize)]
struct ProveView {
    proof: &'static str,
    verified: bool,
    seq: Option<u64>,
    from: Option<u64>,
    tree_size: u64,
    root: String,
    path: Vec<String>,
    checkpoint_signed_by: String,
}

async fn prove(cli: &Cli, args: &AuditProveArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let cp: CheckpointWire = api.get_json("/api/v1/audit/checkpoint").await?;
    // Trust the key in the local data dir when present (the server could lie about its own key).
    let key = std::fs::read_to_string(audit_dir(cli)?.join("verifier.key"))
        .map(|k| k.trim().to_owned())
        .unwrap_or(cp.verifier_key);
    let checkpoint = aura_audit::verify_checkpoint(&cp.note, &key)
        .context("the checkpoint's signature does not verify")?;
    let size = args.size.unwrap_or(cp.tree_size);
    let view = if let Some(seq) = args.seq {
        let entry: EntryWire = api
            .get_json(&format!("/api/v1/audit/entries/{seq}"))
            .await?;
        let parsed: AuditEntry =
            serde_json::from_value(entry.entry).context("decoding the entry")?;
        let leaf = aura_audit::leaf_hash(&aura_audit::canonical_bytes(entry.seq, &parsed)?);
        let p: InclusionWire = api
            .get_json(&format!(
                "/api/v1/audit/proofs/inclusion?seq={seq}&size={size}"
            ))
            .await?;
        let root = hash(&p.root)?;
        check_root_against_checkpoint(&checkpoint, p.tree_size, &root)?;
        let proof = InclusionProof {
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            path: p
                .path
                .iter()
                .map(|h| hash(h))
                .collect::<anyhow::Result<_>>()?,
        };
        aura_audit::verify_inclusion(&leaf, &proof, &root)
            .context("the inclusion proof does not verify")?;
        ProveView {
            proof: "inclusion",
            verified: true,
            seq: Some(seq),
            from: None,
            tree_size: p.tree_size,
            root: p.root,
            path: p.path,
            checkpoint_signed_by: key,
        }
    } else {
        let from = args.from.context("give --seq or --from")?;
        let p: ConsistencyWire = api
            .get_json(&format!(
                "/api/v1/audit/proofs/consistency?from={from}&to={size}"
            ))
            .await?;
        let root_to = hash(&p.root_to)?;
        check_root_against_checkpoint(&checkpoint, p.to, &root_to)?;
        let proof = ConsistencyProof {
            size1: p.from,
            size2: p.to,
            path: p
                .path
                .iter()
                .map(|h| hash(h))
                .collect::<anyhow::Result<_>>()?,
        };
        aura_audit::verify_consistency(&proof, &hash(&p.root_from)?, &root_to)
            .context("the consistency proof does not verify")?;
        ProveView {
            proof: "consistency",
            verified: true,
            seq: None,
            from: Some(p.from),
            tree_size: p.to,
            root: p.root_to,
            path: p.path,
            checkpoint_signed_by: key,
        }
    };
    output::print(args.output, &view, || {
        let what = match view.seq {
            Some(seq) => format!("entry {seq} is in the log of {} entries", view.tree_size),
            None => format!(
                "the log of {} entries is a prefix of the log of {}",
                view.from.unwrap_or(0),
                view.tree_size
            ),
        };
        format!(
            "verified: {what}\nroot {}\n{} proof hashes\n",
            view.root,
            view.path.len()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A proof is only worth something against a signed root: when the proof is for the checkpoint's size, the roots
/// must match exactly.
fn check_root_against_checkpoint(
    cp: &aura_audit::Checkpoint,
    size: u64,
    root: &Hash,
) -> anyhow::Result<()> {
    if cp.tree_size == size && &cp.root != root {
        bail!("the served root does not match the signed checkpoint at size {size}");
    }
    Ok(())
}

fn hash(text: &str) -> anyhow::Result<Hash> {
    let bytes = hex::decode(text).with_context(|| format!("`{text}` is not hex"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("`{text}` is not a 32-byte hash"))
}

#[derive(Deserialize)]
struct PageWire {
    items: Vec<EntryWire>,
    truncated: bool,
    next_seq: Option<u64>,
}

#[derive(Serialize)]
struct ReplayRow {
    seq: u64,
    time: String,
    actor: String,
    action: String,
    kind: Option<String>,
    target: Option<String>,
    verdict: Option<String>,
    rules: Vec<String>,
    approval: Option<String>,
    budget_before_micros: Option<i64>,
    budget_after_micros: Option<i64>,
    outcome: String,
    cause: Option<String>,
}

async fn replay(cli: &Cli, args: &AuditReplayArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let mut query = Vec::new();
    if let Some(agent) = &args.agent {
        query.push(format!("agent={}", urlencode(agent)));
    }
    if let Some(task) = &args.task {
        query.push(format!("task={}", urlencode(task)));
    }
    if let Some(since) = &args.since {
        query.push(format!("since_ms={}", parse_time(since)?.as_millis()));
    }
    if let Some(until) = &args.until {
        query.push(format!("until_ms={}", parse_time(until)?.as_millis()));
    }
    let mut rows = Vec::new();
    let mut from = 0u64;
    loop {
        let page_limit = (args.limit - rows.len()).min(1000);
        let mut q = query.clone();
        q.push(format!("from_seq={from}"));
        q.push(format!("limit={page_limit}"));
        let page: PageWire = api
            .get_json(&format!("/api/v1/audit/entries?{}", q.join("&")))
            .await?;
        for item in page.items {
            let e: AuditEntry = serde_json::from_value(item.entry).context("decoding an entry")?;
            rows.push(ReplayRow {
                seq: item.seq,
                time: e.time.to_rfc3339(),
                actor: e.actor.id.clone(),
                action: e.action.clone(),
                kind: e.action_kind.map(|k| k.to_string()),
                target: e.target.clone(),
                verdict: e.verdict.map(|v| v.to_string()),
                rules: e.rules.clone(),
                approval: e.approval.clone(),
                budget_before_micros: e.budget_before_micros,
                budget_after_micros: e.budget_after_micros,
                outcome: e.outcome.clone(),
                cause: e.cause.clone(),
            });
        }
        match (page.truncated, page.next_seq) {
            (true, Some(next)) if rows.len() < args.limit => from = next,
            _ => break,
        }
    }
    output::print(args.output, &rows, || {
        output::table(
            &[
                "SEQ", "TIME", "ACTION", "KIND", "TARGET", "VERDICT", "RULES", "BUDGET", "OUTCOME",
            ],
            rows.iter().map(|r| {
                let budget = match (r.budget_before_micros, r.budget_after_micros) {
                    (Some(b), Some(a)) => format!("{} → {}", usd(b), usd(a)),
                    _ => "-".into(),
                };
                vec![
                    r.seq.to_string(),
                    r.time.clone(),
                    r.action.clone(),
                    r.kind.clone().unwrap_or_else(|| "-".into()),
                    r.target.clone().unwrap_or_else(|| "-".into()),
                    r.verdict.clone().unwrap_or_else(|| "-".into()),
                    if r.rules.is_empty() {
                        "-".into()
                    } else {
                        r.rules.join(",")
                    },
                    budget,
                    r.outcome.clone(),
                ]
            }),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn usd(micros: i64) -> String {
    format!("${}.{:06}", micros / 1_000_000, (micros % 1_000_000).abs())
}

/// RFC 3339, a bare date, or an age (`90s`, `15m`, `24h`, `7d`) counted back from now.
pub(crate) fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    if let Some(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t);
    }
    let (num, unit) = text.split_at(
        text.trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .len(),
    );
    let n: i64 = num
        .parse()
        .with_context(|| format!("`{text}` is neither an RFC 3339 time nor an age like 24h"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("`{text}`: unknown unit `{unit}`, use s, m, h or d"),
    };
    let now = aura_core::Clock::now(&aura_core::SystemClock);
    Ok(Timestamp::from_millis(now.as_millis() - n * ms))
}

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
