//! The `catalog`, `discovery` and `cache` sections (context plane II): the in-memory asset catalog, the
//! scanners `aura up` runs at start and on an interval, and the cache tiers (in-process hot tier, the shared
//! Redis tier, the S3-compatible cold archive of asset history).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::values::{self, invalid, invalid_with_hint, leaf, optional_leaf, show};

/// The `catalog` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Rows a query returns when it names no `limit`, 1..=100000. Default 100.
    #[serde(deserialize_with = "default_limit")]
    pub default_limit: u64,
    /// Changes buffered per watcher before it is told it lagged, 16..=1000000. Default 4096.
    #[serde(deserialize_with = "watch_buffer")]
    pub watch_buffer: u64,
    /// Parsed queries kept for reuse, 1..=1000000. Default 1024.
    #[serde(deserialize_with = "parsed_cache")]
    pub parsed_cache: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            default_limit: 100,
            watch_buffer: 4096,
            parsed_cache: 1024,
        }
    }
}

/// The `discovery` section: scanners `aura up` runs (none by default; `aura scan` runs any on demand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Scanners (or tags) run when `aura up` starts: local, systemd, docker, libvirt, aws, kubernetes, or the
    /// tags host, services, containers, vms, cloud, k8s. Default none.
    #[serde(deserialize_with = "scanners")]
    pub scanners: Vec<String>,
    /// Seconds between two runs, 0..=604800; 0 (the default) runs them once at start.
    #[serde(deserialize_with = "interval_seconds")]
    pub interval_seconds: u64,
    /// Docker endpoint (`unix:///var/run/docker.sock`, `tcp://HOST:2375`); `DOCKER_HOST` or the local socket
    /// when unset.
    #[serde(
        deserialize_with = "docker_host",
        skip_serializing_if = "Option::is_none"
    )]
    pub docker_host: Option<String>,
    /// libvirt connection URI (`qemu:///system`); virsh's default when unset.
    #[serde(
        deserialize_with = "libvirt_uri",
        skip_serializing_if = "Option::is_none"
    )]
    pub libvirt_uri: Option<String>,
    /// The Kubernetes scanner (builds with cargo feature `k8s`).
    #[serde(deserialize_with = "values::section")]
    pub kubernetes: KubernetesDiscoveryConfig,
}

/// The `discovery.kubernetes` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesDiscoveryConfig {
    /// A kubeconfig file (relative to the config file's directory); `KUBECONFIG`, `~/.kube/config`, then the
    /// in-cluster service account when unset.
    #[serde(
        deserialize_with = "kubeconfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; its current context when unset.
    #[serde(
        deserialize_with = "kube_context",
        skip_serializing_if = "Option::is_none"
    )]
    pub context: Option<String>,
    /// Namespaces read; every namespace when empty (the default).
    #[serde(deserialize_with = "namespaces")]
    pub namespaces: Vec<String>,
    /// A label selector applied to every list, e.g. `app=web,tier!=cache`.
    #[serde(
        deserialize_with = "label_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub label_selector: Option<String>,
}

/// The `cache` section: the catalog's cache tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogCacheConfig {
    /// Assets held by the in-process hot tier, 1..=10000000. Default 10000.
    #[serde(deserialize_with = "hot_capacity")]
    pub hot_capacity: u64,
    /// Seconds an asset stays in the hot tier, 1..=86400. Default 300.
    #[serde(deserialize_with = "ttl_seconds")]
    pub hot_ttl_seconds: u64,
    /// The Redis tier shared by Aura nodes (`redis://HOST:6379/0`); none when unset.
    #[serde(
        deserialize_with = "redis_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and of the invalidation channel. Default `aura:`.
    #[serde(deserialize_with = "redis_prefix")]
    pub redis_prefix: String,
    /// Seconds an asset stays in the Redis tier, 1..=86400. Default 300.
    #[serde(deserialize_with = "ttl_seconds")]
    pub redis_ttl_seconds: u64,
    /// The cold tier: every asset version archived to S3-compatible storage; none when unset.
    #[serde(deserialize_with = "cold", skip_serializing_if = "Option::is_none")]
    pub cold: Option<ColdTierConfig>,
}

impl Default for CatalogCacheConfig {
    fn default() -> Self {
        CatalogCacheConfig {
            hot_capacity: 10_000,
            hot_ttl_seconds: 300,
            redis_url: None,
            redis_prefix: "aura:".to_owned(),
            redis_ttl_seconds: 300,
            cold: None,
        }
    }
}

/// The `cache.cold` section. Credentials come from the standard AWS environment variables, never the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdTierConfig {
    /// `s3://bucket` or `s3://bucket/prefix`. Required.
    #[serde(deserialize_with = "values::export_url")]
    pub url: String,
    /// An S3-compatible endpoint such as `http://127.0.0.1:9000`; AWS when unset.
    #[serde(
        default,
        deserialize_with = "values::export_endpoint",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint: Option<String>,
    /// The region. Default `us-east-1`.
    #[serde(default = "default_region", deserialize_with = "values::export_region")]
    pub region: String,
    /// Allow a plain-HTTP endpoint. Default `false`.
    #[serde(default, deserialize_with = "values::allow_http")]
    pub allow_http: bool,
}

impl ColdTierConfig {
    /// The bucket and key prefix of `url` (`s3://bucket/a/b` → (`bucket`, `a/b`)).
    #[must_use]
    pub fn bucket_and_prefix(&self) -> (String, String) {
        let rest = self.url.trim_start_matches("s3://");
        match rest.split_once('/') {
            Some((bucket, prefix)) => (bucket.to_owned(), prefix.trim_matches('/').to_owned()),
            None => (rest.to_owned(), String::new()),
        }
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Scanner names and tags `discovery.scanners` accepts.
pub const SCANNER_NAMES: &[&str] = &[
    "local",
    "systemd",
    "docker",
    "libvirt",
    "aws",
    "kubernetes",
    "host",
    "services",
    "containers",
    "vms",
    "cloud",
    "k8s",
];

fn ranged(text: &str, lo: u64, hi: u64, unit: &str) -> Result<u64, String> {
    let digits = text.trim().strip_prefix('+').unwrap_or(text.trim());
    match digits.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" of {unit}")
            };
            Err(invalid(format!(
                "{} is not a whole number{unit} from {lo} to {hi}",
                show(text)
            )))
        }
    }
}

fn default_limit<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 1, 100_000, "rows"))
}
fn watch_buffer<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 16, 1_000_000, "changes"))
}
fn parsed_cache<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 1, 1_000_000, "queries"))
}
fn interval_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 0, 604_800, "seconds"))
}
fn hot_capacity<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 1, 10_000_000, "assets"))
}
fn ttl_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| ranged(t, 1, 86_400, "seconds"))
}

/// One scanner name, validated where it stands (so the error points at the list item).
struct ScannerName(String);

impl<'de> Deserialize<'de> for ScannerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |t| {
            let t = t.trim();
            if SCANNER_NAMES.contains(&t) {
                Ok(ScannerName(t.to_owned()))
            } else {
                let list = SCANNER_NAMES.join(", ");
                Err(invalid_with_hint(
                    format!("{} is not a scanner", show(t)),
                    &match values::suggest(t, SCANNER_NAMES) {
                        Some(best) => format!("did you mean `{best}`? use one of: {list}"),
                        None => format!("use one of: {list}"),
                    },
                ))
            }
        })
    }
}

fn scanners<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Option::<Vec<ScannerName>>::deserialize(d)?.unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for ScannerName(n) in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn docker_host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional_leaf(d, |t| {
        let t = t.trim();
        let ok = ["unix://", "tcp://", "http://", "https://"]
            .iter()
            .any(|s| t.strip_prefix(s).is_some_and(|rest| !rest.is_empty()))
            && !t.contains(char::is_whitespace);
        if ok {
            Ok(t.to_owned())
        } else {
            Err(invalid_with_hint(
                format!("{} is not a Docker endpoint", show(t)),
                "use unix:///var/run/docker.sock or tcp://HOST:2375",
            ))
        }
    })
}

fn libvirt_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional_leaf(d, |t| {
        let t = t.trim();
        if t.contains("://") && !t.contains(char::is_whitespace) {
            Ok(t.to_owned())
        } else {
            Err(invalid_with_hint(
                format!("{} is not a libvirt URI", show(t)),
                "use a URI such as qemu:///system or qemu+ssh://host/system",
            ))
        }
    })
}

fn kubeconfig<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    optional_leaf(d, |t| Ok(PathBuf::from(t.trim())))
}

fn kube_context<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional_leaf(d, |t| {
        let t = t.trim();
        if t.contains(char::is_whitespace) {
            Err(invalid(format!("{} is not a context name", show(t))))
        } else {
            Ok(t.to_owned())
        }
    })
}

/// A namespace name: an RFC 1123 label (lowercase letters, digits, `-`, at most 63, alphanumeric ends).
struct Namespace(String);

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |t| {
            let t = t.trim();
            let ok = !t.is_empty()
                && t.len() <= 63
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !t.starts_with('-')
                && !t.ends_with('-');
            if ok {
                Ok(Namespace(t.to_owned()))
            } else {
                Err(invalid_with_hint(
                    format!("{} is not a namespace name", show(t)),
                    "use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit), e.g. kube-system",
                ))
            }
        })
    }
}

fn namespaces<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Option::<Vec<Namespace>>::deserialize(d)?.unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for Namespace(n) in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn label_selector<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional_leaf(d, |t| {
        let t = t.trim();
        let ok = t.split(',').all(|term| {
            let term = term.trim();
            !term.is_empty()
                && term.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(
                            b,
                            b'-' | b'_' | b'.' | b'/' | b'=' | b'!' | b' ' | b'(' | b')'
                        )
                })
        }) && t.matches('(').count() == t.matches(')').count();
        if ok {
            Ok(t.to_owned())
        } else {
            Err(invalid_with_hint(
                format!("{} is not a label selector", show(t)),
                "use terms separated by commas: `key=value`, `key!=value`, `key`, `!key`, `key in (a,b)`, e.g. app=web,tier!=cache",
            ))
        }
    })
}

fn redis_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional_leaf(d, |t| {
        let t = t.trim();
        let rest = t
            .strip_prefix("redis://")
            .or_else(|| t.strip_prefix("rediss://"));
        match rest {
            Some(r) if !r.is_empty() && !t.contains(char::is_whitespace) => Ok(t.to_owned()),
            _ => Err(invalid_with_hint(
                format!("{} is not a Redis URL", show(t)),
                "use redis://HOST:PORT/DB or rediss://HOST:PORT, e.g. redis://127.0.0.1:6379/0",
            )),
        }
    })
}

fn redis_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    leaf(d, |t| {
        if t.len() <= 64 && !t.contains(char::is_whitespace) && !t.contains(['*', '?', '[']) {
            Ok(t.to_owned())
        } else {
            Err(invalid_with_hint(
                format!("{} is not a key prefix", show(t)),
                "use at most 64 characters without spaces or glob characters (`*`, `?`, `[`), e.g. aura:",
            ))
        }
    })
}

fn cold<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ColdTierConfig>, D::Error> {
    Option::<ColdTierConfig>::deserialize(d)
}
