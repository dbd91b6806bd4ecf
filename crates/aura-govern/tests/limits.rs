//! Rate limits, circuit breakers and bulkheads on a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use aura_core::{Action, ActionKind, AgentName, Estimate, RawAction, Timestamp};
use aura_govern::limits::{
    Admission, BreakerSpec, BreakerState, BulkheadSpec, Bulkheads, CircuitBreakers, Cost,
    FailureRatio, LimitedBy, Outcome, Quota, RateLimitSpec, RateLimits, Scope,
};
use proptest::prelude::*;
use serde_json::json;

const T0: i64 = 1_795_292_371_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + ms)
}

fn action(agent: &str, kind: &str, target: &str, tokens: Option<u64>) -> Action {
    action_with(agent, kind, target, tokens, &[])
}

fn action_with(
    agent: &str,
    kind: &str,
    target: &str,
    tokens: Option<u64>,
    labels: &[(&str, &str)],
) -> Action {
    Action::extract(RawAction {
        agent: AgentName::new(agent).unwrap(),
        task: None,
        kind: kind.into(),
        target: target.into(),
        args: json!({}),
        estimate: Estimate {
            tokens,
            ..Estimate::default()
        },
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    })
    .unwrap()
}

fn per_minute(count: u64) -> Option<Quota> {
    Some(Quota {
        count,
        per: Duration::from_secs(60),
        burst: None,
    })
}

fn limit(id: &str, scope: Scope, requests: Option<Quota>, tokens: Option<Quota>) -> RateLimitSpec {
    RateLimitSpec {
        id: id.into(),
        scope,
        kinds: vec![],
        requests,
        tokens,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Rate limits

#[test]
fn requests_refill_and_retry_after_is_exact() {
    let limits = RateLimits::new(
        vec![limit(
            "per-agent",
            Scope::Agent("*".into()),
            per_minute(10),
            None,
        )],
        100,
    )
    .unwrap();
    let a = action("bot", "tool_call", "search", None);
    for _ in 0..10 {
        limits.check(&a, at(0)).unwrap();
    }
    let refused = limits.check(&a, at(0)).unwrap_err();
    assert_eq!(refused.limit_id, "per-agent");
    assert_eq!(refused.key, "bot");
    assert_eq!(refused.limited_by, LimitedBy::Requests);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(6)));
    // Refusals consume nothing: 1 ms before the cell is back it is still 1 ms away.
    assert_eq!(
        limits.check(&a, at(5_999)).unwrap_err().retry_after,
        Some(Duration::from_millis(1))
    );
    limits.check(&a, at(6_000)).unwrap();
    assert!(limits.check(&a, at(6_000)).is_err());
    // A full minute later the whole burst is back.
    for _ in 0..10 {
        limits.check(&a, at(66_000)).unwrap();
    }
    assert!(limits.check(&a, at(66_000)).is_err());
}

#[test]
fn explicit_burst_limits_what_can_be_spent_at_once() {
    let quota = Some(Quota {
        count: 60,
        per: Duration::from_secs(60),
        burst: Some(2),
    });
    let limits =
        RateLimits::new(vec![limit("l", Scope::Agent("*".into()), quota, None)], 10).unwrap();
    let a = action("bot", "custom", "x", None);
    limits.check(&a, at(0)).unwrap();
    limits.check(&a, at(0)).unwrap();
    assert_eq!(
        limits.check(&a, at(0)).unwrap_err().retry_after,
        Some(Duration::from_secs(1))
    );
    limits.check(&a, at(1_000)).unwrap();
}

#[test]
fn tokens_are_weighted_cells() {
    let limits = RateLimits::new(
        vec![limit(
            "tokens",
            Scope::Agent("*".into()),
            None,
            per_minute(10_000),
        )],
        10,
    )
    .unwrap();
    let a = action("bot", "llm_call", "gpt-4o", Some(3_000));
    for _ in 0..3 {
        limits.check(&a, at(0)).unwrap();
    }
    let refused = limits.check(&a, at(0)).unwrap_err();
    assert_eq!(refused.limited_by, LimitedBy::Tokens);
    // 9,000 of 10,000 used; 3,000 more needs 2,000 back, at 6 ms a token.
    assert_eq!(refused.retry_after, Some(Duration::from_secs(12)));
    limits.check(&a, at(12_000)).unwrap();
    // More than the burst can ever hold: never.
    let huge = action("bot", "llm_call", "gpt-4o", Some(10_001));
    assert_eq!(
        limits.check(&huge, at(600_000)).unwrap_err().retry_after,
        None
    );
}

#[test]
fn llm_calls_without_an_estimate_cost_their_max_tokens() {
    let limits = RateLimits::new(
        vec![limit(
            "tokens",
            Scope::Agent("*".into()),
            None,
            per_minute(1_000),
        )],
        10,
    )
    .unwrap();
    let a = Action::extract(RawAction {
        agent: AgentName::new("bot").unwrap(),
        task: None,
        kind: "llm_call".into(),
        target: "gpt-4o".into(),
        args: json!({"max_tokens": 600}),
        estimate: Estimate::default(),
        labels: BTreeMap::new(),
    })
    .unwrap();
    limits.check(&a, at(0)).unwrap();
    assert!(limits.check(&a, at(0)).is_err());
}

#[test]
fn two_limits_are_all_or_nothing() {
    let limits = RateLimits::new(
        vec![
            limit("agent", Scope::Agent("*".into()), per_minute(2), None),
            limit("deploys", Scope::Tool("deploy".into()), per_minute(1), None),
        ],
        10,
    )
    .unwrap();
    let deploy = action("bot", "tool_call", "deploy", None);
    let search = action("bot", "tool_call", "search", None);
    limits.check(&deploy, at(0)).unwrap();
    let refused = limits.check(&deploy, at(0)).unwrap_err();
    assert_eq!(refused.limit_id, "deploys");
    // The refused deploy did not spend the agent's second request.
    limits.check(&search, at(0)).unwrap();
    assert_eq!(limits.check(&search, at(0)).unwrap_err().limit_id, "agent");
}

#[test]
fn refund_and_settle_adjust_what_was_spent() {
    let limits = RateLimits::new(
        vec![limit(
            "both",
            Scope::Agent("*".into()),
            per_minute(2),
            per_minute(1_000),
        )],
        10,
    )
    .unwrap();
    let a = action("bot", "llm_call", "m", Some(400));
    limits.check(&a, at(0)).unwrap();
    limits.refund(&a, at(0));
    limits.check(&a, at(0)).unwrap();
    limits.check(&a, at(0)).unwrap();
    assert_eq!(
        limits.check(&a, at(0)).unwrap_err().limited_by,
        LimitedBy::Requests
    );

    let limits = RateLimits::new(
        vec![limit(
            "tokens",
            Scope::Agent("*".into()),
            None,
            per_minute(1_000),
        )],
        10,
    )
    .unwrap();
    let small = action("bot", "llm_call", "m", Some(100));
    limits.check(&small, at(0)).unwrap();
    // It really used 900: only 100 left.
    limits.settle_tokens(&small, 900, at(0));
    limits.check(&small, at(0)).unwrap();
    assert!(limits.check(&small, at(0)).is_err());
    // Settling below the estimate gives cells back.
    limits.settle_tokens(&small, 0, at(0));
    limits.check(&small, at(0)).unwrap();
}

#[test]
fn scopes_kinds_and_templates_select_buckets() {
    let limits = RateLimits::new(
        vec![
            RateLimitSpec {
                id: "tool-calls".into(),
                scope: Scope::Agent("planner-*".into()),
                kinds: vec![ActionKind::ToolCall],
                requests: per_minute(1),
                tokens: None,
            },
            limit(
                "per-env",
                Scope::Key("{agent}@{label:env}".into()),
                per_minute(1),
                None,
            ),
        ],
        10,
    )
    .unwrap();
    let tool = action("planner-1", "tool_call", "search", None);
    limits.check(&tool, at(0)).unwrap();
    assert_eq!(limits.check(&tool, at(0)).unwrap_err().key, "planner-1");
    // Another agent matching the glob has its own bucket; one not matching is not limited; other kinds neither.
    limits
        .check(&action("planner-2", "tool_call", "search", None), at(0))
        .unwrap();
    for _ in 0..5 {
        limits
            .check(&action("coder", "tool_call", "search", None), at(0))
            .unwrap();
        limits
            .check(&action("planner-1", "custom", "x", None), at(0))
            .unwrap();
    }
    // Templates: the label picks the bucket; without it the limit does not apply.
    let prod = action_with("coder", "custom", "x", None, &[("env", "prod")]);
    limits.check(&prod, at(0)).unwrap();
    let refused = limits.check(&prod, at(0)).unwrap_err();
    assert_eq!(
        (refused.limit_id.as_str(), refused.key.as_str()),
        ("per-env", "coder@prod")
    );
    limits
        .check(
            &action_with("coder", "custom", "x", None, &[("env", "dev")]),
            at(0),
        )
        .unwrap();
}

#[test]
fn check_key_takes_explicit_keys_and_costs() {
    let limits = RateLimits::new(
        vec![limit(
            "api",
            Scope::Key("{agent}".into()),
            per_minute(5),
            per_minute(100),
        )],
        10,
    )
    .unwrap();
    let cost = Cost {
        requests: 1,
        tokens: 60,
    };
    limits.check_key("api", "10.0.0.1", cost, at(0)).unwrap();
    let refused = limits
        .check_key("api", "10.0.0.1", cost, at(0))
        .unwrap_err();
    assert_eq!(refused.limited_by, LimitedBy::Tokens);
    assert_eq!(refused.retry_after, Some(Duration::from_millis(12_000)));
    limits.check_key("api", "10.0.0.2", cost, at(0)).unwrap();
    // Unknown limits fail closed.
    assert_eq!(
        limits
            .check_key("nope", "k", cost, at(0))
            .unwrap_err()
            .retry_after,
        None
    );
}

#[test]
fn keys_are_bounded_and_idle_keys_dropped_without_loss() {
    let limits = RateLimits::new(
        vec![limit(
            "per-target",
            Scope::Key("{target}".into()),
            per_minute(60),
            None,
        )],
        2,
    )
    .unwrap();
    limits
        .check(&action("bot", "custom", "a", None), at(0))
        .unwrap();
    limits
        .check(&action("bot", "custom", "b", None), at(500))
        .unwrap();
    // Full of active keys: a third key is refused (fail closed) until the first one is idle.
    let refused = limits
        .check(&action("bot", "custom", "c", None), at(600))
        .unwrap_err();
    assert_eq!(refused.limited_by, LimitedBy::KeyCapacity);
    assert_eq!(refused.retry_after, Some(Duration::from_millis(400)));
    limits
        .check(&action("bot", "custom", "c", None), at(1_000))
        .unwrap();
    assert_eq!(limits.tracked_keys(), 2);
    // Rotating keys cannot grow memory.
    for i in 0..1_000 {
        let _ = limits.check(
            &action("bot", "custom", &format!("k{i}"), None),
            at(2_000 + i * 10),
        );
    }
    assert!(limits.tracked_keys() <= 2);
    assert_eq!(limits.evict_idle(at(100_000)), 2);
    assert_eq!(limits.tracked_keys(), 0);
}

#[test]
fn invalid_rate_limits_are_rejected() {
    let bad = [
        limit("", Scope::Agent("*".into()), per_minute(1), None),
        limit("x", Scope::Agent("*".into()), None, None),
        limit("x", Scope::Agent("*".into()), per_minute(0), None),
        limit("x", Scope::Agent("".into()), per_minute(1), None),
        limit("x", Scope::Key("{nope}".into()), per_minute(1), None),
        limit(
            "x",
            Scope::Agent("*".into()),
            Some(Quota {
                count: 1,
                per: Duration::ZERO,
                burst: None,
            }),
            None,
        ),
    ];
    for spec in bad {
        assert!(RateLimits::new(vec![spec.clone()], 10).is_err(), "{spec:?}");
    }
    let dup = limit("x", Scope::Agent("*".into()), per_minute(1), None);
    let err = RateLimits::new(vec![dup.clone(), dup], 10).unwrap_err();
    assert_eq!(err.to_string(), "invalid rate limit `x`: duplicate id");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the arrival pattern, the cells admitted in `[t0, t]` never exceed `burst + rate × (t − t0)`, and a
    /// refused request is admitted at exactly `now + retry_after`.
    #[test]
    fn gcra_never_exceeds_its_envelope(steps in prop::collection::vec((0i64..3_000, 1u64..400), 1..80)) {
        let limits = RateLimits::new(
            vec![limit("t", Scope::Agent("*".into()), None, per_minute(1_000))],
            10,
        ).unwrap();
        let mut now = 0i64;
        let mut admitted: u128 = 0;
        for (advance, tokens) in steps {
            now += advance;
            let a = action("bot", "llm_call", "m", Some(tokens));
            match limits.check(&a, at(now)) {
                Ok(()) => admitted += u128::from(tokens),
                Err(refused) => {
                    if let Some(wait) = refused.retry_after {
                        let wait = i64::try_from(wait.as_millis()).unwrap();
                        let exact = wait * 1_000_000 == i64::try_from(refused.retry_after.unwrap().as_nanos()).unwrap();
                        if exact && wait > 0 {
                            prop_assert!(limits.check(&a, at(now + wait - 1)).is_err());
                        }
                        if exact {
                            now += wait;
                            prop_assert!(limits.check(&a, at(now)).is_ok());
                            admitted += u128::from(tokens);
                        }
                    }
                }
            }
            let envelope = 1_000 + u128::try_from(now).unwrap() * 1_000 / 60_000;
            prop_assert!(admitted <= envelope, "admitted {admitted} > {envelope} at {now}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Circuit breakers

fn breaker(max_failures: Option<u32>, ratio: Option<FailureRatio>, probes: u32) -> CircuitBreakers {
    CircuitBreakers::new(
        vec![BreakerSpec {
            id: "upstreams".into(),
            keys: "upstream:*".into(),
            window: Duration::from_secs(10),
            max_failures,
            failure_ratio: ratio,
            cool_down: Duration::from_secs(5),
            half_open_probes: probes,
        }],
        100,
    )
    .unwrap()
}

#[test]
fn breaker_opens_probes_and_closes() {
    let b = breaker(Some(3), None, 2);
    let key = "upstream:openai";
    assert_eq!(b.allow(key, at(0)), Ok(Admission::Closed));
    for t in [0, 100, 200] {
        b.record(key, Outcome::Failure, at(t));
    }
    assert_eq!(b.state(key, at(200)), BreakerState::Open);
    let refused = b.allow(key, at(1_200)).unwrap_err();
    assert_eq!(refused.breaker_id, "upstreams");
    assert_eq!(refused.state, BreakerState::Open);
    assert_eq!(refused.retry_after, Duration::from_secs(4));
    assert!(b.allow(key, at(5_199)).is_err());
    // Cool-down over: two probes, then nothing until they report.
    assert_eq!(b.allow(key, at(5_200)), Ok(Admission::Probe));
    assert_eq!(b.state(key, at(5_200)), BreakerState::HalfOpen);
    assert_eq!(b.allow(key, at(5_300)), Ok(Admission::Probe));
    let refused = b.allow(key, at(5_400)).unwrap_err();
    assert_eq!(refused.state, BreakerState::HalfOpen);
    b.record(key, Outcome::Success, at(5_500));
    assert_eq!(b.state(key, at(5_500)), BreakerState::HalfOpen);
    b.record(key, Outcome::Success, at(5_600));
    assert_eq!(b.state(key, at(5_600)), BreakerState::Closed);
    assert_eq!(b.allow(key, at(5_600)), Ok(Admission::Closed));
    // The window restarted: two old-looking failures do not trip it.
    b.record(key, Outcome::Failure, at(5_700));
    b.record(key, Outcome::Failure, at(5_800));
    assert_eq!(b.state(key, at(5_800)), BreakerState::Closed);
}

#[test]
fn a_failed_probe_reopens_for_a_full_cool_down() {
    let b = breaker(Some(1), None, 1);
    let key = "upstream:anthropic";
    b.record(key, Outcome::Failure, at(0));
    assert_eq!(b.allow(key, at(5_000)), Ok(Admission::Probe));
    b.record(key, Outcome::Failure, at(5_100));
    assert_eq!(
        b.allow(key, at(5_200)).unwrap_err().retry_after,
        Duration::from_millis(4_900)
    );
    assert_eq!(b.allow(key, at(10_100)), Ok(Admission::Probe));
}

#[test]
fn lost_probes_are_presumed_lost_after_a_cool_down() {
    let b = breaker(Some(1), None, 1);
    let key = "upstream:x";
    b.record(key, Outcome::Failure, at(0));
    assert_eq!(b.allow(key, at(5_000)), Ok(Admission::Probe));
    assert_eq!(
        b.allow(key, at(6_000)).unwrap_err().retry_after,
        Duration::from_secs(4)
    );
    assert_eq!(b.allow(key, at(10_000)), Ok(Admission::Probe));
}

#[test]
fn failures_outside_the_window_do_not_trip() {
    let b = breaker(Some(3), None, 1);
    let key = "upstream:slow";
    for t in [0, 11_000, 22_000, 33_000] {
        b.record(key, Outcome::Failure, at(t));
    }
    assert_eq!(b.state(key, at(33_000)), BreakerState::Closed);
    b.record(key, Outcome::Failure, at(34_000));
    b.record(key, Outcome::Failure, at(35_000));
    assert_eq!(b.state(key, at(35_000)), BreakerState::Open);
}

#[test]
fn failure_ratio_needs_a_minimum_of_requests() {
    let b = breaker(
        None,
        Some(FailureRatio {
            percent: 50,
            min_requests: 4,
        }),
        1,
    );
    let key = "upstream:flaky";
    b.record(key, Outcome::Failure, at(0));
    b.record(key, Outcome::Failure, at(1));
    assert_eq!(
        b.state(key, at(1)),
        BreakerState::Closed,
        "2 of 2 failed but below the minimum"
    );
    b.record(key, Outcome::Success, at(2));
    b.record(key, Outcome::Success, at(3));
    b.record(key, Outcome::Success, at(4));
    b.record(key, Outcome::Failure, at(5));
    // 3 of 6 = 50 %.
    assert_eq!(b.state(key, at(5)), BreakerState::Open);
}

#[test]
fn unguarded_keys_pass_and_idle_keys_are_dropped() {
    let b = breaker(Some(2), None, 1);
    assert_eq!(b.allow("tool:search", at(0)), Ok(Admission::Unguarded));
    b.record("tool:search", Outcome::Failure, at(0));
    assert_eq!(b.tracked_keys(), 0);
    b.record("upstream:a", Outcome::Failure, at(0));
    assert_eq!(b.tracked_keys(), 1);
    assert_eq!(b.evict_idle(at(5_000)), 0);
    assert_eq!(b.evict_idle(at(20_000)), 1);
}

#[test]
fn invalid_breakers_are_rejected() {
    let base = BreakerSpec {
        id: "b".into(),
        keys: "*".into(),
        window: Duration::from_secs(10),
        max_failures: Some(1),
        failure_ratio: None,
        cool_down: Duration::from_secs(1),
        half_open_probes: 1,
    };
    let variants = [
        BreakerSpec {
            id: String::new(),
            ..base.clone()
        },
        BreakerSpec {
            max_failures: None,
            ..base.clone()
        },
        BreakerSpec {
            max_failures: Some(0),
            ..base.clone()
        },
        BreakerSpec {
            half_open_probes: 0,
            ..base.clone()
        },
        BreakerSpec {
            window: Duration::from_millis(5),
            ..base.clone()
        },
        BreakerSpec {
            failure_ratio: Some(FailureRatio {
                percent: 0,
                min_requests: 1,
            }),
            ..base.clone()
        },
    ];
    for spec in variants {
        assert!(
            CircuitBreakers::new(vec![spec.clone()], 10).is_err(),
            "{spec:?}"
        );
    }
    assert!(CircuitBreakers::new(vec![base], 10).is_ok());
}

// ---------------------------------------------------------------------------------------------------------------
// Bulkheads

fn bulkheads() -> Bulkheads {
    Bulkheads::new(
        vec![
            BulkheadSpec {
                id: "per-agent".into(),
                scope: Scope::Agent("*".into()),
                kinds: vec![],
                max_concurrent: 2,
            },
            BulkheadSpec {
                id: "deploys".into(),
                scope: Scope::Tool("deploy".into()),
                kinds: vec![],
                max_concurrent: 1,
            },
        ],
        Duration::from_secs(60),
        1_000,
    )
    .unwrap()
}

#[test]
fn bulkheads_deny_when_full_and_free_on_drop() {
    let b = bulkheads();
    let a = action("bot", "custom", "x", None);
    let p1 = b.try_acquire(&a, at(0)).unwrap();
    let p2 = b.try_acquire(&a, at(0)).unwrap();
    assert_ne!(p1.id(), p2.id());
    let full = b.try_acquire(&a, at(0)).unwrap_err();
    assert_eq!(
        (
            full.bulkhead_id.as_str(),
            full.key.as_str(),
            full.max_concurrent
        ),
        ("per-agent", "bot", 2)
    );
    // Another agent is not affected.
    let _other = b
        .try_acquire(&action("other", "custom", "x", None), at(0))
        .unwrap();
    drop(p1);
    assert_eq!(b.in_flight("per-agent", "bot"), 1);
    let _p3 = b.try_acquire(&a, at(0)).unwrap();
    drop(p2);
}

#[test]
fn bulkheads_are_all_or_nothing_and_release_by_id() {
    let b = bulkheads();
    let deploy = action("bot", "tool_call", "deploy", None);
    let id = b.try_acquire(&deploy, at(0)).unwrap().detach();
    assert_eq!(b.in_flight("deploys", "deploy"), 1);
    let full = b.try_acquire(&deploy, at(0)).unwrap_err();
    assert_eq!(full.bulkhead_id, "deploys");
    // The refused acquisition took no agent slot.
    assert_eq!(b.in_flight("per-agent", "bot"), 1);
    assert!(b.release(id));
    assert!(!b.release(id), "a second release is a no-op");
    assert_eq!(b.in_flight("per-agent", "bot"), 0);
    assert_eq!(b.in_flight("deploys", "deploy"), 0);
    let _again = b.try_acquire(&deploy, at(0)).unwrap();
    // Explicit keys.
    let p = b.try_acquire_key("deploys", "other-tool", at(0)).unwrap();
    assert!(b.try_acquire_key("deploys", "other-tool", at(0)).is_err());
    drop(p);
    assert!(b.try_acquire_key("nope", "k", at(0)).is_err());
}

#[test]
fn leaked_permits_expire_after_the_lease() {
    let b = bulkheads();
    let a = action("bot", "custom", "x", None);
    let id1 = b.try_acquire(&a, at(0)).unwrap().detach();
    let _id2 = b.try_acquire(&a, at(30_000)).unwrap().detach();
    assert!(b.try_acquire(&a, at(59_999)).is_err());
    // The first lease ends at 60 s: acquiring reclaims it.
    let p = b.try_acquire(&a, at(60_000)).unwrap();
    assert!(!b.release(id1));
    drop(p);
    assert_eq!(b.release_expired(at(90_000)).len(), 1);
    assert_eq!(b.in_flight("per-agent", "bot"), 0);
}

#[test]
fn bulkheads_without_a_matching_scope_hand_out_empty_permits() {
    let b = bulkheads();
    let a = action("bot", "custom", "x", None);
    let _p1 = b.try_acquire(&a, at(0)).unwrap();
    let _p2 = b.try_acquire(&a, at(0)).unwrap();
    let b2 = Bulkheads::new(vec![], Duration::from_secs(1), 1).unwrap();
    for _ in 0..10 {
        let _ = b2.try_acquire(&a, at(0)).unwrap().detach();
    }
}
