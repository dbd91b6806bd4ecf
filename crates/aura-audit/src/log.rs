//! The durable audit log: open and recovery, group-committed appends through one writer thread, signed
//! checkpoints, proofs and reads.

use std::collections::{BTreeMap, btree_map};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aura_core::Timestamp;
use tokio::sync::oneshot;

use crate::entry::{self, AuditEntry, Encoded, LoggedEntry};
use crate::error::AuditError;
use crate::merkle::{self, ConsistencyProof, Hash, InclusionProof, LeafHasher, leaf_hash};
use crate::note::{Checkpoint, Signer, Verifier};
use crate::record::{
    self, CHECKPOINT_MAGIC, End, FILE_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::store::{self, Offsets, TreeFiles, TreeWriter};

/// Counters of a running log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Entries durable in the log (its tree size).
    pub entries: u64,
    /// Batches written and fdatasync'd since open.
    pub batches: u64,
}

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
    /// Work for the writer thread; `wake` tells it that work arrived.
    queue: Mutex<Queue>,
    wake: Condvar,
    /// How far the log is durable (written and fdatasync'd), and the appends waiting for it.
    acks: Mutex<Acks>,
    /// How far the log is written to its segment file (survives a crash of this process, not yet a power loss),
    /// and the callers of [`AuditLog::written_until`] waiting for it.
    written: Mutex<Acks>,
    /// Work for the sync thread: fdatasync what the writer wrote, without holding up the next write.
    sync: Mutex<SyncState>,
    sync_wake: Condvar,
    /// fdatasyncs of the segment since open (for the benchmark's entries-per-sync figure).
    batches: AtomicU64,
    /// When set, the writer records when entries became durable and when checkpoints were published.
    history: Mutex<Option<History>>,
    closed: AtomicBool,
    poisoned: Mutex<Option<String>>,
    head: RwLock<(u64, Hash)>,
    /// The write side, locked by whoever writes a batch.
    core: Mutex<Core>,
    latest: RwLock<Option<Checkpoint>>,
    /// The checkpoint chain. The writer signs forced checkpoints (sealed appends, `checkpoint_now`, close) over
    /// everything written; the sync thread signs the periodic ones over what it made durable, so their signature
    /// and fdatasync never hold up the next batch.
    checkpoints: Mutex<Chain>,
    /// How often a periodic checkpoint is signed while the durable size grows.
    interval: Duration,
    segments: RwLock<Vec<Segment>>,
    tree: TreeFiles,
    offsets: File,
    verifier_key: String,
}

/// The signed checkpoints: the file they are appended to and the latest one, which the next one chains to.
#[derive(Debug)]
struct Chain {
    file: File,
    path: PathBuf,
    /// Checkpoints in the file (the next one's record index).
    index: u64,
    latest: Option<Checkpoint>,
    /// When the latest checkpoint was signed (or the log opened).
    last_at: Instant,
    signer: Signer,
}

impl Chain {
    /// Tree size covered by the latest checkpoint (0 without one).
    fn covered(&self) -> u64 {
        self.latest.as_ref().map_or(0, |c| c.tree_size)
    }
}

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
}

/// What the writer thread has to do. Submitters take their sequence numbers and frame their entries into `batch`
/// under the lock (so the batch is always in order, without gaps), and wake the writer only when it sleeps, so a
/// busy writer costs them no system call.
#[derive(Debug, Default)]
struct Queue {
    /// The sequence number of the next entry.
    next_seq: u64,
    /// Entries `next_seq - batch.len() .. next_seq`, framed, waiting for the writer.
    batch: Batch,
    /// `checkpoint_now` callers.
    checkpoints: Vec<oneshot::Sender<Result<Checkpoint, AuditError>>>,
    /// `close` / drop callers, told once the writer is done.
    shutdown: Vec<oneshot::Sender<()>>,
    /// Set when shutdown was asked for (the writer finishes what it has and exits).
    closing: bool,
    /// Set when the writer exited: nothing pushed any more is ever processed.
    stopped: bool,
    /// The writer sleeps on `wake`.
    writer_waiting: bool,
    /// Someone waits promptly on an entry of `batch`: write it as soon as the writer is free.
    eager: bool,
    /// `batch` holds only lazy entries ([`AuditLog::append_lazy`]): write it by then, or earlier with the next
    /// eager entry.
    lazy_deadline: Option<Instant>,
}

/// Consecutive entries, framed back to back exactly as they go into a segment.
#[derive(Debug, Default)]
struct Batch {
    /// The records.
    bytes: Vec<u8>,
    /// Per entry, in order: its leaf hash and the length of its record.
    entries: Vec<(Hash, usize)>,
    /// `append_sealed` callers: the entry's sequence number, leaf hash and where its receipt goes.
    sealed: Vec<(u64, Hash, SealedAck)>,
}

type SealedAck = oneshot::Sender<Result<(Receipt, Checkpoint), AuditError>>;

/// A batch buffer larger than this is not kept for reuse.
const KEEP_BATCH_BYTES: usize = 16 << 20;

impl Batch {
    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Frames `e` as entry `seq` at the end of the batch; returns its leaf hash.
    fn push(&mut self, seq: u64, e: &Encoded, pre: &LeafHasher) -> Hash {
        let start = self.bytes.len();
        let leaf = e.frame_into(seq, pre, &mut self.bytes);
        self.entries.push((leaf, self.bytes.len() - start));
        leaf
    }

    /// Empties the batch, keeping its buffers unless they grew very large.
    fn clear(&mut self) {
        if self.bytes.capacity() > KEEP_BATCH_BYTES {
            *self = Batch::default();
        } else {
            self.bytes.clear();
            self.entries.clear();
            self.sealed.clear();
        }
    }
}

/// What the sync thread has to do: fdatasync `file` so that entries `0..target` are durable.
#[derive(Debug)]
struct SyncState {
    /// Entries `0..target` are written; the sync thread makes them durable.
    target: u64,
    /// The active segment (a shared handle: the writer keeps appending to its own).
    file: Arc<File>,
    path: PathBuf,
    /// The sync thread sleeps on `sync_wake` until something is written.
    waiting: bool,
    /// The sync thread lingers on `sync_wake` before an fdatasync nobody awaits (see [`SYNC_LINGER`]): writes do
    /// not wake it, an urgent waiter does.
    lingering: bool,
    /// Someone awaits durability of entries below this (`append`, `durable_until`): sync them without lingering.
    urgent_until: u64,
    /// The writer is done: sync what is left and exit.
    closing: bool,
}

/// How long the sync thread may gather writes before an fdatasync that nobody awaits (entries released on
/// `written`, lazy settlements): fewer fdatasyncs under load — each costs a disk flush and, on a VM, exits to the
/// host — at the price of a power-loss window of at most this plus one fdatasync. An awaited entry is synced at once.
const SYNC_LINGER: Duration = Duration::from_millis(2);

/// A watermark (written, or durable), and the callers waiting for it: each waits for its own sequence number (the
/// last one for `append_many`), so a batch wakes exactly the appends it made durable.
#[derive(Debug, Default)]
struct Acks {
    /// Entries `0..durable` have reached this watermark.
    durable: u64,
    /// No further entry will become durable: the log was poisoned or the writer stopped.
    stopped: bool,
    /// Waiting appends by sequence number.
    waiting: BTreeMap<u64, Waker>,
}

impl Acks {
    /// Raises the watermark to `durable` (never lowers it); returns the wakers of the appends that reached it.
    fn advance(&mut self, durable: u64, woken: &mut Vec<Waker>) {
        if durable <= self.durable {
            return;
        }
        self.durable = durable;
        while let Some(e) = self.waiting.first_entry() {
            if *e.key() >= durable {
                break;
            }
            woken.push(e.remove());
        }
    }

    /// Marks the log stopped; returns every waker.
    fn stop(&mut self, woken: &mut Vec<Waker>) {
        self.stopped = true;
        woken.extend(std::mem::take(&mut self.waiting).into_values());
    }
}

/// Resolves once entry `seq` is below a watermark (`Ok`) or never will be (`Err`). Cancel-safe: dropping it
/// unregisters.
struct Durable<'a> {
    acks: &'a Mutex<Acks>,
    seq: u64,
    registered: bool,
}

impl Future for Durable<'_> {
    type Output = Result<(), ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut a = lock(this.acks);
        if a.durable > this.seq || a.stopped {
            if this.registered {
                a.waiting.remove(&this.seq);
                this.registered = false;
            }
            return Poll::Ready(if a.durable > this.seq {
                Ok(())
            } else {
                Err(())
            });
        }
        match a.waiting.entry(this.seq) {
            btree_map::Entry::Occupied(mut e) if !e.get().will_wake(cx.waker()) => {
                e.insert(cx.waker().clone());
            }
            btree_map::Entry::Occupied(_) => {}
            btree_map::Entry::Vacant(e) => {
                e.insert(cx.waker().clone());
            }
        }
        this.registered = true;
        Poll::Pending
    }
}

impl Drop for Durable<'_> {
    fn drop(&mut self) {
        if self.registered {
            lock(self.acks).waiting.remove(&self.seq);
        }
    }
}

/// Instants recorded by the writer for the benchmark.
#[derive(Debug, Default)]
pub(crate) struct History {
    /// (tree size, instant) after every batch's fdatasync.
    pub(crate) durable: Vec<(u64, Instant)>,
    /// (tree size, instant) of every checkpoint once stored.
    pub(crate) checkpoints: Vec<(u64, Instant)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        let sync_file = seg_file
            .try_clone()
            .map_err(|e| AuditError::io(&active_path, e))?;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            queue: Mutex::new(Queue {
                next_seq: n,
                ..Queue::default()
            }),
            wake: Condvar::new(),
            acks: Mutex::new(Acks {
                durable: n,
                ..Acks::default()
            }),
            written: Mutex::new(Acks {
                durable: n,
                ..Acks::default()
            }),
            sync: Mutex::new(SyncState {
                target: n,
                file: Arc::new(sync_file),
                path: active_path.clone(),
                waiting: false,
                lingering: false,
                urgent_until: 0,
                closing: false,
            }),
            sync_wake: Condvar::new(),
            batches: AtomicU64::new(0),
            history: Mutex::new(None),
            closed: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            head: RwLock::new((n, tree.root())),
            core: Mutex::new(Core {
                seg_dir,
                seg: seg_file,
                seg_path: active_path,
                seg_len,
                segment_bytes: config.segment_bytes,
                tree,
                offsets,
                written: n,
                poisoned: None,
                woken: Vec::new(),
                spare: Batch::default(),
            }),
            latest: RwLock::new(latest.clone()),
            checkpoints: Mutex::new(Chain {
                file: cp_file,
                path: cp_path,
                index: cp_count,
                latest,
                last_at: Instant::now(),
                signer,
            }),
            interval: config.checkpoint_interval,
            segments: RwLock::new(segments),
            tree: tree_files,
            offsets: offsets_reader,
            verifier_key,
        });
        let sync_shared = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("aura-audit-sync".into())
            .spawn(move || sync_loop(&sync_shared, n))
            .map_err(|e| AuditError::io(&dir, e))?;
        let writer = Writer {
            shared: shared.clone(),
            syncer: Some(syncer),
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
        self.check_open()?;
        let encoded = entry::encode(&entry)?;
        let pre = encoded.prehash();
        let receipt = {
            let mut q = self.queue()?;
            let seq = q.next_seq;
            q.next_seq += 1;
            let leaf = q.batch.push(seq, &encoded, &pre);
            self.hand_over(q);
            Receipt {
                seq,
                leaf_hash: leaf,
            }
        };
        drop((encoded, entry));
        self.durable(receipt.seq).await?;
        Ok(receipt)
    }

    /// Queues an entry without waiting for it: returns its receipt at once (sequence number and leaf hash, not
    /// yet durable). Wait with [`AuditLog::durable_until`] before releasing any effect the entry records; this
    /// lets a caller prepare the effect while the group commit is in flight.
    ///
    /// When no one else is writing, the caller writes the pending batch itself (its entry and any others queued),
    /// so the entry is usually written when this returns: no hand-off to the writer thread and back, which is most
    /// of an append's latency on a busy machine. Otherwise the writer thread (or the submitter writing) takes it.
    pub fn submit(&self, entry: &AuditEntry) -> Result<Receipt, AuditError> {
        self.check_open()?;
        let encoded = entry::encode(entry)?;
        let pre = encoded.prehash();
        let mut q = self.queue()?;
        let seq = q.next_seq;
        q.next_seq += 1;
        let leaf = q.batch.push(seq, &encoded, &pre);
        let receipt = Receipt {
            seq,
            leaf_hash: leaf,
        };
        self.hand_over(q);
        Ok(receipt)
    }

    /// Writes the queued batch here when the write side is free, else wakes the writer thread for it.
    fn hand_over(&self, q: MutexGuard<'_, Queue>) {
        if let Some(q) = self.write_inline(q) {
            self.wake_writer(q);
        }
    }

    /// Writes the queued batch on the caller's thread when the write side is free (flat combining); gives the queue
    /// back when it is not, for the writer thread to take. Lock order is core before queue: with the queue held,
    /// only a `try_lock` of the core cannot deadlock. Sealed appends, checkpoint requests and shutdown are left to
    /// the writer thread (they sign and fdatasync).
    fn write_inline<'a>(&'a self, mut q: MutexGuard<'a, Queue>) -> Option<MutexGuard<'a, Queue>> {
        if !q.batch.sealed.is_empty() || !q.checkpoints.is_empty() || q.closing {
            return Some(q);
        }
        let Ok(mut core) = self.shared.core.try_lock() else {
            return Some(q);
        };
        let mut batch = std::mem::take(&mut core.spare);
        std::mem::swap(&mut q.batch, &mut batch);
        q.eager = false;
        q.lazy_deadline = None;
        drop(q);
        core.commit(&self.shared, &mut batch, Vec::new(), false);
        batch.clear();
        core.spare = batch;
        None
    }

    /// Resolves once entry `seq` (from [`AuditLog::submit`]) is written and fdatasync'd; an error means it never
    /// will be, so whatever it records must not happen.
    pub async fn durable_until(&self, seq: u64) -> Result<(), AuditError> {
        self.durable(seq).await
    }

    /// Resolves once entry `seq` (from [`AuditLog::submit`]) is written to the log's segment file: it then survives
    /// a crash of this process (`kill -9`), though not yet a power loss, which [`AuditLog::durable_until`] covers.
    /// Writes never wait for an fdatasync in flight: a separate thread group-commits them. An error means the entry
    /// will never be written, so whatever it records must not happen.
    pub async fn written_until(&self, seq: u64) -> Result<(), AuditError> {
        Durable {
            acks: &self.shared.written,
            seq,
            registered: false,
        }
        .await
        .map_err(|()| self.stopped())
    }

    /// Appends an entry nobody waits on promptly (a settlement after the effect): written at once when the write
    /// side is free, else it rides along with the next batch, or the writer thread writes it after `linger`. Its
    /// fdatasync is never hurried (the sync thread gathers it with others), so it never costs an awaited append a
    /// second fdatasync. Resolves once durable, like [`AuditLog::append`].
    pub async fn append_lazy(
        &self,
        entry: AuditEntry,
        linger: Duration,
    ) -> Result<Receipt, AuditError> {
        let receipt = self.submit_lazy(&entry, linger)?;
        drop(entry);
        self.durable_unhurried(receipt.seq).await?;
        Ok(receipt)
    }

    /// As [`AuditLog::append_lazy`] without waiting: returns the entry's receipt at once (written when the write
    /// side was free, else queued). For an entry whose durability nobody awaits, which spares the caller a wake-up
    /// when the sync thread gets to it; [`AuditLog::durable_until`] still waits for it if needed.
    pub fn submit_lazy(&self, entry: &AuditEntry, linger: Duration) -> Result<Receipt, AuditError> {
        self.check_open()?;
        let encoded = entry::encode(entry)?;
        let pre = encoded.prehash();
        let mut q = self.queue()?;
        let seq = q.next_seq;
        q.next_seq += 1;
        let first = q.batch.is_empty();
        let leaf = q.batch.push(seq, &encoded, &pre);
        if first {
            q.lazy_deadline = Some(Instant::now() + linger);
        }
        // Written here if the write side is free (cheaper than waking the writer thread, and the sync thread
        // coalesces the fdatasync anyway); else a sleeping writer re-reads its deadline, and a busy one sees the
        // entry in its next round.
        if let Some(mut q) = self.write_inline(q)
            && first
            && q.writer_waiting
        {
            q.writer_waiting = false;
            drop(q);
            self.shared.wake.notify_one();
        }
        Ok(Receipt {
            seq,
            leaf_hash: leaf,
        })
    }

    /// Entries appended and batches fdatasync'd since open: `entries / batches` is the group-commit factor.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            entries: read_lock(&self.shared.head).0,
            batches: self.shared.batches.load(Ordering::Relaxed),
        }
    }

    /// Appends several entries under consecutive sequence numbers, in order; resolves once all of them are written
    /// and fdatasync'd (usually by one batch), with their receipts in the same order. Cheaper per entry than as many
    /// [`AuditLog::append`] calls. If any entry cannot be encoded nothing is appended. On an error after
    /// submission, a prefix of the entries may still have become durable (like unacknowledged single appends).
    /// Dropping the future does not cancel the appends.
    pub async fn append_many(&self, entries: Vec<AuditEntry>) -> Result<Vec<Receipt>, AuditError> {
        self.check_open()?;
        let encoded = entries
            .iter()
            .map(|e| entry::encode(e).map(|enc| (enc.prehash(), enc)))
            .collect::<Result<Vec<_>, _>>()?;
        drop(entries);
        let Some(last) = encoded.len().checked_sub(1) else {
            return Ok(Vec::new());
        };
        let mut receipts = Vec::with_capacity(encoded.len());
        {
            let mut q = self.queue()?;
            for (pre, enc) in &encoded {
                let seq = q.next_seq;
                q.next_seq += 1;
                let leaf = q.batch.push(seq, enc, pre);
                receipts.push(Receipt {
                    seq,
                    leaf_hash: leaf,
                });
            }
            self.hand_over(q);
        }
        drop(encoded);
        if let Some(r) = receipts.get(last) {
            self.durable(r.seq).await?;
        }
        Ok(receipts)
    }

    /// Appends an entry and returns it together with a signed checkpoint covering it. The kernel calls this for
    /// HALT, ESCALATE and approvals.
    pub async fn append_sealed(
        &self,
        entry: AuditEntry,
    ) -> Result<(Receipt, Checkpoint), AuditError> {
        self.check_open()?;
        let encoded = entry::encode(&entry)?;
        let pre = encoded.prehash();
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.queue()?;
            let seq = q.next_seq;
            q.next_seq += 1;
            let leaf = q.batch.push(seq, &encoded, &pre);
            q.batch.sealed.push((seq, leaf, tx));
            self.wake_writer(q);
        }
        rx.await.map_err(|_| self.stopped())?
    }

    /// Signs a checkpoint covering every entry acknowledged so far (or returns the latest one if it already does).
    pub async fn checkpoint_now(&self) -> Result<Checkpoint, AuditError> {
        self.check_open()?;
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.queue()?;
            q.checkpoints.push(tx);
            self.wake_writer(q);
        }
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
            // Entries retired by retention (their segments deleted after export) are skipped, not errors.
            next: filter.from_seq.max(
                read_lock(&self.shared.segments)
                    .first()
                    .map_or(0, |s| s.first),
            ),
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
        if let Some(rx) = self.request_shutdown() {
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

    /// Number of batches written and fdatasync'd since open; used by the benchmark.
    pub(crate) fn batches_written(&self) -> u64 {
        self.shared.batches.load(Ordering::Relaxed)
    }

    /// Starts recording, writer-side, when entries become durable and when checkpoints are stored; used by the
    /// benchmark to measure checkpoint lag without scheduling noise.
    pub(crate) fn record_history(&self) {
        *lock(&self.shared.history) = Some(History::default());
    }

    /// Stops recording and returns what was recorded.
    pub(crate) fn take_history(&self) -> History {
        lock(&self.shared.history).take().unwrap_or_default()
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

    /// The queue, locked; fails once the writer has stopped. Sequence numbers are taken under this lock and nothing
    /// can fail between taking one and framing its entry into the batch, so no number is ever skipped.
    fn queue(&self) -> Result<MutexGuard<'_, Queue>, AuditError> {
        let q = lock(&self.shared.queue);
        if q.stopped {
            return Err(self.stopped());
        }
        Ok(q)
    }

    /// Marks the batch as awaited and wakes the writer if it sleeps (releasing the queue lock first).
    fn wake_writer(&self, mut q: MutexGuard<'_, Queue>) {
        q.eager = true;
        if q.writer_waiting {
            q.writer_waiting = false;
            drop(q);
            self.shared.wake.notify_one();
        }
    }

    /// Waits until entry `seq` is durable, asking the sync thread not to linger for it.
    async fn durable(&self, seq: u64) -> Result<(), AuditError> {
        {
            let mut st = lock(&self.shared.sync);
            if st.urgent_until <= seq {
                st.urgent_until = seq + 1;
                if st.lingering {
                    st.lingering = false;
                    drop(st);
                    self.shared.sync_wake.notify_one();
                }
            }
        }
        self.durable_unhurried(seq).await
    }

    /// Waits until entry `seq` is durable, whenever the sync thread gets to it.
    async fn durable_unhurried(&self, seq: u64) -> Result<(), AuditError> {
        Durable {
            acks: &self.shared.acks,
            seq,
            registered: false,
        }
        .await
        .map_err(|()| self.stopped())
    }

    /// Asks the writer to finish and exit; the receiver resolves once it is done (`None` if it already is).
    fn request_shutdown(&self) -> Option<oneshot::Receiver<()>> {
        let mut q = lock(&self.shared.queue);
        if q.stopped {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        q.shutdown.push(tx);
        q.closing = true;
        self.wake_writer(q);
        Some(rx)
    }
}

impl Drop for AuditLog {
    /// Without [`AuditLog::close`], dropping still finishes submitted appends and signs a final checkpoint; it
    /// waits for the writer thread so the directory lock is only released once nothing writes any more.
    fn drop(&mut self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            drop(self.request_shutdown());
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

/// Creates a segment atomically (header written and fsync'd as `<dir>/segment.tmp`, outside `segments/`, then
/// renamed into place), so a crash never leaves a segment without its header.
fn create_segment(seg_dir: &Path, first: u64) -> Result<Segment, AuditError> {
    let path = segment_path(seg_dir, first);
    let tmp = seg_dir.with_file_name("segment.tmp");
    write_durably(&tmp, &record::file_header(SEGMENT_MAGIC, first))?;
    fs::rename(&tmp, &path).map_err(|e| AuditError::io(&path, e))?;
    store::sync_parent(&path)?;
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

/// The writer thread: writes the batches nobody wrote inline (see [`AuditLog::submit`]), lazy entries after their
/// linger, sealed appends and checkpoint requests, and at close everything left.
struct Writer {
    shared: Arc<Shared>,
    /// The sync thread, joined when the writer stops.
    syncer: Option<JoinHandle<()>>,
}

/// The write side of the log: the active segment, the tree and offset index writers. Whoever holds its lock writes:
/// the writer thread, or a submitter that found it free (flat combining). Lock order: `core` before `queue`.
#[derive(Debug)]
struct Core {
    seg_dir: PathBuf,
    seg: File,
    seg_path: PathBuf,
    seg_len: u64,
    segment_bytes: u64,
    tree: TreeWriter,
    offsets: Offsets,
    written: u64,
    poisoned: Option<String>,
    /// Wakers of acknowledged appends, woken after the lock is released.
    woken: Vec<Waker>,
    /// Swapped with the queue's batch each round, so neither reallocates in steady state: while one is written,
    /// submitters fill the other.
    spare: Batch,
}

impl Writer {
    fn run(self) {
        let shared = &*self.shared;
        loop {
            {
                let mut q = lock(&shared.queue);
                loop {
                    if !q.checkpoints.is_empty() || q.closing {
                        break;
                    }
                    let now = Instant::now();
                    if !q.batch.is_empty() && (q.eager || q.lazy_deadline.is_none_or(|d| now >= d))
                    {
                        break;
                    }
                    // Sleep until work arrives or lazy entries must be written (periodic checkpoints are the
                    // sync thread's).
                    let deadline = if q.batch.is_empty() {
                        None
                    } else {
                        q.lazy_deadline
                    };
                    q.writer_waiting = true;
                    q = match deadline {
                        Some(d) => {
                            shared
                                .wake
                                .wait_timeout(q, d.saturating_duration_since(now))
                                .unwrap_or_else(PoisonError::into_inner)
                                .0
                        }
                        None => shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner),
                    };
                }
                q.writer_waiting = false;
            }
            // Lock order: the core first, then the queue (a submitter writing inline may have taken the batch
            // meanwhile; then there is only the rest to do).
            let mut core = lock(&shared.core);
            let mut batch = std::mem::take(&mut core.spare);
            let (waiters, closing) = {
                let mut q = lock(&shared.queue);
                q.eager = false;
                q.lazy_deadline = None;
                std::mem::swap(&mut q.batch, &mut batch);
                (std::mem::take(&mut q.checkpoints), q.closing)
            };
            core.commit(shared, &mut batch, waiters, closing);
            batch.clear();
            core.spare = batch;
            if closing {
                break;
            }
        }
        // `Drop` stops the queue and answers the shutdown callers.
    }
}

impl Core {
    fn commit(
        &mut self,
        shared: &Shared,
        batch: &mut Batch,
        waiters: Vec<oneshot::Sender<Result<Checkpoint, AuditError>>>,
        closing: bool,
    ) {
        if self.poisoned.is_none() {
            self.poisoned = read_lock_poison(&shared.poisoned);
        }
        if let Some(reason) = &self.poisoned {
            let reason = reason.clone();
            for (_, _, tx) in batch.sealed.drain(..) {
                let _ = tx.send(Err(AuditError::Poisoned(reason.clone())));
            }
            for w in waiters {
                let _ = w.send(Err(AuditError::Poisoned(reason.clone())));
            }
            return;
        }
        if !batch.is_empty() {
            if let Err(e) = self.write_batch(shared, batch) {
                self.poison(shared, e.to_string(), batch, waiters);
                return;
            }
            *write_lock(&shared.head) = (self.written, self.tree.root());
            lock(&shared.written).advance(self.written, &mut self.woken);
            self.woken.drain(..).for_each(Waker::wake);
            // The sync thread makes them durable while this thread writes the next batch.
            let mut st = lock(&shared.sync);
            st.target = self.written;
            if st.waiting {
                st.waiting = false;
                drop(st);
                shared.sync_wake.notify_one();
            }
        }
        let sealed: Vec<(Receipt, SealedAck)> = batch
            .sealed
            .drain(..)
            .map(|(seq, leaf_hash, tx)| (Receipt { seq, leaf_hash }, tx))
            .collect();
        if sealed.is_empty() && waiters.is_empty() && !closing {
            return;
        }
        // Someone waits for a checkpoint covering everything written: make it durable first.
        let cp = {
            let mut chain = lock(&shared.checkpoints);
            if self.written > chain.covered() || chain.latest.is_none() {
                let root = self.tree.root();
                self.sync_all(shared)
                    .and_then(|()| shared.checkpoint(&mut chain, self.written, root))
            } else {
                chain.latest.clone().ok_or(AuditError::Closed)
            }
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
                self.poison(shared, reason, batch, waiters);
            }
        }
    }

    /// Refuses all further appends after a failed write: fails everything not yet durable.
    fn poison(
        &mut self,
        shared: &Shared,
        reason: String,
        batch: &mut Batch,
        waiters: Vec<oneshot::Sender<Result<Checkpoint, AuditError>>>,
    ) {
        tracing::error!(dir = %shared.dir.display(), error = %reason, "audit log write failed; refusing further appends");
        self.poisoned = Some(reason.clone());
        shared.fail(reason.clone(), &mut self.woken);
        for (_, _, tx) in batch.sealed.drain(..) {
            let _ = tx.send(Err(AuditError::Poisoned(reason.clone())));
        }
        for w in waiters {
            let _ = w.send(Err(AuditError::Poisoned(reason.clone())));
        }
    }

    /// Writes the batch's records (one `write` per segment touched); the sync thread fdatasyncs them, and only then
    /// are they acknowledged as durable. Extends the tree and offset index (flushed, not synced: they are derived).
    fn write_batch(&mut self, shared: &Shared, batch: &Batch) -> Result<(), AuditError> {
        let mut chunk_start = 0;
        let mut pos = 0;
        for (seq, (leaf, len)) in (self.written..).zip(&batch.entries) {
            if self.seg_len + (pos - chunk_start) as u64 >= self.segment_bytes {
                self.write_segment(batch.bytes.get(chunk_start..pos).unwrap_or_default())?;
                self.roll(shared, seq)?;
                chunk_start = pos;
            }
            self.offsets
                .push(self.seg_len + (pos - chunk_start) as u64)?;
            self.tree.push(*leaf)?;
            pos += len;
        }
        self.write_segment(batch.bytes.get(chunk_start..pos).unwrap_or_default())?;
        self.tree.flush()?;
        self.offsets.flush()?;
        self.written += batch.len();
        Ok(())
    }

    /// fdatasyncs the active segment here (not on the sync thread) and publishes everything written as durable.
    fn sync_all(&mut self, shared: &Shared) -> Result<(), AuditError> {
        if lock(&shared.acks).durable >= self.written {
            return Ok(());
        }
        self.seg
            .sync_data()
            .map_err(|e| AuditError::io(&self.seg_path, e))?;
        shared.batches.fetch_add(1, Ordering::Relaxed);
        lock(&shared.acks).advance(self.written, &mut self.woken);
        self.woken.drain(..).for_each(Waker::wake);
        if let Some(h) = lock(&shared.history).as_mut() {
            h.durable.push((self.written, Instant::now()));
        }
        Ok(())
    }

    fn write_segment(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.seg
            .write_all(bytes)
            .map_err(|e| AuditError::io(&self.seg_path, e))?;
        self.seg_len += bytes.len() as u64;
        Ok(())
    }

    /// Seals the active segment (everything for it is written) and starts a new one whose first entry is `first`.
    fn roll(&mut self, shared: &Shared, first: u64) -> Result<(), AuditError> {
        // Entries before `first` become durable below, and the sync thread may checkpoint them at once: their tree
        // nodes must be readable from the level files first.
        self.tree.flush()?;
        self.offsets.flush()?;
        self.seg
            .sync_data()
            .map_err(|e| AuditError::io(&self.seg_path, e))?;
        let seg = create_segment(&self.seg_dir, first)?;
        self.seg = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(|e| AuditError::io(&seg.path, e))?;
        let sync_file = self
            .seg
            .try_clone()
            .map_err(|e| AuditError::io(&seg.path, e))?;
        {
            // Entries before `first` are durable in the sealed segment; the sync thread moves to the new one.
            let mut st = lock(&shared.sync);
            st.file = Arc::new(sync_file);
            st.path = seg.path.clone();
        }
        lock(&shared.acks).advance(first, &mut self.woken);
        self.woken.drain(..).for_each(Waker::wake);
        self.seg_path = seg.path.clone();
        self.seg_len = FILE_HEADER_LEN as u64;
        write_lock(&shared.segments).push(seg);
        Ok(())
    }
}

impl Shared {
    /// Signs, stores (fdatasync'd) and publishes a checkpoint at tree size `size`, whose entries must be durable
    /// and whose root is `root`.
    fn checkpoint(
        &self,
        chain: &mut Chain,
        size: u64,
        root: Hash,
    ) -> Result<Checkpoint, AuditError> {
        let prev = chain.latest.as_ref().map(Checkpoint::note_hash);
        let cp = chain.signer.sign(size, &root, prev);
        let mut frame = Vec::with_capacity(RECORD_HEADER_LEN + cp.note.len());
        record::push_frame(
            &mut frame,
            chain.index,
            &leaf_hash(cp.note.as_bytes()),
            cp.note.as_bytes(),
        );
        chain
            .file
            .write_all(&frame)
            .map_err(|e| AuditError::io(&chain.path, e))?;
        chain
            .file
            .sync_data()
            .map_err(|e| AuditError::io(&chain.path, e))?;
        chain.index += 1;
        chain.last_at = Instant::now();
        chain.latest = Some(cp.clone());
        *write_lock(&self.latest) = Some(cp.clone());
        if let Some(h) = lock(&self.history).as_mut() {
            h.checkpoints.push((cp.tree_size, chain.last_at));
        }
        Ok(cp)
    }

    /// The sync thread's periodic checkpoint: signs one over the durable size when it grew and the interval since
    /// the latest checkpoint has passed. Returns when the next one falls due, if entries wait for one.
    fn periodic_checkpoint(&self) -> Result<Option<Instant>, AuditError> {
        if lock(&self.poisoned).is_some() {
            return Ok(None);
        }
        let mut chain = lock(&self.checkpoints);
        let durable = lock(&self.acks).durable;
        if durable <= chain.covered() {
            return Ok(None);
        }
        let due = chain.last_at + self.interval;
        if Instant::now() < due {
            return Ok(Some(due));
        }
        let root = merkle::root_at(&self.tree, durable)?;
        self.checkpoint(&mut chain, durable, root)?;
        Ok(None)
    }

    /// Refuses all further appends: records why (the first failure's reason is kept) and fails everyone waiting.
    fn fail(&self, reason: String, woken: &mut Vec<Waker>) {
        lock(&self.poisoned).get_or_insert(reason);
        lock(&self.acks).stop(woken);
        lock(&self.written).stop(woken);
        woken.drain(..).for_each(Waker::wake);
    }
}

impl Drop for Writer {
    /// Whether the writer returned or unwound: stop the queue, fail whatever was not made durable (dropping a
    /// sealed append's or checkpoint caller's sender fails it too) and answer the shutdown callers last.
    fn drop(&mut self) {
        let (leftover, waiters, shutdown) = {
            let mut q = lock(&self.shared.queue);
            q.stopped = true;
            (
                std::mem::take(&mut q.batch),
                std::mem::take(&mut q.checkpoints),
                std::mem::take(&mut q.shutdown),
            )
        };
        {
            let mut st = lock(&self.shared.sync);
            st.closing = true;
            st.waiting = false;
        }
        self.shared.sync_wake.notify_one();
        if let Some(h) = self.syncer.take() {
            // The sync thread makes what was written durable, then exits.
            let _ = h.join();
        }
        let mut woken = Vec::new();
        lock(&self.shared.written).stop(&mut woken);
        lock(&self.shared.acks).stop(&mut woken);
        woken.drain(..).for_each(Waker::wake);
        drop((leftover, waiters));
        for tx in shutdown {
            let _ = tx.send(());
        }
    }
}

/// The sync thread: fdatasyncs the active segment up to what the writer has written, then publishes it as durable,
/// and signs the periodic checkpoints over what is durable. A sync or checkpoint in flight never holds up the
/// writer; the writes that arrive meanwhile are covered by the next sync.
fn sync_loop(shared: &Shared, mut synced: u64) {
    let mut woken = Vec::new();
    loop {
        let next_checkpoint = match shared.periodic_checkpoint() {
            Ok(due) => due,
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(dir = %shared.dir.display(), error = %reason, "audit log checkpoint failed; refusing further appends");
                shared.fail(reason, &mut woken);
                return;
            }
        };
        let work = {
            let mut st = lock(&shared.sync);
            let mut linger_until = None;
            let work = loop {
                if st.target > synced {
                    // Sync at once what someone awaits; gather writes nobody awaits for up to SYNC_LINGER.
                    let now = Instant::now();
                    let until = *linger_until.get_or_insert(now + SYNC_LINGER);
                    if st.urgent_until > synced || st.closing || now >= until {
                        st.lingering = false;
                        break Some((st.target, st.file.clone()));
                    }
                    st.lingering = true;
                    st.waiting = false;
                    st = shared
                        .sync_wake
                        .wait_timeout(st, until - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    continue;
                }
                if st.closing {
                    return;
                }
                st.waiting = true;
                st = match next_checkpoint {
                    None => shared
                        .sync_wake
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner),
                    Some(due) => {
                        let now = Instant::now();
                        if due <= now {
                            break None;
                        }
                        shared
                            .sync_wake
                            .wait_timeout(st, due - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
            };
            st.waiting = false;
            work
        };
        // Nothing to sync: a periodic checkpoint fell due.
        let Some((target, file)) = work else {
            continue;
        };
        if let Err(e) = file.sync_data() {
            let path = lock(&shared.sync).path.clone();
            let reason = AuditError::io(&path, e).to_string();
            tracing::error!(dir = %shared.dir.display(), error = %reason, "audit log fdatasync failed; refusing further appends");
            shared.fail(reason, &mut woken);
            return;
        }
        synced = target;
        shared.batches.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        lock(&shared.acks).advance(target, &mut woken);
        woken.drain(..).for_each(Waker::wake);
        if let Some(h) = lock(&shared.history).as_mut() {
            h.durable.push((target, now));
        }
    }
}
