//! The two seams to the asset files on disk: [`AssetSource`] (load every `<data-dir>/assets/*.aav`, and follow
//! the directory for changes) and [`AssetSink`] (create or replace one asset's file atomically).
//!
//! [`AssetDir`] implements both over the context plane's `.aav` reader and writer (`aura-context`):
//! reads go through its cached [`Reader`], writes through its [`Writer`] (advisory lock, temp file,
//! fsync, rename, directory fsync, bounded backups, the spec's checksum), so the catalog, the sensors
//! and the Guardian agree on one file format.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::Watcher as _;
use tokio_util::sync::CancellationToken;

use aura_context::aav::{AavError, Document, Reader, Writer, WriterOptions};

use crate::asset::{Asset, AssetError, validate_id};
use crate::catalog::Catalog;

/// Why reading or writing asset files failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// An I/O error on a path.
    #[error("`{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not a valid asset.
    #[error("`{path}`: {source}")]
    Asset {
        /// The path.
        path: PathBuf,
        /// The error.
        source: AssetError,
    },
    /// The context plane's reader or writer refused the file.
    #[error("{0}")]
    File(#[from] AavError),
    /// The directory watcher failed.
    #[error("watching `{path}`: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Where assets come from.
pub trait AssetSource: Send + Sync + std::fmt::Debug {
    /// Every asset file, each parsed or with its error.
    fn load_all(&self) -> Result<Vec<Result<Asset, FilesError>>, FilesError>;
    /// The asset in one file, `Ok(None)` when the file is gone.
    fn load_path(&self, path: &Path) -> Result<Option<Asset>, FilesError>;
    /// The directory to follow for changes.
    fn dir(&self) -> &Path;
}

/// Where assets are written.
pub trait AssetSink: Send + Sync + std::fmt::Debug {
    /// Creates or replaces the asset's file (atomically: temp file, fsync, rename, fsync dir).
    fn write(&self, asset: &Asset) -> Result<PathBuf, FilesError>;
    /// Deletes the asset's file; `false` when there was none.
    fn delete(&self, id: &str) -> Result<bool, FilesError>;
}

/// `<data-dir>/assets/` holding one `<asset_id>.aav` per asset.
#[derive(Debug, Clone)]
pub struct AssetDir {
    dir: PathBuf,
    reader: Reader,
    writer: Arc<Writer>,
}

/// Parsed documents the reader keeps (by path, revalidated by inode, size and modification time).
const READER_CAPACITY: usize = 16_384;

impl AssetDir {
    /// The assets directory under `data_dir` (created when missing).
    pub fn open(data_dir: &Path) -> Result<AssetDir, FilesError> {
        let dir = data_dir.join("assets");
        std::fs::create_dir_all(&dir).map_err(|source| FilesError::Io {
            path: dir.clone(),
            source,
        })?;
        let reader = Reader::new(READER_CAPACITY);
        let writer =
            Writer::new(dir.clone(), WriterOptions::default())?.with_reader(reader.clone());
        Ok(AssetDir {
            dir,
            reader,
            writer: Arc::new(writer),
        })
    }

    /// The file of an asset id.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.aav"))
    }
}

fn is_asset_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "aav")
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'))
}

impl AssetSource for AssetDir {
    fn load_all(&self) -> Result<Vec<Result<Asset, FilesError>>, FilesError> {
        let io = |source| FilesError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut out = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_asset_file(p))
            .collect();
        paths.sort();
        for path in paths {
            match self.load_path(&path) {
                Ok(Some(a)) => out.push(Ok(a)),
                Ok(None) => {}
                Err(e) => out.push(Err(e)),
            }
        }
        Ok(out)
    }

    fn load_path(&self, path: &Path) -> Result<Option<Asset>, FilesError> {
        let document = match self.reader.read(path) {
            Ok(d) => d,
            Err(AavError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.reader.invalidate(path);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        Asset::from_document(document.to_json())
            .map(Some)
            .map_err(|source| FilesError::Asset {
                path: path.to_owned(),
                source,
            })
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl AssetSink for AssetDir {
    fn write(&self, asset: &Asset) -> Result<PathBuf, FilesError> {
        validate_id(&asset.id).map_err(|source| FilesError::Asset {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path_of(&asset.id);
        let text = asset.to_toml().map_err(|source| FilesError::Asset {
            path: path.clone(),
            source,
        })?;
        let document = Document::parse(&text).map_err(|message| FilesError::Asset {
            path: path.clone(),
            source: AssetError::Toml(message),
        })?;
        Ok(self.writer.put(&asset.id, &document)?)
    }

    fn delete(&self, id: &str) -> Result<bool, FilesError> {
        let path = self.path_of(id);
        self.reader.invalidate(&path);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(FilesError::Io { path, source }),
        }
    }
}

/// What loading the directory into the catalog found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Assets loaded.
    pub loaded: usize,
    /// Files rejected, with why.
    pub rejected: Vec<String>,
}

/// Loads every asset of `source` into `catalog`, removing catalog assets whose file is gone.
pub fn load_into(source: &dyn AssetSource, catalog: &Catalog) -> Result<LoadReport, FilesError> {
    let mut report = LoadReport::default();
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    for item in source.load_all()? {
        match item {
            Ok(asset) => {
                seen.insert(asset.id.clone());
                catalog.upsert(asset);
                report.loaded += 1;
            }
            Err(e) => report.rejected.push(e.to_string()),
        }
    }
    for id in catalog.ids() {
        if !seen.contains(&id) {
            catalog.remove(&id);
        }
    }
    Ok(report)
}

/// Follows `source`'s directory until `cancel`: each created, changed or deleted `.aav` file updates the
/// catalog (a file that does not parse is logged and leaves the previous version in place). Spawn it under
/// the owner's task tracker.
pub async fn follow(
    source: Arc<dyn AssetSource>,
    catalog: Catalog,
    cancel: CancellationToken,
) -> Result<(), FilesError> {
    let dir = source.dir().to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            use notify::EventKind;
            use notify::event::{AccessKind, AccessMode, ModifyKind};
            // React when a file is complete: created, renamed into place, closed after writing, removed.
            // Data modifications in between would read half-written files.
            let complete = matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_) | ModifyKind::Any)
                    | EventKind::Access(AccessKind::Close(AccessMode::Write))
                    | EventKind::Any
            );
            if !complete {
                return;
            }
            for p in event.paths {
                if is_asset_file(&p) {
                    let _ = tx.send(p);
                }
            }
        }
    })
    .map_err(|e| FilesError::Watch {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| FilesError::Watch {
            path: dir.clone(),
            message: e.to_string(),
        })?;
    // Catch up on anything written between the initial load and the watch starting.
    if let Err(e) = load_into(source.as_ref(), &catalog) {
        tracing::warn!(error = %e, "asset directory rescan failed");
    }
    let mut batch: Vec<PathBuf> = Vec::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            first = rx.recv() => {
                let Some(first) = first else { break };
                batch.clear();
                batch.push(first);
                while let Ok(p) = rx.try_recv() {
                    batch.push(p);
                }
                batch.sort();
                batch.dedup();
                for path in &batch {
                    apply(source.as_ref(), &catalog, path);
                }
            }
        }
    }
    drop(watcher);
    Ok(())
}

fn apply(source: &dyn AssetSource, catalog: &Catalog, path: &Path) {
    match source.load_path(path) {
        Ok(Some(asset)) => {
            let expected = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if &*asset.id != expected {
                tracing::warn!(path = %path.display(), asset_id = %asset.id, "asset file name does not match its asset_id; ignored");
                return;
            }
            catalog.upsert(asset);
        }
        Ok(None) => {
            if let Some(id) = path.file_stem().and_then(|s| s.to_str()) {
                catalog.remove(id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "asset file rejected; keeping the previous version"),
    }
}
