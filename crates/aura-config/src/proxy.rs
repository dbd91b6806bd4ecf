//! The `proxy` and `mcp` sections: the edges agents reach Aura through besides the API (the HTTP enforcement
//! proxy and the Model Context Protocol server).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::values::{self, boolean, invalid, leaf, show};

/// The `proxy` section: the forward proxy started by `aura up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Start the proxy with `aura up`. Default `true`.
    #[serde(deserialize_with = "enabled")]
    pub enabled: bool,
    /// Address the proxy listens on. Default `127.0.0.1:7471`.
    #[serde(deserialize_with = "values::listen")]
    pub listen: SocketAddr,
    /// Largest request body forwarded, in bytes, 0..=1 GiB (bodies are hashed before the decision). Default 10 MiB.
    #[serde(deserialize_with = "body_bytes")]
    pub max_body_bytes: u64,
    /// Bound on connecting to a target, 1..=600. Default 10.
    #[serde(deserialize_with = "connect_seconds")]
    pub connect_timeout_seconds: u64,
    /// Bound on one plain-HTTP exchange with a target (until the response head), 1..=3600. Default 60.
    #[serde(deserialize_with = "request_seconds")]
    pub request_timeout_seconds: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            enabled: true,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7471)),
            max_body_bytes: 10 * 1024 * 1024,
            connect_timeout_seconds: 10,
            request_timeout_seconds: 60,
        }
    }
}

/// The `mcp` section: the Model Context Protocol server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Serve MCP over Streamable HTTP at `/mcp` on the main listener. Default `true`.
    #[serde(deserialize_with = "enabled")]
    pub enabled: bool,
    /// Absolute directories the `run_command` tool may use as working directory; empty (the default) means the
    /// tool refuses every command.
    #[serde(deserialize_with = "workdirs")]
    pub workdirs: Vec<PathBuf>,
    /// Bound on one command run by `run_command`, 1..=3600. Default 30.
    #[serde(deserialize_with = "request_seconds")]
    pub command_timeout_seconds: u64,
    /// Largest tool answer in bytes (command output, fetched body, query results), 1 KiB..=16 MiB; longer answers
    /// are cut and say so. Default 64 KiB.
    #[serde(deserialize_with = "output_bytes")]
    pub max_output_bytes: u64,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            enabled: true,
            workdirs: Vec::new(),
            command_timeout_seconds: 30,
            max_output_bytes: 64 * 1024,
        }
    }
}

fn enabled<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    boolean(d)
}

fn ranged(text: &str, lo: u64, hi: u64, unit: &str) -> Result<u64, String> {
    let digits = text.trim().strip_prefix('+').unwrap_or(text.trim());
    match digits.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(invalid(format!(
            "{} is not a whole number of {unit} from {lo} to {hi}",
            show(text)
        ))),
    }
}

fn body_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 0, 1024 * 1024 * 1024, "bytes"))
}

fn output_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 1024, 16 * 1024 * 1024, "bytes"))
}

fn connect_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 1, 600, "seconds"))
}

fn request_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 1, 3600, "seconds"))
}

fn workdirs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    let dirs = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
    dirs.into_iter()
        .map(|dir| {
            if dir.starts_with('/') && !dir.split('/').any(|c| c == "..") {
                Ok(PathBuf::from(dir))
            } else {
                Err(D::Error::custom(invalid(format!(
                    "{} is not an absolute directory without `..`",
                    show(&dir)
                ))))
            }
        })
        .collect()
}
