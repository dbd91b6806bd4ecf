//! What each command does. Commands are thin: they load configuration, call a service, and print.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;
use serde::Serialize;

use aura_config::{Config, LogFormat, Overrides};
use aura_core::{Role, SystemClock};
use aura_server::services::audit::{AuditTrail, cli_actor};
use aura_server::services::{NewToken, Tokens};
use aura_store::RevokeOutcome;

use crate::cli::{
    AgentCommand, Cli, Command, ConfigCommand, InitArgs, LogFormatArg, StatusArgs, TokenCommand,
    UpArgs,
};
use crate::output::{self, Output};

/// Exit code for configuration and usage errors (clap uses 2 for usage errors too).
const EXIT_CONFIG: u8 = 2;

/// Maps an error to the process exit code: 2 for configuration errors, 1 otherwise.
pub(crate) fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<aura_config::ConfigError>().is_some() {
        EXIT_CONFIG
    } else {
        1
    }
}

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Up(args) => up(&cli, args).await,
        Command::Init(args) => init(args),
        Command::Token(cmd) => token(&cli, cmd).await,
        Command::Agent(AgentCommand::List(args)) => agents(&cli, args.output).await,
        Command::Agent(AgentCommand::Halt(args)) => crate::govern_cmd::halt(&cli, args).await,
        Command::Agent(AgentCommand::Resume(args)) => crate::govern_cmd::resume(&cli, args).await,
        Command::Agent(AgentCommand::Halts(args)) => crate::govern_cmd::halts(&cli, args).await,
        Command::Policy(cmd) => crate::govern_cmd::policy(&cli, cmd).await,
        Command::Approvals(cmd) => crate::govern_cmd::approvals(&cli, cmd).await,
        Command::Budgets(args) => crate::govern_cmd::budgets(&cli, args).await,
        Command::Decide(args) => crate::govern_cmd::decide(&cli, args).await,
        Command::Settle(args) => crate::govern_cmd::settle(&cli, args).await,
        Command::Status(args) => status(&cli, args).await,
        Command::Query(args) => crate::catalog_cmd::query(&cli, args).await,
        Command::Watch(args) => crate::catalog_cmd::watch(&cli, args).await,
        Command::Scan(args) => crate::catalog_cmd::scan(&cli, args).await,
        Command::Instrument(args) => crate::catalog_cmd::instrument(args),
        Command::Cache(cmd) => crate::catalog_cmd::cache(&cli, cmd).await,
        Command::Config(ConfigCommand::Check) => {
            let (config, source) = load_config(&cli, None)?;
            match source {
                Some(path) => println!("ok: {} is valid", path.display()),
                None => println!(
                    "ok: no config file; built-in defaults (data dir {})",
                    config.data_dir.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show(args)) => {
            let (config, _) = load_config(&cli, None)?;
            let redacted = config.redacted();
            let format = if args.output == Output::Table {
                Output::Yaml
            } else {
                args.output
            };
            output::print(format, &redacted, String::new)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "aura", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(crate::cli::BenchCommand::Startup(args)) => {
            crate::bench::startup(args).await
        }
        Command::Bench(crate::cli::BenchCommand::Kernel(args)) => crate::bench::kernel(args).await,
        Command::Bench(crate::cli::BenchCommand::Audit(args)) => crate::bench::audit(args).await,
        Command::Bench(crate::cli::BenchCommand::Sensor(args)) => {
            crate::bench_sensor::sensor(args).await
        }
        Command::Sensor(args) => crate::context_cmd::sensor(&cli.globals(), args).await,
        Command::Validate(args) => crate::context_cmd::validate(&cli, args).await,
        Command::Guardian(cmd) => crate::context_cmd::guardian(&cli, cmd).await,
        Command::Bench(crate::cli::BenchCommand::Catalog(args)) => {
            crate::bench_catalog::catalog(args).await
        }
        Command::Bench(crate::cli::BenchCommand::Mesh(args)) => crate::bench_mesh::run(args).await,
        Command::Mesh(cmd) => crate::mesh_cmd::mesh(&cli, cmd).await,
        Command::Tasks(cmd) => crate::mesh_cmd::tasks(&cli, cmd).await,
        Command::Dlq(cmd) => crate::mesh_cmd::dlq(&cli, cmd).await,
        Command::Agents(cmd) => crate::mesh_cmd::agents(&cli, cmd).await,
        Command::Bench(crate::cli::BenchCommand::Proxy(args)) => {
            crate::bench_proxy::run(args).await
        }
        Command::Mcp(args) => crate::edge_cmd::mcp(&cli, args).await,
        Command::Hook(cmd) => crate::edge_cmd::hook(&cli, cmd).await,
        Command::Tools(cmd) => crate::edge_cmd::tools(cmd),
        Command::Audit(cmd) => crate::audit_cmd::run(&cli, cmd).await,
        Command::Report(cmd) => crate::report_cmd::run(&cli, cmd).await,
        Command::Usage(cmd) => crate::gateway_cmd::run(&cli, cmd).await,
        Command::Bench(crate::cli::BenchCommand::Gateway(args)) => {
            crate::bench_gateway::run(args).await
        }
    }
}

/// Loads the config file (flag/env `--config`, else ./aura.yaml, else defaults) and applies flag/env overrides.
pub(crate) fn load_config(
    cli: &Cli,
    up: Option<&UpArgs>,
) -> anyhow::Result<(Config, Option<std::path::PathBuf>)> {
    load_config_with(&cli.globals(), up)
}

/// [`load_config`] from the global options alone (the lean `aura sensor` entry has no [`Cli`]).
pub(crate) fn load_config_with(
    cli: &crate::cli::Globals,
    up: Option<&UpArgs>,
) -> anyhow::Result<(Config, Option<std::path::PathBuf>)> {
    let loaded = aura_config::load(cli.config.as_deref())?;
    let mut config = loaded.config;
    // `up` reads AURA_LISTEN through clap; other commands (status, config show) honour it too.
    let listen = match up {
        Some(args) => args.listen,
        None => match std::env::var("AURA_LISTEN") {
            Ok(v) => Some(v.parse().with_context(|| {
                format!("AURA_LISTEN: `{v}` is not an address like 127.0.0.1:7470")
            })?),
            Err(_) => None,
        },
    };
    config.apply(Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
        log_format: cli.log_format.map(|f| match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }),
    });
    Ok((config, loaded.source))
}

fn init_logging(config: &Config) {
    let filter = std::env::var("AURA_LOG").unwrap_or_else(|_| config.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

async fn up(cli: &Cli, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let (config, source) = load_config(cli, Some(args))?;
    init_logging(&config);
    match &source {
        Some(path) => tracing::info!(config = %path.display(), "configuration loaded"),
        None => tracing::info!("no config file; using built-in defaults"),
    }
    let mut config = config;
    if let Some(addr) = args.proxy_listen {
        config.proxy.listen = addr;
    }
    let proxy_config = config.proxy.clone();
    let discovery_config = config.clone();
    let drain = std::time::Duration::from_secs(config.server.shutdown_timeout_seconds);
    let server = aura_server::bind(config).await?;
    let addr = server.local_addr().context("reading the bound address")?;
    let proxy = crate::edge_cmd::bind_proxy(&proxy_config, &server).await?;
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        if let Some(proxy) = &proxy {
            let proxy_addr = proxy.local_addr().context("reading the proxy address")?;
            writeln!(stdout, "proxy listening on http://{proxy_addr}")?;
        }
        stdout.flush()?;
    }
    let discovery = crate::catalog_cmd::Discovery::start(&discovery_config)?;
    let report = crate::edge_cmd::run_with_proxy(server, proxy, drain, shutdown_signal()).await?;
    if let Some(d) = discovery {
        d.stop().await;
    }
    if !report.drained {
        tracing::warn!(
            seconds = report.drain_time.as_secs_f64(),
            "some requests were cut off at the drain bound"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "received"),
        () = term => tracing::info!(signal = "SIGTERM", "received"),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let config_path = dir.join("aura.yaml");
    if config_path.exists() && !args.force {
        bail!(
            "`{}` already exists; pass --force to overwrite it",
            config_path.display()
        );
    }
    std::fs::write(&config_path, aura_config::STARTER_YAML)
        .with_context(|| format!("writing `{}`", config_path.display()))?;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)
        .with_context(|| format!("creating `{}`", policies.display()))?;
    let readme = policies.join("README.md");
    if !readme.exists() {
        std::fs::write(&readme, POLICIES_README)
            .with_context(|| format!("writing `{}`", readme.display()))?;
    }
    println!("wrote {}", config_path.display());
    println!("wrote {}/", policies.display());
    println!(
        "next: `aura up` in {} (or `aura --config {} up`)",
        dir.display(),
        config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

const POLICIES_README: &str = "\
# Policies

Aura reads governance policies (YAML) from this folder: agents and their permission levels, budgets and
shared pools, rate limits, and rules with `when:` conditions and `then:` verdicts. Until a policy allows an
action, the default is deny. See docs/policies.md in the Aura repository for the language.
";

/// The token service over the configured store, auditing into the local audit log when this process can open it
/// (when `aura up` is running it holds the log; the change is then recorded in the store only, with a warning).
async fn open_tokens(
    cli: &Cli,
    audited: bool,
) -> anyhow::Result<(Tokens, Arc<dyn aura_store::Store>, Option<AuditTrail>)> {
    let (config, _) = load_config(cli, None)?;
    let store = aura_server::open_store(&config).await?;
    let tokens = Tokens::new(store.clone(), Arc::new(SystemClock));
    if !audited {
        return Ok((tokens, store, None));
    }
    let settings = aura_server::services::audit::TrailSettings {
        data_dir: config.data_dir.clone(),
        origin: aura_server::services::audit::DEFAULT_ORIGIN.to_owned(),
        segment_bytes: 64 << 20,
        checkpoint_interval: std::time::Duration::from_millis(100),
        effect_gate: config.audit.effect_gate,
    };
    match AuditTrail::open(settings).await {
        Ok((trail, _)) => Ok((tokens.with_audit(trail.clone()), store, Some(trail))),
        Err(e) => {
            eprintln!(
                "warning: this change is not in the audit log ({e}); use the API while `aura up` runs"
            );
            Ok((tokens, store, None))
        }
    }
}

#[derive(Serialize)]
struct TokenRow {
    id: String,
    name: String,
    role: String,
    agent: Option<String>,
    created_at: String,
    revoked_at: Option<String>,
}

impl From<&aura_store::TokenRecord> for TokenRow {
    fn from(r: &aura_store::TokenRecord) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name.clone(),
            role: r.role.to_string(),
            agent: r.agent.as_ref().map(ToString::to_string),
            created_at: r.created_at.to_rfc3339(),
            revoked_at: r.revoked_at.map(|t| t.to_rfc3339()),
        }
    }
}

async fn token(cli: &Cli, cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    let writes = !matches!(cmd, TokenCommand::List(_));
    // While `aura up` runs it holds the audit log: changes go through its API so they are audited there.
    if writes && let Some(api) = running_server(cli).await {
        return token_via_api(&api, cmd).await;
    }
    let (tokens, store, trail) = open_tokens(cli, writes).await?;
    let result = token_inner(&tokens, cmd).await;
    if let Some(trail) = trail {
        trail.close().await;
    }
    store.close().await;
    result
}

/// The running server that owns this data dir: one answering on the configured address (or `AURA_URL`) that accepts
/// the data dir's admin token (or `AURA_TOKEN`).
async fn running_server(cli: &Cli) -> Option<Api> {
    let api = Api::new(
        cli,
        &crate::cli::ApiArgs {
            url: std::env::var("AURA_URL").ok(),
            token: std::env::var("AURA_TOKEN").ok(),
        },
    )
    .ok()?;
    let token = api.token.as_ref()?;
    // Whoami with this data dir's admin token: only the server that owns this store accepts it.
    let probe = api
        .client
        .get(format!("{}/api/v1/whoami", api.url))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_millis(500))
        .send()
        .await
        .ok()?;
    probe.status().is_success().then_some(api)
}

async fn token_via_api(api: &Api, cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create(args) => {
            let body =
                serde_json::json!({"name": args.name, "role": args.role, "agent": args.agent});
            let created = api
                .call(reqwest::Method::POST, "/api/v1/tokens", Some(&body))
                .await?;
            eprintln!(
                "created token `{}` (id {}, role {}{}) through the running server; it is shown only once:",
                created["name"].as_str().unwrap_or_default(),
                created["id"].as_str().unwrap_or_default(),
                created["role"].as_str().unwrap_or_default(),
                created["agent"]
                    .as_str()
                    .map(|a| format!(", agent {a}"))
                    .unwrap_or_default()
            );
            println!("{}", created["token"].as_str().unwrap_or_default());
        }
        TokenCommand::Revoke(args) => {
            let path = format!("/api/v1/tokens/{}", args.token);
            let revoked = api.call(reqwest::Method::DELETE, &path, None).await?;
            let name = revoked["token"]["name"].as_str().unwrap_or_default();
            let id = revoked["token"]["id"].as_str().unwrap_or_default();
            match revoked["outcome"].as_str() {
                Some("already_revoked") => println!("token `{name}` ({id}) was already revoked"),
                _ => println!("revoked token `{name}` ({id})"),
            }
        }
        TokenCommand::List(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn token_inner(tokens: &Tokens, cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create(args) => {
            let role: Role = args.role.parse()?;
            let created = tokens
                .create(
                    NewToken {
                        name: args.name.clone(),
                        role,
                        agent: args.agent.clone(),
                    },
                    cli_actor(),
                )
                .await?;
            let r = &created.record;
            eprintln!(
                "created token `{}` (id {}, role {}{}); it is shown only once:",
                r.name,
                r.id,
                r.role,
                r.agent
                    .as_ref()
                    .map(|a| format!(", agent {a}"))
                    .unwrap_or_default()
            );
            if let Some(agent) = &created.registered_agent {
                eprintln!("registered agent `{}`", agent.name);
            }
            println!("{}", created.token.reveal());
        }
        TokenCommand::List(args) => {
            let rows: Vec<TokenRow> = tokens.list().await?.iter().map(TokenRow::from).collect();
            output::print(args.output, &rows, || {
                output::table(
                    &["ID", "NAME", "ROLE", "AGENT", "CREATED", "STATUS"],
                    rows.iter().map(|r| {
                        vec![
                            r.id.clone(),
                            r.name.clone(),
                            r.role.clone(),
                            r.agent.clone().unwrap_or_else(|| "-".into()),
                            r.created_at.clone(),
                            r.revoked_at
                                .as_ref()
                                .map(|t| format!("revoked {t}"))
                                .unwrap_or_else(|| "active".into()),
                        ]
                    }),
                )
            })?;
        }
        TokenCommand::Revoke(args) => {
            let (record, outcome) = tokens.revoke(&args.token, cli_actor()).await?;
            match outcome {
                RevokeOutcome::Revoked => {
                    println!("revoked token `{}` ({})", record.name, record.id)
                }
                RevokeOutcome::AlreadyRevoked => println!(
                    "token `{}` ({}) was already revoked",
                    record.name, record.id
                ),
                RevokeOutcome::NotFound => bail!("no token `{}`", args.token),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct AgentRow {
    name: String,
    registered_at: String,
    active_tokens: u64,
}

async fn agents(cli: &Cli, format: Output) -> anyhow::Result<ExitCode> {
    let (tokens, store, _) = open_tokens(cli, false).await?;
    let agents = tokens.agents().await;
    store.close().await;
    let rows: Vec<AgentRow> = agents?
        .iter()
        .map(|a| AgentRow {
            name: a.name.to_string(),
            registered_at: a.registered_at.to_rfc3339(),
            active_tokens: a.active_tokens,
        })
        .collect();
    output::print(format, &rows, || {
        output::table(
            &["NAME", "REGISTERED", "ACTIVE TOKENS"],
            rows.iter().map(|r| {
                vec![
                    r.name.clone(),
                    r.registered_at.clone(),
                    r.active_tokens.to_string(),
                ]
            }),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct StatusReport {
    url: String,
    ready: serde_json::Value,
    status: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assets: Option<serde_json::Value>,
}

/// A client for a running server: its base URL and the bearer token to use.
pub(crate) struct Api {
    pub client: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
}

impl Api {
    /// Resolves the URL (flag, env, `server.listen`) and token (flag, env, `DATA_DIR/admin.token`).
    pub(crate) fn new(cli: &Cli, args: &crate::cli::ApiArgs) -> anyhow::Result<Api> {
        let (config, _) = load_config(cli, None)?;
        let url = match &args.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let mut addr = config.server.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            }
        };
        let token = match &args.token {
            Some(t) => Some(t.trim().to_owned()),
            None => read_admin_token(&config.data_dir.join("admin.token")),
        };
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Api { client, url, token })
    }

    /// GET `path` with the token; a non-2xx answer becomes an error carrying the server's message.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach Aura at {}; is `aura up` running?", self.url))?;
        let status = resp.status();
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let msg = body["error"]["message"].as_str().unwrap_or("no details");
            bail!("{} answered {}: {msg}", self.url, status.as_u16());
        }
        Ok(resp.json().await?)
    }

    /// Sends `body` as JSON (or no body) with `method` to `path` with the token. Returns the status and the
    /// answer parsed as JSON (`null` when empty or not JSON) whatever the status, so a command can handle the
    /// answers it expects; [`Api::call`] turns every non-2xx answer into an [`ApiFailure`].
    pub(crate) async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach Aura at {}; is `aura up` running?", self.url))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the server's answer")?;
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }

    /// Like [`Api::send_json`], but a non-2xx answer is an [`ApiFailure`] carrying the server's code and message.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, value) = self.send_json(method, path, body).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(ApiFailure::new(&self.url, status, &value).into())
        }
    }
}

/// A non-2xx answer of the server: its status and the `{"error":{"code","message"}}` it sent.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    /// The server's base URL.
    pub url: String,
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The stable error code (`conflict`, `invalid_action`, …), or `unknown` when the body had none.
    pub code: String,
    /// The server's message.
    pub message: String,
}

impl ApiFailure {
    /// Reads the error body of an answer with `status`.
    pub(crate) fn new(
        url: &str,
        status: reqwest::StatusCode,
        body: &serde_json::Value,
    ) -> ApiFailure {
        let text = |k: &str| body["error"][k].as_str().map(str::to_owned);
        ApiFailure {
            url: url.to_owned(),
            status,
            code: text("code").unwrap_or_else(|| "unknown".to_owned()),
            message: text("message").unwrap_or_else(|| "no details".to_owned()),
        }
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered {} ({}): {}",
            self.url,
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiFailure {}

async fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(cli, &args.api)?;
    let (client, url, token) = (&api.client, api.url.clone(), api.token.clone());
    let ready_resp = client
        .get(format!("{url}/api/health/ready"))
        .send()
        .await
        .with_context(|| format!("cannot reach Aura at {url}; is `aura up` running?"))?;
    let ready_ok = ready_resp.status().is_success();
    let ready: serde_json::Value = ready_resp.json().await.context("reading readiness")?;
    let status = match &token {
        Some(token) => {
            let resp = client
                .get(format!("{url}/api/v1/status"))
                .bearer_auth(token)
                .send()
                .await?;
            if resp.status().is_success() {
                Some(resp.json().await?)
            } else {
                eprintln!(
                    "warning: status needs a valid token (HTTP {})",
                    resp.status().as_u16()
                );
                None
            }
        }
        None => None,
    };
    let assets = match &token {
        Some(_) => crate::catalog_cmd::health_summary(&api).await,
        None => None,
    };
    let report = StatusReport {
        url,
        ready,
        status,
        assets,
    };
    output::print(args.output, &report, || status_table(&report))?;
    Ok(if ready_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status_table(report: &StatusReport) -> String {
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let mut rows = vec![
        vec!["url".to_owned(), report.url.clone()],
        vec!["readiness".to_owned(), s(&report.ready, "status")],
    ];
    if let Some(checks) = report.ready.get("checks").and_then(|c| c.as_array()) {
        for c in checks {
            rows.push(vec![
                format!("  {} ({})", s(c, "name"), s(c, "backend")),
                format!(
                    "{} in {:.1} ms",
                    s(c, "status"),
                    c.get("latency_ms").and_then(|l| l.as_f64()).unwrap_or(0.0)
                ),
            ]);
        }
    }
    if let Some(st) = &report.status {
        for key in [
            "version",
            "started_at",
            "uptime_seconds",
            "store_backend",
            "store_schema_version",
        ] {
            rows.push(vec![key.replace('_', " "), s(st, key)]);
        }
    }
    if let Some(assets) = &report.assets {
        rows.extend(crate::catalog_cmd::summary_rows(assets));
    }
    output::table(&["", ""], rows)
}

fn read_admin_token(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
}
