//! Value validation for every key, and the table of keys with what each expects.
//!
//! Every leaf is read as a string and checked here, inside deserialization, so serde-saphyr
//! attaches the value's line and column to the error. A validator's message is marked with
//! [`MARK`] and may carry its own hint after [`HINT`]; `error.rs` turns it into a
//! [`crate::ConfigError`] naming the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use crate::schema::{AuditExportConfig, EffectGate, LedgerKind, LogFormat, StoreUrl};

/// Starts every message produced by a validator in this module.
pub(crate) const MARK: char = '\u{1e}';
/// Separates a validator's message from its own hint.
pub(crate) const HINT: char = '\u{1f}';

/// A validator message meaning "this key is empty"; `error.rs` words it with what the key
/// expects.
pub(crate) const EMPTY: &str = "empty";

/// An inclusive range of whole numbers and the unit they count.
#[derive(Clone, Copy)]
pub(crate) struct Range {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) unit: &'static str,
}

const SHUTDOWN_TIMEOUT: Range = Range {
    lo: 1,
    hi: 3600,
    unit: "seconds",
};
const REQUEST_TIMEOUT: Range = Range {
    lo: 1,
    hi: 3600,
    unit: "seconds",
};
const MAX_BODY: Range = Range {
    lo: 1,
    hi: 1024 * 1024 * 1024,
    unit: "bytes",
};
const MAX_CONNECTIONS: Range = Range {
    lo: 1,
    hi: 1000,
    unit: "",
};
const CONNECT_TIMEOUT: Range = Range {
    lo: 1,
    hi: 600,
    unit: "seconds",
};
const CHECKPOINT_INTERVAL: Range = Range {
    lo: 1,
    hi: 1000,
    unit: "milliseconds",
};
const SEGMENT_BYTES: Range = Range {
    lo: 1024 * 1024,
    hi: 4 * 1024 * 1024 * 1024,
    unit: "bytes",
};
const EXPORT_INTERVAL: Range = Range {
    lo: 1,
    hi: 86_400,
    unit: "seconds",
};
const RETENTION_DAYS: Range = Range {
    lo: 1,
    hi: 36_500,
    unit: "days",
};
const RESERVATION_TTL: Range = Range {
    lo: 1,
    hi: 86_400,
    unit: "seconds",
};

/// How to fix a bad value of a key.
#[derive(Clone, Copy)]
pub(crate) enum Hint {
    Text(&'static str),
    Range(Range),
}

/// One key of `aura.yaml`: its dotted path, what it expects (a noun phrase for "expected …,
/// found …") and how to fix a bad value.
pub(crate) struct Key {
    pub path: &'static str,
    pub expects: &'static str,
    pub hint: Hint,
}

/// Every section (`""` is the top level) and its keys, in file order.
pub(crate) const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "server",
            "data_dir",
            "store",
            "log",
            "policies",
            "audit",
            "governance",
            "context",
            "mesh",
            "gateway",
        ],
    ),
    (
        "server",
        &[
            "listen",
            "shutdown_timeout_seconds",
            "request_timeout_seconds",
            "max_body_bytes",
        ],
    ),
    (
        "store",
        &[
            "url",
            "schema",
            "max_connections",
            "connect_timeout_seconds",
        ],
    ),
    ("log", &["format", "level"]),
    ("policies", &["dir", "watch", "allow_widening"]),
    (
        "audit",
        &[
            "checkpoint_interval_ms",
            "segment_bytes",
            "origin",
            "effect_gate",
            "export",
        ],
    ),
    (
        "audit.export",
        &[
            "url",
            "endpoint",
            "region",
            "allow_http",
            "interval_seconds",
            "retention_days",
        ],
    ),
    ("governance", &["reservation_ttl_seconds", "ledger"]),
    ("context", crate::context::CONTEXT_KEYS),
    ("context.sensor", crate::context::SENSOR_KEYS),
    ("context.changes", crate::context::CHANGES_KEYS),
    ("context.files", crate::context::FILES_KEYS),
    ("context.guardian", crate::context::GUARDIAN_KEYS),
    ("context.services", crate::context::SERVICE_KEYS),
    (
        "mesh",
        &[
            "backend",
            "url",
            "segment_bytes",
            "dlq_alert_threshold",
            "spool",
            "agents",
        ],
    ),
];

const NUMBER: &str = "a whole number";
const BOOLEAN: &str = "true or false";
const SECTION: &str = "a mapping of settings";

/// Every key, sections included.
pub(crate) const KEYS: &[Key] = &[
    Key {
        path: "gateway",
        expects: SECTION,
        hint: Hint::Text(
            "write `gateway:` on its own line and indent `providers:`, `models:` and the other settings below it",
        ),
    },
    Key {
        path: "server",
        expects: SECTION,
        hint: Hint::Text(
            "write `server:` on its own line and indent its settings below it, e.g. `  listen: 127.0.0.1:7470`",
        ),
    },
    Key {
        path: "server.listen",
        expects: "an IP:PORT address",
        hint: Hint::Text(LISTEN_HINT),
    },
    Key {
        path: "server.shutdown_timeout_seconds",
        expects: NUMBER,
        hint: Hint::Range(SHUTDOWN_TIMEOUT),
    },
    Key {
        path: "server.request_timeout_seconds",
        expects: NUMBER,
        hint: Hint::Range(REQUEST_TIMEOUT),
    },
    Key {
        path: "server.max_body_bytes",
        expects: NUMBER,
        hint: Hint::Range(MAX_BODY),
    },
    Key {
        path: "data_dir",
        expects: "a directory path",
        hint: Hint::Text(
            "use a directory path such as ./aura-data; a relative path starts at the config file's directory",
        ),
    },
    Key {
        path: "store",
        expects: SECTION,
        hint: Hint::Text(
            "write `store:` on its own line and indent its settings below it, e.g. `  max_connections: 10`",
        ),
    },
    Key {
        path: "store.url",
        expects: "a database URL",
        hint: Hint::Text(URL_HINT),
    },
    Key {
        path: "store.schema",
        expects: "a schema name",
        hint: Hint::Text(SCHEMA_HINT),
    },
    Key {
        path: "store.max_connections",
        expects: NUMBER,
        hint: Hint::Range(MAX_CONNECTIONS),
    },
    Key {
        path: "store.connect_timeout_seconds",
        expects: NUMBER,
        hint: Hint::Range(CONNECT_TIMEOUT),
    },
    Key {
        path: "log",
        expects: SECTION,
        hint: Hint::Text(
            "write `log:` on its own line and indent its settings below it, e.g. `  format: text`",
        ),
    },
    Key {
        path: "log.format",
        expects: "a log format",
        hint: Hint::Text("use one of: text, json"),
    },
    Key {
        path: "log.level",
        expects: "a log filter",
        hint: Hint::Text(LEVEL_HINT),
    },
    Key {
        path: "policies",
        expects: SECTION,
        hint: Hint::Text(
            "write `policies:` on its own line and indent its settings below it, e.g. `  dir: ./policies`",
        ),
    },
    Key {
        path: "policies.dir",
        expects: "a directory path",
        hint: Hint::Text(
            "use a directory path such as ./policies; a relative path starts at the config file's directory",
        ),
    },
    Key {
        path: "policies.watch",
        expects: BOOLEAN,
        hint: Hint::Text(BOOLEAN_HINT),
    },
    Key {
        path: "policies.allow_widening",
        expects: BOOLEAN,
        hint: Hint::Text(BOOLEAN_HINT),
    },
    Key {
        path: "audit",
        expects: SECTION,
        hint: Hint::Text(
            "write `audit:` on its own line and indent its settings below it, e.g. `  checkpoint_interval_ms: 100`",
        ),
    },
    Key {
        path: "audit.checkpoint_interval_ms",
        expects: NUMBER,
        hint: Hint::Range(CHECKPOINT_INTERVAL),
    },
    Key {
        path: "audit.segment_bytes",
        expects: NUMBER,
        hint: Hint::Range(SEGMENT_BYTES),
    },
    Key {
        path: "audit.origin",
        expects: "a checkpoint origin",
        hint: Hint::Text(ORIGIN_HINT),
    },
    Key {
        path: "audit.effect_gate",
        expects: "an effect gate",
        hint: Hint::Text(EFFECT_GATE_HINT),
    },
    Key {
        path: "audit.export",
        expects: SECTION,
        hint: Hint::Text(
            "write `export:` on its own line under `audit:` and indent its settings below it, e.g. `    url: s3://bucket/prefix`",
        ),
    },
    Key {
        path: "audit.export.url",
        expects: "an s3:// URL",
        hint: Hint::Text(EXPORT_URL_HINT),
    },
    Key {
        path: "audit.export.endpoint",
        expects: "an endpoint URL",
        hint: Hint::Text(ENDPOINT_HINT),
    },
    Key {
        path: "audit.export.region",
        expects: "a region name",
        hint: Hint::Text(REGION_HINT),
    },
    Key {
        path: "audit.export.allow_http",
        expects: BOOLEAN,
        hint: Hint::Text(BOOLEAN_HINT),
    },
    Key {
        path: "audit.export.interval_seconds",
        expects: NUMBER,
        hint: Hint::Range(EXPORT_INTERVAL),
    },
    Key {
        path: "audit.export.retention_days",
        expects: NUMBER,
        hint: Hint::Range(RETENTION_DAYS),
    },
    Key {
        path: "governance",
        expects: SECTION,
        hint: Hint::Text(
            "write `governance:` on its own line and indent its settings below it, e.g. `  ledger: store`",
        ),
    },
    Key {
        path: "governance.reservation_ttl_seconds",
        expects: NUMBER,
        hint: Hint::Range(RESERVATION_TTL),
    },
    Key {
        path: "governance.ledger",
        expects: "a ledger kind",
        hint: Hint::Text(LEDGER_HINT),
    },
    Key {
        path: "mesh",
        expects: SECTION,
        hint: Hint::Text(
            "write `mesh:` on its own line and indent its settings below it, e.g. `  backend: nats`",
        ),
    },
    Key {
        path: "mesh.backend",
        expects: "a mesh backend",
        hint: Hint::Text(crate::mesh::BACKEND_HINT),
    },
    Key {
        path: "mesh.url",
        expects: "a mesh server URL",
        hint: Hint::Text(crate::mesh::URL_HINT),
    },
    Key {
        path: "mesh.segment_bytes",
        expects: NUMBER,
        hint: Hint::Range(crate::mesh::SEGMENT_BYTES),
    },
    Key {
        path: "mesh.dlq_alert_threshold",
        expects: NUMBER,
        hint: Hint::Range(crate::mesh::DLQ_THRESHOLD),
    },
    Key {
        path: "mesh.spool",
        expects: BOOLEAN,
        hint: Hint::Text(BOOLEAN_HINT),
    },
    Key {
        path: "mesh.agents",
        expects: "a list of agents",
        hint: Hint::Text(
            "each agent: `- name: NAME` with `command: [PROGRAM, ARG…]`, optional `mode: process|tmux`, `heartbeat_timeout_seconds`, `autostart`",
        ),
    },
];

const LISTEN_HINT: &str = "expected IP:PORT, e.g. 127.0.0.1:7470";
const URL_HINT: &str =
    "use sqlite://PATH or postgres://USER@HOST/DB, or null for the SQLite file aura.db in data_dir";
const SCHEMA_HINT: &str = "use lowercase letters, digits and `_`, starting with a letter or `_`, at most 63 characters, e.g. aura";
const LEVEL_HINT: &str = "use a level (trace, debug, info, warn, error, off) or directives like `info,aura_server=debug`";
const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
const BOOLEAN_HINT: &str = "use true or false";
const ORIGIN_MAX: usize = 255;
const ORIGIN_HINT: &str =
    "use 1 to 255 printable ASCII characters without spaces or `+`, e.g. example.com/log";
const EXPORT_URL_HINT: &str = "use s3://BUCKET or s3://BUCKET/PREFIX, e.g. s3://aura-audit/prod; a bucket name uses lowercase letters, digits, `-` and `.`";
const ENDPOINT_HINT: &str =
    "use http://HOST:PORT or https://HOST, e.g. http://127.0.0.1:9000; leave it out for AWS";
const REGION_HINT: &str = "use a region name of lowercase letters, digits and `-`, e.g. us-east-1";
const LEDGER_HINT: &str = "use one of: store, memory";
const EFFECT_GATE_HINT: &str = "use one of: written (the decision is in the log file before the effect), durable (fdatasync'd before the effect)";
const EFFECT_GATES: &[&str] = &["written", "durable"];
const LEDGERS: &[&str] = &["store", "memory"];

impl Key {
    /// Looks a key up by its dotted path.
    pub(crate) fn find(path: &str) -> Option<&'static Key> {
        KEYS.iter()
            .chain(crate::context::KEYS)
            .find(|key| key.path == path)
    }

    /// How to fix a bad value of this key.
    pub(crate) fn hint(&self) -> String {
        match self.hint {
            Hint::Text(text) => text.to_owned(),
            Hint::Range(range) => range.hint(),
        }
    }
}

impl Range {
    /// A range from `lo` to `hi` (inclusive) counting `unit`.
    pub(crate) const fn new(lo: u64, hi: u64, unit: &'static str) -> Range {
        Range { lo, hi, unit }
    }

    fn hint(self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" of {}", self.unit)
        };
        format!("use a whole number{unit} from {} to {}", self.lo, self.hi)
    }

    pub(crate) fn check(self, text: &str) -> Result<u64, String> {
        let digits = text.trim();
        let digits = digits.strip_prefix('+').unwrap_or(digits);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            let negative = digits
                .strip_prefix('-')
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
            return Err(if negative {
                invalid(format!("{} is out of range", show(text)))
            } else {
                invalid(format!("expected {NUMBER}, found {}", show(text)))
            });
        }
        match digits.parse::<u64>() {
            Ok(n) if (self.lo..=self.hi).contains(&n) => Ok(n),
            _ => Err(invalid(format!("{} is out of range", show(text)))),
        }
    }
}

/// Quotes a user value for a message: in backticks, on one line, at most 60 characters.
pub(crate) fn show(value: &str) -> String {
    let one_line: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut shown: String = one_line.chars().take(60).collect();
    if one_line.chars().count() > 60 {
        shown.push('…');
    }
    format!("`{shown}`")
}

/// A validator message without a hint of its own (the key's hint is used).
pub(crate) fn invalid(what: String) -> String {
    format!("{MARK}{what}")
}

/// A validator message with its own hint.
pub(crate) fn invalid_with_hint(what: String, hint: &str) -> String {
    format!("{MARK}{what}{HINT}{hint}")
}

pub(crate) fn leaf<'de, D, T>(
    d: D,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    not_empty(&text)
        .and_then(|()| check(&text))
        .map_err(D::Error::custom)
}

fn not_empty(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        Err(invalid(EMPTY.to_owned()))
    } else {
        Ok(())
    }
}

pub(crate) fn optional_leaf<'de, D, T>(
    d: D,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<String>::deserialize(d)? {
        Some(text) => not_empty(&text)
            .and_then(|()| check(&text))
            .map(Some)
            .map_err(D::Error::custom),
        None => Ok(None),
    }
}

/// A section: a mapping, or nothing at all (`server:` with every setting commented out).
pub(crate) fn section<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(crate) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    leaf(d, |text| {
        text.trim()
            .parse()
            .map_err(|_| invalid(format!("{} is not a valid address", show(text))))
    })
}

pub(crate) fn shutdown_timeout_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| SHUTDOWN_TIMEOUT.check(text))
}

pub(crate) fn request_timeout_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| REQUEST_TIMEOUT.check(text))
}

pub(crate) fn max_body_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| MAX_BODY.check(text))
}

pub(crate) fn connect_timeout_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| CONNECT_TIMEOUT.check(text))
}

pub(crate) fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    leaf(d, |text| {
        let n = MAX_CONNECTIONS.check(text)?;
        u32::try_from(n).map_err(|_| invalid(format!("{} is out of range", show(text))))
    })
}

pub(crate) fn data_dir<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    leaf(d, |text| Ok(PathBuf::from(text)))
}

pub(crate) fn policies_dir<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    leaf(d, |text| Ok(PathBuf::from(text)))
}

pub(crate) fn watch<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    boolean(d)
}

pub(crate) fn allow_widening<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    boolean(d)
}

pub(crate) fn checkpoint_interval_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| CHECKPOINT_INTERVAL.check(text))
}

pub(crate) fn segment_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| SEGMENT_BYTES.check(text))
}

pub(crate) fn audit_origin<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    leaf(d, check_origin)
}

/// The `audit.export` section: absent or empty means no export.
pub(crate) fn audit_export<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<AuditExportConfig>, D::Error> {
    Option::<AuditExportConfig>::deserialize(d)
}

pub(crate) fn export_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    leaf(d, check_export_url)
}

pub(crate) fn export_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional_leaf(d, check_endpoint)
}

pub(crate) fn export_region<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    leaf(d, |text| {
        let region = text.trim();
        if region.len() > 64
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(format!("{} is not a region name", show(text))));
        }
        Ok(region.to_owned())
    })
}

pub(crate) fn allow_http<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    boolean(d)
}

pub(crate) fn export_interval_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| EXPORT_INTERVAL.check(text))
}

pub(crate) fn retention_days<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    optional_leaf(d, |text| RETENTION_DAYS.check(text))
}

pub(crate) fn reservation_ttl_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    leaf(d, |text| RESERVATION_TTL.check(text))
}

pub(crate) fn effect_gate<'de, D: Deserializer<'de>>(d: D) -> Result<EffectGate, D::Error> {
    leaf(d, |text| match text.trim().to_ascii_lowercase().as_str() {
        "written" => Ok(EffectGate::Written),
        "durable" => Ok(EffectGate::Durable),
        other => {
            let what = format!("unknown effect gate {}", show(text));
            match suggest(other, EFFECT_GATES) {
                Some(best) => Err(invalid_with_hint(
                    what,
                    &format!("did you mean `{best}`? {EFFECT_GATE_HINT}"),
                )),
                None => Err(invalid(what)),
            }
        }
    })
}

pub(crate) fn ledger<'de, D: Deserializer<'de>>(d: D) -> Result<LedgerKind, D::Error> {
    leaf(d, |text| match text.trim().to_ascii_lowercase().as_str() {
        "store" => Ok(LedgerKind::Store),
        "memory" => Ok(LedgerKind::Memory),
        other => {
            let what = format!("unknown ledger {}", show(text));
            match suggest(other, LEDGERS) {
                Some(best) => Err(invalid_with_hint(
                    what,
                    &format!("did you mean `{best}`? {LEDGER_HINT}"),
                )),
                None => Err(invalid(what)),
            }
        }
    })
}

/// A boolean: YAML 1.2 `true` or `false` (also `True`, `FALSE`, …), unquoted.
///
/// Unlike the other leaves this is not read as a string, since a string cannot tell `true` from
/// `"true"`. The parser runs with `strict_booleans` (see `load.rs`), so YAML 1.1 spellings such
/// as `yes` or `on` arrive here as strings and are refused with a hint.
pub(crate) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(Boolean)
}

struct Boolean;

impl<'de> Visitor<'de> for Boolean {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(BOOLEAN)
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<bool, E> {
        let message = match not_empty(value) {
            Ok(()) => not_a_boolean(value, true),
            Err(empty) => empty,
        };
        Err(E::custom(message))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<bool, E> {
        Err(E::custom(not_a_boolean(&value.to_string(), false)))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<bool, E> {
        Err(E::custom(not_a_boolean(&value.to_string(), false)))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<bool, E> {
        Err(E::custom(not_a_boolean(&value.to_string(), false)))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Err(E::custom(invalid(EMPTY.to_owned())))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<bool, E> {
        self.visit_unit()
    }

    // Serde's own "invalid type" errors would be placed at the key, not the value: a custom
    // error is placed at the value.
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(A::Error::custom(invalid(format!(
            "expected {BOOLEAN}, found a list"
        ))))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(A::Error::custom(invalid(format!(
            "expected {BOOLEAN}, found a mapping"
        ))))
    }
}

/// Why `text` (a string, or a number written as `text`) is not a boolean, with the boolean
/// it probably meant.
fn not_a_boolean(text: &str, string: bool) -> String {
    let word = text.trim().to_ascii_lowercase();
    if string && (word == "true" || word == "false") {
        return invalid_with_hint(
            format!("{} is quoted text, not a boolean", show(text)),
            &format!("remove the quotes: {word}"),
        );
    }
    let meant = match word.as_str() {
        "yes" | "y" | "on" | "1" | "enable" | "enabled" => Some(true),
        "no" | "n" | "off" | "0" | "disable" | "disabled" => Some(false),
        _ => None,
    };
    let what = format!("{} is not a boolean", show(text));
    match meant {
        Some(meant) => invalid_with_hint(
            what,
            &format!("write {meant}: only true and false are booleans in aura.yaml"),
        ),
        None => invalid(what),
    }
}

/// Checks a C2SP tlog-checkpoint origin line. It is also the name of the signing key in the
/// signed note, which may not contain `+`.
fn check_origin(text: &str) -> Result<String, String> {
    let origin = text.trim();
    if let Some(bad) = origin.chars().find(|c| !c.is_ascii_graphic()) {
        let what = match bad {
            ' ' => format!("{} contains a space", show(origin)),
            c if c.is_control() => format!(
                "{} contains `{}`, which is not printable ASCII",
                show(origin),
                c.escape_default()
            ),
            c => format!(
                "{} contains {}, which is not printable ASCII",
                show(origin),
                show(&c.to_string())
            ),
        };
        return Err(invalid(what));
    }
    if origin.contains('+') {
        return Err(invalid_with_hint(
            format!("{} contains `+`", show(origin)),
            "the origin also names the checkpoint signing key, and a signed-note key name cannot contain `+`; use e.g. example.com/log",
        ));
    }
    let length = origin.chars().count();
    if length > ORIGIN_MAX {
        return Err(invalid(format!(
            "{} is {length} characters long, more than {ORIGIN_MAX}",
            show(origin)
        )));
    }
    Ok(origin.to_owned())
}

pub(crate) fn log_format<'de, D: Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
    leaf(d, |text| match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(invalid(format!("unknown log format {}", show(text)))),
    })
}

pub(crate) fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    leaf(d, check_log_level)
}

pub(crate) fn store_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StoreUrl>, D::Error> {
    optional_leaf(d, check_store_url)
}

pub(crate) fn store_schema<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional_leaf(d, check_schema)
}

/// Checks a `tracing` `EnvFilter` directive list: `LEVEL`, `TARGET` or `TARGET=LEVEL`, comma
/// separated, from a conservative character set.
fn check_log_level(text: &str) -> Result<String, String> {
    let filter = text.trim();
    if let Some(bad) = filter
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_:=,.- ".contains(*c)))
    {
        return Err(invalid_with_hint(
            format!(
                "{} is not a valid log filter: {} is not allowed",
                show(text),
                show(&bad.to_string())
            ),
            "a filter uses letters, digits, `_`, `:`, `=`, `,`, `.`, `-` and spaces, e.g. `info,aura_server=debug`",
        ));
    }
    let mut any = false;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        any = true;
        if directive.contains(' ') {
            return Err(invalid_with_hint(
                format!("{} is not a valid log filter", show(text)),
                "separate directives with commas, e.g. `info,aura_server=debug`",
            ));
        }
        let Some((target, level)) = directive.split_once('=') else {
            continue;
        };
        if target.is_empty() {
            return Err(invalid_with_hint(
                format!("{} has no target before `=`", show(directive)),
                LEVEL_HINT,
            ));
        }
        if !is_level(level) {
            let hint = match suggest(level, LEVELS) {
                Some(best) => format!("did you mean `{best}`? {LEVEL_HINT}"),
                None => LEVEL_HINT.to_owned(),
            };
            return Err(invalid_with_hint(
                format!("unknown level {} in {}", show(level), show(directive)),
                &hint,
            ));
        }
    }
    if !any {
        return Err(invalid(EMPTY.to_owned()));
    }
    Ok(filter.to_owned())
}

fn is_level(level: &str) -> bool {
    let level = level.to_ascii_lowercase();
    LEVELS.contains(&level.as_str()) || matches!(level.as_str(), "0" | "1" | "2" | "3" | "4" | "5")
}

fn check_store_url(text: &str) -> Result<StoreUrl, String> {
    let url = text.trim();
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(invalid(format!("{} is not a database URL", show(url))));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                Err(invalid_with_hint(
                    format!("{} has no file path", show(url)),
                    "write the database file after the scheme, e.g. sqlite://aura.db or sqlite:///var/lib/aura/aura.db",
                ))
            } else if path == ":memory:" || path.contains('?') {
                Err(invalid_with_hint(
                    format!("{} is not supported", show(url)),
                    "use a plain file path without `?` options, e.g. sqlite://aura.db",
                ))
            } else {
                Ok(StoreUrl::Sqlite(PathBuf::from(path)))
            }
        }
        "postgres" | "postgresql" => {
            if !rest.starts_with("//") || url.chars().any(char::is_whitespace) {
                Err(invalid(format!(
                    "{} is not a valid PostgreSQL URL",
                    show(&redact_url(url))
                )))
            } else {
                Ok(StoreUrl::Postgres(url.to_owned()))
            }
        }
        _ if rest.starts_with("//") => Err(invalid(format!(
            "unsupported database {} in {}",
            show(scheme),
            show(&redact_url(url))
        ))),
        _ => Err(invalid(format!(
            "{} is not a database URL",
            show(&redact_url(url))
        ))),
    }
}

/// Checks `s3://BUCKET[/PREFIX]` with the bucket and prefix rules of the exporter.
fn check_export_url(text: &str) -> Result<String, String> {
    let url = text.trim();
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(invalid(format!("{} is not an s3:// URL", show(url))));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid(format!("{} names no bucket", show(url))));
    }
    if bucket.len() < 3
        || bucket.len() > 63
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(invalid(format!(
            "{} is not a valid bucket name",
            show(bucket)
        )));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        || prefix.split('/').any(|part| part == "." || part == "..")
    {
        return Err(invalid_with_hint(
            format!("{} is not a valid prefix", show(prefix)),
            "a prefix may only hold letters, digits, `-`, `_`, `.` and `/`, without `.` or `..` parts",
        ));
    }
    Ok(url.to_owned())
}

/// Checks an `http://` or `https://` endpoint with a host and nothing that could hold a secret.
fn check_endpoint(text: &str) -> Result<String, String> {
    let url = text.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Err(invalid(format!(
            "{} is not an http:// or https:// URL",
            show(&redact_url(url))
        )));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(invalid(format!("{} has no host", show(url))));
    }
    if host.contains('@') {
        return Err(invalid_with_hint(
            format!("{} holds credentials", show(&redact_url(url))),
            "credentials never go in aura.yaml: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn check_schema(text: &str) -> Result<String, String> {
    let name = text.trim();
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_start || !valid_rest || name.len() > 63 {
        return Err(invalid(format!(
            "{} is not a valid schema name",
            show(text)
        )));
    }
    if name.starts_with("pg_") {
        return Err(invalid(format!("{} is reserved by PostgreSQL", show(text))));
    }
    Ok(name.to_owned())
}

/// Masks the password of a URL: `scheme://user:***@host/…`, and `password=***` in its query.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The user info ends at the last `@` of the authority; a password may itself hold `/` or `@`.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@').or_else(|| rest.rfind('@'));
    let (userinfo, tail) = match at {
        Some(at) => (&rest[..at], &rest[at..]),
        None => ("", rest),
    };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{userinfo}{tail}")
}

/// The closest of `candidates` to `word`, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|candidate| (*candidate, strsim::jaro_winkler(&word, candidate)))
        .filter(|(candidate, score)| {
            let distance = strsim::damerau_levenshtein(&word, candidate);
            *score >= 0.85
                || distance <= candidate.len().div_ceil(3)
                || (word.len() >= 4
                    && (candidate.starts_with(&word) || word.starts_with(candidate)))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(candidate, _)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_passwords_only() {
        let cases = [
            (
                "postgres://user:secret@host/db",
                "postgres://user:***@host/db",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://host/db", "postgres://host/db"),
            (
                "postgresql://u:p/w@rd@host:5432/db",
                "postgresql://u:***@host:5432/db",
            ),
            (
                "postgres://host/db?sslmode=require&password=x",
                "postgres://host/db?sslmode=require&password=***",
            ),
            ("not a url", "not a url"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn suggestions_catch_typos_not_strangers() {
        let keys = SECTIONS[1].1;
        assert_eq!(suggest("listn", keys), Some("listen"));
        assert_eq!(
            suggest("shutdown_timeout", keys),
            Some("shutdown_timeout_seconds")
        );
        assert_eq!(suggest("colour", keys), None);
        assert_eq!(suggest("sever", SECTIONS[0].1), Some("server"));
    }

    #[test]
    fn every_section_key_is_in_the_table() {
        for (section, keys) in SECTIONS {
            for key in *keys {
                let path = if section.is_empty() {
                    (*key).to_owned()
                } else {
                    format!("{section}.{key}")
                };
                assert!(Key::find(&path).is_some(), "{path} missing from KEYS");
            }
        }
        let leaves: usize = SECTIONS.iter().map(|(_, keys)| keys.len()).sum();
        assert_eq!(KEYS.len() + crate::context::KEYS.len(), leaves);
    }
}
