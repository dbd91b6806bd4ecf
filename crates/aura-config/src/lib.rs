//! Aura's configuration: the `aura.yaml` schema, loading, layering and errors with positions.
//!
//! ```no_run
//! use aura_config::{LogFormat, Overrides, load};
//!
//! # fn main() -> Result<(), aura_config::ConfigError> {
//! let mut config = load(None)?.config; // ./aura.yaml if present, else the built-in defaults
//! config.apply(Overrides { log_format: Some(LogFormat::Json), ..Overrides::default() });
//! # Ok(()) }
//! ```
//!
//! Every value is validated while the file is read, so every [`ConfigError`] names the file, the
//! line and column, what is wrong and how to fix it:
//!
//! ```text
//! aura.yaml:2:3: unknown key `listn` in `server`
//!   hint: did you mean `listen`? valid keys: listen, shutdown_timeout_seconds, request_timeout_seconds, max_body_bytes
//! ```
//!
//! Architecture invariant: this crate only reads and validates files; it opens no sockets or
//! databases and knows nothing of the CLI. Flags and environment variables are layered on top
//! by the CLI through [`Config::apply`].

mod catalog;
mod context;
mod error;
mod gateway;
mod index;
mod load;
mod mesh;
mod proxy;
mod schema;
mod starter;
mod values;

pub use catalog::{
    CatalogCacheConfig, CatalogConfig, ColdTierConfig, DiscoveryConfig, KubernetesDiscoveryConfig,
    SCANNER_NAMES,
};
pub use context::{
    ChangesConfig, ContextConfig, FilesConfig, GuardianConfig, SensorConfig, ServiceCheckConfig,
};
pub use error::ConfigError;
pub use gateway::{
    BreakerConfig, CacheBackend, CacheConfig, DeploymentConfig, GatewayConfig, ModelRouteConfig,
    PriceConfig, ProviderConfig, ProviderKind, RetryConfig,
};
pub use load::{DEFAULT_CONFIG_FILE, Loaded, load, parse_str};
pub use mesh::{AgentDecl, MeshBackend, MeshConfig};
pub use proxy::{McpConfig, ProxyConfig};
pub use schema::{
    AuditConfig, AuditExportConfig, Config, EffectGate, GovernanceConfig, LedgerKind, LogConfig,
    LogFormat, Overrides, PoliciesConfig, ServerConfig, StoreConfig, StoreUrl,
};
pub use starter::STARTER_YAML;
