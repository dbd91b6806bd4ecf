//! The compiled, indexed form of the rules and levels, and evaluation of an action against it.
//!
//! Evaluation is a straight pass without loops back: look the agent up, check its level, then run
//! the rules indexed under the action's kind (and, for rules naming agents literally, under its
//! agent) in declaration order. Globs are precompiled, and conditions shared by many rules are
//! evaluated once per action: the target against one combined glob set per kind (a bitset over
//! the distinct target conditions), agent and label globs memoized per distinct condition. Within
//! a rule, cheap checks come first and the injected counters ([`Facts`]) last, only when every
//! other condition holds. Besides the result, the only allocations are small per-action scratch
//! buffers, made on first use. No I/O.

use std::collections::HashMap;
use std::sync::LazyLock;

use aura_core::{Action, ActionKind, AgentName, Reason, Timestamp, Verdict};
use globset::{Candidate, GlobSet, GlobSetBuilder};
use serde_json::Value;

use crate::spec::{
    AgentSpec, Conditions, CountCondition, CounterQuery, FieldCondition, FieldTest, Level, Pattern,
    Rule, RuleId, TimeWindow, build_glob,
};

/// Stateful counters a rule's `count` condition reads. The governance kernel implements it with
/// sliding windows; tests use a fake.
pub trait Facts {
    /// How many events matching `query` the agent had in the last `window_ms` milliseconds.
    fn count(&self, agent: &AgentName, query: &CounterQuery, window_ms: u64) -> u64;
}

/// Facts for a world where nothing has happened yet: every counter is zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFacts;

impl Facts for NoFacts {
    fn count(&self, _: &AgentName, _: &CounterQuery, _: u64) -> u64 {
        0
    }
}

/// What the kernel must do besides the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Obligation {
    /// A human must approve the action (an `escalate` rule matched).
    Approval {
        /// The rule that asked for it.
        rule: RuleId,
    },
}

/// The outcome of evaluating one action against a policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The combined verdict (HALT > DENY > ESCALATE > ALLOW).
    pub verdict: Verdict,
    /// Every contribution, strongest verdict first (declaration order within a verdict): level
    /// checks (`level:<name>`), rules, `unknown_agent`, `default_deny`.
    pub reasons: Vec<Reason>,
    /// The ids of the rules that matched, in declaration order.
    pub matched_rules: Vec<RuleId>,
    /// What the kernel must do besides the verdict.
    pub obligations: Vec<Obligation>,
}

impl Evaluation {
    /// The decision as text: the verdict, then one `  rule: message` line per reason.
    pub fn to_text(&self) -> String {
        let mut out = self.verdict.as_str().to_owned();
        for r in &self.reasons {
            out.push_str("\n  ");
            out.push_str(&r.rule);
            out.push_str(": ");
            out.push_str(&r.message);
        }
        out
    }
}

/// A set of globs: literals compared directly, the rest in one compiled set.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    literals: Vec<Box<str>>,
    set: Option<GlobSet>,
}

impl Matcher {
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Matcher {
        let mut literals = Vec::new();
        let mut builder = GlobSetBuilder::new();
        let mut any = false;
        for p in patterns {
            if p.is_literal() {
                literals.push(p.glob().into());
            } else if let Ok(glob) = build_glob(p.glob()) {
                builder.add(glob);
                any = true;
            }
        }
        let set = if any { builder.build().ok() } else { None };
        Matcher { literals, set }
    }

    #[inline]
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.literals.iter().any(|l| &**l == text)
            || self.set.as_ref().is_some_and(|s| s.is_match(text))
    }
}

/// Many conditions' glob lists matched at once. Each condition is a list of patterns ("any of");
/// a text is matched once against all of them: literals through one hash lookup, the globs through
/// one combined [`GlobSet`]. The result is a bitset over condition ids.
#[derive(Debug, Clone, Default)]
struct MultiMatcher {
    literals: HashMap<Box<str>, Vec<u32>>,
    globs: Globs,
}

#[derive(Debug, Clone, Default)]
enum Globs {
    #[default]
    None,
    /// One set over every distinct glob; `owners[i]` are the conditions holding glob `i`.
    Combined { set: GlobSet, owners: Vec<Vec<u32>> },
    /// The combined set could not be built: each condition's own globs.
    PerCondition(Vec<(u32, Matcher)>),
}

impl MultiMatcher {
    fn new<'a>(conditions: impl IntoIterator<Item = (u32, &'a [Pattern])>) -> MultiMatcher {
        let mut literals: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut glob_ids: HashMap<&str, usize> = HashMap::new();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        let mut builder = GlobSetBuilder::new();
        let mut fallback = Vec::new();
        for (id, patterns) in conditions {
            fallback.push((id, Matcher::new(patterns)));
            for p in patterns {
                if p.is_literal() {
                    let list = literals.entry(p.glob().into()).or_default();
                    if list.last() != Some(&id) {
                        list.push(id);
                    }
                } else if let Some(&g) = glob_ids.get(p.glob()) {
                    if let Some(list) = owners.get_mut(g)
                        && list.last() != Some(&id)
                    {
                        list.push(id);
                    }
                } else if let Ok(glob) = build_glob(p.glob()) {
                    builder.add(glob);
                    glob_ids.insert(p.glob(), owners.len());
                    owners.push(vec![id]);
                }
            }
        }
        let globs = if owners.is_empty() {
            Globs::None
        } else {
            match builder.build() {
                Ok(set) => Globs::Combined { set, owners },
                Err(_) => Globs::PerCondition(
                    fallback
                        .into_iter()
                        .filter(|(_, m)| m.set.is_some())
                        .map(|(id, m)| {
                            (
                                id,
                                Matcher {
                                    literals: Vec::new(),
                                    set: m.set,
                                },
                            )
                        })
                        .collect(),
                ),
            }
        };
        MultiMatcher { literals, globs }
    }

    /// Sets the bit of every condition `text` satisfies.
    fn matches_into(&self, text: &str, scratch: &mut Vec<usize>, bits: &mut [u64]) {
        if let Some(ids) = self.literals.get(text) {
            for &id in ids {
                set_bit(bits, id);
            }
        }
        match &self.globs {
            Globs::None => {}
            Globs::Combined { set, owners } => {
                set.matches_candidate_into(&Candidate::new(text), scratch);
                for &g in scratch.iter() {
                    for &id in owners.get(g).into_iter().flatten() {
                        set_bit(bits, id);
                    }
                }
            }
            Globs::PerCondition(list) => {
                let candidate = Candidate::new(text);
                for (id, m) in list {
                    if m.set
                        .as_ref()
                        .is_some_and(|s| s.is_match_candidate(&candidate))
                    {
                        set_bit(bits, *id);
                    }
                }
            }
        }
    }
}

#[inline]
fn set_bit(bits: &mut [u64], id: u32) {
    if let Some(w) = bits.get_mut((id / 64) as usize) {
        *w |= 1 << (id % 64);
    }
}

#[inline]
fn bit(bits: &[u64], id: u32) -> bool {
    bits.get((id / 64) as usize)
        .is_some_and(|w| w & (1 << (id % 64)) != 0)
}

/// Interns glob lists so that identical conditions share an id (and are matched once per action).
#[derive(Default)]
struct Interner<K> {
    ids: HashMap<K, u32>,
    next: u32,
}

impl<K: std::hash::Hash + Eq> Interner<K> {
    /// The id of `key` and whether it is new.
    fn intern(&mut self, key: K) -> (u32, bool) {
        if let Some(&id) = self.ids.get(&key) {
            return (id, false);
        }
        let id = self.next;
        self.next = self.next.saturating_add(1);
        self.ids.insert(key, id);
        (id, true)
    }
}

fn globs_key(patterns: &[Pattern]) -> Vec<String> {
    patterns.iter().map(|p| p.glob().to_owned()).collect()
}

/// A compiled level.
#[derive(Debug, Clone)]
struct CompiledLevel {
    name: String,
    /// `level:<name>`, the rule id of its contributions.
    rule: String,
    read: Matcher,
    write: Matcher,
    network: Matcher,
    exec_path: Matcher,
    exec_name: Matcher,
}

/// An agent's level: compiled, or named but not defined (fails closed).
#[derive(Debug, Clone)]
enum LevelRef {
    Known(usize),
    Undefined(String),
}

#[derive(Debug, Clone)]
struct CompiledRule {
    id: RuleId,
    verdict: Verdict,
    reason: String,
    /// The agent condition's id in [`Compiled::agent_conditions`]; `None` when no condition or
    /// when the rule is indexed by its literal agent names.
    agent: Option<u32>,
    /// The target condition's id: a bit of the per-action target bitset.
    target: Option<u32>,
    args: Vec<FieldCondition>,
    /// Label condition ids in [`Compiled::label_conditions`].
    labels: Vec<u32>,
    time: Option<TimeWindow>,
    count: Option<CountCondition>,
}

#[derive(Debug, Clone, Default)]
struct KindIndex {
    by_agent: HashMap<Box<str>, Vec<u32>>,
    other: Vec<u32>,
    /// Every target condition of the rules of this kind, matched at once.
    targets: MultiMatcher,
}

/// Precomputed work per declared agent: `[kind] -> the rules that can match`.
type AgentRules = Box<[Box<[u32]>; 8]>;

/// Declared agents times glob rules above this: the per-agent lists are not precomputed.
const MAX_PRECOMPUTE: usize = 20_000_000;

/// A declared agent: its level and, when precomputed, its candidate rules per kind.
#[derive(Debug, Clone)]
struct AgentEntry {
    level: LevelRef,
    rules: Option<AgentRules>,
}

/// Rules and levels compiled for evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    rules: Vec<CompiledRule>,
    by_kind: [KindIndex; 8],
    /// Declared agents; with, for each, per kind, every rule whose agent condition it satisfies
    /// (in declaration order): their agent condition need not be checked again.
    agents: HashMap<Box<str>, AgentEntry>,
    star: Option<LevelRef>,
    levels: Vec<CompiledLevel>,
    /// Distinct agent-glob conditions (for undeclared agents).
    agent_conditions: Vec<Matcher>,
    /// Distinct label conditions: key and value globs.
    label_conditions: Vec<(String, Matcher)>,
    /// How many distinct target conditions (bits of the target bitset).
    target_conditions: usize,
}

fn kind_index(kind: ActionKind) -> usize {
    match kind {
        ActionKind::LlmCall => 0,
        ActionKind::ToolCall => 1,
        ActionKind::HttpRequest => 2,
        ActionKind::Shell => 3,
        ActionKind::FileRead => 4,
        ActionKind::FileWrite => 5,
        ActionKind::Message => 6,
        ActionKind::Custom => 7,
    }
}

/// Per-action memo of shared conditions: computed on first use, at most once per action.
struct Scratch {
    target_bits: Option<Vec<u64>>,
    glob_hits: Vec<usize>,
    /// 0 unknown, 1 holds, 2 does not; indexed by condition id.
    agent_memo: Vec<u8>,
    label_memo: Vec<u8>,
}

impl Compiled {
    pub(crate) fn new(rules: &[Rule], levels: &[Level], agents: &[AgentSpec]) -> Compiled {
        let compiled_levels: Vec<CompiledLevel> = levels.iter().map(compile_level).collect();
        let level_ref = |name: &str| match levels.iter().position(|l| l.name == name) {
            Some(i) => LevelRef::Known(i),
            None => LevelRef::Undefined(name.to_owned()),
        };
        let mut agent_map: HashMap<Box<str>, LevelRef> = HashMap::new();
        let mut star = None;
        for a in agents {
            if a.name == "*" {
                star = Some(level_ref(&a.level));
            } else {
                agent_map.insert(a.name.as_str().into(), level_ref(&a.level));
            }
        }
        let mut by_kind: [KindIndex; 8] = Default::default();
        let mut compiled = Vec::with_capacity(rules.len());
        let mut agent_ids: Interner<Vec<String>> = Interner::default();
        let mut agent_conditions = Vec::new();
        let mut label_ids: Interner<(String, Vec<String>)> = Interner::default();
        let mut label_conditions = Vec::new();
        let mut target_ids: Interner<Vec<String>> = Interner::default();
        // Per kind: the target conditions of its rules, with their patterns.
        let mut kind_targets: [Vec<(u32, &[Pattern])>; 8] = Default::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let Conditions {
                agent,
                kind,
                target,
                args,
                labels,
                time,
                count,
            } = &rule.when;
            let literal_agents = agent.as_ref().filter(|a| a.iter().all(Pattern::is_literal));
            let kinds: Vec<ActionKind> = kind.clone().unwrap_or_else(|| ActionKind::ALL.to_vec());
            let target_id = target.as_ref().map(|t| {
                let (id, _) = target_ids.intern(globs_key(t));
                id
            });
            for k in kinds {
                let index = &mut by_kind[kind_index(k)];
                match literal_agents {
                    Some(names) => {
                        for n in names {
                            let list = index.by_agent.entry(n.glob().into()).or_default();
                            if list.last() != Some(&i) {
                                list.push(i);
                            }
                        }
                    }
                    None => index.other.push(i),
                }
                if let (Some(id), Some(t)) = (target_id, target) {
                    let list = &mut kind_targets[kind_index(k)];
                    if !list.iter().any(|(seen, _)| *seen == id) {
                        list.push((id, t.as_slice()));
                    }
                }
            }
            let agent_id = match (agent, literal_agents) {
                (Some(a), None) => {
                    let (id, new) = agent_ids.intern(globs_key(a));
                    if new {
                        agent_conditions.push(Matcher::new(a));
                    }
                    Some(id)
                }
                _ => None,
            };
            let label_list = labels
                .iter()
                .map(|l| {
                    let (id, new) = label_ids.intern((l.key.clone(), globs_key(&l.values)));
                    if new {
                        label_conditions.push((l.key.clone(), Matcher::new(&l.values)));
                    }
                    id
                })
                .collect();
            compiled.push(CompiledRule {
                id: rule.id.clone(),
                verdict: rule.then.verdict,
                reason: rule.then.reason.clone(),
                agent: agent_id,
                target: target_id,
                args: args.clone(),
                labels: label_list,
                time: time.clone(),
                count: *count,
            });
        }
        for (index, targets) in by_kind.iter_mut().zip(kind_targets) {
            index.targets = MultiMatcher::new(targets);
        }
        let other_rules: usize = by_kind.iter().map(|k| k.other.len()).sum();
        let precompute = agent_map.len().saturating_mul(other_rules) <= MAX_PRECOMPUTE;
        let agents = agent_map
            .into_iter()
            .map(|(name, level)| {
                let rules = precompute.then(|| {
                    let lists: [Box<[u32]>; 8] = std::array::from_fn(|k| {
                        let index = &by_kind[k];
                        let mut list: Vec<u32> = index
                            .other
                            .iter()
                            .copied()
                            .filter(|i| {
                                compiled
                                    .get(*i as usize)
                                    .and_then(|r: &CompiledRule| r.agent)
                                    .and_then(|a| agent_conditions.get(a as usize))
                                    .is_none_or(|m: &Matcher| m.is_match(&name))
                            })
                            .collect();
                        list.extend(index.by_agent.get(&name).into_iter().flatten().copied());
                        list.sort_unstable();
                        list.dedup();
                        list.into_boxed_slice()
                    });
                    Box::new(lists)
                });
                (name, AgentEntry { level, rules })
            })
            .collect();
        Compiled {
            rules: compiled,
            by_kind,
            agents,
            star,
            levels: compiled_levels,
            agent_conditions,
            label_conditions,
            target_conditions: target_ids.next as usize,
        }
    }

    pub(crate) fn evaluate(
        &self,
        action: &Action,
        now: Timestamp,
        facts: &dyn Facts,
    ) -> Evaluation {
        let agent = action.agent();
        let kind = action.kind();
        let mut contributions: Vec<(Verdict, Reason)> = Vec::with_capacity(8);
        let mut matched_rules = Vec::new();
        let mut obligations = Vec::new();
        let mut allowed = false;
        let entry = self.agents.get(agent.as_str());
        let level = entry.map(|e| &e.level).or(self.star.as_ref());

        if let Some(level) = level
            && matches!(
                kind,
                ActionKind::FileRead
                    | ActionKind::FileWrite
                    | ActionKind::HttpRequest
                    | ActionKind::Shell
            )
        {
            let (verdict, reason) = self.check_level(level, action);
            allowed |= verdict == Verdict::Allow;
            contributions.push((verdict, reason));
        }

        let index = &self.by_kind[kind_index(kind)];
        let (by_agent, other, check_agent): (&[u32], &[u32], bool) =
            match entry.and_then(|e| e.rules.as_ref()) {
                Some(lists) => (&lists[kind_index(kind)], &[], false),
                None => (
                    index
                        .by_agent
                        .get(agent.as_str())
                        .map_or(&[], Vec::as_slice),
                    &index.other,
                    true,
                ),
            };
        let mut scratch = Scratch {
            target_bits: None,
            glob_hits: Vec::new(),
            agent_memo: Vec::new(),
            label_memo: Vec::new(),
        };
        let (mut a, mut b) = (by_agent.iter().peekable(), other.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            let Some(&i) = next else { break };
            let Some(rule) = self.rules.get(i as usize) else {
                continue;
            };
            if self.rule_matches(rule, index, check_agent, action, now, facts, &mut scratch) {
                allowed |= rule.verdict == Verdict::Allow;
                if rule.verdict == Verdict::Escalate {
                    obligations.push(Obligation::Approval {
                        rule: rule.id.clone(),
                    });
                }
                contributions.push((
                    rule.verdict,
                    Reason {
                        rule: rule.id.as_str().to_owned(),
                        message: rule.reason.clone(),
                    },
                ));
                matched_rules.push(rule.id.clone());
            }
        }

        if level.is_none() {
            contributions.push((
                Verdict::Deny,
                Reason {
                    rule: "unknown_agent".to_owned(),
                    message: format!(
                        "agent `{agent}` is not declared in the policies and there is no `\"*\"` agent entry"
                    ),
                },
            ));
        }
        if !allowed {
            contributions.push((
                Verdict::Deny,
                Reason {
                    rule: "default_deny".to_owned(),
                    message: format!(
                        "no rule or level allows `{kind}` on `{}`",
                        crate::yaml::shorten(action.target())
                    ),
                },
            ));
        }
        contributions.sort_by_key(|c| std::cmp::Reverse(c.0));
        let verdict = contributions.first().map_or(Verdict::Deny, |(v, _)| *v);
        Evaluation {
            verdict,
            reasons: contributions.into_iter().map(|(_, r)| r).collect(),
            matched_rules,
            obligations,
        }
    }

    /// Whether a rule matches. Shared conditions (agent and label globs, the combined target
    /// match) are computed at most once per action; the injected counters are read last.
    #[allow(clippy::too_many_arguments)]
    fn rule_matches(
        &self,
        rule: &CompiledRule,
        index: &KindIndex,
        check_agent: bool,
        action: &Action,
        now: Timestamp,
        facts: &dyn Facts,
        scratch: &mut Scratch,
    ) -> bool {
        if check_agent
            && let Some(id) = rule.agent
            && !memo(
                &mut scratch.agent_memo,
                self.agent_conditions.len(),
                id,
                || {
                    self.agent_conditions
                        .get(id as usize)
                        .is_some_and(|m| m.is_match(action.agent().as_str()))
                },
            )
        {
            return false;
        }
        if let Some(id) = rule.target {
            let bits = scratch.target_bits.get_or_insert_with(|| {
                let mut bits = vec![0u64; self.target_conditions.div_ceil(64)];
                index
                    .targets
                    .matches_into(action.target(), &mut scratch.glob_hits, &mut bits);
                bits
            });
            if !bit(bits, id) {
                return false;
            }
        }
        if let Some(time) = &rule.time
            && !time.contains(now.as_millis())
        {
            return false;
        }
        for &id in &rule.labels {
            let holds = memo(
                &mut scratch.label_memo,
                self.label_conditions.len(),
                id,
                || {
                    self.label_conditions
                        .get(id as usize)
                        .is_some_and(|(key, values)| {
                            action.labels().get(key).is_some_and(|v| values.is_match(v))
                        })
                },
            );
            if !holds {
                return false;
            }
        }
        for field in &rule.args {
            if !field_holds(field, action) {
                return false;
            }
        }
        if let Some(count) = &rule.count
            && facts.count(action.agent(), &count.query, count.within_ms) < count.at_least
        {
            return false;
        }
        true
    }

    fn check_level(&self, level: &LevelRef, action: &Action) -> (Verdict, Reason) {
        let level = match level {
            LevelRef::Known(i) => match self.levels.get(*i) {
                Some(l) => l,
                None => return undefined_level("?"),
            },
            LevelRef::Undefined(name) => return undefined_level(name),
        };
        let target = action.target();
        let kind = action.kind();
        let (inside, what) = match kind {
            ActionKind::FileRead => (level.read.is_match(target), "read paths"),
            ActionKind::FileWrite => (level.write.is_match(target), "write paths"),
            ActionKind::HttpRequest => {
                let key = network_key(target);
                (level.network.is_match(&key), "network")
            }
            _ => {
                let name = target.rsplit('/').next().unwrap_or(target);
                let inside = level.exec_path.is_match(target) || level.exec_name.is_match(name);
                (inside, "exec list")
            }
        };
        let subject = crate::yaml::shorten(target);
        let (verdict, side) = if inside {
            (Verdict::Allow, "within")
        } else {
            (Verdict::Deny, "outside")
        };
        (
            verdict,
            Reason {
                rule: level.rule.clone(),
                message: format!(
                    "`{kind}` of `{subject}` is {side} the {what} of level `{}`",
                    level.name
                ),
            },
        )
    }
}

/// `memo[id]`, computing it with `f` the first time (0 unknown, 1 holds, 2 does not).
#[inline]
fn memo(memo: &mut Vec<u8>, len: usize, id: u32, f: impl FnOnce() -> bool) -> bool {
    if memo.is_empty() {
        memo.resize(len, 0);
    }
    match memo.get(id as usize).copied() {
        Some(1) => true,
        Some(2) => false,
        _ => {
            let holds = f();
            if let Some(m) = memo.get_mut(id as usize) {
                *m = if holds { 1 } else { 2 };
            }
            holds
        }
    }
}

fn undefined_level(name: &str) -> (Verdict, Reason) {
    (
        Verdict::Deny,
        Reason {
            rule: format!("level:{name}"),
            message: format!("level `{name}` is not defined"),
        },
    )
}

fn compile_level(level: &Level) -> CompiledLevel {
    let (with_slash, without): (Vec<&Pattern>, Vec<&Pattern>) =
        level.exec.iter().partition(|p| p.glob().contains('/'));
    CompiledLevel {
        name: level.name.clone(),
        rule: format!("level:{}", level.name),
        read: Matcher::new(&level.read),
        write: Matcher::new(&level.write),
        network: Matcher::new(&level.network),
        exec_path: Matcher::new(with_slash),
        exec_name: Matcher::new(without),
    }
}

/// `scheme://host:port` of a canonical http(s) URL, the port made explicit.
pub(crate) fn network_key(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let has_port = match authority.rfind(':') {
        Some(colon) => !authority[colon..].contains(']'),
        None => false,
    };
    if has_port {
        return url[..scheme.len() + 3 + end].into();
    }
    let port = if scheme == "http" { "80" } else { "443" };
    format!("{scheme}://{authority}:{port}").into()
}

static GET: LazyLock<Value> = LazyLock::new(|| Value::String("GET".to_owned()));

/// The value at a field path; for `http_request` a missing `method` reads as `GET`.
pub(crate) fn field_value<'a>(action: &'a Action, path: &[String]) -> Option<&'a Value> {
    let mut value = action.args();
    for segment in path {
        value = match value.get(segment) {
            Some(v) => v,
            None if action.kind() == ActionKind::HttpRequest
                && path.len() == 1
                && segment == "method" =>
            {
                return Some(&GET);
            }
            None => return None,
        };
    }
    Some(value)
}

pub(crate) fn field_holds(field: &FieldCondition, action: &Action) -> bool {
    let value = field_value(action, &field.path);
    let mut value_tests = false;
    for test in &field.tests {
        match test {
            FieldTest::Exists(want) => {
                if value.is_some() != *want {
                    return false;
                }
            }
            _ => value_tests = true,
        }
    }
    if !value_tests {
        return true;
    }
    let Some(value) = value else { return false };
    let passes = |v: &Value| field.tests.iter().all(|t| field_holds_value(t, v));
    match value {
        Value::Array(items) => items.iter().any(passes),
        v => passes(v),
    }
}

/// Whether one value (not an array's elements) passes a test; `exists` always passes here.
pub(crate) fn field_holds_value(test: &FieldTest, v: &Value) -> bool {
    match test {
        FieldTest::Exists(_) => true,
        FieldTest::Eq(l) => l.equals(v),
        FieldTest::In(ls) => ls.iter().any(|l| l.equals(v)),
        FieldTest::Gt(n) => v.as_f64().is_some_and(|x| x > *n),
        FieldTest::Gte(n) => v.as_f64().is_some_and(|x| x >= *n),
        FieldTest::Lt(n) => v.as_f64().is_some_and(|x| x < *n),
        FieldTest::Lte(n) => v.as_f64().is_some_and(|x| x <= *n),
        FieldTest::Matches(p) => v.as_str().is_some_and(|s| p.is_match(s)),
    }
}
