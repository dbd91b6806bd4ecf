//! Context for the MCP tools: a small [`ContextSource`] trait (the catalog will implement it later) and
//! [`AavDir`], which reads `<data-dir>/assets/*.aav` directly as generic TOML.
//!
//! The contract read from a file: `[meta]` with `asset_id`, `kind` (host|container|pod|service|vm), `name`,
//! `schema_version`, `updated_at` (RFC 3339), `checksum`, `health` (healthy|degraded|unhealthy|unknown),
//! `sensor_status`; sections `[compute]` (`cpu_percent`, `load_1`, …), `[memory]` (`used_percent`,
//! `available_bytes`, …), `[storage]`, `[network]`, `[services]`. Anything else is carried along untouched.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// One asset as the tools see it: the parsed file as JSON, plus where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// `meta.asset_id` (or the file stem when the file lacks it).
    pub id: String,
    /// The whole file as JSON (TOML tables become objects).
    pub doc: Value,
    /// The file's text, for resources.
    pub text: String,
}

impl Asset {
    fn meta(&self, key: &str) -> Option<&str> {
        self.doc.get("meta")?.get(key)?.as_str()
    }
    /// `meta.kind`.
    pub fn kind(&self) -> &str {
        self.meta("kind").unwrap_or("unknown")
    }
    /// `meta.name`.
    pub fn name(&self) -> &str {
        self.meta("name").unwrap_or(&self.id)
    }
    /// `meta.health`, `unknown` when absent.
    pub fn health(&self) -> &str {
        self.meta("health").unwrap_or("unknown")
    }
    /// A number at `section.key`.
    pub fn number(&self, section: &str, key: &str) -> Option<f64> {
        self.doc.get(section)?.get(key)?.as_f64()
    }
    /// The summary line used in lists.
    pub fn summary(&self) -> Value {
        let m = |k: &str| self.meta(k).map(str::to_owned);
        serde_json::json!({
            "asset_id": self.id,
            "kind": self.kind(),
            "name": self.name(),
            "health": self.health(),
            "updated_at": m("updated_at"),
            "sensor_status": self.doc.get("meta").and_then(|x| x.get("sensor_status")).cloned(),
            "cpu_percent": self.number("compute", "cpu_percent"),
            "memory_used_percent": self.number("memory", "used_percent"),
        })
    }
}

/// Assets that could not be read, with why: answers report them instead of hiding them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Readable assets, sorted by id.
    pub assets: Vec<Asset>,
    /// `(file, error)` for files that are not valid asset files.
    pub unreadable: Vec<(String, String)>,
}

/// Where the context tools read assets from.
pub trait ContextSource: Send + Sync + std::fmt::Debug + 'static {
    /// Every asset now.
    fn snapshot(&self) -> Snapshot;
    /// One asset by id.
    fn get(&self, id: &str) -> Option<Asset>;
    /// The directory to watch for changes, if the source is file-backed.
    fn watch_dir(&self) -> Option<&Path>;
}

/// Asset files in a directory (`<data-dir>/assets`).
#[derive(Debug, Clone)]
pub struct AavDir {
    dir: PathBuf,
}

impl AavDir {
    /// Reads `dir` (which may not exist yet: then there are no assets).
    pub fn new(dir: PathBuf) -> AavDir {
        AavDir { dir }
    }

    fn read(&self, path: &Path) -> Result<Asset, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
        let doc = toml_to_json(toml::Value::Table(table));
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let id = doc
            .get("meta")
            .and_then(|m| m.get("asset_id"))
            .and_then(Value::as_str)
            .map_or(stem, str::to_owned);
        Ok(Asset { id, doc, text })
    }
}

impl ContextSource for AavDir {
    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return snap;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("aav") {
                continue;
            }
            match self.read(&path) {
                Ok(asset) => snap.assets.push(asset),
                Err(e) => snap.unreadable.push((path.display().to_string(), e)),
            }
        }
        snap.assets.sort_by(|a, b| a.id.cmp(&b.id));
        snap
    }

    fn get(&self, id: &str) -> Option<Asset> {
        if id.contains('/') || id.contains("..") {
            return None;
        }
        let direct = self.dir.join(format!("{id}.aav"));
        if let Ok(asset) = self.read(&direct) {
            return Some(asset);
        }
        self.snapshot().assets.into_iter().find(|a| a.id == id)
    }

    fn watch_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// The decision helper behind `is_safe_to_deploy`: every named asset must be healthy, fresh enough, and under
/// the CPU and memory ceilings; what could not be seen is listed and makes the answer "not safe".
pub fn safe_to_deploy(
    source: &dyn ContextSource,
    ids: &[String],
    max_cpu: f64,
    max_memory: f64,
) -> Value {
    let mut blockers = Vec::new();
    let mut unseen = Vec::new();
    for id in ids {
        let Some(asset) = source.get(id) else {
            unseen.push(format!("{id}: no asset file"));
            continue;
        };
        match asset.health() {
            "healthy" => {}
            "unknown" => unseen.push(format!("{id}: health unknown")),
            other => blockers.push(format!("{id}: health is {other}")),
        }
        match asset.number("compute", "cpu_percent") {
            Some(cpu) if cpu > max_cpu => {
                blockers.push(format!("{id}: cpu {cpu:.1}% > {max_cpu}%"))
            }
            Some(_) => {}
            None => unseen.push(format!("{id}: no compute.cpu_percent")),
        }
        match asset.number("memory", "used_percent") {
            Some(mem) if mem > max_memory => {
                blockers.push(format!("{id}: memory {mem:.1}% > {max_memory}%"));
            }
            Some(_) => {}
            None => unseen.push(format!("{id}: no memory.used_percent")),
        }
    }
    serde_json::json!({
        "safe": blockers.is_empty() && unseen.is_empty() && !ids.is_empty(),
        "blockers": blockers,
        "could_not_see": unseen,
        "checked": ids,
        "thresholds": {"max_cpu_percent": max_cpu, "max_memory_percent": max_memory},
    })
}

/// The helper behind `resource_availability`: free CPU, memory and storage of one asset, and which of them the
/// asset file does not report.
pub fn availability(asset: &Asset) -> Value {
    let mut missing = Vec::new();
    let cpu_free = asset
        .number("compute", "cpu_percent")
        .map(|c| (100.0 - c).max(0.0));
    if cpu_free.is_none() {
        missing.push("compute.cpu_percent");
    }
    let mem_free_percent = asset
        .number("memory", "used_percent")
        .map(|m| (100.0 - m).max(0.0));
    if mem_free_percent.is_none() {
        missing.push("memory.used_percent");
    }
    let mem_available = asset.number("memory", "available_bytes");
    if mem_available.is_none() {
        missing.push("memory.available_bytes");
    }
    let storage = asset.doc.get("storage").cloned();
    if storage.is_none() {
        missing.push("storage");
    }
    serde_json::json!({
        "asset_id": asset.id,
        "health": asset.health(),
        "cpu_free_percent": cpu_free,
        "load_1": asset.number("compute", "load_1"),
        "memory_free_percent": mem_free_percent,
        "memory_available_bytes": mem_available,
        "storage": storage,
        "could_not_see": missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"
[meta]
asset_id = "web-1"
kind = "host"
name = "web-1"
schema_version = 1
updated_at = "2026-11-21T22:00:00Z"
checksum = "abc"
health = "healthy"
sensor_status = "ok"
[compute]
cpu_percent = 35.5
load_1 = 0.7
[memory]
used_percent = 50.0
available_bytes = 4000000000
[storage]
root_used_percent = 40.0
"#;

    #[test]
    fn reads_assets_and_answers_the_decision_helpers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web-1.aav"), WEB).unwrap();
        std::fs::write(
            dir.path().join("db-1.aav"),
            WEB.replace("web-1", "db-1")
                .replace("\"healthy\"", "\"degraded\"")
                .replace("cpu_percent = 35.5", "cpu_percent = 95.0"),
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.aav"), "[meta\n").unwrap();
        let src = AavDir::new(dir.path().to_owned());
        let snap = src.snapshot();
        assert_eq!(snap.assets.len(), 2);
        assert_eq!(snap.unreadable.len(), 1);
        assert_eq!(src.get("web-1").unwrap().health(), "healthy");
        let ok = safe_to_deploy(&src, &["web-1".into()], 80.0, 90.0);
        assert_eq!(ok["safe"], true, "{ok}");
        let no = safe_to_deploy(&src, &["db-1".into(), "ghost".into()], 80.0, 90.0);
        assert_eq!(no["safe"], false);
        assert_eq!(no["blockers"].as_array().unwrap().len(), 2, "{no}");
        assert_eq!(no["could_not_see"][0], "ghost: no asset file");
        let avail = availability(&src.get("web-1").unwrap());
        assert_eq!(avail["cpu_free_percent"], 64.5);
        assert_eq!(
            avail["could_not_see"].as_array().unwrap().len(),
            0,
            "{avail}"
        );
    }
}
