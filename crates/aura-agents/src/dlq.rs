//! The dead-letter queue: one `<topic>.dlq` topic per topic, holding messages that failed every attempt with why,
//! where from and how often; inspect, replay (republish to the original topic; a replay marker hides the entry)
//! and purge. When a queue passes the alert threshold a metric and a warning say so.

use std::collections::BTreeSet;
use std::sync::Arc;

use aura_core::Timestamp;
use aura_mesh::{Mesh, MeshError, Message, Outgoing, Receipt, StartAt, Topic};

use crate::AgentsError;

/// Gauge: entries waiting in a dead-letter queue, by topic.
pub const DLQ_SIZE: &str = "aura_mesh_dlq_messages";
/// Counter: messages dead-lettered, by topic.
pub const DEAD_LETTERED: &str = "aura_mesh_dead_lettered_total";
/// Counter: times a dead-letter queue passed its alert threshold, by topic.
pub const DLQ_ALERTS: &str = "aura_mesh_dlq_alerts_total";

const H_TOPIC: &str = "aura-dlq-topic";
const H_OFFSET: &str = "aura-dlq-offset";
const H_REASON: &str = "aura-dlq-reason";
const H_ATTEMPTS: &str = "aura-dlq-attempts";
const H_FAILED_AT: &str = "aura-dlq-failed-at";
const H_REPLAYED: &str = "aura-dlq-replayed";
const MAX_SCAN: usize = 100_000;

/// A dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Offset in the dead-letter topic (its id for show/replay).
    pub offset: u64,
    /// The topic it failed on.
    pub topic: String,
    /// Its offset there.
    pub original_offset: u64,
    /// Why it was given up.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up.
    pub failed_at: Timestamp,
    /// The message as it was (headers and payload).
    pub message: Message,
}

/// A topic's dead-letter queue summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSummary {
    /// The original topic.
    pub topic: String,
    /// Entries waiting.
    pub size: u64,
}

/// The dead-letter queues of a mesh.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    mesh: Arc<dyn Mesh>,
    alert_threshold: u64,
}

impl DeadLetters {
    /// Dead-letter queues on `mesh`, alerting past `alert_threshold` entries.
    pub fn new(mesh: Arc<dyn Mesh>, alert_threshold: u64) -> DeadLetters {
        DeadLetters {
            mesh,
            alert_threshold,
        }
    }

    /// Moves `message` to its topic's dead-letter queue.
    pub async fn put(
        &self,
        message: &Message,
        attempts: u32,
        reason: &str,
        now: Timestamp,
    ) -> Result<Receipt, AgentsError> {
        let dlq = message.topic.dead_letter();
        let mut out = Outgoing {
            key: message.key.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
        };
        out.headers
            .insert(H_TOPIC.into(), message.topic.to_string());
        out.headers
            .insert(H_OFFSET.into(), message.offset.to_string());
        out.headers
            .insert(H_REASON.into(), reason.chars().take(1000).collect());
        out.headers.insert(H_ATTEMPTS.into(), attempts.to_string());
        out.headers
            .insert(H_FAILED_AT.into(), now.as_millis().to_string());
        // A new id: the backend must not de-duplicate it against the original.
        if let Some(id) = out.headers.get("aura-id").cloned() {
            out.headers.insert("aura-id".into(), format!("{id}.dlq"));
        }
        let receipt = self.mesh.publish(&dlq, out).await?;
        metrics::counter!(DEAD_LETTERED, "topic" => message.topic.to_string()).increment(1);
        tracing::warn!(topic = %message.topic, offset = message.offset, attempts, reason, "message dead-lettered");
        let size = self.size(&message.topic).await?;
        metrics::gauge!(DLQ_SIZE, "topic" => message.topic.to_string()).set(size as f64);
        if self.alert_threshold > 0 && size >= self.alert_threshold {
            metrics::counter!(DLQ_ALERTS, "topic" => message.topic.to_string()).increment(1);
            tracing::error!(topic = %message.topic, size, threshold = self.alert_threshold, "dead-letter queue past its alert threshold");
        }
        Ok(receipt)
    }

    /// Every non-empty dead-letter queue.
    pub async fn queues(&self) -> Result<Vec<QueueSummary>, AgentsError> {
        let mut out = Vec::new();
        for info in self.mesh.topics().await? {
            if !info.topic.is_dead_letter() {
                continue;
            }
            let original = info.topic.as_str().trim_end_matches(".dlq").to_owned();
            let size = self.list(&Topic::new(&original)?, MAX_SCAN).await?.len() as u64;
            out.push(QueueSummary {
                topic: original,
                size,
            });
        }
        Ok(out)
    }

    /// Entries waiting in `topic`'s queue (oldest first, at most `max`).
    pub async fn list(&self, topic: &Topic, max: usize) -> Result<Vec<DeadLetter>, AgentsError> {
        let raw = match self
            .mesh
            .read(&topic.dead_letter(), StartAt::Earliest, MAX_SCAN)
            .await
        {
            Ok(r) => r,
            Err(MeshError::NoTopic(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let replayed: BTreeSet<u64> = raw
            .iter()
            .filter_map(|m| m.headers.get(H_REPLAYED).and_then(|v| v.parse().ok()))
            .collect();
        Ok(raw
            .into_iter()
            .filter(|m| !m.headers.contains_key(H_REPLAYED) && !replayed.contains(&m.offset))
            .filter_map(entry)
            .take(max)
            .collect())
    }

    /// The number of entries waiting in `topic`'s queue.
    pub async fn size(&self, topic: &Topic) -> Result<u64, AgentsError> {
        Ok(self.list(topic, MAX_SCAN).await?.len() as u64)
    }

    /// One entry.
    pub async fn show(
        &self,
        topic: &Topic,
        offset: u64,
    ) -> Result<Option<DeadLetter>, AgentsError> {
        Ok(self
            .list(topic, MAX_SCAN)
            .await?
            .into_iter()
            .find(|d| d.offset == offset))
    }

    /// Republishes entries (all, or those at `offsets`) to the original topic and hides them from the queue;
    /// returns how many were replayed.
    pub async fn replay(&self, topic: &Topic, offsets: Option<&[u64]>) -> Result<u64, AgentsError> {
        let entries = self.list(topic, MAX_SCAN).await?;
        if let Some(want) = offsets
            && let Some(missing) = want
                .iter()
                .find(|o| !entries.iter().any(|d| d.offset == **o))
        {
            return Err(AgentsError::NotFound(format!(
                "no dead letter {missing} in `{topic}`"
            )));
        }
        let mut n = 0;
        for d in entries {
            if offsets.is_some_and(|o| !o.contains(&d.offset)) {
                continue;
            }
            let mut headers = d.message.headers.clone();
            headers.retain(|k, _| !k.starts_with("aura-dlq-"));
            if let Some(id) = headers.get("aura-id").cloned() {
                headers.insert("aura-id".into(), format!("{id}.r{}", d.offset));
            }
            self.mesh
                .publish(
                    topic,
                    Outgoing {
                        key: d.message.key.clone(),
                        headers,
                        payload: d.message.payload.clone(),
                    },
                )
                .await?;
            self.mesh
                .publish(
                    &topic.dead_letter(),
                    Outgoing::new(Vec::new()).with_header(H_REPLAYED, d.offset.to_string()),
                )
                .await?;
            n += 1;
        }
        let size = self.size(topic).await?;
        metrics::gauge!(DLQ_SIZE, "topic" => topic.to_string()).set(size as f64);
        Ok(n)
    }

    /// Deletes `topic`'s queue; returns how many entries it held.
    pub async fn purge(&self, topic: &Topic) -> Result<u64, AgentsError> {
        let size = self.size(topic).await?;
        self.mesh.delete_topic(&topic.dead_letter()).await?;
        metrics::gauge!(DLQ_SIZE, "topic" => topic.to_string()).set(0.0);
        Ok(size)
    }
}

fn entry(m: Message) -> Option<DeadLetter> {
    let h = |k: &str| m.headers.get(k).cloned();
    Some(DeadLetter {
        offset: m.offset,
        topic: h(H_TOPIC)?,
        original_offset: h(H_OFFSET)?.parse().ok()?,
        reason: h(H_REASON).unwrap_or_default(),
        attempts: h(H_ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(0),
        failed_at: Timestamp::from_millis(h(H_FAILED_AT).and_then(|a| a.parse().ok()).unwrap_or(0)),
        message: m,
    })
}
