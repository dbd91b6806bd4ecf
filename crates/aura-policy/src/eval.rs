//! The compiled, indexed form of the rules and levels, and evaluation of an action against it.
//!
//! Evaluation is a straight pass without loops back: look the agent up, check its level, then run
//! the rules indexed under the action's kind (and, for rules naming agents literally, under its
//! agent) in declaration order. Globs are precompiled; the only allocations are the reasons and
//! rule ids of the result. No I/O: counters are read through the injected [`Facts`].

use std::collections::HashMap;
use std::sync::LazyLock;

use aura_core::{Action, ActionKind, AgentName, Reason, Timestamp, Verdict};
use globset::{GlobSet, GlobSetBuilder};
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

/// A compiled level.
#[derive(Debug, Clone)]
struct CompiledLevel {
    name: String,
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
    /// `None` when no condition or when the rule is indexed by its literal agent names.
    agent: Option<Matcher>,
    target: Option<Matcher>,
    args: Vec<FieldCondition>,
    labels: Vec<(String, Matcher)>,
    time: Option<TimeWindow>,
    count: Option<CountCondition>,
}

#[derive(Debug, Clone, Default)]
struct KindIndex {
    by_agent: HashMap<Box<str>, Vec<u32>>,
    other: Vec<u32>,
}

/// Precomputed work per declared agent: `[kind] -> the rules that can match`.
type AgentRules = Box<[Box<[u32]>; 8]>;

/// Declared agents times glob rules above this: the per-agent lists are not precomputed.
const MAX_PRECOMPUTE: usize = 20_000_000;

/// Rules and levels compiled for evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    rules: Vec<CompiledRule>,
    by_kind: [KindIndex; 8],
    /// For each declared agent, per kind, every rule whose agent condition it satisfies (in
    /// declaration order): their agent condition need not be checked again.
    per_agent: HashMap<Box<str>, AgentRules>,
    agents: HashMap<Box<str>, LevelRef>,
    star: Option<LevelRef>,
    levels: Vec<CompiledLevel>,
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
            }
            compiled.push(CompiledRule {
                id: rule.id.clone(),
                verdict: rule.then.verdict,
                reason: rule.then.reason.clone(),
                agent: match (agent, literal_agents) {
                    (Some(a), None) => Some(Matcher::new(a)),
                    _ => None,
                },
                target: target.as_ref().map(Matcher::new),
                args: args.clone(),
                labels: labels
                    .iter()
                    .map(|l| (l.key.clone(), Matcher::new(&l.values)))
                    .collect(),
                time: time.clone(),
                count: *count,
            });
        }
        let other_rules: usize = by_kind.iter().map(|k| k.other.len()).sum();
        let mut per_agent = HashMap::new();
        if agent_map.len().saturating_mul(other_rules) <= MAX_PRECOMPUTE {
            for name in agent_map.keys() {
                let lists: [Box<[u32]>; 8] = std::array::from_fn(|k| {
                    let index = &by_kind[k];
                    let mut list: Vec<u32> = index
                        .other
                        .iter()
                        .copied()
                        .filter(|i| {
                            compiled
                                .get(*i as usize)
                                .and_then(|r: &CompiledRule| r.agent.as_ref())
                                .is_none_or(|m| m.is_match(name))
                        })
                        .collect();
                    list.extend(index.by_agent.get(name).into_iter().flatten().copied());
                    list.sort_unstable();
                    list.dedup();
                    list.into_boxed_slice()
                });
                per_agent.insert(name.clone(), Box::new(lists));
            }
        }
        Compiled {
            rules: compiled,
            by_kind,
            per_agent,
            agents: agent_map,
            star,
            levels: compiled_levels,
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
        let mut contributions: Vec<(Verdict, String, String)> = Vec::new();
        let mut matched_rules = Vec::new();
        let mut obligations = Vec::new();
        let mut allowed = false;
        let level = self.agents.get(agent.as_str()).or(self.star.as_ref());

        if let Some(level) = level
            && matches!(
                kind,
                ActionKind::FileRead
                    | ActionKind::FileWrite
                    | ActionKind::HttpRequest
                    | ActionKind::Shell
            )
        {
            let (verdict, rule, message) = self.check_level(level, action);
            allowed |= verdict == Verdict::Allow;
            contributions.push((verdict, rule, message));
        }

        let index = &self.by_kind[kind_index(kind)];
        let (by_agent, other, check_agent): (&[u32], &[u32], bool) =
            match self.per_agent.get(agent.as_str()) {
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
            if rule_matches(rule, check_agent, action, now, facts) {
                allowed |= rule.verdict == Verdict::Allow;
                if rule.verdict == Verdict::Escalate {
                    obligations.push(Obligation::Approval {
                        rule: rule.id.clone(),
                    });
                }
                contributions.push((
                    rule.verdict,
                    rule.id.as_str().to_owned(),
                    rule.reason.clone(),
                ));
                matched_rules.push(rule.id.clone());
            }
        }

        if level.is_none() {
            contributions.push((
                Verdict::Deny,
                "unknown_agent".to_owned(),
                format!(
                    "agent `{agent}` is not declared in the policies and there is no `\"*\"` agent entry"
                ),
            ));
        }
        if !allowed {
            contributions.push((
                Verdict::Deny,
                "default_deny".to_owned(),
                format!(
                    "no rule or level allows `{kind}` on `{}`",
                    crate::yaml::shorten(action.target())
                ),
            ));
        }
        contributions.sort_by_key(|c| std::cmp::Reverse(c.0));
        let verdict = contributions.first().map_or(Verdict::Deny, |(v, _, _)| *v);
        Evaluation {
            verdict,
            reasons: contributions
                .into_iter()
                .map(|(_, rule, message)| Reason { rule, message })
                .collect(),
            matched_rules,
            obligations,
        }
    }

    fn check_level(&self, level: &LevelRef, action: &Action) -> (Verdict, String, String) {
        let level = match level {
            LevelRef::Known(i) => match self.levels.get(*i) {
                Some(l) => l,
                None => return undefined_level("?"),
            },
            LevelRef::Undefined(name) => return undefined_level(name),
        };
        let target = action.target();
        let kind = action.kind();
        let (inside, what, subject) = match kind {
            ActionKind::FileRead => (level.read.is_match(target), "read paths", target),
            ActionKind::FileWrite => (level.write.is_match(target), "write paths", target),
            ActionKind::HttpRequest => {
                let key = network_key(target);
                (level.network.is_match(&key), "network", target)
            }
            _ => {
                let name = target.rsplit('/').next().unwrap_or(target);
                let inside = level.exec_path.is_match(target) || level.exec_name.is_match(name);
                (inside, "exec list", target)
            }
        };
        let rule = format!("level:{}", level.name);
        let subject = crate::yaml::shorten(subject);
        if inside {
            (
                Verdict::Allow,
                rule,
                format!(
                    "`{kind}` of `{subject}` is within the {what} of level `{}`",
                    level.name
                ),
            )
        } else {
            (
                Verdict::Deny,
                rule,
                format!(
                    "`{kind}` of `{subject}` is outside the {what} of level `{}`",
                    level.name
                ),
            )
        }
    }
}

fn undefined_level(name: &str) -> (Verdict, String, String) {
    (
        Verdict::Deny,
        format!("level:{name}"),
        format!("level `{name}` is not defined"),
    )
}

fn compile_level(level: &Level) -> CompiledLevel {
    let (with_slash, without): (Vec<&Pattern>, Vec<&Pattern>) =
        level.exec.iter().partition(|p| p.glob().contains('/'));
    CompiledLevel {
        name: level.name.clone(),
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

/// Whether a rule matches; cheap conditions first, the injected counters last.
fn rule_matches(
    rule: &CompiledRule,
    check_agent: bool,
    action: &Action,
    now: Timestamp,
    facts: &dyn Facts,
) -> bool {
    if check_agent
        && let Some(agent) = &rule.agent
        && !agent.is_match(action.agent().as_str())
    {
        return false;
    }
    for (key, values) in &rule.labels {
        match action.labels().get(key) {
            Some(v) if values.is_match(v) => {}
            _ => return false,
        }
    }
    if let Some(time) = &rule.time
        && !time.contains(now.as_millis())
    {
        return false;
    }
    for field in &rule.args {
        if !field_holds(field, action) {
            return false;
        }
    }
    if let Some(target) = &rule.target
        && !target.is_match(action.target())
    {
        return false;
    }
    if let Some(count) = &rule.count
        && facts.count(action.agent(), &count.query, count.within_ms) < count.at_least
    {
        return false;
    }
    true
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
