//! The `.aav` document: a TOML table with `[meta]` first and one section per sensor; its schema
//! checks, its checksum, its canonical rendering and the migration of older schema versions.

use std::fmt;

use aura_core::Timestamp;
use sha2::{Digest as _, Sha256};
use toml::{Table, Value};

/// The schema version this code writes. Files with a lower version are migrated on write;
/// files with a higher one are refused by the validator (written by a newer Aura).
pub const SCHEMA_VERSION: i64 = 1;

/// The sensor sections, in the order they are written after `[meta]`. Other sections (written by
/// scanners, for example) follow in alphabetical order.
pub const SECTIONS: &[&str] = &["compute", "memory", "storage", "network", "services"];

/// The kind of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetKind {
    /// A machine (physical or virtual) running an operating system Aura sees directly.
    Host,
    /// A container.
    Container,
    /// A Kubernetes pod.
    Pod,
    /// A network service (an API, a database, …).
    Service,
    /// A virtual machine seen from its hypervisor or cloud.
    Vm,
}

impl AssetKind {
    /// Every kind, in documentation order.
    pub const ALL: [AssetKind; 5] = [
        AssetKind::Host,
        AssetKind::Container,
        AssetKind::Pod,
        AssetKind::Service,
        AssetKind::Vm,
    ];

    /// The name used in files: `host`, `container`, `pod`, `service` or `vm`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Host => "host",
            AssetKind::Container => "container",
            AssetKind::Pod => "pod",
            AssetKind::Service => "service",
            AssetKind::Vm => "vm",
        }
    }

    /// Parses a kind name.
    #[must_use]
    pub fn parse(text: &str) -> Option<AssetKind> {
        AssetKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for AssetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The overall health of an asset, derived from its sensor sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    /// Every signal within bounds.
    Healthy,
    /// Something needs attention (high usage, a failing check).
    Degraded,
    /// The asset cannot do its job (memory or disk exhausted, every service down).
    Unhealthy,
    /// Not enough data yet.
    Unknown,
}

impl Health {
    /// The name used in files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        }
    }

    /// Parses a health name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Health> {
        [
            Health::Healthy,
            Health::Degraded,
            Health::Unhealthy,
            Health::Unknown,
        ]
        .into_iter()
        .find(|h| h.as_str() == text)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `id` can name an asset (and its file): 1 to 200 ASCII letters, digits, `.`, `_`,
/// `-`, not starting with `.`.
#[must_use]
pub fn valid_asset_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A parsed asset file. Cheap to query; cloned only when modified.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    table: Table,
}

impl Document {
    /// Parses TOML text. The error is the parser's message with line and column.
    pub fn parse(text: &str) -> Result<Document, String> {
        text.parse::<Table>()
            .map(|table| Document { table })
            .map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Wraps a table.
    #[must_use]
    pub fn from_table(table: Table) -> Document {
        Document { table }
    }

    /// The whole document.
    #[must_use]
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The whole document, for modification.
    pub fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    /// The whole document, owned.
    #[must_use]
    pub fn into_table(self) -> Table {
        self.table
    }

    /// The `[meta]` table.
    #[must_use]
    pub fn meta(&self) -> Option<&Table> {
        self.section("meta")
    }

    /// A top-level section.
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&Table> {
        self.table.get(name).and_then(Value::as_table)
    }

    /// The names of the sections other than `meta`, in file order.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.table
            .iter()
            .filter(|(k, v)| k.as_str() != "meta" && v.is_table())
            .map(|(k, _)| k.as_str())
    }

    fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta()?.get(key)?.as_str()
    }

    /// `meta.asset_id`.
    #[must_use]
    pub fn asset_id(&self) -> Option<&str> {
        self.meta_str("asset_id")
    }

    /// `meta.name`.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.meta_str("name")
    }

    /// `meta.kind`.
    #[must_use]
    pub fn kind(&self) -> Option<AssetKind> {
        self.meta_str("kind").and_then(AssetKind::parse)
    }

    /// `meta.health`.
    #[must_use]
    pub fn health(&self) -> Option<Health> {
        self.meta_str("health").and_then(Health::parse)
    }

    /// `meta.updated_at`, parsed.
    #[must_use]
    pub fn updated_at(&self) -> Option<Timestamp> {
        self.meta_str("updated_at")
            .and_then(Timestamp::parse_rfc3339)
    }

    /// `meta.schema_version`.
    #[must_use]
    pub fn schema_version(&self) -> Option<i64> {
        self.meta()?.get("schema_version")?.as_integer()
    }

    /// `meta.checksum` as stored in the file.
    #[must_use]
    pub fn stored_checksum(&self) -> Option<&str> {
        self.meta_str("checksum")
    }

    /// `meta.sensor_status`: sensor name → status.
    #[must_use]
    pub fn sensor_status(&self) -> Vec<(&str, &str)> {
        self.meta()
            .and_then(|m| m.get("sensor_status"))
            .and_then(Value::as_table)
            .map(|t| {
                t.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value at a dotted key path such as `compute.cpu_percent` or
    /// `compute.top_processes.0.name` (a number indexes an array). An empty path is the whole
    /// document.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.').filter(|p| !p.is_empty());
        let first = parts.next()?;
        let mut value = self.table.get(first)?;
        for part in parts {
            value = match value {
                Value::Table(t) => t.get(part)?,
                Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// The checksum this document should carry: see [`checksum_of`].
    #[must_use]
    pub fn computed_checksum(&self) -> String {
        checksum_of(&self.table)
    }

    /// The document as JSON (the same tree; TOML datetimes become strings).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        to_json(&Value::Table(self.table.clone()))
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(&self.to_json()).map_err(|e| e.to_string())
    }

    /// Renders the document as TOML with `[meta]` first, then the sensor sections in
    /// [`SECTIONS`] order, then any other section alphabetically.
    pub fn render(&self) -> Result<String, String> {
        let ordered = canonical_order(&self.table);
        toml::to_string(&ordered).map_err(|e| e.to_string())
    }

    /// Schema problems (empty when the document follows the schema). Checks `[meta]` and the
    /// types of the documented sensor keys; the checksum and freshness are checked by the Guardian.
    #[must_use]
    pub fn schema_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(meta) = self.meta() else {
            problems.push("missing required section `[meta]`".to_owned());
            return problems;
        };
        let string = |key: &str, problems: &mut Vec<String>| -> Option<String> {
            match meta.get(key) {
                None => {
                    problems.push(format!("`meta.{key}` is missing"));
                    None
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    problems.push(format!(
                        "`meta.{key}` must be a string, found {}",
                        other.type_str()
                    ));
                    None
                }
            }
        };
        if let Some(id) = string("asset_id", &mut problems)
            && !valid_asset_id(&id)
        {
            problems.push(format!("`meta.asset_id` `{id}` is not a valid asset id"));
        }
        if let Some(kind) = string("kind", &mut problems)
            && AssetKind::parse(&kind).is_none()
        {
            problems.push(format!(
                "`meta.kind` `{kind}` is not one of host, container, pod, service, vm"
            ));
        }
        string("name", &mut problems);
        match meta.get("schema_version") {
            None => problems.push("`meta.schema_version` is missing".to_owned()),
            Some(Value::Integer(v)) if (1..=SCHEMA_VERSION).contains(v) => {}
            Some(Value::Integer(v)) if *v > SCHEMA_VERSION => problems.push(format!(
                "`meta.schema_version` {v} is newer than this Aura understands ({SCHEMA_VERSION})"
            )),
            Some(other) => problems.push(format!(
                "`meta.schema_version` must be an integer from 1 to {SCHEMA_VERSION}, found `{other}`"
            )),
        }
        if let Some(at) = string("updated_at", &mut problems)
            && Timestamp::parse_rfc3339(&at).is_none()
        {
            problems.push(format!(
                "`meta.updated_at` `{at}` is not an RFC 3339 time such as 2026-01-01T00:00:00Z"
            ));
        }
        if let Some(sum) = string("checksum", &mut problems)
            && !is_checksum_text(&sum)
        {
            problems.push(format!(
                "`meta.checksum` `{sum}` is not `sha256:` followed by 64 hex digits"
            ));
        }
        if let Some(health) = string("health", &mut problems)
            && Health::parse(&health).is_none()
        {
            problems.push(format!(
                "`meta.health` `{health}` is not one of healthy, degraded, unhealthy, unknown"
            ));
        }
        match meta.get("sensor_status") {
            None => problems.push("`meta.sensor_status` is missing".to_owned()),
            Some(Value::Table(t)) => {
                for (name, status) in t {
                    if !status.is_str() {
                        problems.push(format!(
                            "`meta.sensor_status.{name}` must be a string, found {}",
                            status.type_str()
                        ));
                    }
                }
            }
            Some(other) => problems.push(format!(
                "`meta.sensor_status` must be a table, found {}",
                other.type_str()
            )),
        }
        for (name, value) in &self.table {
            if name != "meta" && SECTIONS.contains(&name.as_str()) && !value.is_table() {
                problems.push(format!(
                    "`{name}` must be a section (table), found {}",
                    value.type_str()
                ));
            }
        }
        for (path, expect) in TYPED_KEYS {
            if let Some(value) = self.get(path) {
                let ok = match expect {
                    Expect::Number => value.is_float() || value.is_integer(),
                    Expect::Integer => value.as_integer().is_some_and(|v| v >= 0),
                    Expect::Percent => as_f64(value).is_some_and(|v| (0.0..=100.0).contains(&v)),
                };
                if !ok {
                    problems.push(format!(
                        "`{path}` must be {}, found `{value}`",
                        expect.noun()
                    ));
                }
            }
        }
        problems
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Number,
    Integer,
    Percent,
}

impl Expect {
    fn noun(self) -> &'static str {
        match self {
            Expect::Number => "a number",
            Expect::Integer => "a whole number ≥ 0",
            Expect::Percent => "a number from 0 to 100",
        }
    }
}

const TYPED_KEYS: &[(&str, Expect)] = &[
    ("compute.cpu_percent", Expect::Percent),
    ("compute.load_1", Expect::Number),
    ("compute.load_5", Expect::Number),
    ("compute.load_15", Expect::Number),
    ("compute.process_count", Expect::Integer),
    ("memory.used_percent", Expect::Percent),
    ("memory.available_bytes", Expect::Integer),
    ("memory.total_bytes", Expect::Integer),
    ("storage.used_percent_max", Expect::Percent),
    ("network.connections", Expect::Integer),
];

/// A number as `f64` (TOML integers included).
#[must_use]
pub fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

fn is_checksum_text(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The checksum of a document: `sha256:` and the lowercase hex SHA-256 of its compact JSON form
/// with object keys sorted and `meta.checksum` removed (see `docs/aav-spec.md`). Independent of
/// key order and TOML formatting, so a reformatted but unchanged file still verifies.
#[must_use]
pub fn checksum_of(table: &Table) -> String {
    let mut json = to_json(&Value::Table(table.clone()));
    if let Some(meta) = json
        .get_mut("meta")
        .and_then(serde_json::Value::as_object_mut)
    {
        meta.remove("checksum");
    }
    let sorted = sort_keys(json);
    let bytes = serde_json::to_vec(&sorted).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sort_keys).collect())
        }
        other => other,
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// `table` with `meta` first, then [`SECTIONS`], then other keys alphabetically.
pub(crate) fn canonical_order(table: &Table) -> Table {
    let mut out = Table::new();
    if let Some(meta) = table.get("meta") {
        out.insert("meta".to_owned(), meta.clone());
    }
    for name in SECTIONS {
        if let Some(v) = table.get(*name) {
            out.insert((*name).to_owned(), v.clone());
        }
    }
    let mut rest: Vec<_> = table
        .iter()
        .filter(|(k, _)| k.as_str() != "meta" && !SECTIONS.contains(&k.as_str()))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in rest {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Brings a document written by an older schema up to [`SCHEMA_VERSION`], in place. Returns
/// the version it migrated from, or `None` when nothing was needed.
///
/// Version 0 is the seed's layout: a `[metadata]` table with `id`, `type` and `last_updated`.
pub fn migrate(table: &mut Table) -> Option<i64> {
    let version = table
        .get("meta")
        .and_then(Value::as_table)
        .and_then(|m| m.get("schema_version"))
        .and_then(Value::as_integer);
    match version {
        Some(v) if v >= SCHEMA_VERSION => None,
        Some(v) => {
            // Versions 1..SCHEMA_VERSION: nothing to rename yet; stamp the version.
            if let Some(meta) = table.get_mut("meta").and_then(Value::as_table_mut) {
                meta.insert("schema_version".into(), Value::Integer(SCHEMA_VERSION));
            }
            Some(v)
        }
        None => {
            let mut meta = match table.remove("meta").or_else(|| table.remove("metadata")) {
                Some(Value::Table(t)) => t,
                _ => Table::new(),
            };
            for (old, new) in [
                ("id", "asset_id"),
                ("type", "kind"),
                ("last_updated", "updated_at"),
                ("status", "health"),
            ] {
                if !meta.contains_key(new)
                    && let Some(v) = meta.remove(old)
                {
                    meta.insert(new.to_owned(), v);
                }
            }
            if let Some(Value::Datetime(d)) = meta.get("updated_at") {
                let text = d.to_string();
                meta.insert("updated_at".into(), Value::String(text));
            }
            meta.insert("schema_version".into(), Value::Integer(SCHEMA_VERSION));
            table.insert("meta".into(), Value::Table(meta));
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        Document::parse(
            r#"
[meta]
asset_id = "web-1"
kind = "host"
name = "web-1"
schema_version = 1
updated_at = "2026-11-21T10:00:00.000Z"
checksum = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
health = "healthy"
sensor_status = { compute = "ok" }

[compute]
cpu_percent = 12.5
load_1 = 0.5
top_processes = [{ pid = 1, name = "init" }]
"#,
        )
        .unwrap()
    }

    #[test]
    fn key_paths_reach_tables_and_arrays() {
        let d = doc();
        assert_eq!(d.get("compute.cpu_percent").unwrap().as_float(), Some(12.5));
        assert_eq!(
            d.get("compute.top_processes.0.name").unwrap().as_str(),
            Some("init")
        );
        assert!(d.get("compute.nope").is_none());
        assert!(d.get("compute.top_processes.7").is_none());
        assert_eq!(d.kind(), Some(AssetKind::Host));
        assert_eq!(d.sensor_status(), vec![("compute", "ok")]);
    }

    #[test]
    fn checksum_ignores_order_and_the_checksum_itself() {
        let d = doc();
        let mut reordered = Table::new();
        for (k, v) in d.table().iter().rev() {
            reordered.insert(k.clone(), v.clone());
        }
        assert_eq!(checksum_of(d.table()), checksum_of(&reordered));
        let mut changed = d.clone();
        changed
            .table_mut()
            .get_mut("compute")
            .and_then(Value::as_table_mut)
            .unwrap()
            .insert("cpu_percent".into(), Value::Float(13.0));
        assert_ne!(checksum_of(d.table()), checksum_of(changed.table()));
    }

    #[test]
    fn schema_problems_name_the_key() {
        let mut d = doc();
        assert!(d.schema_problems().is_empty(), "{:?}", d.schema_problems());
        let meta = d
            .table_mut()
            .get_mut("meta")
            .unwrap()
            .as_table_mut()
            .unwrap();
        meta.insert("kind".into(), "toaster".into());
        meta.remove("health");
        let problems = d.schema_problems();
        assert!(problems.iter().any(|p| p.contains("`meta.kind` `toaster`")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`meta.health` is missing"))
        );
    }

    #[test]
    fn version_zero_files_migrate() {
        let mut t: Table = r#"
[metadata]
id = "db-1"
type = "vm"
last_updated = 2026-01-01T00:00:00Z
"#
        .parse()
        .unwrap();
        assert_eq!(migrate(&mut t), Some(0));
        let d = Document::from_table(t);
        assert_eq!(d.asset_id(), Some("db-1"));
        assert_eq!(d.kind(), Some(AssetKind::Vm));
        assert_eq!(d.schema_version(), Some(SCHEMA_VERSION));
        assert!(d.updated_at().is_some());
    }

    #[test]
    fn render_puts_meta_first_and_exports() {
        let d = doc();
        let text = d.render().unwrap();
        assert!(text.starts_with("[meta]"), "{text}");
        assert_eq!(Document::parse(&text).unwrap(), d);
        assert_eq!(d.to_json()["compute"]["cpu_percent"], 12.5);
        assert!(d.to_yaml().unwrap().contains("cpu_percent: 12.5"));
    }
}
