//! The audit entry schema and its canonical byte encoding (the Merkle leaf data).

use aura_core::{ActionKind, AgentName, Timestamp, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::{self, NotCanonical};
use crate::error::AuditError;
use crate::merkle::{Hash, LeafHasher};
use crate::record::{self, RECORD_HEADER_LEN};

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
    /// The canonical bytes without the sequence digits.
    bytes: Vec<u8>,
    /// Where the sequence digits go.
    seq_at: usize,
}

impl Encoded {
    /// The canonical bytes with `seq` filled in.
    pub(crate) fn with_seq(&self, seq: u64) -> Vec<u8> {
        let mut digits = canonical::Digits::new();
        let digits = digits.u64(seq);
        let (head, tail) = self.bytes.split_at(self.seq_at);
        let mut out = Vec::with_capacity(head.len() + digits.len() + tail.len());
        out.extend_from_slice(head);
        out.extend_from_slice(digits);
        out.extend_from_slice(tail);
        out
    }

    /// The leaf hash state over everything before the sequence digits (most of the entry), so that only the short
    /// rest is hashed once the number is known ([`Encoded::frame_into`]).
    pub(crate) fn prehash(&self) -> LeafHasher {
        LeafHasher::with_prefix(&self.bytes[..self.seq_at])
    }

    /// Appends the framed record of this entry as entry `seq` (`docs/audit-format.md`) to `out` and returns the
    /// entry's Merkle leaf hash. `pre` must be [`Encoded::prehash`] of `self`.
    pub(crate) fn frame_into(&self, seq: u64, pre: &LeafHasher, out: &mut Vec<u8>) -> Hash {
        let mut digits = canonical::Digits::new();
        let digits = digits.u64(seq);
        let (head, tail) = self.bytes.split_at(self.seq_at);
        let leaf = pre.finish([digits, tail]);
        // INVARIANT: the encoder caps entries at MAX_ENTRY_BYTES (1 MiB), so the length fits in u32.
        let len = u32::try_from(self.bytes.len() + digits.len()).unwrap_or(u32::MAX);
        let mut header = [0u8; RECORD_HEADER_LEN];
        record::write_header(&mut header, len, seq, &leaf);
        out.reserve(RECORD_HEADER_LEN + len as usize);
        out.extend_from_slice(&header);
        out.extend_from_slice(head);
        out.extend_from_slice(digits);
        out.extend_from_slice(tail);
        leaf
    }
}

/// Encodes `entry` canonically, leaving a hole for the sequence number. Fails on floats, a malformed args hash or
/// an entry larger than [`MAX_ENTRY_BYTES`].
///
/// The fields are written directly in their canonical (byte-sorted) key order; only `details` goes through the
/// generic canonical JSON writer. A differential test checks this against the serde encoding.
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
    let mut b = Vec::with_capacity(size_hint(entry));
    let e = entry;
    // Keys in byte order: action, action_kind, actor, agent, approval, args_hash, budget_after_micros,
    // budget_before_micros, cause, details, human, outcome, policy_hash, resource, risk, rules, seq, target, task,
    // time, v, verdict.
    b.extend_from_slice(b"{\"action\":");
    canonical::write_string(&e.action, &mut b);
    if let Some(k) = e.action_kind {
        b.extend_from_slice(b",\"action_kind\":");
        canonical::write_string(k.as_str(), &mut b);
    }
    b.extend_from_slice(b",\"actor\":{\"id\":");
    canonical::write_string(&e.actor.id, &mut b);
    if let Some(ip) = &e.actor.ip {
        b.extend_from_slice(b",\"ip\":");
        canonical::write_string(ip, &mut b);
    }
    b.extend_from_slice(b",\"type\":");
    canonical::write_string(actor_kind(e.actor.kind), &mut b);
    b.push(b'}');
    opt_str(&mut b, "agent", e.agent.as_ref().map(|a| a.as_str()));
    opt_str(&mut b, "approval", e.approval.as_deref());
    opt_str(&mut b, "args_hash", e.args_hash.as_deref());
    opt_int(&mut b, "budget_after_micros", e.budget_after_micros);
    opt_int(&mut b, "budget_before_micros", e.budget_before_micros);
    opt_str(&mut b, "cause", e.cause.as_deref());
    b.extend_from_slice(b",\"details\":");
    canonical::write_object(&e.details, &mut b).map_err(|NotCanonical(m)| AuditError::Encode(m))?;
    opt_str(&mut b, "human", e.human.as_deref());
    b.extend_from_slice(b",\"outcome\":");
    canonical::write_string(&e.outcome, &mut b);
    opt_str(&mut b, "policy_hash", e.policy_hash.as_deref());
    b.extend_from_slice(b",\"resource\":{\"path\":");
    canonical::write_string(&e.resource.path, &mut b);
    b.extend_from_slice(b",\"type\":");
    canonical::write_string(&e.resource.kind, &mut b);
    b.extend_from_slice(b"},\"risk\":");
    canonical::write_string(risk_level(e.risk), &mut b);
    b.extend_from_slice(b",\"rules\":[");
    for (i, r) in e.rules.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        canonical::write_string(r, &mut b);
    }
    b.extend_from_slice(b"],\"seq\":");
    let seq_at = b.len();
    opt_str(&mut b, "target", e.target.as_deref());
    opt_str(&mut b, "task", e.task.as_deref());
    b.extend_from_slice(b",\"time\":");
    canonical::write_i64(e.time.as_millis(), &mut b);
    b.extend_from_slice(b",\"v\":");
    canonical::write_u64(ENTRY_FORMAT_VERSION, &mut b);
    opt_str(&mut b, "verdict", e.verdict.map(|v| v.as_str()));
    b.push(b'}');
    if b.len() + 20 > MAX_ENTRY_BYTES {
        return Err(AuditError::Encode(format!(
            "entry is {} bytes, the limit is {MAX_ENTRY_BYTES}",
            b.len()
        )));
    }
    Ok(Encoded { bytes: b, seq_at })
}

fn opt_str(b: &mut Vec<u8>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        b.extend_from_slice(b",\"");
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(b"\":");
        canonical::write_string(v, b);
    }
}

fn opt_int(b: &mut Vec<u8>, key: &str, value: Option<i64>) {
    if let Some(v) = value {
        b.extend_from_slice(b",\"");
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(b"\":");
        canonical::write_i64(v, b);
    }
}

fn actor_kind(k: ActorKind) -> &'static str {
    match k {
        ActorKind::Agent => "agent",
        ActorKind::Human => "human",
        ActorKind::System => "system",
    }
}

fn risk_level(r: RiskLevel) -> &'static str {
    match r {
        RiskLevel::Low => "low",
        RiskLevel::Medium => "medium",
        RiskLevel::High => "high",
        RiskLevel::Critical => "critical",
    }
}

/// A capacity guess for the encoding: the strings plus the fixed keys and punctuation.
fn size_hint(e: &AuditEntry) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 16);
    320 + e.action.len()
        + e.outcome.len()
        + e.actor.id.len()
        + opt(&e.actor.ip)
        + e.resource.kind.len()
        + e.resource.path.len()
        + e.agent.as_ref().map_or(0, |a| a.as_str().len() + 10)
        + opt(&e.approval)
        + opt(&e.args_hash)
        + opt(&e.cause)
        + opt(&e.human)
        + opt(&e.policy_hash)
        + opt(&e.target)
        + opt(&e.task)
        + e.rules.iter().map(|r| r.len() + 3).sum::<usize>()
        + e.details.len() * 24
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
    use proptest::prelude::*;

    /// The original encoder, through `serde_json::Value`: the oracle for the direct one.
    fn encode_via_serde(entry: &AuditEntry, seq: u64) -> Vec<u8> {
        let Value::Object(mut map) = serde_json::to_value(entry).unwrap() else {
            panic!("not an object");
        };
        map.insert("seq".into(), Value::from(seq));
        map.insert("v".into(), Value::from(ENTRY_FORMAT_VERSION));
        let mut out = Vec::new();
        canonical::write_value(&Value::Object(map), &mut out).unwrap();
        out
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9._-]{0,12}",
            any::<String>(),
            "[\\x00-\\x1f\"\\\\/é€\u{2028}😀a]{0,8}",
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any_string().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(any_string(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn any_entry()(
            time in any::<i64>(),
            kind in prop_oneof![Just(ActorKind::Agent), Just(ActorKind::Human), Just(ActorKind::System)],
            strings in prop::collection::vec(any_string(), 6),
            opts in prop::collection::vec(prop::option::of(any_string()), 8),
            agent in prop::option::of("[a-z][a-z0-9-]{0,10}"),
            action_kind in prop::option::of(prop::sample::select(ActionKind::ALL.to_vec())),
            args_hash in prop::option::of("[0-9a-f]{64}"),
            verdict in prop::option::of(prop_oneof![
                Just(Verdict::Allow), Just(Verdict::Escalate), Just(Verdict::Deny), Just(Verdict::Halt)
            ]),
            risk in prop_oneof![
                Just(RiskLevel::Low), Just(RiskLevel::Medium), Just(RiskLevel::High), Just(RiskLevel::Critical)
            ],
            rules in prop::collection::vec(any_string(), 0..3),
            budgets in (prop::option::of(any::<i64>()), prop::option::of(any::<i64>())),
            details in prop::collection::btree_map(any_string(), any_value(), 0..4),
        ) -> AuditEntry {
            let mut e = AuditEntry::new(
                Timestamp::from_millis(time),
                Actor { kind, id: strings[0].clone(), ip: opts[0].clone() },
                Resource { kind: strings[1].clone(), path: strings[2].clone() },
                strings[3].clone(),
                strings[4].clone(),
                risk,
            );
            e.agent = agent.and_then(|a| AgentName::new(a).ok());
            e.task = opts[1].clone();
            e.human = opts[2].clone();
            e.action_kind = action_kind;
            e.target = opts[3].clone();
            e.args_hash = args_hash;
            e.verdict = verdict;
            e.rules = rules;
            e.policy_hash = opts[4].clone();
            (e.budget_before_micros, e.budget_after_micros) = budgets;
            e.approval = opts[5].clone();
            e.cause = opts[6].clone();
            e.details = details.into_iter().collect();
            e
        }
    }

    proptest! {
        #[test]
        fn the_direct_encoder_matches_the_serde_encoding(e in any_entry(), seq in any::<u64>()) {
            let want = encode_via_serde(&e, seq);
            prop_assert_eq!(&canonical_bytes(seq, &e).unwrap(), &want);
            let encoded = encode(&e).unwrap();
            let mut frame = b"previous".to_vec();
            let leaf = encoded.frame_into(seq, &encoded.prehash(), &mut frame);
            prop_assert_eq!(leaf, crate::merkle::leaf_hash(&want));
            let mut framed = b"previous".to_vec();
            record::push_frame(&mut framed, seq, &leaf, &want);
            prop_assert_eq!(frame, framed);
        }
    }

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
