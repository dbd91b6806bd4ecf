//! Micro-benchmark of the decision-path checks: `cargo run --release -p aura-govern --example bench_limits`.
//!
//! Prints the median over 15 batches of nanoseconds per call. Not a test; a smoke run is `-- 1000`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aura_core::{Action, ActionKind, AgentName, Estimate, RawAction, Timestamp};
use aura_govern::content::{ContentChecker, ContentPolicy};
use aura_govern::counters::{CounterEvent, SlidingCounters};
use aura_govern::limits::{
    BreakerSpec, BulkheadSpec, Bulkheads, CircuitBreakers, Outcome, Quota, RateLimitSpec,
    RateLimits, Scope,
};
use aura_govern::loops::{LoopDetector, LoopSpec};
use serde_json::json;

fn main() {
    let iters: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let t0 = 1_795_292_371_000i64;
    let action = |tool: &str| {
        Action::extract(RawAction {
            agent: AgentName::new("planner-1").unwrap(),
            task: Some("t-1".into()),
            kind: "tool_call".into(),
            target: tool.into(),
            args: json!({"q": "weather in Paris", "n": 3}),
            estimate: Estimate {
                tokens: Some(3_000),
                ..Estimate::default()
            },
            labels: BTreeMap::new(),
        })
        .unwrap()
    };
    let a = action("search");
    let big = Quota {
        count: 1_000_000_000,
        per: Duration::from_secs(1),
        burst: None,
    };

    let one = RateLimits::new(
        vec![RateLimitSpec {
            id: "agent".into(),
            scope: Scope::Agent("*".into()),
            kinds: vec![],
            requests: Some(big),
            tokens: None,
        }],
        10_000,
    )
    .unwrap();
    let mut now = t0;
    report("rate limit: 1 limit, requests", iters, || {
        now += 1;
        black_box(one.check(black_box(&a), Timestamp::from_millis(now))).unwrap();
    });

    let three = RateLimits::new(
        vec![
            RateLimitSpec {
                id: "agent".into(),
                scope: Scope::Agent("planner-*".into()),
                kinds: vec![],
                requests: Some(big),
                tokens: Some(Quota {
                    count: u64::MAX / 4,
                    per: Duration::from_secs(1),
                    burst: None,
                }),
            },
            RateLimitSpec {
                id: "tool".into(),
                scope: Scope::Tool("*".into()),
                kinds: vec![],
                requests: Some(big),
                tokens: None,
            },
            RateLimitSpec {
                id: "key".into(),
                scope: Scope::Key("{agent}/{kind}/{target}".into()),
                kinds: vec![ActionKind::ToolCall],
                requests: Some(big),
                tokens: None,
            },
        ],
        10_000,
    )
    .unwrap();
    let mut now = t0;
    report(
        "rate limit: 3 limits (agent+tokens, tool, template)",
        iters,
        || {
            now += 1;
            black_box(three.check(black_box(&a), Timestamp::from_millis(now))).unwrap();
        },
    );

    let breakers = CircuitBreakers::new(
        vec![BreakerSpec {
            id: "tools".into(),
            keys: "tool:*".into(),
            window: Duration::from_secs(60),
            max_failures: Some(1_000_000),
            failure_ratio: None,
            cool_down: Duration::from_secs(30),
            half_open_probes: 1,
        }],
        10_000,
    )
    .unwrap();
    breakers.record("tool:search", Outcome::Failure, Timestamp::from_millis(t0));
    let mut now = t0;
    report("breaker: allow (closed)", iters, || {
        now += 1;
        black_box(breakers.allow(black_box("tool:search"), Timestamp::from_millis(now))).unwrap();
    });
    report("breaker: record success", iters, || {
        breakers.record(
            black_box("tool:search"),
            Outcome::Success,
            Timestamp::from_millis(now),
        );
    });

    let bulkheads = Bulkheads::new(
        vec![
            BulkheadSpec {
                id: "agent".into(),
                scope: Scope::Agent("*".into()),
                kinds: vec![],
                max_concurrent: 8,
            },
            BulkheadSpec {
                id: "tool".into(),
                scope: Scope::Tool("*".into()),
                kinds: vec![],
                max_concurrent: 8,
            },
        ],
        Duration::from_secs(600),
        100_000,
    )
    .unwrap();
    report("bulkhead: acquire + release (2 bulkheads)", iters, || {
        let permit = bulkheads
            .try_acquire(black_box(&a), Timestamp::from_millis(t0))
            .unwrap();
        drop(black_box(permit));
    });

    let loops = LoopDetector::new(LoopSpec {
        threshold: 5,
        window: Duration::from_secs(60),
        max_keys_per_agent: 1_024,
        max_agents: 10_000,
    })
    .unwrap();
    let mut now = t0;
    report("loop detection: observe", iters, || {
        now += 20;
        black_box(loops.observe(black_box(&a), Timestamp::from_millis(now)));
    });

    let counters = SlidingCounters::new(10_000);
    let agent = AgentName::new("planner-1").unwrap();
    let mut now = t0;
    report("counters: record", iters, || {
        now += 7;
        counters.record(
            &agent,
            CounterEvent::Action,
            ActionKind::ToolCall,
            Timestamp::from_millis(now),
        );
    });
    report(
        "counters: count (10 min window, busy series)",
        iters,
        || {
            black_box(counters.count(
                &agent,
                CounterEvent::Action,
                None,
                Duration::from_secs(600),
                Timestamp::from_millis(now),
            ));
        },
    );

    let checker = ContentChecker::new(ContentPolicy {
        max_args_bytes: 1 << 20,
        max_string_bytes: 1 << 16,
        allowed_mime_types: Some(vec!["image/*".into(), "text/plain".into()]),
    })
    .unwrap();
    let typical = json!({
        "model": "gpt-4o",
        "temperature": 0.2,
        "max_tokens": 800,
        "messages": [
            {"role": "system", "content": "You are a careful operations assistant. Answer briefly and cite the runbook section you used."},
            {"role": "user", "content": "The checkout service on web-3 returns 502 since 14:05 UTC. Nginx error log shows upstream timed out (110: Connection timed out) while reading response header from upstream. What should I check first, and which command shows the upstream pool health?"},
            {"role": "assistant", "content": "Check the upstream pool: curl -s http://127.0.0.1:8080/status and compare active connections with the pool limit; then inspect the app's p99 latency on the dashboard."},
            {"role": "user", "content": "Pool shows 512/512 active. Latency p99 is 31 s. Recent deploy at 13:58 changed the DB connection pool size from 50 to 5."}
        ],
        "attachments": [{"mime_type": "text/plain", "name": "nginx-error.log"}],
        "metadata": {"ticket": "OPS-4411", "priority": "high", "tags": ["checkout", "502", "nginx"]}
    });
    let mk = |args: serde_json::Value| {
        Action::extract(RawAction {
            agent: AgentName::new("planner-1").unwrap(),
            task: None,
            kind: "llm_call".into(),
            target: "gpt-4o".into(),
            args,
            estimate: Estimate::default(),
            labels: BTreeMap::new(),
        })
        .unwrap()
    };
    let clean = mk(typical.clone());
    let bytes = clean.args().to_string().len();
    let mut dirty_args = typical;
    dirty_args["messages"][3]["content"] = json!(
        "Here is the key: sk-proj-Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh7jKl0nOp3rSt6vWx9zAb2dEf5hIj8lMn1p"
    );
    let dirty = mk(dirty_args);
    let content_iters = (iters / 10).max(100);
    report(
        &format!("content: {bytes}-byte args, clean"),
        content_iters,
        || {
            black_box(checker.check(black_box(&clean)));
        },
    );
    report(
        &format!("content: {bytes}-byte args, one secret (+ redacted copy)"),
        content_iters,
        || {
            black_box(checker.check(black_box(&dirty)));
        },
    );
    let shell = Action::extract(RawAction {
        agent: AgentName::new("planner-1").unwrap(),
        task: None,
        kind: "shell".into(),
        target: "git".into(),
        args: json!({"argv": ["log", "--oneline", "-n", "20", "--", "src/"], "cwd": "/srv/app"}),
        estimate: Estimate::default(),
        labels: BTreeMap::new(),
    })
    .unwrap();
    report("content: shell action, clean", content_iters, || {
        black_box(checker.check(black_box(&shell)));
    });
}

/// Runs `f` in 15 batches of `iters` calls and prints the median ns per call.
fn report(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!("{name:<58} {:>9.0} ns", samples[samples.len() / 2]);
}
