//! The durable audit log: open and recovery, group-committed appends through one writer thread, signed
//! checkpoints, proofs and reads.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aura_core::Timestamp;
use tokio::sync::{oneshot, watch};

use crate::entry::{self, AuditEntry, LoggedEntry};
use crate::error::AuditError;
use crate::merkle::{self, ConsistencyProof, Hash, InclusionProof, leaf_hash};
use crate::note::{Checkpoint, Signer, Verifier};
use crate::record::{
    self, CHECKPOINT_MAGIC, End, FILE_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::store::{self, Offsets, TreeFiles, TreeWriter};

/// Where the log lives and how it behaves. Every field must be chosen by the caller.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Directory of the log (the server uses `<data_dir>/audit`); created if missing.
    pub dir: PathBuf,
    /// The Ed25519 signing key file (the server uses `<data_dir>/keys/audit.ed25519`); created with mode 0600 when
    /// the log is new. Never logged or returned.
    pub key_path: PathBuf,
    /// The checkpoint origin line and signing key name, e.g. `aura.local/audit`: no spaces, no `+`.
    pub origin: String,
    /// A segment is sealed (never written again) once it reaches this many bytes.
    pub segment_bytes: u64,
    /// Longest time between an appended entry and a signed checkpoint covering it (at least one checkpoint per
    /// interval while entries arrive). The checkpoint lag of an entry is at most about this long.
    pub checkpoint_interval: Duration,
}

/// Proof that an entry is durable: returned only after its batch was written and fdatasync'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's sequence number (its Merkle leaf index).
    pub seq: u64,
    /// The entry's Merkle leaf hash: SHA-256(0x00 ‖ canonical bytes).
    pub leaf_hash: Hash,
}

/// What `open` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log was created by this open.
    pub created: bool,
    /// Number of entries after recovery.
    pub entries: u64,
    /// Number of segment files.
    pub segments: usize,
    /// A torn write at the end of the active segment that was cut off.
    pub torn_segment_tail: Option<TornTail>,
    /// A torn write at the end of the checkpoint file that was cut off.
    pub torn_checkpoint_tail: Option<TornTail>,
    /// Entries whose derived tree and index data were recomputed from the segments.
    pub reindexed_entries: u64,
    /// Tree size of the latest checkpoint, if any.
    pub latest_checkpoint_size: Option<u64>,
}

impl RecoveryReport {
    /// Whether nothing had to be cut off.
    pub fn is_clean(&self) -> bool {
        self.torn_segment_tail.is_none() && self.torn_checkpoint_tail.is_none()
    }
}

/// A torn write that recovery removed. Only unacknowledged data can be torn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The file that was cut.
    pub path: PathBuf,
    /// The offset it was cut at.
    pub offset: u64,
    /// How many bytes were discarded.
    pub discarded_bytes: u64,
    /// What was found there.
    pub reason: String,
}

/// Which entries `scan` yields. The default yields everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanFilter {
    /// Only entries about this agent.
    pub agent: Option<String>,
    /// Only entries of this task or session.
    pub task: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Only entries before this time.
    pub until: Option<Timestamp>,
    /// Start at this sequence number.
    pub from_seq: u64,
}

impl ScanFilter {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.agent
            .as_deref()
            .is_none_or(|a| e.agent.as_ref().is_some_and(|x| x.as_str() == a))
            && self
                .task
                .as_deref()
                .is_none_or(|t| e.task.as_deref() == Some(t))
            && self.since.is_none_or(|s| e.time >= s)
            && self.until.is_none_or(|u| e.time < u)
    }
}

/// The tamper-evident audit log. Share it behind an `Arc`; call [`AuditLog::close`] on shutdown.
#[derive(Debug)]
pub struct AuditLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    tx: Sender<Msg>,
    next_seq: AtomicU64,
    closed: AtomicBool,
    poisoned: Mutex<Option<String>>,
    head: RwLock<(u64, Hash)>,
    latest: RwLock<Option<Checkpoint>>,
    published: watch::Sender<Option<(u64, Instant)>>,
    segments: RwLock<Vec<Segment>>,
    tree: TreeFiles,
    offsets: File,
    verifier_key: String,
}

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
}

#[derive(Debug)]
enum Msg {
    Append(Pending),
    Checkpoint(oneshot::Sender<Result<Checkpoint, AuditError>>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    frame: Vec<u8>,
    leaf: Hash,
    ack: Ack,
}

#[derive(Debug)]
enum Ack {
    Plain(oneshot::Sender<Result<Receipt, AuditError>>),
    Sealed(oneshot::Sender<Result<(Receipt, Checkpoint), AuditError>>),
}

impl Ack {
    fn fail(self, err: impl Fn() -> AuditError) {
        match self {
            Ack::Plain(tx) => drop(tx.send(Err(err()))),
            Ack::Sealed(tx) => drop(tx.send(Err(err()))),
        }
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl AuditLog {
    /// Opens (or creates) the log in `config.dir`, recovering from a crash: a torn tail is cut off and reported in
    /// the returned [`RecoveryReport`] (and logged as a warning); damage anywhere else is an error and nothing is
    /// changed. Blocking: call it from `spawn_blocking` inside a runtime if the log is large.
    pub fn open(config: AuditConfig) -> Result<(AuditLog, RecoveryReport), AuditError> {
        validate(&config)?;
        let dir = config.dir.clone();
        let seg_dir = dir.join("segments");
        for d in [&dir, &seg_dir, &dir.join("tree"), &dir.join("index")] {
            fs::create_dir_all(d).map_err(|e| AuditError::io(d, e))?;
        }
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(AuditError::Locked(dir));
        }
        let cp_path = dir.join("checkpoints");
        let mut segments = list_segments(&seg_dir)?;
        let created = segments.is_empty() && !cp_path.exists();
        let mut report = RecoveryReport {
            created,
            ..RecoveryReport::default()
        };

        // The signing key, and the verifier key stored beside the log so the two cannot drift apart.
        let signer = Signer::load_or_create(&config.key_path, &config.origin, created)?;
        let verifier_key = signer.verifier_key();
        let vkey_path = dir.join("verifier.key");
        match fs::read_to_string(&vkey_path) {
            Ok(text) if text.trim() == verifier_key => {}
            Ok(_) => {
                return Err(AuditError::Key {
                    path: config.key_path.clone(),
                    reason: format!(
                        "key does not match the log's verifier key in `{}`",
                        vkey_path.display()
                    ),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_durably(&vkey_path, format!("{verifier_key}\n").as_bytes())?
            }
            Err(e) => return Err(AuditError::io(&vkey_path, e)),
        }
        let verifier = Verifier::parse(&verifier_key).map_err(|e| AuditError::Key {
            path: config.key_path.clone(),
            reason: e.to_string(),
        })?;

        if segments.is_empty() {
            segments.push(create_segment(&seg_dir, 0)?);
        }
        let (active_first, active_path) = segments
            .last()
            .map(|s| (s.first, s.path.clone()))
            .unwrap_or_default();

        // Scan the active segment; sealed segments are trusted here (verify re-reads them).
        let buf = fs::read(&active_path).map_err(|e| AuditError::io(&active_path, e))?;
        let header_ok = record::parse_file_header(&buf, SEGMENT_MAGIC);
        let (count, valid_end, seg_end) = match header_ok {
            Some(first) if first == active_first => {
                let w =
                    record::walk::<()>(&buf, active_first, |_| Ok(())).unwrap_or(record::Walk {
                        count: 0,
                        valid_end: FILE_HEADER_LEN as u64,
                        end: End::Clean,
                    });
                (w.count, w.valid_end, w.end)
            }
            Some(first) => {
                return Err(AuditError::Corrupt {
                    path: active_path,
                    offset: 8,
                    reason: format!("segment header says it starts at entry {first}"),
                });
            }
            None if buf.len() < FILE_HEADER_LEN => (
                0,
                0,
                End::Torn {
                    offset: 0,
                    reason: "partial segment header".into(),
                },
            ),
            None => {
                return Err(AuditError::Corrupt {
                    path: active_path,
                    offset: 0,
                    reason: "not a segment file".into(),
                });
            }
        };
        if let End::Corrupt { offset, reason } = seg_end {
            return Err(AuditError::Corrupt {
                path: active_path,
                offset,
                reason,
            });
        }
        let n = active_first + count;

        // The checkpoint file.
        let cp_buf = match fs::read(&cp_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AuditError::io(&cp_path, e)),
        };
        let mut latest_note: Option<(u64, Vec<u8>)> = None;
        let (cp_count, cp_valid_end, cp_end) = if cp_buf.len() < FILE_HEADER_LEN {
            (
                0,
                0,
                if cp_buf.is_empty() {
                    End::Clean
                } else {
                    End::Torn {
                        offset: 0,
                        reason: "partial file header".into(),
                    }
                },
            )
        } else if record::parse_file_header(&cp_buf, CHECKPOINT_MAGIC) != Some(0) {
            return Err(AuditError::Corrupt {
                path: cp_path,
                offset: 0,
                reason: "not a checkpoint file".into(),
            });
        } else {
            let w = record::walk::<()>(&cp_buf, 0, |r| {
                latest_note = Some((r.seq, r.payload.to_vec()));
                Ok(())
            })
            .unwrap_or(record::Walk {
                count: 0,
                valid_end: FILE_HEADER_LEN as u64,
                end: End::Clean,
            });
            (w.count, w.valid_end, w.end)
        };
        if let End::Corrupt { offset, reason } = cp_end {
            return Err(AuditError::Corrupt {
                path: cp_path,
                offset,
                reason,
            });
        }
        let latest = match latest_note {
            None => None,
            Some((index, bytes)) => {
                let note = String::from_utf8(bytes).map_err(|_| AuditError::Corrupt {
                    path: cp_path.clone(),
                    offset: cp_valid_end,
                    reason: format!("checkpoint {index} is not UTF-8"),
                })?;
                let cp = verifier.verify(&note).map_err(|e| AuditError::Corrupt {
                    path: cp_path.clone(),
                    offset: cp_valid_end,
                    reason: format!("checkpoint {index}: {e}"),
                })?;
                if cp.tree_size > n {
                    return Err(AuditError::Corrupt {
                        path: active_path,
                        offset: valid_end,
                        reason: format!(
                            "the log ends after {n} entries but checkpoint {index} covers {}: acknowledged entries are missing",
                            cp.tree_size
                        ),
                    });
                }
                Some(cp)
            }
        };

        // Nothing is changed before this point. Cut torn tails.
        if let End::Torn { offset, reason } = seg_end {
            let discarded = buf.len() as u64 - offset;
            if offset == 0 {
                write_durably(
                    &active_path,
                    &record::file_header(SEGMENT_MAGIC, active_first),
                )?;
            } else {
                cut(&active_path, offset)?;
            }
            tracing::warn!(path = %active_path.display(), offset, discarded_bytes = discarded, reason = %reason, "audit log: cut torn tail");
            report.torn_segment_tail = Some(TornTail {
                path: active_path.clone(),
                offset,
                discarded_bytes: discarded,
                reason,
            });
        }
        if cp_buf.is_empty() || cp_buf.len() < FILE_HEADER_LEN {
            write_durably(&cp_path, &record::file_header(CHECKPOINT_MAGIC, 0))?;
        }
        if let End::Torn { offset, reason } = cp_end {
            let discarded = cp_buf.len() as u64 - offset;
            if offset > 0 {
                cut(&cp_path, offset)?;
            }
            tracing::warn!(path = %cp_path.display(), offset, discarded_bytes = discarded, reason = %reason, "audit log: cut torn checkpoint tail");
            report.torn_checkpoint_tail = Some(TornTail {
                path: cp_path.clone(),
                offset,
                discarded_bytes: discarded,
                reason,
            });
        }

        // Derived files: trim to a consistent prefix, replay the rest from the segments.
        let tree_dir = dir.join("tree");
        let tree_files = TreeFiles::new(tree_dir.clone());
        let offsets_path = dir.join("index").join("offsets");
        let (mut offsets, kept) = Offsets::open(&offsets_path, n)?;
        let mut tree = TreeWriter::open(&tree_dir, &tree_files, kept)?;
        offsets.truncate(tree.size())?;
        report.reindexed_entries = replay(&segments, &mut tree, &mut offsets, n)?;
        if let Some(cp) = &latest
            && merkle::root_at(&tree_files, cp.tree_size)? != cp.root
        {
            tracing::warn!(dir = %dir.display(), "audit log: stored tree does not match the latest checkpoint; rebuilding it");
            offsets.truncate(0)?;
            tree = TreeWriter::open(&tree_dir, &tree_files, 0)?;
            report.reindexed_entries = replay(&segments, &mut tree, &mut offsets, n)?;
            if merkle::root_at(&tree_files, cp.tree_size)? != cp.root {
                return Err(AuditError::Corrupt {
                    path: dir.clone(),
                    offset: 0,
                    reason: format!(
                        "the entries do not match the latest checkpoint (tree size {})",
                        cp.tree_size
                    ),
                });
            }
        }

        report.entries = n;
        report.segments = segments.len();
        report.latest_checkpoint_size = latest.as_ref().map(|c| c.tree_size);

        let seg_file = OpenOptions::new()
            .append(true)
            .open(&active_path)
            .map_err(|e| AuditError::io(&active_path, e))?;
        let seg_len = seg_file
            .metadata()
            .map_err(|e| AuditError::io(&active_path, e))?
            .len();
        let cp_file = OpenOptions::new()
            .append(true)
            .open(&cp_path)
            .map_err(|e| AuditError::io(&cp_path, e))?;
        let offsets_reader =
            File::open(&offsets_path).map_err(|e| AuditError::io(&offsets_path, e))?;
        let (tx, rx) = mpsc::channel();
        let (published, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            tx,
            next_seq: AtomicU64::new(n),
            closed: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            head: RwLock::new((n, tree.root())),
            latest: RwLock::new(latest.clone()),
            published,
            segments: RwLock::new(segments),
            tree: tree_files,
            offsets: offsets_reader,
            verifier_key,
        });
        let writer = Writer {
            shared: shared.clone(),
            rx,
            seg_dir,
            seg: seg_file,
            seg_path: active_path,
            seg_len,
            segment_bytes: config.segment_bytes,
            tree,
            offsets,
            written: n,
            reorder: BTreeMap::new(),
            cp_file,
            cp_path,
            cp_index: cp_count,
            latest,
            last_cp_at: Instant::now(),
            interval: config.checkpoint_interval,
            signer,
            buf: Vec::with_capacity(1 << 20),
            poisoned: None,
        };
        let handle = std::thread::Builder::new()
            .name("aura-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::io(&dir, e))?;
        Ok((
            AuditLog {
                shared,
                writer: Mutex::new(Some(handle)),
                _lock: lock,
            },
            report,
        ))
    }

    /// Appends an entry; resolves once the batch holding it is written and fdatasync'd. Dropping the future does
    /// not cancel the append.
    pub async fn append(&self, entry: AuditEntry) -> Result<Receipt, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.submit(&entry, Ack::Plain(tx))?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// Appends an entry and returns it together with a signed checkpoint covering it. The kernel calls this for
    /// HALT, ESCALATE and approvals.
    pub async fn append_sealed(
        &self,
        entry: AuditEntry,
    ) -> Result<(Receipt, Checkpoint), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.submit(&entry, Ack::Sealed(tx))?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// Signs a checkpoint covering every entry acknowledged so far (or returns the latest one if it already does).
    pub async fn checkpoint_now(&self) -> Result<Checkpoint, AuditError> {
        self.check_open()?;
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Checkpoint(tx))
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// The latest signed checkpoint, if one was ever made.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        read_lock(&self.shared.latest).clone()
    }

    /// Number of durable entries.
    pub fn tree_size(&self) -> u64 {
        read_lock(&self.shared.head).0
    }

    /// Merkle root of the durable entries.
    pub fn root(&self) -> Hash {
        read_lock(&self.shared.head).1
    }

    /// The verifier key (`<origin>+<hex key id>+<base64(0x01 ‖ Ed25519 public key)>`) that checks checkpoints.
    pub fn public_key(&self) -> &str {
        &self.shared.verifier_key
    }

    /// Inclusion proof of entry `index` in the tree of the first `tree_size` entries.
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, AuditError> {
        let current = self.tree_size();
        if tree_size > current {
            return Err(AuditError::OutOfRange {
                what: "tree size",
                value: tree_size,
                tree_size: current,
            });
        }
        if index >= tree_size {
            return Err(AuditError::OutOfRange {
                what: "leaf index",
                value: index,
                tree_size,
            });
        }
        let path = merkle::inclusion_path(&self.shared.tree, index, tree_size)?;
        let proof = InclusionProof {
            leaf_index: index,
            tree_size,
            path,
        };
        // The stored tree is derived data that a power loss may damage: never hand out a proof that does not check.
        let leaf = leaf_hash(&self.read_record(index)?);
        let root = merkle::root_at(&self.shared.tree, tree_size)?;
        if merkle::verify_inclusion(&leaf, &proof, &root).is_err()
            || tree_size == self.tree_size() && root != self.root()
        {
            tracing::error!(dir = %self.shared.dir.display(), index, tree_size, "audit log: stored tree disagrees with the entries");
            return Err(AuditError::Corrupt {
                path: self.shared.dir.join("tree"),
                offset: index,
                reason: "the stored tree disagrees with the entries; reopen the log to rebuild it"
                    .into(),
            });
        }
        Ok(proof)
    }

    /// Consistency proof between the trees of the first `size1` and `size2` entries.
    pub fn consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<ConsistencyProof, AuditError> {
        let current = self.tree_size();
        if size2 > current {
            return Err(AuditError::OutOfRange {
                what: "tree size",
                value: size2,
                tree_size: current,
            });
        }
        if size1 > size2 {
            return Err(AuditError::OutOfRange {
                what: "first tree size",
                value: size1,
                tree_size: size2,
            });
        }
        let path = merkle::consistency_path(&self.shared.tree, size1, size2)?;
        Ok(ConsistencyProof { size1, size2, path })
    }

    /// Merkle root of the first `tree_size` entries.
    pub fn root_at(&self, tree_size: u64) -> Result<Hash, AuditError> {
        let current = self.tree_size();
        if tree_size > current {
            return Err(AuditError::OutOfRange {
                what: "tree size",
                value: tree_size,
                tree_size: current,
            });
        }
        merkle::root_at(&self.shared.tree, tree_size)
    }

    /// Reads entry `seq`; `None` if it is not (yet) durable. Blocking file I/O.
    pub fn entry(&self, seq: u64) -> Result<Option<LoggedEntry>, AuditError> {
        if seq >= self.tree_size() {
            return Ok(None);
        }
        let payload = self.read_record(seq)?;
        entry::decode(seq, &payload).map(Some)
    }

    /// The checked payload of durable entry `seq`.
    fn read_record(&self, seq: u64) -> Result<Vec<u8>, AuditError> {
        let segs = read_lock(&self.shared.segments).clone();
        let seg = segment_of(&segs, seq)?;
        let offset = store::read_offset(
            &self.shared.offsets,
            &self.shared.dir.join("index/offsets"),
            seq,
        )?;
        let f = File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
        let mut header = [0u8; RECORD_HEADER_LEN];
        f.read_exact_at(&mut header, offset)
            .map_err(|e| AuditError::io(&seg.path, e))?;
        read_payload(&header, seq, &seg.path, offset, |buf| {
            f.read_exact_at(buf, offset + RECORD_HEADER_LEN as u64)
        })
    }

    /// Iterates over durable entries (as of this call) that match `filter`, in sequence order. Blocking file I/O.
    pub fn scan(&self, filter: ScanFilter) -> AuditScan {
        AuditScan {
            shared: self.shared.clone(),
            next: filter.from_seq,
            end: self.tree_size(),
            segments: read_lock(&self.shared.segments).clone(),
            reader: None,
            filter,
        }
    }

    /// Stops the log: appends already submitted are finished, a final checkpoint is signed, the writer thread
    /// exits. Later calls to `append` fail with [`AuditError::Closed`]. Idempotent.
    pub async fn close(&self) -> Result<(), AuditError> {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        if self.shared.tx.send(Msg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            // The writer has signalled that it is done, so this join returns at once.
            let _ = h.join();
        }
        match read_lock_poison(&self.shared.poisoned) {
            Some(reason) => Err(AuditError::Poisoned(reason)),
            None => Ok(()),
        }
    }

    /// A watch of (tree size, instant) for every published checkpoint; used by the benchmark.
    pub(crate) fn checkpoint_watch(&self) -> watch::Receiver<Option<(u64, Instant)>> {
        self.shared.published.subscribe()
    }

    fn check_open(&self) -> Result<(), AuditError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(AuditError::Closed);
        }
        if let Some(reason) = read_lock_poison(&self.shared.poisoned) {
            return Err(AuditError::Poisoned(reason));
        }
        Ok(())
    }

    fn stopped(&self) -> AuditError {
        match read_lock_poison(&self.shared.poisoned) {
            Some(reason) => AuditError::Poisoned(reason),
            None => AuditError::Closed,
        }
    }

    fn submit(&self, entry: &AuditEntry, ack: Ack) -> Result<(), AuditError> {
        self.check_open()?;
        let encoded = entry::encode(entry)?;
        // From here to the send nothing can fail or await, so no sequence number is ever skipped.
        let seq = self.shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let payload = encoded.with_seq(seq);
        let leaf = leaf_hash(&payload);
        let mut frame = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
        record::push_frame(&mut frame, seq, &leaf, &payload);
        self.shared
            .tx
            .send(Msg::Append(Pending {
                seq,
                frame,
                leaf,
                ack,
            }))
            .map_err(|_| self.stopped())
    }
}

impl Drop for AuditLog {
    /// Without [`AuditLog::close`], dropping still finishes submitted appends and signs a final checkpoint; it
    /// waits for the writer thread so the directory lock is only released once nothing writes any more.
    fn drop(&mut self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            let (tx, _rx) = oneshot::channel();
            let _ = self.shared.tx.send(Msg::Shutdown(tx));
        }
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn read_lock_poison(m: &Mutex<Option<String>>) -> Option<String> {
    m.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Iterator over entries, from [`AuditLog::scan`].
#[derive(Debug)]
pub struct AuditScan {
    shared: Arc<Shared>,
    filter: ScanFilter,
    next: u64,
    end: u64,
    segments: Vec<Segment>,
    reader: Option<(usize, BufReader<File>, u64)>,
}

impl Iterator for AuditScan {
    type Item = Result<LoggedEntry, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.end {
            match self.read_next() {
                Ok(e) if self.filter.matches(&e.entry) => return Some(Ok(e)),
                Ok(_) => {}
                Err(err) => {
                    self.next = self.end;
                    return Some(Err(err));
                }
            }
        }
        None
    }
}

impl AuditScan {
    fn read_next(&mut self) -> Result<LoggedEntry, AuditError> {
        let seq = self.next;
        let idx = self
            .segments
            .partition_point(|s| s.first <= seq)
            .saturating_sub(1);
        let reuse = matches!(&self.reader, Some((i, _, pos_seq)) if *i == idx && *pos_seq == seq);
        if !reuse {
            let seg = segment_of(&self.segments, seq)?.clone();
            let offset = store::read_offset(
                &self.shared.offsets,
                &self.shared.dir.join("index/offsets"),
                seq,
            )?;
            let mut f = File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| AuditError::io(&seg.path, e))?;
            self.reader = Some((idx, BufReader::with_capacity(1 << 16, f), seq));
        }
        let path = self
            .segments
            .get(idx)
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let Some((_, reader, pos_seq)) = self.reader.as_mut() else {
            return Err(AuditError::Closed);
        };
        let mut header = [0u8; RECORD_HEADER_LEN];
        reader
            .read_exact(&mut header)
            .map_err(|e| AuditError::io(&path, e))?;
        let payload = read_payload(&header, seq, &path, 0, |buf| reader.read_exact(buf))?;
        *pos_seq = seq + 1;
        self.next = seq + 1;
        entry::decode(seq, &payload)
    }
}

fn read_payload(
    header: &[u8; RECORD_HEADER_LEN],
    seq: u64,
    path: &Path,
    offset: u64,
    read: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
) -> Result<Vec<u8>, AuditError> {
    let corrupt = |reason: String| AuditError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&header[4..12]);
    if u64::from_le_bytes(seq_bytes) != seq || len == 0 || len > record::MAX_PAYLOAD {
        return Err(corrupt(format!("record header of entry {seq} is damaged")));
    }
    let mut payload = vec![0u8; len];
    read(&mut payload).map_err(|e| AuditError::io(path, e))?;
    if leaf_hash(&payload)[..8] != header[12..20] {
        return Err(corrupt(format!("checksum mismatch in entry {seq}")));
    }
    Ok(payload)
}

fn segment_of(segs: &[Segment], seq: u64) -> Result<&Segment, AuditError> {
    let idx = segs.partition_point(|s| s.first <= seq);
    idx.checked_sub(1)
        .and_then(|i| segs.get(i))
        .ok_or(AuditError::OutOfRange {
            what: "entry",
            value: seq,
            tree_size: 0,
        })
}

fn validate(config: &AuditConfig) -> Result<(), AuditError> {
    let o = &config.origin;
    if o.is_empty()
        || o.len() > 256
        || o.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(AuditError::Config(format!(
            "origin `{o}` must be 1–256 characters without spaces or `+`"
        )));
    }
    if config.segment_bytes < 4096 {
        return Err(AuditError::Config(format!(
            "segment size {} bytes is below the 4096-byte minimum",
            config.segment_bytes
        )));
    }
    if config.checkpoint_interval.is_zero() || config.checkpoint_interval > Duration::from_secs(1) {
        return Err(AuditError::Config(
            "checkpoint interval must be between 1 ms and 1 s".into(),
        ));
    }
    Ok(())
}

/// Segment files, sorted by first sequence number (their names are that number, 20 digits, `.seg`).
fn list_segments(seg_dir: &Path) -> Result<Vec<Segment>, AuditError> {
    let mut out = Vec::new();
    for ent in fs::read_dir(seg_dir).map_err(|e| AuditError::io(seg_dir, e))? {
        let ent = ent.map_err(|e| AuditError::io(seg_dir, e))?;
        let name = ent.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        let first = stem.parse::<u64>().map_err(|_| AuditError::Corrupt {
            path: ent.path(),
            offset: 0,
            reason: "segment file name is not a sequence number".into(),
        })?;
        out.push(Segment {
            first,
            path: ent.path(),
        });
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

pub(crate) fn segment_path(seg_dir: &Path, first: u64) -> PathBuf {
    seg_dir.join(format!("{first:020}.seg"))
}

fn create_segment(seg_dir: &Path, first: u64) -> Result<Segment, AuditError> {
    let path = segment_path(seg_dir, first);
    write_durably(&path, &record::file_header(SEGMENT_MAGIC, first))?;
    Ok(Segment { first, path })
}

/// Writes a whole file, fsyncs it and its directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let io = |e| AuditError::io(path, e);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    store::sync_parent(path)
}

fn cut(path: &Path, len: u64) -> Result<(), AuditError> {
    let io = |e| AuditError::io(path, e);
    let f = OpenOptions::new().write(true).open(path).map_err(io)?;
    f.set_len(len).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Feeds entries `tree.size()..n` from the segments into the derived files. Returns how many.
fn replay(
    segments: &[Segment],
    tree: &mut TreeWriter,
    offsets: &mut Offsets,
    n: u64,
) -> Result<u64, AuditError> {
    let from = tree.size();
    if from >= n {
        return Ok(0);
    }
    let start = segments
        .partition_point(|s| s.first <= from)
        .saturating_sub(1);
    for seg in &segments[start..] {
        let buf = fs::read(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
        let w = record::walk(&buf, seg.first, |r| {
            if r.seq >= from && r.seq < n {
                offsets.push(r.offset)?;
                tree.push(r.leaf)?;
            }
            Ok::<(), AuditError>(())
        })?;
        if let End::Corrupt { offset, reason } | End::Torn { offset, reason } = w.end {
            return Err(AuditError::Corrupt {
                path: seg.path.clone(),
                offset,
                reason,
            });
        }
    }
    tree.flush()?;
    offsets.flush()?;
    if tree.size() != n {
        return Err(AuditError::Corrupt {
            path: segments.last().map(|s| s.path.clone()).unwrap_or_default(),
            offset: 0,
            reason: format!("segments hold {} entries, expected {n}", tree.size()),
        });
    }
    Ok(n - from)
}

/// Largest number of messages taken into one batch.
const MAX_BATCH: usize = 16_384;

/// The single writer: batches appends, writes and fdatasyncs them, extends the tree, signs checkpoints.
struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    seg_dir: PathBuf,
    seg: File,
    seg_path: PathBuf,
    seg_len: u64,
    segment_bytes: u64,
    tree: TreeWriter,
    offsets: Offsets,
    written: u64,
    reorder: BTreeMap<u64, Pending>,
    cp_file: File,
    cp_path: PathBuf,
    cp_index: u64,
    latest: Option<Checkpoint>,
    last_cp_at: Instant,
    interval: Duration,
    signer: Signer,
    buf: Vec<u8>,
    poisoned: Option<String>,
}

impl Writer {
    fn run(mut self) {
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let mut disconnected = false;
        while shutdown.is_none() && !disconnected {
            let first = if self.grown() && self.poisoned.is_none() {
                let wait =
                    (self.last_cp_at + self.interval).saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        disconnected = true;
                        None
                    }
                }
            } else {
                match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => {
                        disconnected = true;
                        None
                    }
                }
            };
            let mut waiters = Vec::new();
            let mut taken = 0;
            let mut next = first;
            while let Some(msg) = next {
                match msg {
                    Msg::Append(p) => {
                        self.reorder.insert(p.seq, p);
                    }
                    Msg::Checkpoint(tx) => waiters.push(tx),
                    Msg::Shutdown(tx) => {
                        shutdown = Some(tx);
                        break;
                    }
                }
                taken += 1;
                next = if taken < MAX_BATCH {
                    self.rx.try_recv().ok()
                } else {
                    None
                };
            }
            self.commit(waiters, shutdown.is_some() || disconnected);
        }
        if let Some(tx) = shutdown {
            let _ = tx.send(());
        }
    }

    /// Whether entries were appended since the latest checkpoint.
    fn grown(&self) -> bool {
        self.written > self.latest.as_ref().map_or(0, |c| c.tree_size)
    }

    fn commit(
        &mut self,
        waiters: Vec<oneshot::Sender<Result<Checkpoint, AuditError>>>,
        closing: bool,
    ) {
        if let Some(reason) = &self.poisoned {
            let reason = reason.clone();
            for (_, p) in std::mem::take(&mut self.reorder) {
                p.ack.fail(|| AuditError::Poisoned(reason.clone()));
            }
            for w in waiters {
                let _ = w.send(Err(AuditError::Poisoned(reason.clone())));
            }
            return;
        }
        let mut batch = Vec::new();
        while let Some(p) = self.reorder.remove(&(self.written + batch.len() as u64)) {
            batch.push(p);
        }
        if !batch.is_empty() {
            if let Err(e) = self.write_batch(&batch) {
                self.poison(e.to_string(), batch, waiters);
                return;
            }
            *write_lock(&self.shared.head) = (self.written, self.tree.root());
        }
        let mut sealed = Vec::new();
        for p in batch {
            let receipt = Receipt {
                seq: p.seq,
                leaf_hash: p.leaf,
            };
            match p.ack {
                Ack::Plain(tx) => drop(tx.send(Ok(receipt))),
                Ack::Sealed(tx) => sealed.push((receipt, tx)),
            }
        }
        let due = self.grown() && (closing || self.last_cp_at.elapsed() >= self.interval);
        if sealed.is_empty() && waiters.is_empty() && !due {
            return;
        }
        let cp = if self.grown() || self.latest.is_none() {
            self.checkpoint()
        } else {
            self.latest.clone().ok_or(AuditError::Closed)
        };
        match cp {
            Ok(cp) => {
                for (receipt, tx) in sealed {
                    let _ = tx.send(Ok((receipt, cp.clone())));
                }
                for w in waiters {
                    let _ = w.send(Ok(cp.clone()));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for (_, tx) in sealed {
                    let _ = tx.send(Err(AuditError::Poisoned(reason.clone())));
                }
                self.poison(reason, Vec::new(), waiters);
            }
        }
    }

    fn poison(
        &mut self,
        reason: String,
        batch: Vec<Pending>,
        waiters: Vec<oneshot::Sender<Result<Checkpoint, AuditError>>>,
    ) {
        tracing::error!(dir = %self.shared.dir.display(), error = %reason, "audit log write failed; refusing further appends");
        *self
            .shared
            .poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
        self.poisoned = Some(reason.clone());
        for p in batch
            .into_iter()
            .chain(std::mem::take(&mut self.reorder).into_values())
        {
            p.ack.fail(|| AuditError::Poisoned(reason.clone()));
        }
        for w in waiters {
            let _ = w.send(Err(AuditError::Poisoned(reason.clone())));
        }
    }

    fn write_batch(&mut self, batch: &[Pending]) -> Result<(), AuditError> {
        self.buf.clear();
        for p in batch {
            if self.seg_len + self.buf.len() as u64 >= self.segment_bytes {
                self.roll(p.seq)?;
            }
            self.offsets.push(self.seg_len + self.buf.len() as u64)?;
            self.buf.extend_from_slice(&p.frame);
            self.tree.push(p.leaf)?;
        }
        self.flush_segment()?;
        self.seg
            .sync_data()
            .map_err(|e| AuditError::io(&self.seg_path, e))?;
        self.tree.flush()?;
        self.offsets.flush()?;
        self.written += batch.len() as u64;
        Ok(())
    }

    fn flush_segment(&mut self) -> Result<(), AuditError> {
        self.seg
            .write_all(&self.buf)
            .map_err(|e| AuditError::io(&self.seg_path, e))?;
        self.seg_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Seals the active segment and starts a new one whose first entry is `first`.
    fn roll(&mut self, first: u64) -> Result<(), AuditError> {
        self.flush_segment()?;
        self.seg
            .sync_data()
            .map_err(|e| AuditError::io(&self.seg_path, e))?;
        let seg = create_segment(&self.seg_dir, first)?;
        self.seg = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(|e| AuditError::io(&seg.path, e))?;
        self.seg_path = seg.path.clone();
        self.seg_len = FILE_HEADER_LEN as u64;
        write_lock(&self.shared.segments).push(seg);
        Ok(())
    }

    /// Signs, stores (fdatasync'd) and publishes a checkpoint at the current size.
    fn checkpoint(&mut self) -> Result<Checkpoint, AuditError> {
        let prev = self.latest.as_ref().map(Checkpoint::note_hash);
        let cp = self.signer.sign(self.written, &self.tree.root(), prev);
        let mut frame = Vec::with_capacity(RECORD_HEADER_LEN + cp.note.len());
        record::push_frame(
            &mut frame,
            self.cp_index,
            &leaf_hash(cp.note.as_bytes()),
            cp.note.as_bytes(),
        );
        self.cp_file
            .write_all(&frame)
            .map_err(|e| AuditError::io(&self.cp_path, e))?;
        self.cp_file
            .sync_data()
            .map_err(|e| AuditError::io(&self.cp_path, e))?;
        self.cp_index += 1;
        self.last_cp_at = Instant::now();
        self.latest = Some(cp.clone());
        *write_lock(&self.shared.latest) = Some(cp.clone());
        self.shared
            .published
            .send_replace(Some((cp.tree_size, self.last_cp_at)));
        Ok(cp)
    }
}
