//! Halts on both backends: synchronous status, write-through persistence restored on reopen, cancellation
//! watches and events, and cascades over declared and learned edges (transitive, loop-safe, per-agent policy).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ledger_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aura_core::{AgentName, Clock, ManualClock, Timestamp};
use aura_govern::halts::{
    CascadePolicy, Halt, HaltCause, HaltEvent, HaltState, HaltTarget, Halts, HaltsConfig, WorkEdge,
};
use aura_store::Store;

const T0: i64 = 1_795_292_371_042;

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
    halts_pauses_and_resumes_survive_a_restart,
    halting_everyone_outranks_a_pause,
    cascades_follow_edges_transitively_and_stop_at_loops,
    cascade_policies_are_per_agent_and_never_downgrade,
    learned_edges_cascade_and_persist,
    watches_and_events_signal_halts,
);

async fn halts_pauses_and_resumes_survive_a_restart(store: Arc<dyn Store>) {
    let (halts, clock) = open(&store, config(&[], CascadePolicy::None)).await;
    assert_eq!(halts.status(&agent("bot")), None);
    let applied = halts
        .halt(
            HaltTarget::Agent(agent("bot")),
            "runaway",
            "alice",
            HaltCause::Manual,
        )
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
    clock.advance(10);
    halts
        .pause(HaltTarget::Agent(agent("helper")), "maintenance", "bob")
        .await
        .unwrap();
    halts
        .halt(
            HaltTarget::Agent(agent("spender")),
            "budget hard stop",
            "kernel",
            HaltCause::Budget,
        )
        .await
        .unwrap();

    let bot = halts.status(&agent("bot")).unwrap();
    assert_eq!(
        bot,
        Halt {
            target: HaltTarget::Agent(agent("bot")),
            state: HaltState::Halted,
            reason: "runaway".into(),
            by: "alice".into(),
            at: Timestamp::from_millis(T0),
            cause: HaltCause::Manual,
        }
    );
    assert_eq!(
        halts.status(&agent("helper")).unwrap().state,
        HaltState::Paused
    );

    // A new registry on the same store (a restarted process) sees the same.
    let (restarted, _) = open(&store, config(&[], CascadePolicy::None)).await;
    assert_eq!(restarted.list(), halts.list());
    assert_eq!(restarted.status(&agent("bot")), Some(bot));
    assert_eq!(
        restarted.status(&agent("spender")).unwrap().cause,
        HaltCause::Budget
    );

    assert_eq!(
        restarted
            .resume(HaltTarget::Agent(agent("bot")), "alice")
            .await
            .unwrap(),
        vec![HaltTarget::Agent(agent("bot"))]
    );
    assert!(
        restarted
            .resume(HaltTarget::Agent(agent("bot")), "alice")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(restarted.status(&agent("bot")), None);
    let (again, _) = open(&store, config(&[], CascadePolicy::None)).await;
    assert_eq!(again.status(&agent("bot")), None);
    assert_eq!(again.list().len(), 2);
    // The first registry is stale until it reloads.
    assert!(halts.status(&agent("bot")).is_some());
    halts.reload().await.unwrap();
    assert_eq!(halts.status(&agent("bot")), None);
}

async fn halting_everyone_outranks_a_pause(store: Arc<dyn Store>) {
    let (halts, _) = open(&store, config(&[], CascadePolicy::None)).await;
    halts
        .pause(HaltTarget::Agent(agent("bot")), "look", "alice")
        .await
        .unwrap();
    halts
        .halt(HaltTarget::All, "incident", "alice", HaltCause::Manual)
        .await
        .unwrap();
    let status = halts.status(&agent("bot")).unwrap();
    assert_eq!(
        (status.target, status.state),
        (HaltTarget::All, HaltState::Halted)
    );
    assert_eq!(
        halts.status(&agent("anyone")).unwrap().target,
        HaltTarget::All
    );
    assert_eq!(halts.list()[0].target, HaltTarget::All);
    halts.resume(HaltTarget::All, "alice").await.unwrap();
    assert_eq!(
        halts.status(&agent("bot")).unwrap().state,
        HaltState::Paused
    );
    assert_eq!(halts.status(&agent("anyone")), None);
    // An all-agent pause does not hide an agent's own halt.
    halts
        .halt(
            HaltTarget::Agent(agent("bot")),
            "bad",
            "alice",
            HaltCause::Loop,
        )
        .await
        .unwrap();
    halts
        .pause(HaltTarget::All, "quiet hours", "alice")
        .await
        .unwrap();
    assert_eq!(
        halts.status(&agent("bot")).unwrap().state,
        HaltState::Halted
    );
    assert_eq!(
        halts.status(&agent("other")).unwrap().state,
        HaltState::Paused
    );
    let err = halts.pause(HaltTarget::All, "x", "").await.unwrap_err();
    assert!(err.to_string().contains("principal"), "{err}");
}

async fn cascades_follow_edges_transitively_and_stop_at_loops(store: Arc<dyn Store>) {
    // boss -> planner -> coder -> tester -> planner (a loop), boss -> writer; stranger is unrelated.
    let edges = [
        ("boss", "planner"),
        ("planner", "coder"),
        ("coder", "tester"),
        ("tester", "planner"),
        ("boss", "writer"),
        ("stranger", "boss"),
    ];
    let (halts, _) = open(&store, config(&edges, CascadePolicy::PauseDependents)).await;
    let applied = halts
        .halt(
            HaltTarget::Agent(agent("boss")),
            "compromised",
            "alice",
            HaltCause::Manual,
        )
        .await
        .unwrap();
    let targets: Vec<String> = applied.iter().map(|h| h.target.to_string()).collect();
    assert_eq!(
        targets,
        ["boss", "planner", "writer", "coder", "tester"],
        "breadth first, each once"
    );
    for name in ["planner", "writer", "coder", "tester"] {
        let h = halts.status(&agent(name)).unwrap();
        assert_eq!(h.state, HaltState::Paused, "{name}");
        assert_eq!(
            h.cause,
            HaltCause::Cascade {
                from: agent("boss")
            },
            "{name}"
        );
        assert_eq!(h.reason, "cascade from `boss`: compromised");
    }
    assert_eq!(
        halts.status(&agent("stranger")),
        None,
        "upstream is untouched"
    );
    assert_eq!(
        halts.dependents(&agent("boss")),
        [agent("planner"), agent("writer")]
    );

    // Resuming boss resumes what its halt cascaded to, and nothing else.
    halts
        .pause(HaltTarget::Agent(agent("stranger")), "own reasons", "bob")
        .await
        .unwrap();
    let resumed = halts
        .resume(HaltTarget::Agent(agent("boss")), "alice")
        .await
        .unwrap();
    assert_eq!(resumed.len(), 5);
    assert_eq!(halts.list().len(), 1);
    assert!(halts.status(&agent("stranger")).is_some());
}

async fn cascade_policies_are_per_agent_and_never_downgrade(store: Arc<dyn Store>) {
    let edges = [("lead", "a"), ("lead", "b"), ("solo", "c")];
    let mut cfg = config(&edges, CascadePolicy::PauseDependents);
    cfg.policies
        .insert(agent("lead"), CascadePolicy::HaltDependents);
    cfg.policies.insert(agent("solo"), CascadePolicy::None);
    let (halts, _) = open(&store, cfg).await;

    halts
        .halt(
            HaltTarget::Agent(agent("a")),
            "own",
            "alice",
            HaltCause::Manual,
        )
        .await
        .unwrap();
    halts
        .pause(HaltTarget::Agent(agent("b")), "own", "alice")
        .await
        .unwrap();
    let applied = halts
        .halt(
            HaltTarget::Agent(agent("lead")),
            "bad",
            "alice",
            HaltCause::Loop,
        )
        .await
        .unwrap();
    let targets: Vec<String> = applied.iter().map(|h| h.target.to_string()).collect();
    assert_eq!(
        targets,
        ["lead", "b"],
        "a is already halted and keeps its own cause"
    );
    assert_eq!(halts.status(&agent("a")).unwrap().cause, HaltCause::Manual);
    let b = halts.status(&agent("b")).unwrap();
    assert_eq!(
        (b.state, b.cause),
        (
            HaltState::Halted,
            HaltCause::Cascade {
                from: agent("lead")
            }
        )
    );

    let applied = halts
        .halt(
            HaltTarget::Agent(agent("solo")),
            "bad",
            "alice",
            HaltCause::Manual,
        )
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(halts.status(&agent("c")), None);
}

async fn learned_edges_cascade_and_persist(store: Arc<dyn Store>) {
    let (halts, _) = open(&store, config(&[], CascadePolicy::HaltDependents)).await;
    assert!(
        halts
            .record_interaction(&agent("sup"), &agent("w1"))
            .await
            .unwrap()
    );
    assert!(
        !halts
            .record_interaction(&agent("sup"), &agent("w1"))
            .await
            .unwrap(),
        "known"
    );
    assert!(
        !halts
            .record_interaction(&agent("sup"), &agent("sup"))
            .await
            .unwrap(),
        "self"
    );
    assert!(
        halts
            .record_interaction(&agent("w1"), &agent("w2"))
            .await
            .unwrap()
    );

    let (restarted, _) = open(&store, config(&[], CascadePolicy::HaltDependents)).await;
    assert_eq!(restarted.dependents(&agent("sup")), [agent("w1")]);
    let applied = restarted
        .halt(
            HaltTarget::Agent(agent("sup")),
            "stop",
            "alice",
            HaltCause::Manual,
        )
        .await
        .unwrap();
    assert_eq!(applied.len(), 3);
    assert_eq!(
        restarted.status(&agent("w2")).unwrap().state,
        HaltState::Halted
    );
}

async fn watches_and_events_signal_halts(store: Arc<dyn Store>) {
    let (halts, _) = open(
        &store,
        config(&[("bot", "helper")], CascadePolicy::HaltDependents),
    )
    .await;
    let halts = Arc::new(halts);
    let mut events = halts.subscribe();
    let mut in_flight = halts.watch(&agent("helper"));
    let mut other = halts.watch(&agent("other"));
    assert!(!in_flight.is_halted());

    // A pause does not cancel in-flight work.
    halts
        .pause(HaltTarget::Agent(agent("helper")), "look", "alice")
        .await
        .unwrap();
    assert!(!in_flight.is_halted());
    assert!(
        matches!(events.recv().await.unwrap(), HaltEvent::Applied(h) if h.state == HaltState::Paused)
    );

    // The halt of bot cascades to helper: the in-flight action is cancelled.
    let waiter = {
        let halts = Arc::clone(&halts);
        tokio::spawn(async move {
            halts
                .halt(
                    HaltTarget::Agent(agent("bot")),
                    "bad",
                    "alice",
                    HaltCause::Manual,
                )
                .await
                .unwrap();
        })
    };
    tokio::time::timeout(Duration::from_secs(10), in_flight.halted())
        .await
        .unwrap();
    assert!(in_flight.is_halted());
    waiter.await.unwrap();
    let first = events.recv().await.unwrap();
    let second = events.recv().await.unwrap();
    assert!(matches!(first, HaltEvent::Applied(h) if h.target == HaltTarget::Agent(agent("bot"))));
    assert!(
        matches!(second, HaltEvent::Applied(h) if h.cause == HaltCause::Cascade { from: agent("bot") })
    );
    assert!(!other.is_halted());
    // A watch taken after the halt starts halted.
    assert!(halts.watch(&agent("bot")).is_halted());

    // Halting everyone cancels every watch.
    halts
        .halt(HaltTarget::All, "incident", "alice", HaltCause::Manual)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), other.halted())
        .await
        .unwrap();
    halts.resume(HaltTarget::All, "alice").await.unwrap();
    assert!(!other.is_halted());
    halts
        .resume(HaltTarget::Agent(agent("bot")), "alice")
        .await
        .unwrap();
    assert!(!in_flight.is_halted(), "resumed with bot");
    let mut resumed = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, HaltEvent::Resumed { .. }) {
            resumed += 1;
        }
    }
    assert_eq!(resumed, 3, "all, bot, helper");
}

async fn open(store: &Arc<dyn Store>, config: HaltsConfig) -> (Halts, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    (
        Halts::open(store.clone(), dyn_clock, config).await.unwrap(),
        clock,
    )
}

fn config(edges: &[(&str, &str)], default_policy: CascadePolicy) -> HaltsConfig {
    HaltsConfig {
        edges: edges
            .iter()
            .map(|(from, to)| WorkEdge {
                from: agent(from),
                to: agent(to),
            })
            .collect(),
        policies: HashMap::new(),
        default_policy,
    }
}

fn agent(name: &str) -> AgentName {
    AgentName::new(name).unwrap()
}
