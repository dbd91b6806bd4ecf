//! The Kafka backend (cargo feature `kafka`, `rdkafka` with librdkafka built by cmake): one Kafka topic per mesh
//! topic, consumer groups through Kafka's own group protocol (JoinGroup/SyncGroup/OffsetCommit), publishes with
//! `acks=all` and the idempotent producer, keys partitioned with the Java client's murmur2 so other Kafka clients
//! agree on placement.
//!
//! Kafka tracks a group's progress as one committed offset per partition, not per message. The adapter keeps
//! per-message acknowledgements on top: every delivered message stays *in flight* until acked; the committed offset
//! of a partition is the lowest in-flight offset (or the next one after the last delivery), committed synchronously
//! on `ack`. `nack(delay)` and an expired `ack_wait` redeliver from the in-flight set with the next attempt number.
//! A member that crashes or leaves hands its partitions over at the committed offset, so nothing unacknowledged is
//! lost (at-least-once); attempt numbers restart at 1 on the new member (Kafka has no delivery count).
//!
//! Offsets: mesh offset = `partition << 40 | (kafka offset + 1)`. With one partition (the default) that is the Kafka
//! offset plus one, dense from 1 like the other backends; with several, offsets order messages partition by
//! partition, and order per key holds because a key always maps to one partition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aura_core::Timestamp;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};

use crate::{
    Acker, Delivery, Mesh, MeshError, Message, Outgoing, Receipt, StartAt, SubscribeOptions,
    Subscription, Topic, TopicInfo, validate_group,
};

/// How to reach Kafka and how topics are created.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers: `kafka://host:port[,host:port…]` or `host:port[,…]`.
    pub url: String,
    /// Bound on each broker round trip (metadata, commits, admin calls) and on a publish's delivery.
    pub timeout: Duration,
    /// Partitions of topics the mesh creates (1 keeps one total order per topic). Default 1.
    pub partitions: i32,
    /// Replication factor of topics the mesh creates. Default 1.
    pub replication: i32,
    /// Most records per produce batch (0: librdkafka's default, 10000). The conformance suite sets 1 against
    /// tansu 0.6, whose in-memory engine loses records of multi-record batches (see `docs/mesh.md`).
    pub batch_records: usize,
}

impl KafkaConfig {
    /// A configuration for `url` with a 5 s timeout, one partition and replication 1.
    pub fn new(url: impl Into<String>) -> Self {
        KafkaConfig {
            url: url.into(),
            timeout: Duration::from_secs(5),
            partitions: 1,
            replication: 1,
            batch_records: 0,
        }
    }

    /// The bootstrap list librdkafka expects.
    fn bootstrap(&self) -> Result<String, MeshError> {
        let s = self.url.trim();
        let s = s.strip_prefix("kafka://").unwrap_or(s);
        let s = s.trim_end_matches('/');
        if s.is_empty() || s.split(',').any(|h| !h.contains(':') || h.contains('/')) {
            return Err(MeshError::Invalid(format!(
                "Kafka URL `{}` must be `kafka://host:port[,host:port…]`",
                self.url
            )));
        }
        Ok(s.to_owned())
    }
}

/// The Kafka mesh.
#[derive(Clone)]
pub struct KafkaMesh {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    bootstrap: String,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// A group-less consumer for metadata, watermarks and offsets by time.
    meta: Arc<BaseConsumer>,
    /// Topics known to exist (so a publish does not ask the broker every time).
    known: Mutex<HashSet<String>>,
    /// One group-bound consumer per group, used only to read committed offsets (never subscribed).
    group_clients: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// This process's live group consumers per topic (unsubscribed before the topic is deleted).
    live: Mutex<HashMap<String, Vec<Weak<StreamConsumer<GroupContext>>>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for KafkaMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaMesh")
            .field("bootstrap", &self.inner.bootstrap)
            .field("partitions", &self.inner.config.partitions)
            .finish_non_exhaustive()
    }
}

const PARTITION_SHIFT: u32 = 40;
const OFFSET_MASK: u64 = (1 << PARTITION_SHIFT) - 1;
const MAX_GROUP_CLIENTS: usize = 64;

fn encode(partition: i32, offset: i64) -> u64 {
    ((partition.max(0) as u64) << PARTITION_SHIFT) | ((offset.max(-1) + 1) as u64 & OFFSET_MASK)
}

fn decode(offset: u64) -> (i32, i64) {
    let p = i32::try_from(offset >> PARTITION_SHIFT).unwrap_or(i32::MAX);
    let o = (offset & OFFSET_MASK) as i64 - 1;
    (p, o.max(0))
}

fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::MessageTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::Resolve
            | C::TimedOutQueue
    )
}

fn kafka_err(e: KafkaError) -> MeshError {
    match e.rdkafka_error_code() {
        Some(c) if is_transient(c) => MeshError::Unavailable(format!("Kafka: {e}")),
        _ => MeshError::Backend(format!("Kafka: {e}")),
    }
}

fn code_err(what: &str, code: RDKafkaErrorCode) -> MeshError {
    if is_transient(code) {
        MeshError::Unavailable(format!("Kafka {what}: {code}"))
    } else {
        MeshError::Backend(format!("Kafka {what}: {code}"))
    }
}

/// Runs a blocking librdkafka call off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MeshError> + Send + 'static,
) -> Result<T, MeshError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MeshError::Backend(format!("Kafka worker: {e}")))?
}

fn message_of(topic: &Topic, m: &BorrowedMessage<'_>) -> Message {
    let mut headers = BTreeMap::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            headers.insert(header.key.to_owned(), value);
        }
    }
    Message {
        topic: topic.clone(),
        offset: encode(m.partition(), m.offset()),
        timestamp: Timestamp::from_millis(m.timestamp().to_millis().unwrap_or(0)),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        payload: m.payload().unwrap_or_default().to_vec(),
    }
}

impl KafkaMesh {
    /// Connects to the brokers and checks they answer within `config.timeout`.
    pub async fn connect(config: &KafkaConfig) -> Result<KafkaMesh, MeshError> {
        let bootstrap = config.bootstrap()?;
        if config.partitions < 1 || config.replication < 1 {
            return Err(MeshError::Invalid(
                "Kafka partitions and replication must be at least 1".into(),
            ));
        }
        let ms = config.timeout.as_millis().clamp(1000, 300_000).to_string();
        let producer: FutureProducer = base_config(&bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "1")
            .set(
                "batch.num.messages",
                if config.batch_records == 0 {
                    "10000".to_owned()
                } else {
                    config.batch_records.to_string()
                },
            )
            .set("message.timeout.ms", &ms)
            .set("request.timeout.ms", &ms)
            .create()
            .map_err(kafka_err)?;
        let admin: AdminClient<DefaultClientContext> =
            base_config(&bootstrap).create().map_err(kafka_err)?;
        let meta: BaseConsumer = base_config(&bootstrap)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_err)?;
        let mesh = KafkaMesh {
            inner: Arc::new(Inner {
                config: config.clone(),
                bootstrap,
                producer,
                admin,
                meta: Arc::new(meta),
                known: Mutex::new(HashSet::new()),
                group_clients: Mutex::new(HashMap::new()),
                live: Mutex::new(HashMap::new()),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        mesh.topic_names().await?;
        Ok(mesh)
    }

    /// The underlying producer (for raw-client benchmarks).
    pub fn producer(&self) -> &FutureProducer {
        &self.inner.producer
    }

    fn open(&self) -> Result<(), MeshError> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            Err(MeshError::Closed)
        } else {
            Ok(())
        }
    }

    /// Topic name → partition ids, for every topic in the cluster.
    async fn topic_names(&self) -> Result<BTreeMap<String, Vec<i32>>, MeshError> {
        self.open()?;
        let meta = self.inner.meta.clone();
        let timeout = self.inner.config.timeout;
        blocking(move || {
            let md = meta.fetch_metadata(None, timeout).map_err(kafka_err)?;
            Ok(md
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
                .map(|t| {
                    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    ps.sort_unstable();
                    (t.name().to_owned(), ps)
                })
                .collect())
        })
        .await
    }

    async fn partitions(&self, topic: &Topic) -> Result<Option<Vec<i32>>, MeshError> {
        Ok(self.topic_names().await?.remove(topic.as_str()))
    }

    async fn watermarks(
        &self,
        topic: &Topic,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64, i64)>, MeshError> {
        let meta = self.inner.meta.clone();
        let timeout = self.inner.config.timeout;
        let name = topic.as_str().to_owned();
        let partitions = partitions.to_vec();
        blocking(move || {
            let mut out = Vec::with_capacity(partitions.len());
            for p in partitions {
                let (lo, hi) = meta
                    .fetch_watermarks(&name, p, timeout)
                    .map_err(kafka_err)?;
                out.push((p, lo, hi));
            }
            Ok(out)
        })
        .await
    }

    /// Kafka offset (per partition) where `start` begins, given the watermarks.
    async fn start_offsets(
        &self,
        topic: &Topic,
        marks: &[(i32, i64, i64)],
        start: StartAt,
    ) -> Result<Vec<(i32, i64)>, MeshError> {
        Ok(match start {
            StartAt::Earliest => marks.iter().map(|&(p, lo, _)| (p, lo)).collect(),
            StartAt::Latest => marks.iter().map(|&(p, _, hi)| (p, hi)).collect(),
            StartAt::Offset(o) => {
                let (sp, so) = decode(o);
                marks
                    .iter()
                    .map(|&(p, lo, hi)| match p.cmp(&sp) {
                        std::cmp::Ordering::Less => (p, hi),
                        std::cmp::Ordering::Equal => (p, so.clamp(lo, hi)),
                        std::cmp::Ordering::Greater => (p, lo),
                    })
                    .collect()
            }
            StartAt::Time(t) => {
                let meta = self.inner.meta.clone();
                let timeout = self.inner.config.timeout;
                let name = topic.as_str().to_owned();
                let marks = marks.to_vec();
                blocking(move || {
                    let mut tpl = TopicPartitionList::new();
                    for &(p, _, _) in &marks {
                        tpl.add_partition_offset(&name, p, Offset::Offset(t.as_millis()))
                            .map_err(kafka_err)?;
                    }
                    let found = meta.offsets_for_times(tpl, timeout).map_err(kafka_err)?;
                    let mut out = Vec::with_capacity(marks.len());
                    for &(p, lo, hi) in &marks {
                        let at = match found.find_partition(&name, p).map(|e| e.offset()) {
                            Some(Offset::Offset(o)) => o.clamp(lo, hi),
                            _ => hi,
                        };
                        out.push((p, at));
                    }
                    Ok(out)
                })
                .await?
            }
        })
    }

    /// A consumer bound to `group` that only reads committed offsets (cached).
    fn group_client(&self, group: &str) -> Result<Arc<BaseConsumer>, MeshError> {
        let mut clients = self
            .inner
            .group_clients
            .lock()
            .map_err(|_| MeshError::Backend("Kafka group clients poisoned".into()))?;
        if let Some(c) = clients.get(group) {
            return Ok(c.clone());
        }
        if clients.len() >= MAX_GROUP_CLIENTS {
            clients.clear();
        }
        let c: BaseConsumer = base_config(&self.inner.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_err)?;
        let c = Arc::new(c);
        clients.insert(group.to_owned(), c.clone());
        Ok(c)
    }

    /// The group's committed Kafka offsets on `topic`'s partitions (`None` per partition without a commit).
    async fn committed(
        &self,
        group: &str,
        topic: &Topic,
        partitions: &[i32],
    ) -> Result<Vec<(i32, Option<i64>)>, MeshError> {
        let client = self.group_client(group)?;
        let timeout = self.inner.config.timeout;
        let name = topic.as_str().to_owned();
        let partitions = partitions.to_vec();
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for &p in &partitions {
                tpl.add_partition(&name, p);
            }
            let got = client.committed_offsets(tpl, timeout).map_err(kafka_err)?;
            Ok(partitions
                .iter()
                .map(|&p| {
                    let o = match got.find_partition(&name, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) if o >= 0 => Some(o),
                        _ => None,
                    };
                    (p, o)
                })
                .collect())
        })
        .await
    }

    /// Commits `offsets` for `group` outside any membership (a new group's start position).
    async fn commit_start(
        &self,
        group: &str,
        topic: &Topic,
        offsets: Vec<(i32, i64)>,
    ) -> Result<(), MeshError> {
        let client = self.group_client(group)?;
        let name = topic.as_str().to_owned();
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in offsets {
                tpl.add_partition_offset(&name, p, Offset::Offset(o))
                    .map_err(kafka_err)?;
            }
            client.commit(&tpl, CommitMode::Sync).map_err(kafka_err)
        })
        .await
    }

    async fn groups(&self) -> Result<Vec<String>, MeshError> {
        let meta = self.inner.meta.clone();
        let timeout = self.inner.config.timeout;
        blocking(move || {
            let list = meta.fetch_group_list(None, timeout).map_err(kafka_err)?;
            let mut names: Vec<String> =
                list.groups().iter().map(|g| g.name().to_owned()).collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn ensure_known(&self, topic: &Topic) -> Result<(), MeshError> {
        let known = self
            .inner
            .known
            .lock()
            .map(|k| k.contains(topic.as_str()))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        self.ensure_topic(topic).await
    }

    fn forget(&self, topic: &Topic) {
        if let Ok(mut k) = self.inner.known.lock() {
            k.remove(topic.as_str());
        }
    }

    async fn send_all(
        &self,
        topic: &Topic,
        messages: &[Outgoing],
    ) -> Result<Vec<Receipt>, (usize, KafkaError)> {
        let deadline = Instant::now() + self.inner.config.timeout;
        let mut pending = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let mut record: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(topic.as_str()).payload(m.payload.as_slice());
            if !m.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
                for (k, v) in &m.headers {
                    headers = headers.insert(Header {
                        key: k.as_str(),
                        value: Some(v.as_bytes()),
                    });
                }
                record = record.headers(headers);
            }
            if let Some(k) = &m.key {
                record = record.key(k.as_str());
            }
            loop {
                match self.inner.producer.send_result(record) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                        if Instant::now() < deadline =>
                    {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err((i, e)),
                }
            }
        }
        let mut out = Vec::with_capacity(pending.len());
        for (i, f) in pending.into_iter().enumerate() {
            match f.await {
                Ok(Ok(d)) => out.push(Receipt {
                    offset: encode(d.partition, d.offset),
                    spooled: false,
                }),
                Ok(Err((e, _))) => return Err((i, e)),
                Err(_) => return Err((i, KafkaError::Canceled)),
            }
        }
        Ok(out)
    }
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "aura-mesh")
        .set("broker.address.family", "v4")
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("log_level", "3");
    c
}

#[async_trait]
impl Mesh for KafkaMesh {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    async fn ensure_topic(&self, topic: &Topic) -> Result<(), MeshError> {
        self.open()?;
        let new = NewTopic::new(
            topic.as_str(),
            self.inner.config.partitions,
            TopicReplication::Fixed(self.inner.config.replication),
        );
        let opts = AdminOptions::new().operation_timeout(Some(self.inner.config.timeout));
        let results = self
            .inner
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(kafka_err)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(code_err("create topic", code)),
            }
        }
        // Wait until the metadata shows the topic, so the next call sees it.
        let deadline = Instant::now() + self.inner.config.timeout;
        while self.partitions(topic).await?.is_none() {
            if Instant::now() >= deadline {
                return Err(MeshError::Unavailable(format!(
                    "Kafka topic `{topic}` was created but does not appear in the metadata"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Ok(mut k) = self.inner.known.lock() {
            k.insert(topic.as_str().to_owned());
        }
        Ok(())
    }

    async fn delete_topic(&self, topic: &Topic) -> Result<bool, MeshError> {
        self.forget(topic);
        if self.partitions(topic).await?.is_none() {
            return Ok(false);
        }
        // Stop this process's consumers of the topic first: librdkafka 2.12 crashes when a fetch for a deleted
        // topic is answered with a zero topic id and a current-leader tag (tansu 0.6 does; see docs/mesh.md).
        let live: Vec<_> = self
            .inner
            .live
            .lock()
            .map(|mut l| l.remove(topic.as_str()).unwrap_or_default())
            .unwrap_or_default();
        let mut stopped = false;
        for c in live.iter().filter_map(Weak::upgrade) {
            c.unsubscribe();
            stopped = true;
        }
        if stopped {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let opts = AdminOptions::new().operation_timeout(Some(self.inner.config.timeout));
        let results = self
            .inner
            .admin
            .delete_topics(&[topic.as_str()], &opts)
            .await
            .map_err(kafka_err)?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => return Ok(false),
                Err((_, code)) => return Err(code_err("delete topic", code)),
            }
        }
        Ok(true)
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, MeshError> {
        let names = self.topic_names().await?;
        let groups = self.groups().await?;
        let mut out = Vec::new();
        for (name, partitions) in names {
            let Ok(topic) = Topic::new(&name) else {
                continue;
            };
            let marks = self.watermarks(&topic, &partitions).await?;
            let messages: i64 = marks.iter().map(|&(_, lo, hi)| (hi - lo).max(0)).sum();
            let first = marks
                .iter()
                .find(|&&(_, lo, hi)| hi > lo)
                .map(|&(p, lo, _)| encode(p, lo))
                .unwrap_or(0);
            let last = marks
                .iter()
                .rev()
                .find(|&&(_, lo, hi)| hi > lo)
                .map(|&(p, _, hi)| encode(p, hi - 1))
                .unwrap_or(0);
            let mut topic_groups = Vec::new();
            for g in &groups {
                let committed = self.committed(g, &topic, &partitions).await?;
                if committed.iter().any(|(_, o)| o.is_some()) {
                    topic_groups.push(g.clone());
                }
            }
            out.push(TopicInfo {
                topic,
                messages: messages as u64,
                first_offset: first,
                last_offset: last,
                groups: topic_groups,
            });
        }
        Ok(out)
    }

    async fn publish(&self, topic: &Topic, message: Outgoing) -> Result<Receipt, MeshError> {
        let mut r = self.publish_batch(topic, vec![message]).await?;
        r.pop()
            .ok_or_else(|| MeshError::Backend("no receipt".into()))
    }

    async fn publish_batch(
        &self,
        topic: &Topic,
        messages: Vec<Outgoing>,
    ) -> Result<Vec<Receipt>, MeshError> {
        self.open()?;
        self.ensure_known(topic).await?;
        match self.send_all(topic, &messages).await {
            Ok(r) => Ok(r),
            Err((_, e))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) =>
            {
                // Deleted behind our back (nothing was stored): create it again and send the batch once more.
                self.forget(topic);
                self.ensure_topic(topic).await?;
                self.send_all(topic, &messages)
                    .await
                    .map_err(|(_, e)| kafka_err(e))
            }
            Err((_, e)) => Err(kafka_err(e)),
        }
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError> {
        validate_group(group)?;
        self.open()?;
        self.ensure_known(topic).await?;
        let partitions = self
            .partitions(topic)
            .await?
            .ok_or_else(|| MeshError::NoTopic(topic.to_string()))?;
        // A new group (no commit on some partition) starts where `options.start` says: commit that position first,
        // so the group exists (lag, listing) before its first member has joined.
        let committed = self.committed(group, topic, &partitions).await?;
        let missing: Vec<i32> = committed
            .iter()
            .filter(|(_, o)| o.is_none())
            .map(|&(p, _)| p)
            .collect();
        if !missing.is_empty() {
            let marks = self.watermarks(topic, &missing).await?;
            let start = self.start_offsets(topic, &marks, options.start).await?;
            if let Err(e) = self.commit_start(group, topic, start).await {
                // Another member may have joined the group meanwhile; then its commits stand.
                tracing::debug!(topic = %topic, group, error = %e, "could not commit a new group's start");
            }
        }
        let state = Arc::new(Mutex::new(GroupState::default()));
        let context = GroupContext {
            state: state.clone(),
        };
        let consumer: StreamConsumer<GroupContext> = base_config(&self.inner.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("max.poll.interval.ms", "10000")
            .set("heartbeat.interval.ms", "500")
            .set("fetch.wait.max.ms", "50")
            .set("partition.assignment.strategy", "roundrobin")
            .create_with_context(context)
            .map_err(kafka_err)?;
        consumer.subscribe(&[topic.as_str()]).map_err(kafka_err)?;
        let consumer = Arc::new(consumer);
        if let Ok(mut live) = self.inner.live.lock() {
            let list = live.entry(topic.as_str().to_owned()).or_default();
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(&consumer));
        }
        Ok(Box::new(KafkaSubscription {
            topic: topic.clone(),
            consumer: Some(consumer),
            state,
            ack_wait: options.ack_wait,
            commit_lock: Arc::new(tokio::sync::Mutex::new(())),
            timeout: self.inner.config.timeout,
        }))
    }

    async fn read(
        &self,
        topic: &Topic,
        from: StartAt,
        max: usize,
    ) -> Result<Vec<Message>, MeshError> {
        let partitions = self
            .partitions(topic)
            .await?
            .ok_or_else(|| MeshError::NoTopic(topic.to_string()))?;
        if max == 0 || from == StartAt::Latest {
            return Ok(Vec::new());
        }
        let marks = self.watermarks(topic, &partitions).await?;
        let starts = self.start_offsets(topic, &marks, from).await?;
        let bootstrap = self.inner.bootstrap.clone();
        let timeout = self.inner.config.timeout;
        let topic = topic.clone();
        blocking(move || {
            // librdkafka needs a group id to assign partitions; this one never joins or commits.
            let reader: BaseConsumer = base_config(&bootstrap)
                .set("group.id", format!("aura-reader-{:016x}", fastrand::u64(..)))
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "50")
                .create()
                .map_err(kafka_err)?;
            let mut out = Vec::new();
            // Partition by partition: that is the order of mesh offsets.
            for (&(p, start), &(_, _, hi)) in starts.iter().zip(marks.iter()) {
                if out.len() >= max || start >= hi {
                    continue;
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic.as_str(), p, Offset::Offset(start))
                    .map_err(kafka_err)?;
                reader.assign(&tpl).map_err(kafka_err)?;
                let deadline = Instant::now() + timeout;
                loop {
                    if out.len() >= max {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(MeshError::Unavailable(format!(
                            "Kafka: reading `{topic}` partition {p} timed out"
                        )));
                    }
                    match reader.poll(left.min(Duration::from_millis(200))) {
                        Some(Ok(m)) => {
                            let at = m.offset();
                            if m.partition() == p && at >= start {
                                out.push(message_of(&topic, &m));
                            }
                            if at + 1 >= hi {
                                break;
                            }
                        }
                        Some(Err(KafkaError::PartitionEOF(_))) => break,
                        // A group-less consumer reports "unknown group" and transient broker errors: not fatal.
                        Some(Err(e)) => {
                            tracing::debug!(topic = %topic, error = %e, "Kafka reader reported an error");
                        }
                        None => {}
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn lag(&self, topic: &Topic, group: &str) -> Result<Option<u64>, MeshError> {
        validate_group(group)?;
        let Some(partitions) = self.partitions(topic).await? else {
            return Ok(None);
        };
        let committed = self.committed(group, topic, &partitions).await?;
        if committed.iter().all(|(_, o)| o.is_none()) {
            return Ok(None);
        }
        let marks = self.watermarks(topic, &partitions).await?;
        let mut lag = 0u64;
        for ((_, c), (_, lo, hi)) in committed.iter().zip(marks.iter()) {
            let from = c.unwrap_or(*lo).max(*lo);
            lag += (hi - from).max(0) as u64;
        }
        Ok(Some(lag))
    }

    async fn healthy(&self) -> bool {
        let meta = self.inner.meta.clone();
        let timeout = self.inner.config.timeout.min(Duration::from_secs(2));
        blocking(move || meta.fetch_metadata(None, timeout).map_err(kafka_err))
            .await
            .is_ok()
    }

    async fn close(&self) {
        if self
            .inner
            .closed
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let inner = self.inner.clone();
        let _ = blocking(move || {
            use rdkafka::producer::Producer as _;
            inner
                .producer
                .flush(inner.config.timeout)
                .map_err(kafka_err)
        })
        .await;
    }
}

/// What one member of a group has delivered and not yet had acknowledged, per partition.
#[derive(Default)]
struct GroupState {
    partitions: HashMap<i32, PartitionState>,
}

#[derive(Default)]
struct PartitionState {
    /// Delivered, not acknowledged: Kafka offset → the message, its attempt and when it is redelivered.
    inflight: BTreeMap<i64, InFlight>,
    /// The Kafka offset after the last one delivered.
    next: i64,
    /// The offset last committed by this member.
    committed: i64,
}

struct InFlight {
    message: Message,
    attempt: u32,
    due: Instant,
}

/// Drops a partition's in-flight messages when the group takes it away (its new owner starts at the commit).
struct GroupContext {
    state: Arc<Mutex<GroupState>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match rebalance {
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    state.partitions.remove(&e.partition());
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(_) => state.partitions.clear(),
        }
    }
}

struct KafkaSubscription {
    topic: Topic,
    consumer: Option<Arc<StreamConsumer<GroupContext>>>,
    state: Arc<Mutex<GroupState>>,
    ack_wait: Duration,
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // Closing a group consumer leaves the group and blocks until the broker answers: not on the runtime.
        if let Some(c) = self.consumer.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(move || drop(c))),
                Err(_) => drop(c),
            }
        }
    }
}

impl KafkaSubscription {
    fn delivery(&self, m: Message, partition: i32, offset: i64, attempt: u32) -> Delivery {
        let acker = KafkaAcker {
            consumer: self
                .consumer
                .as_ref()
                .map(Arc::downgrade)
                .unwrap_or_default(),
            state: Arc::downgrade(&self.state),
            commit_lock: self.commit_lock.clone(),
            topic: self.topic.as_str().to_owned(),
            partition,
            offset,
            timeout: self.timeout,
        };
        Delivery::new(m, attempt, Box::new(acker))
    }

    /// In-flight messages whose time has come, as the next attempt; and when the next one falls due.
    fn due(&self, max: usize, out: &mut Vec<Delivery>) -> Option<Instant> {
        let now = Instant::now();
        let mut taken = Vec::new();
        let mut next_due: Option<Instant> = None;
        if let Ok(mut state) = self.state.lock() {
            for (&p, part) in state.partitions.iter_mut() {
                for (&o, f) in part.inflight.iter_mut() {
                    if f.due <= now && out.len() + taken.len() < max {
                        f.attempt += 1;
                        f.due = now + self.ack_wait;
                        taken.push((f.message.clone(), p, o, f.attempt));
                    } else {
                        next_due = Some(next_due.map_or(f.due, |d| d.min(f.due)));
                    }
                }
            }
        }
        for (m, p, o, a) in taken {
            out.push(self.delivery(m, p, o, a));
        }
        next_due
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, MeshError> {
        let max = max.max(1);
        let Some(consumer) = self.consumer.clone() else {
            return Err(MeshError::Closed);
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let next_due = self.due(max, &mut out);
            if out.len() >= max {
                return Ok(out);
            }
            let now = tokio::time::Instant::now();
            // Once something is in hand, only take what is already there.
            let mut until = if out.is_empty() {
                deadline
            } else {
                now + Duration::from_millis(5)
            };
            if let Some(d) = next_due {
                until = until.min(tokio::time::Instant::from_std(d));
            }
            let received = tokio::time::timeout_at(until.max(now), consumer.recv()).await;
            match received {
                Ok(Ok(m)) => {
                    let message = message_of(&self.topic, &m);
                    let (p, o) = (m.partition(), m.offset());
                    drop(m);
                    let fresh = {
                        let mut state = self
                            .state
                            .lock()
                            .map_err(|_| MeshError::Backend("Kafka group state poisoned".into()))?;
                        let part = state.partitions.entry(p).or_insert_with(|| PartitionState {
                            committed: o,
                            ..Default::default()
                        });
                        part.next = part.next.max(o + 1);
                        match part.inflight.entry(o) {
                            std::collections::btree_map::Entry::Occupied(_) => false,
                            std::collections::btree_map::Entry::Vacant(v) => {
                                v.insert(InFlight {
                                    message: message.clone(),
                                    attempt: 1,
                                    due: Instant::now() + self.ack_wait,
                                });
                                true
                            }
                        }
                    };
                    if fresh {
                        out.push(self.delivery(message, p, o, 1));
                    }
                }
                Ok(Err(e)) => {
                    // Consumer errors are reports (a broker down, a group rebalancing): librdkafka recovers by
                    // itself, so keep waiting until the deadline; a fatal error ends the subscription.
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
                        return Err(kafka_err(e));
                    }
                    tracing::debug!(topic = %self.topic, error = %e, "Kafka consumer reported an error");
                    if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                        return Ok(out);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {
                    if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                        // Due redeliveries may have come in while waiting.
                        if out.is_empty() {
                            self.due(max, &mut out);
                        }
                        return Ok(out);
                    }
                }
            }
        }
    }
}

struct KafkaAcker {
    consumer: Weak<StreamConsumer<GroupContext>>,
    state: Weak<Mutex<GroupState>>,
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    topic: String,
    partition: i32,
    offset: i64,
    timeout: Duration,
}

#[async_trait]
impl Acker for KafkaAcker {
    async fn ack(&self) -> Result<(), MeshError> {
        // Commits are serialised so a lower offset never overtakes a higher one.
        let _guard = self.commit_lock.lock().await;
        let Some(state) = self.state.upgrade() else {
            return Ok(()); // the subscription is gone: the message comes back to the group (at-least-once)
        };
        let point = {
            let mut state = state
                .lock()
                .map_err(|_| MeshError::Backend("Kafka group state poisoned".into()))?;
            let Some(part) = state.partitions.get_mut(&self.partition) else {
                return Ok(()); // the partition moved to another member, which starts at the last commit
            };
            part.inflight.remove(&self.offset);
            let point = part.inflight.keys().next().copied().unwrap_or(part.next);
            if point > part.committed {
                part.committed = point;
                Some(point)
            } else {
                None
            }
        };
        let (Some(point), Some(consumer)) = (point, self.consumer.upgrade()) else {
            return Ok(());
        };
        let topic = self.topic.clone();
        let partition = self.partition;
        let _ = self.timeout;
        let committed = blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(point))
                .map_err(kafka_err)?;
            consumer.commit(&tpl, CommitMode::Sync).map_err(kafka_err)
        })
        .await;
        match committed {
            Ok(()) => Ok(()),
            Err(MeshError::Backend(m)) => {
                // A rebalance between delivery and ack (stale generation, unknown member): the partition's new
                // owner redelivers from the last commit.
                tracing::debug!(topic = %self.topic, partition, error = %m, "Kafka commit refused after a rebalance");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn nack(&self, delay: Duration) -> Result<(), MeshError> {
        let Some(state) = self.state.upgrade() else {
            return Ok(());
        };
        let mut state = state
            .lock()
            .map_err(|_| MeshError::Backend("Kafka group state poisoned".into()))?;
        if let Some(f) = state
            .partitions
            .get_mut(&self.partition)
            .and_then(|p| p.inflight.get_mut(&self.offset))
        {
            f.due = Instant::now() + delay;
        }
        Ok(())
    }
}
