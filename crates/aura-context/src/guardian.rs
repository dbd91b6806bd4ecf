//! The Guardian: validates asset files (TOML syntax, schema and required sections, checksum,
//! freshness, leftover lock and temp files, orphans, sensor health) and repairs them in levels
//! (seed 001 §4.2):
//!
//! 1. syntax and metadata fixes in place (unterminated strings, trailing commas, unclosed
//!    headers, control bytes, missing or malformed `[meta]` fields);
//! 2. restore the newest backup that validates;
//! 3. partial recovery: keep every section that still parses on its own;
//! 4. emergency skeleton: `[meta]` only, health `unknown`;
//! 5. sensor restart: ask the sensor that owns the asset to restart and rewrite the file.
//!
//! The original of every repaired file is kept under `<dir>/.quarantine/`. Each repair is
//! returned as a [`RepairRecord`]; the caller records it in the audit trail.

use std::fs;
use std::path::{Path, PathBuf};

use aura_core::Timestamp;
use toml::{Table, Value};

use crate::aav::format::{self, AssetKind, Document, Health, SCHEMA_VERSION, valid_asset_id};
use crate::aav::{Writer, WriterOptions};
use crate::metric_names;

/// What kind of problem a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueClass {
    /// Cannot be read.
    Unreadable,
    /// Not valid TOML.
    Syntax,
    /// TOML, but not the `.aav` schema (missing `[meta]`, bad field types, …).
    Schema,
    /// `meta.checksum` does not match the content.
    Checksum,
    /// Not updated within the freshness bound.
    Stale,
    /// A temp file left by an interrupted write.
    LeftoverTemp,
    /// A lock file whose asset file is gone.
    LeftoverLock,
    /// Backups, history or a file name that belong to no asset file.
    Orphan,
    /// A sensor of the asset reports errors or a crash loop.
    SensorHealth,
}

impl IssueClass {
    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            IssueClass::Unreadable => "unreadable",
            IssueClass::Syntax => "syntax",
            IssueClass::Schema => "schema",
            IssueClass::Checksum => "checksum",
            IssueClass::Stale => "stale",
            IssueClass::LeftoverTemp => "leftover_temp",
            IssueClass::LeftoverLock => "leftover_lock",
            IssueClass::Orphan => "orphan",
            IssueClass::SensorHealth => "sensor_health",
        }
    }

    /// Whether this class makes a file invalid (the others are warnings).
    #[must_use]
    pub fn is_error(self) -> bool {
        !matches!(self, IssueClass::SensorHealth)
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// Its class.
    pub class: IssueClass,
    /// What exactly.
    pub message: String,
}

/// The verdict on one path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// The asset, when known.
    pub asset_id: Option<String>,
    /// `meta.health`, when readable.
    pub health: Option<String>,
    /// What is wrong (empty: valid).
    pub issues: Vec<Issue>,
}

impl FileReport {
    /// No error-class issue.
    #[must_use]
    pub fn valid(&self) -> bool {
        self.issues.iter().all(|i| !i.class.is_error())
    }
}

/// Validation bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardianOptions {
    /// A file not updated for this long is stale, in milliseconds; 0 disables the check.
    pub stale_after_ms: i64,
    /// Temp files older than this are leftovers, in milliseconds.
    pub leftover_after_ms: i64,
}

impl Default for GuardianOptions {
    fn default() -> Self {
        GuardianOptions {
            stale_after_ms: 300_000,
            leftover_after_ms: 60_000,
        }
    }
}

/// Validates one asset file.
#[must_use]
pub fn validate_file(path: &Path, options: &GuardianOptions, now: Timestamp) -> FileReport {
    let stem = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
    validate_as(path, stem, options, now)
}

/// Validates `path` as the file of asset `stem` (a backup's name is not its asset id).
fn validate_as(
    path: &Path,
    stem: Option<String>,
    options: &GuardianOptions,
    now: Timestamp,
) -> FileReport {
    let mut report = FileReport {
        path: path.to_owned(),
        asset_id: stem.clone(),
        health: None,
        issues: Vec::new(),
    };
    let mut push = |class, message: String| report.issues.push(Issue { class, message });
    let text = match fs::read(path) {
        Err(e) => {
            push(IssueClass::Unreadable, format!("cannot read: {e}"));
            return report;
        }
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                push(IssueClass::Syntax, "not UTF-8 text".into());
                return report;
            }
        },
    };
    let doc = match Document::parse(&text) {
        Ok(d) => d,
        Err(e) => {
            push(IssueClass::Syntax, first_line(&e));
            return report;
        }
    };
    for p in doc.schema_problems() {
        push(IssueClass::Schema, p);
    }
    if let (Some(id), Some(stem)) = (doc.asset_id(), &stem)
        && id != stem
    {
        push(
            IssueClass::Orphan,
            format!("file name `{stem}.aav` does not match `meta.asset_id` `{id}`"),
        );
    }
    if let Some(stored) = doc.stored_checksum()
        && stored != doc.computed_checksum()
    {
        push(
            IssueClass::Checksum,
            "`meta.checksum` does not match the content (changed outside Aura, or corrupted)"
                .into(),
        );
    }
    if options.stale_after_ms > 0
        && let Some(at) = doc.updated_at()
        && now.as_millis() - at.as_millis() > options.stale_after_ms
    {
        push(
            IssueClass::Stale,
            format!(
                "not updated for {} s (bound {} s)",
                (now.as_millis() - at.as_millis()) / 1000,
                options.stale_after_ms / 1000
            ),
        );
    }
    for (sensor, status) in doc.sensor_status() {
        if status.starts_with("error") || status == "crash_loop" {
            push(
                IssueClass::SensorHealth,
                format!("sensor `{sensor}`: {status}"),
            );
        }
    }
    report.health = doc.health().map(|h| h.as_str().to_owned());
    if let Some(id) = doc.asset_id() {
        report.asset_id = Some(id.to_owned());
    }
    report
}

/// Validates every asset file in `dir` and finds leftovers and orphans.
pub fn scan(
    dir: &Path,
    options: &GuardianOptions,
    now: Timestamp,
) -> std::io::Result<Vec<FileReport>> {
    let mut out = Vec::new();
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    let assets: Vec<&str> = names
        .iter()
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| n.strip_suffix(".aav"))
        .collect();
    for name in &names {
        let path = dir.join(name);
        if let Some(stem) = name.strip_suffix(".aav")
            && !name.starts_with('.')
        {
            let _ = stem;
            out.push(validate_file(&path, options, now));
        } else if let Some(rest) = name.strip_prefix('.')
            && let Some((id, _)) = rest.split_once(".aav.tmp.")
        {
            let age = age_ms(&path, now);
            if age > options.leftover_after_ms {
                out.push(leftover(
                    &path,
                    id,
                    IssueClass::LeftoverTemp,
                    format!("temp file of an interrupted write, {} s old", age / 1000),
                ));
            }
        } else if let Some(id) = name
            .strip_prefix('.')
            .and_then(|r| r.strip_suffix(".aav.lock"))
            && !assets.contains(&id)
            && !lock_held(&path)
        {
            out.push(leftover(
                &path,
                id,
                IssueClass::LeftoverLock,
                "lock file of an asset file that no longer exists".into(),
            ));
        }
    }
    for sub in [".backups"] {
        let Ok(entries) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Some(id) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !assets.contains(&id.as_str()) {
                out.push(leftover(
                    &e.path(),
                    &id,
                    IssueClass::Orphan,
                    "backups of an asset file that no longer exists".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn leftover(path: &Path, id: &str, class: IssueClass, message: String) -> FileReport {
    FileReport {
        path: path.to_owned(),
        asset_id: Some(id.to_owned()),
        health: None,
        issues: vec![Issue { class, message }],
    }
}

fn age_ms(path: &Path, now: Timestamp) -> i64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| now.as_millis() - d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock_held(path: &Path) -> bool {
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => match f.try_lock() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(_)) => false,
        },
        Err(_) => false,
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_owned()
}

/// Restarts the sensor that owns an asset (repair level 5).
pub trait SensorRestarter: Send + Sync {
    /// Restarts the sensors writing `asset_id` and has them rewrite its file; `false` when no
    /// sensor here owns it.
    fn restart(&self, asset_id: &str) -> bool;
}

/// One repair attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepairRecord {
    /// The file (or leftover) repaired.
    pub path: PathBuf,
    /// The asset.
    pub asset_id: Option<String>,
    /// 1 to 5 (see the module documentation).
    pub level: u8,
    /// What was done.
    pub action: String,
    /// Whether the file validates afterwards (for level 5: whether a sensor took it over).
    pub ok: bool,
    /// Details (issues fixed, sections lost, the quarantined original).
    pub detail: String,
}

/// Repairs what [`validate_file`]/[`scan`] reported in `report`, escalating from level 1 up to
/// `max_level`; stops at the first level after which the file validates. Returns every attempt.
pub fn repair(
    report: &FileReport,
    options: &GuardianOptions,
    max_level: u8,
    restarter: Option<&dyn SensorRestarter>,
    now: Timestamp,
) -> Vec<RepairRecord> {
    let records = repair_inner(report, options, max_level, restarter, now);
    for r in &records {
        metrics::counter!(
            metric_names::REPAIRS,
            "level" => r.level.to_string(),
            "result" => if r.ok { "ok" } else { "failed" }
        )
        .increment(1);
    }
    records
}

fn repair_inner(
    report: &FileReport,
    options: &GuardianOptions,
    max_level: u8,
    restarter: Option<&dyn SensorRestarter>,
    now: Timestamp,
) -> Vec<RepairRecord> {
    let path = &report.path;
    let record = |level, action: &str, ok, detail: String| RepairRecord {
        path: path.clone(),
        asset_id: report.asset_id.clone(),
        level,
        action: action.to_owned(),
        ok,
        detail,
    };
    let classes: Vec<IssueClass> = report.issues.iter().map(|i| i.class).collect();
    // Leftovers are removed (level 1).
    if let [c @ (IssueClass::LeftoverTemp | IssueClass::LeftoverLock | IssueClass::Orphan)] =
        classes.as_slice()
        && path.extension().is_none_or(|e| e != "aav")
    {
        let removed = if path.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        return vec![record(
            1,
            &format!("remove {}", c.as_str()),
            removed.is_ok(),
            match removed {
                Ok(()) => report.issues[0].message.clone(),
                Err(e) => format!("cannot remove: {e}"),
            },
        )];
    }
    if report.valid() {
        return Vec::new();
    }
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return Vec::new();
    };
    if !valid_asset_id(stem) {
        return vec![record(
            0,
            "none",
            false,
            format!("`{stem}` is not a valid asset id; not touched"),
        )];
    }
    let writer = match Writer::new(
        dir,
        WriterOptions {
            backups: 0,
            ..WriterOptions::default()
        },
    ) {
        Ok(w) => w,
        Err(e) => return vec![record(0, "none", false, e.to_string())],
    };
    let original = fs::read(path).unwrap_or_default();
    let quarantined = quarantine(dir, stem, &original, now);
    let kept = match &quarantined {
        Some(q) => format!("original kept at {}", q.display()),
        None => "original could not be kept".to_owned(),
    };
    let text = String::from_utf8_lossy(&original).into_owned();
    let mut out = Vec::new();
    let check = |out: &mut Vec<RepairRecord>, level, action: &str, detail: String| -> bool {
        let after = validate_file(
            path,
            &GuardianOptions {
                stale_after_ms: 0,
                ..options.clone()
            },
            now,
        );
        let ok = after.valid();
        let detail = if ok {
            format!("{detail}; {kept}")
        } else {
            let left: Vec<&str> = after.issues.iter().map(|i| i.message.as_str()).collect();
            format!("{detail}; still: {}", left.join("; "))
        };
        out.push(record(level, action, ok, detail));
        ok
    };
    let only_stale = classes
        .iter()
        .all(|c| matches!(c, IssueClass::Stale | IssueClass::SensorHealth));
    let checksum_only = classes.iter().all(|c| {
        matches!(
            c,
            IssueClass::Checksum | IssueClass::Stale | IssueClass::SensorHealth
        )
    });
    if !only_stale {
        // Level 1: syntax and metadata fixes (not for a bare checksum mismatch: re-stamping
        // would bless content changed behind Aura's back; a backup is tried first).
        if max_level >= 1 && !checksum_only {
            let (fixed, notes) = fix_syntax(&text);
            let has_backup = crate::aav::backups(dir, stem).iter().any(|b| {
                validate_as(
                    b,
                    Some(stem.to_owned()),
                    &GuardianOptions {
                        stale_after_ms: 0,
                        ..options.clone()
                    },
                    now,
                )
                .valid()
            });
            // A fix whose content no longer matches the stored checksum lost or changed data:
            // prefer a backup when there is one.
            let faithful =
                |doc: &Document| doc.stored_checksum() == Some(doc.computed_checksum().as_str());
            if let Ok(doc) = Document::parse(&fixed)
                && doc.meta().is_some()
                && (faithful(&doc) || !has_backup)
            {
                let (doc, meta_notes) = fix_meta(doc, stem, path, now);
                let mut notes = notes;
                notes.extend(meta_notes);
                if writer.put(stem, &doc).is_ok()
                    && check(&mut out, 1, "syntax and metadata fix", notes.join(", "))
                {
                    return out;
                }
            }
        }
        // Level 2: newest backup that validates.
        if max_level >= 2 {
            let mut restored = false;
            for b in crate::aav::backups(dir, stem) {
                let r = validate_as(
                    &b,
                    Some(stem.to_owned()),
                    &GuardianOptions {
                        stale_after_ms: 0,
                        ..options.clone()
                    },
                    now,
                );
                let backup_ok = r.valid();
                if backup_ok
                    && fs::read(&b)
                        .and_then(|bytes| fs::write(path, bytes))
                        .is_ok()
                {
                    restored = check(
                        &mut out,
                        2,
                        "restore backup",
                        format!("restored {}", b.display()),
                    );
                    if restored {
                        break;
                    }
                }
            }
            if restored {
                return out;
            }
        }
        // Level 3: keep every section that parses on its own.
        if max_level >= 3 {
            let (doc, kept_sections, lost) = partial(&text);
            if !kept_sections.is_empty() {
                let (doc, _) = fix_meta(doc, stem, path, now);
                if writer.put(stem, &doc).is_ok()
                    && check(
                        &mut out,
                        3,
                        "partial recovery",
                        format!(
                            "kept [{}], lost [{}]",
                            kept_sections.join(", "),
                            lost.join(", ")
                        ),
                    )
                {
                    return out;
                }
            }
        }
        // Level 4: skeleton.
        if max_level >= 4 {
            let (doc, _) = fix_meta(Document::from_table(Table::new()), stem, path, now);
            let kind = doc.kind().unwrap_or(AssetKind::Host);
            if writer.put(stem, &doc).is_ok()
                && check(
                    &mut out,
                    4,
                    "emergency skeleton",
                    format!("`[meta]` only, kind {kind}, health unknown"),
                )
                && max_level < 5
            {
                return out;
            }
        }
    }
    // Level 5: the sensor rebuilds the file.
    if max_level >= 5 {
        let restarted = restarter.is_some_and(|r| r.restart(stem));
        out.push(record(
            5,
            "sensor restart",
            restarted,
            if restarted {
                "the asset's sensors were restarted and rewrite the file".to_owned()
            } else {
                "no sensor in this process writes this asset; run `aura sensor` for it".to_owned()
            },
        ));
    }
    out
}

fn quarantine(dir: &Path, stem: &str, bytes: &[u8], now: Timestamp) -> Option<PathBuf> {
    let q = dir.join(".quarantine");
    fs::create_dir_all(&q).ok()?;
    let path = q.join(format!("{stem}.{}.aav", now.as_millis()));
    fs::write(&path, bytes).ok()?;
    Some(path)
}

/// Level 1, text part: drops control bytes, closes unterminated strings and section headers,
/// removes trailing commas, drops a torn last line. Returns the text and what was done.
#[must_use]
pub fn fix_syntax(text: &str) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    if clean.len() != text.len() {
        notes.push("removed control bytes".to_owned());
    }
    let mut lines: Vec<String> = Vec::new();
    for line in clean.lines() {
        let mut l = line.trim_end().to_owned();
        let trimmed = l.trim_start();
        if trimmed.starts_with('[') && !trimmed.contains(']') {
            l.push(']');
            notes.push(format!("closed header `{}`", l.trim()));
        }
        if l.matches('"').count() % 2 == 1 && !l.contains("\"\"\"") {
            l.push('"');
            notes.push("closed an unterminated string".to_owned());
        }
        for (from, to) in [(", ]", " ]"), (",]", "]"), (", }", " }"), (",}", "}")] {
            if l.contains(from) {
                l = l.replace(from, to);
                notes.push("removed a trailing comma".to_owned());
            }
        }
        if l.trim_end().ends_with('=') {
            notes.push(format!("dropped a line without a value `{}`", l.trim()));
            continue;
        }
        lines.push(l);
    }
    notes.dedup();
    (lines.join("\n") + "\n", notes)
}

/// Level 1, metadata part: fills or corrects every `[meta]` field.
fn fix_meta(doc: Document, stem: &str, path: &Path, now: Timestamp) -> (Document, Vec<String>) {
    let mut notes = Vec::new();
    let mut table = doc.into_table();
    format::migrate(&mut table);
    let mut meta = match table.remove("meta") {
        Some(Value::Table(t)) => t,
        _ => {
            notes.push("rebuilt `[meta]`".to_owned());
            Table::new()
        }
    };
    let mut set = |meta: &mut Table, key: &str, v: Value, why: &str| {
        meta.insert(key.to_owned(), v);
        notes.push(format!("{why} `meta.{key}`"));
    };
    if meta.get("asset_id").and_then(Value::as_str) != Some(stem) {
        set(&mut meta, "asset_id", Value::String(stem.to_owned()), "set");
    }
    if meta
        .get("kind")
        .and_then(Value::as_str)
        .and_then(AssetKind::parse)
        .is_none()
    {
        set(&mut meta, "kind", Value::String("host".into()), "defaulted");
    }
    if !meta.get("name").is_some_and(Value::is_str) {
        set(&mut meta, "name", Value::String(stem.to_owned()), "set");
    }
    if meta.get("schema_version").and_then(Value::as_integer) != Some(SCHEMA_VERSION) {
        set(
            &mut meta,
            "schema_version",
            Value::Integer(SCHEMA_VERSION),
            "set",
        );
    }
    if meta
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
        .is_none()
    {
        let mtime = fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| Timestamp::from_millis(d.as_millis() as i64))
            .unwrap_or(now);
        set(
            &mut meta,
            "updated_at",
            Value::String(mtime.to_rfc3339()),
            "corrected",
        );
    }
    if meta
        .get("health")
        .and_then(Value::as_str)
        .and_then(Health::parse)
        .is_none()
    {
        set(
            &mut meta,
            "health",
            Value::String("unknown".into()),
            "reset",
        );
    }
    match meta.get("sensor_status") {
        Some(Value::Table(t)) if t.values().all(Value::is_str) => {}
        _ => set(
            &mut meta,
            "sensor_status",
            Value::Table(Table::new()),
            "reset",
        ),
    }
    meta.insert("checksum".into(), Value::String(String::new()));
    // Sensor sections that are not tables cannot be kept.
    for name in format::SECTIONS {
        if table.get(*name).is_some_and(|v| !v.is_table()) {
            table.remove(*name);
            notes.push(format!("dropped malformed `{name}`"));
        }
    }
    let mut out = Table::new();
    out.insert("meta".into(), Value::Table(meta));
    out.extend(table);
    let mut doc = Document::from_table(out);
    // Typed keys with a wrong type are dropped so the schema holds.
    let problems = doc.schema_problems();
    for p in problems {
        if let Some(path) = p.strip_prefix('`').and_then(|r| r.split('`').next())
            && let Some((sec, key)) = path.split_once('.')
            && sec != "meta"
            && let Some(Value::Table(t)) = doc.table_mut().get_mut(sec)
        {
            t.remove(key);
            notes.push(format!("dropped invalid `{path}`"));
        }
    }
    (doc, notes)
}

/// Level 3: parses each `[section]` chunk on its own; returns what parsed, the kept and the
/// lost section names.
fn partial(text: &str) -> (Document, Vec<String>, Vec<String>) {
    let mut chunks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') && !t.starts_with("[[") {
            let name = t
                .trim_start_matches('[')
                .split([']', '.'])
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            if chunks.last().is_none_or(|(n, _)| *n != name) {
                chunks.push((name, String::new()));
            }
        }
        if let Some((_, body)) = chunks.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let mut table = Table::new();
    let (mut kept, mut lost) = (Vec::new(), Vec::new());
    for (name, body) in chunks {
        match body.parse::<Table>() {
            Ok(t) => {
                kept.push(name);
                for (k, v) in t {
                    table.insert(k, v);
                }
            }
            Err(_) => lost.push(name),
        }
    }
    (Document::from_table(table), kept, lost)
}
