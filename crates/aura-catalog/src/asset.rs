//! The asset model: a typed header (id, kind, name, health, updated_at, host, parent) plus a generic document of
//! sections, parsed from and written to the `.aav` TOML contract.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// The kinds of asset the catalog knows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    /// A physical or virtual machine running an operating system.
    Host,
    /// A container (Docker, containerd, ECS task container).
    Container,
    /// A Kubernetes pod.
    Pod,
    /// A service: a systemd unit, a Kubernetes service or workload, a managed database, a function.
    Service,
    /// A virtual machine seen from its hypervisor or cloud.
    Vm,
}

impl AssetKind {
    /// Every kind, in order.
    pub const ALL: [AssetKind; 5] = [
        AssetKind::Host,
        AssetKind::Container,
        AssetKind::Pod,
        AssetKind::Service,
        AssetKind::Vm,
    ];

    /// The lowercase name used in files and queries.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Host => "host",
            AssetKind::Container => "container",
            AssetKind::Pod => "pod",
            AssetKind::Service => "service",
            AssetKind::Vm => "vm",
        }
    }
}

impl fmt::Display for AssetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AssetKind {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AssetKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| AssetError::Invalid {
                field: "meta.kind",
                message: format!(
                    "unknown kind `{s}` (expected host, container, pod, service or vm)"
                ),
            })
    }
}

/// The health an asset reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Everything within bounds.
    Healthy,
    /// Working, but a sensor reports pressure or a dependency is impaired.
    Degraded,
    /// Not working.
    Unhealthy,
    /// No recent or trustworthy signal.
    Unknown,
}

impl Health {
    /// Every health value, in order.
    pub const ALL: [Health; 4] = [
        Health::Healthy,
        Health::Degraded,
        Health::Unhealthy,
        Health::Unknown,
    ];

    /// The lowercase name used in files and queries.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Health {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Health::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| AssetError::Invalid {
                field: "meta.health",
                message: format!(
                    "unknown health `{s}` (expected healthy, degraded, unhealthy or unknown)"
                ),
            })
    }
}

/// Why an asset document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The text is not TOML.
    #[error("not valid TOML: {0}")]
    Toml(String),
    /// A required `[meta]` field is missing.
    #[error("`{0}` is missing")]
    Missing(&'static str),
    /// A field has the wrong type or value.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The field path.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// One asset: a typed header and its whole document (every section, `meta` included) as a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// Stable id, also the file name (`<id>.aav`).
    pub id: Arc<str>,
    /// What it is.
    pub kind: AssetKind,
    /// Human name.
    pub name: String,
    /// Reported health.
    pub health: Health,
    /// When its file was last written (RFC 3339).
    pub updated_at: String,
    /// The host it runs on (a host's own name for hosts), when known.
    pub host: Option<String>,
    /// The asset it belongs to (a pod for a sidecar container, a host for a VM), when known.
    pub parent: Option<String>,
    /// Every section, `meta` included, as a JSON object.
    pub doc: Value,
}

/// The schema version of the asset files this crate reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

impl Asset {
    /// A new asset with a fresh `meta` section and no sensor sections.
    pub fn new(id: &str, kind: AssetKind, name: &str, updated_at: &str) -> Asset {
        let mut meta = Map::new();
        meta.insert("asset_id".into(), Value::from(id));
        meta.insert("kind".into(), Value::from(kind.as_str()));
        meta.insert("name".into(), Value::from(name));
        meta.insert("schema_version".into(), Value::from(SCHEMA_VERSION));
        meta.insert("updated_at".into(), Value::from(updated_at));
        meta.insert("health".into(), Value::from("unknown"));
        meta.insert("sensor_status".into(), Value::Object(Map::new()));
        let mut doc = Map::new();
        doc.insert("meta".into(), Value::Object(meta));
        Asset {
            id: Arc::from(id),
            kind,
            name: name.to_owned(),
            health: Health::Unknown,
            updated_at: updated_at.to_owned(),
            host: if kind == AssetKind::Host {
                Some(name.to_owned())
            } else {
                None
            },
            parent: None,
            doc: Value::Object(doc),
        }
    }

    /// Parses an `.aav` file's text.
    pub fn from_toml(text: &str) -> Result<Asset, AssetError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            AssetError::Toml(e.to_string().trim_end().replace('\n', " "))
        })?;
        let doc = toml_to_json(toml::Value::Table(table));
        Asset::from_document(doc)
    }

    /// Builds an asset from a document (a JSON object with a `meta` section), validating the header.
    pub fn from_document(doc: Value) -> Result<Asset, AssetError> {
        let meta = doc
            .get("meta")
            .and_then(Value::as_object)
            .ok_or(AssetError::Missing("meta"))?;
        let text = |field: &'static str, key: &str| -> Result<String, AssetError> {
            match meta.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(AssetError::Invalid {
                    field,
                    message: "expected a string".into(),
                }),
                None => Err(AssetError::Missing(field)),
            }
        };
        let id = text("meta.asset_id", "asset_id")?;
        validate_id(&id)?;
        let kind: AssetKind = text("meta.kind", "kind")?.parse()?;
        let name = text("meta.name", "name")?;
        let updated_at = text("meta.updated_at", "updated_at")?;
        let health: Health = match meta.get("health") {
            None => Health::Unknown,
            Some(Value::String(s)) => s.parse()?,
            Some(_) => {
                return Err(AssetError::Invalid {
                    field: "meta.health",
                    message: "expected a string".into(),
                });
            }
        };
        if let Some(v) = meta.get("schema_version")
            && v.as_i64() != Some(SCHEMA_VERSION)
        {
            return Err(AssetError::Invalid {
                field: "meta.schema_version",
                message: format!(
                    "unsupported schema version `{v}` (this build reads {SCHEMA_VERSION})"
                ),
            });
        }
        let opt = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        let host = opt("host").or_else(|| (kind == AssetKind::Host).then(|| name.clone()));
        let parent = opt("parent");
        let mut doc = doc;
        if let (Some(h), Some(meta)) = (&host, doc.get_mut("meta").and_then(Value::as_object_mut))
            && !meta.contains_key("host")
        {
            // A host is its own host: make it visible to queries and projections.
            meta.insert("host".into(), Value::from(h.as_str()));
        }
        Ok(Asset {
            id: Arc::from(id.as_str()),
            kind,
            name,
            health,
            updated_at,
            host,
            parent,
            doc,
        })
    }

    /// A section of the document, when present.
    pub fn section(&self, name: &str) -> Option<&Map<String, Value>> {
        self.doc.get(name).and_then(Value::as_object)
    }

    /// Replaces (or adds) a whole section.
    pub fn set_section(&mut self, name: &str, section: Map<String, Value>) {
        if let Some(obj) = self.doc.as_object_mut() {
            obj.insert(name.to_owned(), Value::Object(section));
        }
    }

    /// Sets the health in the header and in `meta`.
    pub fn set_health(&mut self, health: Health) {
        self.health = health;
        self.set_meta("health", Value::from(health.as_str()));
    }

    /// Sets the host in the header and in `meta`.
    pub fn set_host(&mut self, host: &str) {
        self.host = Some(host.to_owned());
        self.set_meta("host", Value::from(host));
    }

    /// Sets the parent in the header and in `meta`.
    pub fn set_parent(&mut self, parent: &str) {
        self.parent = Some(parent.to_owned());
        self.set_meta("parent", Value::from(parent));
    }

    /// Sets `updated_at` in the header and in `meta`.
    pub fn set_updated_at(&mut self, at: &str) {
        self.updated_at = at.to_owned();
        self.set_meta("updated_at", Value::from(at));
    }

    fn set_meta(&mut self, key: &str, value: Value) {
        if let Some(meta) = self.doc.get_mut("meta").and_then(Value::as_object_mut) {
            meta.insert(key.to_owned(), value);
        }
    }

    /// The `.aav` text: `[meta]` first (with a fresh `checksum` over every other section), then the sections.
    pub fn to_toml(&self) -> Result<String, AssetError> {
        let mut doc = self.doc.clone();
        let checksum = content_checksum(&doc);
        if let Some(meta) = doc.get_mut("meta").and_then(Value::as_object_mut) {
            meta.insert("checksum".into(), Value::from(checksum));
        }
        let Some(obj) = doc.as_object() else {
            return Err(AssetError::Missing("meta"));
        };
        let mut table = toml::Table::new();
        if let Some(meta) = obj.get("meta") {
            table.insert("meta".into(), json_to_toml(meta));
        }
        for (k, v) in obj {
            if k != "meta" && !v.is_null() {
                table.insert(k.clone(), json_to_toml(v));
            }
        }
        toml::to_string(&table).map_err(|e| AssetError::Toml(e.to_string()))
    }
}

/// `sha256:<hex>` over the canonical JSON of every section except `meta`.
pub fn content_checksum(doc: &Value) -> String {
    let mut hasher = Sha256::new();
    if let Some(obj) = doc.as_object() {
        let mut keys: Vec<&String> = obj.keys().filter(|k| *k != "meta").collect();
        keys.sort();
        for k in keys {
            hasher.update(k.as_bytes());
            hasher.update(b"=");
            hasher.update(canonical(&obj[k]).as_bytes());
            hasher.update(b"\n");
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Asset ids become file names: letters, digits, `.`, `_`, `-`, `:`; no leading dot; at most 200 bytes.
pub fn validate_id(id: &str) -> Result<(), AssetError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(AssetError::Invalid {
            field: "meta.asset_id",
            message: format!(
                "`{id}` is not a valid asset id (letters, digits, `.`, `_`, `-`, `:`; no leading dot; ≤ 200 bytes)"
            ),
        })
    }
}

/// Turns any string into a valid asset id (invalid bytes become `-`).
pub fn sanitize_id(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with('.') {
        out.remove(0);
    }
    out.truncate(200);
    if out.is_empty() {
        out.push('x');
    }
    out
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

fn json_to_toml(v: &Value) -> toml::Value {
    match v {
        Value::Null => toml::Value::String(String::new()),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().map(json_to_toml).collect()),
        Value::Object(m) => toml::Value::Table(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), json_to_toml(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let text = r#"
[meta]
asset_id = "web-01"
kind = "host"
name = "web-01"
schema_version = 1
updated_at = "2026-11-21T10:00:00Z"
checksum = "sha256:00"
health = "healthy"
[meta.sensor_status]
compute = "ok"
[compute]
cpu_percent = 42.5
load_1 = 0.5
[labels]
env = "prod"
"#;
        let a = Asset::from_toml(text).unwrap();
        assert_eq!(&*a.id, "web-01");
        assert_eq!(a.kind, AssetKind::Host);
        assert_eq!(a.host.as_deref(), Some("web-01"));
        let back = Asset::from_toml(&a.to_toml().unwrap()).unwrap();
        assert_eq!(back.doc["compute"], a.doc["compute"]);
        assert!(
            back.doc["meta"]["checksum"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }

    #[test]
    fn rejects_bad_headers() {
        let bad =
            "[meta]\nasset_id = \"../x\"\nkind = \"host\"\nname = \"x\"\nupdated_at = \"t\"\n";
        assert!(matches!(
            Asset::from_toml(bad),
            Err(AssetError::Invalid {
                field: "meta.asset_id",
                ..
            })
        ));
        let bad =
            "[meta]\nasset_id = \"x\"\nkind = \"toaster\"\nname = \"x\"\nupdated_at = \"t\"\n";
        assert!(
            Asset::from_toml(bad)
                .unwrap_err()
                .to_string()
                .contains("toaster")
        );
    }
}
