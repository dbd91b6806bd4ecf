//! Watch streams: the catalog's changes narrowed to one filter and turned into diffs — an asset entering the
//! filter, fields changing (path, old, new), an asset leaving or being deleted.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::asset::Asset;
use crate::catalog::{Catalog, Change};
use crate::index::{Compiled, Entry};
use crate::query::ast::Filter;
use crate::value::Scalar;

/// One field that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// Canonical path.
    pub path: Arc<str>,
    /// Before (`None`: absent).
    pub old: Option<Scalar>,
    /// After (`None`: removed).
    pub new: Option<Scalar>,
}

/// Why an asset left a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gone {
    /// Its file was deleted.
    Deleted,
    /// It no longer matches the filter.
    LeftFilter,
}

/// What a watcher sees.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// An asset now matches (new, or changed into the filter): the whole asset once.
    Added {
        /// Change sequence number.
        seq: u64,
        /// The asset.
        asset: Arc<Asset>,
        /// When the catalog applied the change.
        at: Instant,
    },
    /// A matching asset changed: only the fields that differ.
    Changed {
        /// Change sequence number.
        seq: u64,
        /// The asset id.
        id: Arc<str>,
        /// The changed fields.
        changes: Vec<FieldChange>,
        /// When the catalog applied the change.
        at: Instant,
    },
    /// An asset stopped matching.
    Removed {
        /// Change sequence number.
        seq: u64,
        /// The asset id.
        id: Arc<str>,
        /// Why.
        reason: Gone,
        /// When the catalog applied the change.
        at: Instant,
    },
    /// The watcher fell behind and missed changes; re-read with a query to resynchronise.
    Lagged {
        /// How many changes were missed.
        missed: u64,
    },
}

impl WatchEvent {
    /// As JSON (the wire shape of the watch stream and `aura watch --json`).
    pub fn to_json(&self) -> Value {
        match self {
            WatchEvent::Added { seq, asset, .. } => serde_json::json!({
                "type": "added", "seq": seq, "id": &*asset.id, "asset": asset.doc,
            }),
            WatchEvent::Changed {
                seq, id, changes, ..
            } => serde_json::json!({
                "type": "changed", "seq": seq, "id": &**id,
                "changes": changes.iter().map(|c| {
                    let mut m = Map::new();
                    m.insert("path".into(), Value::from(&*c.path));
                    m.insert("old".into(), c.old.as_ref().map_or(Value::Null, Scalar::to_json));
                    m.insert("new".into(), c.new.as_ref().map_or(Value::Null, Scalar::to_json));
                    Value::Object(m)
                }).collect::<Vec<_>>(),
            }),
            WatchEvent::Removed {
                seq, id, reason, ..
            } => serde_json::json!({
                "type": "removed", "seq": seq, "id": &**id, "reason": reason,
            }),
            WatchEvent::Lagged { missed } => {
                serde_json::json!({"type": "lagged", "missed": missed})
            }
        }
    }
}

/// A live stream of diffs for one filter. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Watch {
    catalog: Catalog,
    filter: Option<Filter>,
    compiled: Option<Compiled>,
    fields_seen: usize,
    rx: broadcast::Receiver<Arc<Change>>,
}

impl Watch {
    pub(crate) fn new(
        catalog: Catalog,
        filter: Option<Filter>,
        rx: broadcast::Receiver<Arc<Change>>,
    ) -> Watch {
        let (compiled, fields_seen) = match &filter {
            Some(f) => {
                let (c, n) = catalog.compile(f);
                (Some(c), n)
            }
            None => (None, 0),
        };
        Watch {
            catalog,
            filter,
            compiled,
            fields_seen,
            rx,
        }
    }

    /// The next event; `None` once the catalog is gone.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            let change = match self.rx.recv().await {
                Ok(c) => c,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(WatchEvent::Lagged { missed });
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if let Some(ev) = self.event(&change) {
                return Some(ev);
            }
        }
    }

    fn matches(&mut self, entry: &Entry) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        // New paths may have appeared since compiling: recompile so they resolve.
        let names = self.catalog.names();
        let known = names.read().map(|n| n.len()).unwrap_or(0);
        if known != self.fields_seen || self.compiled.is_none() {
            let (c, n) = self.catalog.compile(filter);
            self.compiled = Some(c);
            self.fields_seen = n;
        }
        self.compiled.as_ref().is_some_and(|c| c.eval(entry))
    }

    fn event(&mut self, change: &Change) -> Option<WatchEvent> {
        let was = change.old.as_ref().is_some_and(|e| self.matches(e));
        let is = change.new.as_ref().is_some_and(|e| self.matches(e));
        let (seq, at) = (change.seq, change.at);
        match (was, is, &change.old, &change.new) {
            (false, true, _, Some(new)) => Some(WatchEvent::Added {
                seq,
                asset: new.asset.clone(),
                at,
            }),
            (true, true, Some(old), Some(new)) => {
                let changes = diff(&self.catalog, old, new);
                (!changes.is_empty()).then(|| WatchEvent::Changed {
                    seq,
                    id: change.id.clone(),
                    changes,
                    at,
                })
            }
            (true, false, _, new) => Some(WatchEvent::Removed {
                seq,
                id: change.id.clone(),
                reason: if new.is_some() {
                    Gone::LeftFilter
                } else {
                    Gone::Deleted
                },
                at,
            }),
            _ => None,
        }
    }
}

fn diff(catalog: &Catalog, old: &Entry, new: &Entry) -> Vec<FieldChange> {
    let names = catalog.names();
    let names = names
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = |f: u32| -> Arc<str> {
        names
            .get(f as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    };
    let (a, b) = (&old.fields, &new.fields);
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some((fa, va)), Some((fb, vb))) if fa == fb => {
                if va != vb {
                    out.push(FieldChange {
                        path: name(*fa),
                        old: Some(va.clone()),
                        new: Some(vb.clone()),
                    });
                }
                i += 1;
                j += 1;
            }
            (Some((fa, va)), Some((fb, _))) if fa < fb => {
                out.push(FieldChange {
                    path: name(*fa),
                    old: Some(va.clone()),
                    new: None,
                });
                i += 1;
            }
            (_, Some((fb, vb))) => {
                out.push(FieldChange {
                    path: name(*fb),
                    old: None,
                    new: Some(vb.clone()),
                });
                j += 1;
            }
            (Some((fa, va)), None) => {
                out.push(FieldChange {
                    path: name(*fa),
                    old: Some(va.clone()),
                    new: None,
                });
                i += 1;
            }
            (None, None) => break,
        }
    }
    // The checksum follows every content change; it is noise in a diff.
    out.retain(|c| &*c.path != "meta.checksum");
    out
}
