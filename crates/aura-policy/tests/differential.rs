//! Differential test: a small reference interpreter, written straight from the language reference
//! over the parsed rules (no indexing, one glob at a time, URLs parsed with the `url` crate),
//! must agree with the compiled evaluator on random policies and random actions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use aura_core::{Action, ActionKind, AgentName, Estimate, RawAction, Timestamp, Verdict};
use aura_policy::{CounterQuery, Facts, FieldTest, Pattern, PolicySet};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---- the reference interpreter ----

fn glob(p: &Pattern, text: &str) -> bool {
    globset::GlobBuilder::new(p.glob())
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .unwrap()
        .compile_matcher()
        .is_match(text)
}

fn any_glob(ps: &[Pattern], text: &str) -> bool {
    ps.iter().any(|p| glob(p, text))
}

fn lookup<'a>(action: &'a Action, path: &[String], get: &'a Value) -> Option<&'a Value> {
    let mut v = action.args();
    for s in path {
        v = match v.get(s) {
            Some(x) => x,
            None if action.kind() == ActionKind::HttpRequest && path == ["method"] => {
                return Some(get);
            }
            None => return None,
        };
    }
    Some(v)
}

fn one(test: &FieldTest, v: &Value) -> bool {
    let num = v.as_f64();
    match test {
        FieldTest::Exists(_) => true,
        FieldTest::Eq(l) => l.equals(v),
        FieldTest::In(ls) => ls.iter().any(|l| l.equals(v)),
        FieldTest::Gt(n) => num.is_some_and(|x| x > *n),
        FieldTest::Gte(n) => num.is_some_and(|x| x >= *n),
        FieldTest::Lt(n) => num.is_some_and(|x| x < *n),
        FieldTest::Lte(n) => num.is_some_and(|x| x <= *n),
        FieldTest::Matches(p) => v.as_str().is_some_and(|s| glob(p, s)),
    }
}

fn reference(
    set: &PolicySet,
    action: &Action,
    now: i64,
    facts: &dyn Facts,
) -> (Verdict, Vec<String>, Vec<String>) {
    let get = Value::String("GET".into());
    let mut contributions: Vec<(Verdict, String)> = Vec::new();
    let mut allowed = false;
    let entry = set.agent(action.agent().as_str());
    if let Some(entry) = entry {
        let kind = action.kind();
        let checked = matches!(
            kind,
            ActionKind::FileRead
                | ActionKind::FileWrite
                | ActionKind::HttpRequest
                | ActionKind::Shell
        );
        if checked {
            let inside = match set.level(&entry.level) {
                None => false,
                Some(level) => match kind {
                    ActionKind::FileRead => any_glob(&level.read, action.target()),
                    ActionKind::FileWrite => any_glob(&level.write, action.target()),
                    ActionKind::HttpRequest => {
                        let url = url::Url::parse(action.target()).unwrap();
                        let key = format!(
                            "{}://{}:{}",
                            url.scheme(),
                            url.host_str().unwrap(),
                            url.port_or_known_default().unwrap()
                        );
                        any_glob(&level.network, &key)
                    }
                    _ => {
                        let base = action.target().rsplit('/').next().unwrap();
                        level.exec.iter().any(|p| {
                            if p.glob().contains('/') {
                                glob(p, action.target())
                            } else {
                                glob(p, base)
                            }
                        })
                    }
                },
            };
            allowed |= inside;
            contributions.push((
                if inside {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                format!("level:{}", entry.level),
            ));
        }
    }
    let mut matched = Vec::new();
    for rule in set.rules() {
        let c = &rule.when;
        let ok = c
            .agent
            .as_ref()
            .is_none_or(|ps| any_glob(ps, action.agent().as_str()))
            && c.kind.as_ref().is_none_or(|ks| ks.contains(&action.kind()))
            && c.target
                .as_ref()
                .is_none_or(|ps| any_glob(ps, action.target()))
            && c.labels.iter().all(|l| {
                action
                    .labels()
                    .get(&l.key)
                    .is_some_and(|v| any_glob(&l.values, v))
            })
            && c.args.iter().all(|f| {
                let v = lookup(action, &f.path, &get);
                let exists_ok = f.tests.iter().all(|t| match t {
                    FieldTest::Exists(want) => v.is_some() == *want,
                    _ => true,
                });
                let has_value_tests = f.tests.iter().any(|t| !matches!(t, FieldTest::Exists(_)));
                exists_ok
                    && (!has_value_tests
                        || v.is_some_and(|v| match v {
                            Value::Array(items) => {
                                items.iter().any(|i| f.tests.iter().all(|t| one(t, i)))
                            }
                            v => f.tests.iter().all(|t| one(t, v)),
                        }))
            })
            && c.time.as_ref().is_none_or(|t| {
                let day = ((now.div_euclid(86_400_000) + 3).rem_euclid(7)) as usize;
                let minute = (now.rem_euclid(86_400_000) / 60_000) as u16;
                let day_ok = t
                    .days
                    .as_ref()
                    .is_none_or(|ds| ds.iter().any(|d| aura_policy::Weekday::ALL[day] == *d));
                let time_ok = t.between.is_none_or(|(s, e)| {
                    if s <= e {
                        s <= minute && minute < e
                    } else {
                        minute >= s || minute < e
                    }
                });
                day_ok && time_ok
            })
            && c.count
                .is_none_or(|q| facts.count(action.agent(), &q.query, q.within_ms) >= q.at_least);
        if ok {
            allowed |= rule.then.verdict == Verdict::Allow;
            contributions.push((rule.then.verdict, rule.id.to_string()));
            matched.push(rule.id.to_string());
        }
    }
    if entry.is_none() {
        contributions.push((Verdict::Deny, "unknown_agent".into()));
    }
    if !allowed {
        contributions.push((Verdict::Deny, "default_deny".into()));
    }
    let verdict = contributions.iter().map(|c| c.0).max().unwrap();
    // Strongest first, declaration order within a verdict.
    let mut ordered = Vec::new();
    for v in [
        Verdict::Halt,
        Verdict::Deny,
        Verdict::Escalate,
        Verdict::Allow,
    ] {
        ordered.extend(
            contributions
                .iter()
                .filter(|c| c.0 == v)
                .map(|c| c.1.clone()),
        );
    }
    (verdict, ordered, matched)
}

// ---- random policies and actions ----

struct HashFacts(u64);

impl Facts for HashFacts {
    fn count(&self, agent: &AgentName, query: &CounterQuery, window_ms: u64) -> u64 {
        let text = format!("{}{agent}{query:?}{window_ms}", self.0);
        text.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 5
    }
}

const AGENTS: &[&str] = &["a", "b", "c1", "deploy-x", "zz"];
const AGENT_GLOBS: &[&str] = &["a", "b", "deploy-*", "*", "c?", "{a,zz}"];
const KINDS: &[&str] = &[
    "llm_call",
    "tool_call",
    "http_request",
    "shell",
    "file_read",
    "file_write",
    "message",
    "custom",
    "write",
];
const TARGET_GLOBS: &[&str] = &[
    "/srv/**",
    "/tmp/*",
    "gpt-*",
    "search",
    "https://api.x.com/**",
    "ls",
    "*",
    "**",
    "/srv/a/b",
    "/usr/bin/*",
];
const LEVEL_GLOBS: &[&str] = &["/srv/**", "/tmp/*", "/**", "/srv/a/*"];
const NET_GLOBS: &[&str] = &[
    "api.x.com",
    "*.x.com:443",
    "https://*",
    "http://api.x.com:8080",
    "*",
];
const EXEC_GLOBS: &[&str] = &["ls", "git", "/usr/bin/*", "*"];
const LEVELS: &[&str] = &[
    "restricted",
    "standard",
    "elevated",
    "privileged",
    "custom",
    "missing",
];
const FIELDS: &[&str] = &["n", "m", "method", "argv", "o.p"];
const VERDICTS: &[&str] = &["allow", "allow", "escalate", "deny", "halt"];

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

fn subset(all: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(all, 0..=3)
}

fn test_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..6).prop_map(|n| format!("eq: {n}")),
        Just("eq: \"POST\"".to_owned()),
        Just("eq: \"-f\"".to_owned()),
        Just("in: [\"GET\", \"DELETE\", 3]".to_owned()),
        (0i64..6).prop_map(|n| format!("gt: {n}")),
        (0i64..6).prop_map(|n| format!("gte: {n}")),
        (0i64..6).prop_map(|n| format!("lt: {n}")),
        (0i64..6).prop_map(|n| format!("lte: {n}")),
        Just("matches: \"-*\"".to_owned()),
        Just("exists: true".to_owned()),
        Just("exists: false".to_owned()),
    ]
}

fn rule_strategy() -> impl Strategy<Value = String> {
    (
        proptest::option::of(subset(AGENT_GLOBS)),
        proptest::option::of(subset(KINDS)),
        proptest::option::of(subset(TARGET_GLOBS)),
        proptest::collection::vec(
            (
                proptest::sample::select(FIELDS),
                proptest::collection::vec(test_strategy(), 1..3),
            ),
            0..3,
        ),
        proptest::option::of(prop_oneof![Just("[\"prod\"]"), Just("[\"st*\", \"dev\"]")]),
        proptest::option::of(prop_oneof![
            Just("{ days: [mon, sat] }"),
            Just("{ between: [\"18:00\", \"08:00\"] }"),
            Just("{ days: [tue], between: [\"09:00\", \"17:00\"] }"),
        ]),
        proptest::option::of((
            prop_oneof![
                Just("failure"),
                Just("denial"),
                Just("action"),
                Just("write")
            ],
            1u64..5,
        )),
        proptest::sample::select(VERDICTS),
    )
        .prop_map(
            |(agent, kind, target, args, labels, time, count, verdict)| {
                let mut when = Vec::new();
                if let Some(a) = agent {
                    when.push(format!("agent: {}", list(&a)));
                }
                if let Some(k) = kind {
                    when.push(format!("kind: [{}]", k.join(", ")));
                }
                if let Some(t) = target {
                    when.push(format!("target: {}", list(&t)));
                }
                let mut seen = Vec::new();
                let args: Vec<String> = args
                    .into_iter()
                    .filter(|(f, _)| {
                        let fresh = !seen.contains(f);
                        seen.push(*f);
                        fresh
                    })
                    .map(|(f, tests)| {
                        let mut keys = Vec::new();
                        let tests: Vec<String> = tests
                            .into_iter()
                            .filter(|t| {
                                let k = t.split(':').next().unwrap().to_owned();
                                let fresh = !keys.contains(&k);
                                keys.push(k);
                                fresh
                            })
                            .collect();
                        format!("{}: {{ {} }}", q(f), tests.join(", "))
                    })
                    .collect();
                if !args.is_empty() {
                    when.push(format!("args: {{ {} }}", args.join(", ")));
                }
                if let Some(l) = labels {
                    when.push(format!("labels: {{ env: {l} }}"));
                }
                if let Some(t) = time {
                    when.push(format!("time: {t}"));
                }
                if let Some((of, n)) = count {
                    when.push(format!("count: {{ of: {of}, at_least: {n}, within: 10m }}"));
                }
                format!("when: {{ {} }}\n    then: {verdict}", when.join(", "))
            },
        )
}

fn policy_strategy() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec((proptest::sample::select(AGENTS), proptest::sample::select(LEVELS)), 0..5),
        proptest::option::of(proptest::sample::select(LEVELS)),
        subset(LEVEL_GLOBS),
        subset(NET_GLOBS),
        subset(EXEC_GLOBS),
        proptest::collection::vec(rule_strategy(), 0..10),
    )
        .prop_map(|(agents, star, read, net, exec, rules)| {
            let mut y = format!(
                "levels:\n  custom:\n    read: {}\n    write: {}\n    network: {}\n    exec: {}\nagents:\n",
                list(&read),
                list(&read[..read.len().min(1)]),
                list(&net),
                list(&exec)
            );
            let mut seen = Vec::new();
            for (a, l) in agents {
                if !seen.contains(&a) {
                    seen.push(a);
                    y.push_str(&format!("  {a}: {{ level: {l} }}\n"));
                }
            }
            if let Some(l) = star {
                y.push_str(&format!("  \"*\": {{ level: {l} }}\n"));
            }
            y.push_str("rules:\n");
            for (i, r) in rules.iter().enumerate() {
                y.push_str(&format!("  - id: r{i}\n    {r}\n"));
            }
            y
        })
}

fn action_strategy()
-> impl Strategy<Value = (String, String, String, Value, Option<String>, i64, u64)> {
    let targets = prop_oneof![
        Just(("file_read", "/srv/a/b")),
        Just(("file_write", "/tmp/x")),
        Just(("file_write", "/srv/a/b/c")),
        Just(("file_read", "/etc/passwd")),
        Just(("http_request", "https://api.x.com/v1")),
        Just(("http_request", "http://api.x.com:8080/")),
        Just(("http_request", "https://www.x.com:8443/")),
        Just(("shell", "ls")),
        Just(("shell", "/usr/bin/git")),
        Just(("llm_call", "gpt-4o")),
        Just(("tool_call", "search")),
        Just(("message", "b")),
        Just(("custom", "x")),
    ];
    let args = prop_oneof![
        Just(json!({})),
        (0i64..6).prop_map(|n| json!({ "n": n })),
        (0i64..6, 0i64..6).prop_map(|(n, m)| json!({ "n": n, "m": m, "o": { "p": n } })),
        Just(json!({ "method": "POST" })),
        Just(json!({ "method": "DELETE", "n": "x" })),
        Just(json!({ "argv": ["-f", "x"] })),
        Just(json!({ "argv": [] })),
        (0i64..6).prop_map(|n| json!({ "n": [n, 10], "o": { "p": "-q" } })),
    ];
    (
        proptest::sample::select(AGENTS),
        targets,
        args,
        proptest::option::of(prop_oneof![Just("prod"), Just("stage"), Just("dev")]),
        0i64..(7 * 86_400_000),
        any::<u64>(),
    )
        .prop_map(|(agent, (kind, target), args, label, at, seed)| {
            (
                agent.to_owned(),
                kind.to_owned(),
                target.to_owned(),
                args,
                label.map(str::to_owned),
                at,
                seed,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn compiled_evaluator_agrees_with_the_reference(
        policy in policy_strategy(),
        actions in proptest::collection::vec(action_strategy(), 1..12),
    ) {
        let set = match PolicySet::from_sources(&[("p.yaml", policy.as_str())]) {
            Ok(set) => set,
            Err(e) => panic!("generated policy does not load: {e}\n{policy}"),
        };
        for (agent, kind, target, args, label, at, seed) in actions {
            let labels: BTreeMap<String, String> = label.into_iter().map(|l| ("env".to_owned(), l)).collect();
            let Ok(action) = Action::extract(RawAction {
                agent: AgentName::new(agent).unwrap(),
                task: None,
                kind,
                target,
                args,
                estimate: Estimate::default(),
                labels,
            }) else { continue };
            let facts = HashFacts(seed);
            let now = 1_767_571_200_000 + at;
            let got = set.evaluate(&action, Timestamp::from_millis(now), &facts);
            let (verdict, reasons, matched) = reference(&set, &action, now, &facts);
            let got_reasons: Vec<String> = got.reasons.iter().map(|r| r.rule.clone()).collect();
            let got_matched: Vec<String> = got.matched_rules.iter().map(|r| r.to_string()).collect();
            prop_assert_eq!(got.verdict, verdict, "{:?}\n{}", action, policy);
            prop_assert_eq!(got_reasons, reasons, "{:?}\n{}", action, policy);
            prop_assert_eq!(got_matched, matched, "{:?}\n{}", action, policy);
        }
    }
}

/// The synthetic fleet policies (`aura bench kernel`) share target, label and agent conditions
/// across hundreds of rules and kinds, which the combined per-kind matching relies on.
#[test]
fn compiled_evaluator_agrees_with_the_reference_on_synthetic_fleets() {
    // The reference compiles every glob on every use: a sample of each workload keeps it quick.
    for (rules, seed, sample) in [(60, 1, 200), (300, 2, 60), (1_000, 42, 20)] {
        let (set, actions) = aura_policy::synth::realistic(rules, seed);
        assert_eq!(set.rules().len(), rules);
        for (n, action) in actions.iter().enumerate().take(sample) {
            // Mondays to Sundays, around the clock, so the business-hours rules flip.
            let now = 1_767_571_200_000 + (n as i64 % 14) * 43_200_000 + (n as i64 % 97) * 60_000;
            let facts = HashFacts(n as u64);
            let got = set.evaluate(action, Timestamp::from_millis(now), &facts);
            let (verdict, reasons, matched) = reference(&set, action, now, &facts);
            let got_reasons: Vec<String> = got.reasons.iter().map(|r| r.rule.clone()).collect();
            let got_matched: Vec<String> =
                got.matched_rules.iter().map(|r| r.to_string()).collect();
            assert_eq!(got.verdict, verdict, "{action:?}");
            assert_eq!(got_reasons, reasons, "{action:?}");
            assert_eq!(got_matched, matched, "{action:?}");
        }
    }
}
