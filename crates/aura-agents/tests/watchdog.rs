//! The watchdog restarts a crashing child with the right backoff (10, 30, 60 s, then failed), on paused time;
//! the count resets after a stable run; stale heartbeats trigger a restart; logs are captured.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aura_agents::runner::{AgentSpec, AgentStatus, Backoff, RestartCounter, RunMode, Runner};
use aura_core::SystemClock;

fn spec(name: &str, script: &str, heartbeat: Option<Duration>) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::new(),
        cwd: None,
        heartbeat_timeout: heartbeat,
        mode: RunMode::Process,
        autostart: true,
    }
}

/// Waits on the runner's change notifications (no timers, so paused time only moves for the watchdog's own).
async fn wait_status(runner: &Runner, name: &str, want: AgentStatus) {
    let mut changes = runner.changes();
    loop {
        if runner.status(name).unwrap().status == want {
            return;
        }
        changes.changed().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn crashing_child_is_restarted_at_10_30_60_seconds_then_failed() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::new(
        vec![spec("crashy", "echo starting; exit 3", None)],
        dir.path().to_owned(),
        Backoff::default(),
        Arc::new(SystemClock),
    );
    runner.start_all().unwrap();
    wait_status(&runner, "crashy", AgentStatus::Failed).await;
    let s = runner.status("crashy").unwrap();
    assert_eq!(s.restarts, 3);
    assert_eq!(s.starts.len(), 4);
    let gaps: Vec<u64> = s
        .starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(gaps, vec![10, 30, 60], "starts at {:?}", s.starts);
    assert!(s.last_exit.unwrap().contains('3'));
    let log = std::fs::read_to_string(dir.path().join("crashy.log")).unwrap();
    assert_eq!(log.matches("starting").count(), 4, "output captured: {log}");
    runner.shutdown().await;
}

#[test]
fn the_count_resets_after_five_stable_minutes() {
    let b = Backoff::default();
    let mut c = RestartCounter::default();
    let quick = Duration::from_secs(1);
    assert_eq!(c.on_failure(&b, quick), Some(Duration::from_secs(10)));
    assert_eq!(c.on_failure(&b, quick), Some(Duration::from_secs(30)));
    // Ran 5 minutes: back to the first delay.
    assert_eq!(
        c.on_failure(&b, Duration::from_secs(300)),
        Some(Duration::from_secs(10))
    );
    assert_eq!(c.on_failure(&b, quick), Some(Duration::from_secs(30)));
    assert_eq!(c.on_failure(&b, quick), Some(Duration::from_secs(60)));
    assert_eq!(c.on_failure(&b, quick), None);
}

#[tokio::test]
async fn a_stale_heartbeat_gets_the_agent_restarted_and_stop_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::new(
        vec![spec(
            "sleepy",
            "exec sleep 1000",
            Some(Duration::from_millis(400)),
        )],
        dir.path().to_owned(),
        Backoff {
            delays: vec![Duration::from_millis(50)],
            stable_after: Duration::from_secs(300),
        },
        Arc::new(SystemClock),
    );
    runner.start("sleepy").unwrap();
    wait_status(&runner, "sleepy", AgentStatus::Running).await;
    let mut changes = runner.changes();
    let first_pid = loop {
        if let Some(p) = runner.status("sleepy").unwrap().pid {
            break p;
        }
        changes.changed().await.unwrap();
    };
    // Heartbeats keep it alive past the timeout...
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..8 {
        tick.tick().await;
        runner.heartbeat("sleepy");
    }
    assert_eq!(runner.status("sleepy").unwrap().restarts, 0);
    // ...silence gets it killed and restarted after the first backoff.
    wait_status(&runner, "sleepy", AgentStatus::Backoff).await;
    assert!(
        runner
            .status("sleepy")
            .unwrap()
            .last_exit
            .unwrap()
            .contains("heartbeat")
    );
    wait_status(&runner, "sleepy", AgentStatus::Running).await;
    assert_eq!(runner.status("sleepy").unwrap().restarts, 1);
    let s = runner.status("sleepy").unwrap();
    assert_ne!(s.pid, Some(first_pid));
    runner.stop("sleepy").await.unwrap();
    assert_eq!(
        runner.status("sleepy").unwrap().status,
        AgentStatus::Stopped
    );
    runner.shutdown().await;
}
