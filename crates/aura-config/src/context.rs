//! The `context` section: the local host sensor `aura up` runs, change detection, asset-file
//! backups and history, the Guardian, and HTTP service checks.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, Error as _};

use crate::values::{self, Hint, Key, Range, leaf, show};

/// The `context` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    /// The local host sensor.
    #[serde(deserialize_with = "values::section")]
    pub sensor: SensorConfig,
    /// When a sample is worth a write.
    #[serde(deserialize_with = "values::section")]
    pub changes: ChangesConfig,
    /// Asset-file backups and history.
    #[serde(deserialize_with = "values::section")]
    pub files: FilesConfig,
    /// The periodic Guardian.
    #[serde(deserialize_with = "values::section")]
    pub guardian: GuardianConfig,
    /// HTTP health checks run by the `services` sensor. Default none.
    #[serde(deserialize_with = "services")]
    pub services: Vec<ServiceCheckConfig>,
}

/// The `context.sensor` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Run the local host's sensor in `aura up`. Default `true`.
    #[serde(deserialize_with = "enabled")]
    pub enabled: bool,
    /// The asset id of this host; `None` uses the host name.
    #[serde(deserialize_with = "asset_id", skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<String>,
    /// Base sampling interval, 1..=3600 seconds. Default 5.
    #[serde(deserialize_with = "interval_seconds")]
    pub interval_seconds: u64,
    /// The sensors that run. Default compute, memory, storage, network (and services when
    /// `context.services` has checks).
    #[serde(deserialize_with = "sensors")]
    pub sensors: Vec<String>,
    /// Processes listed in the top-N tables, 0..=50. Default 5.
    #[serde(deserialize_with = "top_processes")]
    pub top_processes: u64,
    /// The sensor's own resident-memory cap, 1..=4096 MiB. Default 64.
    #[serde(deserialize_with = "max_rss_mb")]
    pub max_rss_mb: u64,
    /// The sensor's own CPU cap, 1..=100 percent of one core. Default 5.
    #[serde(deserialize_with = "max_cpu_percent")]
    pub max_cpu_percent: u64,
}

/// The `context.changes` section: thresholds of seed 001 §2.2.1 and write pacing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangesConfig {
    /// CPU change worth a write, percentage points 1..=100. Default 5.
    #[serde(deserialize_with = "percent")]
    pub cpu_percent: u64,
    /// Memory change worth a write, percentage points 1..=100. Default 5.
    #[serde(deserialize_with = "percent")]
    pub memory_percent: u64,
    /// Storage change worth a write, percentage points 1..=100. Default 1.
    #[serde(deserialize_with = "percent")]
    pub storage_percent: u64,
    /// Change in open connections worth a write, 1..=100000. Default 10.
    #[serde(deserialize_with = "connections")]
    pub connections: u64,
    /// Least time between two writes of the same asset, 0..=60000 ms. Default 1000.
    #[serde(deserialize_with = "min_write_interval_ms")]
    pub min_write_interval_ms: u64,
    /// Write at least this often even without change, 1..=86400 seconds. Default 60.
    #[serde(deserialize_with = "heartbeat_seconds")]
    pub heartbeat_seconds: u64,
}

/// The `context.files` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Backups kept per asset file, 0..=100. Default 5.
    #[serde(deserialize_with = "backups")]
    pub backups: u64,
    /// Least time between two backups, 0..=86400 seconds. Default 60.
    #[serde(deserialize_with = "backup_interval_seconds")]
    pub backup_interval_seconds: u64,
    /// Keep a compressed history of past values. Default `false`.
    #[serde(deserialize_with = "history")]
    pub history: bool,
}

/// The `context.guardian` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardianConfig {
    /// Run the Guardian periodically in `aura up`. Default `true`.
    #[serde(deserialize_with = "enabled")]
    pub enabled: bool,
    /// Seconds between runs, 1..=86400. Default 60.
    #[serde(deserialize_with = "guardian_interval_seconds")]
    pub interval_seconds: u64,
    /// A file not updated for this long is stale, 0..=604800 seconds (0: never). Default 300.
    #[serde(deserialize_with = "stale_after_seconds")]
    pub stale_after_seconds: u64,
    /// Repair what it finds (each repair is audited). Default `true`.
    #[serde(deserialize_with = "repair")]
    pub repair: bool,
    /// Highest repair level used, 1..=5. Default 5.
    #[serde(deserialize_with = "max_repair_level")]
    pub max_repair_level: u64,
}

/// One HTTP check under `context.services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCheckConfig {
    /// The check's name (letters, digits, `_`, `-`).
    #[serde(deserialize_with = "service_name")]
    pub name: String,
    /// An `http://` or `https://` URL fetched with GET.
    #[serde(deserialize_with = "service_url")]
    pub url: String,
    /// Bound on one check, 1..=300 seconds. Default 5.
    #[serde(
        default = "default_check_timeout",
        deserialize_with = "check_timeout_seconds"
    )]
    pub timeout_seconds: u64,
    /// A response header carrying the service's version, e.g. `x-version`.
    #[serde(
        default,
        deserialize_with = "version_header",
        skip_serializing_if = "Option::is_none"
    )]
    pub version_header: Option<String>,
}

fn default_check_timeout() -> u64 {
    5
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            enabled: true,
            asset_id: None,
            interval_seconds: 5,
            sensors: DEFAULT_SENSORS.iter().map(|s| (*s).to_owned()).collect(),
            top_processes: 5,
            max_rss_mb: 64,
            max_cpu_percent: 5,
        }
    }
}

impl Default for ChangesConfig {
    fn default() -> Self {
        ChangesConfig {
            cpu_percent: 5,
            memory_percent: 5,
            storage_percent: 1,
            connections: 10,
            min_write_interval_ms: 1000,
            heartbeat_seconds: 60,
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            backups: 5,
            backup_interval_seconds: 60,
            history: false,
        }
    }
}

impl Default for GuardianConfig {
    fn default() -> Self {
        GuardianConfig {
            enabled: true,
            interval_seconds: 60,
            stale_after_seconds: 300,
            repair: true,
            max_repair_level: 5,
        }
    }
}

impl ContextConfig {
    /// `<data_dir>/assets`, where asset files live.
    #[must_use]
    pub fn assets_dir(data_dir: &std::path::Path) -> PathBuf {
        data_dir.join("assets")
    }
}

const DEFAULT_SENSORS: &[&str] = &["compute", "memory", "storage", "network"];
const SENSOR_NAMES: &[&str] = &["compute", "memory", "storage", "network", "services"];

// ---- the key table (merged into `values::SECTIONS` and `Key::find`) ----

pub(crate) const CONTEXT_KEYS: &[&str] = &["sensor", "changes", "files", "guardian", "services"];
pub(crate) const SENSOR_KEYS: &[&str] = &[
    "enabled",
    "asset_id",
    "interval_seconds",
    "sensors",
    "top_processes",
    "max_rss_mb",
    "max_cpu_percent",
];
pub(crate) const CHANGES_KEYS: &[&str] = &[
    "cpu_percent",
    "memory_percent",
    "storage_percent",
    "connections",
    "min_write_interval_ms",
    "heartbeat_seconds",
];
pub(crate) const FILES_KEYS: &[&str] = &["backups", "backup_interval_seconds", "history"];
pub(crate) const GUARDIAN_KEYS: &[&str] = &[
    "enabled",
    "interval_seconds",
    "stale_after_seconds",
    "repair",
    "max_repair_level",
];
pub(crate) const SERVICE_KEYS: &[&str] = &["name", "url", "timeout_seconds", "version_header"];

const fn range(lo: u64, hi: u64, unit: &'static str) -> Range {
    Range { lo, hi, unit }
}

const INTERVAL: Range = range(1, 3600, "seconds");
const TOP: Range = range(0, 50, "");
const RSS: Range = range(1, 4096, "MiB");
const CPU: Range = range(1, 100, "percent");
const PERCENT: Range = range(1, 100, "percentage points");
const CONNECTIONS: Range = range(1, 100_000, "connections");
const MIN_WRITE: Range = range(0, 60_000, "milliseconds");
const HEARTBEAT: Range = range(1, 86_400, "seconds");
const BACKUPS: Range = range(0, 100, "");
const BACKUP_INTERVAL: Range = range(0, 86_400, "seconds");
const GUARDIAN_INTERVAL: Range = range(1, 86_400, "seconds");
const STALE: Range = range(0, 604_800, "seconds");
const LEVEL: Range = range(1, 5, "");
const CHECK_TIMEOUT: Range = range(1, 300, "seconds");

const NUMBER: &str = "a whole number";
const BOOLEAN: &str = "true or false";
const SECTION: &str = "a mapping of settings";
const BOOLEAN_HINT: &str = "use true or false";

const fn key(path: &'static str, expects: &'static str, hint: Hint) -> Key {
    Key {
        path,
        expects,
        hint,
    }
}

pub(crate) const KEYS: &[Key] = &[
    key(
        "context",
        SECTION,
        Hint::Text(
            "write `context:` on its own line and indent its sections below it, e.g. `  sensor:`",
        ),
    ),
    key(
        "context.sensor",
        SECTION,
        Hint::Text(
            "write `sensor:` under `context:` and indent its settings, e.g. `    interval_seconds: 5`",
        ),
    ),
    key("context.sensor.enabled", BOOLEAN, Hint::Text(BOOLEAN_HINT)),
    key(
        "context.sensor.asset_id",
        "an asset id",
        Hint::Text(ASSET_ID_HINT),
    ),
    key(
        "context.sensor.interval_seconds",
        NUMBER,
        Hint::Range(INTERVAL),
    ),
    key(
        "context.sensor.sensors",
        "a list of sensor names",
        Hint::Text(SENSORS_HINT),
    ),
    key("context.sensor.top_processes", NUMBER, Hint::Range(TOP)),
    key("context.sensor.max_rss_mb", NUMBER, Hint::Range(RSS)),
    key("context.sensor.max_cpu_percent", NUMBER, Hint::Range(CPU)),
    key(
        "context.changes",
        SECTION,
        Hint::Text(
            "write `changes:` under `context:` and indent its settings, e.g. `    cpu_percent: 5`",
        ),
    ),
    key("context.changes.cpu_percent", NUMBER, Hint::Range(PERCENT)),
    key(
        "context.changes.memory_percent",
        NUMBER,
        Hint::Range(PERCENT),
    ),
    key(
        "context.changes.storage_percent",
        NUMBER,
        Hint::Range(PERCENT),
    ),
    key(
        "context.changes.connections",
        NUMBER,
        Hint::Range(CONNECTIONS),
    ),
    key(
        "context.changes.min_write_interval_ms",
        NUMBER,
        Hint::Range(MIN_WRITE),
    ),
    key(
        "context.changes.heartbeat_seconds",
        NUMBER,
        Hint::Range(HEARTBEAT),
    ),
    key(
        "context.files",
        SECTION,
        Hint::Text(
            "write `files:` under `context:` and indent its settings, e.g. `    backups: 5`",
        ),
    ),
    key("context.files.backups", NUMBER, Hint::Range(BACKUPS)),
    key(
        "context.files.backup_interval_seconds",
        NUMBER,
        Hint::Range(BACKUP_INTERVAL),
    ),
    key("context.files.history", BOOLEAN, Hint::Text(BOOLEAN_HINT)),
    key(
        "context.guardian",
        SECTION,
        Hint::Text(
            "write `guardian:` under `context:` and indent its settings, e.g. `    interval_seconds: 60`",
        ),
    ),
    key(
        "context.guardian.enabled",
        BOOLEAN,
        Hint::Text(BOOLEAN_HINT),
    ),
    key(
        "context.guardian.interval_seconds",
        NUMBER,
        Hint::Range(GUARDIAN_INTERVAL),
    ),
    key(
        "context.guardian.stale_after_seconds",
        NUMBER,
        Hint::Range(STALE),
    ),
    key("context.guardian.repair", BOOLEAN, Hint::Text(BOOLEAN_HINT)),
    key(
        "context.guardian.max_repair_level",
        NUMBER,
        Hint::Range(LEVEL),
    ),
    key(
        "context.services",
        "a list of checks",
        Hint::Text(SERVICES_HINT),
    ),
    key(
        "context.services.name",
        "a check name",
        Hint::Text("use letters, digits, `_` and `-`, e.g. api"),
    ),
    key(
        "context.services.url",
        "an http:// or https:// URL",
        Hint::Text("e.g. http://127.0.0.1:8080/health"),
    ),
    key(
        "context.services.timeout_seconds",
        NUMBER,
        Hint::Range(CHECK_TIMEOUT),
    ),
    key(
        "context.services.version_header",
        "a header name",
        Hint::Text("e.g. x-version"),
    ),
];

const ASSET_ID_HINT: &str =
    "use 1 to 200 letters, digits, `.`, `_` or `-`, not starting with `.`, e.g. web-1";
const SENSORS_HINT: &str =
    "list sensors from: compute, memory, storage, network, services, e.g. [compute, memory]";
const SERVICES_HINT: &str =
    "a list of checks, e.g. `- {name: api, url: http://127.0.0.1:8080/health}`";

fn enabled<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    values::boolean(d)
}
fn history<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    values::boolean(d)
}
fn repair<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    values::boolean(d)
}
fn interval_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| INTERVAL.check(t))
}
fn top_processes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| TOP.check(t))
}
fn max_rss_mb<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| RSS.check(t))
}
fn max_cpu_percent<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| CPU.check(t))
}
fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| PERCENT.check(t))
}
fn connections<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| CONNECTIONS.check(t))
}
fn min_write_interval_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| MIN_WRITE.check(t))
}
fn heartbeat_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| HEARTBEAT.check(t))
}
fn backups<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| BACKUPS.check(t))
}
fn backup_interval_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| BACKUP_INTERVAL.check(t))
}
fn guardian_interval_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| GUARDIAN_INTERVAL.check(t))
}
fn stale_after_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| STALE.check(t))
}
fn max_repair_level<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| LEVEL.check(t))
}
fn check_timeout_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |t| CHECK_TIMEOUT.check(t))
}

fn asset_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    values::optional_leaf(d, |t| {
        let ok = t.len() <= 200
            && !t.starts_with('.')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(t.to_owned())
        } else {
            Err(values::invalid(format!(
                "{} is not a valid asset id",
                show(t)
            )))
        }
    })
}

/// One sensor name, validated where it stands (so the error points at the list item).
struct SensorName(String);

impl<'de> Deserialize<'de> for SensorName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |t| {
            let t = t.trim();
            if SENSOR_NAMES.contains(&t) {
                Ok(SensorName(t.to_owned()))
            } else {
                Err(values::invalid_with_hint(
                    format!("{} is not a sensor", show(t)),
                    &match values::suggest(t, SENSOR_NAMES) {
                        Some(best) => format!("did you mean `{best}`? {SENSORS_HINT}"),
                        None => SENSORS_HINT.to_owned(),
                    },
                ))
            }
        })
    }
}

fn sensors<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Option::<Vec<SensorName>>::deserialize(d)?.unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for SensorName(n) in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn services<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceCheckConfig>, D::Error> {
    let checks = Option::<Vec<ServiceCheckConfig>>::deserialize(d)?.unwrap_or_default();
    for (i, c) in checks.iter().enumerate() {
        if checks[..i].iter().any(|o| o.name == c.name) {
            return Err(D::Error::custom(values::invalid(format!(
                "two checks are named {}",
                show(&c.name)
            ))));
        }
    }
    Ok(checks)
}

fn service_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    leaf(d, |t| {
        if t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            Ok(t.to_owned())
        } else {
            Err(values::invalid(format!(
                "{} is not a valid check name",
                show(t)
            )))
        }
    })
}

fn service_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    leaf(d, |t| {
        let t = t.trim();
        let rest = t
            .strip_prefix("http://")
            .or_else(|| t.strip_prefix("https://"));
        match rest {
            Some(host)
                if !host.is_empty()
                    && !host.starts_with('/')
                    && !t.contains(char::is_whitespace) =>
            {
                Ok(t.to_owned())
            }
            _ => Err(values::invalid(format!(
                "{} is not an http:// or https:// URL",
                show(t)
            ))),
        }
    })
}

fn version_header<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    values::optional_leaf(d, |t| {
        if t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            Ok(t.to_ascii_lowercase())
        } else {
            Err(values::invalid(format!("{} is not a header name", show(t))))
        }
    })
}
