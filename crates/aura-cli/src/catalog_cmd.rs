//! Catalog commands: `aura query`, `aura watch`, `aura scan`, `aura instrument`, `aura cache`, and the asset
//! health lines of `aura status`.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::cli::{Cli, QueryArgs, WatchArgs};
use crate::commands::{Api, ApiFailure, load_config};
use crate::output::{self, Output};

/// Exit code of a query that does not parse (a usage error).
const EXIT_USAGE: u8 = 2;

/// `aura query '…'`: through the running server, or straight from the data dir's asset files when none runs.
pub(crate) async fn query(cli: &Cli, args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let text = args.query.join(" ");
    let answer = if args.offline {
        offline_query(cli, &text)?
    } else {
        let api = Api::new(cli, &args.api)?;
        match api
            .call(
                reqwest::Method::POST,
                "/api/v1/query",
                Some(&serde_json::json!({ "query": text })),
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                if let Some(f) = e.downcast_ref::<ApiFailure>()
                    && f.code == "invalid_query"
                {
                    eprintln!("error: invalid query: {}", f.message);
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
                return Err(e);
            }
        }
    };
    if let Err(code) = print_answer(args.output, &answer) {
        return Ok(code);
    }
    Ok(ExitCode::SUCCESS)
}

fn offline_query(cli: &Cli, text: &str) -> anyhow::Result<Value> {
    let (config, _) = load_config(cli, None)?;
    let catalog = aura_catalog::Catalog::new(aura_catalog::CatalogSettings::default());
    let dir = aura_catalog::files::AssetDir::open(&config.data_dir)?;
    aura_catalog::files::load_into(&dir, &catalog)?;
    match catalog.query(text) {
        Ok(a) => Ok(answer_json(a)),
        Err(aura_catalog::QueryError::Parse(e)) => {
            eprintln!("error: invalid query: {}\n{}", e.message, e.caret);
            if let Some(h) = e.hint {
                eprintln!("hint: {h}");
            }
            std::process::exit(i32::from(EXIT_USAGE));
        }
    }
}

/// The wire shape of an answer (same as `POST /api/v1/query`).
pub(crate) fn answer_json(a: aura_catalog::Answer) -> Value {
    let kind = match &a.rows {
        aura_catalog::Rows::Assets(_) => "assets",
        aura_catalog::Rows::Projected(_) => "projected",
        aura_catalog::Rows::Groups(_) => "groups",
    };
    serde_json::json!({
        "kind": kind,
        "matched": a.matched,
        "total": a.total,
        "returned": a.rows.len(),
        "truncated": a.truncated,
        "warnings": a.warnings,
        "took_us": a.took_us,
        "rows": a.rows.to_json(),
    })
}

fn print_answer(format: Output, answer: &Value) -> Result<(), ExitCode> {
    for w in answer["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    let rows = answer["rows"].as_array().cloned().unwrap_or_default();
    let result = output::print(format, answer, || match answer["kind"].as_str() {
        Some("assets") => output::table(
            &["ID", "KIND", "NAME", "HEALTH", "HOST", "CPU%", "MEM%"],
            rows.iter().map(|r| {
                let m = &r["meta"];
                vec![
                    text(&m["asset_id"]),
                    text(&m["kind"]),
                    text(&m["name"]),
                    text(&m["health"]),
                    text(&m["host"]),
                    text(&r["compute"]["cpu_percent"]),
                    text(&r["memory"]["used_percent"]),
                ]
            }),
        ),
        _ => {
            let mut cols: Vec<String> = Vec::new();
            for r in &rows {
                for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            // `id` first for projections.
            if let Some(i) = cols.iter().position(|c| c == "id") {
                let id = cols.remove(i);
                cols.insert(0, id);
            }
            let header: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            output::table(
                &header,
                rows.iter()
                    .map(|r| cols.iter().map(|c| text(&r[c])).collect::<Vec<_>>()),
            )
        }
    });
    if result.is_err() {
        return Err(ExitCode::from(1));
    }
    if format == Output::Table {
        let returned = answer["returned"].as_u64().unwrap_or(0);
        let total = answer["total"].as_u64().unwrap_or(0);
        let more = if answer["truncated"].as_bool() == Some(true) {
            " (truncated: add `limit N` or `offset N` for more)"
        } else {
            ""
        };
        eprintln!(
            "{returned} of {total} rows, {} assets matched, {} µs{more}",
            answer["matched"], answer["took_us"]
        );
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `aura watch [FILTER]`: a live view of the assets matching the filter; plain lines when stdout is not a
/// terminal (or with `--plain`/`--json`).
pub(crate) async fn watch(cli: &Cli, args: &WatchArgs) -> anyhow::Result<ExitCode> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let api = Api::new(cli, &args.api)?;
    let filter = args.filter.join(" ");
    let ws_url = format!(
        "{}/api/v1/watch{}",
        api.url.replacen("http", "ws", 1),
        if filter.trim().is_empty() {
            String::new()
        } else {
            format!("?filter={}", url_encode(&filter))
        }
    );
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .context("building the watch request")?;
    if let Some(token) = &api.token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(s) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: Value = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            let msg = body["error"]["message"].as_str().unwrap_or("no details");
            if body["error"]["code"] == "invalid_query" {
                eprintln!("error: invalid filter: {msg}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            bail!("{} answered {}: {msg}", api.url, resp.status().as_u16());
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot reach Aura at {}; is `aura up` running?", api.url)
            });
        }
    };
    let live = !args.plain && !args.json && std::io::stdout().is_terminal();
    let mut view = if live {
        Some(crate::watch_view::LiveView::start(&api, &filter).await?)
    } else {
        None
    };
    let mut stdout = std::io::stdout().lock();
    let mut seen = 0u64;
    loop {
        let msg = tokio::select! {
            msg = socket.next() => msg,
            () = async { match view.as_mut() { Some(v) => v.quit_requested().await, None => std::future::pending().await } } => {
                break;
            }
        };
        let Some(msg) = msg else { break };
        let text = match msg.context("reading the watch stream")? {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            Message::Ping(p) => {
                socket.send(Message::Pong(p)).await.ok();
                continue;
            }
            _ => continue,
        };
        let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(v) = view.as_mut() {
            v.apply(&event)?;
        } else if args.json {
            writeln!(stdout, "{text}")?;
            stdout.flush()?;
        } else {
            writeln!(stdout, "{}", plain_line(&event))?;
            stdout.flush()?;
        }
        if event["type"] != "ready" {
            seen += 1;
            if args.count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    drop(view);
    let _ = socket.close(None).await;
    Ok(ExitCode::SUCCESS)
}

/// One line per event: `added ID kind=… health=…`, `changed ID path: old -> new, …`, `removed ID (reason)`.
pub(crate) fn plain_line(event: &Value) -> String {
    let id = event["id"].as_str().unwrap_or("?");
    match event["type"].as_str() {
        Some("ready") => "watching (ready)".to_owned(),
        Some("added") => {
            let m = &event["asset"]["meta"];
            format!(
                "added {id} kind={} health={}",
                text(&m["kind"]),
                text(&m["health"])
            )
        }
        Some("changed") => {
            let changes: Vec<String> = event["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}: {} -> {}",
                        c["path"].as_str().unwrap_or("?"),
                        text(&c["old"]),
                        text(&c["new"])
                    )
                })
                .collect();
            format!("changed {id} {}", changes.join(", "))
        }
        Some("removed") => format!("removed {id} ({})", text(&event["reason"])),
        Some("lagged") => format!("lagged: missed {} changes", event["missed"]),
        _ => event.to_string(),
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asset health counts for `aura status` (`None` when the server has no catalog route or the token cannot read it).
pub(crate) async fn health_summary(api: &Api) -> Option<Value> {
    api.get_json::<Value>("/api/v1/health/summary").await.ok()
}

/// Table rows of the asset health summary for `aura status`.
pub(crate) fn summary_rows(summary: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![vec!["assets".to_owned(), text(&summary["total"])]];
    if let Some(by) = summary["by_health"].as_object() {
        let parts: Vec<String> = by
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(h, n)| format!("{n} {h}"))
            .collect();
        if !parts.is_empty() {
            rows.push(vec!["  health".to_owned(), parts.join(", ")]);
        }
    }
    rows
}

/// Progress bars on stderr for long scans (indicatif), one per scanner; nothing when stderr is not a terminal.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl aura_scan::Progress for Bars {
    fn begin(&self, scanner: &str, targets: u64) {
        let bar = self.multi.add(if targets > 0 {
            indicatif::ProgressBar::new(targets)
        } else {
            indicatif::ProgressBar::new_spinner()
        });
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(scanner.to_owned());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(scanner.to_owned(), bar);
        }
    }
    fn step(&self, scanner: &str, target: &str) {
        if let Ok(bars) = self.bars.lock()
            && let Some(b) = bars.get(scanner)
        {
            b.inc(1);
            b.set_message(target.to_owned());
        }
    }
    fn end(&self, scanner: &str, found: usize) {
        if let Ok(bars) = self.bars.lock()
            && let Some(b) = bars.get(scanner)
        {
            b.finish_with_message(format!("{found} assets"));
        }
    }
}

/// `aura scan`: runs the selected scanners and writes each asset's `.aav` file (atomically) into the data dir.
pub(crate) async fn scan(cli: &Cli, args: &crate::cli::ScanArgs) -> anyhow::Result<ExitCode> {
    use aura_catalog::files::AssetSink as _;
    let (config, _) = load_config(cli, None)?;
    let mut kinds = Vec::new();
    for k in &args.kind {
        match k.parse::<aura_catalog::AssetKind>() {
            Ok(kind) => kinds.push(kind),
            Err(e) => {
                eprintln!("error: --kind: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    let mut settings = scanner_settings(&config.discovery);
    if let Some(h) = &args.docker_host {
        settings.docker_host = Some(h.clone());
    }
    if let Some(u) = &args.libvirt_uri {
        settings.libvirt_uri = Some(u.clone());
    }
    if let Some(k) = &args.kubeconfig {
        settings.kubernetes.kubeconfig = Some(k.clone());
    }
    if let Some(c) = &args.kube_context {
        settings.kubernetes.context = Some(c.clone());
    }
    if !args.namespace.is_empty() {
        settings.kubernetes.namespaces = args.namespace.clone();
    }
    if let Some(sel) = &args.selector {
        settings.kubernetes.label_selector = Some(sel.clone());
    }
    let k8s_asked = args.kubeconfig.is_some()
        || args.kube_context.is_some()
        || !args.namespace.is_empty()
        || args.selector.is_some()
        || args.scanner.iter().any(|s| s == "kubernetes" || s == "k8s");
    if k8s_asked && !aura_scan::HAS_KUBERNETES {
        eprintln!(
            "error: this build has no Kubernetes scanner; rebuild with `cargo build -p aura-cli --features k8s`"
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let registry = aura_scan::default_registry(&settings);
    for name in &args.scanner {
        let known = registry.names().contains(&name.as_str())
            || ["local", "cloud", "containers", "services", "vms", "host"].contains(&name.as_str())
            || (aura_scan::HAS_KUBERNETES && name == "k8s");
        if !known {
            eprintln!(
                "error: --scanner: unknown scanner `{name}` (this build has: {})",
                registry.names().join(", ")
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    }
    let selected = registry.select(&kinds, &args.scanner);
    let progress: std::sync::Arc<dyn aura_scan::Progress> = if std::io::stderr().is_terminal() {
        std::sync::Arc::new(Bars {
            multi: indicatif::MultiProgress::new(),
            bars: Default::default(),
        })
    } else {
        std::sync::Arc::new(aura_scan::NoProgress)
    };
    let ctx = aura_scan::ScanContext::new(progress);
    let report = registry.run(&selected, &kinds, &ctx).await;
    let mut written = 0usize;
    let mut write_errors = Vec::new();
    if !args.dry_run {
        let sink = aura_catalog::files::AssetDir::open(&config.data_dir)?;
        for asset in &report.assets {
            match sink.write(asset) {
                Ok(_) => written += 1,
                Err(e) => write_errors.push(e.to_string()),
            }
        }
    }
    let json = serde_json::json!({
        "assets": report.assets.len(),
        "written": written,
        "dry_run": args.dry_run,
        "scanners": report.runs,
        "write_errors": write_errors,
        "ids": report.assets.iter().map(|a| a.id.to_string()).collect::<Vec<_>>(),
    });
    output::print(args.output, &json, || {
        output::table(
            &["SCANNER", "ASSETS", "ERRORS", "STATUS", "MS"],
            report.runs.iter().map(|r| {
                let status = match (&r.skipped, &r.failed) {
                    (Some(s), _) => format!("skipped: {s}"),
                    (_, Some(f)) => format!("failed: {f}"),
                    _ => "ok".to_owned(),
                };
                vec![
                    r.scanner.to_owned(),
                    r.assets.to_string(),
                    r.errors.len().to_string(),
                    status,
                    r.elapsed_ms.to_string(),
                ]
            }),
        )
    })?;
    for r in &report.runs {
        for e in &r.errors {
            eprintln!("warning: {}: {}: {}", r.scanner, e.target, e.message);
        }
    }
    for e in &write_errors {
        eprintln!("error: {e}");
    }
    if args.output == Output::Table {
        eprintln!(
            "{} assets found, {written} written to {}",
            report.assets.len(),
            config.data_dir.join("assets").display()
        );
    }
    let failed = report.runs.iter().any(|r| r.failed.is_some()) || !write_errors.is_empty();
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The scanners' settings from the `discovery` section of aura.yaml.
pub(crate) fn scanner_settings(d: &aura_config::DiscoveryConfig) -> aura_scan::ScannerSettings {
    aura_scan::ScannerSettings {
        docker_host: d.docker_host.clone(),
        libvirt_uri: d.libvirt_uri.clone(),
        aws: None,
        kubernetes: aura_scan::KubernetesOptions {
            kubeconfig: d.kubernetes.kubeconfig.clone(),
            context: d.kubernetes.context.clone(),
            namespaces: d.kubernetes.namespaces.clone(),
            label_selector: d.kubernetes.label_selector.clone(),
        },
    }
}

/// The discovery loop of `aura up` (`discovery.scanners`): runs the scanners at start, then every
/// `discovery.interval_seconds` (once when 0), writing each asset's file so the catalog picks it up.
pub(crate) struct Discovery {
    tasks: tokio_util::task::TaskTracker,
    cancel: tokio_util::sync::CancellationToken,
}

impl Discovery {
    /// Starts the loop when scanners are configured.
    pub(crate) fn start(config: &aura_config::Config) -> anyhow::Result<Option<Discovery>> {
        let d = &config.discovery;
        if d.scanners.is_empty() {
            return Ok(None);
        }
        if d.scanners.iter().any(|s| s == "kubernetes" || s == "k8s") && !aura_scan::HAS_KUBERNETES
        {
            bail!(
                "discovery.scanners names kubernetes, but this build has no Kubernetes scanner (cargo feature `k8s`)"
            );
        }
        let sink = aura_catalog::files::AssetDir::open(&config.data_dir)?;
        let registry = aura_scan::default_registry(&scanner_settings(d));
        let only = d.scanners.clone();
        let interval = d.interval_seconds;
        let tasks = tokio_util::task::TaskTracker::new();
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        tasks.spawn(async move {
            use aura_catalog::files::AssetSink as _;
            loop {
                let selected = registry.select(&[], &only);
                let ctx = aura_scan::ScanContext::new(std::sync::Arc::new(aura_scan::NoProgress));
                let report = tokio::select! {
                    () = stop.cancelled() => return,
                    r = registry.run(&selected, &[], &ctx) => r,
                };
                let mut written = 0usize;
                for asset in &report.assets {
                    match sink.write(asset) {
                        Ok(_) => written += 1,
                        Err(e) => tracing::warn!(asset = %asset.id, error = %e, "discovery: writing the asset file failed"),
                    }
                }
                for run in &report.runs {
                    if let Some(why) = &run.skipped {
                        tracing::info!(scanner = run.scanner, reason = %why, "discovery: scanner skipped");
                    }
                    if let Some(why) = &run.failed {
                        tracing::warn!(scanner = run.scanner, error = %why, "discovery: scanner failed");
                    }
                    for e in &run.errors {
                        tracing::warn!(scanner = run.scanner, target = %e.target, error = %e.message, "discovery: target failed");
                    }
                }
                tracing::info!(found = report.assets.len(), written, "discovery run done");
                if interval == 0 {
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(interval)) => {}
                }
            }
        });
        tasks.close();
        Ok(Some(Discovery { tasks, cancel }))
    }

    /// Stops the loop and waits for it.
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

/// `aura instrument`: writes the container image build file, Kubernetes sidecar and DaemonSet manifests, the
/// seccomp profile and systemd units that run `aura sensor` next to assets.
pub(crate) fn instrument(args: &crate::cli::InstrumentArgs) -> anyhow::Result<ExitCode> {
    let files = crate::instrument::files(&crate::instrument::Params {
        image: args.image.clone(),
        namespace: args.namespace.clone(),
        server: args.server.clone(),
    });
    let wanted: Vec<&(String, &str, String)> = files
        .iter()
        .filter(|(_, target, _)| args.target == "all" || *target == args.target)
        .collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating `{}`", args.out.display()))?;
    for (name, _, _) in &wanted {
        let path = args.out.join(name);
        if path.exists() && !args.force {
            eprintln!(
                "error: `{}` exists; pass --force to overwrite",
                path.display()
            );
            return Ok(ExitCode::from(1));
        }
    }
    for (name, _, text) in &wanted {
        let path = args.out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `aura cache stats|flush`. `stats` asks the running server for every tier (`GET /api/v1/cache`); without a
/// server it reads the tiers it can reach itself: Redis (`--redis-url` or `cache.redis_url`) and the cold archive
/// (`cache.cold`). `flush` drops Redis entries and tells every node to drop its hot copies.
pub(crate) async fn cache(cli: &Cli, cmd: &crate::cli::CacheCommand) -> anyhow::Result<ExitCode> {
    let (config, _) = load_config(cli, None)?;
    let url = match cmd {
        crate::cli::CacheCommand::Stats(a) => a.redis_url.clone(),
        crate::cli::CacheCommand::Flush(a) => a.redis_url.clone(),
    }
    .or_else(|| config.cache.redis_url.clone());
    let prefix = config.cache.redis_prefix.clone();
    let redis_ttl = std::time::Duration::from_secs(config.cache.redis_ttl_seconds);
    match cmd {
        crate::cli::CacheCommand::Stats(a) => {
            let from_server = match Api::new(cli, &a.api) {
                Ok(api) => api.get_json::<Value>("/api/v1/cache").await.ok(),
                Err(_) => None,
            };
            let json = match from_server {
                Some(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        o.insert("source".into(), Value::from("server"));
                    }
                    v
                }
                None => {
                    let redis = match &url {
                        Some(url) => {
                            let tier =
                                aura_catalog::cache::RedisTier::connect(url, &prefix, redis_ttl)
                                    .await
                                    .with_context(|| format!("connecting to {url}"))?;
                            let s = tier.stats().await?;
                            serde_json::json!({"entries": s.entries, "hits": s.hits, "misses": s.misses})
                        }
                        None => Value::Null,
                    };
                    serde_json::json!({
                        "source": "direct",
                        "hot": Value::Null,
                        "redis": redis,
                        "cold": cold_stats(&config).await?,
                    })
                }
            };
            output::print(a.output, &json, || {
                let cell = |tier: &str, key: &str| -> String {
                    json[tier]
                        .get(key)
                        .map_or_else(|| "-".to_owned(), |v| v.to_string())
                };
                let state = |tier: &str| -> String {
                    match &json[tier] {
                        Value::Null if tier == "hot" && json["source"] == "direct" => {
                            "no server running".to_owned()
                        }
                        Value::Null => "not configured".to_owned(),
                        v => v
                            .get("error")
                            .and_then(Value::as_str)
                            .map_or_else(|| "ok".to_owned(), |e| format!("error: {e}")),
                    }
                };
                output::table(
                    &["TIER", "STATE", "ENTRIES", "HITS", "MISSES", "BYTES"],
                    [
                        vec![
                            "hot".to_owned(),
                            state("hot"),
                            cell("hot", "entries"),
                            cell("hot", "hits"),
                            cell("hot", "misses"),
                            "-".to_owned(),
                        ],
                        vec![
                            "redis".to_owned(),
                            state("redis"),
                            cell("redis", "entries"),
                            cell("redis", "hits"),
                            cell("redis", "misses"),
                            "-".to_owned(),
                        ],
                        vec![
                            "cold".to_owned(),
                            state("cold"),
                            cell("cold", "objects"),
                            "-".to_owned(),
                            "-".to_owned(),
                            cell("cold", "bytes"),
                        ],
                    ],
                )
            })?;
        }
        crate::cli::CacheCommand::Flush(a) => {
            let Some(url) = url else {
                eprintln!(
                    "error: no Redis tier configured; pass --redis-url, set AURA_CACHE_REDIS_URL or `cache.redis_url` \
                     (the in-process tier lives inside `aura up` and empties with it)"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            let tier = aura_catalog::cache::RedisTier::connect(&url, &prefix, redis_ttl)
                .await
                .with_context(|| format!("connecting to {url}"))?;
            let n = tier.flush_pattern(&a.pattern).await?;
            println!("flushed {n} entries matching `{}`", a.pattern);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "s3")]
async fn cold_stats(config: &aura_config::Config) -> anyhow::Result<Value> {
    let Some(cold) = &config.cache.cold else {
        return Ok(Value::Null);
    };
    let (bucket, prefix) = cold.bucket_and_prefix();
    let archive =
        aura_catalog::cache::cold::ColdArchive::open(&aura_catalog::cache::cold::ColdSettings {
            bucket: bucket.clone(),
            prefix: prefix.clone(),
            endpoint: cold.endpoint.clone(),
            region: cold.region.clone(),
            allow_http: cold.allow_http,
            credentials: None,
        })?;
    Ok(match archive.stats().await {
        Ok(s) => {
            serde_json::json!({"objects": s.objects, "bytes": s.bytes, "bucket": bucket, "prefix": prefix})
        }
        Err(e) => serde_json::json!({"error": e.to_string()}),
    })
}

#[cfg(not(feature = "s3"))]
async fn cold_stats(config: &aura_config::Config) -> anyhow::Result<Value> {
    Ok(match &config.cache.cold {
        Some(_) => {
            serde_json::json!({"error": "this build has no S3 support (cargo feature `s3`)"})
        }
        None => Value::Null,
    })
}
