//! The agent communication protocol's envelope (seed 004): id, timestamp, source, target (an agent or `*`), type,
//! priority 1–10, payload, plus W3C trace context, an idempotency key and request/reply correlation. The JSON schema
//! is published in `docs/protocol.md`; [`Envelope::validate`] enforces it.

use std::collections::BTreeMap;

use aura_core::{AgentName, Timestamp};
use aura_mesh::{Message, Outgoing};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AgentsError;

/// The protocol version carried in every envelope.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// Work for the target.
    Task,
    /// The outcome of a task or the answer to a query.
    Result,
    /// Ownership of a task moves to the target (summary and artifact references, not the whole history).
    Handoff,
    /// A question to a peer; the answer comes back as a `result` with the same `correlation_id`.
    Query,
    /// I am alive.
    Heartbeat,
    /// Something learned, for the shared memory.
    Learn,
}

impl MessageType {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Task => "task",
            MessageType::Result => "result",
            MessageType::Handoff => "handoff",
            MessageType::Query => "query",
            MessageType::Heartbeat => "heartbeat",
            MessageType::Learn => "learn",
        }
    }
}

/// W3C trace context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceContext {
    /// `traceparent` header value.
    pub traceparent: String,
    /// `tracestate` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Protocol version (1).
    #[serde(default = "version")]
    pub version: u32,
    /// Unique id (UUID v7).
    pub id: String,
    /// When it was created (RFC 3339 on the wire).
    #[serde(with = "rfc3339")]
    pub timestamp: Timestamp,
    /// The sending agent.
    pub source: String,
    /// The receiving agent, or `*` for everyone.
    pub target: String,
    /// What the message is for.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// 1 (lowest) to 10 (highest).
    pub priority: u8,
    /// The content.
    #[serde(default)]
    pub payload: Value,
    /// Trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// Receivers process a message with a key they have seen once only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// For replies: the id of the message answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Where replies go (a topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The task this message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

fn version() -> u32 {
    PROTOCOL_VERSION
}

mod rfc3339 {
    use aura_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| D::Error::custom(format!("invalid timestamp `{s}`")))
    }
}

/// Largest accepted payload, serialised.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

impl Envelope {
    /// A new envelope with a fresh id, priority 5.
    pub fn new(
        now: Timestamp,
        source: &AgentName,
        target: &str,
        kind: MessageType,
        payload: Value,
    ) -> Envelope {
        Envelope {
            version: PROTOCOL_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            timestamp: now,
            source: source.to_string(),
            target: target.to_owned(),
            kind,
            priority: 5,
            payload,
            trace: None,
            idempotency_key: None,
            correlation_id: None,
            reply_to: None,
            task_id: None,
        }
    }

    /// Checks the rules the JSON schema states.
    pub fn validate(&self) -> Result<(), AgentsError> {
        let bad = |m: String| Err(AgentsError::Invalid(m));
        if self.version != PROTOCOL_VERSION {
            return bad(format!("unsupported protocol version `{}`", self.version));
        }
        if self.id.is_empty() || self.id.len() > 128 {
            return bad("`id` must be 1-128 characters".into());
        }
        if AgentName::new(self.source.as_str()).is_err() {
            return bad(format!("`source` `{}` is not an agent name", self.source));
        }
        if self.target != "*" && AgentName::new(self.target.as_str()).is_err() {
            return bad(format!(
                "`target` `{}` must be an agent name or `*`",
                self.target
            ));
        }
        if !(1..=10).contains(&self.priority) {
            return bad(format!(
                "`priority` {} must be between 1 and 10",
                self.priority
            ));
        }
        if let Some(k) = &self.idempotency_key
            && (k.is_empty() || k.len() > 256)
        {
            return bad("`idempotency_key` must be 1-256 characters".into());
        }
        if let Some(t) = &self.trace
            && !valid_traceparent(&t.traceparent)
        {
            return bad(format!(
                "`trace.traceparent` `{}` is not a W3C traceparent",
                t.traceparent
            ));
        }
        let size = serde_json::to_vec(&self.payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD_BYTES {
            return bad(format!(
                "`payload` is {size} bytes, more than {MAX_PAYLOAD_BYTES}"
            ));
        }
        Ok(())
    }

    /// Parses and validates JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, AgentsError> {
        let e: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| AgentsError::Invalid(format!("not a protocol envelope: {e}")))?;
        e.validate()?;
        Ok(e)
    }

    /// The mesh message carrying this envelope: JSON body, keyed by the task (else the target) so one task's
    /// messages stay in order, with `aura-id`, type, priority and trace headers for routing without parsing.
    pub fn to_outgoing(&self) -> Result<Outgoing, AgentsError> {
        let payload = serde_json::to_vec(self).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        let mut headers = BTreeMap::new();
        headers.insert("aura-id".to_owned(), self.id.clone());
        headers.insert("aura-type".to_owned(), self.kind.as_str().to_owned());
        headers.insert("aura-priority".to_owned(), self.priority.to_string());
        headers.insert("content-type".to_owned(), "application/json".to_owned());
        if let Some(t) = &self.trace {
            headers.insert("traceparent".to_owned(), t.traceparent.clone());
            if let Some(s) = &t.tracestate {
                headers.insert("tracestate".to_owned(), s.clone());
            }
        }
        Ok(Outgoing {
            key: Some(self.task_id.clone().unwrap_or_else(|| self.target.clone())),
            headers,
            payload,
        })
    }

    /// The envelope a mesh message carries.
    pub fn from_message(m: &Message) -> Result<Envelope, AgentsError> {
        Envelope::from_json(&m.payload)
    }

    /// A reply to this envelope from `source`.
    pub fn reply(&self, now: Timestamp, source: &AgentName, payload: Value) -> Envelope {
        let mut r = Envelope::new(now, source, &self.source, MessageType::Result, payload);
        r.correlation_id = Some(self.id.clone());
        r.task_id = self.task_id.clone();
        r.trace = self.trace.clone();
        r.priority = self.priority;
        r
    }
}

fn valid_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 4
        && parts[0].len() == 2
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts.iter().all(|p| {
            p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
        && parts[1].chars().any(|c| c != '0')
        && parts[2].chars().any(|c| c != '0')
}

/// The inbox topic of an agent (`agent.<name>`).
pub fn inbox(agent: &str) -> String {
    format!("agent.{agent}")
}

/// The topic every agent hears (`agents.broadcast`).
pub const BROADCAST_TOPIC: &str = "agents.broadcast";

/// The topic heartbeats go to.
pub const HEARTBEAT_TOPIC: &str = "agents.heartbeat";
