//! Hot reload: watch the policy directory and reload on change (debounced). A reload that fails or widens
//! permissions is refused and logged; the running set stays in force.

use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::services::audit::system_actor;
use crate::services::govern::Governance;

const DEBOUNCE: Duration = Duration::from_millis(300);

/// Spawns the watcher task on `tasks`; it stops when `cancel` fires.
pub(crate) fn spawn_policy_watcher(
    tasks: &TaskTracker,
    cancel: CancellationToken,
    governance: Governance,
    allow_widening: bool,
) {
    let dir: PathBuf = governance.policies_dir().to_owned();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(event.paths);
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch policies; use `aura policy reload`");
            return;
        }
    };
    // The directory itself when it exists; otherwise its parent (not recursively), to notice it being created.
    let mut watching_dir = dir.is_dir();
    let result = if watching_dir {
        watcher.watch(&dir, RecursiveMode::Recursive)
    } else {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        watcher.watch(&parent, RecursiveMode::NonRecursive)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch policies; use `aura policy reload`");
        return;
    }
    tracing::info!(dir = %dir.display(), "watching policies for changes");
    let relevant = {
        let dir = dir.clone();
        let abs = std::fs::canonicalize(&dir).ok();
        move |paths: &[PathBuf]| {
            paths.iter().any(|p| {
                p.starts_with(&dir)
                    || abs.as_ref().is_some_and(|a| p.starts_with(a))
                    || p.file_name() == dir.file_name()
            })
        }
    };
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                got = rx.recv() => {
                    let Some(paths) = got else { break };
                    if !relevant(&paths) {
                        continue;
                    }
                    if !watching_dir && dir.is_dir() {
                        watching_dir = watcher.watch(&dir, RecursiveMode::Recursive).is_ok();
                    }
                    // Debounce: editors write several events per save.
                    let deadline = tokio::time::Instant::now() + DEBOUNCE;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(deadline) => break,
                            more = rx.recv() => if more.is_none() { break; },
                        }
                    }
                    match governance.reload(allow_widening, system_actor()).await {
                        Ok(report) if report.old_hash == report.new_hash => {}
                        Ok(report) => tracing::info!(hash = %report.new_hash, "policies hot-reloaded"),
                        Err(e) => tracing::warn!(error = %e, "policy change not applied; the running policy stays in force"),
                    }
                }
            }
        }
    });
}
