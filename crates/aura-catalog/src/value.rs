//! Scalar values of flattened asset fields, the flattening of a document into `section.key` paths, and the
//! field aliases of the query language (`cpu.percent` → `compute.cpu_percent`, `kind` → `meta.kind`, …).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// One leaf value of an asset document.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// Any number (integers are exact up to 2^53).
    Num(f64),
    /// A string.
    Str(Arc<str>),
    /// An array of scalars (arrays of tables are flattened as `path.0.key`).
    List(Arc<[Scalar]>),
}

impl Scalar {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Num(n) => num_json(*n),
            Scalar::Str(s) => Value::String(s.to_string()),
            Scalar::List(l) => Value::Array(l.iter().map(Scalar::to_json).collect()),
        }
    }

    /// A total order within one type; different types order by type (bool < num < str < list).
    pub fn cmp_total(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
            (Scalar::Num(a), Scalar::Num(b)) => a.total_cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.cmp(b),
            (Scalar::List(a), Scalar::List(b)) => a.len().cmp(&b.len()),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Scalar::Bool(_) => 0,
            Scalar::Num(_) => 1,
            Scalar::Str(_) => 2,
            Scalar::List(_) => 3,
        }
    }

    /// The number, when it is one.
    pub fn as_num(&self) -> Option<f64> {
        match self {
            Scalar::Num(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Num(n) => write!(f, "{}", num_json(*n)),
            Scalar::Str(s) => f.write_str(s),
            Scalar::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A number as JSON: integral values as integers.
pub fn num_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Flattens a document into `(path, scalar)` leaves. Nulls are dropped; empty tables produce nothing.
pub fn flatten(doc: &Value, out: &mut Vec<(String, Scalar)>) {
    if let Some(obj) = doc.as_object() {
        for (k, v) in obj {
            flatten_into(k, v, out);
        }
    }
}

fn flatten_into(path: &str, v: &Value, out: &mut Vec<(String, Scalar)>) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                flatten_into(&format!("{path}.{k}"), v, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, v) in a.iter().enumerate() {
                flatten_into(&format!("{path}.{i}"), v, out);
            }
        }
        Value::Array(a) => {
            let list: Vec<Scalar> = a.iter().filter_map(leaf).collect();
            out.push((path.to_owned(), Scalar::List(list.into())));
        }
        other => {
            if let Some(s) = leaf(other) {
                out.push((path.to_owned(), s));
            }
        }
    }
}

fn leaf(v: &Value) -> Option<Scalar> {
    match v {
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => n.as_f64().map(Scalar::Num),
        Value::String(s) => Some(Scalar::Str(Arc::from(s.as_str()))),
        _ => None,
    }
}

/// Exact aliases: a query may name these fields by the short form on the left.
pub const ALIASES: &[(&str, &str)] = &[
    ("id", "meta.asset_id"),
    ("asset_id", "meta.asset_id"),
    ("kind", "meta.kind"),
    ("name", "meta.name"),
    ("health", "meta.health"),
    ("host", "meta.host"),
    ("parent", "meta.parent"),
    ("updated_at", "meta.updated_at"),
    ("checksum", "meta.checksum"),
    ("schema_version", "meta.schema_version"),
    ("cpu", "compute.cpu_percent"),
    ("cpu.percent", "compute.cpu_percent"),
    ("load", "compute.load_1"),
    ("mem", "memory.used_percent"),
    ("memory", "memory.used_percent"),
    ("mem.percent", "memory.used_percent"),
    ("memory.percent", "memory.used_percent"),
    ("disk", "storage.used_percent"),
    ("disk.percent", "storage.used_percent"),
    ("storage.percent", "storage.used_percent"),
];

/// Prefix rules applied when no exact alias matches: `cpu.X` → `compute.cpu_X`, `mem.X` → `memory.X`,
/// `disk.X` → `storage.X`, `net.X` → `network.X`, `load.N` → `compute.load_N`.
pub const PREFIXES: &[(&str, &str)] = &[
    ("cpu.", "compute.cpu_"),
    ("load.", "compute.load_"),
    ("mem.", "memory."),
    ("disk.", "storage."),
    ("net.", "network."),
];

/// The canonical document path a query path names.
pub fn canonical_path(path: &str) -> String {
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == path) {
        return (*to).to_owned();
    }
    for (from, to) in PREFIXES {
        if let Some(rest) = path.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    path.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve() {
        assert_eq!(canonical_path("cpu.percent"), "compute.cpu_percent");
        assert_eq!(canonical_path("cpu.count"), "compute.cpu_count");
        assert_eq!(canonical_path("load.15"), "compute.load_15");
        assert_eq!(canonical_path("kind"), "meta.kind");
        assert_eq!(canonical_path("labels.app"), "labels.app");
    }

    #[test]
    fn flattens_nested_tables_and_arrays() {
        let doc = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": "x"}]});
        let mut out = Vec::new();
        flatten(&doc, &mut out);
        let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a.b", "a.c", "d.0.e"]);
    }
}
