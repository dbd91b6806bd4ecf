//! The atomic asset-file writer: under an advisory lock, read the current file, merge the
//! updated sections, stamp `updated_at` and the checksum, keep a bounded backup, write a temp
//! file, fsync it, rename it over the old one and fsync the directory.
//!
//! A reader (or a `kill -9` at any instant) sees either the previous complete file or the new
//! complete file, never a mix. Writers of different sections of the same asset merge: each
//! holds the lock while it reads, merges and renames, so no section update is lost.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aura_core::Timestamp;
use toml::{Table, Value};

use super::error::AavError;
use super::format::{self, AssetKind, Document, Health, SCHEMA_VERSION, valid_asset_id};
use super::history;
use super::reader::Reader;

/// How the writer keeps backups and history.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Backups kept per asset (0 disables them). Default 5.
    pub backups: usize,
    /// Least time between two backups of the same asset, in milliseconds; writes in between
    /// replace the file without a new backup. Default 60 000.
    pub backup_interval_ms: i64,
    /// Append every written section to `<dir>/.history/<asset_id>.jsonl.gz`. Default off.
    pub history: bool,
    /// Rotate the history file past this many bytes (the previous one is kept as `.1`).
    /// Default 8 MiB.
    pub history_max_bytes: u64,
    /// fsync the file and the directory. Default on; tests of throughput may turn it off.
    pub durable: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            backups: 5,
            backup_interval_ms: 60_000,
            history: false,
            history_max_bytes: 8 << 20,
            durable: true,
        }
    }
}

/// One write: the asset's identity, the sections it replaces, and meta fields it sets.
#[derive(Debug, Clone)]
pub struct SectionUpdate {
    /// The asset.
    pub asset_id: String,
    /// Its kind (used when the file is created; kept in sync afterwards).
    pub kind: AssetKind,
    /// Its display name.
    pub name: String,
    /// Sections replaced wholesale (`compute`, `memory`, …); other sections stay as they are.
    pub sections: Vec<(String, Table)>,
    /// Sections removed.
    pub remove: Vec<String>,
    /// `meta.sensor_status` entries set (sensor → status); others stay.
    pub sensor_status: Vec<(String, String)>,
    /// `meta.health`, when known.
    pub health: Option<Health>,
    /// The write time; `None` means the system clock.
    pub at: Option<Timestamp>,
}

impl SectionUpdate {
    /// An update of `asset_id` that changes nothing yet (a heartbeat when written as is).
    #[must_use]
    pub fn new(asset_id: &str, kind: AssetKind, name: &str) -> SectionUpdate {
        SectionUpdate {
            asset_id: asset_id.to_owned(),
            kind,
            name: name.to_owned(),
            sections: Vec::new(),
            remove: Vec::new(),
            sensor_status: Vec::new(),
            health: None,
            at: None,
        }
    }

    /// Replaces section `name`.
    #[must_use]
    pub fn section(mut self, name: &str, table: Table) -> SectionUpdate {
        self.sections.push((name.to_owned(), table));
        self
    }

    /// Sets `meta.sensor_status.<sensor>`.
    #[must_use]
    pub fn status(mut self, sensor: &str, status: &str) -> SectionUpdate {
        self.sensor_status
            .push((sensor.to_owned(), status.to_owned()));
        self
    }

    /// Sets `meta.health`.
    #[must_use]
    pub fn health(mut self, health: Health) -> SectionUpdate {
        self.health = Some(health);
        self
    }

    /// Stamps the write with `at` instead of the system clock.
    #[must_use]
    pub fn at(mut self, at: Timestamp) -> SectionUpdate {
        self.at = Some(at);
        self
    }
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// The file written.
    pub path: PathBuf,
    /// Its new checksum.
    pub checksum: String,
    /// Whether a backup of the previous version was taken.
    pub backed_up: bool,
    /// The schema version the previous file was migrated from, if it was.
    pub migrated_from: Option<i64>,
    /// Whether the previous file could not be parsed and was set aside (the Guardian reports it).
    pub replaced_corrupt: bool,
    /// The document as written.
    pub document: Arc<Document>,
}

/// Writes asset files in one directory.
#[derive(Debug, Clone)]
pub struct Writer {
    dir: PathBuf,
    options: WriterOptions,
    reader: Option<Reader>,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The lock file guarding `<asset_id>.aav` (kept between writes; the Guardian removes stale ones).
#[must_use]
pub fn lock_path(dir: &Path, asset_id: &str) -> PathBuf {
    dir.join(format!(".{asset_id}.aav.lock"))
}

/// The name prefix of the temp files of `<asset_id>.aav` (`.<asset_id>.aav.tmp.<pid>.<n>`).
#[must_use]
pub fn temp_prefix(asset_id: &str) -> String {
    format!(".{asset_id}.aav.tmp.")
}

impl Writer {
    /// A writer for `dir`, created (mode 0755) if missing.
    pub fn new(dir: impl Into<PathBuf>, options: WriterOptions) -> Result<Writer, AavError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(AavError::io(&dir))?;
        Ok(Writer {
            dir,
            options,
            reader: None,
        })
    }

    /// Keeps `reader`'s cache current with every write (so a read after a write never parses).
    #[must_use]
    pub fn with_reader(mut self, reader: Reader) -> Writer {
        self.reader = Some(reader);
        self
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &WriterOptions {
        &self.options
    }

    /// The file of `asset_id`.
    pub fn path_for(&self, asset_id: &str) -> Result<PathBuf, AavError> {
        if !valid_asset_id(asset_id) {
            return Err(AavError::AssetId(asset_id.to_owned()));
        }
        Ok(self.dir.join(format!("{asset_id}.aav")))
    }

    /// Applies `update` atomically (blocking: call it from `spawn_blocking` in async code).
    pub fn update(&self, update: &SectionUpdate) -> Result<WriteOutcome, AavError> {
        let path = self.path_for(&update.asset_id)?;
        for (name, _) in &update.sections {
            if !valid_section(name) {
                return Err(AavError::Section(name.clone()));
            }
        }
        let _lock = self.lock(&update.asset_id)?;
        let at = update.at.unwrap_or_else(now);
        let previous = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(AavError::io(&path)(e)),
        };
        let mut replaced_corrupt = false;
        let mut migrated_from = None;
        let mut table = match &previous {
            None => Table::new(),
            Some(bytes) => match std::str::from_utf8(bytes)
                .map_err(|e| e.to_string())
                .and_then(Document::parse)
            {
                Ok(doc) => {
                    let mut t = doc.into_table();
                    migrated_from = format::migrate(&mut t);
                    t
                }
                Err(_) => {
                    // Keep the evidence for the Guardian, then start over from this update.
                    replaced_corrupt = true;
                    let aside = self.dir.join(".quarantine").join(format!(
                        "{}.{}.aav",
                        update.asset_id,
                        at.as_millis()
                    ));
                    if let Some(parent) = aside.parent() {
                        fs::create_dir_all(parent).map_err(AavError::io(parent))?;
                    }
                    fs::write(&aside, bytes).map_err(AavError::io(&aside))?;
                    Table::new()
                }
            },
        };
        merge(&mut table, update, at);
        let checksum = format::checksum_of(&table);
        if let Some(Value::Table(meta)) = table.get_mut("meta") {
            meta.insert("checksum".into(), Value::String(checksum.clone()));
        }
        let document = Document::from_table(format::canonical_order(&table));
        let text = document.render().map_err(|message| AavError::Serialize {
            path: path.clone(),
            message,
        })?;
        let backed_up = match (&previous, replaced_corrupt) {
            (Some(bytes), false) => self.backup(&update.asset_id, bytes, at)?,
            _ => false,
        };
        self.replace(&update.asset_id, &path, text.as_bytes())?;
        if self.options.history && !update.sections.is_empty() {
            // History is best effort: a failure is logged, the write stands.
            if let Err(e) = history::append(
                &self.dir,
                &update.asset_id,
                at,
                &update.sections,
                self.options.history_max_bytes,
            ) {
                tracing::warn!(asset = %update.asset_id, error = %e, "asset history append failed");
            }
        }
        let document = Arc::new(document);
        if let Some(reader) = &self.reader {
            reader.store(&path, document.clone());
        }
        Ok(WriteOutcome {
            path,
            checksum,
            backed_up,
            migrated_from,
            replaced_corrupt,
            document,
        })
    }

    /// Replaces the file of `asset_id` with `document` as is (checksum recomputed, `updated_at`
    /// kept): used by the Guardian to write a repaired document.
    pub fn put(&self, asset_id: &str, document: &Document) -> Result<PathBuf, AavError> {
        let path = self.path_for(asset_id)?;
        let _lock = self.lock(asset_id)?;
        let mut table = document.table().clone();
        let checksum = format::checksum_of(&table);
        if let Some(Value::Table(meta)) = table.get_mut("meta") {
            meta.insert("checksum".into(), Value::String(checksum));
        }
        let document = Document::from_table(format::canonical_order(&table));
        let text = document.render().map_err(|message| AavError::Serialize {
            path: path.clone(),
            message,
        })?;
        self.replace(asset_id, &path, text.as_bytes())?;
        if let Some(reader) = &self.reader {
            reader.store(&path, Arc::new(document));
        }
        Ok(path)
    }

    /// The backups of `asset_id`, newest first.
    pub fn backups(&self, asset_id: &str) -> Result<Vec<PathBuf>, AavError> {
        list_backups(&self.dir, asset_id)
    }

    fn lock(&self, asset_id: &str) -> Result<File, AavError> {
        let path = lock_path(&self.dir, asset_id);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(&path)
            .map_err(AavError::io(&path))?;
        file.lock().map_err(AavError::io(&path))?;
        Ok(file)
    }

    fn replace(&self, asset_id: &str, path: &Path, bytes: &[u8]) -> Result<(), AavError> {
        let tmp = self.dir.join(format!(
            "{}{}.{}",
            temp_prefix(asset_id),
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            file.write_all(bytes)?;
            if self.options.durable {
                file.sync_all()?;
            }
            drop(file);
            fs::rename(&tmp, path)?;
            if self.options.durable {
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(AavError::io(path))
    }

    fn backup(&self, asset_id: &str, bytes: &[u8], at: Timestamp) -> Result<bool, AavError> {
        if self.options.backups == 0 {
            return Ok(false);
        }
        let dir = backup_dir(&self.dir, asset_id);
        let existing = list_backups(&self.dir, asset_id)?;
        if let Some(newest) = existing.first().and_then(|p| backup_millis(p))
            && at.as_millis() - newest < self.options.backup_interval_ms
        {
            return Ok(false);
        }
        fs::create_dir_all(&dir).map_err(AavError::io(&dir))?;
        let path = dir.join(format!("{:013}.aav", at.as_millis()));
        // Written through a temp name so a crash never leaves a torn backup under a backup name.
        let tmp = dir.join(format!(".{:013}.tmp", at.as_millis()));
        fs::write(&tmp, bytes).map_err(AavError::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(AavError::io(&path))?;
        for old in list_backups(&self.dir, asset_id)?
            .iter()
            .skip(self.options.backups)
        {
            let _ = fs::remove_file(old);
        }
        Ok(true)
    }
}

/// `<dir>/.backups/<asset_id>/`.
pub(crate) fn backup_dir(dir: &Path, asset_id: &str) -> PathBuf {
    dir.join(".backups").join(asset_id)
}

/// The backups of `asset_id` in `dir`, newest first.
pub(crate) fn list_backups(dir: &Path, asset_id: &str) -> Result<Vec<PathBuf>, AavError> {
    let bdir = backup_dir(dir, asset_id);
    let entries = match fs::read_dir(&bdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AavError::io(&bdir)(e)),
    };
    let mut found: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| Some((backup_millis(&p)?, p)))
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

fn backup_millis(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".aav")?.parse().ok()
}

fn valid_section(name: &str) -> bool {
    name != "meta"
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn now() -> Timestamp {
    use aura_core::Clock as _;
    aura_core::SystemClock.now()
}

fn merge(table: &mut Table, update: &SectionUpdate, at: Timestamp) {
    for name in &update.remove {
        table.remove(name);
    }
    for (name, section) in &update.sections {
        table.insert(name.clone(), Value::Table(section.clone()));
    }
    let meta = match table.get_mut("meta") {
        Some(Value::Table(meta)) => meta,
        _ => {
            table.insert("meta".into(), Value::Table(Table::new()));
            match table.get_mut("meta") {
                Some(Value::Table(meta)) => meta,
                // INVARIANT: inserted just above.
                _ => return,
            }
        }
    };
    meta.insert("asset_id".into(), Value::String(update.asset_id.clone()));
    meta.insert(
        "kind".into(),
        Value::String(update.kind.as_str().to_owned()),
    );
    meta.insert("name".into(), Value::String(update.name.clone()));
    meta.insert("schema_version".into(), Value::Integer(SCHEMA_VERSION));
    meta.insert("updated_at".into(), Value::String(at.to_rfc3339()));
    meta.insert("checksum".into(), Value::String(String::new()));
    match update.health {
        Some(h) => {
            meta.insert("health".into(), Value::String(h.as_str().to_owned()));
        }
        None => {
            let keep = meta
                .get("health")
                .and_then(Value::as_str)
                .and_then(Health::parse)
                .unwrap_or(Health::Unknown);
            meta.insert("health".into(), Value::String(keep.as_str().to_owned()));
        }
    }
    let status = match meta.get_mut("sensor_status") {
        Some(Value::Table(t)) => t,
        _ => {
            meta.insert("sensor_status".into(), Value::Table(Table::new()));
            match meta.get_mut("sensor_status") {
                Some(Value::Table(t)) => t,
                // INVARIANT: inserted just above.
                _ => return,
            }
        }
    };
    for (sensor, s) in &update.sensor_status {
        status.insert(sensor.clone(), Value::String(s.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(key: &str, v: f64) -> Table {
        let mut t = Table::new();
        t.insert(key.into(), Value::Float(v));
        t
    }

    #[test]
    fn writes_merge_sections_and_stamp_meta() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::new(dir.path(), WriterOptions::default()).unwrap();
        let at = Timestamp::from_millis(1_800_000_000_000);
        w.update(
            &SectionUpdate::new("h1", AssetKind::Host, "h1")
                .section("compute", section("cpu_percent", 10.0))
                .status("compute", "ok")
                .at(at),
        )
        .unwrap();
        let out = w
            .update(
                &SectionUpdate::new("h1", AssetKind::Host, "h1")
                    .section("memory", section("used_percent", 40.0))
                    .status("memory", "ok")
                    .health(Health::Healthy)
                    .at(Timestamp::from_millis(at.as_millis() + 1000)),
            )
            .unwrap();
        let text = fs::read_to_string(&out.path).unwrap();
        let doc = Document::parse(&text).unwrap();
        assert!(
            doc.schema_problems().is_empty(),
            "{:?}",
            doc.schema_problems()
        );
        assert_eq!(
            doc.get("compute.cpu_percent").unwrap().as_float(),
            Some(10.0)
        );
        assert_eq!(
            doc.get("memory.used_percent").unwrap().as_float(),
            Some(40.0)
        );
        assert_eq!(
            doc.stored_checksum(),
            Some(doc.computed_checksum().as_str())
        );
        assert_eq!(doc.sensor_status().len(), 2);
        assert_eq!(doc.health(), Some(Health::Healthy));
        // The first write had no previous file; the second backed the first up.
        assert!(out.backed_up);
        assert_eq!(w.backups("h1").unwrap().len(), 1);
    }

    #[test]
    fn backups_are_bounded_and_spaced() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::new(
            dir.path(),
            WriterOptions {
                backups: 3,
                backup_interval_ms: 1000,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        for i in 0..20i64 {
            w.update(
                &SectionUpdate::new("h1", AssetKind::Host, "h1")
                    .section("compute", section("cpu_percent", i as f64))
                    .at(Timestamp::from_millis(1_800_000_000_000 + i * 500)),
            )
            .unwrap();
        }
        let backups = w.backups("h1").unwrap();
        assert_eq!(backups.len(), 3);
        let newest = backup_millis(&backups[0]).unwrap();
        let next = backup_millis(&backups[1]).unwrap();
        assert!(newest - next >= 1000);
    }

    #[test]
    fn bad_ids_and_sections_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::new(dir.path(), WriterOptions::default()).unwrap();
        assert!(matches!(
            w.update(&SectionUpdate::new("../x", AssetKind::Host, "x")),
            Err(AavError::AssetId(_))
        ));
        assert!(matches!(
            w.update(&SectionUpdate::new("x", AssetKind::Host, "x").section("meta", Table::new())),
            Err(AavError::Section(_))
        ));
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn a_corrupt_file_is_set_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::new(dir.path(), WriterOptions::default()).unwrap();
        fs::write(dir.path().join("h1.aav"), "[meta\nbroken = ").unwrap();
        let out = w
            .update(
                &SectionUpdate::new("h1", AssetKind::Host, "h1")
                    .section("compute", section("cpu_percent", 1.0)),
            )
            .unwrap();
        assert!(out.replaced_corrupt);
        let q: Vec<_> = fs::read_dir(dir.path().join(".quarantine"))
            .unwrap()
            .collect();
        assert_eq!(q.len(), 1);
    }
}
