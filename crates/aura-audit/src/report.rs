//! Compliance reports over the audit log (EU AI Act Art. 12, 14, 19/26, 73; ISO/IEC 42001 A.6.2.8, 9.1, 10.2),
//! and the read-only segment reader they are built from.
//!
//! The report builder ([`ComplianceReport::build`]) is pure: it takes entries, the outcome of [`crate::verify`] and
//! a time range, and returns plain data; [`render_markdown`] and [`render_html`] turn that into text. The HTML is
//! self-contained (inline CSS, inline SVG charts, no scripts, no external assets).
//!
//! **Why a read-only reader.** [`crate::AuditLog::open`] takes the writer lock (`LOCK`) and repairs torn tails, so
//! it cannot run beside a server. Paging through the HTTP API would work only while a server runs and would need a
//! token. [`read_entries`] instead reads the segment files directly, takes no lock and changes nothing, so the
//! same command works with or without a running server. Segments only ever grow by appending whole records, so
//! what it sees is always a prefix of the log: a torn or incomplete record at the very end of the last segment is
//! an append still in progress and is treated as "not yet written"; damage anywhere else is reported as an error.
//!
//! Heuristics, documented in `docs/audit-format.md` ("Compliance report"): a decision is any entry with a verdict;
//! a rule is a *budget* rule when one of its `details.reasons` messages starts with ``budget ` `` or its id
//! contains `budget`; a *hard stop* is a budget reason mentioning `hard stop`; six months are counted as 183 days.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use aura_core::{Timestamp, Verdict};
use serde_json::Value;

use crate::entry::{self, ActorKind, AuditEntry, LoggedEntry, RiskLevel};
use crate::error::AuditError;
use crate::record::{self, End, SEGMENT_MAGIC};
use crate::verify::VerifyReport;

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;
/// Six months, counted generously as 183 days (the longest six-month span).
const SIX_MONTHS_DAYS: i64 = 183;
/// Art. 73(2): report a serious incident within 15 days of becoming aware of it.
const ART73_DEFAULT_DAYS: i64 = 15;
/// Art. 73(3): a widespread infringement or serious disruption of critical infrastructure: 2 days.
const ART73_WIDESPREAD_DAYS: i64 = 2;
/// Rows of the "top denial rules" chart.
const TOP_RULES: usize = 10;

/// Reads every entry of the log in `dir` without taking the writer lock (see the module docs). Entries come in
/// sequence order, one segment in memory at a time, starting at the oldest segment still on disk (older ones may
/// have been retired by retention); after the first error the iterator ends.
pub fn read_entries(dir: &Path) -> Result<ReadOnlyEntries, AuditError> {
    let seg_dir = dir.join("segments");
    let mut segments = Vec::new();
    for ent in fs::read_dir(&seg_dir).map_err(|e| AuditError::io(&seg_dir, e))? {
        let ent = ent.map_err(|e| AuditError::io(&seg_dir, e))?;
        let name = ent.file_name();
        if let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            segments.push((first, ent.path()));
        }
    }
    segments.sort();
    // Entries before the first segment were retired by retention (exported, then deleted locally).
    let next_seq = segments.first().map_or(0, |s| s.0);
    Ok(ReadOnlyEntries {
        segments: segments.into_iter().rev().collect(),
        next_seq,
        buffered: Vec::new(),
        pending_error: None,
        done: false,
    })
}

/// Iterator over the entries of a log read without its lock, from [`read_entries`].
#[derive(Debug)]
pub struct ReadOnlyEntries {
    /// Segments still to read, last first (so `pop` yields them in order).
    segments: Vec<(u64, PathBuf)>,
    /// The sequence number the next segment must start at.
    next_seq: u64,
    /// Decoded entries of the current segment, last first.
    buffered: Vec<LoggedEntry>,
    /// Damage found in the current segment, yielded after its valid entries.
    pending_error: Option<AuditError>,
    /// Set after an error or a torn tail.
    done: bool,
}

impl Iterator for ReadOnlyEntries {
    type Item = Result<LoggedEntry, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.buffered.pop() {
                return Some(Ok(e));
            }
            if let Some(err) = self.pending_error.take() {
                self.done = true;
                return Some(Err(err));
            }
            if self.done {
                return None;
            }
            let (first, path) = self.segments.pop()?;
            let is_last = self.segments.is_empty();
            if let Err(err) = self.read_segment(first, &path, is_last) {
                self.done = true;
                return Some(Err(err));
            }
        }
    }
}

impl ReadOnlyEntries {
    /// Decodes one segment into `buffered`; damage goes to `pending_error` after the valid entries.
    fn read_segment(&mut self, first: u64, path: &Path, is_last: bool) -> Result<(), AuditError> {
        if first != self.next_seq {
            return Err(AuditError::Tampered {
                seq: self.next_seq.min(first),
                reason: format!(
                    "segment `{}` starts at entry {first}, expected {}",
                    path.display(),
                    self.next_seq
                ),
            });
        }
        let buf = fs::read(path).map_err(|e| AuditError::io(path, e))?;
        if record::parse_file_header(&buf, SEGMENT_MAGIC) != Some(first) {
            if is_last && buf.len() < record::FILE_HEADER_LEN {
                // A segment still being created: nothing in it yet.
                self.done = true;
                return Ok(());
            }
            return Err(AuditError::Tampered {
                seq: first,
                reason: format!("segment `{}` has a bad header", path.display()),
            });
        }
        let mut decoded = Vec::new();
        let walk = record::walk(&buf, first, |r| {
            decoded.push(entry::decode(r.seq, r.payload)?);
            Ok::<(), AuditError>(())
        })?;
        self.next_seq = first + walk.count;
        match walk.end {
            End::Clean => {}
            // An append in progress: not yet written.
            End::Torn { .. } if is_last => self.done = true,
            End::Torn { reason, .. } | End::Corrupt { reason, .. } => {
                self.pending_error = Some(AuditError::Tampered {
                    seq: self.next_seq,
                    reason,
                });
            }
        }
        decoded.reverse();
        self.buffered = decoded;
        Ok(())
    }
}

/// The time range a report covers, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRange {
    /// First instant covered.
    pub since: Timestamp,
    /// Last instant covered; retention is judged as of this time.
    pub until: Timestamp,
}

impl ReportRange {
    fn contains(&self, t: Timestamp) -> bool {
        self.since <= t && t <= self.until
    }
}

/// A compliance report: what the audit log says about a time range, grouped by the obligations it evidences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceReport {
    /// The covered range.
    pub range: ReportRange,
    /// Entries in the range.
    pub entries: u64,
    /// Entries in the range per `action`, sorted by action (Art. 12(1), ISO 42001 A.6.2.8).
    pub by_action: Vec<(String, u64)>,
    /// Decisions in the range per verdict (ISO 42001 9.1).
    pub verdicts: VerdictCounts,
    /// Entries per UTC day (Art. 12(2)(b) post-market monitoring).
    pub days: Vec<DayCounts>,
    /// Activity per agent (Art. 12(2)(c), Art. 26(5) deployer monitoring).
    pub agents: Vec<AgentActivity>,
    /// Situations that may present a risk (Art. 12(2)(a)).
    pub risk_situations: Vec<RiskSituation>,
    /// Human and kernel halts, pauses and resumes (Art. 14(4)(e)).
    pub halts: Vec<HaltEvent>,
    /// Decisions refused because their agent was already halted or paused (not listed one by one).
    pub refused_while_halted: u64,
    /// Approvals granted or denied by a person (Art. 14).
    pub approvals: Vec<ApprovalEvent>,
    /// Decisions denied or halted by a budget rule.
    pub budget_breaches: Vec<BudgetBreach>,
    /// Rule ids behind denied or halted decisions, most frequent first (ISO 42001 10.2).
    pub denials_by_rule: Vec<(String, u64)>,
    /// Policy reloads with the bundle hashes before and after (ISO 42001 10.2).
    pub policy_changes: Vec<PolicyChange>,
    /// API token creations and revocations (access events).
    pub token_changes: Vec<TokenChange>,
    /// Events that may be serious incidents, with the Art. 73 reporting deadline.
    pub incidents: Vec<IncidentCandidate>,
    /// Retention of the log as of the end of the range (Art. 19, 26(6)).
    pub retention: Retention,
    /// Whether the whole log verified.
    pub verification: Verification,
    /// Why reading the log stopped early, if it did: the report then covers only what was read.
    pub read_error: Option<String>,
}

/// Decision counts per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerdictCounts {
    /// `allow`.
    pub allow: u64,
    /// `escalate`.
    pub escalate: u64,
    /// `deny`.
    pub deny: u64,
    /// `halt`.
    pub halt: u64,
}

impl VerdictCounts {
    /// All decisions.
    pub fn total(&self) -> u64 {
        self.allow + self.escalate + self.deny + self.halt
    }

    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Allow => self.allow += 1,
            Verdict::Escalate => self.escalate += 1,
            Verdict::Deny => self.deny += 1,
            Verdict::Halt => self.halt += 1,
        }
    }

    /// `(verdict, count)` in a fixed order.
    pub fn rows(&self) -> [(&'static str, u64); 4] {
        [
            ("allow", self.allow),
            ("escalate", self.escalate),
            ("deny", self.deny),
            ("halt", self.halt),
        ]
    }
}

/// Entries of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCounts {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Decisions per verdict.
    pub verdicts: VerdictCounts,
    /// Other entries (administrative and system events, settlements).
    pub other: u64,
}

/// One agent's decisions in the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentActivity {
    /// The agent.
    pub agent: String,
    /// Its decisions per verdict.
    pub verdicts: VerdictCounts,
    /// All entries concerning it.
    pub entries: u64,
    /// Its last entry.
    pub last_seen: Timestamp,
}

/// A situation that may present a risk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskSituation {
    /// Entry number.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// The agent, if any.
    pub agent: Option<String>,
    /// `high-risk halt`, `high-risk deny`, `content finding` or `loop`.
    pub kind: String,
    /// The target of the action.
    pub target: String,
    /// Rule ids.
    pub rules: Vec<String>,
}

/// A halt, pause or resume by a person, or a halt the kernel imposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltEvent {
    /// Entry number.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// `agent.halt`, `agent.pause`, `agent.resume` or `kernel.halt`.
    pub action: String,
    /// Who (the actor id; `aura` for the kernel).
    pub by: String,
    /// Whether `by` is a person (or an admin token acting for one).
    pub human: bool,
    /// The agent, or `*` for all.
    pub target: String,
    /// Why.
    pub cause: String,
}

/// A person's decision on an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalEvent {
    /// Entry number.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// Who decided.
    pub approver: String,
    /// Approved (else denied).
    pub approved: bool,
    /// The approval id.
    pub approval: String,
    /// The agent that asked.
    pub agent: Option<String>,
    /// What it wanted to do.
    pub target: String,
    /// The approver's reason.
    pub reason: String,
}

/// A decision denied or halted by a budget rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetBreach {
    /// Entry number.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// The agent.
    pub agent: Option<String>,
    /// The target of the action.
    pub target: String,
    /// The budget rule id.
    pub rule: String,
    /// The kernel's message.
    pub message: String,
    /// A hard stop (rather than an exhausted limit).
    pub hard_stop: bool,
}

/// A policy reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    /// Entry number.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// Who reloaded.
    pub by: String,
    /// Bundle hash before.
    pub old_hash: String,
    /// Bundle hash after.
    pub new_hash: String,
    /// Whether widenings were forced through.
    pub forced: bool,
    /// What the new policy newly allows.
    pub widenings: Vec<String>,
}

/// A token creation or revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChange {
    /// Entry number.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// Who.
    pub by: String,
    /// `token.create` or `token.revoke`.
    pub action: String,
    /// Token id.
    pub token: String,
    /// Token name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The agent it is bound to.
    pub agent: Option<String>,
}

/// An event that may be a serious incident under Art. 73: a candidate for a person to assess, not a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentCandidate {
    /// Entry number.
    pub seq: u64,
    /// When (taken as the moment the provider became aware).
    pub time: Timestamp,
    /// The agent, or `*`.
    pub agent: String,
    /// What happened.
    pub trigger: String,
    /// Days allowed for the report: 15, or 2 when the event is widespread.
    pub deadline_days: i64,
    /// `time` plus `deadline_days`.
    pub deadline: Timestamp,
}

/// Log retention as of the end of the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The log's first entry: number and time.
    pub oldest: Option<(u64, Timestamp)>,
    /// The log's last entry read: number and time.
    pub newest: Option<(u64, Timestamp)>,
    /// Entries in the whole log.
    pub log_entries: u64,
    /// Whole days from the oldest entry to the end of the range.
    pub retained_days: i64,
    /// Whether at least six months (183 days) of logs are retained.
    pub six_months: bool,
}

/// The outcome of verifying the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every entry and checkpoint checked out.
    Verified {
        /// Entries re-hashed.
        entries: u64,
        /// Checkpoints whose signature, chain link and root were checked.
        checkpoints: u64,
        /// Merkle root, hex.
        root: String,
        /// The verifier key used.
        verifier_key: String,
        /// Bytes of an append in progress at the end, not yet covered.
        torn_tail_bytes: u64,
    },
    /// Verification failed.
    Failed {
        /// Why.
        error: String,
    },
}

impl ComplianceReport {
    /// Builds the report from every entry of the log in order (those outside `range` count only towards
    /// retention), the outcome of [`crate::verify`] and the range.
    pub fn build(
        entries: impl IntoIterator<Item = LoggedEntry>,
        verification: &Result<VerifyReport, AuditError>,
        range: ReportRange,
    ) -> ComplianceReport {
        let mut b = Builder::default();
        let mut oldest: Option<(u64, Timestamp)> = None;
        let mut newest: Option<(u64, Timestamp)> = None;
        let mut log_entries = 0u64;
        for e in entries {
            log_entries += 1;
            let t = e.entry.time;
            if oldest.is_none_or(|(_, o)| t < o) {
                oldest = Some((e.seq, t));
            }
            newest = Some((e.seq, t));
            if range.contains(t) {
                b.add(e.seq, &e.entry);
            }
        }
        let retained_days = oldest.map_or(0, |(_, o)| {
            (range.until.as_millis() - o.as_millis()).max(0) / DAY_MS
        });
        let retention = Retention {
            oldest,
            newest,
            log_entries,
            retained_days,
            six_months: oldest.is_some_and(|(_, o)| {
                range.until.as_millis() - o.as_millis() >= SIX_MONTHS_DAYS * DAY_MS
            }),
        };
        let verification = match verification {
            Ok(v) => Verification::Verified {
                entries: v.entries,
                checkpoints: v.checkpoints,
                root: hex::encode(v.root),
                verifier_key: v.verifier_key.clone(),
                torn_tail_bytes: v.torn_tail_bytes,
            },
            Err(e) => Verification::Failed {
                error: e.to_string(),
            },
        };
        b.finish(range, retention, verification)
    }
}

#[derive(Default)]
struct Builder {
    entries: u64,
    by_action: BTreeMap<String, u64>,
    verdicts: VerdictCounts,
    days: BTreeMap<String, DayCounts>,
    agents: BTreeMap<String, AgentActivity>,
    risk_situations: Vec<RiskSituation>,
    halts: Vec<HaltEvent>,
    refused_while_halted: u64,
    approvals: Vec<ApprovalEvent>,
    budget_breaches: Vec<BudgetBreach>,
    denials_by_rule: BTreeMap<String, u64>,
    policy_changes: Vec<PolicyChange>,
    token_changes: Vec<TokenChange>,
    incidents: Vec<IncidentCandidate>,
}

impl Builder {
    fn add(&mut self, seq: u64, e: &AuditEntry) {
        self.entries += 1;
        *self.by_action.entry(e.action.clone()).or_default() += 1;
        let day = e.time.to_rfc3339().get(..10).unwrap_or_default().to_owned();
        let day = self.days.entry(day.clone()).or_insert_with(|| DayCounts {
            day,
            verdicts: VerdictCounts::default(),
            other: 0,
        });
        match e.verdict {
            Some(v) => day.verdicts.add(v),
            None => day.other += 1,
        }
        let agent = e.agent.as_ref().map(|a| a.as_str().to_owned());
        if let Some(name) = &agent {
            let a = self
                .agents
                .entry(name.clone())
                .or_insert_with(|| AgentActivity {
                    agent: name.clone(),
                    verdicts: VerdictCounts::default(),
                    entries: 0,
                    last_seen: e.time,
                });
            a.entries += 1;
            a.last_seen = a.last_seen.max(e.time);
            if let Some(v) = e.verdict {
                a.verdicts.add(v);
            }
        }
        match e.verdict {
            Some(v) => self.decision(seq, e, v, agent),
            None => self.event(seq, e, agent),
        }
    }

    fn decision(&mut self, seq: u64, e: &AuditEntry, v: Verdict, agent: Option<String>) {
        self.verdicts.add(v);
        let target = e.target.clone().unwrap_or_else(|| e.resource.path.clone());
        let refused = matches!(v, Verdict::Deny | Verdict::Halt);
        if refused {
            for r in &e.rules {
                *self.denials_by_rule.entry(r.clone()).or_default() += 1;
            }
        }
        let situation = |kind: &str| RiskSituation {
            seq,
            time: e.time,
            agent: agent.clone(),
            kind: kind.to_owned(),
            target: target.clone(),
            rules: e.rules.clone(),
        };
        if refused && e.risk >= RiskLevel::High {
            let kind = if v == Verdict::Halt {
                "high-risk halt"
            } else {
                "high-risk deny"
            };
            // Refusals caused by an earlier halt repeat that halt; count them instead of listing each.
            let already_halted = e.cause.is_none()
                && e.rules.iter().all(|r| r == "halted" || r == "paused")
                && !e.rules.is_empty();
            if already_halted {
                self.refused_while_halted += 1;
            } else {
                self.risk_situations.push(situation(kind));
            }
        }
        if e.rules
            .iter()
            .any(|r| r == "content" || r.starts_with("content:"))
        {
            self.risk_situations.push(situation("content finding"));
        }
        if e.rules.iter().any(|r| r == "loop") {
            self.risk_situations.push(situation("loop"));
        }
        if v == Verdict::Halt
            && let Some(cause) = &e.cause
        {
            self.halts.push(HaltEvent {
                seq,
                time: e.time,
                action: "kernel.halt".into(),
                by: e.actor.id.clone(),
                human: false,
                target: agent.clone().unwrap_or_default(),
                cause: format!("{cause} ({})", e.rules.join(", ")),
            });
            if e.risk >= RiskLevel::Critical {
                self.incident(
                    seq,
                    e.time,
                    agent.clone(),
                    format!("kernel halt: {cause}"),
                    false,
                );
            }
        }
        if refused {
            for (rule, message) in budget_reasons(e) {
                let hard_stop = message.contains("hard stop");
                if hard_stop {
                    self.incident(
                        seq,
                        e.time,
                        agent.clone(),
                        format!("budget hard stop: {message}"),
                        false,
                    );
                }
                self.budget_breaches.push(BudgetBreach {
                    seq,
                    time: e.time,
                    agent: agent.clone(),
                    target: target.clone(),
                    rule,
                    message,
                    hard_stop,
                });
            }
        }
    }

    fn event(&mut self, seq: u64, e: &AuditEntry, agent: Option<String>) {
        let detail = |k: &str| match e.details.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        match e.action.as_str() {
            "agent.halt" | "agent.pause" | "agent.resume" => {
                let cause = match (&e.cause, e.action.as_str()) {
                    (Some(c), _) => c.clone(),
                    (None, "agent.resume") => format!("resumed {}", detail("resumed")),
                    (None, _) => detail("reason"),
                };
                self.halts.push(HaltEvent {
                    seq,
                    time: e.time,
                    action: e.action.clone(),
                    by: e.actor.id.clone(),
                    human: e.actor.kind == ActorKind::Human,
                    target: e.resource.path.clone(),
                    cause: cause.clone(),
                });
                if e.action == "agent.halt" && e.risk >= RiskLevel::Critical {
                    let applied = match e.details.get("applied") {
                        Some(Value::Array(a)) => a.len(),
                        _ => 1,
                    };
                    let widespread = e.resource.path == "*" || applied > 1;
                    let who = agent.or_else(|| Some(e.resource.path.clone()));
                    self.incident(seq, e.time, who, format!("halt: {cause}"), widespread);
                }
            }
            "approval.approve" | "approval.deny" => self.approvals.push(ApprovalEvent {
                seq,
                time: e.time,
                approver: e.actor.id.clone(),
                approved: e.action == "approval.approve",
                approval: e
                    .approval
                    .clone()
                    .unwrap_or_else(|| e.resource.path.clone()),
                agent,
                target: detail("target"),
                reason: detail("reason"),
            }),
            "policy.reload" => self.policy_changes.push(PolicyChange {
                seq,
                time: e.time,
                by: e.actor.id.clone(),
                old_hash: detail("old_hash"),
                new_hash: detail("new_hash"),
                forced: matches!(e.details.get("forced"), Some(Value::Bool(true))),
                widenings: match e.details.get("widenings") {
                    Some(Value::Array(w)) => w
                        .iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                },
            }),
            "token.create" | "token.revoke" => self.token_changes.push(TokenChange {
                seq,
                time: e.time,
                by: e.actor.id.clone(),
                action: e.action.clone(),
                token: e.resource.path.clone(),
                name: detail("name"),
                role: detail("role"),
                agent: Some(detail("agent")).filter(|a| !a.is_empty()),
            }),
            _ => {}
        }
    }

    fn incident(
        &mut self,
        seq: u64,
        time: Timestamp,
        agent: Option<String>,
        trigger: String,
        widespread: bool,
    ) {
        let days = if widespread {
            ART73_WIDESPREAD_DAYS
        } else {
            ART73_DEFAULT_DAYS
        };
        self.incidents.push(IncidentCandidate {
            seq,
            time,
            agent: agent.unwrap_or_else(|| "*".into()),
            trigger,
            deadline_days: days,
            deadline: Timestamp::from_millis(time.as_millis().saturating_add(days * DAY_MS)),
        });
    }

    fn finish(
        self,
        range: ReportRange,
        retention: Retention,
        verification: Verification,
    ) -> ComplianceReport {
        let mut denials_by_rule: Vec<(String, u64)> = self.denials_by_rule.into_iter().collect();
        denials_by_rule.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut agents: Vec<AgentActivity> = self.agents.into_values().collect();
        agents.sort_by(|a, b| {
            b.entries
                .cmp(&a.entries)
                .then_with(|| a.agent.cmp(&b.agent))
        });
        ComplianceReport {
            range,
            entries: self.entries,
            by_action: self.by_action.into_iter().collect(),
            verdicts: self.verdicts,
            days: self.days.into_values().collect(),
            agents,
            risk_situations: self.risk_situations,
            halts: self.halts,
            refused_while_halted: self.refused_while_halted,
            approvals: self.approvals,
            budget_breaches: self.budget_breaches,
            denials_by_rule,
            policy_changes: self.policy_changes,
            token_changes: self.token_changes,
            incidents: self.incidents,
            retention,
            verification,
            read_error: None,
        }
    }
}

/// The budget reasons of a decision as `(rule, message)`: reasons whose message starts with ``budget ` ``, or
/// whose rule id mentions `budget` (the kernel's budget messages all start that way).
fn budget_reasons(e: &AuditEntry) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    if let Some(Value::Array(reasons)) = e.details.get("reasons") {
        for r in reasons {
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
            let message = r.get("message").and_then(Value::as_str).unwrap_or_default();
            if (message.starts_with("budget `") || rule.contains("budget"))
                && seen.insert(rule.to_owned())
            {
                out.push((rule.to_owned(), message.to_owned()));
            }
        }
    }
    for rule in &e.rules {
        if rule.contains("budget") && seen.insert(rule.clone()) {
            out.push((rule.clone(), String::new()));
        }
    }
    out
}

/// Renders the report as Markdown: the same sections as [`render_html`], with tables instead of charts.
pub fn render_markdown(r: &ComplianceReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Aura compliance report\n");
    let _ = writeln!(
        out,
        "Covered range: **{}** to **{}** ({} entries).\n",
        r.range.since, r.range.until, r.entries
    );
    for s in sections(r) {
        let _ = writeln!(out, "## {}\n", s.title);
        for block in &s.blocks {
            match block {
                Block::Para(p) => {
                    let _ = writeln!(out, "{p}\n");
                }
                Block::Status { ok, text } => {
                    let mark = if *ok { "✅" } else { "❌" };
                    let _ = writeln!(out, "**{mark} {text}**\n");
                }
                Block::Table(t) => md_table(&mut out, t),
                Block::Chart(_) => {}
            }
        }
    }
    out
}

/// Renders the report as one self-contained HTML page: inline CSS, inline SVG charts, no scripts.
pub fn render_html(r: &ComplianceReport) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<title>Aura compliance report {} to {}</title>",
        esc(&r.range.since.to_string()),
        esc(&r.range.until.to_string())
    );
    let _ = writeln!(out, "<style>{CSS}</style>\n</head>\n<body>\n<main>");
    out.push_str("<h1>Aura compliance report</h1>\n");
    let _ = writeln!(
        out,
        "<p class=\"lead\">Covered range: <strong>{}</strong> to <strong>{}</strong> ({} entries).</p>",
        esc(&r.range.since.to_string()),
        esc(&r.range.until.to_string()),
        r.entries
    );
    let sections = sections(r);
    out.push_str("<nav><ol>\n");
    for (i, s) in sections.iter().enumerate() {
        let _ = writeln!(out, "<li><a href=\"#s{i}\">{}</a></li>", esc(&s.title));
    }
    out.push_str("</ol></nav>\n");
    for (i, s) in sections.iter().enumerate() {
        let _ = writeln!(out, "<section id=\"s{i}\">\n<h2>{}</h2>", esc(&s.title));
        for block in &s.blocks {
            match block {
                Block::Para(p) => {
                    let _ = writeln!(out, "<p>{}</p>", esc(p));
                }
                Block::Status { ok, text } => {
                    let class = if *ok { "ok" } else { "fail" };
                    let _ = writeln!(out, "<p class=\"status {class}\">{}</p>", esc(text));
                }
                Block::Table(t) => html_table(&mut out, t),
                Block::Chart(c) => {
                    out.push_str("<figure>\n");
                    match c {
                        Chart::Days(days) => svg_days(&mut out, days),
                        Chart::Share(v) => svg_share(&mut out, v),
                        Chart::Rules(rules) => svg_rules(&mut out, rules),
                    }
                    out.push_str("</figure>\n");
                }
            }
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// A report section, rendered the same way in both formats.
struct Section {
    title: String,
    blocks: Vec<Block>,
}

enum Block {
    Para(String),
    Status { ok: bool, text: String },
    Table(Table),
    Chart(Chart),
}

struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Shown instead of an empty table.
    empty: &'static str,
}

enum Chart {
    Days(Vec<DayCounts>),
    Share(VerdictCounts),
    Rules(Vec<(String, u64)>),
}

fn table(headers: &[&'static str], rows: Vec<Vec<String>>, empty: &'static str) -> Block {
    Block::Table(Table {
        headers: headers.to_vec(),
        rows,
        empty,
    })
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

fn sections(r: &ComplianceReport) -> Vec<Section> {
    let mut out = Vec::new();

    // Verification.
    let mut blocks = Vec::new();
    match &r.verification {
        Verification::Verified {
            entries,
            checkpoints,
            root,
            verifier_key,
            torn_tail_bytes,
        } => {
            blocks.push(Block::Status {
                ok: true,
                text: format!(
                    "Verification OK: the log verified ({entries} entries, {checkpoints} checkpoints)"
                ),
            });
            blocks.push(table(
                &["Check", "Value"],
                vec![
                    vec!["status".into(), "verified".into()],
                    vec!["entries verified".into(), entries.to_string()],
                    vec!["checkpoints verified".into(), checkpoints.to_string()],
                    vec!["Merkle root".into(), root.clone()],
                    vec!["verifier key".into(), verifier_key.clone()],
                    vec![
                        "append in progress (bytes)".into(),
                        torn_tail_bytes.to_string(),
                    ],
                ],
                "",
            ));
        }
        Verification::Failed { error } => {
            blocks.push(Block::Status {
                ok: false,
                text: format!("Verification FAILED: {error}"),
            });
            blocks.push(Block::Para(
                "The log does not verify: the entries below may have been altered. Keep the log as is and \
                 investigate before relying on this report."
                    .into(),
            ));
        }
    }
    if let Some(e) = &r.read_error {
        blocks.push(Block::Status {
            ok: false,
            text: format!("Reading stopped early: {e}"),
        });
    }
    blocks.push(Block::Para(
        "Every entry is a leaf of an RFC 9162 Merkle tree; verification re-reads the whole log, recomputes the \
         tree and checks every signed checkpoint (`aura audit verify`)."
            .into(),
    ));
    out.push(Section {
        title: "Verification status of the covered range".into(),
        blocks,
    });

    // Art. 12.
    let mut blocks = vec![Block::Para(format!(
        "EU AI Act Art. 12(1) and ISO/IEC 42001 A.6.2.8 (event logs): {} events were logged automatically in the \
         range.",
        r.entries
    ))];
    blocks.push(table(
        &["Event type", "Count"],
        r.by_action
            .iter()
            .map(|(a, n)| vec![a.clone(), n.to_string()])
            .collect(),
        "No events in the range.",
    ));
    out.push(Section {
        title: "Art. 12 — automatic logging: events by type".into(),
        blocks,
    });
    out.push(Section {
        title: "Art. 12(2)(a) — situations of risk".into(),
        blocks: vec![
            Block::Para(format!(
                "Denied or halted decisions of high or critical risk, content findings and loops. {} further \
                 decisions were refused only because their agent was already halted or paused.",
                r.refused_while_halted
            )),
            table(
                &["Seq", "Time", "Agent", "Situation", "Target", "Rules"],
                r.risk_situations
                    .iter()
                    .map(|s| {
                        vec![
                            s.seq.to_string(),
                            s.time.to_string(),
                            opt(&s.agent),
                            s.kind.clone(),
                            s.target.clone(),
                            s.rules.join(", "),
                        ]
                    })
                    .collect(),
                "No situations of risk in the range.",
            ),
        ],
    });
    out.push(Section {
        title: "Art. 12(2)(b) — post-market monitoring: trend per day".into(),
        blocks: vec![
            Block::Chart(Chart::Days(r.days.clone())),
            table(
                &[
                    "Day (UTC)",
                    "allow",
                    "escalate",
                    "deny",
                    "halt",
                    "other events",
                ],
                r.days
                    .iter()
                    .map(|d| {
                        vec![
                            d.day.clone(),
                            d.verdicts.allow.to_string(),
                            d.verdicts.escalate.to_string(),
                            d.verdicts.deny.to_string(),
                            d.verdicts.halt.to_string(),
                            d.other.to_string(),
                        ]
                    })
                    .collect(),
                "No events in the range.",
            ),
        ],
    });
    out.push(Section {
        title: "Art. 12(2)(c) and 26(5) — deployer monitoring: activity per agent".into(),
        blocks: vec![table(
            &[
                "Agent",
                "Entries",
                "allow",
                "escalate",
                "deny",
                "halt",
                "Last seen",
            ],
            r.agents
                .iter()
                .map(|a| {
                    vec![
                        a.agent.clone(),
                        a.entries.to_string(),
                        a.verdicts.allow.to_string(),
                        a.verdicts.escalate.to_string(),
                        a.verdicts.deny.to_string(),
                        a.verdicts.halt.to_string(),
                        a.last_seen.to_string(),
                    ]
                })
                .collect(),
            "No agent activity in the range.",
        )],
    });

    // Art. 14.
    out.push(Section {
        title: "Art. 14(4)(e) — human oversight: halts and their causes".into(),
        blocks: vec![table(
            &["Seq", "Time", "Action", "By", "Target", "Cause"],
            r.halts
                .iter()
                .map(|h| {
                    let by = if h.human {
                        format!("{} (human)", h.by)
                    } else {
                        h.by.clone()
                    };
                    vec![
                        h.seq.to_string(),
                        h.time.to_string(),
                        h.action.clone(),
                        by,
                        h.target.clone(),
                        h.cause.clone(),
                    ]
                })
                .collect(),
            "No halts, pauses or resumes in the range.",
        )],
    });
    out.push(Section {
        title: "Art. 14 — approvals and approvers".into(),
        blocks: vec![table(
            &[
                "Seq", "Time", "Approver", "Decision", "Approval", "Agent", "Target", "Reason",
            ],
            r.approvals
                .iter()
                .map(|a| {
                    vec![
                        a.seq.to_string(),
                        a.time.to_string(),
                        a.approver.clone(),
                        if a.approved { "approved" } else { "denied" }.into(),
                        a.approval.clone(),
                        opt(&a.agent),
                        a.target.clone(),
                        a.reason.clone(),
                    ]
                })
                .collect(),
            "No approvals decided in the range.",
        )],
    });

    // Art. 19 / 26.
    let ret = &r.retention;
    let fmt_at = |x: Option<(u64, Timestamp)>| {
        x.map_or_else(|| "-".into(), |(seq, t)| format!("{t} (seq {seq})"))
    };
    out.push(Section {
        title: "Art. 19 and 26(6) — retention".into(),
        blocks: vec![
            Block::Status {
                ok: ret.six_months,
                text: if ret.six_months {
                    format!(
                        "At least six months of logs are retained ({} days as of {})",
                        ret.retained_days, r.range.until
                    )
                } else {
                    format!(
                        "Less than six months of logs are retained ({} days as of {}; 183 required)",
                        ret.retained_days, r.range.until
                    )
                },
            },
            table(
                &["Item", "Value"],
                vec![
                    vec![
                        "covered range".into(),
                        format!("{} to {}", r.range.since, r.range.until),
                    ],
                    vec!["oldest entry in the log".into(), fmt_at(ret.oldest)],
                    vec!["newest entry in the log".into(), fmt_at(ret.newest)],
                    vec!["entries in the log".into(), ret.log_entries.to_string()],
                    vec!["days retained".into(), ret.retained_days.to_string()],
                    vec![
                        "six months (183 days) retained".into(),
                        if ret.six_months { "yes" } else { "no" }.into(),
                    ],
                ],
                "",
            ),
        ],
    });

    // Art. 73.
    out.push(Section {
        title: "Art. 73 — serious incident candidates".into(),
        blocks: vec![
            Block::Para(
                "CANDIDATES ONLY: events a person must assess; none is a finding that a serious incident occurred. \
                 Kernel halts of critical risk, manual halts and budget hard stops are listed. The deadline counts \
                 from the entry time (taken as the moment of awareness): 15 days (Art. 73(2)), 2 days when every \
                 agent or several agents were halted at once (treated as widespread, Art. 73(3))."
                    .into(),
            ),
            table(
                &["Seq", "Time", "Agent", "Trigger", "Days", "Report by"],
                r.incidents
                    .iter()
                    .map(|i| {
                        vec![
                            i.seq.to_string(),
                            i.time.to_string(),
                            i.agent.clone(),
                            i.trigger.clone(),
                            i.deadline_days.to_string(),
                            i.deadline.to_string(),
                        ]
                    })
                    .collect(),
                "No incident candidates in the range.",
            ),
        ],
    });

    // ISO 42001 9.1.
    let v = &r.verdicts;
    let total = v.total();
    out.push(Section {
        title: "ISO/IEC 42001 9.1 — monitoring and measurement: decisions by verdict".into(),
        blocks: vec![
            Block::Chart(Chart::Share(*v)),
            table(
                &["Verdict", "Decisions", "Rate"],
                v.rows()
                    .iter()
                    .map(|(name, n)| vec![(*name).into(), n.to_string(), percent(*n, total)])
                    .chain(std::iter::once(vec![
                        "total".into(),
                        total.to_string(),
                        percent(total, total),
                    ]))
                    .collect(),
                "",
            ),
        ],
    });

    // ISO 42001 10.2.
    out.push(Section {
        title: "ISO/IEC 42001 10.2 — nonconformity: denials by rule".into(),
        blocks: vec![
            Block::Chart(Chart::Rules(
                r.denials_by_rule.iter().take(TOP_RULES).cloned().collect(),
            )),
            table(
                &["Rule", "Denied or halted decisions"],
                r.denials_by_rule
                    .iter()
                    .map(|(rule, n)| vec![rule.clone(), n.to_string()])
                    .collect(),
                "No denied or halted decisions in the range.",
            ),
        ],
    });
    out.push(Section {
        title: "ISO/IEC 42001 10.2 — budget breaches".into(),
        blocks: vec![
            Block::Para(
                "Decisions denied or halted by a budget rule: a rule whose reason message starts with `budget` or \
                 whose id mentions `budget`. A hard stop is a budget reason mentioning `hard stop`."
                    .into(),
            ),
            table(
                &["Seq", "Time", "Agent", "Target", "Rule", "Hard stop", "Message"],
                r.budget_breaches
                    .iter()
                    .map(|b| {
                        vec![
                            b.seq.to_string(),
                            b.time.to_string(),
                            opt(&b.agent),
                            b.target.clone(),
                            b.rule.clone(),
                            if b.hard_stop { "yes" } else { "no" }.into(),
                            b.message.clone(),
                        ]
                    })
                    .collect(),
                "No budget breaches in the range.",
            ),
        ],
    });
    out.push(Section {
        title: "ISO/IEC 42001 10.2 — corrective action: policy changes".into(),
        blocks: vec![table(
            &[
                "Seq",
                "Time",
                "By",
                "Bundle hash before",
                "Bundle hash after",
                "Forced",
                "Widenings",
            ],
            r.policy_changes
                .iter()
                .map(|p| {
                    vec![
                        p.seq.to_string(),
                        p.time.to_string(),
                        p.by.clone(),
                        p.old_hash.clone(),
                        p.new_hash.clone(),
                        if p.forced { "yes" } else { "no" }.into(),
                        if p.widenings.is_empty() {
                            "none".into()
                        } else {
                            p.widenings.join("; ")
                        },
                    ]
                })
                .collect(),
            "No policy changes in the range.",
        )],
    });
    out.push(Section {
        title: "Access: token changes".into(),
        blocks: vec![table(
            &[
                "Seq", "Time", "By", "Change", "Token", "Name", "Role", "Agent",
            ],
            r.token_changes
                .iter()
                .map(|t| {
                    vec![
                        t.seq.to_string(),
                        t.time.to_string(),
                        t.by.clone(),
                        t.action.clone(),
                        t.token.clone(),
                        t.name.clone(),
                        t.role.clone(),
                        opt(&t.agent),
                    ]
                })
                .collect(),
            "No token changes in the range.",
        )],
    });
    out
}

/// `n` of `total` as a percentage with one decimal, in integer arithmetic.
fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    let tenths = (u128::from(n) * 1000 + u128::from(total) / 2) / u128::from(total);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

fn md_table(out: &mut String, t: &Table) {
    if t.rows.is_empty() {
        if !t.empty.is_empty() {
            let _ = writeln!(out, "_{}_\n", t.empty);
        }
        return;
    }
    let _ = writeln!(out, "| {} |", t.headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(t.headers.len()));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// A Markdown table cell: pipes escaped, line breaks flattened, empty shown as `-`.
fn md_cell(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn html_table(out: &mut String, t: &Table) {
    if t.rows.is_empty() {
        if !t.empty.is_empty() {
            let _ = writeln!(out, "<p class=\"empty\">{}</p>", esc(t.empty));
        }
        return;
    }
    out.push_str("<table>\n<thead><tr>");
    for h in &t.headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const VERDICT_COLORS: [(&str, &str); 4] = [
    ("allow", "#2e7d32"),
    ("escalate", "#f9a825"),
    ("deny", "#c62828"),
    ("halt", "#6a1b9a"),
];

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330;background:#f6f7f9;margin:0}\
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}\
h1{font-size:1.7em;margin:0 0 .3em}h2{font-size:1.2em;border-bottom:2px solid #e3e6ea;padding-bottom:4px;margin-top:2em}\
.lead{color:#4a5260}nav ol{columns:2;font-size:.9em}nav a{color:#2251a3;text-decoration:none}\
table{border-collapse:collapse;width:100%;font-size:.86em;margin:.6em 0}\
th,td{border:1px solid #e3e6ea;padding:4px 8px;text-align:left;vertical-align:top;word-break:break-word}\
th{background:#f0f2f5}tbody tr:nth-child(even){background:#fafbfc}\
.status{padding:8px 12px;border-radius:6px;font-weight:600}.ok{background:#e6f4ea;color:#1e5e2b}\
.fail{background:#fdecea;color:#8a1c1c}.empty{color:#6b7280;font-style:italic}\
figure{margin:1em 0}svg{max-width:100%;height:auto;font-size:11px}svg text{fill:#333}\
@media print{body{background:#fff}main{padding:0}nav{display:none}}";

/// Decisions per day, stacked by verdict: one `rect.bar` per non-zero (day, verdict).
fn svg_days(out: &mut String, days: &[DayCounts]) {
    let (w, h, left, bottom, top) = (720i64, 240i64, 44i64, 36i64, 28i64);
    let plot_h = h - bottom - top;
    let max = days.iter().map(|d| d.verdicts.total()).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"Decisions per day by verdict\">"
    );
    out.push_str("<title>Decisions per day by verdict</title>\n");
    legend(out, left, 14);
    if max == 0 {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">No decisions in the range</text>",
            left + 10,
            top + plot_h / 2
        );
        out.push_str("</svg>\n<figcaption>Decisions per day, stacked by verdict.</figcaption>\n");
        return;
    }
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let n = i64::try_from(days.len()).unwrap_or(1).max(1);
    let slot = (w - left - 10) / n;
    let bar_w = (slot * 7 / 10).clamp(1, 48);
    let _ = writeln!(
        out,
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#999\"/>",
        y = top + plot_h,
        x2 = w - 10
    );
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>",
        left - 4,
        top + 4
    );
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        left - 4,
        top + plot_h
    );
    let label_every = (n / 12).max(1);
    for (i, d) in days.iter().enumerate() {
        let i = i64::try_from(i).unwrap_or(0);
        let x = left + i * slot + (slot - bar_w) / 2;
        let mut y = top + plot_h;
        for (name, count) in d.verdicts.rows() {
            if count == 0 {
                continue;
            }
            let c = i64::try_from(count).unwrap_or(0);
            let bh = (c * plot_h / max).max(1);
            y -= bh;
            let _ = writeln!(
                out,
                "<rect class=\"bar\" x=\"{x}\" y=\"{y}\" width=\"{bar_w}\" height=\"{bh}\" fill=\"{}\">\
                 <title>{} {name}: {count}</title></rect>",
                color(name),
                esc(&d.day)
            );
        }
        if i % label_every == 0 {
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar_w / 2,
                top + plot_h + 16,
                esc(d.day.get(5..).unwrap_or(&d.day))
            );
        }
    }
    out.push_str("</svg>\n<figcaption>Decisions per day (UTC), stacked by verdict.</figcaption>\n");
}

/// Verdict share as one 100% bar: one `rect.bar` per non-zero verdict.
fn svg_share(out: &mut String, v: &VerdictCounts) {
    let (w, h, left, bar_y, bar_h) = (720i64, 90i64, 10i64, 30i64, 28i64);
    let total = v.total();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"Verdict share\">"
    );
    out.push_str("<title>Verdict share</title>\n");
    legend(out, left, 14);
    if total == 0 {
        let _ = writeln!(
            out,
            "<text x=\"{left}\" y=\"{}\">No decisions in the range</text>",
            bar_y + 18
        );
    } else {
        let width = w - 2 * left;
        let total_i = i64::try_from(total).unwrap_or(i64::MAX);
        let mut x = left;
        let mut acc = 0i64;
        for (name, count) in v.rows() {
            if count == 0 {
                continue;
            }
            acc += i64::try_from(count).unwrap_or(0);
            let end = left + acc * width / total_i;
            let bw = (end - x).max(1);
            let _ = writeln!(
                out,
                "<rect class=\"bar\" x=\"{x}\" y=\"{bar_y}\" width=\"{bw}\" height=\"{bar_h}\" fill=\"{}\">\
                 <title>{name}: {count} ({})</title></rect>",
                color(name),
                percent(count, total)
            );
            if bw > 60 {
                let _ = writeln!(
                    out,
                    "<text x=\"{}\" y=\"{}\" fill=\"#fff\" style=\"fill:#fff\">{name} {}</text>",
                    x + 4,
                    bar_y + 18,
                    percent(count, total)
                );
            }
            x = end;
        }
    }
    out.push_str("</svg>\n<figcaption>Share of decisions by verdict.</figcaption>\n");
}

/// Top denial rules as horizontal bars: one `rect.bar` per rule.
fn svg_rules(out: &mut String, rules: &[(String, u64)]) {
    let row = 24i64;
    let (w, left, top) = (720i64, 200i64, 8i64);
    let n = i64::try_from(rules.len()).unwrap_or(0);
    let h = top * 2 + row * n.max(1);
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"Top denial rules\">"
    );
    out.push_str("<title>Top denial rules</title>\n");
    let max = rules.iter().map(|r| r.1).max().unwrap_or(0);
    if max == 0 {
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{}\">No denied or halted decisions in the range</text>",
            top + 14
        );
    } else {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let plot_w = w - left - 60;
        for (i, (rule, count)) in rules.iter().enumerate() {
            let y = top + i64::try_from(i).unwrap_or(0) * row;
            let c = i64::try_from(*count).unwrap_or(0);
            let bw = (c * plot_w / max).max(1);
            let label: String = rule.chars().take(28).collect();
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                left - 6,
                y + 15,
                esc(&label)
            );
            let _ = writeln!(
                out,
                "<rect class=\"bar\" x=\"{left}\" y=\"{}\" width=\"{bw}\" height=\"{}\" fill=\"#c62828\">\
                 <title>{}: {count}</title></rect>",
                y + 3,
                row - 6,
                esc(rule)
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\">{count}</text>",
                left + bw + 6,
                y + 15
            );
        }
    }
    out.push_str(
        "</svg>\n<figcaption>Rules behind denied or halted decisions (top 10).</figcaption>\n",
    );
}

/// The verdict color key: `rect.key` swatches, not bars.
fn legend(out: &mut String, x: i64, y: i64) {
    for (i, (name, c)) in VERDICT_COLORS.iter().enumerate() {
        let x = x + i64::try_from(i).unwrap_or(0) * 90;
        let _ = writeln!(
            out,
            "<rect class=\"key\" x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{c}\"></rect>\
             <text x=\"{}\" y=\"{y}\">{name}</text>",
            y - 9,
            x + 14
        );
    }
}

fn color(verdict: &str) -> &'static str {
    VERDICT_COLORS
        .iter()
        .find(|(n, _)| *n == verdict)
        .map_or("#888", |(_, c)| c)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aura_core::AgentName;
    use serde_json::json;

    use super::*;
    use crate::entry::{Actor, Resource};
    use crate::log::{AuditConfig, AuditLog};

    const T0: i64 = 1_795_292_371_042; // 2026-11-21T..

    fn at(days: i64, secs: i64) -> Timestamp {
        Timestamp::from_millis(T0 + days * DAY_MS + secs * 1000)
    }

    fn actor(kind: ActorKind, id: &str) -> Actor {
        Actor {
            kind,
            id: id.into(),
            ip: None,
        }
    }

    fn decision(
        t: Timestamp,
        agent: &str,
        verdict: Verdict,
        rules: &[&str],
        messages: &[&str],
    ) -> AuditEntry {
        let risk = match verdict {
            Verdict::Halt => RiskLevel::Critical,
            Verdict::Escalate => RiskLevel::High,
            Verdict::Deny => RiskLevel::Medium,
            Verdict::Allow => RiskLevel::Low,
        };
        let mut e = AuditEntry::new(
            t,
            actor(ActorKind::Agent, agent),
            Resource {
                kind: "tool_call".into(),
                path: "search".into(),
            },
            "decide",
            verdict.as_str(),
            risk,
        );
        e.agent = Some(AgentName::new(agent).unwrap());
        e.target = Some("search".into());
        e.verdict = Some(verdict);
        e.rules = rules.iter().map(|r| (*r).to_owned()).collect();
        let reasons: Vec<Value> = rules
            .iter()
            .zip(messages)
            .map(|(r, m)| json!({"rule": r, "message": m}))
            .collect();
        e.details.insert("reasons".into(), Value::from(reasons));
        e
    }

    fn event(
        t: Timestamp,
        who: &str,
        resource: (&str, &str),
        action: &str,
        risk: RiskLevel,
        details: Value,
    ) -> AuditEntry {
        let mut e = AuditEntry::new(
            t,
            actor(ActorKind::Human, who),
            Resource {
                kind: resource.0.into(),
                path: resource.1.into(),
            },
            action,
            "success",
            risk,
        );
        if let Value::Object(m) = details {
            e.details = m;
        }
        e
    }

    /// One entry for every section.
    fn sample() -> Vec<LoggedEntry> {
        let mut v = vec![
            event(
                at(0, 0),
                "aura",
                ("server", "127.0.0.1:0"),
                "server.start",
                RiskLevel::Low,
                json!({}),
            ),
            event(
                at(0, 1),
                "admin",
                ("token", "t-1"),
                "token.create",
                RiskLevel::Medium,
                json!({"name": "bot-token", "role": "agent", "agent": "bot"}),
            ),
            decision(at(0, 2), "bot", Verdict::Allow, &["tools"], &["allowed"]),
            decision(
                at(0, 3),
                "bot",
                Verdict::Escalate,
                &["ask-deploy"],
                &["needs a human"],
            ),
            {
                let mut e = event(
                    at(0, 4),
                    "alice",
                    ("approval", "a-1"),
                    "approval.approve",
                    RiskLevel::High,
                    json!({"reason": "ok", "target": "deploy"}),
                );
                e.agent = Some(AgentName::new("bot").unwrap());
                e.approval = Some("a-1".into());
                e
            },
            decision(
                at(1, 0),
                "bot",
                Verdict::Deny,
                &["budget:daily-cost"],
                &["budget `daily/agent:bot` hard stop at 100%"],
            ),
            decision(
                at(1, 1),
                "bot",
                Verdict::Deny,
                &["content:secrets"],
                &["secret found"],
            ),
            {
                let mut e = decision(
                    at(1, 2),
                    "helper",
                    Verdict::Halt,
                    &["loop"],
                    &["the same action repeated"],
                );
                e.cause = Some("halted: helper".into());
                e
            },
            {
                let mut e = event(
                    at(1, 3),
                    "alice",
                    ("agent", "bot"),
                    "agent.halt",
                    RiskLevel::Critical,
                    json!({"reason": "runaway", "applied": [{"agent": "bot"}]}),
                );
                e.cause = Some("manual: runaway".into());
                e.agent = Some(AgentName::new("bot").unwrap());
                e
            },
            decision(
                at(1, 4),
                "bot",
                Verdict::Halt,
                &["halted"],
                &["agent `bot` is halted"],
            ),
            event(
                at(1, 5),
                "alice",
                ("agent", "bot"),
                "agent.resume",
                RiskLevel::High,
                json!({"resumed": ["bot"]}),
            ),
            event(
                at(2, 0),
                "admin",
                ("policy", "/p"),
                "policy.reload",
                RiskLevel::High,
                json!({"old_hash": "aaa", "new_hash": "bbb", "forced": true, "widenings": ["bot may deploy"]}),
            ),
            {
                let mut e = event(
                    at(2, 1),
                    "root",
                    ("agent", "*"),
                    "agent.halt",
                    RiskLevel::Critical,
                    json!({"reason": "kill", "applied": [{"agent": "bot"}, {"agent": "helper"}]}),
                );
                e.cause = Some("manual: kill".into());
                e
            },
        ];
        v[0].actor.kind = ActorKind::System;
        v.into_iter()
            .enumerate()
            .map(|(i, entry)| LoggedEntry {
                seq: i as u64,
                entry,
            })
            .collect()
    }

    fn verified() -> Result<VerifyReport, AuditError> {
        Ok(VerifyReport {
            entries: 13,
            segments: 1,
            checkpoints: 2,
            root: [7u8; 32],
            latest_checkpoint_size: Some(13),
            anchor_size: None,
            torn_tail_bytes: 0,
            verifier_key: "aura.local/audit+abcd+KEY".into(),
            retired_entries: 0,
            elapsed_ms: 1,
        })
    }

    fn all_range() -> ReportRange {
        ReportRange {
            since: at(0, 0),
            until: at(3, 0),
        }
    }

    #[test]
    fn every_section_is_populated_from_synthetic_entries() {
        let r = ComplianceReport::build(sample(), &verified(), all_range());
        assert_eq!(r.entries, 13);
        assert_eq!(
            r.verdicts,
            VerdictCounts {
                allow: 1,
                escalate: 1,
                deny: 2,
                halt: 2
            }
        );
        assert!(
            r.by_action.contains(&("decide".into(), 6)),
            "{:?}",
            r.by_action
        );
        assert_eq!(r.days.len(), 3);
        assert_eq!(r.days[1].verdicts.deny, 2);
        assert_eq!(r.agents[0].agent, "bot");
        let kinds: Vec<&str> = r.risk_situations.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["content finding", "high-risk halt", "loop"]);
        assert_eq!(r.refused_while_halted, 1);
        let halts: Vec<(&str, &str)> = r
            .halts
            .iter()
            .map(|h| (h.action.as_str(), h.by.as_str()))
            .collect();
        assert_eq!(
            halts,
            [
                ("kernel.halt", "helper"),
                ("agent.halt", "alice"),
                ("agent.resume", "alice"),
                ("agent.halt", "root")
            ]
        );
        assert_eq!(r.halts[1].cause, "manual: runaway");
        assert_eq!(r.approvals.len(), 1);
        assert_eq!(r.approvals[0].approver, "alice");
        assert!(r.approvals[0].approved);
        assert_eq!(r.approvals[0].target, "deploy");
        assert_eq!(r.budget_breaches.len(), 1);
        assert_eq!(r.budget_breaches[0].rule, "budget:daily-cost");
        assert!(r.budget_breaches[0].hard_stop);
        assert_eq!(r.denials_by_rule[0].1, 1);
        assert_eq!(r.denials_by_rule.len(), 4);
        assert_eq!(r.policy_changes[0].old_hash, "aaa");
        assert_eq!(r.policy_changes[0].new_hash, "bbb");
        assert!(r.policy_changes[0].forced);
        assert_eq!(r.policy_changes[0].widenings, ["bot may deploy"]);
        assert_eq!(r.token_changes[0].name, "bot-token");
        assert_eq!(r.token_changes[0].agent.as_deref(), Some("bot"));
        assert!(matches!(
            r.verification,
            Verification::Verified {
                entries: 13,
                checkpoints: 2,
                ..
            }
        ));
    }

    #[test]
    fn art73_deadlines_are_15_days_or_2_when_widespread() {
        let r = ComplianceReport::build(sample(), &verified(), all_range());
        let got: Vec<(u64, i64, i64)> = r
            .incidents
            .iter()
            .map(|i| {
                (
                    i.seq,
                    i.deadline_days,
                    i.deadline.as_millis() - i.time.as_millis(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (5, 15, 15 * DAY_MS),
                (7, 15, 15 * DAY_MS),
                (8, 15, 15 * DAY_MS),
                (12, 2, 2 * DAY_MS)
            ]
        );
        assert_eq!(r.incidents[3].agent, "*");
        assert!(r.incidents[0].trigger.starts_with("budget hard stop"));
        assert_eq!(r.incidents[1].deadline, at(16, 2));
    }

    #[test]
    fn an_empty_range_reports_nothing_but_retention_and_verification() {
        let range = ReportRange {
            since: at(10, 0),
            until: at(11, 0),
        };
        let r = ComplianceReport::build(sample(), &verified(), range);
        assert_eq!(r.entries, 0);
        assert!(r.days.is_empty() && r.halts.is_empty() && r.incidents.is_empty());
        assert_eq!(r.retention.log_entries, 13);
        assert_eq!(r.retention.oldest, Some((0, at(0, 0))));
        let md = render_markdown(&r);
        assert!(md.contains("_No events in the range._"), "{md}");
        let html = render_html(&r);
        assert_eq!(html.matches("<rect class=\"bar\"").count(), 0);
        assert!(html.contains("No decisions in the range"));
        assert_balanced(&html);
        let empty = ComplianceReport::build(Vec::new(), &verified(), range);
        assert_eq!(empty.retention.oldest, None);
        assert!(!empty.retention.six_months);
        assert_balanced(&render_html(&empty));
    }

    #[test]
    fn six_months_of_retention_are_judged_at_the_end_of_the_range() {
        let short = ComplianceReport::build(sample(), &verified(), all_range());
        assert!(!short.retention.six_months);
        assert_eq!(short.retention.retained_days, 3);
        let range = |days| ReportRange {
            since: at(days - 1, 0),
            until: at(days, 0),
        };
        let r = ComplianceReport::build(sample(), &verified(), range(182));
        assert!(!r.retention.six_months);
        let r = ComplianceReport::build(sample(), &verified(), range(183));
        assert!(r.retention.six_months);
        assert_eq!(r.retention.retained_days, 183);
        assert!(render_markdown(&r).contains("At least six months of logs are retained (183 days"));
    }

    #[test]
    fn markdown_has_every_section_as_tables() {
        let md = render_markdown(&ComplianceReport::build(sample(), &verified(), all_range()));
        for heading in [
            "## Verification status of the covered range",
            "## Art. 12 — automatic logging: events by type",
            "## Art. 12(2)(a) — situations of risk",
            "## Art. 12(2)(b) — post-market monitoring: trend per day",
            "## Art. 12(2)(c) and 26(5) — deployer monitoring: activity per agent",
            "## Art. 14(4)(e) — human oversight: halts and their causes",
            "## Art. 14 — approvals and approvers",
            "## Art. 19 and 26(6) — retention",
            "## Art. 73 — serious incident candidates",
            "## ISO/IEC 42001 9.1 — monitoring and measurement: decisions by verdict",
            "## ISO/IEC 42001 10.2 — nonconformity: denials by rule",
            "## ISO/IEC 42001 10.2 — budget breaches",
            "## ISO/IEC 42001 10.2 — corrective action: policy changes",
            "## Access: token changes",
        ] {
            assert!(md.contains(heading), "missing {heading}\n{md}");
        }
        assert!(md.contains("**✅ Verification OK"), "{md}");
        assert!(md.contains("| entries verified | 13 |"), "{md}");
        assert!(
            md.contains(&format!("| Merkle root | {} |", "07".repeat(32))),
            "{md}"
        );
        assert!(md.contains("| deny | 2 | 33.3% |"), "{md}");
        assert!(md.contains("| total | 6 | 100.0% |"), "{md}");
        assert!(
            md.contains(
                "| 4 | 2026-11-21T20:19:35.042Z | alice | approved | a-1 | bot | deploy | ok |"
            ),
            "{md}"
        );
        assert!(md.contains("| aaa | bbb | yes | bot may deploy |"), "{md}");
        assert!(md.contains("CANDIDATES ONLY"), "{md}");
        assert!(md.contains("| 2026-11-22 | 0 | 0 | 2 | 2 | 2 |"), "{md}");
        let failed = ComplianceReport::build(
            sample(),
            &Err(AuditError::Tampered {
                seq: 3,
                reason: "checksum mismatch".into(),
            }),
            all_range(),
        );
        let md = render_markdown(&failed);
        assert!(md.contains("**❌ Verification FAILED:"), "{md}");
        assert!(md.contains("checksum mismatch"), "{md}");
    }

    #[test]
    fn html_is_self_contained_balanced_and_has_one_bar_per_value() {
        let mut r = ComplianceReport::build(sample(), &verified(), all_range());
        r.approvals[0].reason = "<script>alert(1)</script> & \"x\"".into();
        let html = render_html(&r);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("<script"), "escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(
            !html.contains("http://") || !html.contains("src="),
            "no external assets"
        );
        assert!(!html.contains("<link") && !html.contains("<img"));
        assert_balanced(&html);
        assert_eq!(html.matches("<svg ").count(), 3);
        // Per day: day 0 allow+escalate, day 1 deny+halt, day 2 nothing decided → 4; share: 4 verdicts;
        // top rules: 4 rules.
        assert_eq!(html.matches("<rect class=\"bar\"").count(), 4 + 4 + 4);
        assert!(html.contains("class=\"status ok\""));
    }

    /// Every element the renderer emits is closed, in order (a small tag matcher, enough for our own output).
    fn assert_balanced(html: &str) {
        const VOID: [&str; 3] = ["meta", "line", "!DOCTYPE"];
        let mut stack: Vec<String> = Vec::new();
        let mut rest = html;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').expect("unclosed <");
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().unwrap_or_else(|| panic!("stray </{name}>"));
                assert_eq!(open, name, "mismatched tags");
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                if !VOID.contains(&name.as_str()) && !tag.ends_with('/') {
                    stack.push(name);
                }
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn the_read_only_reader_sees_a_gapless_prefix_while_a_writer_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("audit");
        let config = AuditConfig {
            dir: log_dir.clone(),
            key_path: dir.path().join("key"),
            origin: "test.local/audit".into(),
            segment_bytes: 4096,
            checkpoint_interval: Duration::from_millis(5),
        };
        let (log, _) = AuditLog::open(config).unwrap();
        let log = std::sync::Arc::new(log);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        const TOTAL: u64 = 600;
        let writer = {
            let log = log.clone();
            rt.spawn(async move {
                for i in 0..TOTAL {
                    let e = decision(at(0, i as i64), "bot", Verdict::Allow, &["tools"], &["ok"]);
                    log.append(e).await.unwrap();
                }
            })
        };
        // Read while appending: always a gapless prefix, never shrinking, never an error.
        let mut last = 0;
        let mut reads_during = 0;
        while !writer.is_finished() {
            let got: Vec<LoggedEntry> = read_entries(&log_dir)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for (i, e) in got.iter().enumerate() {
                assert_eq!(e.seq, i as u64);
            }
            assert!(got.len() >= last, "the prefix shrank");
            last = got.len();
            reads_during += 1;
        }
        rt.block_on(writer).unwrap();
        assert!(reads_during > 0);
        let all: Vec<LoggedEntry> = read_entries(&log_dir)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all.len() as u64, TOTAL);
        assert!(
            std::fs::read_dir(log_dir.join("segments")).unwrap().count() > 1,
            "several segments"
        );
        // A torn tail at the end of the last segment is "not yet written".
        let mut segs: Vec<_> = std::fs::read_dir(log_dir.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segs.sort();
        let last_seg = segs.last().unwrap().clone();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last_seg)
            .unwrap();
        std::io::Write::write_all(&mut f, &[9, 0, 0]).unwrap();
        drop(f);
        assert_eq!(
            read_entries(&log_dir).unwrap().map(Result::unwrap).count() as u64,
            TOTAL
        );
        // Damage inside a sealed segment is an error, after the valid entries before it.
        let first = &segs[0];
        let mut bytes = std::fs::read(first).unwrap();
        bytes[record::FILE_HEADER_LEN + record::RECORD_HEADER_LEN + 5] ^= 1;
        std::fs::write(first, bytes).unwrap();
        let results: Vec<_> = read_entries(&log_dir).unwrap().collect();
        assert!(
            matches!(
                results.last(),
                Some(Err(AuditError::Tampered { seq: 0, .. }))
            ),
            "{results:?}"
        );
        rt.block_on(log.close()).unwrap();
    }
}
