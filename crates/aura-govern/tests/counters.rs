//! Sliding-window counters on a manual clock, and a differential test against exact timestamps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aura_core::{ActionKind, AgentName, Timestamp};
use aura_govern::counters::{CounterEvent, MAX_WINDOW, SlidingCounters};
use proptest::prelude::*;

const T0: i64 = 1_795_292_371_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + ms)
}

fn bot() -> AgentName {
    AgentName::new("bot").unwrap()
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn counts_slide_with_the_window() {
    let c = SlidingCounters::new(10);
    for t in [0, 1_000, 2_000] {
        c.record(&bot(), CounterEvent::Failure, ActionKind::Shell, at(t));
    }
    let count =
        |window: Duration, now: i64| c.count(&bot(), CounterEvent::Failure, None, window, at(now));
    assert_eq!(count(10 * MIN, 5_000), 3);
    assert_eq!(count(Duration::from_secs(4), 5_000), 2);
    // The event at 0 lives in the second [0, 1 s): it counts while any part of that second is in the window.
    assert_eq!(count(10 * MIN, 600_999), 3);
    assert_eq!(count(10 * MIN, 601_000), 2);
    assert_eq!(count(10 * MIN, 603_000), 0);
    // Other events, other agents: zero.
    assert_eq!(
        c.count(&bot(), CounterEvent::Denial, None, 10 * MIN, at(5_000)),
        0
    );
    assert_eq!(
        c.count(
            &AgentName::new("x").unwrap(),
            CounterEvent::Failure,
            None,
            10 * MIN,
            at(5_000)
        ),
        0
    );
}

#[test]
fn kinds_are_counted_apart_and_together() {
    let c = SlidingCounters::new(10);
    c.record(&bot(), CounterEvent::Write, ActionKind::Shell, at(0));
    c.record(&bot(), CounterEvent::Write, ActionKind::FileWrite, at(10));
    c.record(&bot(), CounterEvent::Write, ActionKind::FileWrite, at(20));
    let count = |kind| c.count(&bot(), CounterEvent::Write, kind, MIN, at(30));
    assert_eq!(count(Some(ActionKind::Shell)), 1);
    assert_eq!(count(Some(ActionKind::FileWrite)), 2);
    assert_eq!(count(Some(ActionKind::LlmCall)), 0);
    assert_eq!(count(None), 3);
}

#[test]
fn long_windows_use_minute_buckets() {
    let c = SlidingCounters::new(10);
    // One event every 10 s for 2 hours.
    for i in 0..720 {
        c.record(
            &bot(),
            CounterEvent::Action,
            ActionKind::LlmCall,
            at(i * 10_000),
        );
    }
    let now = 7_200_000;
    let count = |window| c.count(&bot(), CounterEvent::Action, None, window, at(now));
    // Exactly 5 events in the last minute (7 140 000 is on the edge and out), plus the edge second.
    assert_eq!(count(MIN), 6);
    // Exactly 359 in the last hour; the trailing minute bucket may add up to 60 s of events (6).
    let hour = count(60 * MIN);
    assert!((359..=365).contains(&hour), "{hour}");
    assert_eq!(count(MAX_WINDOW), 720);
    assert_eq!(
        count(MAX_WINDOW * 2),
        720,
        "longer windows count MAX_WINDOW"
    );
    // 25 hours later everything has aged out and the agent can be dropped.
    assert_eq!(
        c.count(
            &bot(),
            CounterEvent::Action,
            None,
            MAX_WINDOW,
            at(now + 25 * 3_600_000)
        ),
        0
    );
    assert_eq!(c.evict_idle(at(now + 25 * 3_600_000)), 1);
    assert_eq!(c.tracked_agents(), 0);
}

#[test]
fn agents_are_bounded() {
    let c = SlidingCounters::new(3);
    for i in 0..10 {
        let agent = AgentName::new(format!("a{i}")).unwrap();
        c.record(&agent, CounterEvent::Failure, ActionKind::Shell, at(i));
    }
    assert_eq!(c.tracked_agents(), 3);
    let newest = AgentName::new("a9").unwrap();
    assert_eq!(
        c.count(&newest, CounterEvent::Failure, None, MIN, at(10)),
        1
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Against exact timestamps: the count includes every event in the window and at most the events up to one
    /// bucket older (1 s for windows up to 10 minutes, 60 s beyond).
    #[test]
    fn counts_are_exact_to_one_bucket(
        gaps in prop::collection::vec(0i64..120_000, 1..200),
        queries in prop::collection::vec((0i64..200_000, 1u64..7_200), 1..20),
    ) {
        let c = SlidingCounters::new(1);
        let mut times = Vec::new();
        let mut now = 0;
        for gap in gaps {
            now += gap;
            c.record(&bot(), CounterEvent::Failure, ActionKind::Custom, at(now));
            times.push(now);
        }
        for (after, window_secs) in queries {
            let q = now + after;
            let window = Duration::from_secs(window_secs);
            let w = i64::try_from(window.as_millis()).unwrap();
            let slack = if window <= 10 * MIN { 1_000 } else { 60_000 };
            let exact = times.iter().filter(|t| **t > q - w && **t <= q).count() as u64;
            let loose = times.iter().filter(|t| **t > q - w - slack && **t <= q).count() as u64;
            let got = c.count(&bot(), CounterEvent::Failure, None, window, at(q));
            prop_assert!(exact <= got && got <= loose, "window {window_secs}s at {q}: exact {exact}, got {got}, loose {loose}");
        }
    }
}
