//! The command-line grammar: every command, flag and environment variable of `aura`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Output;

/// The grouped command list shown by `aura --help`. A test checks that it names every subcommand.
pub(crate) const HELP_TEMPLATE: &str = "\
{before-help}{name} {version}
{about-with-newline}
{usage-heading} {usage}

Run:
  up           Start Aura: the API, metrics and every enabled plane
  init         Write a commented starter aura.yaml and a policies/ folder

Access:
  token        Create, list and revoke API tokens
  agent        List registered agents; halt, pause and resume them
  agents       Run the agents declared in mesh.agents: status, start, stop, restart, attach

Govern:
  policy       Check policy files offline; show or reload the policy in force
  approvals    List pending approvals; approve or deny them
  budgets      Show an agent's budget usage
  decide       Ask the kernel for a verdict on an action (exit 0 allow, 3 deny/halt, 4 escalate)
  settle       Report how an allowed action went, with its real cost

Coordinate:
  mesh         Publish and consume messages on the event mesh; list topics
  tasks        List, show and cancel durable tasks
  dlq          Inspect, replay and purge dead-letter queues

Inspect:
  status       Show a running server's readiness and status
  query        Query the asset catalog: filters, aggregates, sort, fields (docs/queries.md)
  watch        Follow changes to the assets matching a filter, live
  scan         Discover assets (local machine, systemd, Docker, libvirt, AWS) and write their .aav files
  instrument   Generate what runs `aura sensor` next to assets: container image, Kubernetes, systemd
  cache        Show or flush the catalog's cache tiers
  config       Check or show the effective configuration
  audit        Verify the audit trail, prove entries, replay what an agent did
  report       Build a compliance report (EU AI Act, ISO/IEC 42001) from the audit trail
  usage        LLM gateway usage: tokens and cost per day, agent or model

Context:
  sensor       Run the host sensor on its own, keeping an asset file current (e.g. as a sidecar)
  validate     Check asset files: syntax, schema, checksum, freshness (exit 0 when all valid)
  guardian     Asset-file health: status, validate-and-repair run, repair one file

Agents:
  mcp          Serve the MCP tools over stdio for one agent (governed by the running server)
  hook         Claude Code hooks: pre-tool-use asks the kernel, post-tool-use settles
  tools        Print the tool definitions for function calling (openai, anthropic, langchain, mcp)

Tools:
  completions  Print a shell completion script (bash, zsh, fish)
  bench        Measure Aura itself: startup, kernel, audit, sensor, catalog, mesh, gateway, proxy
  help         Print this message or the help of a command

Options:
{options}{after-help}";

/// Aura: the control plane for autonomous AI agents.
#[derive(Debug, Parser)]
#[command(
    name = "aura",
    version,
    about = "Aura: the control plane for autonomous AI agents — live context, governance before every action, \
             and a provable audit trail.",
    help_template = HELP_TEMPLATE,
    after_help = "Run `aura <command> --help` for the options of a command. Docs: README.md and docs/."
)]
pub(crate) struct Cli {
    /// Configuration file [default: ./aura.yaml when present, else built-in defaults].
    #[arg(long, global = true, env = "AURA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Data directory [default: ./aura-data, or `data_dir` from the config file].
    #[arg(long, global = true, env = "AURA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log format on stderr [default: `log.format` from config, else text].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The global options, apart from the command (what loading the configuration needs).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Globals {
    /// Configuration file [default: ./aura.yaml when present, else built-in defaults].
    #[arg(long, global = true, env = "AURA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Data directory [default: ./aura-data, or `data_dir` from the config file].
    #[arg(long, global = true, env = "AURA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log format on stderr [default: `log.format` from config, else text].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
}

impl Cli {
    /// The global options.
    pub(crate) fn globals(&self) -> Globals {
        Globals {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            log_format: self.log_format,
        }
    }
}

/// `aura sensor` parsed on its own: the lean entry point `main` takes for the sidecar, so a sensor
/// process builds only its own command line, not the grammar of every command.
#[derive(Debug, Parser)]
#[command(
    name = "aura sensor",
    version,
    about = "Run the host sensor on its own, keeping `<dir>/<asset id>.aav` current (e.g. as a sidecar)."
)]
pub(crate) struct SensorCli {
    /// Global options.
    #[command(flatten)]
    pub globals: Globals,
    /// The sensor's options.
    #[command(flatten)]
    pub args: crate::context_cmd::SensorArgs,
}

/// Where `sensor` is in `args` (without the program name) when they run `aura sensor`: the first
/// argument that is neither an option nor a global option's value.
pub(crate) fn sensor_position(args: &[std::ffi::OsString]) -> Option<usize> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let a = a.to_str()?;
        match a {
            "--config" | "--data-dir" | "--log-format" => i += 1,
            _ if a.starts_with('-') => {}
            _ => return (a == "sensor").then_some(i),
        }
        i += 1;
    }
    None
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start Aura: the API, metrics and every enabled plane, with embedded defaults.
    Up(UpArgs),
    /// Write a commented starter aura.yaml and a policies/ folder.
    Init(InitArgs),
    /// Create, list and revoke API tokens (works on the store directly; the server need not run).
    #[command(subcommand)]
    Token(TokenCommand),
    /// List registered agents; halt, pause and resume them.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Run the agents declared in `mesh.agents`: status, start, stop, restart, attach.
    #[command(subcommand)]
    Agents(crate::mesh_cmd::AgentsCommand),
    /// Publish and consume messages on the event mesh; list topics.
    #[command(subcommand)]
    Mesh(crate::mesh_cmd::MeshCommand),
    /// List, show and cancel durable tasks.
    #[command(subcommand)]
    Tasks(crate::mesh_cmd::TasksCommand),
    /// Inspect, replay and purge dead-letter queues.
    #[command(subcommand)]
    Dlq(crate::mesh_cmd::DlqCommand),
    /// Check policy files offline; show or reload the policy in force.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List approvals; approve or deny pending ones.
    #[command(subcommand, visible_alias = "approval")]
    Approvals(ApprovalsCommand),
    /// Show an agent's budget usage, per budget key.
    Budgets(BudgetsArgs),
    /// Ask the governance kernel for a verdict on an action, before it happens.
    #[command(after_help = DECIDE_EXIT_CODES)]
    Decide(DecideArgs),
    /// Report how an allowed action went: its outcome and real cost (settles its budget reservation).
    Settle(SettleArgs),
    /// Show a running server's readiness and status.
    Status(StatusArgs),
    /// Query the asset catalog, e.g. `aura query 'kind = container and cpu > 80 sort by cpu desc limit 10'`.
    Query(QueryArgs),
    /// Follow changes to the assets matching a filter (a live view on a terminal, one line per change otherwise).
    Watch(WatchArgs),
    /// Discover assets and write their `.aav` files into the data dir (the running server picks them up).
    Scan(ScanArgs),
    /// Generate the files that run `aura sensor` next to assets (container image, Kubernetes, systemd).
    Instrument(InstrumentArgs),
    /// Show or flush the catalog's cache tiers.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Check or show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The tamper-evident audit trail: verify it, prove entries, replay what an agent did.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Reports built from the audit trail, e.g. `aura report compliance`.
    #[command(subcommand)]
    Report(ReportCommand),
    /// LLM gateway usage: calls, tokens and cost per day, agent or model.
    #[command(subcommand)]
    Usage(crate::gateway_cmd::UsageCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Measure Aura itself.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run the host sensor on its own, keeping `<dir>/<asset id>.aav` current (e.g. as a sidecar).
    Sensor(crate::context_cmd::SensorArgs),
    /// Check asset files (.aav): TOML syntax, schema, checksum, freshness, leftovers; exit 0 when all valid.
    Validate(crate::context_cmd::ValidateArgs),
    /// Asset-file health: status, a validate-and-repair run, repair of one file (repairs are audited).
    #[command(subcommand)]
    Guardian(crate::context_cmd::GuardianCommand),
    /// Serve the MCP tools over stdio for the agent of `--token`, decided by the running server.
    Mcp(crate::edge_cmd::McpArgs),
    /// Claude Code hooks: `pre-tool-use` asks the kernel (allow, deny, ask), `post-tool-use` settles.
    #[command(subcommand)]
    Hook(crate::edge_cmd::HookCommand),
    /// Tool definitions for function calling.
    #[command(subcommand)]
    Tools(crate::edge_cmd::ToolsCommand),
}

/// Options of `aura up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Address to listen on [default: 127.0.0.1:7470, or `server.listen` from the config file].
    #[arg(long, env = "AURA_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address the HTTP enforcement proxy listens on [default: 127.0.0.1:7471, or `proxy.listen`].
    #[arg(long, env = "AURA_PROXY_LISTEN", value_name = "ADDR")]
    pub proxy_listen: Option<SocketAddr>,
}

/// Options of `aura init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Directory to write into (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite an existing aura.yaml.
    #[arg(long)]
    pub force: bool,
}

/// `aura token …`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it as the last line of stdout (it is shown only this once).
    Create(TokenCreateArgs),
    /// List tokens (never their secrets).
    List(OutputArgs),
    /// Revoke a token by id or name.
    Revoke(TokenRevokeArgs),
}

/// Options of `aura token create`.
#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    /// Name of the token, unique among active tokens.
    #[arg(long)]
    pub name: String,
    /// Role: admin, operator, agent or viewer.
    #[arg(long, value_parser = ["admin", "operator", "agent", "viewer"])]
    pub role: String,
    /// The agent this token acts for (required for role agent; registers the agent on its first token).
    #[arg(long)]
    pub agent: Option<String>,
}

/// Options of `aura token revoke`.
#[derive(Debug, Args)]
pub(crate) struct TokenRevokeArgs {
    /// Token id or name.
    pub token: String,
}

/// `aura agent …`
#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// List registered agents.
    List(OutputArgs),
    /// Halt (or pause) an agent, or every agent with --all: its next actions are refused. Dependents follow
    /// per policy (`on_halt`).
    Halt(AgentHaltArgs),
    /// Lift a halt or pause (and the halts it cascaded to).
    Resume(AgentResumeArgs),
    /// List current halts and pauses.
    Halts(ApiOutputArgs),
}

/// Options of `aura agent halt`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["name", "all"])))]
pub(crate) struct AgentHaltArgs {
    /// The agent to halt.
    pub name: Option<String>,
    /// Halt every agent (the kill switch).
    #[arg(long)]
    pub all: bool,
    /// Why (recorded in the audit log).
    #[arg(long)]
    pub reason: String,
    /// Pause instead: refuse new actions but let in-flight ones settle.
    #[arg(long)]
    pub pause: bool,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura agent resume`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["name", "all"])))]
pub(crate) struct AgentResumeArgs {
    /// The agent to resume.
    pub name: Option<String>,
    /// Lift the kill switch (`halt --all`).
    #[arg(long)]
    pub all: bool,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Server access and `--output`, for read commands with no other options.
#[derive(Debug, Args)]
pub(crate) struct ApiOutputArgs {
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `aura policy …`
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy directory offline (no server): syntax, references, conflicts, shadowed and dead
    /// rules, each with an example action. Exit 0 clean, 1 on errors or findings, 2 if unreadable.
    Check(PolicyCheckArgs),
    /// Show the policy in force on the running server: directory, bundle hash, files, rules, agents.
    Show(ApiOutputArgs),
    /// Re-read the policy directory on the running server and swap it in atomically. A policy that widens
    /// what agents may do is refused (exit 1, the widenings listed) unless --force.
    Reload(PolicyReloadArgs),
}

/// Options of `aura policy check`.
#[derive(Debug, Args)]
pub(crate) struct PolicyCheckArgs {
    /// The policy directory [default: `policies.dir` from the config, else ./policies].
    pub dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura policy reload`.
#[derive(Debug, Args)]
pub(crate) struct PolicyReloadArgs {
    /// Accept a policy that widens what agents may do.
    #[arg(long)]
    pub force: bool,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `aura approvals …`
#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List approvals, newest first.
    List(ApprovalsListArgs),
    /// Approve a pending approval: the identical action may then run once.
    Approve(ApprovalDecideArgs),
    /// Deny a pending approval.
    Deny(ApprovalDecideArgs),
}

/// The state of an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ApprovalStateArg {
    /// Waiting for a human.
    Pending,
    /// Approved (the action may run once).
    Approved,
    /// Denied.
    Denied,
    /// Not decided in time.
    Expired,
}

/// Options of `aura approvals list`.
#[derive(Debug, Args)]
pub(crate) struct ApprovalsListArgs {
    /// Only approvals in this state.
    #[arg(long, value_enum)]
    pub state: Option<ApprovalStateArg>,
    /// Only this agent's approvals.
    #[arg(long)]
    pub agent: Option<String>,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura approvals approve|deny`.
#[derive(Debug, Args)]
pub(crate) struct ApprovalDecideArgs {
    /// The approval id (from the decision or `aura approvals list`).
    pub id: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura budgets`.
#[derive(Debug, Args)]
pub(crate) struct BudgetsArgs {
    /// The agent.
    #[arg(long)]
    pub agent: String,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Exit codes of `aura decide`, shown in its `--help`.
pub(crate) const DECIDE_EXIT_CODES: &str = "\
Exit codes:
  0  allow: the action may run (settle it afterwards with `aura settle DECISION_ID`)
  1  the server could not be asked, or refused the request (e.g. an invalid action)
  2  usage error
  3  deny or halt: the action must not run
  4  escalate: a human must approve it first (`aura approvals approve ID`)";

/// Options of `aura decide`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("cost").args(["cost_usd", "cost_micros"])))]
pub(crate) struct DecideArgs {
    /// The acting agent (an agent token acts as its own agent and may omit it).
    #[arg(long)]
    pub agent: Option<String>,
    /// Action kind: llm_call, tool_call, http_request, shell, file_read, file_write, message or custom.
    #[arg(long)]
    pub kind: String,
    /// Model, tool, URL, program, path or recipient.
    #[arg(long)]
    pub target: String,
    /// Arguments, a JSON object (e.g. '{"env":"prod"}').
    #[arg(long, value_name = "JSON", value_parser = crate::govern_cmd::parse_json_object)]
    pub args: Option<serde_json::Value>,
    /// Task or session id.
    #[arg(long)]
    pub task: Option<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::govern_cmd::parse_label)]
    pub labels: Vec<(String, String)>,
    /// Estimated cost in US dollars, at most 6 decimals (e.g. 0.03).
    #[arg(long, value_name = "USD", value_parser = crate::govern_cmd::parse_usd)]
    pub cost_usd: Option<i64>,
    /// Estimated cost in micro-dollars.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub cost_micros: Option<i64>,
    /// Estimated tokens.
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How an allowed action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutcomeArg {
    /// It ran and worked.
    Success,
    /// It ran and failed (counts towards breakers and failure counters).
    Failure,
    /// It did not run: the reservation is released.
    Cancelled,
}

/// Options of `aura settle`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("cost").args(["cost_usd", "cost_micros"])))]
pub(crate) struct SettleArgs {
    /// The decision id printed by `aura decide`.
    pub decision_id: String,
    /// How it went.
    #[arg(long, value_enum)]
    pub outcome: OutcomeArg,
    /// Real cost in US dollars, at most 6 decimals.
    #[arg(long, value_name = "USD", value_parser = crate::govern_cmd::parse_usd)]
    pub cost_usd: Option<i64>,
    /// Real cost in micro-dollars.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub cost_micros: Option<i64>,
    /// Real tokens used.
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `--output` for read commands.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How to reach a running server.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// Base URL of the server [default: http://ADDR of server.listen].
    #[arg(long, env = "AURA_URL")]
    pub url: Option<String>,
    /// Bearer token [default: the contents of DATA_DIR/admin.token].
    #[arg(long, env = "AURA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `aura audit …`
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the audit log's verifier (public) key.
    Pubkey,
    /// Recompute the Merkle tree and check every checkpoint signature and chain link; on tampering name the
    /// first bad sequence number and exit 1.
    Verify(AuditVerifyArgs),
    /// Fetch an inclusion proof (--seq) or a consistency proof (--from) from the running server and check it
    /// locally against a signed checkpoint.
    Prove(AuditProveArgs),
    /// Show what an agent did, step by step: verdicts, reasons, approvals and budget movement.
    Replay(AuditReplayArgs),
    /// Upload sealed segments, checkpoints and the verifier key to S3-compatible storage (idempotent).
    Export(AuditExportArgs),
    /// Delete local sealed segments older than the retention period that were exported (never under a hold).
    Retention(AuditRetentionArgs),
    /// Set or clear the legal hold that stops retention from deleting anything.
    #[command(subcommand)]
    Hold(AuditHoldCommand),
}

/// Options of `aura audit export`.
#[derive(Debug, Args)]
pub(crate) struct AuditExportArgs {
    /// Destination, `s3://bucket/prefix`.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// S3-compatible endpoint URL [default: `AWS_ENDPOINT_URL`, else AWS].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Allow a plain-HTTP endpoint.
    #[arg(long)]
    pub allow_http: bool,
    /// Put every object under S3 Object Lock (COMPLIANCE mode) for this many days.
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u64>,
}

/// Options of `aura audit retention`.
#[derive(Debug, Args)]
pub(crate) struct AuditRetentionArgs {
    /// Keep sealed segments younger than this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 183)]
    pub keep_days: u64,
    /// Show what would be deleted without deleting.
    #[arg(long)]
    pub dry_run: bool,
}

/// `aura audit hold …`
#[derive(Debug, Subcommand)]
pub(crate) enum AuditHoldCommand {
    /// Set a legal hold: retention deletes nothing until it is cleared.
    Set {
        /// Why (case number, request).
        #[arg(long)]
        reason: String,
        /// Who sets it [default: $USER].
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Clear the legal hold.
    Clear,
}

/// Options of `aura audit verify`.
#[derive(Debug, Args)]
pub(crate) struct AuditVerifyArgs {
    /// A checkpoint saved earlier (a signed note): the log must still be consistent with it.
    #[arg(long, value_name = "FILE")]
    pub from_checkpoint: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura audit prove`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("proof").required(true).args(["seq", "from"])))]
pub(crate) struct AuditProveArgs {
    /// Prove that this entry is in the log.
    #[arg(long)]
    pub seq: Option<u64>,
    /// Prove that the log at this size is a prefix of the log now (consistency).
    #[arg(long)]
    pub from: Option<u64>,
    /// The tree size to prove against [default: the latest checkpoint's].
    #[arg(long)]
    pub size: Option<u64>,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura audit replay`.
#[derive(Debug, Args)]
pub(crate) struct AuditReplayArgs {
    /// The agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this task.
    #[arg(long)]
    pub task: Option<String>,
    /// From this time: RFC 3339 (`2026-11-21T08:00:00Z`), a date, or an age such as `90m`, `24h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `aura report …`
#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Map the audit trail of a time range to EU AI Act Art. 12, 14, 19/26 and 73 and ISO/IEC 42001 evidence,
    /// with the verification status of the log. Reads the log directly; works while the server runs.
    Compliance(ReportComplianceArgs),
}

/// Options of `aura report compliance`.
#[derive(Debug, Args)]
pub(crate) struct ReportComplianceArgs {
    /// From this time: RFC 3339 (`2026-11-21T08:00:00Z`), a date, or an age such as `24h`, `30d` [default: the
    /// beginning of the log].
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (same forms as --since) [default: now].
    #[arg(long)]
    pub until: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
    /// Write the report to this file [default: standard output].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// Markdown.
    Md,
    /// A self-contained HTML page with charts.
    Html,
}

/// Options of `aura status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `aura config …`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the configuration file; exit 2 with file:line:column on error.
    Check,
    /// Print the effective configuration (file, environment and flags applied; secrets redacted).
    Show(ConfigShowArgs),
}

/// Options of `aura config show`.
#[derive(Debug, Args)]
pub(crate) struct ConfigShowArgs {
    /// Output format (`table` prints YAML).
    #[arg(long, short, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
}

/// Options of `aura completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `aura bench …`
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Start `aura up` repeatedly on fresh data dirs; report median time to listening and to ready, idle RSS.
    Startup(BenchStartupArgs),
    /// Decision latency of the governance kernel over a generated policy of N rules (p50, p99, decisions/s).
    Kernel(BenchKernelArgs),
    /// Durable audit appends per second with group commit (1, 8, 64 writers), checkpoint lag, verify rate.
    Audit(BenchAuditArgs),
    /// The host sensor's RSS and CPU at 1 s sampling (optionally vs node_exporter), write/read/change latency.
    Sensor(crate::bench_sensor::BenchSensorArgs),
    /// Catalog query latency (p50/p99 µs), HTTP queries/s and update→watch latency over N synthetic assets.
    Catalog(BenchCatalogArgs),
    /// Mesh publish/consume throughput and p99 latency per backend, with the raw client's figures for NATS/Redis.
    Mesh(crate::bench_mesh::BenchMeshArgs),
    /// The LLM gateway's added latency (p50/p99 at concurrency 1 and 64) and requests/s, against a fake upstream.
    Gateway(crate::bench_gateway::BenchGatewayArgs),
    /// The enforcement proxy's added latency (p50, p99) at a fixed request rate against a local target, vs direct.
    Proxy(crate::bench_proxy::BenchProxyArgs),
}

/// Options of `aura bench catalog`.
#[derive(Debug, Args)]
pub(crate) struct BenchCatalogArgs {
    /// Synthetic assets in the catalog.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    pub assets: u64,
    /// Timed in-process queries per query shape.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub queries: u64,
    /// Seconds of HTTP load against a real `aura up` (0 skips the HTTP part).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub http_seconds: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub http_clients: u64,
    /// Asset file updates timed from write to watch event.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub updates: u64,
    /// Print JSON (`query_p50_us`, `query_p99_us`, `http_queries_per_sec`, `update_to_watch_p99_ms`, …).
    #[arg(long)]
    pub json: bool,
}

/// Options of `aura query`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The query (docs/queries.md); several words are joined with spaces.
    #[arg(required = true, num_args = 1.., value_name = "QUERY")]
    pub query: Vec<String>,
    /// Read the data dir's asset files directly instead of asking the running server.
    #[arg(long)]
    pub offline: bool,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Only assets matching this filter (e.g. `kind = container and cpu > 80`); all assets when absent.
    #[arg(num_args = 0.., value_name = "FILTER")]
    pub filter: Vec<String>,
    /// One line per change even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// One JSON event per line (the stream's wire format).
    #[arg(long, conflicts_with = "plain")]
    pub json: bool,
    /// Stop after this many changes.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Server access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Options of `aura scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Only these asset kinds (host, container, pod, service, vm); repeat or separate with commas.
    #[arg(long, value_delimiter = ',', value_name = "KIND")]
    pub kind: Vec<String>,
    /// Only these scanners or tags (local, systemd, docker, libvirt, aws, kubernetes, cloud, containers…).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub scanner: Vec<String>,
    /// Docker endpoint (`unix:///var/run/docker.sock`, `tcp://host:2375`) [default: DOCKER_HOST or the local socket].
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
    /// libvirt connection URI, e.g. `qemu:///system`.
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
    /// Kubernetes: kubeconfig file [default: `discovery.kubernetes.kubeconfig`, KUBECONFIG, ~/.kube/config, in-cluster].
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes: kubeconfig context [default: its current context].
    #[arg(long, value_name = "NAME")]
    pub kube_context: Option<String>,
    /// Kubernetes: only these namespaces; repeat or separate with commas [default: all].
    #[arg(long, short = 'n', value_delimiter = ',', value_name = "NS")]
    pub namespace: Vec<String>,
    /// Kubernetes: label selector, e.g. `app=web,tier!=cache`.
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Show what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura instrument`.
#[derive(Debug, Args)]
pub(crate) struct InstrumentArgs {
    /// What to generate: container, kubernetes, systemd or all.
    #[arg(long, default_value = "all", value_parser = ["container", "kubernetes", "systemd", "all"])]
    pub target: String,
    /// Directory to write into (created when missing).
    #[arg(long, default_value = "aura-instrument", value_name = "DIR")]
    pub out: PathBuf,
    /// Image the Kubernetes manifests run.
    #[arg(long, default_value = "ghcr.io/aura/aura:latest")]
    pub image: String,
    /// Kubernetes namespace of the manifests.
    #[arg(long, default_value = "aura")]
    pub namespace: String,
    /// URL of the Aura server the sensors report to.
    #[arg(long, default_value = "http://aura.aura.svc:7470")]
    pub server: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `aura cache …`
#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Entries, hits and misses of the in-process tier; keys and memory of the Redis tier when configured.
    Stats(CacheArgs),
    /// Drop cached entries (all, or keys matching `--pattern`) and tell other nodes to drop theirs.
    Flush(CacheFlushArgs),
}

/// Options of `aura cache stats`.
#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// Redis URL of the shared hot tier [default: `cache.redis_url` from the config].
    #[arg(long, env = "AURA_CACHE_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Server access (the running server reports every tier, the in-process one included).
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura cache flush`.
#[derive(Debug, Args)]
pub(crate) struct CacheFlushArgs {
    /// Redis URL of the shared hot tier [default: `cache.redis_url` from the config].
    #[arg(long, env = "AURA_CACHE_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Only asset ids matching this glob (`web-*`).
    #[arg(long, default_value = "*")]
    pub pattern: String,
}

/// Options of `aura bench kernel`.
#[derive(Debug, Args)]
pub(crate) struct BenchKernelArgs {
    /// Rules in the generated policy.
    #[arg(long, default_value_t = 1000)]
    pub rules: usize,
    /// Decisions to time.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub decisions: u64,
    /// Print JSON (`p50_us`, `p99_us`, `decisions_per_sec`, …).
    #[arg(long)]
    pub json: bool,
}

/// Options of `aura bench audit`.
#[derive(Debug, Args)]
pub(crate) struct BenchAuditArgs {
    /// Seconds per writer configuration.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Directory for the scratch logs [default: a temporary directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON (`appends_per_sec`, per-writer runs, checkpoint lag, verify rate).
    #[arg(long)]
    pub json: bool,
}

/// Options of `aura bench startup`.
#[derive(Debug, Args)]
pub(crate) struct BenchStartupArgs {
    /// Number of starts.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn grouped_help_names_every_command() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            let line = format!("\n  {} ", sub.get_name());
            assert!(
                HELP_TEMPLATE.contains(&line),
                "help template misses `{}`",
                sub.get_name()
            );
        }
        let listed = HELP_TEMPLATE
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .count();
        assert_eq!(
            listed,
            cmd.get_subcommands().count() + 1,
            "help template lists a command that does not exist"
        );
    }
}
