//! The audit entry schema and its canonical byte encoding (the Merkle leaf data).

use aura_core::{ActionKind, AgentName, Timestamp, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::{self, NotCanonical};
use crate::error::AuditError;

/// Version of the entry encoding, written as the top-level `"v"` field of every entry.
pub const ENTRY_FORMAT_VERSION: u64 = 1;

/// Largest canonical entry accepted, in bytes.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// One audit event as the caller describes it. The log assigns the sequence number ([`LoggedEntry`]).
///
/// `Option` fields are left out of the encoding when `None`; every other field is always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the event happened (set by the service that records it).
    pub time: Timestamp,
    /// Who acted.
    pub actor: Actor,
    /// What was acted on.
    pub resource: Resource,
    /// What was done, e.g. `kernel.decide`, `approval.grant`, `agent.halt`.
    pub action: String,
    /// How it ended, e.g. `allowed`, `denied`, `error`.
    pub outcome: String,
    /// How risky the event is.
    pub risk: RiskLevel,
    /// Free-form structured details (a JSON object; integers only, no floats; secrets must be redacted first).
    pub details: Map<String, Value>,
    /// The agent the event concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentName>,
    /// The agent's task or session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The human principal on whose behalf the agent acts, or who acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human: Option<String>,
    /// The kind of the governed action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_kind: Option<ActionKind>,
    /// The target of the governed action (model, tool, URL, command, path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The governed action's args hash: 64 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_hash: Option<String>,
    /// The kernel's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Ids of the rules behind the verdict.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Hash of the policy bundle that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// Budget remaining before the action, in micro-dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_before_micros: Option<i64>,
    /// Budget remaining after the action, in micro-dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_after_micros: Option<i64>,
    /// The approval receipt the action ran under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// Why an agent was halted, or the cascade that triggered this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl AuditEntry {
    /// An entry with the required fields set, empty details and no governance fields.
    pub fn new(
        time: Timestamp,
        actor: Actor,
        resource: Resource,
        action: impl Into<String>,
        outcome: impl Into<String>,
        risk: RiskLevel,
    ) -> Self {
        Self {
            time,
            actor,
            resource,
            action: action.into(),
            outcome: outcome.into(),
            risk,
            details: Map::new(),
            agent: None,
            task: None,
            human: None,
            action_kind: None,
            target: None,
            args_hash: None,
            verdict: None,
            rules: Vec::new(),
            policy_hash: None,
            budget_before_micros: None,
            budget_after_micros: None,
            approval: None,
            cause: None,
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Agent, human or Aura itself.
    #[serde(rename = "type")]
    pub kind: ActorKind,
    /// The agent name, user name or component name.
    pub id: String,
    /// The client address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// The kind of actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// An AI agent.
    Agent,
    /// A person.
    Human,
    /// Aura itself (kernel, watchdog, scheduler).
    System,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The kind of resource, e.g. `model`, `tool`, `url`, `file`, `agent`, `policy`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its name or path.
    pub path: String,
}

/// Risk level of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// Routine.
    Low,
    /// Worth a look.
    Medium,
    /// Needs attention.
    High,
    /// Needs attention now.
    Critical,
}

/// An entry as stored: the caller's entry plus the sequence number the log gave it (= its Merkle leaf index).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEntry {
    /// Zero-based sequence number, equal to the leaf index in the Merkle tree.
    pub seq: u64,
    /// The entry.
    pub entry: AuditEntry,
}

/// An entry encoded canonically with a hole where its sequence number goes.
#[derive(Debug)]
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    seq_at: usize,
}

impl Encoded {
    /// The canonical bytes with `seq` filled in.
    pub(crate) fn with_seq(&self, seq: u64) -> Vec<u8> {
        let digits = seq.to_string();
        let mut out = Vec::with_capacity(self.bytes.len() + digits.len());
        out.extend_from_slice(&self.bytes[..self.seq_at]);
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(&self.bytes[self.seq_at..]);
        out
    }
}

/// Encodes `entry` canonically, leaving a hole for the sequence number. Fails on floats, a malformed args hash or
/// an entry larger than [`MAX_ENTRY_BYTES`].
pub(crate) fn encode(entry: &AuditEntry) -> Result<Encoded, AuditError> {
    if let Some(h) = &entry.args_hash
        && (h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(AuditError::Encode(format!(
            "args hash `{h}` is not 64 lowercase hex digits"
        )));
    }
    let value = serde_json::to_value(entry).map_err(|e| AuditError::Encode(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(AuditError::Encode("entry is not an object".into()));
    };
    map.insert("seq".into(), Value::Null);
    map.insert("v".into(), Value::from(ENTRY_FORMAT_VERSION));
    let mut fields: Vec<(&String, &Value)> = map.iter().collect();
    fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut bytes = Vec::with_capacity(512);
    let mut seq_at = 0;
    bytes.push(b'{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        canonical::write_string(k, &mut bytes);
        bytes.push(b':');
        if k == "seq" {
            seq_at = bytes.len();
        } else {
            canonical::write_value(v, &mut bytes)
                .map_err(|NotCanonical(m)| AuditError::Encode(m))?;
        }
    }
    bytes.push(b'}');
    if bytes.len() + 20 > MAX_ENTRY_BYTES {
        return Err(AuditError::Encode(format!(
            "entry is {} bytes, the limit is {MAX_ENTRY_BYTES}",
            bytes.len()
        )));
    }
    Ok(Encoded { bytes, seq_at })
}

/// The canonical bytes of an entry with its sequence number: exactly the Merkle leaf data.
pub fn canonical_bytes(seq: u64, entry: &AuditEntry) -> Result<Vec<u8>, AuditError> {
    Ok(encode(entry)?.with_seq(seq))
}

#[derive(Deserialize)]
struct Stored {
    seq: u64,
    v: u64,
    #[serde(flatten)]
    entry: AuditEntry,
}

/// Decodes stored canonical bytes.
pub(crate) fn decode(expected_seq: u64, payload: &[u8]) -> Result<LoggedEntry, AuditError> {
    let err = |reason: String| AuditError::Decode {
        seq: expected_seq,
        reason,
    };
    let stored: Stored = serde_json::from_slice(payload).map_err(|e| err(e.to_string()))?;
    if stored.v != ENTRY_FORMAT_VERSION {
        return Err(err(format!("unknown entry format version {}", stored.v)));
    }
    if stored.seq != expected_seq {
        return Err(err(format!("entry says it is number {}", stored.seq)));
    }
    Ok(LoggedEntry {
        seq: stored.seq,
        entry: stored.entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEntry {
        let mut e = AuditEntry::new(
            Timestamp::from_millis(1_795_292_371_042),
            Actor {
                kind: ActorKind::Agent,
                id: "planner".into(),
                ip: Some("10.0.0.7".into()),
            },
            Resource {
                kind: "model".into(),
                path: "gpt-4o".into(),
            },
            "kernel.decide",
            "allowed",
            RiskLevel::Low,
        );
        e.agent = Some(AgentName::new("planner").unwrap());
        e.verdict = Some(Verdict::Allow);
        e.rules = vec!["llm-default".into()];
        e.budget_before_micros = Some(5_000_000);
        e.details.insert("tokens".into(), Value::from(1200));
        e
    }

    #[test]
    fn canonical_bytes_are_sorted_compact_and_carry_the_sequence() {
        let bytes = canonical_bytes(42, &sample()).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            concat!(
                r#"{"action":"kernel.decide","actor":{"id":"planner","ip":"10.0.0.7","type":"agent"},"#,
                r#""agent":"planner","budget_before_micros":5000000,"details":{"tokens":1200},"#,
                r#""outcome":"allowed","resource":{"path":"gpt-4o","type":"model"},"risk":"low","#,
                r#""rules":["llm-default"],"seq":42,"time":1795292371042,"v":1,"verdict":"allow"}"#
            )
        );
    }

    #[test]
    fn decoding_round_trips_and_checks_the_sequence() {
        let e = sample();
        let bytes = canonical_bytes(7, &e).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), LoggedEntry { seq: 7, entry: e });
        assert!(decode(8, &bytes).is_err());
    }

    #[test]
    fn floats_and_bad_hashes_are_refused() {
        let mut e = sample();
        e.details.insert("ratio".into(), Value::from(0.5));
        assert!(matches!(encode(&e), Err(AuditError::Encode(_))));
        let mut e = sample();
        e.args_hash = Some("ABC".into());
        assert!(matches!(encode(&e), Err(AuditError::Encode(_))));
    }
}
