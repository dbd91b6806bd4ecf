//! The embedded backend: one durable segment log per topic under `<data-dir>/mesh/`, written by one writer thread
//! with group commit (concurrent publishes are batched, each touched segment is fdatasync'd once per batch, then
//! every publisher in the batch is acknowledged), and consumer groups whose acknowledgements are persisted as a
//! floor plus the acknowledged offsets above it.
//!
//! Record format (little endian): `len u32 | crc32 u32 | body`, body = `offset u64 | timestamp_ms i64 |
//! key_len i32 (-1 = none) | key | header_count u16 | (name_len u16, name, value_len u32, value)* | payload`.
//! A torn tail (short or bad-CRC record at the end of the newest segment) is truncated on open and reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aura_core::{Clock, Timestamp};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

use crate::{
    Acker, Delivery, Mesh, MeshError, Message, Outgoing, Receipt, StartAt, SubscribeOptions,
    Subscription, Topic, TopicInfo, validate_group,
};

/// How the embedded log is laid out and kept.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Directory of the log (`<data-dir>/mesh`).
    pub dir: PathBuf,
    /// A segment is sealed once it reaches this size.
    pub segment_bytes: u64,
    /// Per topic: the oldest sealed segments are deleted while the topic holds more than this (None = keep all).
    pub retention_bytes: Option<u64>,
    /// fdatasync before acknowledging (turn off only for throwaway data).
    pub fsync: bool,
}

impl EmbeddedConfig {
    /// Defaults for `dir`: 64 MiB segments, no byte retention, fsync on.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            retention_bytes: None,
            fsync: true,
        }
    }
}

/// The embedded mesh. Cheap to clone; one per data dir (a lock file keeps a second process out).
#[derive(Debug, Clone)]
pub struct EmbeddedMesh {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: EmbeddedConfig,
    clock: Arc<dyn Clock>,
    topics: RwLock<HashMap<Topic, Arc<TopicLog>>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    closed: AtomicBool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: File,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: Vec<Job>,
    stop: bool,
}

#[derive(Debug)]
struct Job {
    log: Arc<TopicLog>,
    messages: Vec<Outgoing>,
    done: oneshot::Sender<Result<Vec<u64>, MeshError>>,
}

#[derive(Debug)]
struct TopicLog {
    topic: Topic,
    dir: PathBuf,
    state: RwLock<LogState>,
    durable: watch::Sender<u64>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    deleted: AtomicBool,
}

#[derive(Debug)]
struct LogState {
    segments: Vec<Segment>,
    next_offset: u64,
    last_ts: i64,
}

#[derive(Debug)]
struct Segment {
    base: u64,
    file: File,
    path: PathBuf,
    /// Byte position of each record.
    positions: Vec<u64>,
    bytes: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.base + self.positions.len() as u64
    }
}

#[derive(Debug)]
struct Group {
    name: String,
    path: PathBuf,
    state: Mutex<GroupState>,
    notify: Notify,
    dirty: AtomicBool,
}

#[derive(Debug)]
struct GroupState {
    /// Every offset below the floor is acknowledged.
    floor: u64,
    /// Acknowledged offsets at or above the floor.
    acked: BTreeSet<u64>,
    /// The next offset never delivered.
    next: u64,
    /// Delivered, not acknowledged: when each is due again, and its attempt count.
    pending: BTreeMap<u64, Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    due: Instant,
    attempt: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct GroupFile {
    floor: u64,
    acked: Vec<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EmbeddedMesh {
    /// Opens (or creates) the log in `config.dir`, recovering every topic and truncating torn tails.
    pub fn open(config: EmbeddedConfig, clock: Arc<dyn Clock>) -> Result<EmbeddedMesh, MeshError> {
        if config.segment_bytes < 4096 {
            return Err(MeshError::Invalid(
                "segment_bytes must be at least 4096".into(),
            ));
        }
        fs::create_dir_all(config.dir.join("topics"))?;
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(config.dir.join("LOCK"))?;
        lock_file.try_lock().map_err(|_| {
            MeshError::Unavailable(format!(
                "the mesh log `{}` is in use by another process",
                config.dir.display()
            ))
        })?;
        let mut topics = HashMap::new();
        for entry in fs::read_dir(config.dir.join("topics"))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(topic) = Topic::new(&name) else {
                continue;
            };
            let log = TopicLog::open(topic.clone(), entry.path())?;
            topics.insert(topic, Arc::new(log));
        }
        let inner = Arc::new(Inner {
            config,
            clock,
            topics: RwLock::new(topics),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
            writer: Mutex::new(None),
            _lock: lock_file,
        });
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("aura-mesh-writer".into())
            .spawn(move || writer_loop(weak))?;
        *lock(&inner.writer) = Some(handle);
        Ok(EmbeddedMesh { inner })
    }

    fn check_open(&self) -> Result<(), MeshError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(MeshError::Closed)
        } else {
            Ok(())
        }
    }

    fn log(&self, topic: &Topic) -> Option<Arc<TopicLog>> {
        read(&self.inner.topics).get(topic).cloned()
    }

    fn log_or_create(&self, topic: &Topic) -> Result<Arc<TopicLog>, MeshError> {
        if let Some(log) = self.log(topic) {
            return Ok(log);
        }
        let mut topics = write(&self.inner.topics);
        if let Some(log) = topics.get(topic) {
            return Ok(log.clone());
        }
        let dir = self.inner.config.dir.join("topics").join(topic.as_str());
        fs::create_dir_all(dir.join("groups"))?;
        sync_dir(&self.inner.config.dir.join("topics"));
        let log = Arc::new(TopicLog::open(topic.clone(), dir)?);
        topics.insert(topic.clone(), log.clone());
        Ok(log)
    }

    /// Appends `messages` durably (group commit) and returns their offsets.
    pub async fn append(
        &self,
        topic: &Topic,
        messages: Vec<Outgoing>,
    ) -> Result<Vec<u64>, MeshError> {
        self.check_open()?;
        let log = self.log_or_create(topic)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut q = lock(&self.inner.queue);
            if q.stop {
                return Err(MeshError::Closed);
            }
            q.jobs.push(Job {
                log,
                messages,
                done: tx,
            });
        }
        self.inner.wake.notify_one();
        rx.await.map_err(|_| MeshError::Closed)?
    }

    /// The offset of the newest durable message of `topic` (0 when none).
    pub fn last_offset(&self, topic: &Topic) -> u64 {
        self.log(topic).map_or(0, |l| *l.durable.borrow())
    }

    /// Acknowledges `offset` in `group` (used by the spool forwarder, which reads with [`Mesh::read`]).
    pub fn ack_offset(&self, topic: &Topic, group: &str, offset: u64) -> Result<(), MeshError> {
        let log = self
            .log(topic)
            .ok_or_else(|| MeshError::NoTopic(topic.to_string()))?;
        let g = log.group(group, StartAt::Earliest)?;
        g.ack(offset);
        Ok(())
    }

    /// The first offset `group` has not acknowledged (its floor), creating the group at the start if needed.
    pub fn group_floor(&self, topic: &Topic, group: &str) -> Result<u64, MeshError> {
        let log = self.log_or_create(topic)?;
        let g = log.group(group, StartAt::Earliest)?;
        Ok(lock(&g.state).floor)
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

fn writer_loop(inner: std::sync::Weak<Inner>) {
    let mut last_flush = std::time::Instant::now();
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let (jobs, stop) = {
            let mut q = lock(&inner.queue);
            if q.jobs.is_empty() && !q.stop {
                q = inner
                    .wake
                    .wait_timeout(q, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            (std::mem::take(&mut q.jobs), q.stop)
        };
        if !jobs.is_empty() {
            write_batch(&inner, jobs);
        }
        if stop || last_flush.elapsed() >= Duration::from_millis(100) {
            flush_groups(&inner);
            last_flush = std::time::Instant::now();
        }
        if stop {
            let rest = std::mem::take(&mut lock(&inner.queue).jobs);
            for job in rest {
                let _ = job.done.send(Err(MeshError::Closed));
            }
            return;
        }
    }
}

fn flush_groups(inner: &Inner) {
    let logs: Vec<Arc<TopicLog>> = read(&inner.topics).values().cloned().collect();
    for log in logs {
        let groups: Vec<Arc<Group>> = lock(&log.groups).values().cloned().collect();
        for g in groups {
            if g.dirty.swap(false, Ordering::SeqCst)
                && let Err(e) = g.persist()
            {
                g.dirty.store(true, Ordering::SeqCst);
                tracing::warn!(topic = %log.topic, group = %g.name, error = %e, "could not persist consumer group");
            }
        }
    }
}

/// Writes every job of a batch, syncs each touched segment once, then acknowledges.
fn write_batch(inner: &Inner, jobs: Vec<Job>) {
    let now = inner.clock.now().as_millis();
    let mut results: Vec<Result<Vec<u64>, MeshError>> = Vec::with_capacity(jobs.len());
    // Per touched topic: (log, new last offset).
    let mut touched: Vec<(Arc<TopicLog>, u64, Vec<File>)> = Vec::new();
    let mut buf = Vec::with_capacity(64 << 10);
    for job in &jobs {
        let r = append_job(inner, job, now, &mut buf, &mut touched);
        results.push(r);
    }
    let mut sync_failed: Option<String> = None;
    if inner.config.fsync {
        for (_, _, files) in &touched {
            for f in files {
                if let Err(e) = f.sync_data() {
                    sync_failed = Some(e.to_string());
                }
            }
        }
    }
    if sync_failed.is_none() {
        for (log, last, _) in &touched {
            log.durable.send_replace(*last);
            apply_retention(inner, log);
        }
    }
    for (job, r) in jobs.into_iter().zip(results) {
        let r = match (&sync_failed, r) {
            (Some(e), Ok(_)) => Err(MeshError::Io(io::Error::other(e.clone()))),
            (_, r) => r,
        };
        let _ = job.done.send(r);
    }
}

fn append_job(
    inner: &Inner,
    job: &Job,
    now: i64,
    buf: &mut Vec<u8>,
    touched: &mut Vec<(Arc<TopicLog>, u64, Vec<File>)>,
) -> Result<Vec<u64>, MeshError> {
    let log = &job.log;
    if log.deleted.load(Ordering::SeqCst) {
        return Err(MeshError::NoTopic(log.topic.to_string()));
    }
    let mut state = write(&log.state);
    let ts = now.max(state.last_ts);
    let mut offsets = Vec::with_capacity(job.messages.len());
    let mut files = Vec::new();
    let mut i = 0;
    while i < job.messages.len() {
        // Roll over when the active segment is full.
        let need_new = state
            .segments
            .last()
            .is_none_or(|s| s.bytes >= inner.config.segment_bytes);
        if need_new {
            let base = state.next_offset;
            let seg = Segment::create(&log.dir, base)?;
            state.segments.push(seg);
            sync_dir(&log.dir);
        }
        buf.clear();
        let mut positions = Vec::new();
        let (start_bytes, seg_limit) = match state.segments.last() {
            Some(s) => (s.bytes, inner.config.segment_bytes),
            None => return Err(MeshError::Corrupt("no active segment".into())),
        };
        let mut offset = state.next_offset;
        while i < job.messages.len() && start_bytes + (buf.len() as u64) < seg_limit {
            positions.push(start_bytes + buf.len() as u64);
            encode(buf, offset, ts, &job.messages[i]);
            offsets.push(offset);
            offset += 1;
            i += 1;
        }
        let Some(seg) = state.segments.last_mut() else {
            return Err(MeshError::Corrupt("no active segment".into()));
        };
        if let Err(e) = seg.file.write_all_at(buf, seg.bytes) {
            // Nothing of this chunk is visible: positions and next_offset are unchanged.
            let _ = seg.file.set_len(seg.bytes);
            return Err(e.into());
        }
        seg.bytes += buf.len() as u64;
        seg.positions.extend(positions);
        if let Ok(f) = seg.file.try_clone() {
            files.push(f);
        }
        state.next_offset = offset;
    }
    state.last_ts = ts;
    let last = state.next_offset - 1;
    drop(state);
    match touched.iter_mut().find(|(l, _, _)| Arc::ptr_eq(l, log)) {
        Some(t) => {
            t.1 = last;
            t.2.extend(files);
        }
        None => touched.push((log.clone(), last, files)),
    }
    Ok(offsets)
}

fn apply_retention(inner: &Inner, log: &TopicLog) {
    let Some(limit) = inner.config.retention_bytes else {
        return;
    };
    let mut state = write(&log.state);
    loop {
        let total: u64 = state.segments.iter().map(|s| s.bytes).sum();
        if total <= limit || state.segments.len() < 2 {
            break;
        }
        let seg = state.segments.remove(0);
        if let Err(e) = fs::remove_file(&seg.path) {
            tracing::warn!(path = %seg.path.display(), error = %e, "could not delete an expired segment");
        }
    }
}

fn encode(buf: &mut Vec<u8>, offset: u64, ts: i64, m: &Outgoing) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&ts.to_le_bytes());
    match &m.key {
        Some(k) => {
            buf.extend_from_slice(&(k.len() as i32).to_le_bytes());
            buf.extend_from_slice(k.as_bytes());
        }
        None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    buf.extend_from_slice(&(m.headers.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for (k, v) in m.headers.iter().take(u16::MAX as usize) {
        let k = &k.as_bytes()[..k.len().min(u16::MAX as usize)];
        buf.extend_from_slice(&(k.len() as u16).to_le_bytes());
        buf.extend_from_slice(k);
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
    buf.extend_from_slice(&m.payload);
    let body_len = (buf.len() - start - 8) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MeshError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| MeshError::Corrupt("record shorter than its fields".into()))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], MeshError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn string(&mut self, n: usize) -> Result<String, MeshError> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| MeshError::Corrupt("text field is not UTF-8".into()))
    }
}

fn decode(topic: &Topic, body: &[u8]) -> Result<Message, MeshError> {
    let mut c = Cursor { data: body, pos: 0 };
    let offset = u64::from_le_bytes(c.array()?);
    let ts = i64::from_le_bytes(c.array()?);
    let key_len = i32::from_le_bytes(c.array()?);
    let key = if key_len < 0 {
        None
    } else {
        Some(c.string(key_len as usize)?)
    };
    let n = u16::from_le_bytes(c.array()?);
    let mut headers = BTreeMap::new();
    for _ in 0..n {
        let kl = u16::from_le_bytes(c.array()?) as usize;
        let k = c.string(kl)?;
        let vl = u32::from_le_bytes(c.array()?) as usize;
        let v = c.string(vl)?;
        headers.insert(k, v);
    }
    Ok(Message {
        topic: topic.clone(),
        offset,
        timestamp: Timestamp::from_millis(ts),
        key,
        headers,
        payload: body[c.pos..].to_vec(),
    })
}

impl Segment {
    fn create(dir: &Path, base: u64) -> Result<Segment, MeshError> {
        let path = dir.join(format!("{base:020}.log"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        Ok(Segment {
            base,
            file,
            path,
            positions: Vec::new(),
            bytes: 0,
        })
    }

    /// Opens an existing segment, indexing its records; a torn tail is truncated when `last`.
    fn open(path: PathBuf, base: u64, last: bool) -> Result<(Segment, i64), MeshError> {
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let mut positions = Vec::new();
        let mut pos = 0usize;
        let mut last_ts = 0i64;
        let mut expected = base;
        while pos + 8 <= data.len() {
            let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
                as usize;
            let crc =
                u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
            let Some(body) = data.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32fast::hash(body) != crc || body.len() < 16 {
                break;
            }
            let off = u64::from_le_bytes(body[0..8].try_into().unwrap_or([0; 8]));
            if off != expected {
                break;
            }
            last_ts = i64::from_le_bytes(body[8..16].try_into().unwrap_or([0; 8]));
            positions.push(pos as u64);
            pos += 8 + len;
            expected += 1;
        }
        if pos < data.len() {
            if !last {
                return Err(MeshError::Corrupt(format!(
                    "`{}` is damaged at byte {pos}",
                    path.display()
                )));
            }
            tracing::warn!(
                path = %path.display(),
                offset = pos,
                discarded_bytes = data.len() - pos,
                "mesh log: truncated a torn tail left by a crash"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok((
            Segment {
                base,
                file,
                path,
                positions,
                bytes: pos as u64,
            },
            last_ts,
        ))
    }
}

impl TopicLog {
    fn open(topic: Topic, dir: PathBuf) -> Result<TopicLog, MeshError> {
        fs::create_dir_all(dir.join("groups"))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<u64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::new();
        let mut last_ts = 0;
        let n = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let (seg, ts) = Segment::open(dir.join(format!("{base:020}.log")), base, i + 1 == n)?;
            last_ts = last_ts.max(ts);
            segments.push(seg);
        }
        let next_offset = segments.last().map_or(1, Segment::end);
        let log = TopicLog {
            topic,
            dir,
            state: RwLock::new(LogState {
                segments,
                next_offset,
                last_ts,
            }),
            durable: watch::Sender::new(next_offset - 1),
            groups: Mutex::new(HashMap::new()),
            deleted: AtomicBool::new(false),
        };
        // Load persisted groups.
        if let Ok(entries) = fs::read_dir(log.dir.join("groups")) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if let Some(g) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
                    let g = g.to_owned();
                    let _ = log.group(&g, StartAt::Earliest)?;
                }
            }
        }
        Ok(log)
    }

    fn first_offset(&self) -> u64 {
        let s = read(&self.state);
        s.segments.first().map_or(s.next_offset, |seg| seg.base)
    }

    fn group(&self, name: &str, start: StartAt) -> Result<Arc<Group>, MeshError> {
        let mut groups = lock(&self.groups);
        if let Some(g) = groups.get(name) {
            return Ok(g.clone());
        }
        let path = self.dir.join("groups").join(format!("{name}.json"));
        let first = self.first_offset();
        let (floor, acked) = match fs::read(&path) {
            Ok(bytes) => {
                let f: GroupFile = serde_json::from_slice(&bytes).map_err(|e| {
                    MeshError::Corrupt(format!("group file `{}`: {e}", path.display()))
                })?;
                (f.floor, f.acked.into_iter().collect())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let last = *self.durable.borrow();
                let floor = match start {
                    StartAt::Earliest => first,
                    StartAt::Latest => last + 1,
                    StartAt::Offset(o) => o.max(first),
                    StartAt::Time(t) => self.offset_at_time(t)?,
                };
                (floor, BTreeSet::new())
            }
            Err(e) => return Err(e.into()),
        };
        let floor = floor.max(first);
        let g = Arc::new(Group {
            name: name.to_owned(),
            path,
            state: Mutex::new(GroupState {
                floor,
                acked,
                next: floor,
                pending: BTreeMap::new(),
            }),
            notify: Notify::new(),
            dirty: AtomicBool::new(true),
        });
        g.persist()?;
        g.dirty.store(false, Ordering::SeqCst);
        groups.insert(name.to_owned(), g.clone());
        Ok(g)
    }

    /// The first offset stored at or after `t` (one past the last when none).
    fn offset_at_time(&self, t: Timestamp) -> Result<u64, MeshError> {
        let last = *self.durable.borrow();
        let mut lo = self.first_offset();
        let mut hi = last + 1;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let ts = self
                .read_range(mid, 1)?
                .first()
                .map_or(i64::MAX, |m| m.timestamp.as_millis());
            if ts < t.as_millis() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Reads up to `max` durable messages from `from` on, within one segment at a time.
    fn read_range(&self, from: u64, max: usize) -> Result<Vec<Message>, MeshError> {
        let durable = *self.durable.borrow();
        let mut out = Vec::new();
        let mut at = from;
        while out.len() < max && at <= durable {
            let (file, start, end_pos, count) = {
                let state = read(&self.state);
                let idx = match state.segments.binary_search_by(|s| s.base.cmp(&at)) {
                    Ok(i) => i,
                    Err(0) => {
                        // Before the first retained segment: skip ahead.
                        match state.segments.first() {
                            Some(s) if s.base > at => {
                                at = s.base;
                                continue;
                            }
                            _ => break,
                        }
                    }
                    Err(i) => i - 1,
                };
                let seg = &state.segments[idx];
                let rel = (at - seg.base) as usize;
                if rel >= seg.positions.len() {
                    break;
                }
                let want = (max - out.len())
                    .min(seg.positions.len() - rel)
                    .min((durable + 1 - at) as usize);
                let start = seg.positions[rel];
                let end = seg.positions.get(rel + want).copied().unwrap_or(seg.bytes);
                (seg.file.try_clone()?, start, end, want)
            };
            let mut data = vec![0u8; (end_pos - start) as usize];
            file.read_exact_at(&mut data, start)?;
            let mut pos = 0usize;
            for _ in 0..count {
                let len = u32::from_le_bytes(
                    data.get(pos..pos + 4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| MeshError::Corrupt("short record".into()))?,
                ) as usize;
                let body = data
                    .get(pos + 8..pos + 8 + len)
                    .ok_or_else(|| MeshError::Corrupt("short record".into()))?;
                out.push(decode(&self.topic, body)?);
                pos += 8 + len;
            }
            at += count as u64;
        }
        Ok(out)
    }
}

impl Group {
    fn persist(&self) -> Result<(), MeshError> {
        let file = {
            let s = lock(&self.state);
            GroupFile {
                floor: s.floor,
                acked: s.acked.iter().copied().collect(),
            }
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| MeshError::Corrupt(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    fn ack(&self, offset: u64) {
        let mut s = lock(&self.state);
        s.pending.remove(&offset);
        if offset < s.floor {
            return;
        }
        s.acked.insert(offset);
        loop {
            let floor = s.floor;
            if !s.acked.remove(&floor) {
                break;
            }
            s.floor += 1;
        }
        if s.next < s.floor {
            s.next = s.floor;
        }
        drop(s);
        self.dirty.store(true, Ordering::SeqCst);
    }

    fn nack(&self, offset: u64, delay: Duration) {
        let mut s = lock(&self.state);
        if let Some(p) = s.pending.get_mut(&offset) {
            p.due = Instant::now() + delay;
        }
        drop(s);
        self.notify.notify_waiters();
    }

    /// Claims due redeliveries, then new offsets up to `durable`; returns (offset, attempt) pairs.
    fn claim(&self, durable: u64, first: u64, max: usize, ack_wait: Duration) -> Vec<(u64, u32)> {
        let now = Instant::now();
        let mut s = lock(&self.state);
        if s.floor < first {
            // Retention removed messages the group never acknowledged.
            s.floor = first;
            let floor = s.floor;
            s.acked = s.acked.split_off(&floor);
            s.pending = s.pending.split_off(&floor);
            s.next = s.next.max(floor);
            self.dirty.store(true, Ordering::SeqCst);
        }
        let mut out = Vec::new();
        for (off, p) in s.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if p.due <= now {
                p.attempt += 1;
                p.due = now + ack_wait;
                out.push((*off, p.attempt));
            }
        }
        while out.len() < max && s.next <= durable {
            let off = s.next;
            s.next += 1;
            if s.acked.contains(&off) {
                continue;
            }
            s.pending.insert(
                off,
                Pending {
                    due: now + ack_wait,
                    attempt: 1,
                },
            );
            out.push((off, 1));
        }
        out
    }

    fn next_due(&self) -> Option<Instant> {
        lock(&self.state).pending.values().map(|p| p.due).min()
    }

    fn lag(&self, last: u64) -> u64 {
        let s = lock(&self.state);
        (last + 1)
            .saturating_sub(s.floor)
            .saturating_sub(s.acked.len() as u64)
    }
}

struct EmbeddedSubscription {
    log: Arc<TopicLog>,
    group: Arc<Group>,
    ack_wait: Duration,
    durable: watch::Receiver<u64>,
    mesh: EmbeddedMesh,
}

struct EmbeddedAcker {
    group: Arc<Group>,
    offset: u64,
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<(), MeshError> {
        self.group.ack(self.offset);
        Ok(())
    }
    async fn nack(&self, delay: Duration) -> Result<(), MeshError> {
        self.group.nack(self.offset, delay);
        Ok(())
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, MeshError> {
        let deadline = Instant::now() + wait;
        loop {
            self.mesh.check_open()?;
            if self.log.deleted.load(Ordering::SeqCst) {
                return Err(MeshError::NoTopic(self.log.topic.to_string()));
            }
            let durable = *self.durable.borrow_and_update();
            let claimed =
                self.group
                    .claim(durable, self.log.first_offset(), max.max(1), self.ack_wait);
            if !claimed.is_empty() {
                return self.deliveries(claimed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake_at = self.group.next_due().map_or(deadline, |d| d.min(deadline));
            let notified = self.group.notify.notified();
            tokio::select! {
                changed = self.durable.changed() => {
                    if changed.is_err() {
                        return Err(MeshError::Closed);
                    }
                }
                () = notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }
}

impl EmbeddedSubscription {
    fn deliveries(&self, claimed: Vec<(u64, u32)>) -> Result<Vec<Delivery>, MeshError> {
        let mut out = Vec::with_capacity(claimed.len());
        let mut i = 0;
        while i < claimed.len() {
            // Runs of consecutive offsets are read together.
            let start = claimed[i].0;
            let mut j = i + 1;
            while j < claimed.len() && claimed[j].0 == claimed[j - 1].0 + 1 {
                j += 1;
            }
            let messages = self.log.read_range(start, j - i)?;
            for (m, (_, attempt)) in messages.into_iter().zip(&claimed[i..j]) {
                let offset = m.offset;
                out.push(Delivery::new(
                    m,
                    *attempt,
                    Box::new(EmbeddedAcker {
                        group: self.group.clone(),
                        offset,
                    }),
                ));
            }
            i = j;
        }
        Ok(out)
    }
}

#[async_trait]
impl Mesh for EmbeddedMesh {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ensure_topic(&self, topic: &Topic) -> Result<(), MeshError> {
        self.check_open()?;
        self.log_or_create(topic).map(|_| ())
    }

    async fn delete_topic(&self, topic: &Topic) -> Result<bool, MeshError> {
        self.check_open()?;
        let Some(log) = write(&self.inner.topics).remove(topic) else {
            return Ok(false);
        };
        log.deleted.store(true, Ordering::SeqCst);
        for g in lock(&log.groups).values() {
            g.notify.notify_waiters();
        }
        fs::remove_dir_all(&log.dir)?;
        sync_dir(&self.inner.config.dir.join("topics"));
        Ok(true)
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, MeshError> {
        self.check_open()?;
        let logs: Vec<Arc<TopicLog>> = read(&self.inner.topics).values().cloned().collect();
        let mut out: Vec<TopicInfo> = logs
            .iter()
            .map(|log| {
                let last = *log.durable.borrow();
                let first = log.first_offset();
                let mut groups: Vec<String> = lock(&log.groups).keys().cloned().collect();
                groups.sort();
                TopicInfo {
                    topic: log.topic.clone(),
                    messages: (last + 1).saturating_sub(first),
                    first_offset: if last >= first { first } else { 0 },
                    last_offset: last,
                    groups,
                }
            })
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(out)
    }

    async fn publish(&self, topic: &Topic, message: Outgoing) -> Result<Receipt, MeshError> {
        let offsets = self.append(topic, vec![message]).await?;
        let offset = offsets
            .first()
            .copied()
            .ok_or_else(|| MeshError::Corrupt("no offset assigned".into()))?;
        Ok(Receipt {
            offset,
            spooled: false,
        })
    }

    async fn publish_batch(
        &self,
        topic: &Topic,
        messages: Vec<Outgoing>,
    ) -> Result<Vec<Receipt>, MeshError> {
        Ok(self
            .append(topic, messages)
            .await?
            .into_iter()
            .map(|offset| Receipt {
                offset,
                spooled: false,
            })
            .collect())
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError> {
        self.check_open()?;
        validate_group(group)?;
        let log = self.log_or_create(topic)?;
        let g = log.group(group, options.start)?;
        Ok(Box::new(EmbeddedSubscription {
            durable: log.durable.subscribe(),
            log,
            group: g,
            ack_wait: options.ack_wait,
            mesh: self.clone(),
        }))
    }

    async fn read(
        &self,
        topic: &Topic,
        from: StartAt,
        max: usize,
    ) -> Result<Vec<Message>, MeshError> {
        self.check_open()?;
        let log = self
            .log(topic)
            .ok_or_else(|| MeshError::NoTopic(topic.to_string()))?;
        let start = match from {
            StartAt::Earliest => log.first_offset(),
            StartAt::Latest => *log.durable.borrow() + 1,
            StartAt::Offset(o) => o,
            StartAt::Time(t) => log.offset_at_time(t)?,
        };
        let log2 = log.clone();
        tokio::task::spawn_blocking(move || log2.read_range(start, max))
            .await
            .map_err(|e| MeshError::Backend(e.to_string()))?
    }

    async fn lag(&self, topic: &Topic, group: &str) -> Result<Option<u64>, MeshError> {
        let Some(log) = self.log(topic) else {
            return Ok(None);
        };
        let last = *log.durable.borrow();
        Ok(lock(&log.groups).get(group).map(|g| g.lag(last)))
    }

    async fn healthy(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.inner.queue).stop = true;
        self.inner.wake.notify_all();
        let handle = lock(&self.inner.writer).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        let logs: Vec<Arc<TopicLog>> = read(&self.inner.topics).values().cloned().collect();
        for log in logs {
            for g in lock(&log.groups).values() {
                g.notify.notify_waiters();
            }
        }
    }
}
