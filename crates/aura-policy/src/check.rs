//! The static validator behind `aura policy check`, and the widening check behind reloads.
//!
//! Each finding carries a concrete example built from the rules' own literals (agent names,
//! targets, argument values, labels, times, counter thresholds) and confirmed with the real
//! evaluator, so an example is never wrong. The classes are proven syntactically (dead rules,
//! shadowing) or by that confirmed example (conflicts); the search for examples is bounded, so a
//! finding may be missed but never invented.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aura_core::{Action, ActionKind, AgentName, Estimate, RawAction, Timestamp, Verdict};
use serde_json::{Map, Value};

use crate::error::Location;
use crate::eval::{Evaluation, Facts, field_holds_value};
use crate::set::PolicySet;
use crate::spec::*;

/// Monday 2026-01-05 00:00 UTC: the time of examples that need no particular time.
const BASE_MILLIS: i64 = 1_767_571_200_000;
/// At most this many candidate actions are tried per example.
const MAX_TRIES: usize = 256;

/// A concrete example: an action, the time it is decided at and the counter values it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// The action.
    pub action: Action,
    /// The time of the decision.
    pub at: Timestamp,
    /// Counter values (any window); counters not listed are zero.
    pub counts: Vec<(CounterQuery, u64)>,
}

impl Facts for Witness {
    fn count(&self, _: &AgentName, query: &CounterQuery, _: u64) -> u64 {
        self.counts
            .iter()
            .filter(|(q, _)| q == query)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }
}

impl Witness {
    /// Evaluates the example against a set.
    pub fn evaluate(&self, set: &PolicySet) -> Evaluation {
        set.evaluate(&self.action, self.at, self)
    }
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.action;
        write!(f, "`{}` `{}` by `{}`", a.kind(), a.target(), a.agent())?;
        if a.args().as_object().is_some_and(|m| !m.is_empty()) {
            write!(f, " with args {}", a.args())?;
        }
        if !a.labels().is_empty() {
            let labels: Vec<String> = a.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, " labelled {}", labels.join(","))?;
        }
        if self.at.as_millis() != BASE_MILLIS {
            let day = Weekday::of_millis(self.at.as_millis()).as_str();
            write!(f, " on {day} {}", self.at)?;
        }
        for (q, n) in &self.counts {
            let kind = q.kind.map_or(String::new(), |k| format!(" `{k}`"));
            write!(f, " after {n}{kind} {} events", q.event.as_str())?;
        }
        Ok(())
    }
}

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingClass {
    /// An agent, pool or level is referenced but not defined.
    UnknownReference,
    /// Agents depend on each other in a cycle.
    DependencyCycle,
    /// An allow rule and a deny/halt/escalate rule match the same actions.
    Conflict,
    /// A rule never changes an outcome: a rule of higher-or-equal precedence matches all it matches.
    Shadowed,
    /// A rule can match nothing (or, for an undeclared agent, change nothing).
    Dead,
    /// An allow rule without effective conditions: it allows every action of its kinds.
    AlwaysAllow,
}

impl FindingClass {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingClass::UnknownReference => "unknown_reference",
            FindingClass::DependencyCycle => "dependency_cycle",
            FindingClass::Conflict => "conflict",
            FindingClass::Shadowed => "shadowed",
            FindingClass::Dead => "dead",
            FindingClass::AlwaysAllow => "always_allow",
        }
    }
}

/// One finding of the validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The class.
    pub class: FindingClass,
    /// Where (the rule, agent, pool or budget concerned).
    pub at: Option<Location>,
    /// The rule concerned.
    pub rule: Option<RuleId>,
    /// The other rule involved (conflicts, shadowing).
    pub other: Option<RuleId>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
    /// An example demonstrating it, with its evaluation by the set.
    pub example: Option<(Witness, Evaluation)>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(
            f,
            "{}: {}\n  hint: {}",
            self.class.as_str(),
            self.message,
            self.hint
        )?;
        if let Some((w, e)) = &self.example {
            let rules: Vec<&str> = e.matched_rules.iter().map(RuleId::as_str).collect();
            write!(f, "\n  example: {w} -> {}", e.verdict)?;
            if !rules.is_empty() {
                write!(f, " (matches {})", rules.join(", "))?;
            }
        }
        Ok(())
    }
}

/// An action the new set lets through (allow or escalate) where the old one refused it, or
/// allows where the old one escalated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widening {
    /// The example.
    pub example: Witness,
    /// Its evaluation by the old set.
    pub old: Evaluation,
    /// Its evaluation by the new set.
    pub new: Evaluation,
}

impl fmt::Display for Widening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.example, self.old.verdict, self.new.verdict
        )
    }
}

/// Runs every static check on a set. Findings are sorted by location.
pub fn check(set: &PolicySet) -> Vec<Finding> {
    let mut out = Vec::new();
    references(set, &mut out);
    let rules = set.rules();
    let dead: Vec<Option<(String, String)>> = rules.iter().map(|r| dead_reason(set, r)).collect();
    for (i, rule) in rules.iter().enumerate() {
        if let Some((message, hint)) = &dead[i] {
            out.push(dead_finding(set, rule, message, hint));
            continue;
        }
        if rule.then.verdict == Verdict::Allow && is_unconditional(rule) {
            let example = witness(set, &[rule]).map(|w| {
                let e = w.evaluate(set);
                (w, e)
            });
            let kinds = rule.when.kind.as_ref().map_or_else(
                || "every kind".to_owned(),
                |k| {
                    k.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
            out.push(Finding {
                class: FindingClass::AlwaysAllow,
                at: Some(rule.at.clone()),
                rule: Some(rule.id.clone()),
                other: None,
                message: format!("rule `{}` allows every action of {kinds} by every agent", rule.id),
                hint: "narrow it with `agent`, `target`, `args` or `labels`; levels still cap file, network and shell actions".to_owned(),
                example,
            });
        }
    }
    // Shadowing: a later (or strictly weaker) rule covered by one of higher-or-equal precedence.
    let mut shadowed = vec![false; rules.len()];
    for (i, r) in rules.iter().enumerate() {
        if dead[i].is_some() {
            continue;
        }
        for (j, s) in rules.iter().enumerate() {
            if i == j
                || dead[j].is_some()
                || s.then.verdict < r.then.verdict
                || !covers(&s.when, &r.when)
            {
                continue;
            }
            let mutual = s.then.verdict == r.then.verdict && covers(&r.when, &s.when);
            if mutual && j > i {
                continue;
            }
            let example = witness(set, &[r, s]).map(|w| {
                let e = w.evaluate(set);
                (w, e)
            });
            out.push(Finding {
                class: FindingClass::Shadowed,
                at: Some(r.at.clone()),
                rule: Some(r.id.clone()),
                other: Some(s.id.clone()),
                message: format!(
                    "rule `{}` ({}) never changes an outcome: rule `{}` ({}) matches every action it matches",
                    r.id, r.then.verdict, s.id, s.then.verdict
                ),
                hint: "remove the rule, or narrow the other one".to_owned(),
                example,
            });
            shadowed[i] = true;
            break;
        }
    }
    // Conflicts: an allow and a refusing rule that match a common action.
    for (i, a) in rules.iter().enumerate() {
        if a.then.verdict != Verdict::Allow || dead[i].is_some() || shadowed[i] {
            continue;
        }
        for (j, b) in rules.iter().enumerate() {
            if b.then.verdict == Verdict::Allow || dead[j].is_some() || disjoint(&a.when, &b.when) {
                continue;
            }
            let Some(w) = witness(set, &[a, b]) else {
                continue;
            };
            let e = w.evaluate(set);
            out.push(Finding {
                class: FindingClass::Conflict,
                at: Some(a.at.clone()),
                rule: Some(a.id.clone()),
                other: Some(b.id.clone()),
                message: format!(
                    "rule `{}` allows actions that rule `{}` ({}) refuses; {} wins",
                    a.id, b.id, b.then.verdict, b.then.verdict
                ),
                hint: "if that is intended (an exception), nothing to do; otherwise narrow one of the rules".to_owned(),
                example: Some((w, e)),
            });
        }
    }
    out.sort_by(|x, y| x.at.cmp(&y.at).then(x.class.cmp(&y.class)));
    out
}

/// Actions that `new` lets through (allow or escalate) where `old` refused them, or allows where
/// `old` escalated. The examples come from the rules and levels of both sets.
pub fn widening(old: &PolicySet, new: &PolicySet) -> Vec<Widening> {
    let mut candidates: Vec<Witness> = Vec::new();
    for set in [old, new] {
        for rule in set.rules() {
            for variant in variants(&rule.when) {
                candidates.extend(build(set, &[&variant], &|_| true));
            }
        }
        candidates.extend(level_witnesses(set));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for w in candidates {
        let key = (
            w.action.agent().to_string(),
            w.action.kind(),
            w.action.target().to_owned(),
            w.action.args_hash_hex(),
            w.action.labels().clone(),
            w.at,
            format!("{:?}", w.counts),
        );
        if !seen.insert(key) {
            continue;
        }
        let before = w.evaluate(old);
        let after = w.evaluate(new);
        if rank(after.verdict) < rank(before.verdict) {
            out.push(Widening {
                example: w,
                old: before,
                new: after,
            });
        }
    }
    out
}

/// The conditions split into one per listed agent and target glob (at most 16), so every
/// alternative a rule allows gets its own example.
fn variants(c: &Conditions) -> Vec<Conditions> {
    let split = |ps: &Option<Vec<Pattern>>| -> Vec<Option<Vec<Pattern>>> {
        match ps {
            Some(ps) if !ps.is_empty() => {
                ps.iter().take(4).map(|p| Some(vec![p.clone()])).collect()
            }
            other => vec![other.clone()],
        }
    };
    let mut out = Vec::new();
    for agent in split(&c.agent) {
        for target in split(&c.target) {
            out.push(Conditions {
                agent: agent.clone(),
                target,
                ..c.clone()
            });
        }
    }
    out
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Escalate => 1,
        Verdict::Deny | Verdict::Halt => 2,
    }
}

fn references(set: &PolicySet, out: &mut Vec<Finding>) {
    let star = set.agents().iter().any(|a| a.name == "*");
    let declared = |name: &str| star || set.agents().iter().any(|a| a.name == name);
    let mut unknown =
        |at: &Location, message: String, hint: &str, example: Option<(Witness, Evaluation)>| {
            out.push(Finding {
                class: FindingClass::UnknownReference,
                at: Some(at.clone()),
                rule: None,
                other: None,
                message,
                hint: hint.to_owned(),
                example,
            });
        };
    for a in set.agents() {
        if set.level(&a.level).is_none() {
            let example = AgentName::new(if a.name == "*" { "any-agent" } else { &a.name })
                .ok()
                .and_then(|agent| {
                    make_action(
                        &agent,
                        ActionKind::FileRead,
                        "/workspace/file.txt",
                        Map::new(),
                        BTreeMap::new(),
                    )
                })
                .map(|action| {
                    let w = Witness {
                        action,
                        at: Timestamp::from_millis(BASE_MILLIS),
                        counts: Vec::new(),
                    };
                    let e = w.evaluate(set);
                    (w, e)
                });
            let names: Vec<&str> = set.levels().iter().map(|l| l.name.as_str()).collect();
            unknown(
                &a.at,
                format!(
                    "agent `{}` has level `{}`, which is not defined",
                    a.name, a.level
                ),
                &format!(
                    "use one of {} or define the level under `levels:`; until then its file, network and shell actions are denied",
                    names.join(", ")
                ),
                example,
            );
        }
        for p in &a.pools {
            if !set.pools().iter().any(|pool| &pool.name == p) {
                unknown(
                    &a.at,
                    format!(
                        "agent `{}` draws from pool `{p}`, which is not defined",
                        a.name
                    ),
                    "define the pool under `pools:` or remove it from the agent",
                    None,
                );
            }
        }
        for d in &a.depends_on {
            if !declared(d) {
                unknown(
                    &a.at,
                    format!("agent `{}` depends on `{d}`, which is not declared", a.name),
                    "declare the agent under `agents:` or fix the name",
                    None,
                );
            }
        }
    }
    for p in set.pools() {
        for m in &p.members {
            if !declared(m) {
                unknown(
                    &p.at,
                    format!(
                        "pool `{}` lists member `{m}`, which is not declared",
                        p.name
                    ),
                    "declare the agent under `agents:` or fix the name",
                    None,
                );
            }
        }
    }
    let scopes = set
        .budgets()
        .iter()
        .map(|b| (&b.scope, &b.at, b.id.as_str()))
        .chain(
            set.rate_limits()
                .iter()
                .map(|r| (&r.scope, &r.at, r.id.as_str())),
        )
        .chain(
            set.bulkheads()
                .iter()
                .map(|b| (&b.scope, &b.at, b.id.as_str())),
        );
    for (scope, at, id) in scopes {
        match &scope.subject {
            Subject::Pool(p) if !set.pools().iter().any(|pool| &pool.name == p) => {
                unknown(
                    at,
                    format!("`{id}` applies to pool `{p}`, which is not defined"),
                    "define the pool under `pools:` or fix the name",
                    None,
                );
            }
            Subject::Agent(p) if p.is_literal() && !declared(p.as_str()) => {
                unknown(
                    at,
                    format!(
                        "`{id}` applies to agent `{}`, which is not declared",
                        p.as_str()
                    ),
                    "declare the agent under `agents:` or fix the name",
                    None,
                );
            }
            _ => {}
        }
    }
    for b in set.budgets() {
        for t in &b.actions {
            if let BudgetAction::Pause { agents } = &t.action {
                for a in agents.iter().filter(|a| !declared(a)) {
                    unknown(
                        &b.at,
                        format!(
                            "budget `{}` pauses agent `{a}`, which is not declared",
                            b.id
                        ),
                        "declare the agent under `agents:` or fix the name",
                        None,
                    );
                }
            }
        }
    }
    if let Some(cycle) = set.dependencies().cycle() {
        let at = set
            .agents()
            .iter()
            .find(|a| Some(&a.name) == cycle.first())
            .map(|a| a.at.clone());
        out.push(Finding {
            class: FindingClass::DependencyCycle,
            at,
            rule: None,
            other: None,
            message: format!(
                "agents depend on each other in a cycle: {}",
                cycle.join(" -> ")
            ),
            hint: "remove one `depends_on` entry so that a halt cannot cascade in a circle"
                .to_owned(),
            example: None,
        });
    }
}

// ---- dead rules ----

fn dead_reason(set: &PolicySet, rule: &Rule) -> Option<(String, String)> {
    let c = &rule.when;
    if c.kind.as_ref().is_some_and(Vec::is_empty) {
        return Some((
            "its `kind` list is empty".to_owned(),
            "list at least one kind".to_owned(),
        ));
    }
    if c.agent.as_ref().is_some_and(Vec::is_empty) {
        return Some((
            "its `agent` list is empty".to_owned(),
            "list at least one agent glob".to_owned(),
        ));
    }
    if c.time
        .as_ref()
        .is_some_and(|t| t.days.as_ref().is_some_and(Vec::is_empty))
    {
        return Some((
            "its `time.days` list is empty".to_owned(),
            "list at least one day".to_owned(),
        ));
    }
    if let Some(l) = c.labels.iter().find(|l| l.values.is_empty()) {
        return Some((
            format!("its label `{}` has no values", l.key),
            "list at least one value glob".to_owned(),
        ));
    }
    if let Some(targets) = &c.target {
        let kinds = c.kind.clone().unwrap_or_else(|| ActionKind::ALL.to_vec());
        let possible = kinds
            .iter()
            .any(|k| targets.iter().any(|p| target_possible(*k, p)));
        if !possible {
            let shown: Vec<String> = targets
                .iter()
                .map(|p| format!("`{}`", p.as_str()))
                .collect();
            let kinds: Vec<String> = kinds.iter().map(|k| format!("`{k}`")).collect();
            return Some((
                format!("no {} action can have a target matching {}", kinds.join("/"), shown.join(", ")),
                "targets are canonical: absolute normalised paths for files (`/srv/**`), full URLs with a path for http (`https://api.example.com/**`), one program for shell, plain names otherwise".to_owned(),
            ));
        }
    }
    for field in &c.args {
        if let Some(why) = field_contradiction(field) {
            return Some((
                format!(
                    "its condition on `{}` can never hold: {why}",
                    field.path.join(".")
                ),
                "fix the bounds or values so that some value satisfies them all".to_owned(),
            ));
        }
    }
    if let Some(agents) = &c.agent {
        let star = set.agents().iter().any(|a| a.name == "*");
        let any_declared = set
            .agents()
            .iter()
            .any(|a| a.name != "*" && agents.iter().any(|p| p.is_match(&a.name)));
        if !star && !any_declared && rule.then.verdict != Verdict::Halt {
            let shown: Vec<String> = agents.iter().map(|p| format!("`{}`", p.as_str())).collect();
            return Some((
                format!(
                    "its agents {} match no declared agent, and undeclared agents are always denied",
                    shown.join(", ")
                ),
                "declare the agents under `agents:` (or add a `\"*\"` entry), or fix the glob"
                    .to_owned(),
            ));
        }
    }
    None
}

fn dead_finding(set: &PolicySet, rule: &Rule, message: &str, hint: &str) -> Finding {
    // The example satisfies what it can of the rule and shows it does not match (or, for undeclared
    // agents, that the action is denied anyway).
    let mut relaxed = rule.clone();
    relaxed.when.target = None;
    relaxed.when.args.clear();
    relaxed.when.labels.retain(|l| !l.values.is_empty());
    if relaxed.when.kind.as_ref().is_some_and(Vec::is_empty) {
        relaxed.when.kind = None;
    }
    if relaxed.when.agent.as_ref().is_some_and(Vec::is_empty) {
        relaxed.when.agent = None;
    }
    if let Some(t) = &mut relaxed.when.time
        && t.days.as_ref().is_some_and(Vec::is_empty)
    {
        t.days = None;
    }
    let example = build(set, &[&relaxed.when], &|_| true).and_then(|w| {
        let e = w.evaluate(set);
        let demonstrates = !e.matched_rules.contains(&rule.id) || e.verdict >= Verdict::Deny;
        demonstrates.then_some((w, e))
    });
    Finding {
        class: FindingClass::Dead,
        at: Some(rule.at.clone()),
        rule: Some(rule.id.clone()),
        other: None,
        message: format!("rule `{}` can never apply: {message}", rule.id),
        hint: hint.to_owned(),
        example,
    }
}

/// Whether some valid canonical target of `kind` can match the glob.
fn target_possible(kind: ActionKind, pattern: &Pattern) -> bool {
    let glob = pattern.glob();
    if pattern.is_literal() {
        let Ok(agent) = AgentName::new("x") else {
            return true;
        };
        return make_action(&agent, kind, glob, Map::new(), BTreeMap::new())
            .is_some_and(|a| a.target() == glob);
    }
    let prefix: String = glob
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\'))
        .collect();
    let name_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@');
    match kind {
        ActionKind::FileRead | ActionKind::FileWrite => {
            prefix.is_empty() || prefix.starts_with('/')
        }
        ActionKind::HttpRequest => ["http://", "https://"]
            .iter()
            .any(|s| s.starts_with(&prefix) || prefix.starts_with(s)),
        ActionKind::Shell => !glob.contains(char::is_whitespace),
        ActionKind::Message => prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')),
        ActionKind::LlmCall | ActionKind::ToolCall | ActionKind::Custom => {
            prefix.chars().all(name_char)
        }
    }
}

/// Why the tests of one field can never all hold, if provably so.
fn field_contradiction(field: &FieldCondition) -> Option<String> {
    let exists_false = field.tests.contains(&FieldTest::Exists(false));
    let value_tests: Vec<&FieldTest> = field
        .tests
        .iter()
        .filter(|t| !matches!(t, FieldTest::Exists(_)))
        .collect();
    if value_tests.is_empty() {
        return None;
    }
    if exists_false {
        return Some("`exists: false` with a test on its value".to_owned());
    }
    let finite: Option<Vec<&Literal>> = value_tests.iter().find_map(|t| match t {
        FieldTest::Eq(l) => Some(vec![l]),
        FieldTest::In(ls) => Some(ls.iter().collect()),
        _ => None,
    });
    if let Some(values) = finite {
        let ok = values.iter().any(|l| {
            let v = literal_json(l);
            value_tests.iter().all(|t| field_holds_value(t, &v))
        });
        return (!ok).then(|| "no listed value passes all its tests".to_owned());
    }
    let numeric = value_tests.iter().any(|t| {
        matches!(
            t,
            FieldTest::Gt(_) | FieldTest::Gte(_) | FieldTest::Lt(_) | FieldTest::Lte(_)
        )
    });
    if numeric
        && value_tests
            .iter()
            .any(|t| matches!(t, FieldTest::Matches(_)))
    {
        return Some("`matches` needs text but the bounds need a number".to_owned());
    }
    let (lo, hi) = interval(&value_tests);
    if let (Some((l, l_open)), Some((h, h_open))) = (lo, hi)
        && (l > h || (l == h && (l_open || h_open)))
    {
        return Some("its lower bound is above its upper bound".to_owned());
    }
    None
}

/// The numeric interval `(lower, open), (upper, open)` the tests allow.
type Bound = Option<(f64, bool)>;
fn interval(tests: &[&FieldTest]) -> (Bound, Bound) {
    let mut lo: Bound = None;
    let mut hi: Bound = None;
    for t in tests {
        match t {
            FieldTest::Gt(n) | FieldTest::Gte(n) => {
                let open = matches!(t, FieldTest::Gt(_));
                if lo.is_none_or(|(l, lo_open)| *n > l || (*n == l && open && !lo_open)) {
                    lo = Some((*n, open));
                }
            }
            FieldTest::Lt(n) | FieldTest::Lte(n) => {
                let open = matches!(t, FieldTest::Lt(_));
                if hi.is_none_or(|(h, hi_open)| *n < h || (*n == h && open && !hi_open)) {
                    hi = Some((*n, open));
                }
            }
            _ => {}
        }
    }
    (lo, hi)
}

fn literal_json(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Number(n) => number_json(*n),
        Literal::String(s) => Value::String(s.clone()),
    }
}

fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        // INVARIANT: a whole number below 2^53 in magnitude converts exactly.
        #[allow(clippy::cast_possible_truncation)]
        let i = n as i64;
        Value::from(i)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

// ---- always-allow ----

fn is_unconditional(rule: &Rule) -> bool {
    let c = &rule.when;
    let universal = |ps: &Option<Vec<Pattern>>| {
        ps.as_ref()
            .is_none_or(|ps| ps.iter().any(|p| matches!(p.glob(), "**" | "*" | "/**")))
    };
    universal(&c.agent)
        && universal(&c.target)
        && c.args.is_empty()
        && c.labels.is_empty()
        && c.time.is_none()
        && c.count.is_none()
}

// ---- shadowing ----

/// Whether every action matching `r` also matches `s` (conservative: `false` when unsure).
fn covers(s: &Conditions, r: &Conditions) -> bool {
    let kinds = match (&s.kind, &r.kind) {
        (None, _) => true,
        (Some(sk), Some(rk)) => rk.iter().all(|k| sk.contains(k)),
        (Some(sk), None) => sk.len() == ActionKind::ALL.len(),
    };
    kinds
        && patterns_cover(&s.agent, &r.agent, true)
        && patterns_cover(&s.target, &r.target, false)
        && s.args.iter().all(|sf| {
            r.args
                .iter()
                .any(|rf| rf.path == sf.path && tests_imply(&rf.tests, &sf.tests))
        })
        && s.labels.iter().all(|sl| {
            r.labels.iter().any(|rl| {
                rl.key == sl.key
                    && rl
                        .values
                        .iter()
                        .all(|rv| sl.values.iter().any(|sv| glob_covers(sv, rv, false)))
            })
        })
        && (s.time.is_none() || s.time == r.time)
        && s.count.is_none_or(|sc| {
            r.count.is_some_and(|rc| {
                rc.query == sc.query && rc.within_ms == sc.within_ms && sc.at_least <= rc.at_least
            })
        })
}

fn patterns_cover(s: &Option<Vec<Pattern>>, r: &Option<Vec<Pattern>>, names: bool) -> bool {
    match (s, r) {
        (None, _) => true,
        (Some(s), None) => s
            .iter()
            .any(|p| p.glob() == "**" || (names && p.glob() == "*")),
        (Some(s), Some(r)) => r
            .iter()
            .all(|rp| s.iter().any(|sp| glob_covers(sp, rp, names))),
    }
}

/// Whether every string matching `r` matches `s` (conservative). `names`: no string contains `/`.
fn glob_covers(s: &Pattern, r: &Pattern, names: bool) -> bool {
    let (sg, rg) = (s.glob(), r.glob());
    if sg == rg || sg == "**" || (names && sg == "*") {
        return true;
    }
    if r.is_literal() {
        return s.is_match(rg);
    }
    let r_prefix: String = rg
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\'))
        .collect();
    if let Some(base) = sg.strip_suffix("/**")
        && !base.contains(['*', '?', '[', '{', '\\'])
    {
        return r_prefix.starts_with(&format!("{base}/"));
    }
    if let Some(base) = sg.strip_suffix('*')
        && !base.contains(['*', '?', '[', '{', '\\', '/'])
    {
        return r_prefix.starts_with(base) && !rg[base.len()..].contains('/') && !rg.contains("**");
    }
    false
}

fn tests_imply(r: &[FieldTest], s: &[FieldTest]) -> bool {
    let r_values: Vec<&FieldTest> = r
        .iter()
        .filter(|t| !matches!(t, FieldTest::Exists(_)))
        .collect();
    let (r_lo, r_hi) = interval(&r_values);
    s.iter().all(|st| match st {
        FieldTest::Exists(true) => !r_values.is_empty() || r.contains(&FieldTest::Exists(true)),
        FieldTest::Exists(false) => r.contains(&FieldTest::Exists(false)),
        FieldTest::Eq(l) => r
            .iter()
            .any(|rt| rt == st || *rt == FieldTest::In(vec![l.clone()])),
        FieldTest::In(ls) => r.iter().any(|rt| match rt {
            FieldTest::Eq(x) => ls.contains(x),
            FieldTest::In(xs) => xs.iter().all(|x| ls.contains(x)),
            _ => false,
        }),
        FieldTest::Gt(n) => r_lo.is_some_and(|(l, open)| l > *n || (l == *n && open)),
        FieldTest::Gte(n) => r_lo.is_some_and(|(l, _)| l >= *n),
        FieldTest::Lt(n) => r_hi.is_some_and(|(h, open)| h < *n || (h == *n && open)),
        FieldTest::Lte(n) => r_hi.is_some_and(|(h, _)| h <= *n),
        FieldTest::Matches(p) => r.iter().any(|rt| match rt {
            FieldTest::Matches(q) => glob_covers(p, q, false),
            FieldTest::Eq(Literal::String(x)) => p.is_match(x),
            FieldTest::In(xs) => xs
                .iter()
                .all(|x| matches!(x, Literal::String(x) if p.is_match(x))),
            _ => false,
        }),
    })
}

/// A cheap proof that no action matches both (conservative: `false` when unsure).
fn disjoint(a: &Conditions, b: &Conditions) -> bool {
    if let (Some(ka), Some(kb)) = (&a.kind, &b.kind)
        && !ka.iter().any(|k| kb.contains(k))
    {
        return true;
    }
    let literal_disjoint = |x: &Option<Vec<Pattern>>, y: &Option<Vec<Pattern>>| match (x, y) {
        (Some(x), Some(y)) => x.iter().all(|p| {
            let px: String = p
                .glob()
                .chars()
                .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\'))
                .collect();
            y.iter().all(|q| {
                let py: String = q
                    .glob()
                    .chars()
                    .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\'))
                    .collect();
                let exact = p.is_literal() && q.is_literal();
                if exact {
                    px != py
                } else {
                    !px.starts_with(&py) && !py.starts_with(&px)
                }
            })
        }),
        _ => false,
    };
    literal_disjoint(&a.agent, &b.agent) || literal_disjoint(&a.target, &b.target)
}

// ---- examples ----

/// An example matching every rule of `rules`, confirmed by the evaluator.
fn witness(set: &PolicySet, rules: &[&Rule]) -> Option<Witness> {
    let conditions: Vec<&Conditions> = rules.iter().map(|r| &r.when).collect();
    build(set, &conditions, &|e: &Evaluation| {
        rules.iter().all(|r| e.matched_rules.contains(&r.id))
    })
}

/// Searches for an action satisfying all `conditions` whose evaluation passes `accept`.
fn build(
    set: &PolicySet,
    conditions: &[&Conditions],
    accept: &dyn Fn(&Evaluation) -> bool,
) -> Option<Witness> {
    let agents = agent_candidates(set, conditions);
    let kinds: Vec<ActionKind> = ActionKind::ALL
        .into_iter()
        .filter(|k| {
            conditions
                .iter()
                .all(|c| c.kind.as_ref().is_none_or(|ks| ks.contains(k)))
        })
        .collect();
    let at = time_candidate(conditions)?;
    let mut counts: Vec<(CounterQuery, u64)> = Vec::new();
    for c in conditions.iter().filter_map(|c| c.count) {
        match counts.iter_mut().find(|(q, _)| *q == c.query) {
            Some((_, n)) => *n = (*n).max(c.at_least),
            None => counts.push((c.query, c.at_least)),
        }
    }
    let labels = label_candidate(conditions)?;
    let mut tries = 0;
    for kind in kinds {
        let targets = target_candidates(kind, conditions);
        let args_options = args_candidates(kind, conditions);
        for agent in &agents {
            for target in &targets {
                for args in &args_options {
                    tries += 1;
                    if tries > MAX_TRIES {
                        return None;
                    }
                    let Some(action) =
                        make_action(agent, kind, target, args.clone(), labels.clone())
                    else {
                        continue;
                    };
                    let w = Witness {
                        action,
                        at,
                        counts: counts.clone(),
                    };
                    if accept(&w.evaluate(set)) {
                        return Some(w);
                    }
                }
            }
        }
    }
    None
}

fn make_action(
    agent: &AgentName,
    kind: ActionKind,
    target: &str,
    args: Map<String, Value>,
    labels: BTreeMap<String, String>,
) -> Option<Action> {
    Action::extract(RawAction {
        agent: agent.clone(),
        task: None,
        kind: kind.as_str().to_owned(),
        target: target.to_owned(),
        args: Value::Object(args),
        estimate: Estimate::default(),
        labels,
    })
    .ok()
}

fn agent_candidates(set: &PolicySet, conditions: &[&Conditions]) -> Vec<AgentName> {
    let mut names: Vec<String> = set
        .agents()
        .iter()
        .filter(|a| a.name != "*")
        .map(|a| a.name.clone())
        .collect();
    for c in conditions {
        for p in c.agent.iter().flatten() {
            names.extend(instantiate(p.glob()));
        }
    }
    names.push("any-agent".to_owned());
    let mut out: Vec<AgentName> = Vec::new();
    for n in names {
        let Ok(name) = AgentName::new(n) else {
            continue;
        };
        let fits = conditions.iter().all(|c| {
            c.agent
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p.is_match(name.as_str())))
        });
        if fits && !out.contains(&name) {
            out.push(name);
        }
        if out.len() >= 4 {
            break;
        }
    }
    out
}

fn default_target(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::LlmCall => "gpt-4o",
        ActionKind::ToolCall => "search",
        ActionKind::HttpRequest => "https://example.com/",
        ActionKind::Shell => "ls",
        ActionKind::FileRead | ActionKind::FileWrite => "/workspace/file.txt",
        ActionKind::Message => "*",
        ActionKind::Custom => "task",
    }
}

fn target_candidates(kind: ActionKind, conditions: &[&Conditions]) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    for c in conditions {
        for p in c.target.iter().flatten() {
            for t in instantiate(p.glob()) {
                if matches!(kind, ActionKind::FileRead | ActionKind::FileWrite)
                    && !t.starts_with('/')
                {
                    raw.push(format!("/{t}"));
                }
                raw.push(t);
            }
        }
    }
    raw.push(default_target(kind).to_owned());
    let mut out: Vec<String> = Vec::new();
    for t in raw {
        let fits = conditions.iter().all(|c| {
            c.target
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p.is_match(&t)))
        });
        if fits && !out.contains(&t) {
            out.push(t);
        }
        if out.len() >= 4 {
            break;
        }
    }
    out
}

/// Up to a few argument objects satisfying every field condition.
fn args_candidates(kind: ActionKind, conditions: &[&Conditions]) -> Vec<Map<String, Value>> {
    let mut by_path: BTreeMap<&Vec<String>, Vec<&FieldCondition>> = BTreeMap::new();
    for c in conditions {
        for f in &c.args {
            by_path.entry(&f.path).or_default().push(f);
        }
    }
    let mut args = Map::new();
    for (path, fields) in by_path {
        let absent_ok = fields.iter().all(|f| {
            f.tests
                .iter()
                .all(|t| matches!(t, FieldTest::Exists(false)))
        });
        if absent_ok {
            continue;
        }
        let tests: Vec<&FieldTest> = fields.iter().flat_map(|f| f.tests.iter()).collect();
        let mut values = value_candidates(&tests);
        if kind == ActionKind::Shell && path.len() == 1 && path[0] == "argv" {
            values = values.into_iter().map(|v| Value::Array(vec![v])).collect();
        }
        let chosen = values.into_iter().find(|v| {
            fields.iter().all(|f| {
                let value_tests: Vec<&FieldTest> = f
                    .tests
                    .iter()
                    .filter(|t| !matches!(t, FieldTest::Exists(_)))
                    .collect();
                match v {
                    Value::Array(items) if !value_tests.is_empty() => items
                        .iter()
                        .any(|i| value_tests.iter().all(|t| field_holds_value(t, i))),
                    _ => value_tests.iter().all(|t| field_holds_value(t, v)),
                }
            })
        });
        match chosen {
            Some(v) => insert_path(&mut args, path, v),
            None => return Vec::new(),
        }
    }
    vec![args]
}

fn value_candidates(tests: &[&FieldTest]) -> Vec<Value> {
    let mut out = Vec::new();
    let (lo, hi) = interval(tests);
    for t in tests {
        match t {
            FieldTest::Eq(l) => out.push(literal_json(l)),
            FieldTest::In(ls) => out.extend(ls.iter().map(literal_json)),
            FieldTest::Matches(p) => {
                out.extend(instantiate(p.glob()).into_iter().map(Value::String))
            }
            _ => {}
        }
    }
    let l = lo.map(|(l, open)| if open { l.floor() + 1.0 } else { l.ceil() });
    let h = hi.map(|(h, open)| if open { h.ceil() - 1.0 } else { h.floor() });
    match (l, h) {
        (Some(l), _) => out.push(number_json(l)),
        (None, Some(h)) => out.push(number_json(h)),
        _ => {}
    }
    if let (Some((l, _)), Some((h, _))) = (lo, hi) {
        out.push(number_json((l + h) / 2.0));
    }
    out.push(Value::String("x".to_owned()));
    out
}

fn insert_path(args: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut map = args;
    for p in parents {
        let entry = map
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner) = entry else { return };
        map = inner;
    }
    map.insert(last.clone(), value);
}

fn label_candidate(conditions: &[&Conditions]) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut keys: BTreeMap<&str, Vec<&LabelCondition>> = BTreeMap::new();
    for c in conditions {
        for l in &c.labels {
            keys.entry(&l.key).or_default().push(l);
        }
    }
    for (key, conds) in keys {
        let candidates: Vec<String> = conds
            .iter()
            .flat_map(|l| l.values.iter())
            .flat_map(|p| instantiate(p.glob()))
            .collect();
        let value = candidates
            .into_iter()
            .find(|v| conds.iter().all(|l| l.values.iter().any(|p| p.is_match(v))))?;
        labels.insert(key.to_owned(), value);
    }
    Some(labels)
}

fn time_candidate(conditions: &[&Conditions]) -> Option<Timestamp> {
    let windows: Vec<&TimeWindow> = conditions.iter().filter_map(|c| c.time.as_ref()).collect();
    if windows.is_empty() {
        return Some(Timestamp::from_millis(BASE_MILLIS));
    }
    let mut minutes: Vec<i64> = vec![0, 12 * 60];
    for w in &windows {
        if let Some((start, end)) = w.between {
            minutes.push(i64::from(start));
            minutes.push(i64::from(end) - 1);
        }
    }
    for day in 0..7 {
        for m in &minutes {
            let millis = BASE_MILLIS + day * 86_400_000 + m.rem_euclid(1440) * 60_000;
            if windows.iter().all(|w| w.contains(millis)) {
                return Some(Timestamp::from_millis(millis));
            }
        }
    }
    None
}

/// Concrete strings a glob matches: `*`, `**` and `?` become `x`, a class its first member, an
/// alternation each of its first two choices.
fn instantiate(glob: &str) -> Vec<String> {
    (0..2)
        .map(|choice| instantiate_with(glob, choice))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn instantiate_with(glob: &str, choice: usize) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if let Some(c) = chars.get(i + 1) {
                    out.push(*c);
                }
                i += 2;
            }
            '*' => {
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
                out.push('x');
            }
            '?' => {
                out.push('x');
                i += 1;
            }
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('!' | '^'));
                if negated {
                    j += 1;
                }
                let start = j;
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                let members: Vec<char> = chars[start..j.min(chars.len())].to_vec();
                let pick = if negated {
                    ['x', 'a', '0', '_']
                        .into_iter()
                        .find(|c| !members.contains(c))
                        .unwrap_or('x')
                } else {
                    members.first().copied().unwrap_or('x')
                };
                out.push(pick);
                i = j + 1;
            }
            '{' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '}' {
                    j += 1;
                }
                let inner: String = chars[i + 1..j.min(chars.len())].iter().collect();
                let alternatives: Vec<&str> = inner.split(',').collect();
                let pick = alternatives
                    .get(choice.min(alternatives.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or("");
                out.push_str(&instantiate_with(pick, 0));
                i = j + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Examples from the levels: for each declared agent, one action per glob of its level.
fn level_witnesses(set: &PolicySet) -> Vec<Witness> {
    let mut out = Vec::new();
    for a in set.agents() {
        let name = if a.name == "*" {
            "any-agent"
        } else {
            a.name.as_str()
        };
        let Ok(agent) = AgentName::new(name) else {
            continue;
        };
        let Some(level) = set.level(&a.level) else {
            continue;
        };
        let mut targets: Vec<(ActionKind, String)> = Vec::new();
        for p in &level.read {
            targets.extend(
                instantiate(p.glob())
                    .into_iter()
                    .map(|t| (ActionKind::FileRead, t)),
            );
        }
        for p in &level.write {
            targets.extend(
                instantiate(p.glob())
                    .into_iter()
                    .map(|t| (ActionKind::FileWrite, t)),
            );
        }
        for p in &level.exec {
            targets.extend(
                instantiate(p.glob())
                    .into_iter()
                    .map(|t| (ActionKind::Shell, t)),
            );
        }
        for p in &level.network {
            for t in instantiate(p.glob()) {
                // `scheme://host:port` back to a URL.
                let Some((scheme, rest)) = t.split_once("://") else {
                    continue;
                };
                let scheme = if scheme == "http" { "http" } else { "https" };
                let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "x"));
                let port = if port.parse::<u16>().is_ok() {
                    format!(":{port}")
                } else {
                    String::new()
                };
                targets.push((ActionKind::HttpRequest, format!("{scheme}://{host}{port}/")));
            }
        }
        for kind in ActionKind::ALL {
            targets.push((kind, default_target(kind).to_owned()));
        }
        for (kind, target) in targets {
            if let Some(action) = make_action(&agent, kind, &target, Map::new(), BTreeMap::new()) {
                out.push(Witness {
                    action,
                    at: Timestamp::from_millis(BASE_MILLIS),
                    counts: Vec::new(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instantiation_picks_concrete_members() {
        assert_eq!(instantiate("/srv/**"), vec!["/srv/x".to_owned()]);
        assert_eq!(
            instantiate("gpt-{4o,5}"),
            vec!["gpt-4o".to_owned(), "gpt-5".to_owned()]
        );
        assert_eq!(instantiate("a[bc]?\\*"), vec!["abx*".to_owned()]);
        assert_eq!(instantiate("[!x]"), vec!["a".to_owned()]);
    }
}
