//! The configuration schema: plain Rust types, their documented defaults and layering.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

use crate::values;

/// The whole `aura.yaml` file. Every field has a default, so an empty file (or no file) is valid.
///
/// Read it with [`crate::load`] or [`crate::parse_str`]: they turn the checks done during
/// deserialization into [`crate::ConfigError`]s with positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server (API, dashboard, gateway, MCP).
    #[serde(deserialize_with = "values::section")]
    pub server: ServerConfig,
    /// Directory for local state (the SQLite database, audit log, …). Default `./aura-data`.
    #[serde(deserialize_with = "values::data_dir")]
    pub data_dir: PathBuf,
    /// Where durable state is stored.
    #[serde(deserialize_with = "values::section")]
    pub store: StoreConfig,
    /// Logging.
    #[serde(deserialize_with = "values::section")]
    pub log: LogConfig,
    /// Governance policy files.
    #[serde(deserialize_with = "values::section")]
    pub policies: PoliciesConfig,
    /// The audit log.
    #[serde(deserialize_with = "values::section")]
    pub audit: AuditConfig,
    /// Budgets and other governance state.
    #[serde(deserialize_with = "values::section")]
    pub governance: GovernanceConfig,
    /// The context plane: the local host sensor, asset files, the Guardian.
    #[serde(deserialize_with = "values::section")]
    pub context: crate::context::ContextConfig,
    /// The event mesh and the agents Aura runs.
    #[serde(deserialize_with = "values::section")]
    pub mesh: crate::mesh::MeshConfig,
    /// The LLM gateway; `None` (the default) routes no model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<crate::gateway::GatewayConfig>,
    /// The HTTP enforcement proxy agents send their outbound HTTP through.
    #[serde(deserialize_with = "values::section")]
    pub proxy: crate::ProxyConfig,
    /// The MCP server (Streamable HTTP at `/mcp`, stdio with `aura mcp`).
    #[serde(deserialize_with = "values::section")]
    pub mcp: crate::McpConfig,
    /// The asset catalog: query defaults and watch buffers.
    #[serde(deserialize_with = "values::section")]
    pub catalog: crate::catalog::CatalogConfig,
    /// Discovery scanners `aura up` runs at start and on an interval.
    #[serde(deserialize_with = "values::section")]
    pub discovery: crate::catalog::DiscoveryConfig,
    /// The catalog's cache tiers: in-process, Redis, S3 cold archive.
    #[serde(deserialize_with = "values::section")]
    pub cache: crate::catalog::CatalogCacheConfig,
}

/// The `server` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on. Default `127.0.0.1:7470`.
    #[serde(deserialize_with = "values::listen")]
    pub listen: SocketAddr,
    /// Bound on draining in-flight requests at SIGINT/SIGTERM, 1..=3600. Default 10.
    #[serde(deserialize_with = "values::shutdown_timeout_seconds")]
    pub shutdown_timeout_seconds: u64,
    /// Bound on handling one request, 1..=3600. Default 30.
    #[serde(deserialize_with = "values::request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Largest accepted request body in bytes, 1..=1 GiB. Default 2 MiB.
    #[serde(deserialize_with = "values::max_body_bytes")]
    pub max_body_bytes: u64,
}

/// The `store` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The database; `None` means the SQLite file `<data_dir>/aura.db`
    /// (see [`Config::effective_store_url`]).
    #[serde(deserialize_with = "values::store_url")]
    pub url: Option<StoreUrl>,
    /// PostgreSQL only: the schema to use, created if missing. `None` uses the server's default.
    #[serde(deserialize_with = "values::store_schema")]
    pub schema: Option<String>,
    /// Size of the connection pool, 1..=1000. Default 10.
    #[serde(deserialize_with = "values::max_connections")]
    pub max_connections: u32,
    /// Bound on opening one connection, 1..=600. Default 5.
    #[serde(deserialize_with = "values::connect_timeout_seconds")]
    pub connect_timeout_seconds: u64,
}

/// The `log` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Output format. Default [`LogFormat::Text`].
    #[serde(deserialize_with = "values::log_format")]
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info,aura_server=debug`. Default `info`.
    /// `AURA_LOG` overrides it at runtime (handled by the CLI).
    #[serde(deserialize_with = "values::log_level")]
    pub level: String,
}

/// The `policies` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesConfig {
    /// Directory of policy YAML files. Default `./policies`; relative paths (the default
    /// included) are resolved like [`Config::data_dir`]: against the config file's directory
    /// when there is a file, else the current directory.
    #[serde(deserialize_with = "values::policies_dir")]
    pub dir: PathBuf,
    /// Reload policies when their files change. Default `true`.
    #[serde(deserialize_with = "values::watch")]
    pub watch: bool,
    /// Accept a reload that widens what an agent may do without `--force`. Default `false`.
    #[serde(deserialize_with = "values::allow_widening")]
    pub allow_widening: bool,
}

/// The `audit` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How often a signed checkpoint is emitted while entries arrive, in milliseconds,
    /// 1..=1000. Default 100.
    #[serde(deserialize_with = "values::checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Size in bytes at which an audit segment is sealed, 1 MiB..=4 GiB. Default 64 MiB.
    #[serde(deserialize_with = "values::segment_bytes")]
    pub segment_bytes: u64,
    /// The checkpoint origin line (C2SP tlog-checkpoint), e.g. `example.com/log`: 1 to 255
    /// printable ASCII characters, no spaces and no `+`. Default `aura.local/audit`.
    #[serde(deserialize_with = "values::audit_origin")]
    pub origin: String,
    /// When an agent's action may take effect after its decision was appended to the audit log.
    /// Default [`EffectGate::Written`].
    #[serde(deserialize_with = "values::effect_gate")]
    pub effect_gate: EffectGate,
    /// Periodic export to S3-compatible storage by `aura up`; `None` (the default) exports nothing.
    #[serde(
        deserialize_with = "values::audit_export",
        skip_serializing_if = "Option::is_none"
    )]
    pub export: Option<AuditExportConfig>,
}

/// The `audit.export` section: where and how often `aura up` exports the audit log.
///
/// Credentials are never part of the file: the exporter reads the standard AWS environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditExportConfig {
    /// `s3://bucket` or `s3://bucket/prefix`. Required.
    #[serde(deserialize_with = "values::export_url")]
    pub url: String,
    /// An S3-compatible endpoint such as `http://127.0.0.1:9000`; `None` uses `AWS_ENDPOINT_URL`,
    /// else AWS.
    #[serde(
        default,
        deserialize_with = "values::export_endpoint",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint: Option<String>,
    /// The region. Default `us-east-1`.
    #[serde(
        default = "default_export_region",
        deserialize_with = "values::export_region"
    )]
    pub region: String,
    /// Allow a plain-HTTP endpoint. Default `false`.
    #[serde(default, deserialize_with = "values::allow_http")]
    pub allow_http: bool,
    /// Seconds between exports, 1..=86400 (the first runs at start). Default 3600.
    #[serde(
        default = "default_export_interval",
        deserialize_with = "values::export_interval_seconds"
    )]
    pub interval_seconds: u64,
    /// S3 Object Lock COMPLIANCE retention of every uploaded object, in days, 1..=36500;
    /// `None` leaves it to the bucket's default.
    #[serde(
        default,
        deserialize_with = "values::retention_days",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_days: Option<u64>,
}

/// The `governance` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// A budget reservation not settled within this many seconds is released, 1..=86400.
    /// Default 300.
    #[serde(deserialize_with = "values::reservation_ttl_seconds")]
    pub reservation_ttl_seconds: u64,
    /// Where budget counters live. Default [`LedgerKind::Store`].
    #[serde(deserialize_with = "values::ledger")]
    pub ledger: LedgerKind,
}

/// When an action may take effect, relative to its decision's audit entry (`audit.effect_gate`).
///
/// Either way the decision is in the log before the effect, and an entry acknowledged by the audit API is
/// fdatasync'd; the two differ only in what a power loss in the fdatasync's window (well under a millisecond) can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectGate {
    /// Once the entry is written to the log file: it survives a crash or `kill -9` of Aura; the fdatasync that makes
    /// it survive a power loss is group-committed while the effect runs.
    #[default]
    Written,
    /// Only once the entry is fdatasync'd: survives a power loss too, at the cost of one fdatasync on every action's
    /// path.
    Durable,
}

impl EffectGate {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectGate::Written => "written",
            EffectGate::Durable => "durable",
        }
    }
}

/// Where budget counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    /// In the state store, shared by every process using it.
    #[default]
    Store,
    /// In this process only; lost on restart.
    Memory,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A validated database location.
///
/// Serializes to its URL, password included: call [`Config::redacted`] before showing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file (relative paths in a file are already resolved against the
    /// file's directory).
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, as written.
    Postgres(String),
}

/// Values given on the command line or in the environment, layered over the file by
/// [`Config::apply`]. `None` leaves the file's (or the default) value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` / `AURA_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir` / `AURA_DATA_DIR`; a relative path stays relative to the current directory.
    pub data_dir: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Layers flag/environment values over this configuration.
    pub fn apply(&mut self, overrides: Overrides) {
        let Overrides {
            listen,
            data_dir,
            log_format,
        } = overrides;
        if let Some(listen) = listen {
            self.server.listen = listen;
        }
        if let Some(data_dir) = data_dir {
            self.data_dir = data_dir;
        }
        if let Some(format) = log_format {
            self.log.format = format;
        }
    }

    /// A copy that is safe to show: the password of a database URL is replaced by `***`
    /// (`postgres://user:***@host/db`, including a `password=` query parameter).
    #[must_use]
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        if let Some(StoreUrl::Postgres(url)) = &mut copy.store.url {
            *url = values::redact_url(url);
        }
        copy
    }

    /// The database actually used: `store.url`, or the SQLite file `<data_dir>/aura.db` when it
    /// is not set.
    #[must_use]
    pub fn effective_store_url(&self) -> StoreUrl {
        match &self.store.url {
            Some(url) => url.clone(),
            None => StoreUrl::Sqlite(self.data_dir.join("aura.db")),
        }
    }

    /// The SQLite database file in use, or `None` when the store is PostgreSQL.
    #[must_use]
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self.effective_store_url() {
            StoreUrl::Sqlite(path) => Some(path),
            StoreUrl::Postgres(_) => None,
        }
    }
}

/// The documented product defaults (`docs/configuration.md`).
impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            data_dir: PathBuf::from("./aura-data"),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            policies: PoliciesConfig::default(),
            audit: AuditConfig::default(),
            governance: GovernanceConfig::default(),
            context: crate::context::ContextConfig::default(),
            mesh: crate::mesh::MeshConfig::default(),
            gateway: None,
            proxy: crate::ProxyConfig::default(),
            mcp: crate::McpConfig::default(),
            catalog: crate::catalog::CatalogConfig::default(),
            discovery: crate::catalog::DiscoveryConfig::default(),
            cache: crate::catalog::CatalogCacheConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7470)),
            shutdown_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            schema: None,
            max_connections: 10,
            connect_timeout_seconds: 5,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        PoliciesConfig {
            dir: PathBuf::from("./policies"),
            watch: true,
            allow_widening: false,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_interval_ms: 100,
            segment_bytes: 64 * 1024 * 1024,
            origin: "aura.local/audit".to_owned(),
            effect_gate: EffectGate::Written,
            export: None,
        }
    }
}

fn default_export_region() -> String {
    "us-east-1".to_owned()
}

fn default_export_interval() -> u64 {
    3600
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            reservation_ttl_seconds: 300,
            ledger: LedgerKind::Store,
        }
    }
}

impl LogFormat {
    /// The name used in `aura.yaml` and on the command line: `text` or `json`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LedgerKind {
    /// The name used in `aura.yaml`: `store` or `memory`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Store => "store",
            LedgerKind::Memory => "memory",
        }
    }
}

impl fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StoreUrl {
    /// The URL as written in `aura.yaml` (`sqlite://PATH` or the PostgreSQL URL), password
    /// included.
    #[must_use]
    pub fn to_url(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => url.clone(),
        }
    }
}

impl Serialize for StoreUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_url())
    }
}
