//! Regression for issue 7: `kill -9` of a consumer mid-task → the task resumes in a new process without
//! repeating the side effects its journal recorded. The binary is its own consumer: run with
//! `AURA_JOURNAL_WORKER=<data-dir>` it consumes one task message and performs three journaled effects.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aura_agents::tasks::{NewTask, Retention, TaskState, TaskStore, Transition};
use aura_core::SystemClock;
use aura_mesh::{EmbeddedConfig, EmbeddedMesh, Mesh, Outgoing, SubscribeOptions, Topic};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("AURA_JOURNAL_WORKER") {
        Ok(dir) => rt.block_on(worker(Path::new(&dir))),
        Err(_) => {
            rt.block_on(scenario());
            println!("test kill9_mid_task_resumes_without_repeating_effects ... ok");
        }
    }
}

fn open(dir: &Path) -> (EmbeddedMesh, TaskStore) {
    let mesh =
        EmbeddedMesh::open(EmbeddedConfig::new(dir.join("mesh")), Arc::new(SystemClock)).unwrap();
    let store = TaskStore::open(
        dir.join("tasks"),
        Arc::new(SystemClock),
        Retention::default(),
    )
    .unwrap();
    (mesh, store)
}

async fn worker(dir: &Path) {
    let (mesh, store) = open(dir);
    let topic = Topic::new("work").unwrap();
    let mut sub = mesh
        .subscribe(&topic, "workers", SubscribeOptions::default())
        .await
        .unwrap();
    let d = sub
        .fetch(1, Duration::from_secs(10))
        .await
        .unwrap()
        .pop()
        .expect("a task message");
    let id = String::from_utf8(d.message.payload.clone()).unwrap();
    let task = store.get(&id).unwrap();
    if task.state != TaskState::InProgress {
        store
            .transition(&id, TaskState::InProgress, Transition::default())
            .await
            .unwrap();
    }
    let pause_after: u32 = std::env::var("PAUSE_AFTER")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let world = dir.join("world.txt");
    for step in 1..=3u32 {
        let key = format!("step-{step}");
        let w = world.clone();
        let k = key.clone();
        store
            .effect(&id, &key, || async move {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&w)?;
                writeln!(f, "{k}")?;
                f.sync_all()?;
                Ok::<_, std::io::Error>(serde_json::json!({"wrote": k}))
            })
            .await
            .unwrap()
            .unwrap();
        println!("done {key}");
        std::io::stdout().flush().unwrap();
        if step == pause_after {
            // Wait here to be killed.
            std::future::pending::<()>().await;
        }
    }
    store
        .transition(
            &id,
            TaskState::Completed,
            Transition {
                result: Some(serde_json::json!("ok")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    d.ack().await.unwrap();
    mesh.close().await;
    println!("completed");
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (mesh, store) = open(dir.path());
        let (task, _) = store
            .create(NewTask {
                title: "three effects".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        mesh.publish(&Topic::new("work").unwrap(), Outgoing::new(task.id.clone()))
            .await
            .unwrap();
        mesh.close().await;
        task.id
    };
    let exe = std::env::current_exe().unwrap();
    // First consumer: killed with SIGKILL right after its second journaled effect.
    let mut first = Command::new(&exe)
        .env("AURA_JOURNAL_WORKER", dir.path())
        .env("PAUSE_AFTER", "2")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "done step-1");
    assert_eq!(lines.next().unwrap().unwrap(), "done step-2");
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // Second consumer: gets the unacknowledged message again and resumes.
    let out = Command::new(&exe)
        .env("AURA_JOURNAL_WORKER", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, "done step-1\ndone step-2\ndone step-3\ncompleted\n");
    let world = std::fs::read_to_string(dir.path().join("world.txt")).unwrap();
    assert_eq!(
        world, "step-1\nstep-2\nstep-3\n",
        "each effect happened exactly once"
    );
    let (_mesh, store) = open(dir.path());
    let task = store.get(&id).unwrap();
    assert_eq!(task.state, TaskState::Completed);
    assert_eq!(task.effects.len(), 3);
    assert_eq!(
        task.attempts, 1,
        "resumed, not restarted: in_progress was entered once"
    );
}
