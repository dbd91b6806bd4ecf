//! The `mesh:` section: which event-mesh backend `aura up` uses, the embedded log's segment size, the dead-letter
//! alert threshold, the local fallback spool, and the agents Aura runs itself (child processes or tmux windows).

use serde::{Deserialize, Deserializer, Serialize};

use crate::values;

/// The `mesh` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Backend. Default [`MeshBackend::Embedded`].
    #[serde(deserialize_with = "backend")]
    pub backend: MeshBackend,
    /// Server URL for nats, redis and kafka (`nats://…`, `redis://…`, `kafka://host:port`).
    #[serde(deserialize_with = "url")]
    pub url: Option<String>,
    /// Size at which an embedded log segment is sealed, 4096..=4 GiB. Default 64 MiB.
    #[serde(deserialize_with = "segment_bytes")]
    pub segment_bytes: u64,
    /// Warn (log + `aura_mesh_dlq_alerts_total`) once a dead-letter queue holds this many entries, 0 = never.
    /// Default 100.
    #[serde(deserialize_with = "dlq_alert_threshold")]
    pub dlq_alert_threshold: u64,
    /// Spool publishes to the embedded log while a remote backend is down. Default true.
    #[serde(deserialize_with = "values::watch")]
    pub spool: bool,
    /// Agents Aura runs and watches. Default none.
    #[serde(default)]
    pub agents: Vec<AgentDecl>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            backend: MeshBackend::Embedded,
            url: None,
            segment_bytes: 64 << 20,
            dlq_alert_threshold: 100,
            spool: true,
            agents: Vec::new(),
        }
    }
}

/// Which backend the mesh uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshBackend {
    /// The durable segment log in the data dir.
    #[default]
    Embedded,
    /// NATS JetStream.
    Nats,
    /// Redis Streams.
    Redis,
    /// Kafka (binaries built with the `kafka` feature).
    Kafka,
}

impl MeshBackend {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MeshBackend::Embedded => "embedded",
            MeshBackend::Nats => "nats",
            MeshBackend::Redis => "redis",
            MeshBackend::Kafka => "kafka",
        }
    }
}

/// An agent Aura runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDecl {
    /// Its name (the agent naming rule).
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// `process` (a child of `aura up`) or `tmux` (a window of the `ai-infrastructure` session).
    #[serde(default = "process")]
    pub mode: String,
    /// Restart when no heartbeat came for this many seconds (unset: only when it exits).
    #[serde(default)]
    pub heartbeat_timeout_seconds: Option<u64>,
    /// Start it with `aura up`.
    #[serde(default = "yes")]
    pub autostart: bool,
}

fn process() -> String {
    "process".into()
}

fn yes() -> bool {
    true
}

const BACKENDS: &[&str] = &["embedded", "nats", "redis", "kafka"];

fn backend<'de, D: Deserializer<'de>>(d: D) -> Result<MeshBackend, D::Error> {
    values::leaf(d, |text| match text.trim().to_ascii_lowercase().as_str() {
        "embedded" => Ok(MeshBackend::Embedded),
        "nats" => Ok(MeshBackend::Nats),
        "redis" => Ok(MeshBackend::Redis),
        "kafka" => Ok(MeshBackend::Kafka),
        other => {
            let what = format!("unknown mesh backend {}", values::show(text));
            match values::suggest(other, BACKENDS) {
                Some(best) => Err(values::invalid_with_hint(
                    what,
                    &format!("did you mean `{best}`? {BACKEND_HINT}"),
                )),
                None => Err(values::invalid(what)),
            }
        }
    })
}

pub(crate) const BACKEND_HINT: &str = "use one of: embedded, nats, redis, kafka";
pub(crate) const URL_HINT: &str =
    "use nats://HOST:PORT, redis://HOST:PORT or kafka://HOST:PORT, e.g. nats://127.0.0.1:4222";

fn url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    values::optional_leaf(d, |text| {
        let t = text.trim();
        if ["nats://", "tls://", "redis://", "rediss://", "kafka://"]
            .iter()
            .any(|p| t.starts_with(p) && t.len() > p.len())
        {
            Ok(t.to_owned())
        } else {
            Err(values::invalid(format!(
                "unsupported mesh url {}",
                values::show(text)
            )))
        }
    })
}

pub(crate) const SEGMENT_BYTES: values::Range = values::Range::new(4096, 4 << 30, "bytes");
pub(crate) const DLQ_THRESHOLD: values::Range = values::Range::new(0, 1_000_000_000, "entries");

fn segment_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    values::leaf(d, |text| SEGMENT_BYTES.check(text))
}

fn dlq_alert_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    values::leaf(d, |text| DLQ_THRESHOLD.check(text))
}
