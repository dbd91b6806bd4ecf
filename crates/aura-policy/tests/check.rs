//! The static validator and the widening check: each finding class is detected, and its example is
//! re-evaluated here to prove it demonstrates the finding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aura_core::Verdict;
use aura_policy::{Finding, FindingClass, PolicySet, check, widening};

fn set(text: &str) -> PolicySet {
    PolicySet::from_sources(&[("p.yaml", text)]).unwrap_or_else(|e| panic!("{e}"))
}

fn findings(set: &PolicySet, class: FindingClass) -> Vec<Finding> {
    check(set)
        .into_iter()
        .filter(|f| f.class == class)
        .collect()
}

const BASE: &str = "agents:\n  coder: { level: standard }\n  deploy-web: { level: elevated }\n";

#[test]
fn conflicts_are_found_with_an_action_both_rules_match() {
    let s = set(&format!(
        "{BASE}rules:\n  - id: tools\n    when: {{ kind: tool_call, agent: coder }}\n    then: allow\n  - id: no-deploy\n    when: {{ kind: tool_call, target: \"deploy-*\", args: {{ env: {{ in: [prod] }} }} }}\n    then: deny\n  - id: llm\n    when: {{ kind: llm_call }}\n    then: {{ verdict: allow }}\n"
    ));
    let found = findings(&s, FindingClass::Conflict);
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(
        (
            f.rule.as_ref().unwrap().as_str(),
            f.other.as_ref().unwrap().as_str()
        ),
        ("tools", "no-deploy")
    );
    let (w, e) = f.example.as_ref().unwrap();
    let again = w.evaluate(&s);
    assert_eq!(&again, e);
    assert_eq!(again.verdict, Verdict::Deny);
    assert!(again.matched_rules.iter().any(|r| r.as_str() == "tools"));
    assert!(
        again
            .matched_rules
            .iter()
            .any(|r| r.as_str() == "no-deploy")
    );
    assert_eq!(w.action.args()["env"], "prod");
    let text = f.to_string();
    assert!(
        text.starts_with(
            "p.yaml:5:5: conflict: rule `tools` allows actions that rule `no-deploy` (deny) refuses"
        ),
        "{text}"
    );
    assert!(text.contains("example: `tool_call` `deploy-x` by `coder` with args {\"env\":\"prod\"} -> deny (matches tools, no-deploy)"), "{text}");
}

#[test]
fn shadowed_rules_are_found() {
    let s = set(&format!(
        "{BASE}rules:\n  - id: etc\n    when: {{ kind: [file_write, file_read], target: \"/etc/**\" }}\n    then: deny\n  - id: nginx\n    when: {{ kind: file_write, target: \"/etc/nginx/**\", agent: deploy-web }}\n    then: escalate\n  - id: big\n    when: {{ kind: llm_call, args: {{ max_tokens: {{ gt: 1000 }} }} }}\n    then: escalate\n  - id: bigger\n    when: {{ kind: llm_call, args: {{ max_tokens: {{ gte: 5000, lt: 9000 }} }}, agent: coder }}\n    then: escalate\n  - id: models\n    when: {{ kind: llm_call }}\n    then: allow\n"
    ));
    let found = findings(&s, FindingClass::Shadowed);
    let ids: Vec<(&str, &str)> = found
        .iter()
        .map(|f| {
            (
                f.rule.as_ref().unwrap().as_str(),
                f.other.as_ref().unwrap().as_str(),
            )
        })
        .collect();
    assert_eq!(ids, [("nginx", "etc"), ("bigger", "big")], "{found:#?}");
    for f in &found {
        let (w, e) = f.example.as_ref().unwrap();
        let again = w.evaluate(&s);
        assert_eq!(&again, e);
        let rule = f.rule.as_ref().unwrap();
        let other = f.other.as_ref().unwrap();
        assert!(again.matched_rules.contains(rule) && again.matched_rules.contains(other));
        assert!(again.verdict >= s.rule(other.as_str()).unwrap().then.verdict);
    }
}

#[test]
fn dead_rules_are_found() {
    let s = set(&format!(
        "{BASE}rules:\n  - id: not-a-path\n    when: {{ kind: file_write, target: \"etc/*.conf\" }}\n    then: deny\n  - id: no-slash-url\n    when: {{ kind: http_request, target: \"https://api.example.com\" }}\n    then: allow\n  - id: impossible-numbers\n    when: {{ kind: llm_call, args: {{ max_tokens: {{ gt: 10, lt: 5 }} }} }}\n    then: escalate\n  - id: not-in-list\n    when: {{ kind: tool_call, args: {{ mode: {{ in: [a, b], eq: c }} }} }}\n    then: deny\n  - id: ghosts\n    when: {{ agent: \"ghost-*\", kind: llm_call }}\n    then: allow\n  - id: fine\n    when: {{ kind: file_write, target: \"/etc/**\" }}\n    then: deny\n"
    ));
    let found = findings(&s, FindingClass::Dead);
    let ids: Vec<&str> = found
        .iter()
        .map(|f| f.rule.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "not-a-path",
            "no-slash-url",
            "impossible-numbers",
            "not-in-list",
            "ghosts"
        ],
        "{found:#?}"
    );
    for f in &found {
        let (w, e) = f
            .example
            .as_ref()
            .unwrap_or_else(|| panic!("no example for {f}"));
        let again = w.evaluate(&s);
        assert_eq!(&again, e);
        let rule = f.rule.as_ref().unwrap();
        // Either the rule does not match the closest action, or the action is refused anyway.
        assert!(
            !again.matched_rules.contains(rule) || again.verdict >= Verdict::Deny,
            "{f}"
        );
    }
    let ghost = found
        .iter()
        .find(|f| f.rule.as_ref().unwrap().as_str() == "ghosts")
        .unwrap();
    assert!(
        ghost
            .example
            .as_ref()
            .unwrap()
            .1
            .reasons
            .iter()
            .any(|r| r.rule == "unknown_agent")
    );
}

#[test]
fn always_allow_rules_are_found() {
    let s = set(&format!(
        "{BASE}rules:\n  - id: anything-shell\n    when: {{ kind: shell, agent: \"*\" }}\n    then: allow\n  - id: narrow\n    when: {{ kind: shell, target: git }}\n    then: allow\n"
    ));
    let found = findings(&s, FindingClass::AlwaysAllow);
    assert_eq!(found.len(), 1, "{found:#?}");
    let (w, e) = found[0].example.as_ref().unwrap();
    assert_eq!(&w.evaluate(&s), e);
    assert!(
        e.matched_rules
            .iter()
            .any(|r| r.as_str() == "anything-shell")
    );
}

#[test]
fn unknown_references_and_cycles_are_found() {
    let s = set(
        "agents:\n  a: { level: superuser, pools: [nope], depends_on: [b] }\n  b: { depends_on: [a, zed] }\npools:\n  p: { members: [a, who] }\nbudgets:\n  - { id: x, scope: { pool: gone }, period: day, limit: { cost_usd: 1 } }\n",
    );
    let found = check(&s);
    let messages: Vec<String> = found
        .iter()
        .map(|f| format!("{} {}", f.class.as_str(), f.message))
        .collect();
    assert_eq!(
        messages,
        [
            "unknown_reference agent `a` has level `superuser`, which is not defined",
            "unknown_reference agent `a` draws from pool `nope`, which is not defined",
            "dependency_cycle agents depend on each other in a cycle: a -> b -> a",
            "unknown_reference agent `b` depends on `zed`, which is not declared",
            "unknown_reference pool `p` lists member `who`, which is not declared",
            "unknown_reference `x` applies to pool `gone`, which is not defined",
        ],
        "{found:#?}"
    );
    let (w, e) = found[0].example.as_ref().unwrap();
    assert_eq!(&w.evaluate(&s), e);
    assert_eq!(e.reasons[0].rule, "level:superuser");
}

#[test]
fn a_clean_policy_has_no_findings() {
    let s = set(&format!(
        "{BASE}rules:\n  - id: models\n    when: {{ kind: llm_call, target: \"gpt-*\" }}\n    then: allow\n  - id: search\n    when: {{ kind: tool_call, target: search, agent: coder }}\n    then: allow\n"
    ));
    assert!(check(&s).is_empty(), "{:#?}", check(&s));
}

#[test]
fn widening_lists_actions_the_new_set_lets_through() {
    let old = set(&format!(
        "{BASE}rules:\n  - id: models\n    when: {{ kind: llm_call, target: \"gpt-*\" }}\n    then: allow\n  - id: deploy\n    when: {{ kind: tool_call, target: deploy }}\n    then: escalate\n  - id: tools\n    when: {{ kind: tool_call }}\n    then: allow\n"
    ));
    let same = widening(&old, &old);
    assert!(same.is_empty(), "{same:#?}");
    let new = set(
        "agents:\n  coder: { level: elevated }\n  deploy-web: { level: elevated }\nrules:\n  - id: models\n    when: { kind: llm_call, target: [\"gpt-*\", \"claude-*\"] }\n    then: allow\n  - id: tools\n    when: { kind: tool_call }\n    then: allow\n",
    );
    let found = widening(&old, &new);
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    for w in &found {
        assert_eq!(w.example.evaluate(&old), w.old);
        assert_eq!(w.example.evaluate(&new), w.new);
        assert!(w.new.verdict < w.old.verdict);
    }
    assert!(
        text.contains(&"`llm_call` `claude-x` by `coder`: deny -> allow".to_owned()),
        "{text:#?}"
    );
    assert!(
        text.contains(&"`tool_call` `deploy` by `coder`: escalate -> allow".to_owned()),
        "{text:#?}"
    );
    // coder went from standard to elevated: its new reach shows up.
    assert!(
        text.iter().any(|t| t
            .starts_with("`file_write` `/etc/nginx/sites-available/x` by `coder`: deny -> allow")),
        "{text:#?}"
    );
    // Narrowing is not widening.
    assert!(
        widening(&new, &old)
            .iter()
            .all(|w| w.new.verdict < w.old.verdict)
    );
    assert!(widening(&new, &PolicySet::empty()).is_empty());
}
