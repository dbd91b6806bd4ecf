//! Approvals on both backends: bound to the exact action and agent, idempotent requests, single decisions, expiry
//! on a manual clock, single-use consumption.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ledger_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aura_core::{Action, AgentName, Clock, Estimate, ManualClock, RawAction, Timestamp};
use aura_govern::approvals::{
    ApprovalCheck, ApprovalError, ApprovalFilter, ApprovalId, ApprovalState, Approvals,
    ApprovalsConfig,
};
use aura_store::Store;
use serde_json::json;

const T0: i64 = 1_795_292_371_042;
const TTL: Duration = Duration::from_secs(600);

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let db = super::ledger_support::sqlite().await;
                    super::$scenario(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let db = super::ledger_support::postgres().await;
                    super::$scenario(db.store.clone()).await;
                }
            )*
        }
    };
}

on_both_backends!(
    requests_are_idempotent_while_pending,
    approval_admits_only_the_identical_action_once,
    denials_and_expiry_are_reported,
    deciding_twice_or_late_is_an_error,
    reusable_approvals_admit_every_retry_until_expiry,
    listing_filters_by_agent_and_state,
);

async fn requests_are_idempotent_while_pending(store: Arc<dyn Store>) {
    let (approvals, clock) = service(store, true);
    let action = shell("bot", "rm", &["-rf", "/tmp/x"]);
    let first = approvals.request(&action, TTL).await.unwrap();
    assert_eq!(first.state, ApprovalState::Pending);
    assert_eq!(first.agent, agent("bot"));
    assert_eq!(first.action_hash, action.args_hash_hex());
    assert_eq!(
        (first.kind.as_str(), first.target.as_str()),
        ("shell", "rm")
    );
    assert_eq!(first.expires_at.as_millis(), T0 + 600_000);
    clock.advance(1_000);
    let again = approvals.request(&action, TTL).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.expires_at, first.expires_at, "not extended");
    // A different action, or the same action by another agent, is another request.
    let other = approvals
        .request(&shell("bot", "rm", &["-rf", "/tmp/y"]), TTL)
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let elsewhere = approvals
        .request(&shell("eve", "rm", &["-rf", "/tmp/x"]), TTL)
        .await
        .unwrap();
    assert_ne!(elsewhere.id, first.id);
    assert_eq!(
        approvals.check(&action, clock.now()).await.unwrap(),
        ApprovalCheck::Pending {
            id: first.id.clone()
        }
    );
    let err = approvals
        .request(&action, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::Invalid(_)), "{err}");
}

async fn approval_admits_only_the_identical_action_once(store: Arc<dyn Store>) {
    let (approvals, clock) = service(store, true);
    let action = shell("bot", "systemctl", &["restart", "web"]);
    let pending = approvals.request(&action, TTL).await.unwrap();
    let approved = approvals
        .approve(&pending.id, "alice", Some("planned"))
        .await
        .unwrap();
    assert_eq!(approved.state, ApprovalState::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some("alice"));
    assert_eq!(approved.reason.as_deref(), Some("planned"));
    assert_eq!(approved.decided_at, Some(clock.now()));

    // Same kind and target, other args; same action, other agent: not approved.
    let changed = shell("bot", "systemctl", &["stop", "web"]);
    assert_eq!(
        approvals.check(&changed, clock.now()).await.unwrap(),
        ApprovalCheck::None
    );
    let impostor = shell("eve", "systemctl", &["restart", "web"]);
    assert_eq!(
        approvals.check(&impostor, clock.now()).await.unwrap(),
        ApprovalCheck::None
    );
    // Key order in args does not matter: the canonical hash is the same.
    let reordered = action_of("bot", "tool_call", "deploy", json!({"b": 2, "a": 1}));
    let original = action_of("bot", "tool_call", "deploy", json!({"a": 1, "b": 2}));
    let tool = approvals.request(&original, TTL).await.unwrap();
    approvals.approve(&tool.id, "alice", None).await.unwrap();
    assert!(matches!(
        approvals.check(&reordered, clock.now()).await.unwrap(),
        ApprovalCheck::Approved { .. }
    ));

    clock.advance(5_000);
    assert_eq!(
        approvals.check(&action, clock.now()).await.unwrap(),
        ApprovalCheck::Approved {
            id: pending.id.clone(),
            by: "alice".into()
        }
    );
    // Consumed: the retry after that needs a new approval.
    assert_eq!(
        approvals.check(&action, clock.now()).await.unwrap(),
        ApprovalCheck::None
    );
    let used = approvals.get(&pending.id).await.unwrap().unwrap();
    assert_eq!(used.consumed_at, Some(clock.now()));
    let next = approvals.request(&action, TTL).await.unwrap();
    assert_ne!(next.id, pending.id);
}

async fn denials_and_expiry_are_reported(store: Arc<dyn Store>) {
    let (approvals, clock) = service(store, true);
    let denied = shell("bot", "dd", &["if=/dev/zero"]);
    let request = approvals.request(&denied, TTL).await.unwrap();
    approvals
        .deny(&request.id, "bob", Some("never"))
        .await
        .unwrap();
    assert_eq!(
        approvals.check(&denied, clock.now()).await.unwrap(),
        ApprovalCheck::Denied {
            id: request.id.clone(),
            by: "bob".into(),
            reason: Some("never".into())
        }
    );

    let slow = shell("bot", "reboot", &[]);
    let waiting = approvals.request(&slow, TTL).await.unwrap();
    let approved = shell("bot", "uptime", &[]);
    let ok = approvals.request(&approved, TTL).await.unwrap();
    approvals.approve(&ok.id, "alice", None).await.unwrap();

    clock.advance(600_000);
    let now = clock.now();
    assert_eq!(
        approvals.check(&slow, now).await.unwrap(),
        ApprovalCheck::Expired {
            id: waiting.id.clone()
        }
    );
    assert_eq!(
        approvals.check(&approved, now).await.unwrap(),
        ApprovalCheck::Expired { id: ok.id.clone() }
    );
    assert_eq!(
        approvals.check(&denied, now).await.unwrap(),
        ApprovalCheck::Expired {
            id: request.id.clone()
        }
    );
    assert_eq!(
        approvals.get(&waiting.id).await.unwrap().unwrap().state,
        ApprovalState::Expired
    );
    // After expiry a new request gets a new id.
    let renewed = approvals.request(&slow, TTL).await.unwrap();
    assert_ne!(renewed.id, waiting.id);
    assert_eq!(
        approvals.check(&slow, now).await.unwrap(),
        ApprovalCheck::Pending { id: renewed.id }
    );
}

async fn deciding_twice_or_late_is_an_error(store: Arc<dyn Store>) {
    let (approvals, clock) = service(store, true);
    let a = approvals
        .request(&shell("bot", "ls", &[]), TTL)
        .await
        .unwrap();
    approvals.approve(&a.id, "alice", None).await.unwrap();
    let err = approvals.deny(&a.id, "bob", None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("approval `{}` was already approved by `alice`", a.id)
    );
    let b = approvals
        .request(&shell("bot", "ps", &[]), TTL)
        .await
        .unwrap();
    clock.advance(600_000);
    let err = approvals.approve(&b.id, "alice", None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Expired { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("expired at 2026-11-21T20:29:31.042Z"),
        "{err}"
    );
    let missing = ApprovalId::parse("0123456789abcdef0123456789abcdef").unwrap();
    let err = approvals
        .approve(&missing, "alice", None)
        .await
        .unwrap_err();
    assert_eq!(err, ApprovalError::NotFound(missing.to_string()));
    let err = approvals.approve(&a.id, " ", None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Invalid(_)), "{err}");
    assert!(ApprovalId::parse("not-an-id").is_none());
}

async fn reusable_approvals_admit_every_retry_until_expiry(store: Arc<dyn Store>) {
    let (approvals, clock) = service(store, false);
    let action = shell("bot", "curl", &["https://example.com"]);
    let a = approvals.request(&action, TTL).await.unwrap();
    approvals.approve(&a.id, "alice", None).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            approvals.check(&action, clock.now()).await.unwrap(),
            ApprovalCheck::Approved { .. }
        ));
    }
    clock.advance(600_000);
    assert_eq!(
        approvals.check(&action, clock.now()).await.unwrap(),
        ApprovalCheck::Expired { id: a.id }
    );
}

async fn listing_filters_by_agent_and_state(store: Arc<dyn Store>) {
    let (approvals, clock) = service(store, true);
    let a = approvals
        .request(&shell("bot", "a", &[]), TTL)
        .await
        .unwrap();
    clock.advance(1);
    let b = approvals
        .request(&shell("bot", "b", &[]), Duration::from_millis(10))
        .await
        .unwrap();
    clock.advance(1);
    let c = approvals
        .request(&shell("eve", "c", &[]), TTL)
        .await
        .unwrap();
    approvals.approve(&a.id, "alice", None).await.unwrap();
    clock.advance(20);
    let ids = |list: Vec<aura_govern::approvals::Approval>| {
        list.into_iter().map(|a| a.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(approvals.list(&ApprovalFilter::default()).await.unwrap()),
        [a.id.clone(), b.id.clone(), c.id.clone()]
    );
    let of_bot = ApprovalFilter {
        agent: Some(agent("bot")),
        state: None,
    };
    assert_eq!(
        ids(approvals.list(&of_bot).await.unwrap()),
        [a.id.clone(), b.id.clone()]
    );
    let pending = ApprovalFilter {
        agent: None,
        state: Some(ApprovalState::Pending),
    };
    assert_eq!(ids(approvals.list(&pending).await.unwrap()), [c.id]);
    let expired = ApprovalFilter {
        agent: None,
        state: Some(ApprovalState::Expired),
    };
    assert_eq!(ids(approvals.list(&expired).await.unwrap()), [b.id]);
}

fn service(store: Arc<dyn Store>, single_use: bool) -> (Approvals, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    (
        Approvals::new(store, dyn_clock, ApprovalsConfig { single_use }),
        clock,
    )
}

fn agent(name: &str) -> AgentName {
    AgentName::new(name).unwrap()
}

fn shell(agent_name: &str, program: &str, argv: &[&str]) -> Action {
    action_of(agent_name, "shell", program, json!({ "argv": argv }))
}

fn action_of(agent_name: &str, kind: &str, target: &str, args: serde_json::Value) -> Action {
    Action::extract(RawAction {
        agent: agent(agent_name),
        task: None,
        kind: kind.into(),
        target: target.into(),
        args,
        estimate: Estimate::default(),
        labels: BTreeMap::new(),
    })
    .unwrap()
}
