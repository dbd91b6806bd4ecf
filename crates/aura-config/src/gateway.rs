//! The `gateway` section: upstream LLM providers, model routes to their deployments, pricing overrides,
//! timeouts, retries, breakers and caches of the LLM gateway.
//!
//! Provider API keys are never part of the file: each provider names the environment variable that holds its
//! key (`api_key_env`), read by `aura up` at start.

use serde::{Deserialize, Serialize};

/// The `gateway` section. Absent: the gateway endpoints answer `model_not_found` for every model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Upstream providers, each with its wire format and base URL.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Model routes: the model name agents ask for, its deployments (load balanced) and ordered fallbacks.
    #[serde(default)]
    pub models: Vec<ModelRouteConfig>,
    /// Prices added to (or replacing entries of) the bundled pricing table.
    #[serde(default)]
    pub pricing: Vec<PriceConfig>,
    /// Bound on one upstream attempt until its response headers, in seconds, 1..=3600. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Bound on a streamed response going quiet between two chunks, in seconds, 1..=3600. Default 60.
    #[serde(default = "default_timeout")]
    pub stream_idle_timeout_seconds: u64,
    /// Output tokens reserved when a request sets no `max_tokens`. Default 4096.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
    /// Retries on 429, 5xx and timeouts.
    #[serde(default)]
    pub retries: RetryConfig,
    /// The circuit breaker kept per deployment.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Exact-match response and embedding caches.
    #[serde(default)]
    pub cache: CacheConfig,
}

/// The wire format an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI's API (`/v1/chat/completions`, `/v1/embeddings`); also vLLM, Ollama, Azure-style proxies.
    Openai,
    /// Anthropic's Messages API (`/v1/messages`).
    Anthropic,
    /// Google's Gemini API (`/v1beta/models/{model}:generateContent`).
    Gemini,
}

impl ProviderKind {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
        }
    }
}

/// One upstream provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A name deployments refer to, e.g. `openai`.
    pub name: String,
    /// The wire format.
    pub kind: ProviderKind,
    /// Base URL without the API path, e.g. `https://api.openai.com`.
    pub base_url: String,
    /// The environment variable holding the API key; unset sends no key (local servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

/// A model name agents may ask for and where it is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRouteConfig {
    /// The model name in requests, e.g. `gpt-4o-mini`.
    pub name: String,
    /// Where it is served; load balanced by weight among healthy deployments.
    pub deployments: Vec<DeploymentConfig>,
    /// Other model names (routes) tried in order when every deployment failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

/// One deployment of a model route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The provider's name.
    pub provider: String,
    /// The model name upstream (and in the pricing table).
    pub model: String,
    /// Share of the traffic, 1..=1000. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// The price of one model, in integer micro-dollars per million tokens (or per minute of audio).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// The upstream model name.
    pub model: String,
    /// Input (prompt) tokens.
    pub input_per_mtok_micros: i64,
    /// Output (completion) tokens.
    pub output_per_mtok_micros: i64,
    /// Input tokens read from the provider's prompt cache; default the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok_micros: Option<i64>,
    /// Input tokens written to the provider's prompt cache; default the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok_micros: Option<i64>,
    /// Audio, per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_per_minute_micros: Option<i64>,
}

/// The `gateway.retries` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries of one deployment after the first attempt, 0..=10. Default 2.
    pub max_retries: u32,
    /// First backoff in milliseconds, doubled per retry (with jitter); a `Retry-After` wins. Default 200.
    pub backoff_ms: u64,
    /// Longest wait before a retry, `Retry-After` included, in milliseconds. Default 10000.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

/// The `gateway.breaker` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open a deployment's breaker. Default 5.
    pub failures: u32,
    /// Seconds an open breaker stays open before one probe is let through. Default 30.
    pub cooldown_seconds: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown_seconds: 30,
        }
    }
}

/// The `gateway.cache` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache non-streamed chat responses by a hash of the normalized request. Default false.
    pub responses: bool,
    /// Cache embeddings by a hash of model and input. Default false.
    pub embeddings: bool,
    /// Seconds an entry lives. Default 3600.
    pub ttl_seconds: u64,
    /// Entries kept in process. Default 10000.
    pub max_entries: u64,
    /// Where cached answers live: `memory` (in process, the default) or `redis` (shared between nodes, at
    /// `redis_url`).
    pub backend: CacheBackend,
    /// A `redis://` URL for `backend: redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
}

/// Where the gateway's caches live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In process, bounded by `max_entries`.
    #[default]
    Memory,
    /// In Redis (entries expire after `ttl_seconds`), shared by every node using the same Redis.
    Redis,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            responses: false,
            embeddings: false,
            ttl_seconds: 3600,
            max_entries: 10_000,
            backend: CacheBackend::Memory,
            redis_url: None,
        }
    }
}

impl GatewayConfig {
    /// Checks references and ranges the types cannot express; the message names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        if self.cache.backend == CacheBackend::Redis
            && !self
                .cache
                .redis_url
                .as_deref()
                .is_some_and(|u| u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            return Err(
                "gateway.cache: backend `redis` needs `redis_url: redis://host:port`".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.providers {
            if !names.insert(p.name.as_str()) {
                return Err(format!("gateway.providers: `{}` is defined twice", p.name));
            }
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                return Err(format!(
                    "gateway.providers `{}`: base_url `{}` must start with http:// or https://",
                    p.name, p.base_url
                ));
            }
        }
        let routes: std::collections::HashSet<&str> =
            self.models.iter().map(|m| m.name.as_str()).collect();
        if routes.len() != self.models.len() {
            return Err("gateway.models: a model name is defined twice".into());
        }
        for m in &self.models {
            if m.deployments.is_empty() {
                return Err(format!(
                    "gateway.models `{}`: needs at least one deployment",
                    m.name
                ));
            }
            for d in &m.deployments {
                if !names.contains(d.provider.as_str()) {
                    return Err(format!(
                        "gateway.models `{}`: unknown provider `{}`; define it under gateway.providers",
                        m.name, d.provider
                    ));
                }
                if d.weight == 0 || d.weight > 1000 {
                    return Err(format!(
                        "gateway.models `{}`: weight must be 1..=1000",
                        m.name
                    ));
                }
            }
            for f in &m.fallbacks {
                if !routes.contains(f.as_str()) || f == &m.name {
                    return Err(format!(
                        "gateway.models `{}`: fallback `{f}` is not another configured model",
                        m.name
                    ));
                }
            }
        }
        for p in &self.pricing {
            let prices = [
                Some(p.input_per_mtok_micros),
                Some(p.output_per_mtok_micros),
                p.cached_input_per_mtok_micros,
                p.cache_write_per_mtok_micros,
                p.audio_per_minute_micros,
            ];
            if prices.into_iter().flatten().any(|x| x < 0) {
                return Err(format!(
                    "gateway.pricing `{}`: prices must not be negative",
                    p.model
                ));
            }
        }
        if !(1..=3600).contains(&self.timeout_seconds)
            || !(1..=3600).contains(&self.stream_idle_timeout_seconds)
        {
            return Err("gateway: timeouts must be 1..=3600 seconds".into());
        }
        if self.retries.max_retries > 10 {
            return Err("gateway.retries.max_retries must be 0..=10".into());
        }
        Ok(())
    }
}

fn default_timeout() -> u64 {
    60
}

fn default_max_tokens() -> u64 {
    4096
}

fn default_weight() -> u32 {
    1
}
