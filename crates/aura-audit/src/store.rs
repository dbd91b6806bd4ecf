//! Files derived from the segments: the stored Merkle tree levels (for proofs) and the record offset index (for
//! reading entries by number). Both can be rebuilt from the segments at any time, so they are flushed but not
//! fsync'd; recovery trims them to a consistent prefix and replays the rest.
//!
//! Level `j` is the file `tree/level-jj` holding the 32-byte hashes of the complete subtrees of `2^j` leaves in
//! order; level 0 holds the leaf hashes. Together they take 64 bytes per entry on disk and nothing per entry in
//! memory, and every proof node is at most O(log n) positioned reads away.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::AuditError;
use crate::merkle::{Frontier, Hash, NodeSource, node_hash};

const HASH_LEN: u64 = 32;
const LEVELS: u32 = 64;

/// fsyncs the directory containing `path`, so a new or renamed file survives power loss.
pub(crate) fn sync_parent(path: &Path) -> Result<(), AuditError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => sync_dir(dir),
        None => sync_dir(Path::new(".")),
    }
}

/// fsyncs a directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io(dir, e))
}

fn level_path(dir: &Path, level: u32) -> PathBuf {
    dir.join(format!("level-{level:02}"))
}

fn file_len(path: &Path) -> Result<u64, AuditError> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(AuditError::io(path, e)),
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| AuditError::io(path, e))
}

fn truncate(path: &Path, len: u64) -> Result<(), AuditError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    f.set_len(len).map_err(|e| AuditError::io(path, e))
}

/// Read access to the stored tree levels, shared by all readers; files are opened on first use.
#[derive(Debug)]
pub(crate) struct TreeFiles {
    dir: PathBuf,
    files: Mutex<Vec<Option<Arc<File>>>>,
}

impl TreeFiles {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Mutex::new(vec![None; LEVELS as usize]),
        }
    }

    fn file(&self, level: u32) -> Result<Arc<File>, AuditError> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = files
            .get_mut(level as usize)
            .ok_or_else(|| AuditError::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                reason: format!("tree level {level} does not exist"),
            })?;
        if let Some(f) = slot {
            return Ok(f.clone());
        }
        let path = level_path(&self.dir, level);
        let f = Arc::new(File::open(&path).map_err(|e| AuditError::io(&path, e))?);
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Forgets open handles (after the files were rebuilt).
    fn reset(&self) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
            .for_each(|f| *f = None);
    }
}

impl NodeSource for TreeFiles {
    type Error = AuditError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        let f = self.file(level)?;
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, index * HASH_LEN)
            .map_err(|e| AuditError::io(level_path(&self.dir, level), e))?;
        Ok(h)
    }
}

/// The single writer of the tree level files.
#[derive(Debug)]
pub(crate) struct TreeWriter {
    dir: PathBuf,
    files: Vec<Option<BufWriter<File>>>,
    frontier: Frontier,
}

impl TreeWriter {
    /// Opens the level files in `dir`, trimmed to a consistent tree of at most `max_size` leaves (missing interior
    /// nodes are recomputed from the level below). The caller replays leaves from `size()` on.
    pub(crate) fn open(dir: &Path, reader: &TreeFiles, max_size: u64) -> Result<Self, AuditError> {
        fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
        reader.reset();
        let size = (file_len(&level_path(dir, 0))? / HASH_LEN).min(max_size);
        truncate_or_create(&level_path(dir, 0), size * HASH_LEN)?;
        for level in 1..LEVELS {
            let path = level_path(dir, level);
            let want = size >> level;
            let have = file_len(&path)? / HASH_LEN;
            if want == 0 {
                if path.exists() {
                    truncate(&path, 0)?;
                }
                continue;
            }
            truncate_or_create(&path, have.min(want) * HASH_LEN)?;
            if have < want {
                let below =
                    File::open(level_path(dir, level - 1)).map_err(|e| AuditError::io(&path, e))?;
                let mut out = BufWriter::new(open_append(&path)?);
                let mut pair = [0u8; 64];
                for i in have..want {
                    below
                        .read_exact_at(&mut pair, i * 2 * HASH_LEN)
                        .map_err(|e| AuditError::io(&path, e))?;
                    let (l, r) = pair.split_at(32);
                    let (Ok(l), Ok(r)) = (<Hash>::try_from(l), <Hash>::try_from(r)) else {
                        continue;
                    };
                    out.write_all(&node_hash(&l, &r))
                        .map_err(|e| AuditError::io(&path, e))?;
                }
                out.flush().map_err(|e| AuditError::io(&path, e))?;
            }
        }
        reader.reset();
        let frontier = Frontier::restore(reader, size)?;
        let mut files = Vec::with_capacity(LEVELS as usize);
        files.resize_with(LEVELS as usize, || None);
        Ok(Self {
            dir: dir.to_owned(),
            files,
            frontier,
        })
    }

    /// Number of leaves.
    pub(crate) fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of the current tree.
    pub(crate) fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends a leaf hash, writing it and every subtree it completes (buffered).
    pub(crate) fn push(&mut self, leaf: Hash) -> Result<(), AuditError> {
        let files = &mut self.files;
        let dir = &self.dir;
        let mut result = Ok(());
        self.frontier.push(leaf, |level, _, h| {
            if result.is_err() {
                return;
            }
            let slot = &mut files[level as usize];
            if slot.is_none() {
                match open_append(&level_path(dir, level)) {
                    Ok(f) => {
                        *slot = Some(BufWriter::with_capacity(
                            if level == 0 { 1 << 16 } else { 1 << 12 },
                            f,
                        ))
                    }
                    Err(e) => {
                        result = Err(e);
                        return;
                    }
                }
            }
            if let Some(w) = slot
                && let Err(e) = w.write_all(h)
            {
                result = Err(AuditError::io(level_path(dir, level), e));
            }
        });
        result
    }

    /// Hands buffered hashes to the OS so readers see them.
    pub(crate) fn flush(&mut self) -> Result<(), AuditError> {
        for (level, slot) in self.files.iter_mut().enumerate() {
            if let Some(w) = slot {
                w.flush()
                    .map_err(|e| AuditError::io(level_path(&self.dir, level as u32), e))?;
            }
        }
        Ok(())
    }
}

fn truncate_or_create(path: &Path, len: u64) -> Result<(), AuditError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    if f.metadata().map_err(|e| AuditError::io(path, e))?.len() != len {
        f.set_len(len).map_err(|e| AuditError::io(path, e))?;
    }
    Ok(())
}

/// The offset index: for entry `seq`, the byte offset of its record inside its segment, as u64 LE at `seq * 8`.
#[derive(Debug)]
pub(crate) struct Offsets {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Offsets {
    /// Opens the index, trimmed to at most `max` entries; returns it and the number of entries kept.
    pub(crate) fn open(path: &Path, max: u64) -> Result<(Self, u64), AuditError> {
        let kept = (file_len(path)? / 8).min(max);
        truncate_or_create(path, kept * 8)?;
        let out = BufWriter::with_capacity(1 << 15, open_append(path)?);
        Ok((
            Self {
                path: path.to_owned(),
                out,
            },
            kept,
        ))
    }

    /// Trims the index to `n` entries.
    pub(crate) fn truncate(&mut self, n: u64) -> Result<(), AuditError> {
        self.out
            .flush()
            .map_err(|e| AuditError::io(&self.path, e))?;
        truncate(&self.path, n * 8)
    }

    /// Appends the offset of the next entry (buffered).
    pub(crate) fn push(&mut self, offset: u64) -> Result<(), AuditError> {
        self.out
            .write_all(&offset.to_le_bytes())
            .map_err(|e| AuditError::io(&self.path, e))
    }

    /// Hands buffered offsets to the OS.
    pub(crate) fn flush(&mut self) -> Result<(), AuditError> {
        self.out.flush().map_err(|e| AuditError::io(&self.path, e))
    }
}

/// Reads the offset of entry `seq` from the index file.
pub(crate) fn read_offset(file: &File, path: &Path, seq: u64) -> Result<u64, AuditError> {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, seq * 8)
        .map_err(|e| AuditError::io(path, e))?;
    Ok(u64::from_le_bytes(b))
}
