//! Loop detection on a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use aura_core::{Action, AgentName, Estimate, RawAction, Timestamp};
use aura_govern::loops::{LoopCheck, LoopDetector, LoopSpec};
use serde_json::{Value, json};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_795_292_371_000 + ms)
}

fn action(agent: &str, args: Value) -> Action {
    Action::extract(RawAction {
        agent: AgentName::new(agent).unwrap(),
        task: None,
        kind: "tool_call".into(),
        target: "search".into(),
        args,
        estimate: Estimate::default(),
        labels: BTreeMap::new(),
    })
    .unwrap()
}

fn detector(threshold: u32, max_keys_per_agent: usize) -> LoopDetector {
    LoopDetector::new(LoopSpec {
        threshold,
        window: Duration::from_secs(60),
        max_keys_per_agent,
        max_agents: 100,
    })
    .unwrap()
}

fn check(count: u32, tripped: bool) -> LoopCheck {
    LoopCheck { count, tripped }
}

#[test]
fn the_same_action_repeated_trips_at_the_threshold() {
    let d = detector(3, 100);
    let a = action("bot", json!({"q": "weather"}));
    assert_eq!(d.observe(&a, at(0)), check(1, false));
    assert_eq!(d.observe(&a, at(1_000)), check(2, false));
    // Different args, another agent: separate keys.
    assert_eq!(
        d.observe(&action("bot", json!({"q": "news"})), at(1_500)),
        check(1, false)
    );
    assert_eq!(
        d.observe(&action("other", json!({"q": "weather"})), at(1_500)),
        check(1, false)
    );
    assert_eq!(d.observe(&a, at(2_000)), check(3, true));
    // The count saturates at the threshold and stays tripped while repeats continue.
    assert_eq!(d.observe(&a, at(3_000)), check(3, true));
    // Key order in args does not matter (the hash is over canonical args).
    let b = action("bot", json!({"n": 1, "q": "x"}));
    let c = action("bot", json!({"q": "x", "n": 1}));
    d.observe(&b, at(0));
    d.observe(&c, at(0));
    assert!(d.observe(&b, at(0)).tripped);
}

#[test]
fn the_window_slides() {
    let d = detector(3, 100);
    let a = action("bot", json!({}));
    d.observe(&a, at(0));
    d.observe(&a, at(30_000));
    assert_eq!(d.observe(&a, at(59_999)), check(3, true));
    let d = detector(3, 100);
    d.observe(&a, at(0));
    d.observe(&a, at(30_000));
    // The first occurrence is exactly one window old: out.
    assert_eq!(d.observe(&a, at(60_000)), check(2, false));
    // Long after, it starts over.
    assert_eq!(d.observe(&a, at(600_000)), check(1, false));
}

#[test]
fn memory_is_bounded_per_agent_and_hot_keys_survive() {
    let d = detector(3, 8);
    let hot = action("bot", json!({"hot": true}));
    d.observe(&hot, at(0));
    d.observe(&hot, at(1));
    for i in 0..1_000 {
        d.observe(&action("bot", json!({ "i": i })), at(i64::from(i) + 2));
        // Keep the hot key recent so the stalest-key eviction never picks it.
        if i % 4 == 0 {
            let _ = d.observe(&hot, at(i64::from(i) + 2));
        }
    }
    assert!(d.tracked_keys() <= 8, "{}", d.tracked_keys());
    assert!(d.observe(&hot, at(2_000)).tripped);
    let tracked = d.tracked_keys();
    assert_eq!(d.evict_idle(at(200_000)), tracked);
    assert_eq!(d.tracked_keys(), 0);
}

#[test]
fn clearing_an_agent_forgets_its_repeats() {
    let d = detector(2, 10);
    let a = action("bot", json!({}));
    d.observe(&a, at(0));
    assert!(d.observe(&a, at(1)).tripped);
    d.clear_agent(&AgentName::new("bot").unwrap());
    assert_eq!(d.observe(&a, at(2)), check(1, false));
}

#[test]
fn invalid_specs_are_rejected() {
    for spec in [
        LoopSpec {
            threshold: 1,
            window: Duration::from_secs(1),
            max_keys_per_agent: 1,
            max_agents: 1,
        },
        LoopSpec {
            threshold: 3,
            window: Duration::ZERO,
            max_keys_per_agent: 1,
            max_agents: 1,
        },
        LoopSpec {
            threshold: 3,
            window: Duration::from_secs(1),
            max_keys_per_agent: 0,
            max_agents: 1,
        },
        LoopSpec {
            threshold: 20_000,
            window: Duration::from_secs(1),
            max_keys_per_agent: 1,
            max_agents: 1,
        },
    ] {
        assert!(LoopDetector::new(spec).is_err(), "{spec:?}");
    }
}
