//! The mesh's value types: topics, messages, receipts, deliveries and subscription options.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aura_core::Timestamp;
use serde::Serialize;

use crate::MeshError;

/// A validated topic name: 1-128 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Topic, MeshError> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(Topic(name.to_owned()))
        } else {
            Err(MeshError::Invalid(format!(
                "topic `{name}` must be 1-128 characters of letters, digits, `_`, `-` and `.`, starting with a letter or digit"
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dead-letter topic of this topic (`<topic>.dlq`).
    pub fn dead_letter(&self) -> Topic {
        Topic(format!("{}.dlq", self.0))
    }

    /// Whether this is a dead-letter topic.
    pub fn is_dead_letter(&self) -> bool {
        self.0.ends_with(".dlq")
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// Ordering/partitioning key.
    pub key: Option<String>,
    /// Headers (trace context, content type, …).
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// A message with `payload` and no key or headers.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Outgoing {
            key: None,
            headers: BTreeMap::new(),
            payload: payload.into(),
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// Proof that a published message is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The message's offset in its topic (or in the local spool when `spooled`).
    pub offset: u64,
    /// Whether the message waits in the local spool for the remote backend to return.
    pub spooled: bool,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its topic.
    pub topic: Topic,
    /// Its offset: grows with publish order within the topic.
    pub offset: u64,
    /// When it was stored.
    pub timestamp: Timestamp,
    /// Its key.
    pub key: Option<String>,
    /// Its headers.
    pub headers: BTreeMap<String, String>,
    /// Its body.
    pub payload: Vec<u8>,
}

/// Where reading (or a new consumer group) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The oldest retained message.
    #[default]
    Earliest,
    /// Only messages published from now on.
    Latest,
    /// The first message with an offset at or after this one.
    Offset(u64),
    /// The first message stored at or after this time.
    Time(Timestamp),
}

/// How a subscription behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Where a new group starts (ignored when the group exists).
    pub start: StartAt,
    /// How long a delivered message may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            start: StartAt::Earliest,
            ack_wait: crate::DEFAULT_ACK_WAIT,
        }
    }
}

/// A topic and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic.
    pub topic: Topic,
    /// Messages retained.
    pub messages: u64,
    /// Offset of the oldest retained message (0 when empty).
    pub first_offset: u64,
    /// Offset of the newest message (0 when empty).
    pub last_offset: u64,
    /// Consumer groups.
    pub groups: Vec<String>,
}

/// A consumer's handle on a group.
#[async_trait]
pub trait Subscription: Send {
    /// Waits up to `wait` for messages and returns at most `max` of them (new ones and due redeliveries);
    /// an empty vector when none arrived in time.
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, MeshError>;
}

/// Acknowledges or rejects one delivery, backend-specific.
#[async_trait]
pub trait Acker: Send + Sync {
    /// The message is done; it is not delivered to this group again.
    async fn ack(&self) -> Result<(), MeshError>;
    /// The message failed; redeliver it after `delay` (immediately when zero).
    async fn nack(&self, delay: Duration) -> Result<(), MeshError>;
}

/// A message delivered to a consumer group member.
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// 1 on first delivery, then one more per redelivery.
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Wraps a message with its acknowledgement handle.
    pub fn new(message: Message, attempt: u32, acker: Box<dyn Acker>) -> Self {
        Delivery {
            message,
            attempt,
            acker,
        }
    }

    /// Acknowledges the message.
    pub async fn ack(&self) -> Result<(), MeshError> {
        self.acker.ack().await
    }

    /// Rejects the message; it is redelivered after `delay`.
    pub async fn nack(&self, delay: Duration) -> Result<(), MeshError> {
        self.acker.nack(delay).await
    }
}
