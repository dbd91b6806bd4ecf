//! The catalog: the shared index behind a lock, query execution (filter, aggregate, sort, page, project),
//! health summaries, and the broadcast of changes that watch streams turn into diffs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::asset::{Asset, AssetKind, Health};
use crate::index::{Compiled, Entry, EqKey, Index, Names};
use crate::query::ast::{AggFn, Aggregate, Query, SortKey, SortTarget};
use crate::query::parse::{ParseError, parse, suggest};
use crate::value::{Scalar, num_json};
use crate::watch::Watch;

/// Settings of a catalog.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// Rows returned when a query names no `limit`.
    pub default_limit: usize,
    /// Buffered changes per watcher before it is told it lagged.
    pub watch_buffer: usize,
    /// Parsed queries kept for reuse.
    pub parsed_cache: u64,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            default_limit: 100,
            watch_buffer: 4096,
            parsed_cache: 1024,
        }
    }
}

/// One change to the catalog: the entry before and after (`None` for insert / delete).
#[derive(Debug, Clone)]
pub struct Change {
    /// The asset id.
    pub id: Arc<str>,
    /// Before.
    pub old: Option<Arc<Entry>>,
    /// After.
    pub new: Option<Arc<Entry>>,
    /// Monotonic sequence number of the change.
    pub seq: u64,
    /// When the catalog applied it (for latency measurement).
    pub at: Instant,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A new asset.
    Inserted,
    /// An existing asset changed.
    Updated,
    /// Same fields as before: nothing broadcast.
    Unchanged,
}

/// The answer to a query.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Assets matching the filter.
    pub matched: usize,
    /// Rows in the full answer (assets, or groups for aggregates) before offset and limit.
    pub total: usize,
    /// Whether rows were left out by the limit.
    pub truncated: bool,
    /// The rows.
    pub rows: Rows,
    /// Notes such as fields no asset has.
    pub warnings: Vec<String>,
    /// Time spent, in microseconds.
    pub took_us: u64,
    /// The catalog's generation the answer was computed at (see [`Catalog::generation`]).
    pub generation: u64,
    /// The index entries behind `Rows::Assets`, for writing their documents' JSON text without copying them.
    pub(crate) entries: Vec<Arc<Entry>>,
}

impl Answer {
    /// The kind of rows: `assets`, `projected` or `groups`.
    pub fn kind(&self) -> &'static str {
        match &self.rows {
            Rows::Assets(_) => "assets",
            Rows::Projected(_) => "projected",
            Rows::Groups(_) => "groups",
        }
    }

    /// Appends the answer as one JSON object to `out`: `kind`, `matched`, `total`, `returned`, `truncated`,
    /// `warnings`, `took_us` and `rows` (the HTTP answer of `POST /api/v1/query`). Whole documents are copied as the
    /// JSON text the index keeps for each asset version, not rebuilt value by value.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"kind":"{}","matched":{},"total":{},"returned":{},"truncated":{},"warnings":"#,
            self.kind(),
            self.matched,
            self.total,
            self.rows.len(),
            self.truncated
        );
        let _ = serde_json::to_writer(&mut *out, &self.warnings);
        let _ = write!(out, r#","took_us":{},"rows":["#, self.took_us);
        match &self.rows {
            Rows::Assets(assets) if assets.len() == self.entries.len() => {
                for (i, e) in self.entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(e.json().as_bytes());
                }
            }
            Rows::Assets(assets) => {
                for (i, a) in assets.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, &a.doc);
                }
            }
            Rows::Projected(rows) => {
                for (i, r) in rows.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, r);
                }
            }
            Rows::Groups(rows) => {
                for (i, r) in rows.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, &r.to_json());
                }
            }
        }
        out.extend_from_slice(b"]}");
    }
}

/// Rows of an answer.
#[derive(Debug, Clone)]
pub enum Rows {
    /// Whole assets.
    Assets(Vec<Arc<Asset>>),
    /// Projected fields: one JSON object per asset (`id` plus the requested paths).
    Projected(Vec<Value>),
    /// One row per group.
    Groups(Vec<GroupRow>),
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Rows::Assets(v) => v.len(),
            Rows::Projected(v) => v.len(),
            Rows::Groups(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows as JSON values.
    pub fn to_json(&self) -> Vec<Value> {
        match self {
            Rows::Assets(v) => v.iter().map(|a| a.doc.clone()).collect(),
            Rows::Projected(v) => v.clone(),
            Rows::Groups(v) => v.iter().map(GroupRow::to_json).collect(),
        }
    }
}

/// One group of an aggregate answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// Group key: each `by` path and its value (`None` when the asset lacks it).
    pub key: Vec<(Arc<str>, Option<Scalar>)>,
    /// Each aggregate's label (`count()`, `avg(compute.cpu_percent)`) and value (`None` when no value).
    pub values: Vec<(String, Option<f64>)>,
}

impl GroupRow {
    /// As a flat JSON object: key fields then aggregate labels.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.key {
            m.insert(
                k.to_string(),
                v.as_ref().map_or(Value::Null, Scalar::to_json),
            );
        }
        for (k, v) in &self.values {
            m.insert(k.clone(), v.map_or(Value::Null, num_json));
        }
        Value::Object(m)
    }
}

/// Why a query failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The text does not parse.
    #[error("{0}")]
    Parse(#[from] ParseError),
}

/// Counts of assets by health and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HealthSummary {
    /// All assets.
    pub total: usize,
    /// Per health value.
    pub by_health: BTreeMap<String, usize>,
    /// Per kind, per health value.
    pub by_kind: BTreeMap<String, BTreeMap<String, usize>>,
}

/// The catalog. Cheap to clone; every clone sees the same assets.
#[derive(Debug, Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    index: RwLock<Index>,
    names: Names,
    changes: broadcast::Sender<Arc<Change>>,
    parsed: moka::sync::Cache<String, Arc<Query>>,
    settings: CatalogSettings,
    seq: std::sync::atomic::AtomicU64,
    followers: std::sync::atomic::AtomicUsize,
}

impl Catalog {
    /// An empty catalog.
    pub fn new(settings: CatalogSettings) -> Catalog {
        let index = Index::default();
        let names = index.names();
        let (changes, _) = broadcast::channel(settings.watch_buffer.max(16));
        Catalog {
            inner: Arc::new(Inner {
                index: RwLock::new(index),
                names,
                changes,
                parsed: moka::sync::Cache::new(settings.parsed_cache.max(1)),
                settings,
                seq: std::sync::atomic::AtomicU64::new(0),
                followers: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // A poisoned lock only means a writer panicked mid-way; the index itself stays consistent per call.
        self.inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds or replaces an asset; broadcasts the change unless nothing changed.
    pub fn upsert(&self, asset: Asset) -> Upsert {
        let asset = Arc::new(asset);
        let mut index = self.write();
        let entry = index.entry(asset);
        if let Some(old) = index.get(&entry.asset.id)
            && old.fields == entry.fields
        {
            return Upsert::Unchanged;
        }
        let id = entry.asset.id.clone();
        let old = index.put(entry.clone());
        let outcome = if old.is_some() {
            Upsert::Updated
        } else {
            Upsert::Inserted
        };
        self.publish(id, old, Some(entry));
        outcome
    }

    /// Removes an asset; `false` when it was not there.
    pub fn remove(&self, id: &str) -> bool {
        let mut index = self.write();
        match index.remove(id) {
            Some(old) => {
                self.publish(old.asset.id.clone(), Some(old), None);
                true
            }
            None => false,
        }
    }

    fn publish(&self, id: Arc<str>, old: Option<Arc<Entry>>, new: Option<Arc<Entry>>) {
        let seq = self
            .inner
            .seq
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        // No receivers is fine: nobody watches.
        let _ = self.inner.changes.send(Arc::new(Change {
            id,
            old,
            new,
            seq,
            at: Instant::now(),
        }));
    }

    /// One asset.
    pub fn get(&self, id: &str) -> Option<Arc<Asset>> {
        self.read().get(id).map(|e| e.asset.clone())
    }

    /// Several assets (missing ids are skipped).
    pub fn get_many(&self, ids: &[&str]) -> Vec<Arc<Asset>> {
        let index = self.read();
        ids.iter()
            .filter_map(|id| index.get(id).map(|e| e.asset.clone()))
            .collect()
    }

    /// Every asset id.
    pub fn ids(&self) -> Vec<Arc<str>> {
        let index = self.read();
        index
            .all_slots()
            .into_iter()
            .filter_map(|s| index.entry_at(s).map(|e| e.asset.id.clone()))
            .collect()
    }

    /// Number of assets.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of distinct field paths seen.
    pub fn field_count(&self) -> usize {
        self.read().field_count()
    }

    /// Parses (or reuses a parse of) `text`.
    pub fn parse(&self, text: &str) -> Result<Arc<Query>, QueryError> {
        if let Some(q) = self.inner.parsed.get(text) {
            return Ok(q);
        }
        let q = Arc::new(parse(text)?);
        self.inner.parsed.insert(text.to_owned(), q.clone());
        Ok(q)
    }

    /// Runs query text.
    pub fn query(&self, text: &str) -> Result<Answer, QueryError> {
        let started = Instant::now();
        let q = self.parse(text)?;
        let mut answer = self.run(&q);
        answer.took_us = started.elapsed().as_micros() as u64;
        Ok(answer)
    }

    /// Runs a parsed query.
    pub fn run(&self, q: &Query) -> Answer {
        let started = Instant::now();
        let index = self.read();
        // Changes bump the sequence under the write lock, so under the read lock it names this exact state.
        let generation = self.generation();
        let compiled = q.filter.as_ref().map(|f| index.compile(f));
        let warnings = self.unknown_fields(&index, q);
        let mut answer = if q.aggregates.is_empty() {
            self.run_rows(&index, q, compiled.as_ref())
        } else {
            self.run_groups(&index, q, compiled.as_ref())
        };
        answer.warnings = warnings;
        answer.generation = generation;
        answer.took_us = started.elapsed().as_micros() as u64;
        answer
    }

    /// The catalog's generation: the sequence number of the last change applied. Two answers to the same query
    /// at the same generation are the same answer.
    pub fn generation(&self) -> u64 {
        self.inner.seq.load(std::sync::atomic::Ordering::Acquire)
    }

    fn limit(&self, q: &Query) -> usize {
        q.limit.unwrap_or(self.inner.settings.default_limit).max(1)
    }

    fn run_rows(&self, index: &Index, q: &Query, filter: Option<&Compiled>) -> Answer {
        let mut slots = index.matches(filter);
        let total = slots.len();
        let limit = self.limit(q);
        let want = q.offset.saturating_add(limit).min(total);
        let sort: Vec<(Option<crate::index::FieldId>, bool)> = q
            .sort
            .iter()
            .filter_map(|k| match &k.target {
                SortTarget::Field(p) => Some((index.field(p), k.descending)),
                SortTarget::Aggregate(_) => None,
            })
            .collect();
        let entries = |s: u32| index.entry_at(s);
        // Ties (and no sort at all) order by id: through the id ranks when there are many rows to order, by
        // comparing the ids themselves when there are few.
        let ranks = (slots.len() > 64).then(|| index.id_rank());
        let by_id = |a: u32, b: u32| -> Ordering {
            match ranks {
                Some(r) => r[a as usize].cmp(&r[b as usize]),
                None => match (entries(a), entries(b)) {
                    (Some(ea), Some(eb)) => ea.asset.id.cmp(&eb.asset.id),
                    _ => Ordering::Equal,
                },
            }
        };
        let cmp = |a: &u32, b: &u32| -> Ordering {
            if sort.is_empty() {
                return by_id(*a, *b);
            }
            let (Some(ea), Some(eb)) = (entries(*a), entries(*b)) else {
                return Ordering::Equal;
            };
            for (field, desc) in &sort {
                let va = field.and_then(|f| ea.get(f));
                let vb = field.and_then(|f| eb.get(f));
                let o = match (va, vb) {
                    (Some(x), Some(y)) => {
                        let o = x.cmp_total(y);
                        if *desc { o.reverse() } else { o }
                    }
                    // Missing values sort last either way.
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            by_id(*a, *b)
        };
        if let Some(top) = top_by_number(index, &sort, &slots, want) {
            // The first `want` rows walked from the numeric index, ties at the boundary included.
            slots = top;
        } else if want > 0 && want < slots.len() {
            slots.select_nth_unstable_by(want - 1, cmp);
            slots.truncate(want);
        }
        slots.sort_unstable_by(cmp);
        let page: Vec<u32> = slots.into_iter().skip(q.offset).take(limit).collect();
        let returned = page.len();
        let mut page_entries = Vec::new();
        let rows = if q.fields.is_empty() {
            page_entries = page.iter().filter_map(|s| entries(*s).cloned()).collect();
            Rows::Assets(page_entries.iter().map(|e| e.asset.clone()).collect())
        } else {
            Rows::Projected(
                page.iter()
                    .filter_map(|s| entries(*s))
                    .map(|e| project(&e.asset, &q.fields))
                    .collect(),
            )
        };
        Answer {
            matched: total,
            total,
            truncated: q.offset + returned < total,
            rows,
            warnings: vec![],
            took_us: 0,
            generation: 0,
            entries: page_entries,
        }
    }

    fn run_groups(&self, index: &Index, q: &Query, filter: Option<&Compiled>) -> Answer {
        // Fast path: `count() by F` without a filter on a string/bool field reads the equality buckets.
        if filter.is_none()
            && q.group_by.len() == 1
            && q.aggregates
                .iter()
                .all(|a| a.func == AggFn::Count && a.path.is_none())
            && let Some(field) = index.field(&q.group_by[0])
            && index.has_only_scalar_keys(field)
            && let Some(buckets) = index.buckets(field)
        {
            let labels: Vec<String> = q.aggregates.iter().map(ToString::to_string).collect();
            let with_field: usize = buckets.values().map(|s| s.len()).sum();
            let missing = index.len().saturating_sub(with_field);
            let total = buckets.len() + usize::from(missing > 0);
            let mut pairs: Vec<(&EqKey, &std::collections::BTreeSet<u32>)> =
                buckets.iter().collect();
            // Default order (by key, the missing-field group last): only the rows of the page are built.
            let want = q.offset.saturating_add(self.limit(q));
            if q.sort.is_empty() && want < pairs.len() {
                pairs.select_nth_unstable_by(want, |a, b| eq_key_cmp(a.0, b.0));
                pairs.truncate(want);
            }
            let mut rows: Vec<GroupRow> = pairs
                .into_iter()
                .map(|(k, set)| GroupRow {
                    key: vec![(q.group_by[0].clone(), Some(key_scalar(k)))],
                    values: labels
                        .iter()
                        .map(|l| (l.clone(), Some(set.len() as f64)))
                        .collect(),
                })
                .collect();
            if missing > 0 {
                rows.push(GroupRow {
                    key: vec![(q.group_by[0].clone(), None)],
                    values: q
                        .aggregates
                        .iter()
                        .map(|a| (a.to_string(), Some(missing as f64)))
                        .collect(),
                });
            }
            return self.finish_groups_of(q, index.len(), rows, total);
        }
        if filter.is_none()
            && let Some(rows) = count_by_codes(index, q)
        {
            return self.finish_groups(q, index.len(), rows);
        }
        let slots = index.matches(filter);
        let matched = slots.len();
        let group_fields: Vec<Option<crate::index::FieldId>> =
            q.group_by.iter().map(|p| index.field(p)).collect();
        let agg_fields: Vec<Option<crate::index::FieldId>> = q
            .aggregates
            .iter()
            .map(|a| a.path.as_ref().and_then(|p| index.field(p)))
            .collect();
        let mut groups: HashMap<Vec<GroupKey>, Group> = HashMap::new();
        let mut key = Vec::with_capacity(group_fields.len());
        for slot in slots {
            let Some(entry) = index.entry_at(slot) else {
                continue;
            };
            key.clear();
            key.extend(
                group_fields
                    .iter()
                    .map(|f| GroupKey::of(f.and_then(|f| entry.get(f)))),
            );
            let (_, accs) = match groups.get_mut(&key) {
                Some(g) => g,
                None => groups.entry(key.clone()).or_insert_with(|| {
                    (
                        group_fields
                            .iter()
                            .map(|f| f.and_then(|f| entry.get(f)).cloned())
                            .collect(),
                        vec![Acc::default(); agg_fields.len()],
                    )
                }),
            };
            for ((acc, agg), field) in accs.iter_mut().zip(&q.aggregates).zip(&agg_fields) {
                match (agg.func, &agg.path) {
                    (AggFn::Count, None) => acc.count += 1,
                    (_, Some(_)) => {
                        if let Some(v) = field.and_then(|f| entry.get(f)) {
                            acc.count += 1;
                            if let Some(n) = v.as_num() {
                                acc.add(n);
                            }
                        }
                    }
                    (_, None) => {}
                }
            }
        }
        let rows: Vec<GroupRow> = groups
            .into_values()
            .map(|(key_values, accs)| GroupRow {
                key: q.group_by.iter().cloned().zip(key_values).collect(),
                values: q
                    .aggregates
                    .iter()
                    .zip(accs)
                    .map(|(a, acc)| (a.to_string(), acc.value(a.func)))
                    .collect(),
            })
            .collect();
        self.finish_groups(q, matched, rows)
    }

    fn finish_groups(&self, q: &Query, matched: usize, rows: Vec<GroupRow>) -> Answer {
        let total = rows.len();
        self.finish_groups_of(q, matched, rows, total)
    }

    /// Sorts and pages `rows`, which hold at least the first `offset + limit` of `total` groups.
    fn finish_groups_of(
        &self,
        q: &Query,
        matched: usize,
        mut rows: Vec<GroupRow>,
        total: usize,
    ) -> Answer {
        let limit = self.limit(q);
        let want = q.offset.saturating_add(limit);
        if want > 0 && want < rows.len() {
            rows.select_nth_unstable_by(want - 1, |a, b| group_cmp(a, b, &q.sort));
            rows.truncate(want);
        }
        rows.sort_by(|a, b| group_cmp(a, b, &q.sort));
        let rows: Vec<GroupRow> = rows.into_iter().skip(q.offset).take(limit).collect();
        let returned = rows.len();
        Answer {
            matched,
            total,
            truncated: q.offset + returned < total,
            rows: Rows::Groups(rows),
            warnings: vec![],
            took_us: 0,
            generation: 0,
            entries: vec![],
        }
    }

    fn unknown_fields(&self, index: &Index, q: &Query) -> Vec<String> {
        let mut paths: Vec<&Arc<str>> = Vec::new();
        if let Some(f) = &q.filter {
            f.paths(&mut paths);
        }
        paths.extend(q.group_by.iter());
        paths.extend(q.aggregates.iter().filter_map(|a| a.path.as_ref()));
        paths.extend(q.sort.iter().filter_map(|k| match &k.target {
            SortTarget::Field(p) => Some(p),
            SortTarget::Aggregate(_) => None,
        }));
        let mut out = Vec::new();
        for p in paths {
            if index.field(p).is_some() || index.is_empty_index() {
                continue;
            }
            let names = self
                .inner
                .names
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let candidates: Vec<&str> = names.iter().map(|n| &**n).collect();
            let hint = suggest(p, &candidates)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            let msg = format!("no asset has the field `{p}`{hint}");
            if !out.contains(&msg) {
                out.push(msg);
            }
        }
        out
    }

    /// Counts of assets by health and by kind.
    pub fn health_summary(&self) -> HealthSummary {
        let index = self.read();
        let mut s = HealthSummary {
            total: index.len(),
            ..HealthSummary::default()
        };
        for h in Health::ALL {
            s.by_health.insert(h.as_str().to_owned(), 0);
        }
        for slot in index.all_slots() {
            if let Some(e) = index.entry_at(slot) {
                *s.by_health
                    .entry(e.asset.health.as_str().to_owned())
                    .or_default() += 1;
                *s.by_kind
                    .entry(e.asset.kind.as_str().to_owned())
                    .or_default()
                    .entry(e.asset.health.as_str().to_owned())
                    .or_default() += 1;
            }
        }
        s
    }

    /// Assets of one kind (all kinds when `None`), by id, with paging; returns (total, page).
    pub fn list(
        &self,
        kind: Option<AssetKind>,
        health: Option<Health>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<Arc<Asset>>) {
        let mut q = Query {
            offset,
            limit: Some(limit.clamp(1, crate::query::parse::MAX_LIMIT)),
            ..Query::default()
        };
        let mut filters = Vec::new();
        if let Some(k) = kind {
            filters.push(crate::query::ast::Filter::Cmp(
                Arc::from("meta.kind"),
                crate::query::ast::CmpOp::Eq,
                Scalar::Str(Arc::from(k.as_str())),
            ));
        }
        if let Some(h) = health {
            filters.push(crate::query::ast::Filter::Cmp(
                Arc::from("meta.health"),
                crate::query::ast::CmpOp::Eq,
                Scalar::Str(Arc::from(h.as_str())),
            ));
        }
        q.filter = filters
            .into_iter()
            .reduce(|a, b| crate::query::ast::Filter::And(Box::new(a), Box::new(b)));
        let answer = self.run(&q);
        match answer.rows {
            Rows::Assets(v) => (answer.total, v),
            _ => (answer.total, vec![]),
        }
    }

    /// A stream of diffs for assets matching `filter` (every asset when `None`).
    pub fn watch(&self, filter: Option<&str>) -> Result<Watch, QueryError> {
        let query = match filter {
            Some(text) if !text.trim().is_empty() => {
                let q = self.parse(text)?;
                q.filter.clone()
            }
            _ => None,
        };
        Ok(Watch::new(
            self.clone(),
            query,
            self.inner.changes.subscribe(),
        ))
    }

    /// A stream of diffs for one asset.
    pub fn watch_asset(&self, id: &str) -> Watch {
        let filter = crate::query::ast::Filter::Cmp(
            Arc::from("meta.asset_id"),
            crate::query::ast::CmpOp::Eq,
            Scalar::Str(Arc::from(id)),
        );
        Watch::new(self.clone(), Some(filter), self.inner.changes.subscribe())
    }

    pub(crate) fn compile(&self, filter: &crate::query::ast::Filter) -> (Compiled, usize) {
        let index = self.read();
        (index.compile(filter), index.field_count())
    }

    pub(crate) fn names(&self) -> Names {
        self.inner.names.clone()
    }

    /// Number of live watchers (internal followers such as the cache tiers not counted).
    pub fn watchers(&self) -> usize {
        self.inner.changes.receiver_count().saturating_sub(
            self.inner
                .followers
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Every change from now on, whole entries before and after (for the cache tiers; not counted as a watcher).
    pub fn follow_changes(&self) -> ChangeFeed {
        self.inner
            .followers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ChangeFeed {
            rx: self.inner.changes.subscribe(),
            inner: self.inner.clone(),
        }
    }
}

/// The catalog's changes as they happen (see [`Catalog::follow_changes`]).
#[derive(Debug)]
pub struct ChangeFeed {
    rx: broadcast::Receiver<Arc<Change>>,
    inner: Arc<Inner>,
}

impl ChangeFeed {
    /// The next change; `Err(n)` when `n` changes were missed because this follower fell behind; `None` once the
    /// catalog is gone.
    pub async fn next(&mut self) -> Option<Result<Arc<Change>, u64>> {
        match self.rx.recv().await {
            Ok(c) => Some(Ok(c)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.inner
            .followers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Index {
    fn is_empty_index(&self) -> bool {
        self.len() == 0
    }
}

/// `count() by F1, F2, …` without a filter, every field holding only plain strings or booleans: each asset's
/// group is a mixed-radix code built from the equality buckets (digit 0: the field is missing), counted in a dense
/// array. Reads the buckets once and the slots once, with no per-asset hashing or cloning. `None` when the shape
/// does not fit (then the general path runs).
fn count_by_codes(index: &Index, q: &Query) -> Option<Vec<GroupRow>> {
    const MAX_GROUPS: usize = 1 << 16;
    if q.group_by.len() < 2
        || q.aggregates.is_empty()
        || !q
            .aggregates
            .iter()
            .all(|a| a.func == AggFn::Count && a.path.is_none())
    {
        return None;
    }
    let mut columns = Vec::with_capacity(q.group_by.len());
    let mut radix: usize = 1;
    let mut radixes = Vec::with_capacity(q.group_by.len());
    for path in &q.group_by {
        let column = index.key_column(index.field(path)?)?;
        let next = radix
            .checked_mul(column.keys.len() + 1)
            .filter(|r| *r <= MAX_GROUPS)?;
        radixes.push(radix as u32);
        columns.push(column);
        radix = next;
    }
    let mut counts = vec![0u32; radix];
    for slot in 0..index.slot_len() {
        if index.entry_at(slot as u32).is_none() {
            continue;
        }
        let mut c = 0u32;
        for (column, r) in columns.iter().zip(&radixes) {
            c += column.digits.get(slot).copied().unwrap_or(0) * r;
        }
        counts[c as usize] += 1;
    }
    let keys: Vec<&Vec<EqKey>> = columns.iter().map(|c| &c.keys).collect();
    let mut rows = Vec::new();
    for (mut c, n) in counts.into_iter().enumerate() {
        if n == 0 {
            continue;
        }
        let mut key = Vec::with_capacity(keys.len());
        for (path, field_keys) in q.group_by.iter().zip(&keys) {
            let base = field_keys.len() + 1;
            let digit = c % base;
            c /= base;
            let value = digit
                .checked_sub(1)
                .and_then(|d| field_keys.get(d))
                .map(key_scalar);
            key.push((path.clone(), value));
        }
        rows.push(GroupRow {
            key,
            values: q
                .aggregates
                .iter()
                .map(|a| (a.to_string(), Some(f64::from(n))))
                .collect(),
        });
    }
    Some(rows)
}

/// For a sort on one numeric field over many rows: the rows whose values come first, walked from the field's
/// numeric index (best first) until `want` rows are found plus every row tied with the last one; the caller sorts
/// them. `None` when the shape does not fit (the general selection runs then).
fn top_by_number(
    index: &Index,
    sort: &[(Option<crate::index::FieldId>, bool)],
    slots: &[u32],
    want: usize,
) -> Option<Vec<u32>> {
    let [(Some(field), desc)] = sort else {
        return None;
    };
    if want == 0 || slots.len() <= 4 * want || slots.len() <= 64 {
        return None;
    }
    let numbers = index.numbers_only(*field)?;
    // Membership of the matching rows, by slot.
    let mut member = vec![false; index.slot_len()];
    for s in slots {
        member[*s as usize] = true;
    }
    let mut out: Vec<u32> = Vec::with_capacity(want + 8);
    let mut last: Option<crate::index::OrdF64> = None;
    let mut walk = |it: &mut dyn Iterator<Item = &(crate::index::OrdF64, u32)>| {
        for (v, s) in it {
            if out.len() >= want && last != Some(*v) {
                return true;
            }
            if member[*s as usize] {
                out.push(*s);
                last = Some(*v);
            }
        }
        out.len() >= want
    };
    let enough = if *desc {
        walk(&mut numbers.iter().rev())
    } else {
        walk(&mut numbers.iter())
    };
    // Fewer matching rows hold the field than asked for: rows without it come next, so order them all.
    enough.then_some(out)
}

fn project(asset: &Asset, fields: &[Arc<str>]) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::from(&*asset.id));
    for f in fields {
        let mut cur = Some(&asset.doc);
        for part in f.split('.') {
            cur = cur.and_then(|c| match c {
                Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                other => other.get(part),
            });
        }
        let v = match (cur, &**f) {
            (Some(v), _) => v.clone(),
            (None, "meta.host") => asset.host.clone().map_or(Value::Null, Value::from),
            _ => Value::Null,
        };
        m.insert(f.to_string(), v);
    }
    Value::Object(m)
}

/// A group's key values and its accumulators.
type Group = (Vec<Option<Scalar>>, Vec<Acc>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    None,
    Bool(bool),
    Num(u64),
    Str(Arc<str>),
    Other(String),
}

impl GroupKey {
    fn of(v: Option<&Scalar>) -> GroupKey {
        match v {
            None => GroupKey::None,
            Some(Scalar::Bool(b)) => GroupKey::Bool(*b),
            Some(Scalar::Num(n)) => GroupKey::Num(n.to_bits()),
            Some(Scalar::Str(s)) => GroupKey::Str(s.clone()),
            Some(other) => GroupKey::Other(other.to_string()),
        }
    }
}

/// The order of `key_scalar(a)` and `key_scalar(b)` under `Scalar::cmp_total`.
fn eq_key_cmp(a: &EqKey, b: &EqKey) -> Ordering {
    match (a, b) {
        (EqKey::Bool(x), EqKey::Bool(y)) => x.cmp(y),
        (EqKey::Str(x), EqKey::Str(y)) => x.cmp(y),
        (EqKey::Bool(_), EqKey::Str(_)) => Ordering::Less,
        (EqKey::Str(_), EqKey::Bool(_)) => Ordering::Greater,
    }
}

fn key_scalar(k: &EqKey) -> Scalar {
    match k {
        EqKey::Str(s) => Scalar::Str(s.clone()),
        EqKey::Bool(b) => Scalar::Bool(*b),
    }
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Acc {
    fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn value(&self, f: AggFn) -> Option<f64> {
        match f {
            AggFn::Count => Some(self.count as f64),
            _ if self.n == 0 => None,
            AggFn::Avg => Some(round6(self.sum / self.n as f64)),
            AggFn::Sum => Some(round6(self.sum)),
            AggFn::Min => Some(self.min),
            AggFn::Max => Some(self.max),
        }
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn group_cmp(a: &GroupRow, b: &GroupRow, sort: &[SortKey]) -> Ordering {
    for k in sort {
        let o = match &k.target {
            SortTarget::Aggregate(agg) => {
                let label = agg_label(agg);
                let va = a
                    .values
                    .iter()
                    .find(|(l, _)| *l == label)
                    .and_then(|(_, v)| *v);
                let vb = b
                    .values
                    .iter()
                    .find(|(l, _)| *l == label)
                    .and_then(|(_, v)| *v);
                cmp_opt(
                    va.map(Scalar::Num).as_ref(),
                    vb.map(Scalar::Num).as_ref(),
                    k.descending,
                )
            }
            SortTarget::Field(p) => {
                let va = a
                    .key
                    .iter()
                    .find(|(f, _)| f == p)
                    .and_then(|(_, v)| v.as_ref());
                let vb = b
                    .key
                    .iter()
                    .find(|(f, _)| f == p)
                    .and_then(|(_, v)| v.as_ref());
                cmp_opt(va, vb, k.descending)
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    // Default: by key, missing keys last.
    for ((_, va), (_, vb)) in a.key.iter().zip(&b.key) {
        let o = cmp_opt(va.as_ref(), vb.as_ref(), false);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn agg_label(a: &Aggregate) -> String {
    a.to_string()
}

fn cmp_opt(a: Option<&Scalar>, b: Option<&Scalar>, desc: bool) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => {
            let o = x.cmp_total(y);
            if desc { o.reverse() } else { o }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
