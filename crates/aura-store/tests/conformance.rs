//! Conformance suite: every scenario is written once and runs against both backends — SQLite in a temporary
//! directory and the real PostgreSQL server on this machine, in a fresh schema per test.
//!
//! PostgreSQL is reached at `AURA_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`). If it is
//! not running, the postgres tests fail and say so; they never skip.

// Scenarios and helpers are test code, but clippy's `allow-*-in-tests` only recognises `#[test]` functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aura_core::{AgentName, Role, Timestamp, TokenHash, TokenId};
use aura_store::{
    AgentEdgeRecord, AgentRecord, ApprovalDecideOutcome, ApprovalDecision, ApprovalRecord,
    ApprovalStatus, BudgetAmounts, BudgetFinishOutcome, BudgetHoldLine, BudgetHoldOutcome,
    BudgetHoldRequest, BudgetLimits, BudgetOverrideRecord, ConnectOptions, HaltCauseRecord,
    HaltRecord, HaltStateRecord, RevokeOutcome, Store, StoreError, StoreTarget, TokenRecord,
};
use sqlx::{Connection, Executor};

/// The newest migration version this build ships.
const LATEST_SCHEMA_VERSION: i64 = 4;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";

/// Writes one `#[tokio::test]` per backend per scenario: `sqlite::<scenario>` and `postgres::<scenario>`.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::run_sqlite(super::$scenario).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::run_postgres(super::$scenario).await;
                }
            )*
        }
    };
}

conformance!(
    usage_records_sum_per_day_agent_and_model,
    migrations_are_applied_at_open,
    reopening_keeps_data_and_applies_nothing,
    concurrent_opens_of_a_fresh_store_all_succeed,
    tokens_round_trip_every_field,
    active_names_are_unique_and_revoked_names_reusable,
    duplicate_ids_conflict,
    revoke_reports_what_it_did,
    active_tokens_are_counted_per_role,
    agents_register_on_their_first_token_only,
    agents_are_listed_in_bytewise_name_order,
    a_failed_insert_registers_no_agent,
    concurrent_inserts_all_land,
    corrupt_rows_are_reported_not_hidden,
    close_is_idempotent_and_final,
    budget_holds_are_all_or_nothing,
    budget_holds_report_counters_before_and_refusals,
    budget_settle_release_and_expire_round_trip,
    budget_holds_reject_duplicate_ids_and_keys,
    concurrent_budget_holds_never_overshoot,
    budget_overrides_are_recorded,
    approval_requests_are_idempotent_per_pending_action,
    approvals_are_decided_once_and_expire,
    approvals_are_consumed_once_under_concurrency,
    halts_and_edges_round_trip,
);

// ---------------------------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------------------------

async fn migrations_are_applied_at_open(db: TestDb) {
    assert_eq!(db.store.backend(), db.backend());
    db.store.ping().await.unwrap();
    assert_eq!(
        db.store.schema_version().await.unwrap(),
        LATEST_SCHEMA_VERSION
    );
    assert_eq!(db.migration_rows().await, LATEST_SCHEMA_VERSION);
    assert!(db.store.tokens().await.unwrap().is_empty());
    assert!(db.store.agents().await.unwrap().is_empty());
}

async fn usage_records_sum_per_day_agent_and_model(db: TestDb) {
    let rec = |id: &str, day: &str, agent: &str, model: &str, cost: i64| aura_store::UsageRecord {
        id: id.into(),
        at: Timestamp::from_millis(1),
        day: day.into(),
        agent: agent.into(),
        model: model.into(),
        provider: "openai".into(),
        upstream_model: model.into(),
        input_tokens: 10,
        output_tokens: 5,
        cached_tokens: 0,
        cost_micros: cost,
        status: "ok".into(),
        streamed: true,
        latency_ms: 3,
    };
    db.store
        .insert_usage(&[
            rec("a", "2026-11-20", "bot", "gpt", 7),
            rec("b", "2026-11-21", "bot", "gpt", 11),
            rec("c", "2026-11-21", "bot", "gpt", 13),
            rec("d", "2026-11-21", "ana", "claude", 17),
        ])
        .await
        .unwrap();
    // Re-inserting an id changes nothing.
    db.store
        .insert_usage(&[rec("b", "2026-11-21", "bot", "gpt", 11)])
        .await
        .unwrap();
    let rows = db.store.usage_summary("2026-11-21").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].agent.as_str(), rows[0].calls, rows[0].cost_micros),
        ("ana", 1, 17)
    );
    assert_eq!(
        (rows[1].agent.as_str(), rows[1].calls, rows[1].cost_micros),
        ("bot", 2, 24)
    );
    assert_eq!((rows[1].input_tokens, rows[1].output_tokens), (20, 10));
    assert_eq!(db.store.usage_summary("2026-11-01").await.unwrap().len(), 3);
    // A batch larger than one statement's rows (several multi-row statements in one transaction), with a
    // duplicate id inside and one already stored: each id counts once.
    let many: Vec<_> = (0..450)
        .map(|i| rec(&format!("m{i}"), "2026-11-22", "bulk", "gpt", 1))
        .chain([
            rec("m7", "2026-11-22", "bulk", "gpt", 1),
            rec("a", "2026-11-20", "bot", "gpt", 7),
        ])
        .collect();
    db.store.insert_usage(&many).await.unwrap();
    let rows = db.store.usage_summary("2026-11-22").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].calls, rows[0].cost_micros), (450, 450));
    assert_eq!(
        db.store.usage_summary("2026-11-20").await.unwrap()[0].calls,
        1
    );
}

async fn reopening_keeps_data_and_applies_nothing(db: TestDb) {
    let token = token("000000000001", "ci", Role::Operator, Some("builder"), 10);
    db.store.insert_token(&token).await.unwrap();
    db.store.close().await;

    let reopened = db.reopen().await;
    assert_eq!(
        reopened.schema_version().await.unwrap(),
        LATEST_SCHEMA_VERSION
    );
    assert_eq!(db.migration_rows().await, LATEST_SCHEMA_VERSION);
    assert_eq!(reopened.token(&token.id).await.unwrap(), Some(token));
    assert_eq!(reopened.agents().await.unwrap().len(), 1);

    // And once more while the first reopen is still live.
    let again = db.reopen().await;
    assert_eq!(again.tokens().await.unwrap().len(), 1);
    again.close().await;
    reopened.close().await;
}

async fn concurrent_opens_of_a_fresh_store_all_succeed(db: TestDb) {
    let options = db.fresh_options();
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let options = options.clone();
        opens.spawn(async move { aura_store::open(&options).await });
    }
    let stores: Vec<Arc<dyn Store>> = opens
        .join_all()
        .await
        .into_iter()
        .map(|opened| opened.unwrap())
        .collect();
    for store in &stores {
        assert_eq!(store.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
    }
    let token = token("00000000000a", "shared", Role::Admin, None, 1);
    stores[0].insert_token(&token).await.unwrap();
    assert_eq!(stores[3].token(&token.id).await.unwrap(), Some(token));
    for store in stores {
        store.close().await;
    }
}

async fn tokens_round_trip_every_field(db: TestDb) {
    let mut revoked = token("0000000000c3", "old-viewer", Role::Viewer, None, 300);
    revoked.revoked_at = Some(Timestamp::from_millis(400));
    revoked.secret_hash = TokenHash::from_slice(&[0xab; 32]).unwrap();
    let with_agent = token(
        "0000000000b2",
        "planner",
        Role::Agent,
        Some("planner-1"),
        200,
    );
    // Same created_at as `with_agent` but a greater id: listed after it.
    let admin = token("0000000000f1", "root", Role::Admin, None, 200);
    let early = token("0000000000ff", "first", Role::Operator, None, -5);

    for t in [&revoked, &admin, &with_agent, &early] {
        db.store.insert_token(t).await.unwrap();
    }
    for t in [&revoked, &admin, &with_agent, &early] {
        assert_eq!(db.store.token(&t.id).await.unwrap().as_ref(), Some(t));
        assert_eq!(
            db.store.token_by_name(&t.name).await.unwrap().as_ref(),
            Some(t)
        );
    }
    assert_eq!(
        db.store.tokens().await.unwrap(),
        vec![early, with_agent, admin, revoked]
    );
    assert_eq!(db.store.token(&id("0123456789ab")).await.unwrap(), None);
    assert_eq!(db.store.token_by_name("nobody").await.unwrap(), None);
}

async fn active_names_are_unique_and_revoked_names_reusable(db: TestDb) {
    let first = token("000000000001", "deploy", Role::Operator, None, 1);
    db.store.insert_token(&first).await.unwrap();

    let second = token("000000000002", "deploy", Role::Viewer, None, 2);
    let err = db.store.insert_token(&second).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("`deploy`"), "{err}");
    assert_eq!(db.store.token(&second.id).await.unwrap(), None);

    // A revoked token never blocks a name, even next to an active one.
    let mut archived = token("000000000003", "deploy", Role::Viewer, None, 0);
    archived.revoked_at = Some(Timestamp::from_millis(0));
    db.store.insert_token(&archived).await.unwrap();

    assert_eq!(
        db.store
            .revoke_token(&first.id, Timestamp::from_millis(4))
            .await
            .unwrap(),
        RevokeOutcome::Revoked
    );
    db.store.insert_token(&second).await.unwrap();
    assert_eq!(
        db.store.token_by_name("deploy").await.unwrap(),
        Some(second.clone())
    );

    // With no active token left, the most recently created revoked one answers.
    db.store
        .revoke_token(&second.id, Timestamp::from_millis(9))
        .await
        .unwrap();
    let found = db.store.token_by_name("deploy").await.unwrap().unwrap();
    assert_eq!(found.id, second.id);
    assert_eq!(found.revoked_at, Some(Timestamp::from_millis(9)));
    assert_eq!(db.store.tokens().await.unwrap().len(), 3);
}

async fn duplicate_ids_conflict(db: TestDb) {
    let original = token("00000000abcd", "one", Role::Admin, None, 1);
    db.store.insert_token(&original).await.unwrap();

    let mut clash = token("00000000abcd", "two", Role::Viewer, None, 2);
    let err = db.store.insert_token(&clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("`00000000abcd`"), "{err}");

    // Also when the clashing token is revoked.
    clash.revoked_at = Some(Timestamp::from_millis(3));
    let err = db.store.insert_token(&clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(db.store.tokens().await.unwrap(), vec![original]);
}

async fn revoke_reports_what_it_did(db: TestDb) {
    let t = token("0000000000aa", "temp", Role::Viewer, None, 100);
    db.store.insert_token(&t).await.unwrap();

    let outcome = db
        .store
        .revoke_token(&t.id, Timestamp::from_millis(150))
        .await
        .unwrap();
    assert_eq!(outcome, RevokeOutcome::Revoked);
    let stored = db.store.token(&t.id).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(Timestamp::from_millis(150)));

    let outcome = db
        .store
        .revoke_token(&t.id, Timestamp::from_millis(999))
        .await
        .unwrap();
    assert_eq!(outcome, RevokeOutcome::AlreadyRevoked);
    let stored = db.store.token(&t.id).await.unwrap().unwrap();
    assert_eq!(
        stored.revoked_at,
        Some(Timestamp::from_millis(150)),
        "first revocation wins"
    );

    let outcome = db
        .store
        .revoke_token(&id("0000000000bb"), Timestamp::from_millis(1))
        .await
        .unwrap();
    assert_eq!(outcome, RevokeOutcome::NotFound);
}

async fn active_tokens_are_counted_per_role(db: TestDb) {
    for role in Role::ALL {
        assert_eq!(db.store.count_active_tokens(role).await.unwrap(), 0);
    }
    let tokens = [
        token("000000000001", "a1", Role::Admin, None, 1),
        token("000000000002", "a2", Role::Admin, None, 2),
        token("000000000003", "o1", Role::Operator, None, 3),
        token("000000000004", "g1", Role::Agent, Some("bot"), 4),
    ];
    for t in &tokens {
        db.store.insert_token(t).await.unwrap();
    }
    db.store
        .revoke_token(&tokens[1].id, Timestamp::from_millis(5))
        .await
        .unwrap();

    let mut counts = Vec::new();
    for role in Role::ALL {
        counts.push(db.store.count_active_tokens(role).await.unwrap());
    }
    assert_eq!(counts, vec![1, 1, 1, 0], "admin, operator, agent, viewer");
}

async fn agents_register_on_their_first_token_only(db: TestDb) {
    let first = token("000000000001", "p1", Role::Agent, Some("planner"), 100);
    let registered = db.store.insert_token(&first).await.unwrap();
    assert_eq!(
        registered,
        Some(AgentRecord {
            name: agent("planner"),
            registered_at: Timestamp::from_millis(100),
            active_tokens: 1,
        })
    );

    let second = token("000000000002", "p2", Role::Agent, Some("planner"), 200);
    assert_eq!(db.store.insert_token(&second).await.unwrap(), None);
    let unrelated = token("000000000003", "human", Role::Admin, None, 300);
    assert_eq!(db.store.insert_token(&unrelated).await.unwrap(), None);

    let planner = db.store.agent(&agent("planner")).await.unwrap().unwrap();
    assert_eq!(
        planner.registered_at,
        Timestamp::from_millis(100),
        "registered once"
    );
    assert_eq!(planner.active_tokens, 2);

    db.store
        .revoke_token(&first.id, Timestamp::from_millis(400))
        .await
        .unwrap();
    assert_eq!(active_tokens(&db, "planner").await, 1);
    db.store
        .revoke_token(&second.id, Timestamp::from_millis(500))
        .await
        .unwrap();
    assert_eq!(active_tokens(&db, "planner").await, 0);

    // An agent stays registered with no active token; a new token does not re-register it.
    let third = token("000000000004", "p3", Role::Agent, Some("planner"), 600);
    assert_eq!(db.store.insert_token(&third).await.unwrap(), None);
    let agents = db.store.agents().await.unwrap();
    assert_eq!(
        agents,
        vec![AgentRecord {
            name: agent("planner"),
            registered_at: Timestamp::from_millis(100),
            active_tokens: 1,
        }]
    );

    // A token stored already revoked registers its agent with no active tokens.
    let mut ghost = token("000000000005", "g", Role::Agent, Some("ghost"), 700);
    ghost.revoked_at = Some(Timestamp::from_millis(701));
    let registered = db.store.insert_token(&ghost).await.unwrap().unwrap();
    assert_eq!(registered.active_tokens, 0);
    assert_eq!(
        db.store.agent(&agent("ghost")).await.unwrap(),
        Some(registered)
    );
    assert_eq!(db.store.agent(&agent("nobody")).await.unwrap(), None);
}

async fn agents_are_listed_in_bytewise_name_order(db: TestDb) {
    // A linguistic collation would ignore the punctuation and interleave these differently.
    let names = ["b-x", "ab", "a.z", "a-b", "a0", "a"];
    for (i, name) in names.iter().enumerate() {
        let n = i64::try_from(i).unwrap();
        let t = token(&format!("{:012x}", i + 1), name, Role::Agent, Some(name), n);
        db.store.insert_token(&t).await.unwrap();
    }
    let listed: Vec<String> = db
        .store
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name.to_string())
        .collect();
    assert_eq!(listed, ["a", "a-b", "a.z", "a0", "ab", "b-x"]);
}

async fn a_failed_insert_registers_no_agent(db: TestDb) {
    let taken = token("000000000001", "taken", Role::Viewer, None, 1);
    db.store.insert_token(&taken).await.unwrap();

    let name_clash = token("000000000002", "taken", Role::Agent, Some("ghost"), 2);
    let err = db.store.insert_token(&name_clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let id_clash = token("000000000001", "fresh", Role::Agent, Some("phantom"), 3);
    let err = db.store.insert_token(&id_clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(db.store.agent(&agent("ghost")).await.unwrap(), None);
    assert_eq!(db.store.agent(&agent("phantom")).await.unwrap(), None);
    assert!(db.store.agents().await.unwrap().is_empty());

    // The agent registers normally once an insert succeeds.
    let ok = token("000000000003", "fresh", Role::Agent, Some("ghost"), 4);
    assert!(db.store.insert_token(&ok).await.unwrap().is_some());
}

async fn concurrent_inserts_all_land(db: TestDb) {
    let mut inserts = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let store = Arc::clone(&db.store);
        inserts.spawn(async move {
            let agent = (i % 2 == 0).then_some("swarm");
            let t = token(
                &format!("{i:012x}"),
                &format!("worker-{i}"),
                Role::Agent,
                agent,
                1_000,
            );
            store.insert_token(&t).await
        });
    }
    let results = inserts.join_all().await;
    let registered: Vec<AgentRecord> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(
        registered.len(),
        1,
        "exactly one insert registers the agent: {registered:?}"
    );
    assert_eq!(registered[0].name, agent("swarm"));

    let tokens = db.store.tokens().await.unwrap();
    assert_eq!(tokens.len(), 20);
    let ids: Vec<String> = tokens.iter().map(|t| t.id.to_string()).collect();
    let expected: Vec<String> = (0..20u32).map(|i| format!("{i:012x}")).collect();
    assert_eq!(ids, expected, "ordered by created_at, then id");
    assert_eq!(active_tokens(&db, "swarm").await, 10);
    assert_eq!(db.store.count_active_tokens(Role::Agent).await.unwrap(), 20);
}

async fn corrupt_rows_are_reported_not_hidden(db: TestDb) {
    let good = token("000000000001", "good", Role::Admin, None, 1);
    db.store.insert_token(&good).await.unwrap();
    // The CHECK constraints keep roles and hash lengths sane, but ids and agent names are only checked in Rust.
    db.raw_insert_agent("Not A Name").await;
    db.raw_insert_token("NOT-HEX", "mangled", Some("Not A Name"))
        .await;

    let err = db.store.tokens().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("`NOT-HEX`"), "{err}");
    let err = db.store.token_by_name("mangled").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = db.store.agents().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("`Not A Name`"), "{err}");

    // Healthy rows are still readable one by one.
    assert_eq!(db.store.token(&good.id).await.unwrap(), Some(good));
}

async fn close_is_idempotent_and_final(db: TestDb) {
    db.store.ping().await.unwrap();
    let t = token("000000000001", "kept", Role::Viewer, None, 1);
    db.store.insert_token(&t).await.unwrap();
    db.store.close().await;
    db.store.close().await;

    let err = db.store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = db.store.tokens().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    let reopened = db.reopen().await;
    assert_eq!(reopened.token(&t.id).await.unwrap(), Some(t));
    reopened.close().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Governance scenarios
// ---------------------------------------------------------------------------------------------------------------

async fn budget_holds_are_all_or_nothing(db: TestDb) {
    let wide = limits(Some(1_000), None, None);
    let narrow = limits(Some(100), None, None);
    let first = hold("h1", &[("agent", wide), ("pool", narrow)], cost(60), 10);
    assert!(matches!(
        db.store.budget_hold(&first).await.unwrap(),
        BudgetHoldOutcome::Held(_)
    ));
    // The pool has 40 left: a 50 hold fails there and must leave the agent key untouched.
    let second = hold("h2", &[("agent", wide), ("pool", narrow)], cost(50), 10);
    match db.store.budget_hold(&second).await.unwrap() {
        BudgetHoldOutcome::Refused(counter) => {
            assert_eq!(counter.key, "pool");
            assert_eq!(counter.reserved.cost_micros, 60);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let agent_key = db.store.budget_counter("agent").await.unwrap().unwrap();
    assert_eq!(
        agent_key.reserved.cost_micros, 60,
        "nothing held on the agent key"
    );
    // A refused id was never stored: it can be used again.
    let retry = hold("h2", &[("agent", wide), ("pool", narrow)], cost(40), 10);
    assert!(matches!(
        db.store.budget_hold(&retry).await.unwrap(),
        BudgetHoldOutcome::Held(_)
    ));
    let pool = db.store.budget_counter("pool").await.unwrap().unwrap();
    assert_eq!(pool.reserved.cost_micros, 100);
    assert_eq!(pool.limits, narrow);
}

async fn budget_holds_report_counters_before_and_refusals(db: TestDb) {
    let l = limits(Some(100), Some(3), Some(10));
    let amounts = BudgetAmounts {
        cost_micros: 30,
        effort: 1,
        risk: 4,
    };
    let BudgetHoldOutcome::Held(before) = db
        .store
        .budget_hold(&hold("a", &[("k2", l), ("k1", l)], amounts, 10))
        .await
        .unwrap()
    else {
        panic!("first hold refused")
    };
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].key, "k2", "request order, not lock order");
    assert_eq!(before[0].reserved, BudgetAmounts::default());
    let BudgetHoldOutcome::Held(before) = db
        .store
        .budget_hold(&hold("b", &[("k1", l)], amounts, 10))
        .await
        .unwrap()
    else {
        panic!("second hold refused")
    };
    assert_eq!(before[0].reserved, amounts);
    // Risk would reach 12 > 10.
    assert!(matches!(
        db.store
            .budget_hold(&hold("c", &[("k1", l)], amounts, 10))
            .await
            .unwrap(),
        BudgetHoldOutcome::Refused(_)
    ));
    // Alone over a limit, on a key never seen: refused, reported as an empty counter.
    let BudgetHoldOutcome::Refused(fresh) = db
        .store
        .budget_hold(&hold("d", &[("fresh", l)], cost(101), 10))
        .await
        .unwrap()
    else {
        panic!("over-limit hold accepted")
    };
    assert_eq!(fresh.key, "fresh");
    assert_eq!(fresh.spent, BudgetAmounts::default());
    assert_eq!(db.store.budget_counter("fresh").await.unwrap(), None);
    // No limits at all: anything goes.
    let open = limits(None, None, None);
    assert!(matches!(
        db.store
            .budget_hold(&hold("e", &[("open", open)], cost(i64::MAX / 4), 10))
            .await
            .unwrap(),
        BudgetHoldOutcome::Held(_)
    ));
}

async fn budget_settle_release_and_expire_round_trip(db: TestDb) {
    let l = limits(Some(1_000), None, None);
    for (id, expires) in [("s", 100), ("r", 100), ("x", 50), ("late", 50)] {
        db.store
            .budget_hold(&hold(id, &[("k", l), ("g", l)], cost(100), expires))
            .await
            .unwrap();
    }
    let at = Timestamp::from_millis(20);
    // Settle for more than reserved: spent records the actual amount.
    assert_eq!(
        db.store.budget_settle("s", cost(130), at).await.unwrap(),
        BudgetFinishOutcome::Settled
    );
    assert_eq!(
        db.store.budget_settle("s", cost(999), at).await.unwrap(),
        BudgetFinishOutcome::AlreadySettled
    );
    assert_eq!(
        db.store.budget_release("s", at).await.unwrap(),
        BudgetFinishOutcome::AlreadySettled
    );
    assert_eq!(
        db.store.budget_release("r", at).await.unwrap(),
        BudgetFinishOutcome::Released
    );
    assert_eq!(
        db.store.budget_release("r", at).await.unwrap(),
        BudgetFinishOutcome::AlreadyReleased
    );
    assert_eq!(
        db.store.budget_settle("r", cost(1), at).await.unwrap(),
        BudgetFinishOutcome::AlreadyReleased
    );
    assert_eq!(
        db.store.budget_settle("nope", cost(1), at).await.unwrap(),
        BudgetFinishOutcome::NotFound
    );
    let k = db.store.budget_counter("k").await.unwrap().unwrap();
    assert_eq!((k.spent.cost_micros, k.reserved.cost_micros), (130, 200));

    // Nothing has expired at 49; both 50s expire at 50.
    let none = db
        .store
        .budget_expire(Timestamp::from_millis(49), Timestamp::from_millis(0))
        .await
        .unwrap();
    assert!(none.is_empty());
    let mut expired = db
        .store
        .budget_expire(Timestamp::from_millis(50), Timestamp::from_millis(0))
        .await
        .unwrap();
    expired.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(expired.len(), 2);
    assert_eq!(expired[0].id, "late");
    assert_eq!(expired[0].keys, vec!["k".to_owned(), "g".to_owned()]);
    assert_eq!(expired[0].amounts, cost(100));
    let k = db.store.budget_counter("k").await.unwrap().unwrap();
    assert_eq!((k.spent.cost_micros, k.reserved.cost_micros), (130, 0));
    assert!(
        db.store
            .budget_expire(Timestamp::from_millis(60), Timestamp::from_millis(0))
            .await
            .unwrap()
            .is_empty(),
        "expiry happens once"
    );
    // The call behind an expired hold finished after all: its spend still counts.
    assert_eq!(
        db.store.budget_settle("late", cost(70), at).await.unwrap(),
        BudgetFinishOutcome::SettledAfterExpiry
    );
    assert_eq!(
        db.store.budget_release("x", at).await.unwrap(),
        BudgetFinishOutcome::AlreadyExpired
    );
    let g = db.store.budget_counter("g").await.unwrap().unwrap();
    assert_eq!((g.spent.cost_micros, g.reserved.cost_micros), (200, 0));
    // Finished holds are forgotten once old enough.
    db.store
        .budget_expire(Timestamp::from_millis(70), Timestamp::from_millis(1_000))
        .await
        .unwrap();
    assert_eq!(
        db.store.budget_settle("s", cost(1), at).await.unwrap(),
        BudgetFinishOutcome::NotFound
    );
}

async fn budget_holds_reject_duplicate_ids_and_keys(db: TestDb) {
    let l = limits(Some(100), None, None);
    db.store
        .budget_hold(&hold("dup", &[("k", l)], cost(1), 10))
        .await
        .unwrap();
    let err = db
        .store
        .budget_hold(&hold("dup", &[("k", l)], cost(1), 10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = db
        .store
        .budget_hold(&hold("twice", &[("k", l), ("k", l)], cost(1), 10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let k = db.store.budget_counter("k").await.unwrap().unwrap();
    assert_eq!(k.reserved.cost_micros, 1);
}

async fn concurrent_budget_holds_never_overshoot(db: TestDb) {
    let l = limits(Some(50 * 7), None, None);
    let mut holds = tokio::task::JoinSet::new();
    for i in 0..120 {
        let store = Arc::clone(&db.store);
        holds.spawn(async move {
            // Every hold draws on the shared key and one of three others, in varying order.
            let other = format!("agent-{}", i % 3);
            let lines: Vec<(&str, BudgetLimits)> = if i % 2 == 0 {
                vec![("shared", l), (other.as_str(), l)]
            } else {
                vec![(other.as_str(), l), ("shared", l)]
            };
            let request = hold(&format!("c{i}"), &lines, cost(7), 10);
            store.budget_hold(&request).await.unwrap()
        });
    }
    let held = holds
        .join_all()
        .await
        .into_iter()
        .filter(|o| matches!(o, BudgetHoldOutcome::Held(_)))
        .count();
    assert_eq!(held, 50);
    let shared = db.store.budget_counter("shared").await.unwrap().unwrap();
    assert_eq!(shared.reserved.cost_micros, 350);
}

async fn budget_overrides_are_recorded(db: TestDb) {
    let grant = BudgetOverrideRecord {
        by: "alice".to_owned(),
        reason: "launch day".to_owned(),
        at: Timestamp::from_millis(5),
    };
    db.store.budget_override("k", &grant).await.unwrap();
    let k = db.store.budget_counter("k").await.unwrap().unwrap();
    assert_eq!(k.override_grant, Some(grant));
    assert_eq!(k.spent, BudgetAmounts::default());
    db.store
        .budget_hold(&hold(
            "h",
            &[("k", limits(Some(10), None, None))],
            cost(3),
            9,
        ))
        .await
        .unwrap();
    let k = db.store.budget_counter("k").await.unwrap().unwrap();
    assert!(k.override_grant.is_some(), "holds keep the override");
}

async fn approval_requests_are_idempotent_per_pending_action(db: TestDb) {
    let first = approval("ap1", "bot", "aa", 10, 100);
    assert_eq!(db.store.approval_request(&first).await.unwrap(), first);
    let again = approval("ap2", "bot", "aa", 20, 120);
    assert_eq!(
        db.store.approval_request(&again).await.unwrap(),
        first,
        "the pending request is returned"
    );
    // Another agent or another action gets its own.
    let other = approval("ap3", "other", "aa", 20, 120);
    assert_eq!(db.store.approval_request(&other).await.unwrap(), other);
    // Once the pending one expired, a new request replaces it.
    let later = approval("ap4", "bot", "aa", 100, 200);
    assert_eq!(db.store.approval_request(&later).await.unwrap(), later);
    let old = db.store.approval("ap1").await.unwrap().unwrap();
    assert_eq!(old.status, ApprovalStatus::Expired);
    assert_eq!(db.store.approval("ap2").await.unwrap(), None);
    let ids: Vec<String> = db
        .store
        .approvals(None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["ap1", "ap3", "ap4"]);
    let of_bot = db.store.approvals(Some(&agent("bot"))).await.unwrap();
    assert_eq!(of_bot.len(), 2);
    let latest = db
        .store
        .approval_latest(&agent("bot"), "aa")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, "ap4");
}

async fn approvals_are_decided_once_and_expire(db: TestDb) {
    db.store
        .approval_request(&approval("a", "bot", "h1", 0, 100))
        .await
        .unwrap();
    db.store
        .approval_request(&approval("b", "bot", "h2", 0, 100))
        .await
        .unwrap();
    let yes = decision(true, "alice", 10);
    let ApprovalDecideOutcome::Decided(decided) =
        db.store.approval_decide("a", &yes).await.unwrap()
    else {
        panic!("not decided")
    };
    assert_eq!(decided.status, ApprovalStatus::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("alice"));
    assert_eq!(decided.decided_at, Some(Timestamp::from_millis(10)));
    assert_eq!(decided.reason.as_deref(), Some("because"));
    let no = decision(false, "bob", 11);
    assert!(matches!(
        db.store.approval_decide("a", &no).await.unwrap(),
        ApprovalDecideOutcome::AlreadyDecided(r) if r.status == ApprovalStatus::Approved
    ));
    let late = decision(true, "alice", 100);
    assert!(matches!(
        db.store.approval_decide("b", &late).await.unwrap(),
        ApprovalDecideOutcome::Expired(r) if r.status == ApprovalStatus::Expired
    ));
    assert!(matches!(
        db.store.approval_decide("b", &no).await.unwrap(),
        ApprovalDecideOutcome::Expired(_)
    ));
    assert_eq!(
        db.store.approval_decide("zz", &no).await.unwrap(),
        ApprovalDecideOutcome::NotFound
    );
}

async fn approvals_are_consumed_once_under_concurrency(db: TestDb) {
    db.store
        .approval_request(&approval("a", "bot", "h", 0, 1_000))
        .await
        .unwrap();
    let at = Timestamp::from_millis(5);
    assert_eq!(
        db.store
            .approval_consume(&agent("bot"), "h", at)
            .await
            .unwrap(),
        None,
        "pending is not usable"
    );
    db.store
        .approval_decide("a", &decision(true, "alice", 1))
        .await
        .unwrap();
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = Arc::clone(&db.store);
        consumers.spawn(async move { store.approval_consume(&agent("bot"), "h", at).await });
    }
    let got: Vec<ApprovalRecord> = consumers
        .join_all()
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(got.len(), 1, "single use");
    assert_eq!(got[0].consumed_at, Some(at));
    // Another agent cannot use it; an expired approval cannot be used.
    db.store
        .approval_request(&approval("b", "bot", "h2", 0, 10))
        .await
        .unwrap();
    db.store
        .approval_decide("b", &decision(true, "alice", 1))
        .await
        .unwrap();
    assert_eq!(
        db.store
            .approval_consume(&agent("eve"), "h2", at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.store
            .approval_consume(&agent("bot"), "h2", Timestamp::from_millis(10))
            .await
            .unwrap(),
        None
    );
}

async fn halts_and_edges_round_trip(db: TestDb) {
    let all = HaltRecord {
        agent: None,
        state: HaltStateRecord::Halted,
        reason: "incident".to_owned(),
        by: "alice".to_owned(),
        at: Timestamp::from_millis(1),
        cause: HaltCauseRecord::Manual,
    };
    let cascaded = HaltRecord {
        agent: Some(agent("worker")),
        state: HaltStateRecord::Paused,
        reason: "cascade".to_owned(),
        by: "kernel".to_owned(),
        at: Timestamp::from_millis(2),
        cause: HaltCauseRecord::Cascade {
            from: agent("boss"),
        },
    };
    let looped = HaltRecord {
        agent: Some(agent("boss")),
        state: HaltStateRecord::Halted,
        reason: "loop".to_owned(),
        by: "kernel".to_owned(),
        at: Timestamp::from_millis(3),
        cause: HaltCauseRecord::Loop,
    };
    db.store
        .halts_put(&[looped.clone(), cascaded.clone(), all.clone()])
        .await
        .unwrap();
    assert_eq!(
        db.store.halts().await.unwrap(),
        vec![all.clone(), looped.clone(), cascaded.clone()]
    );
    let mut budget = looped.clone();
    budget.cause = HaltCauseRecord::Budget;
    budget.state = HaltStateRecord::Paused;
    db.store.halts_put(&[budget.clone()]).await.unwrap();
    db.store
        .halts_remove(&[None, Some(agent("worker")), Some(agent("nobody"))])
        .await
        .unwrap();
    assert_eq!(db.store.halts().await.unwrap(), vec![budget]);

    let edge = AgentEdgeRecord {
        from: agent("boss"),
        to: agent("worker"),
        learned_at: Timestamp::from_millis(7),
    };
    assert!(db.store.agent_edge_insert(&edge).await.unwrap());
    let mut again = edge.clone();
    again.learned_at = Timestamp::from_millis(9);
    assert!(!db.store.agent_edge_insert(&again).await.unwrap());
    assert_eq!(db.store.agent_edges().await.unwrap(), vec![edge]);
}

// ---------------------------------------------------------------------------------------------------------------
// Backend-specific checks
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_creates_the_file_in_wal_mode_and_checkpoints_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = aura_store::open(&sqlite_options(&path)).await.unwrap();
    assert!(path.exists());
    store
        .insert_token(&token("000000000001", "t", Role::Admin, None, 1))
        .await
        .unwrap();

    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();

    store.close().await;
    let wal = dir.path().join("state.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the write-ahead log is folded back on close");
}

#[tokio::test]
async fn sqlite_in_a_missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("state.db");
    let err = aura_store::open(&sqlite_options(&path)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("state.db"), "{err}");
}

#[tokio::test]
async fn an_empty_pool_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = sqlite_options(&dir.path().join("state.db"));
    options.max_connections = 0;
    let err = aura_store::open(&options).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidOptions(_)), "{err:?}");
}

#[tokio::test]
async fn postgres_rejects_a_bad_schema_name_before_connecting() {
    let options = ConnectOptions {
        target: StoreTarget::Postgres {
            url: "postgres://nobody@127.0.0.1:1/none".to_owned(),
            schema: Some("Robert'); DROP TABLE tokens;--".to_owned()),
        },
        max_connections: 1,
        connect_timeout: Duration::from_secs(1),
    };
    let err = aura_store::open(&options).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidOptions(_)), "{err:?}");
    assert!(err.to_string().contains("schema name"), "{err}");
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable_and_hides_the_password() {
    let options = ConnectOptions {
        target: StoreTarget::Postgres {
            // Port 1 on loopback: nothing listens, the connection is refused at once.
            url: "postgres://aura:sw0rdfish@127.0.0.1:1/aura".to_owned(),
            schema: Some("aura".to_owned()),
        },
        max_connections: 1,
        connect_timeout: Duration::from_millis(500),
    };
    let err = aura_store::open(&options).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("sw0rdfish"), "{shown}");
    assert!(
        shown.contains("postgres://aura:***@127.0.0.1:1/aura"),
        "{shown}"
    );
}

#[tokio::test]
async fn postgres_wrong_password_hides_the_password() {
    // The local server trusts loopback, so authentication succeeds whatever the password: this only checks that
    // a password in the URL never reaches a message when the database itself does not exist.
    let base = postgres_url();
    let Some((scheme_user, host_and_rest)) = base.split_once('@') else {
        return; // A URL without user info: nothing to add a password to.
    };
    let host = host_and_rest.split('/').next().unwrap_or(host_and_rest);
    let url = format!("{scheme_user}:sw0rdfish@{host}/aura_no_such_database");
    let options = ConnectOptions {
        target: StoreTarget::Postgres { url, schema: None },
        max_connections: 1,
        connect_timeout: Duration::from_secs(5),
    };
    let err = aura_store::open(&options).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("sw0rdfish"), "{shown}");
}

// ---------------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------------

/// A store under test plus raw access to its database, for reopening and for planting bad rows.
struct TestDb {
    store: Arc<dyn Store>,
    options: ConnectOptions,
    sqlite_dir: Option<Arc<tempfile::TempDir>>,
    /// Postgres schemas to drop when the test ends.
    schemas: Arc<Mutex<Vec<String>>>,
}

impl TestDb {
    fn backend(&self) -> &'static str {
        match self.options.target {
            StoreTarget::Sqlite { .. } => "sqlite",
            StoreTarget::Postgres { .. } => "postgres",
        }
    }

    /// Opens the same database again.
    async fn reopen(&self) -> Arc<dyn Store> {
        aura_store::open(&self.options).await.unwrap()
    }

    /// Options for a second, never opened database of the same backend, cleaned up with this one.
    fn fresh_options(&self) -> ConnectOptions {
        match &self.options.target {
            StoreTarget::Sqlite { .. } => {
                let dir = self.sqlite_dir.as_ref().unwrap();
                sqlite_options(&dir.path().join(format!("fresh-{}.db", random_hex())))
            }
            StoreTarget::Postgres { url, .. } => {
                let schema = format!("aura_test_{}", random_hex());
                self.schemas.lock().unwrap().push(schema.clone());
                postgres_options(url, &schema)
            }
        }
    }

    /// Rows in the migration ledger.
    async fn migration_rows(&self) -> i64 {
        // The highest version applied (versions may have gaps).
        const SQL: &str = "SELECT MAX(version) FROM _sqlx_migrations";
        match &self.options.target {
            StoreTarget::Sqlite { path } => {
                let mut conn = raw_sqlite(path).await;
                sqlx::query_scalar(SQL).fetch_one(&mut conn).await.unwrap()
            }
            StoreTarget::Postgres { url, schema } => {
                let mut conn = raw_postgres(url, schema.as_deref()).await;
                sqlx::query_scalar(SQL).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    async fn raw_insert_agent(&self, name: &str) {
        const SQL: &str = "INSERT INTO agents (name, registered_at) VALUES ($1, 0)";
        match &self.options.target {
            StoreTarget::Sqlite { path } => {
                let mut conn = raw_sqlite(path).await;
                sqlx::query(SQL)
                    .bind(name)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            StoreTarget::Postgres { url, schema } => {
                let mut conn = raw_postgres(url, schema.as_deref()).await;
                sqlx::query(SQL)
                    .bind(name)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }

    async fn raw_insert_token(&self, id: &str, name: &str, agent: Option<&str>) {
        const SQL: &str = "INSERT INTO tokens (id, name, role, agent, secret_hash, created_at) \
                           VALUES ($1, $2, 'admin', $3, $4, 0)";
        let hash = vec![0u8; 32];
        match &self.options.target {
            StoreTarget::Sqlite { path } => {
                let mut conn = raw_sqlite(path).await;
                let query = sqlx::query(SQL).bind(id).bind(name).bind(agent).bind(hash);
                query.execute(&mut conn).await.unwrap();
            }
            StoreTarget::Postgres { url, schema } => {
                let mut conn = raw_postgres(url, schema.as_deref()).await;
                let query = sqlx::query(SQL).bind(id).bind(name).bind(agent).bind(hash);
                query.execute(&mut conn).await.unwrap();
            }
        }
    }
}

async fn run_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let options = sqlite_options(&dir.path().join("aura.db"));
    let store = aura_store::open(&options).await.unwrap();
    scenario(TestDb {
        store,
        options,
        sqlite_dir: Some(dir),
        schemas: Arc::default(),
    })
    .await;
}

/// Runs the scenario in a fresh schema and drops every schema it used afterwards, also when it panics.
async fn run_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(TestDb) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = postgres_url();
    // Fail loudly, never skip, when the server is down.
    if let Err(err) = sqlx::PgConnection::connect(&url).await {
        panic!(
            "PostgreSQL is not reachable at AURA_TEST_POSTGRES_URL (default {DEFAULT_POSTGRES_URL}): {err}\n\
             Start PostgreSQL (e.g. `pg_ctlcluster 15 main start`, or `.ci/run`, which restarts it) and rerun."
        );
    }
    let schema = format!("aura_test_{}", random_hex());
    let schemas = Arc::new(Mutex::new(vec![schema.clone()]));
    let options = postgres_options(&url, &schema);

    let outcome = {
        let schemas = Arc::clone(&schemas);
        // Spawned so that a panic is caught as a JoinError and the schemas are still dropped below.
        tokio::spawn(async move {
            let store = aura_store::open(&options).await.unwrap();
            scenario(TestDb {
                store,
                options,
                sqlite_dir: None,
                schemas,
            })
            .await;
        })
        .await
    };

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let schemas = schemas.lock().unwrap().clone();
    for schema in schemas {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

fn postgres_url() -> String {
    std::env::var("AURA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

fn sqlite_options(path: &Path) -> ConnectOptions {
    ConnectOptions {
        target: StoreTarget::Sqlite {
            path: PathBuf::from(path),
        },
        max_connections: 4,
        connect_timeout: Duration::from_secs(10),
    }
}

fn postgres_options(url: &str, schema: &str) -> ConnectOptions {
    ConnectOptions {
        target: StoreTarget::Postgres {
            url: url.to_owned(),
            schema: Some(schema.to_owned()),
        },
        max_connections: 4,
        connect_timeout: Duration::from_secs(10),
    }
}

async fn raw_sqlite(path: &Path) -> sqlx::SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(5));
    sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap()
}

async fn raw_postgres(url: &str, schema: Option<&str>) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    if let Some(schema) = schema {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "SET search_path TO \"{schema}\""
        )))
        .await
        .unwrap();
    }
    conn
}

/// 16 hex digits, different per call and per process.
fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hash = RandomState::new().hash_one((std::process::id(), n));
    format!("{hash:016x}")
}

async fn active_tokens(db: &TestDb, name: &str) -> u64 {
    db.store
        .agent(&agent(name))
        .await
        .unwrap()
        .unwrap()
        .active_tokens
}

fn token(
    id_hex: &str,
    name: &str,
    role: Role,
    agent_name: Option<&str>,
    created: i64,
) -> TokenRecord {
    TokenRecord {
        id: id(id_hex),
        name: name.to_owned(),
        role,
        agent: agent_name.map(agent),
        secret_hash: TokenHash::from_slice(&[7u8; 32]).unwrap(),
        created_at: Timestamp::from_millis(created),
        revoked_at: None,
    }
}

fn id(hex: &str) -> TokenId {
    TokenId::parse(hex).unwrap()
}

fn agent(name: &str) -> AgentName {
    AgentName::new(name).unwrap()
}

fn limits(cost_micros: Option<i64>, effort: Option<i64>, risk: Option<i64>) -> BudgetLimits {
    BudgetLimits {
        cost_micros,
        effort,
        risk,
    }
}

fn cost(cost_micros: i64) -> BudgetAmounts {
    BudgetAmounts {
        cost_micros,
        ..BudgetAmounts::default()
    }
}

fn hold(
    id: &str,
    lines: &[(&str, BudgetLimits)],
    amounts: BudgetAmounts,
    expires: i64,
) -> BudgetHoldRequest {
    BudgetHoldRequest {
        id: id.to_owned(),
        lines: lines
            .iter()
            .map(|(key, limits)| BudgetHoldLine {
                key: (*key).to_owned(),
                limits: *limits,
            })
            .collect(),
        amounts,
        created_at: Timestamp::from_millis(1),
        expires_at: Timestamp::from_millis(expires),
    }
}

fn approval(id: &str, agent_name: &str, hash: &str, created: i64, expires: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.to_owned(),
        agent: agent(agent_name),
        action_hash: hash.to_owned(),
        kind: "shell".to_owned(),
        target: "rm".to_owned(),
        created_at: Timestamp::from_millis(created),
        expires_at: Timestamp::from_millis(expires),
        status: ApprovalStatus::Pending,
        decided_by: None,
        decided_at: None,
        reason: None,
        consumed_at: None,
    }
}

fn decision(approve: bool, by: &str, at: i64) -> ApprovalDecision {
    ApprovalDecision {
        approve,
        by: by.to_owned(),
        reason: Some("because".to_owned()),
        at: Timestamp::from_millis(at),
    }
}
