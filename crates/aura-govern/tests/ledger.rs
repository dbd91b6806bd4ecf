//! The budget ledger on every backend: in memory, SQLite and the real PostgreSQL — exact concurrency limits,
//! all-or-nothing pools, settle/release/expire round trips, period rollover, overrides; plus two ledgers on
//! separate pools and a second OS process sharing one PostgreSQL schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ledger_support;

use std::sync::Arc;

use aura_core::{AgentName, Clock, ManualClock, Timestamp};
use aura_govern::ledger::{
    Amounts, BudgetKey, Dimension, Ledger, LedgerError, Limits, MemoryLedger, OverrideGrant,
    Period, ReleaseOutcome, ReserveLine, ReserveRequest, Scope, SettleOutcome, StoreLedger,
    Threshold, ThresholdAction, Usage, graduated,
};
use ledger_support::TestStore;

/// 2026-11-21T20:19:31.042Z
const T0: i64 = 1_795_292_371_042;

/// Writes one test per backend per scenario: `memory::<s>`, `sqlite::<s>`, `postgres::<s>`.
macro_rules! on_every_ledger {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let clock = super::clock();
                    let ledger = Arc::new(super::MemoryLedger::new(clock.clone()));
                    super::$scenario(ledger, clock).await;
                }
            )*
            use std::sync::Arc;
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let db = super::ledger_support::sqlite().await;
                    let clock = super::clock();
                    super::$scenario(super::store_ledger(&db, &clock), clock).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let db = super::ledger_support::postgres().await;
                    let clock = super::clock();
                    super::$scenario(super::store_ledger(&db, &clock), clock).await;
                }
            )*
        }
    };
}

on_every_ledger!(
    exactly_n_of_1000_concurrent_reservations_succeed,
    pools_shared_by_several_agents_hold_all_or_nothing,
    settle_release_and_expire_round_trip,
    settle_records_actual_spend_higher_or_lower,
    periods_roll_over_with_the_clock,
    every_dimension_is_limited,
    overrides_lift_hard_stops_until_the_period_ends,
    bad_requests_are_refused,
);

// ---------------------------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------------------------

async fn exactly_n_of_1000_concurrent_reservations_succeed(
    ledger: Arc<dyn Ledger>,
    _clock: Arc<ManualClock>,
) {
    const ALLOWED: i64 = 137;
    let key = key("llm", Scope::Global, Period::Day, T0);
    let limits = cost_limit(ALLOWED * 1_500);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let ledger = Arc::clone(&ledger);
        let request = request(&[(&key, limits)], cost(1_500), T0 + 60_000);
        tasks.spawn(async move { ledger.reserve(&request).await });
    }
    let mut granted = 0;
    for result in tasks.join_all().await {
        match result {
            Ok(_) => granted += 1,
            Err(LedgerError::Exceeded { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(granted, ALLOWED);
    let usage = ledger.usage(&key).await.unwrap();
    assert_eq!(
        usage.reserved.cost_micros,
        ALLOWED * 1_500,
        "overshoot is 0"
    );
    assert_eq!(usage.remaining(Dimension::Cost), Some(0));
}

async fn pools_shared_by_several_agents_hold_all_or_nothing(
    ledger: Arc<dyn Ledger>,
    _clock: Arc<ManualClock>,
) {
    let agents = ["a1", "a2", "a3"];
    let pool = key("team", Scope::Pool("research".into()), Period::Month, T0);
    let global = key("all", Scope::Global, Period::Month, T0);
    let own: Vec<BudgetKey> = agents
        .iter()
        .map(|a| key("team", Scope::Agent(agent(a)), Period::Month, T0))
        .collect();
    // Each agent may use 100, the pool 200 between them, everyone 10_000.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let ledger = Arc::clone(&ledger);
        let request = request(
            &[
                (&own[i % 3], cost_limit(100)),
                (&pool, cost_limit(200)),
                (&global, cost_limit(10_000)),
            ],
            cost(10),
            T0 + 60_000,
        );
        tasks.spawn(async move { ledger.reserve(&request).await.is_ok() });
    }
    let granted = tasks.join_all().await.into_iter().filter(|ok| *ok).count();
    assert_eq!(granted, 20);
    assert_eq!(reserved(&ledger, &pool).await, 200);
    assert_eq!(
        reserved(&ledger, &global).await,
        200,
        "the global key moved with the pool"
    );
    let mut per_agent = 0;
    for k in &own {
        let r = reserved(&ledger, k).await;
        assert!(r <= 100, "{k}: {r}");
        per_agent += r;
    }
    assert_eq!(per_agent, 200);

    // A refused reservation names the key that refused and leaves the others untouched.
    let err = ledger
        .reserve(&request(
            &[(&own[0], cost_limit(1_000)), (&pool, cost_limit(200))],
            cost(1),
            T0 + 60_000,
        ))
        .await
        .unwrap_err();
    let before_own0 = reserved(&ledger, &own[0]).await;
    match err {
        LedgerError::Exceeded {
            key,
            dimension,
            limit,
            reserved,
            requested,
            ..
        } => {
            assert_eq!(key, pool.as_str());
            assert_eq!(
                (dimension, limit, reserved, requested),
                (Dimension::Cost, 200, 200, 1)
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(reserved(&ledger, &own[0]).await, before_own0);
}

async fn settle_release_and_expire_round_trip(ledger: Arc<dyn Ledger>, clock: Arc<ManualClock>) {
    let k = key("llm", Scope::Agent(agent("bot")), Period::Day, T0);
    let limits = cost_limit(1_000);
    let r1 = ledger
        .reserve(&request(&[(&k, limits)], cost(300), T0 + 1_000))
        .await
        .unwrap();
    assert_eq!(r1.keys.len(), 1);
    assert_eq!(r1.keys[0].before.reserved.cost_micros, 0);
    assert_eq!(r1.keys[0].after.reserved.cost_micros, 300);
    assert_eq!(r1.keys[0].after.limits, limits);
    let r2 = ledger
        .reserve(&request(&[(&k, limits)], cost(300), T0 + 1_000))
        .await
        .unwrap();
    let r3 = ledger
        .reserve(&request(&[(&k, limits)], cost(300), T0 + 5_000))
        .await
        .unwrap();
    assert_eq!(r3.keys[0].before.reserved.cost_micros, 600);
    assert!(
        ledger
            .reserve(&request(&[(&k, limits)], cost(200), T0 + 1_000))
            .await
            .is_err()
    );

    assert_eq!(
        ledger.settle(r1.id, cost(250)).await.unwrap(),
        SettleOutcome::Settled
    );
    assert_eq!(
        ledger.settle(r1.id, cost(250)).await.unwrap(),
        SettleOutcome::AlreadySettled
    );
    assert_eq!(
        ledger.release(r1.id).await.unwrap(),
        ReleaseOutcome::AlreadySettled
    );
    assert_eq!(
        ledger.release(r2.id).await.unwrap(),
        ReleaseOutcome::Released
    );
    assert_eq!(
        ledger.release(r2.id).await.unwrap(),
        ReleaseOutcome::AlreadyReleased
    );
    assert_eq!(
        ledger.settle(r2.id, cost(5)).await.unwrap(),
        SettleOutcome::AlreadyReleased
    );
    let u = ledger.usage(&k).await.unwrap();
    assert_eq!((u.spent.cost_micros, u.reserved.cost_micros), (250, 300));

    // r3 expires at T0 + 5s: not before.
    clock.advance(4_999);
    assert!(ledger.expire(clock.now()).await.unwrap().is_empty());
    clock.advance(1);
    let expired = ledger.expire(clock.now()).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, r3.id);
    assert_eq!(expired[0].keys, vec![k.as_str().to_owned()]);
    assert_eq!(expired[0].amounts, cost(300));
    assert!(ledger.expire(clock.now()).await.unwrap().is_empty(), "once");
    assert_eq!(reserved(&ledger, &k).await, 0);
    assert_eq!(
        ledger.release(r3.id).await.unwrap(),
        ReleaseOutcome::AlreadyExpired
    );
    // The call behind r3 did finish after all: its cost is recorded.
    assert_eq!(
        ledger.settle(r3.id, cost(280)).await.unwrap(),
        SettleOutcome::SettledAfterExpiry
    );
    assert_eq!(
        ledger.settle(r3.id, cost(280)).await.unwrap(),
        SettleOutcome::AlreadySettled
    );
    let u = ledger.usage(&k).await.unwrap();
    assert_eq!((u.spent.cost_micros, u.reserved.cost_micros), (530, 0));

    let unknown = aura_govern::ledger::ReservationId::parse("00000000000000ff").unwrap();
    assert_eq!(
        ledger.settle(unknown, cost(1)).await.unwrap(),
        SettleOutcome::NotFound
    );
    assert_eq!(
        ledger.release(unknown).await.unwrap(),
        ReleaseOutcome::NotFound
    );

    // A day later the finished reservations are forgotten.
    clock.advance(aura_govern::ledger::FINISHED_RETENTION_MILLIS + 1);
    ledger.expire(clock.now()).await.unwrap();
    assert_eq!(
        ledger.settle(r1.id, cost(1)).await.unwrap(),
        SettleOutcome::NotFound
    );
    assert_eq!(ledger.usage(&k).await.unwrap().spent.cost_micros, 530);
}

async fn settle_records_actual_spend_higher_or_lower(
    ledger: Arc<dyn Ledger>,
    _clock: Arc<ManualClock>,
) {
    let k = key("llm", Scope::Global, Period::Total, T0);
    let limits = cost_limit(1_000);
    let low = ledger
        .reserve(&request(&[(&k, limits)], cost(400), T0 + 1_000))
        .await
        .unwrap();
    let high = ledger
        .reserve(&request(&[(&k, limits)], cost(400), T0 + 1_000))
        .await
        .unwrap();
    ledger.settle(low.id, cost(100)).await.unwrap();
    ledger.settle(high.id, cost(850)).await.unwrap();
    let u = ledger.usage(&k).await.unwrap();
    assert_eq!((u.spent.cost_micros, u.reserved.cost_micros), (950, 0));
    // Over the limit after a costly call: even a zero-cost reservation is refused (fail closed).
    let err = ledger
        .reserve(&request(&[(&k, cost_limit(900))], cost(0), T0 + 1_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Exceeded {
                spent: 950,
                limit: 900,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(u.remaining(Dimension::Cost), Some(50));
}

async fn periods_roll_over_with_the_clock(ledger: Arc<dyn Ledger>, clock: Arc<ManualClock>) {
    let limits = cost_limit(100);
    let today = key("llm", Scope::Global, Period::Day, clock.now().as_millis());
    assert_eq!(today.as_str(), "llm/global/day:2026-11-21");
    ledger
        .reserve(&request(&[(&today, limits)], cost(100), T0 + 1_000))
        .await
        .unwrap();
    assert!(
        ledger
            .reserve(&request(&[(&today, limits)], cost(1), T0 + 1_000))
            .await
            .is_err()
    );
    // 2026-11-22T00:00:00Z is the end of the window.
    let end = today.window_end().unwrap();
    clock.advance(end.as_millis() - clock.now().as_millis());
    let tomorrow = key("llm", Scope::Global, Period::Day, clock.now().as_millis());
    assert_eq!(tomorrow.as_str(), "llm/global/day:2026-11-22");
    ledger
        .reserve(&request(&[(&tomorrow, limits)], cost(100), T0 + 1_000))
        .await
        .unwrap();
    assert_eq!(
        reserved(&ledger, &today).await,
        100,
        "yesterday's counter is kept"
    );
    let month = key("llm", Scope::Global, Period::Month, clock.now().as_millis());
    assert_eq!(month.as_str(), "llm/global/month:2026-11");
}

async fn every_dimension_is_limited(ledger: Arc<dyn Ledger>, _clock: Arc<ManualClock>) {
    let k = key("ops", Scope::Agent(agent("bot")), Period::Day, T0);
    let limits = Limits {
        cost_micros: None,
        effort: Some(3),
        risk: Some(10),
    };
    let step = Amounts {
        cost_micros: 1_000_000,
        effort: 1,
        risk: 4,
    };
    ledger
        .reserve(&request(&[(&k, limits)], step, T0 + 1_000))
        .await
        .unwrap();
    ledger
        .reserve(&request(&[(&k, limits)], step, T0 + 1_000))
        .await
        .unwrap();
    let err = ledger
        .reserve(&request(&[(&k, limits)], step, T0 + 1_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Exceeded {
                dimension: Dimension::Risk,
                limit: 10,
                reserved: 8,
                requested: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("risk limit 10"), "{err}");
    let effortless = Amounts {
        effort: 1,
        ..Amounts::default()
    };
    ledger
        .reserve(&request(&[(&k, limits)], effortless, T0 + 1_000))
        .await
        .unwrap();
    let err = ledger
        .reserve(&request(&[(&k, limits)], effortless, T0 + 1_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Exceeded {
                dimension: Dimension::Effort,
                ..
            }
        ),
        "{err}"
    );
    let u = ledger.usage(&k).await.unwrap();
    assert_eq!(
        u.reserved,
        Amounts {
            cost_micros: 2_000_000,
            effort: 3,
            risk: 8
        }
    );
    assert_eq!(u.remaining(Dimension::Cost), None);
}

async fn overrides_lift_hard_stops_until_the_period_ends(
    ledger: Arc<dyn Ledger>,
    clock: Arc<ManualClock>,
) {
    let thresholds = [
        Threshold {
            at_percent: 80,
            action: ThresholdAction::Warn,
        },
        Threshold {
            at_percent: 100,
            action: ThresholdAction::HardStop,
        },
    ];
    let k = key("llm", Scope::Global, Period::Day, T0);
    let r = ledger
        .reserve(&request(&[(&k, cost_limit(100))], cost(90), T0 + 1_000))
        .await
        .unwrap();
    assert_eq!(
        graduated(&r.keys[0].after, Dimension::Cost, &thresholds),
        vec![ThresholdAction::Warn]
    );
    ledger.settle(r.id, cost(100)).await.unwrap();
    let u = ledger.usage(&k).await.unwrap();
    assert_eq!(
        graduated(&u, Dimension::Cost, &thresholds),
        vec![ThresholdAction::Warn, ThresholdAction::HardStop]
    );
    let grant = OverrideGrant {
        by: "alice".into(),
        reason: "release day".into(),
    };
    ledger.grant_override(&k, &grant).await.unwrap();
    let u = ledger.usage(&k).await.unwrap();
    assert!(u.overridden);
    assert_eq!(
        graduated(&u, Dimension::Cost, &thresholds),
        vec![ThresholdAction::Warn]
    );
    // Next day: a new key, no override.
    clock.advance(86_400_000);
    let next = key("llm", Scope::Global, Period::Day, clock.now().as_millis());
    assert!(!ledger.usage(&next).await.unwrap().overridden);
}

async fn bad_requests_are_refused(ledger: Arc<dyn Ledger>, _clock: Arc<ManualClock>) {
    let k = key("llm", Scope::Global, Period::Day, T0);
    let err = ledger
        .reserve(&request(&[], cost(1), T0))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Invalid(_)), "{err}");
    let err = ledger
        .reserve(&request(
            &[(&k, cost_limit(10)), (&k, cost_limit(10))],
            cost(1),
            T0,
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
    let err = ledger
        .reserve(&request(&[(&k, cost_limit(10))], cost(-1), T0))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Invalid(_)), "{err}");
    let r = ledger
        .reserve(&request(&[(&k, cost_limit(10))], cost(1), T0))
        .await
        .unwrap();
    let err = ledger.settle(r.id, cost(-5)).await.unwrap_err();
    assert!(matches!(err, LedgerError::Invalid(_)), "{err}");
    assert_eq!(reserved(&ledger, &k).await, 1, "nothing changed");
    let err = BudgetKey::new(
        "Bad Budget",
        &Scope::Global,
        Period::Day,
        Timestamp::from_millis(T0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("budget id"), "{err}");
    let err = BudgetKey::new(
        "ok",
        &Scope::Pool("no pool".into()),
        Period::Day,
        Timestamp::from_millis(T0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("pool name"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// Several ledgers, several processes, one PostgreSQL
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_store_ledgers_on_separate_pools_never_overshoot() {
    const ALLOWED: i64 = 120;
    let db = ledger_support::postgres().await;
    let clock = clock();
    let first = StoreLedger::new(db.store.clone(), clock.clone());
    let second = StoreLedger::new(db.open_again().await, clock.clone());
    let k = key("llm", Scope::Pool("shared".into()), Period::Day, T0);
    let limits = cost_limit(ALLOWED * 7);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500 {
        let ledger = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let request = request(&[(&k, limits)], cost(7), T0 + 60_000);
        tasks.spawn(async move { ledger.reserve(&request).await.is_ok() });
    }
    let granted = tasks.join_all().await.into_iter().filter(|ok| *ok).count();
    assert_eq!(granted as i64, ALLOWED);
    assert_eq!(
        first.usage(&k).await.unwrap().reserved.cost_micros,
        ALLOWED * 7
    );
}

/// Set in the child process: the PostgreSQL schema to draw on.
const CHILD_SCHEMA: &str = "AURA_LEDGER_TEST_CHILD_SCHEMA";
const CHILD_ATTEMPTS: usize = 200;
const PROCESS_ALLOWED: i64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_postgres_never_overshoots() {
    let db = ledger_support::postgres().await;
    let schema = db.schema().unwrap().to_owned();
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_reserves",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_SCHEMA, &schema)
        .env("AURA_TEST_POSTGRES_URL", ledger_support::postgres_url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ledger = StoreLedger::new(db.store.clone(), clock());
    let here = reserve_many(&ledger, CHILD_ATTEMPTS).await;
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let there: i64 = stdout
        .lines()
        .find_map(|l| l.split("granted=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("child printed no count: {stdout}"))
        .parse()
        .unwrap();
    assert!(
        there > 0 && here > 0,
        "both processes competed: here {here}, there {there}"
    );
    assert_eq!(here + there, PROCESS_ALLOWED);
    let k = shared_process_key();
    assert_eq!(
        ledger.usage(&k).await.unwrap().reserved.cost_micros,
        PROCESS_ALLOWED * 3
    );
}

/// The child half of the test above; returns at once unless [`CHILD_SCHEMA`] is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_reserves() {
    let Ok(schema) = std::env::var(CHILD_SCHEMA) else {
        return;
    };
    let db = ledger_support::attach_postgres(&schema, 4).await;
    let ledger = StoreLedger::new(db.store.clone(), clock());
    let granted = reserve_many(&ledger, CHILD_ATTEMPTS).await;
    println!("granted={granted}");
}

fn shared_process_key() -> BudgetKey {
    key("llm", Scope::Pool("cross-process".into()), Period::Day, T0)
}

async fn reserve_many(ledger: &StoreLedger, attempts: usize) -> i64 {
    let k = shared_process_key();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..attempts {
        let ledger = ledger.clone();
        let request = request(
            &[(&k, cost_limit(PROCESS_ALLOWED * 3))],
            cost(3),
            T0 + 60_000,
        );
        tasks.spawn(async move { ledger.reserve(&request).await });
    }
    let mut granted = 0;
    for result in tasks.join_all().await {
        match result {
            Ok(_) => granted += 1,
            Err(LedgerError::Exceeded { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    granted
}

// ---------------------------------------------------------------------------------------------------------------
// Graduated actions (pure)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn graduated_actions_follow_the_thresholds_in_order() {
    let thresholds = [
        Threshold {
            at_percent: 100,
            action: ThresholdAction::HardStop,
        },
        Threshold {
            at_percent: 50,
            action: ThresholdAction::Warn,
        },
        Threshold {
            at_percent: 75,
            action: ThresholdAction::DowngradeModel { to: "small".into() },
        },
        Threshold {
            at_percent: 90,
            action: ThresholdAction::PauseAgents {
                agents: vec![agent("bot")],
            },
        },
        Threshold {
            at_percent: 120,
            action: ThresholdAction::RequireOverride,
        },
    ];
    let usage = |spent: i64, reserved: i64| Usage {
        spent: cost(spent),
        reserved: cost(reserved),
        limits: cost_limit(1_000_000),
        overridden: false,
    };
    let names = |u: Usage| -> Vec<&'static str> {
        graduated(&u, Dimension::Cost, &thresholds)
            .iter()
            .map(|a| match a {
                ThresholdAction::Warn => "warn",
                ThresholdAction::DowngradeModel { .. } => "downgrade",
                ThresholdAction::PauseAgents { .. } => "pause",
                ThresholdAction::HardStop => "stop",
                ThresholdAction::RequireOverride => "override",
            })
            .collect()
    };
    assert_eq!(names(usage(0, 0)), Vec::<&str>::new());
    assert_eq!(names(usage(499_999, 0)), Vec::<&str>::new());
    assert_eq!(names(usage(400_000, 100_000)), ["warn"], "reserved counts");
    assert_eq!(names(usage(750_000, 0)), ["warn", "downgrade"]);
    assert_eq!(names(usage(900_000, 0)), ["warn", "downgrade", "pause"]);
    assert_eq!(
        names(usage(1_000_000, 0)),
        ["warn", "downgrade", "pause", "stop"]
    );
    assert_eq!(
        names(usage(1_200_000, 0)),
        ["warn", "downgrade", "pause", "stop", "override"]
    );
    let mut overridden = usage(1_200_000, 0);
    overridden.overridden = true;
    assert_eq!(names(overridden), ["warn", "downgrade", "pause"]);
    let unlimited = Usage {
        limits: Limits::default(),
        ..usage(i64::MAX, i64::MAX)
    };
    assert_eq!(names(unlimited), Vec::<&str>::new());
    // No overflow at the extremes.
    let huge = Usage {
        spent: cost(i64::MAX),
        reserved: cost(i64::MAX),
        limits: cost_limit(i64::MAX),
        overridden: false,
    };
    assert_eq!(names(huge).len(), 4);
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_millis(T0)))
}

fn store_ledger(db: &TestStore, clock: &Arc<ManualClock>) -> Arc<dyn Ledger> {
    let clock: Arc<dyn Clock> = clock.clone();
    Arc::new(StoreLedger::new(db.store.clone(), clock))
}

fn agent(name: &str) -> AgentName {
    AgentName::new(name).unwrap()
}

fn key(budget: &str, scope: Scope, period: Period, at: i64) -> BudgetKey {
    BudgetKey::new(budget, &scope, period, Timestamp::from_millis(at)).unwrap()
}

fn cost(cost_micros: i64) -> Amounts {
    Amounts {
        cost_micros,
        ..Amounts::default()
    }
}

fn cost_limit(limit: i64) -> Limits {
    Limits {
        cost_micros: Some(limit),
        ..Limits::default()
    }
}

fn request(lines: &[(&BudgetKey, Limits)], amounts: Amounts, expires_at: i64) -> ReserveRequest {
    ReserveRequest {
        lines: lines
            .iter()
            .map(|(key, limits)| ReserveLine {
                key: (*key).clone(),
                limits: *limits,
            })
            .collect(),
        amounts,
        expires_at: Timestamp::from_millis(expires_at),
    }
}

async fn reserved(ledger: &Arc<dyn Ledger>, key: &BudgetKey) -> i64 {
    ledger.usage(key).await.unwrap().reserved.cost_micros
}
