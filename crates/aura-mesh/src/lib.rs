//! Aura's event mesh: one [`Mesh`] trait — durable publish, consumer groups with ack/nack and redelivery, topic
//! management, replay from an offset or a time, order per topic (hence per key) — over four backends: the embedded
//! segment log in the data dir (the default), NATS JetStream, Redis Streams and Kafka (cargo feature `kafka`; see
//! `docs/mesh.md`). [`Spooled`] wraps a remote backend so publishes spool durably to the embedded log while it is down.
//!
//! Architecture invariant: a receipt ([`Receipt`]) is returned only once the message is durable in the backend (or in
//! the local spool); nothing here knows HTTP, JSON wire shapes of the API, or governance — callers decide first.

mod embedded;
mod error;
#[cfg(feature = "kafka")]
mod kafka;
mod nats;
mod redis_streams;
mod spool;
mod types;

pub use embedded::{EmbeddedConfig, EmbeddedMesh};
pub use error::MeshError;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaConfig, KafkaMesh};
pub use nats::{NatsConfig, NatsMesh};
pub use redis_streams::{RedisConfig, RedisMesh};
pub use spool::{SpoolStatus, Spooled};
pub use types::{
    Acker, Delivery, Message, Outgoing, Receipt, StartAt, SubscribeOptions, Subscription, Topic,
    TopicInfo,
};

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

/// The event mesh. Object-safe: hold it as `Arc<dyn Mesh>`.
///
/// Every backend keeps one ordered log per topic: messages are delivered in publish order (so per key too),
/// offsets grow with publish order, and consumer groups track acknowledgements durably in the backend.
#[async_trait]
pub trait Mesh: Send + Sync + fmt::Debug {
    /// The backend's name: `embedded`, `nats`, `redis` or `kafka`.
    fn backend(&self) -> &'static str;

    /// Creates `topic` when it does not exist.
    async fn ensure_topic(&self, topic: &Topic) -> Result<(), MeshError>;

    /// Deletes `topic` with its messages and groups; `false` when it did not exist.
    async fn delete_topic(&self, topic: &Topic) -> Result<bool, MeshError>;

    /// Every topic with its counts.
    async fn topics(&self) -> Result<Vec<TopicInfo>, MeshError>;

    /// Publishes one message (creating the topic if needed); returns once it is durable.
    async fn publish(&self, topic: &Topic, message: Outgoing) -> Result<Receipt, MeshError>;

    /// Publishes several messages in order; returns once all are durable. The default publishes one by one.
    async fn publish_batch(
        &self,
        topic: &Topic,
        messages: Vec<Outgoing>,
    ) -> Result<Vec<Receipt>, MeshError> {
        let mut receipts = Vec::with_capacity(messages.len());
        for m in messages {
            receipts.push(self.publish(topic, m).await?);
        }
        Ok(receipts)
    }

    /// Joins consumer group `group` on `topic` (creating both as needed). A new group starts at `options.start`.
    async fn subscribe(
        &self,
        topic: &Topic,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError>;

    /// Reads up to `max` messages from `from`, outside any group (replay).
    async fn read(
        &self,
        topic: &Topic,
        from: StartAt,
        max: usize,
    ) -> Result<Vec<Message>, MeshError>;

    /// Messages of `topic` not yet acknowledged by `group` (consumer lag), if the group exists.
    async fn lag(&self, topic: &Topic, group: &str) -> Result<Option<u64>, MeshError>;

    /// Whether the backend answers now.
    async fn healthy(&self) -> bool;

    /// Flushes and releases resources; later calls fail with [`MeshError::Closed`].
    async fn close(&self);
}

/// Validates a consumer-group name: 1-128 characters of `[A-Za-z0-9_-]`.
pub fn validate_group(group: &str) -> Result<(), MeshError> {
    if group.is_empty()
        || group.len() > 128
        || !group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(MeshError::Invalid(format!(
            "consumer group `{group}` must be 1-128 characters of letters, digits, `_` and `-`"
        )));
    }
    Ok(())
}

/// The default time a delivered message may stay unacknowledged before it is redelivered.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
