//! Fallback spool: wraps a remote backend so that, while it is unreachable, publishes are appended durably to a
//! local embedded log and acknowledged as `spooled`; an owned forwarder task sends them on, in order, when the
//! backend returns. While a topic has spooled messages, new publishes to it join the spool, so order is kept.
//! Every message gets an `aura-id` header when it has none, so a resend after an ambiguous failure can be
//! de-duplicated by the backend (NATS uses it as `Nats-Msg-Id`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{
    EmbeddedMesh, Mesh, MeshError, Message, Outgoing, Receipt, StartAt, SubscribeOptions,
    Subscription, Topic, TopicInfo,
};

const FORWARD_GROUP: &str = "forward";
const FORWARD_BATCH: usize = 512;

/// Spooled messages, by counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStatus {
    /// Messages waiting in the spool now.
    pub pending: u64,
    /// Messages spooled since start.
    pub spooled: u64,
    /// Messages forwarded since start.
    pub forwarded: u64,
}

/// A remote mesh with a durable local spool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spooled {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    primary: Arc<dyn Mesh>,
    spool: EmbeddedMesh,
    gate: RwLock<()>,
    publish_timeout: Duration,
    spooled: AtomicU64,
    forwarded: AtomicU64,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// Metric: messages written to the spool because the backend was down.
pub const SPOOLED: &str = "aura_mesh_spooled_total";
/// Metric: spooled messages forwarded to the backend.
pub const FORWARDED: &str = "aura_mesh_spool_forwarded_total";

impl Spooled {
    /// Wraps `primary`, spooling into `spool`; starts the forwarder (checking every `retry` while messages wait).
    pub fn new(
        primary: Arc<dyn Mesh>,
        spool: EmbeddedMesh,
        publish_timeout: Duration,
        retry: Duration,
    ) -> Spooled {
        let inner = Arc::new(Inner {
            primary,
            spool,
            gate: RwLock::new(()),
            publish_timeout,
            spooled: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let weak = Arc::downgrade(&inner);
        let cancel = inner.cancel.clone();
        inner.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(retry) => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = inner.forward().await
                    && !e.is_unavailable()
                {
                    tracing::warn!(error = %e, "mesh spool: forwarding failed");
                }
            }
        });
        inner.tasks.close();
        Spooled { inner }
    }

    /// Counts of the spool.
    pub async fn status(&self) -> Result<SpoolStatus, MeshError> {
        Ok(SpoolStatus {
            pending: self.inner.pending_total().await?,
            spooled: self.inner.spooled.load(Ordering::Relaxed),
            forwarded: self.inner.forwarded.load(Ordering::Relaxed),
        })
    }

    /// Forwards what the spool holds now (the forwarder does this on its own; tests and shutdown call it).
    pub async fn flush(&self) -> Result<u64, MeshError> {
        self.inner.forward().await
    }
}

impl Inner {
    async fn pending(&self, topic: &Topic) -> Result<u64, MeshError> {
        let last = self.spool.last_offset(topic);
        if last == 0 {
            return Ok(0);
        }
        let floor = self.spool.group_floor(topic, FORWARD_GROUP)?;
        Ok((last + 1).saturating_sub(floor))
    }

    async fn pending_total(&self) -> Result<u64, MeshError> {
        let mut n = 0;
        for t in self.spool.topics().await? {
            n += self.pending(&t.topic).await?;
        }
        Ok(n)
    }

    async fn forward(&self) -> Result<u64, MeshError> {
        let topics: BTreeSet<Topic> = self
            .spool
            .topics()
            .await?
            .into_iter()
            .filter(|t| t.last_offset > 0)
            .map(|t| t.topic)
            .collect();
        let mut sent = 0;
        for topic in topics {
            loop {
                let _gate = self.gate.write().await;
                let floor = self.spool.group_floor(&topic, FORWARD_GROUP)?;
                let batch = self
                    .spool
                    .read(&topic, StartAt::Offset(floor), FORWARD_BATCH)
                    .await?;
                if batch.is_empty() {
                    break;
                }
                let offsets: Vec<u64> = batch.iter().map(|m| m.offset).collect();
                let out: Vec<Outgoing> = batch
                    .into_iter()
                    .map(|m| Outgoing {
                        key: m.key,
                        headers: m.headers,
                        payload: m.payload,
                    })
                    .collect();
                let n = out.len() as u64;
                match tokio::time::timeout(
                    self.publish_timeout,
                    self.primary.publish_batch(&topic, out),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(MeshError::Unavailable("publish timed out".into())),
                }
                for o in offsets {
                    self.spool.ack_offset(&topic, FORWARD_GROUP, o)?;
                }
                sent += n;
                self.forwarded.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(FORWARDED, "topic" => topic.to_string()).increment(n);
                tracing::info!(topic = %topic, messages = n, "mesh spool: forwarded to the backend");
            }
        }
        Ok(sent)
    }

    async fn to_spool(
        &self,
        topic: &Topic,
        messages: Vec<Outgoing>,
    ) -> Result<Vec<Receipt>, MeshError> {
        let n = messages.len() as u64;
        let receipts = self.spool.publish_batch(topic, messages).await?;
        self.spooled.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(SPOOLED, "topic" => topic.to_string()).increment(n);
        Ok(receipts
            .into_iter()
            .map(|r| Receipt {
                offset: r.offset,
                spooled: true,
            })
            .collect())
    }
}

fn with_id(mut m: Outgoing) -> Outgoing {
    m.headers
        .entry("aura-id".to_owned())
        .or_insert_with(|| format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)));
    m
}

#[async_trait]
impl Mesh for Spooled {
    fn backend(&self) -> &'static str {
        self.inner.primary.backend()
    }

    async fn ensure_topic(&self, topic: &Topic) -> Result<(), MeshError> {
        self.inner.primary.ensure_topic(topic).await
    }

    async fn delete_topic(&self, topic: &Topic) -> Result<bool, MeshError> {
        self.inner.primary.delete_topic(topic).await
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, MeshError> {
        self.inner.primary.topics().await
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
        let messages: Vec<Outgoing> = messages.into_iter().map(with_id).collect();
        let _gate = self.inner.gate.read().await;
        if self.inner.pending(topic).await? > 0 {
            return self.inner.to_spool(topic, messages).await;
        }
        let attempt = tokio::time::timeout(
            self.inner.publish_timeout,
            self.inner.primary.publish_batch(topic, messages.clone()),
        )
        .await;
        match attempt {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.is_unavailable() => {
                tracing::warn!(topic = %topic, error = %e, "mesh backend unavailable: spooling locally");
                self.inner.to_spool(topic, messages).await
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                tracing::warn!(topic = %topic, "mesh publish timed out: spooling locally");
                self.inner.to_spool(topic, messages).await
            }
        }
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError> {
        self.inner.primary.subscribe(topic, group, options).await
    }

    async fn read(
        &self,
        topic: &Topic,
        from: StartAt,
        max: usize,
    ) -> Result<Vec<Message>, MeshError> {
        self.inner.primary.read(topic, from, max).await
    }

    async fn lag(&self, topic: &Topic, group: &str) -> Result<Option<u64>, MeshError> {
        self.inner.primary.lag(topic, group).await
    }

    async fn healthy(&self) -> bool {
        self.inner.primary.healthy().await
    }

    async fn close(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.wait().await;
        if let Err(e) = self.inner.forward().await {
            tracing::warn!(error = %e, "mesh spool: messages remain spooled at shutdown; they are forwarded at the next start");
        }
        self.inner.primary.close().await;
        self.inner.spool.close().await;
    }
}
