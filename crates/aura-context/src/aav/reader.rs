//! The cached asset-file reader: a read costs one `stat` when the file has not changed since it
//! was last parsed (same inode, size and modification time), and a parse otherwise.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::error::AavError;
use super::format::{self, Document};

/// A cheap, cloneable, thread-safe reader with a bounded cache of parsed files.
#[derive(Debug, Clone)]
pub struct Reader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    cache: Mutex<HashMap<PathBuf, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    stamp: Stamp,
    doc: Arc<Document>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

impl Reader {
    /// A reader caching at most `capacity` files (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Reader {
        Reader {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The parsed file at `path`, from the cache when unchanged. Files of an older schema are
    /// migrated in memory (the file itself is migrated by its next write).
    pub fn read(&self, path: &Path) -> Result<Arc<Document>, AavError> {
        let meta = fs::metadata(path).map_err(AavError::io(path))?;
        let stamp = Stamp::of(&meta);
        if let Ok(cache) = self.inner.cache.lock()
            && let Some(entry) = cache.get(path)
            && entry.stamp == stamp
        {
            return Ok(entry.doc.clone());
        }
        let bytes = fs::read(path).map_err(AavError::io(path))?;
        let text = String::from_utf8(bytes).map_err(|e| AavError::Syntax {
            path: path.to_owned(),
            message: format!("not UTF-8: {e}"),
        })?;
        let doc = Document::parse(&text).map_err(|message| AavError::Syntax {
            path: path.to_owned(),
            message,
        })?;
        let mut table = doc.into_table();
        format::migrate(&mut table);
        let doc = Arc::new(Document::from_table(table));
        // Re-stat: if the file changed while we read it, do not cache what we parsed.
        if fs::metadata(path).map(|m| Stamp::of(&m)).ok() == Some(stamp) {
            self.insert(
                path.to_owned(),
                Entry {
                    stamp,
                    doc: doc.clone(),
                },
            );
        }
        Ok(doc)
    }

    /// The value at `key_path` (e.g. `memory.used_percent`) in the file at `path`.
    pub fn query(&self, path: &Path, key_path: &str) -> Result<Option<toml::Value>, AavError> {
        Ok(self.read(path)?.get(key_path).cloned())
    }

    /// Every `*.aav` file in `dir` (not hidden), sorted by name.
    pub fn list(dir: &Path) -> Result<Vec<PathBuf>, AavError> {
        let mut out: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(AavError::io(dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "aav")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| !n.starts_with('.'))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Forgets the cached copy of `path`.
    pub fn invalidate(&self, path: &Path) {
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.remove(path);
        }
    }

    /// How many files are cached.
    #[must_use]
    pub fn cached(&self) -> usize {
        self.inner.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Records a document the caller has just written to `path`.
    pub(crate) fn store(&self, path: &Path, doc: Arc<Document>) {
        if let Ok(meta) = fs::metadata(path) {
            self.insert(
                path.to_owned(),
                Entry {
                    stamp: Stamp::of(&meta),
                    doc,
                },
            );
        }
    }

    fn insert(&self, path: PathBuf, entry: Entry) {
        if let Ok(mut cache) = self.inner.cache.lock() {
            if cache.len() >= self.inner.capacity && !cache.contains_key(&path) {
                // Evict an arbitrary half: cheap, and a working set that fits never pays it.
                let drop: Vec<PathBuf> = cache.keys().take(cache.len() / 2 + 1).cloned().collect();
                for k in drop {
                    cache.remove(&k);
                }
            }
            cache.insert(path, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aav::{AssetKind, SectionUpdate, Writer, WriterOptions};

    #[test]
    fn cached_reads_see_new_writes() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::new(dir.path(), WriterOptions::default()).unwrap();
        let mut t = toml::Table::new();
        t.insert("cpu_percent".into(), 1.0.into());
        let out = w
            .update(&SectionUpdate::new("a", AssetKind::Host, "a").section("compute", t.clone()))
            .unwrap();
        let r = Reader::new(8);
        let first = r.read(&out.path).unwrap();
        let again = r.read(&out.path).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "second read must come from the cache"
        );
        t.insert("cpu_percent".into(), 2.0.into());
        w.update(&SectionUpdate::new("a", AssetKind::Host, "a").section("compute", t))
            .unwrap();
        assert_eq!(
            r.query(&out.path, "compute.cpu_percent")
                .unwrap()
                .and_then(|v| v.as_float()),
            Some(2.0)
        );
        assert_eq!(Reader::list(dir.path()).unwrap(), vec![out.path.clone()]);
    }

    #[test]
    fn capacity_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::new(dir.path(), WriterOptions::default()).unwrap();
        let r = Reader::new(4);
        for i in 0..10 {
            let out = w
                .update(&SectionUpdate::new(&format!("a{i}"), AssetKind::Host, "a"))
                .unwrap();
            r.read(&out.path).unwrap();
        }
        assert!(r.cached() <= 4);
    }
}
