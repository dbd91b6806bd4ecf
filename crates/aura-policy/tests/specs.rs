//! The typed specs the kernel consumes, loaded from a directory: seed 004's agents, pools and
//! budgets.yaml expressed in the policy language.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use aura_core::{ActionKind, Verdict};
use aura_policy::{
    BudgetAction, InjectionMode, OnHalt, Period, PolicyError, PolicySet, Rate, SecretsMode, Subject,
};

fn seed() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed004");
    match PolicySet::load_dir(&dir) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn seed_004_budgets_load_as_typed_specs() {
    let set = seed();
    assert_eq!(set.files(), ["agents.yaml", "budgets.yaml"]);
    let daily = &set.budgets()[0];
    assert_eq!(daily.id.as_str(), "daily-total");
    assert_eq!(daily.period, Period::Day);
    assert_eq!(daily.scope.subject, Subject::Global);
    assert_eq!(daily.limit.cost_micros, Some(100_000_000));
    assert_eq!(daily.actions.len(), 8);
    assert_eq!(daily.actions[0].at_percent, 50);
    assert!(daily.actions.iter().any(|t| t.at_percent == 100
        && t.action
            == BudgetAction::DowngradeModel {
                to: "claude-sonnet".into()
            }));
    assert_eq!(daily.actions[7].action, BudgetAction::RequireOverride);
    assert_eq!(set.budgets().len(), 8);
    let code = set
        .budgets()
        .iter()
        .find(|b| b.id.as_str() == "code-daily")
        .unwrap();
    assert!(matches!(&code.scope.subject, Subject::Agent(p) if p.as_str() == "code"));
    assert_eq!(code.limit.cost_micros, Some(25_000_000));

    let rl = &set.rate_limits()[0];
    assert_eq!(rl.scope.kind, Some(ActionKind::ToolCall));
    assert_eq!(
        rl.requests,
        Some(Rate {
            count: 60,
            per_ms: 60_000
        })
    );
    assert_eq!(
        rl.tokens,
        Some(Rate {
            count: 100_000,
            per_ms: 3_600_000
        })
    );
    let br = &set.breakers()[0];
    assert_eq!(
        (br.failures, br.within_ms, br.cool_down_ms),
        (5, 60_000, 30_000)
    );
    assert_eq!(set.bulkheads()[0].max_concurrent, 4);
    assert_eq!(set.content().secrets, SecretsMode::Redact);
    assert_eq!(set.content().shell_injection, InjectionMode::Deny);
    assert_eq!(set.loops().then, Verdict::Halt);
    assert_eq!(set.approvals().expire_after_ms, 3_600_000);
}

#[test]
fn agents_pools_and_dependencies() {
    let set = seed();
    assert_eq!(set.pools_of("research"), ["research"]);
    assert_eq!(set.pools_of("code"), ["core"]);
    let research = set.pools().iter().find(|p| p.name == "research").unwrap();
    assert_eq!(research.monthly.cost_micros, Some(400_000_000));
    assert_eq!(set.agent("infra").unwrap().on_halt, OnHalt::HaltDependents);
    assert!(set.agent("nobody").is_none());
    let deps = set.dependencies();
    assert_eq!(deps.depends_on("qa"), ["code"]);
    assert_eq!(
        deps.transitive_dependents("supervisor"),
        ["code", "data", "research", "infra", "qa"]
    );
    assert!(deps.cycle().is_none());
    assert!(
        aura_policy::check(&set).is_empty(),
        "{:#?}",
        aura_policy::check(&set)
    );
}

#[test]
fn bundle_hash_covers_names_and_contents_in_any_order() {
    let a = PolicySet::from_sources(&[("a.yaml", "rules: []\n"), ("b.yaml", "")]).unwrap();
    let b = PolicySet::from_sources(&[("b.yaml", ""), ("a.yaml", "rules: []\n")]).unwrap();
    let c = PolicySet::from_sources(&[("a.yaml", "rules: []\n"), ("c.yaml", "")]).unwrap();
    assert_eq!(a.bundle_hash(), b.bundle_hash());
    assert_ne!(a.bundle_hash(), c.bundle_hash());
    assert_eq!(a.bundle_hash().len(), 64);
    // The directory loader hashes file names, not paths: same files elsewhere, same hash.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "rules: []\n").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "ignored: [").unwrap();
    assert_eq!(
        PolicySet::load_dir(dir.path()).unwrap().bundle_hash(),
        a.bundle_hash()
    );
    assert_eq!(
        PolicySet::empty().bundle_hash(),
        PolicySet::from_sources::<&str, &str>(&[])
            .unwrap()
            .bundle_hash()
    );
}

#[test]
fn load_dir_reports_every_file_and_unreadable_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "rules:\n  - id: x\n    then: alow\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.yml"), "agents: [\n").unwrap();
    std::fs::write(dir.path().join("c.yaml"), b"agents:\n  \xff: {}\n").unwrap();
    let errors = PolicySet::load_dir(dir.path()).unwrap_err();
    let text = errors.to_string();
    let shown = dir.path().display().to_string();
    assert_eq!(errors.errors().len(), 3, "{text}");
    assert!(
        text.contains(&format!(
            "{shown}/a.yaml:3:11: `rules[0].then`: unknown verdict `alow`"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{shown}/b.yml:1:9: invalid YAML: unclosed bracket"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{shown}/c.yaml:2:3: the file is not valid UTF-8 text"
        )),
        "{text}"
    );
    let missing = PolicySet::load_dir(dir.path().join("nope")).unwrap_err();
    assert!(
        matches!(&missing.errors()[0], PolicyError::Read { reason, .. } if reason == "not found")
    );
}

#[test]
fn anchors_are_expanded_and_bombs_refused() {
    let set = PolicySet::from_sources(&[(
        "a.yaml",
        "agents:\n  a: &std { level: standard }\n  b: *std\n",
    )])
    .unwrap();
    assert_eq!(set.agent("b").unwrap().level, "standard");
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..8 {
        bomb.push_str(&format!(
            "b{i}: &b{i} [{}]\n",
            vec![
                if i == 0 {
                    "*a".to_owned()
                } else {
                    format!("*b{}", i - 1)
                };
                10
            ]
            .join(", ")
        ));
    }
    let err = PolicySet::from_sources(&[("bomb.yaml", bomb)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("too large or too deeply nested"), "{err}");
}
