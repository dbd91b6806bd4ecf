//! The in-memory index: assets in slots with their flattened fields (interned paths, sorted for binary search),
//! an equality index per string/boolean field and an ordered index per numeric field. Filters are compiled
//! against the interned paths and planned on the most selective index before being checked asset by asset.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, OnceLock, RwLock};

use regex::Regex;

use crate::asset::Asset;
use crate::query::ast::{CmpOp, Filter};
use crate::value::{Scalar, flatten};

/// An interned field path.
pub(crate) type FieldId = u32;

/// An `f64` ordered by `total_cmp`, for the numeric indexes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrdF64(pub(crate) f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Keys of the equality index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum EqKey {
    Str(Arc<str>),
    Bool(bool),
}

impl EqKey {
    fn of(s: &Scalar) -> Option<EqKey> {
        match s {
            Scalar::Str(s) => Some(EqKey::Str(s.clone())),
            Scalar::Bool(b) => Some(EqKey::Bool(*b)),
            _ => None,
        }
    }
}

/// The names of interned paths, shared with watchers (append-only).
pub(crate) type Names = Arc<RwLock<Vec<Arc<str>>>>;

/// One indexed asset: the asset and its flattened fields sorted by field id.
#[derive(Debug)]
pub struct Entry {
    /// The asset.
    pub asset: Arc<Asset>,
    pub(crate) fields: Box<[(FieldId, Scalar)]>,
    /// The document as JSON text, made the first time an answer carries it. An entry never changes (an update
    /// indexes a new one), so the text stays true for the entry's whole life.
    json: OnceLock<Box<str>>,
}

impl Entry {
    /// The asset's whole document as compact JSON text (serialised once per version of the asset).
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            serde_json::to_string(&self.asset.doc)
                .unwrap_or_else(|_| "null".to_owned())
                .into_boxed_str()
        })
    }

    pub(crate) fn get(&self, field: FieldId) -> Option<&Scalar> {
        self.fields
            .binary_search_by_key(&field, |(f, _)| *f)
            .ok()
            .map(|i| &self.fields[i].1)
    }
}

/// A filter with its paths resolved to field ids (`None`: no asset has the path).
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    And(Box<Compiled>, Box<Compiled>),
    Or(Box<Compiled>, Box<Compiled>),
    Not(Box<Compiled>),
    Cmp(Option<FieldId>, CmpOp, Scalar),
    In(Option<FieldId>, Vec<Scalar>),
    Contains(Option<FieldId>, Scalar),
    Match(Option<FieldId>, Arc<Regex>),
    Exists(Option<FieldId>),
}

impl Compiled {
    /// Whether `entry` satisfies the filter.
    pub(crate) fn eval(&self, entry: &Entry) -> bool {
        match self {
            Compiled::And(a, b) => a.eval(entry) && b.eval(entry),
            Compiled::Or(a, b) => a.eval(entry) || b.eval(entry),
            Compiled::Not(a) => !a.eval(entry),
            Compiled::Cmp(f, op, lit) => {
                let v = f.and_then(|f| entry.get(f));
                match (v, op) {
                    (None, CmpOp::Ne) => true,
                    (None, _) => false,
                    (Some(v), CmpOp::Ne) => !compare(v, CmpOp::Eq, lit),
                    (Some(v), op) => compare(v, *op, lit),
                }
            }
            Compiled::In(f, lits) => f
                .and_then(|f| entry.get(f))
                .is_some_and(|v| lits.iter().any(|l| compare(v, CmpOp::Eq, l))),
            Compiled::Contains(f, lit) => f.and_then(|f| entry.get(f)).is_some_and(|v| match v {
                Scalar::Str(s) => match lit {
                    Scalar::Str(l) => s.contains(&**l),
                    other => s.contains(&other.to_string()),
                },
                Scalar::List(items) => items.iter().any(|i| compare(i, CmpOp::Eq, lit)),
                other => compare(other, CmpOp::Eq, lit),
            }),
            Compiled::Match(f, re) => f.and_then(|f| entry.get(f)).is_some_and(|v| match v {
                Scalar::Str(s) => re.is_match(s),
                Scalar::List(items) => items.iter().any(|i| re.is_match(&i.to_string())),
                other => re.is_match(&other.to_string()),
            }),
            Compiled::Exists(f) => f.and_then(|f| entry.get(f)).is_some(),
        }
    }
}

/// `field op literal`, with lists matching when any element does and numeric strings compared as numbers.
fn compare(v: &Scalar, op: CmpOp, lit: &Scalar) -> bool {
    use std::cmp::Ordering::*;
    let ord = match (v, lit) {
        (Scalar::List(items), _) => return items.iter().any(|i| compare(i, op, lit)),
        (Scalar::Num(a), Scalar::Num(b)) => a.partial_cmp(b),
        (Scalar::Str(a), Scalar::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (Scalar::Str(a), Scalar::Num(b)) => a.parse::<f64>().ok().and_then(|a| a.partial_cmp(b)),
        (Scalar::Num(a), Scalar::Str(b)) => b.parse::<f64>().ok().and_then(|b| a.partial_cmp(&b)),
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
    }
}

/// What a filter's best index gives: a candidate set to check, or everything.
enum Plan<'a> {
    Scan,
    Buckets(Vec<&'a BTreeSet<u32>>),
    Range(FieldId, Bound<OrdF64>, Bound<OrdF64>),
    /// Either side of an `or`: the union of both candidate sets.
    Union(Vec<Plan<'a>>),
}

/// The index proper. Guarded by the catalog's lock.
#[derive(Debug, Default)]
pub(crate) struct Index {
    ids: HashMap<Arc<str>, FieldId>,
    names: Names,
    slots: Vec<Option<Arc<Entry>>>,
    free: Vec<u32>,
    by_id: HashMap<Arc<str>, u32>,
    eq: Vec<HashMap<EqKey, BTreeSet<u32>>>,
    num: Vec<BTreeSet<(OrdF64, u32)>>,
    lists: Vec<bool>,
    scratch: Vec<(String, Scalar)>,
    /// Each slot's position in id order, made on first use after the set of assets changed (an update of an
    /// existing asset keeps its id and so its rank).
    id_rank: OnceLock<Vec<u32>>,
    /// Per field, each slot's equality key as a small number, made on first use after the field last changed.
    key_columns: Vec<OnceLock<Arc<KeyColumn>>>,
}

/// One field's equality keys by slot: `digits[slot]` is 0 when the slot lacks the field (or is past the end),
/// else 1 + the position of its key in `keys`.
#[derive(Debug)]
pub(crate) struct KeyColumn {
    pub(crate) keys: Vec<EqKey>,
    pub(crate) digits: Vec<u32>,
}

/// A set of slots as a bitmap (bit `s` set: slot `s` is in the set).
#[derive(Debug, Clone)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    fn empty(slots: usize) -> Bits {
        Bits(vec![0; slots.div_ceil(64)])
    }

    fn insert(&mut self, slot: u32) {
        if let Some(w) = self.0.get_mut(slot as usize / 64) {
            *w |= 1 << (slot % 64);
        }
    }

    fn and(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    fn or(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// Slots in the set, ascending.
    pub(crate) fn slots(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.0.iter().map(|w| w.count_ones() as usize).sum());
        for (i, w) in self.0.iter().enumerate() {
            let mut w = *w;
            while w != 0 {
                out.push(i as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
        out
    }
}

/// Candidate sets at most this large are checked asset by asset; larger ones are answered from the indexes alone
/// when every part of the filter is exact there (no asset is read).
const CHECK_AT_MOST: usize = 256;

impl Index {
    pub(crate) fn names(&self) -> Names {
        self.names.clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn field(&self, path: &str) -> Option<FieldId> {
        self.ids.get(path).copied()
    }

    pub(crate) fn field_count(&self) -> usize {
        self.ids.len()
    }

    fn intern(&mut self, path: &str) -> FieldId {
        if let Some(id) = self.ids.get(path) {
            return *id;
        }
        let id = self.ids.len() as FieldId;
        let name: Arc<str> = Arc::from(path);
        self.ids.insert(name.clone(), id);
        if let Ok(mut names) = self.names.write() {
            names.push(name);
        }
        self.eq.push(HashMap::new());
        self.num.push(BTreeSet::new());
        self.lists.push(false);
        self.key_columns.push(OnceLock::new());
        id
    }

    /// Builds the entry of `asset` (interning its paths).
    pub(crate) fn entry(&mut self, asset: Arc<Asset>) -> Arc<Entry> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        flatten(&asset.doc, &mut scratch);
        let mut fields: Vec<(FieldId, Scalar)> = scratch
            .drain(..)
            .map(|(path, v)| (self.intern(&path), v))
            .collect();
        // Header fields the document may lack (derived host) are indexed too.
        if let Some(host) = &asset.host
            && asset.doc["meta"].get("host").is_none()
        {
            let f = self.intern("meta.host");
            fields.push((f, Scalar::Str(Arc::from(host.as_str()))));
        }
        fields.sort_by_key(|(f, _)| *f);
        fields.dedup_by_key(|(f, _)| *f);
        self.scratch = scratch;
        Arc::new(Entry {
            asset,
            fields: fields.into_boxed_slice(),
            json: OnceLock::new(),
        })
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Arc<Entry>> {
        let slot = *self.by_id.get(id)?;
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Inserts or replaces; returns the previous entry.
    pub(crate) fn put(&mut self, entry: Arc<Entry>) -> Option<Arc<Entry>> {
        let id = entry.asset.id.clone();
        match self.by_id.get(&id).copied() {
            Some(slot) => {
                let old = self.slots[slot as usize].replace(entry.clone());
                if let Some(old) = &old {
                    self.reindex(slot, Some(old), Some(&entry));
                }
                old
            }
            None => {
                let slot = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.slots.push(None);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.slots[slot as usize] = Some(entry.clone());
                self.by_id.insert(id, slot);
                self.id_rank = OnceLock::new();
                self.reindex(slot, None, Some(&entry));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<Entry>> {
        let slot = self.by_id.remove(id)?;
        let old = self.slots.get_mut(slot as usize)?.take()?;
        self.id_rank = OnceLock::new();
        self.reindex(slot, Some(&old), None);
        self.free.push(slot);
        Some(old)
    }

    /// Updates the indexes for the fields that changed between `old` and `new`.
    fn reindex(&mut self, slot: u32, old: Option<&Entry>, new: Option<&Entry>) {
        let empty: Box<[(FieldId, Scalar)]> = Box::new([]);
        let a = old.map_or(&empty, |e| &e.fields);
        let b = new.map_or(&empty, |e| &e.fields);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let fa = a.get(i).map(|x| x.0);
            let fb = b.get(j).map(|x| x.0);
            match (fa, fb) {
                (Some(x), Some(y)) if x == y => {
                    if a[i].1 != b[j].1 {
                        self.unindex(slot, x, &a[i].1);
                        self.index(slot, y, &b[j].1);
                    }
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x < y => {
                    self.unindex(slot, x, &a[i].1);
                    i += 1;
                }
                (Some(_), Some(y)) => {
                    self.index(slot, y, &b[j].1);
                    j += 1;
                }
                (Some(x), None) => {
                    self.unindex(slot, x, &a[i].1);
                    i += 1;
                }
                (None, Some(y)) => {
                    self.index(slot, y, &b[j].1);
                    j += 1;
                }
                (None, None) => break,
            }
        }
    }

    fn index(&mut self, slot: u32, f: FieldId, v: &Scalar) {
        if !matches!(v, Scalar::Num(_)) {
            self.key_columns[f as usize] = OnceLock::new();
        }
        match v {
            Scalar::Num(n) => {
                self.num[f as usize].insert((OrdF64(*n), slot));
            }
            Scalar::List(items) => {
                self.lists[f as usize] = true;
                for item in items.iter() {
                    if let Some(k) = EqKey::of(item) {
                        self.eq[f as usize].entry(k).or_default().insert(slot);
                    }
                }
            }
            other => {
                if let Some(k) = EqKey::of(other) {
                    self.eq[f as usize].entry(k).or_default().insert(slot);
                }
            }
        }
    }

    fn unindex(&mut self, slot: u32, f: FieldId, v: &Scalar) {
        let drop_key = |eq: &mut HashMap<EqKey, BTreeSet<u32>>, k: EqKey| {
            if let Some(set) = eq.get_mut(&k) {
                set.remove(&slot);
                if set.is_empty() {
                    eq.remove(&k);
                }
            }
        };
        if !matches!(v, Scalar::Num(_)) {
            self.key_columns[f as usize] = OnceLock::new();
        }
        match v {
            Scalar::Num(n) => {
                self.num[f as usize].remove(&(OrdF64(*n), slot));
            }
            Scalar::List(items) => {
                for item in items.iter() {
                    if let Some(k) = EqKey::of(item) {
                        drop_key(&mut self.eq[f as usize], k);
                    }
                }
            }
            other => {
                if let Some(k) = EqKey::of(other) {
                    drop_key(&mut self.eq[f as usize], k);
                }
            }
        }
    }

    /// Resolves a filter's paths.
    pub(crate) fn compile(&self, f: &Filter) -> Compiled {
        let id = |p: &Arc<str>| self.field(p);
        match f {
            Filter::And(a, b) => {
                Compiled::And(Box::new(self.compile(a)), Box::new(self.compile(b)))
            }
            Filter::Or(a, b) => Compiled::Or(Box::new(self.compile(a)), Box::new(self.compile(b))),
            Filter::Not(a) => Compiled::Not(Box::new(self.compile(a))),
            Filter::Cmp(p, op, v) => Compiled::Cmp(id(p), *op, v.clone()),
            Filter::In(p, vs) => Compiled::In(id(p), vs.clone()),
            Filter::Contains(p, v) => Compiled::Contains(id(p), v.clone()),
            Filter::Match(p, re) => Compiled::Match(id(p), re.clone()),
            Filter::Exists(p) => Compiled::Exists(id(p)),
        }
    }

    /// Slots of every asset matching `filter` (all assets when `None`), in slot order.
    pub(crate) fn matches(&self, filter: Option<&Compiled>) -> Vec<u32> {
        let Some(filter) = filter else {
            return self.all_slots();
        };
        let (plan, size) = self.plan_sized(filter, usize::MAX);
        if size > CHECK_AT_MOST
            && let Some(bits) = self.exact(filter)
        {
            return bits.slots();
        }
        let check = |slot: u32| {
            self.slots
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|e| filter.eval(e))
        };
        match plan {
            Plan::Scan => self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, e)| e.as_ref().is_some_and(|e| filter.eval(e)))
                .map(|(i, _)| i as u32)
                .collect(),
            Plan::Buckets(sets) => {
                let mut out: Vec<u32> = if sets.len() == 1 {
                    sets[0].iter().copied().filter(|s| check(*s)).collect()
                } else {
                    let mut all: Vec<u32> = sets.iter().flat_map(|s| s.iter().copied()).collect();
                    all.sort_unstable();
                    all.dedup();
                    all.into_iter().filter(|s| check(*s)).collect()
                };
                out.sort_unstable();
                out
            }
            Plan::Range(f, lo, hi) => {
                let mut out: Vec<u32> = self.num[f as usize]
                    .range((lo.map(|v| (v, 0)), hi.map(|v| (v, u32::MAX))))
                    .map(|(_, s)| *s)
                    .filter(|s| check(*s))
                    .collect();
                out.sort_unstable();
                out
            }
            Plan::Union(parts) => {
                let mut all = Vec::new();
                for part in &parts {
                    self.candidates(part, &mut all);
                }
                all.sort_unstable();
                all.dedup();
                all.retain(|s| check(*s));
                all
            }
        }
    }

    /// The exact set of slots matching `f`, from the equality and numeric indexes alone; `None` when some part
    /// of the filter is not exact there (then candidates are checked asset by asset). Exact parts: `=` and `in`
    /// on fields holding only plain strings or booleans, comparisons with a number on fields holding only
    /// numbers, any test of a field no asset has, and `and` / `or` of exact parts.
    pub(crate) fn exact(&self, f: &Compiled) -> Option<Bits> {
        let plain = |field: FieldId| !self.lists.get(field as usize).copied().unwrap_or(true);
        match f {
            Compiled::Cmp(None, op, _) if *op != CmpOp::Ne => Some(Bits::empty(self.slots.len())),
            Compiled::In(None, _)
            | Compiled::Exists(None)
            | Compiled::Contains(None, _)
            | Compiled::Match(None, _) => Some(Bits::empty(self.slots.len())),
            Compiled::Cmp(Some(field), CmpOp::Eq, lit @ (Scalar::Str(_) | Scalar::Bool(_)))
                if plain(*field) && self.num[*field as usize].is_empty() =>
            {
                let mut bits = Bits::empty(self.slots.len());
                if let Some(set) = EqKey::of(lit).and_then(|k| self.eq[*field as usize].get(&k)) {
                    set.iter().for_each(|s| bits.insert(*s));
                }
                Some(bits)
            }
            Compiled::In(Some(field), lits)
                if plain(*field)
                    && self.num[*field as usize].is_empty()
                    && lits.iter().all(|l| EqKey::of(l).is_some()) =>
            {
                let mut bits = Bits::empty(self.slots.len());
                for k in lits.iter().filter_map(EqKey::of) {
                    if let Some(set) = self.eq[*field as usize].get(&k) {
                        set.iter().for_each(|s| bits.insert(*s));
                    }
                }
                Some(bits)
            }
            Compiled::Cmp(Some(field), op, Scalar::Num(n))
                if *op != CmpOp::Ne && plain(*field) && self.eq[*field as usize].is_empty() =>
            {
                let v = OrdF64(*n);
                let (lo, hi) = match op {
                    CmpOp::Eq => (Bound::Included(v), Bound::Included(v)),
                    CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(v)),
                    CmpOp::Le => (Bound::Unbounded, Bound::Included(v)),
                    CmpOp::Gt => (Bound::Excluded(v), Bound::Unbounded),
                    _ => (Bound::Included(v), Bound::Unbounded),
                };
                // Slot numbers order equal values: an excluded bound excludes every slot holding that value.
                let lo = match lo {
                    Bound::Included(v) => Bound::Included((v, 0)),
                    Bound::Excluded(v) => Bound::Excluded((v, u32::MAX)),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let hi = match hi {
                    Bound::Included(v) => Bound::Included((v, u32::MAX)),
                    Bound::Excluded(v) => Bound::Excluded((v, 0)),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let mut bits = Bits::empty(self.slots.len());
                self.num[*field as usize]
                    .range((lo, hi))
                    // NaN never matches a comparison (documents come from JSON and TOML, which have none anyway).
                    .filter(|(v, _)| !v.0.is_nan())
                    .for_each(|(_, s)| bits.insert(*s));
                Some(bits)
            }
            Compiled::And(a, b) => {
                let mut x = self.exact(a)?;
                x.and(&self.exact(b)?);
                Some(x)
            }
            Compiled::Or(a, b) => {
                let mut x = self.exact(a)?;
                x.or(&self.exact(b)?);
                Some(x)
            }
            _ => None,
        }
    }

    /// The key column of `field` (see [`KeyColumn`]), when every asset holding it holds a plain string or boolean.
    pub(crate) fn key_column(&self, field: FieldId) -> Option<Arc<KeyColumn>> {
        if !self.has_only_scalar_keys(field) {
            return None;
        }
        let buckets = self.eq.get(field as usize)?;
        let column = self.key_columns.get(field as usize)?.get_or_init(|| {
            let mut digits = vec![0u32; self.slots.len()];
            let mut keys = Vec::with_capacity(buckets.len());
            for (i, (k, set)) in buckets.iter().enumerate() {
                keys.push(k.clone());
                for s in set {
                    if let Some(d) = digits.get_mut(*s as usize) {
                        *d = i as u32 + 1;
                    }
                }
            }
            Arc::new(KeyColumn { keys, digits })
        });
        Some(column.clone())
    }

    /// Each slot's rank in id order (free slots rank last).
    pub(crate) fn id_rank(&self) -> &[u32] {
        self.id_rank.get_or_init(|| {
            let mut by_id: Vec<(&str, u32)> = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(s, e)| e.as_ref().map(|e| (&*e.asset.id, s as u32)))
                .collect();
            by_id.sort_unstable();
            let mut rank = vec![u32::MAX; self.slots.len()];
            for (r, (_, s)) in by_id.into_iter().enumerate() {
                rank[s as usize] = r as u32;
            }
            rank
        })
    }

    /// The numeric index of `field` when every asset holding the field holds a plain number there.
    pub(crate) fn numbers_only(&self, field: FieldId) -> Option<&BTreeSet<(OrdF64, u32)>> {
        let f = field as usize;
        (self.eq.get(f)?.is_empty() && !self.lists.get(f).copied().unwrap_or(true))
            .then(|| &self.num[f])
    }

    /// The candidate slots of a plan (unchecked, unsorted, maybe repeated); every slot for a scan.
    fn candidates(&self, plan: &Plan<'_>, out: &mut Vec<u32>) {
        match plan {
            Plan::Scan => out.extend(self.all_slots()),
            Plan::Buckets(sets) => {
                for set in sets {
                    out.extend(set.iter().copied());
                }
            }
            Plan::Range(f, lo, hi) => out.extend(
                self.num[*f as usize]
                    .range((lo.map(|v| (v, 0)), hi.map(|v| (v, u32::MAX))))
                    .map(|(_, s)| *s),
            ),
            Plan::Union(parts) => {
                for part in parts {
                    self.candidates(part, out);
                }
            }
        }
    }

    pub(crate) fn all_slots(&self) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Number of slots, live or free (slot numbers are below it).
    pub(crate) fn slot_len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn entry_at(&self, slot: u32) -> Option<&Arc<Entry>> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// The size of the equality bucket of `field = key`, for count-by fast paths.
    pub(crate) fn buckets(&self, field: FieldId) -> Option<&HashMap<EqKey, BTreeSet<u32>>> {
        self.eq.get(field as usize)
    }

    /// Whether every asset with `field` holds a plain string or boolean there (so buckets partition them).
    pub(crate) fn has_only_scalar_keys(&self, field: FieldId) -> bool {
        self.num.get(field as usize).is_some_and(BTreeSet::is_empty)
            && !self.lists.get(field as usize).copied().unwrap_or(true)
    }

    /// The cheapest plan with an estimated size; `cap` bounds the cost of estimating ranges.
    fn plan_sized(&self, f: &Compiled, cap: usize) -> (Plan<'_>, usize) {
        let all = self.len();
        match f {
            Compiled::Cmp(Some(field), op, lit) => match (op, lit) {
                (CmpOp::Eq, Scalar::Str(_) | Scalar::Bool(_))
                    if self.num[*field as usize].is_empty() =>
                {
                    match EqKey::of(lit).and_then(|k| self.eq[*field as usize].get(&k)) {
                        Some(set) => (Plan::Buckets(vec![set]), set.len()),
                        None => (Plan::Buckets(vec![]), 0),
                    }
                }
                (CmpOp::Eq | CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge, Scalar::Num(n)) => {
                    let v = OrdF64(*n);
                    let (lo, hi) = match op {
                        CmpOp::Eq => (Bound::Included(v), Bound::Included(v)),
                        CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(v)),
                        CmpOp::Le => (Bound::Unbounded, Bound::Included(v)),
                        CmpOp::Gt => (Bound::Excluded(v), Bound::Unbounded),
                        _ => (Bound::Included(v), Bound::Unbounded),
                    };
                    // Numeric strings compare as numbers too: only use the index when the field holds no strings.
                    if !self.eq[*field as usize].is_empty() {
                        return (Plan::Scan, all);
                    }
                    let set = &self.num[*field as usize];
                    let lo_t = lo.map(|v| (v, 0u32));
                    let hi_t = hi.map(|v| (v, u32::MAX));
                    let size = set.range((lo_t, hi_t)).take(cap.saturating_add(1)).count();
                    (Plan::Range(*field, lo, hi), size)
                }
                _ => (Plan::Scan, all),
            },
            Compiled::Cmp(None, CmpOp::Ne, _) => (Plan::Scan, all),
            Compiled::Cmp(None, ..) | Compiled::In(None, _) | Compiled::Exists(None) => {
                (Plan::Buckets(vec![]), 0)
            }
            Compiled::Contains(None, _) | Compiled::Match(None, _) => (Plan::Buckets(vec![]), 0),
            Compiled::In(Some(field), lits) => {
                if !self.num[*field as usize].is_empty() {
                    return (Plan::Scan, all);
                }
                let mut sets = Vec::new();
                let mut size = 0;
                for lit in lits {
                    let Some(k) = EqKey::of(lit) else {
                        return (Plan::Scan, all);
                    };
                    if let Some(set) = self.eq[*field as usize].get(&k) {
                        size += set.len();
                        sets.push(set);
                    }
                }
                (Plan::Buckets(sets), size)
            }
            Compiled::And(a, b) => {
                let (pa, sa) = self.plan_sized(a, cap);
                let (pb, sb) = self.plan_sized(b, cap.min(sa));
                if sb < sa { (pb, sb) } else { (pa, sa) }
            }
            Compiled::Or(a, b) => {
                let (pa, sa) = self.plan_sized(a, cap);
                let (pb, sb) = self.plan_sized(b, cap);
                match (pa, pb) {
                    (Plan::Scan, _) | (_, Plan::Scan) => (Plan::Scan, all),
                    (Plan::Buckets(mut x), Plan::Buckets(y)) => {
                        x.extend(y);
                        (Plan::Buckets(x), sa + sb)
                    }
                    // Candidates from both sides beat a scan while they are well under the whole catalog.
                    (pa, pb) if sa.saturating_add(sb) < all / 2 => {
                        (Plan::Union(vec![pa, pb]), sa + sb)
                    }
                    _ => (Plan::Scan, all),
                }
            }
            _ => (Plan::Scan, all),
        }
    }
}
