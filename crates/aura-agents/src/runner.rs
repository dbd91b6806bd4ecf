//! The agent runner and watchdog: agents declared in the configuration run as child processes (stdout and stderr
//! appended to `<log_dir>/<name>.log`) or as windows of a tmux session; a crashed agent, or one whose heartbeat
//! went stale, is restarted with backoff (seed 004: 10, 30, 60 s, then it is marked failed; the count resets once
//! it ran 5 minutes stable). Time is tokio's, so tests run on paused time.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aura_core::{Clock, Timestamp};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AgentsError;

/// Counter: agent restarts by the watchdog, by agent and cause.
pub const RESTARTS: &str = "aura_agent_restarts_total";

/// How an agent is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// A child process of `aura up`.
    Process,
    /// A window of this tmux session (created when missing).
    Tmux {
        /// Session name.
        session: String,
    },
}

/// An agent the runner can start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// Its name.
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Restart when no heartbeat came for this long (None: only on exit).
    pub heartbeat_timeout: Option<Duration>,
    /// Process or tmux window.
    pub mode: RunMode,
    /// Start with the runner.
    pub autostart: bool,
}

/// The restart schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before each restart attempt; after the last one the agent is marked failed.
    pub delays: Vec<Duration>,
    /// A run this long resets the attempt count.
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delays: vec![
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(60),
            ],
            stable_after: Duration::from_secs(300),
        }
    }
}

/// The restart counter of one agent: pure logic, separate from processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartCounter {
    failures: usize,
}

impl RestartCounter {
    /// After a run of `ran_for` ended badly: the delay before the next start, or `None` to give up.
    pub fn on_failure(&mut self, backoff: &Backoff, ran_for: Duration) -> Option<Duration> {
        if ran_for >= backoff.stable_after {
            self.failures = 0;
        }
        let delay = backoff.delays.get(self.failures).copied();
        self.failures += 1;
        delay
    }
}

/// What an agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    /// Running.
    Running,
    /// Waiting to be restarted.
    Backoff,
    /// Gave up after the last attempt.
    Failed,
    /// Stopped (or never started).
    Stopped,
}

impl AgentStatus {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Running => "running",
            AgentStatus::Backoff => "backoff",
            AgentStatus::Failed => "failed",
            AgentStatus::Stopped => "stopped",
        }
    }
}

/// An agent's runtime state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRuntime {
    /// Its name.
    pub name: String,
    /// Status.
    pub status: AgentStatus,
    /// Process id while running (the pane's process for tmux).
    pub pid: Option<u32>,
    /// Restarts by the watchdog.
    pub restarts: u32,
    /// How the last run ended.
    pub last_exit: Option<String>,
    /// Last heartbeat.
    pub last_heartbeat: Option<Timestamp>,
    /// Where its output goes.
    pub log_path: PathBuf,
    /// How it runs.
    pub mode: RunMode,
    /// When each start happened, since the runner was created (last 16).
    pub starts: Vec<Duration>,
}

/// Runs and watches the declared agents. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    specs: BTreeMap<String, AgentSpec>,
    log_dir: PathBuf,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    created: Instant,
    state: Mutex<HashMap<String, Slot>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    changes: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct Slot {
    runtime: AgentRuntime,
    heartbeat_at: Option<Instant>,
    stop: Option<CancellationToken>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Ended {
    Exited(String),
    Stale,
    Stopped,
}

impl Runner {
    /// A runner for `specs`, logging under `log_dir`.
    pub fn new(
        specs: Vec<AgentSpec>,
        log_dir: PathBuf,
        backoff: Backoff,
        clock: Arc<dyn Clock>,
    ) -> Runner {
        let mut state = HashMap::new();
        for s in &specs {
            state.insert(
                s.name.clone(),
                Slot {
                    runtime: AgentRuntime {
                        name: s.name.clone(),
                        status: AgentStatus::Stopped,
                        pid: None,
                        restarts: 0,
                        last_exit: None,
                        last_heartbeat: None,
                        log_path: log_dir.join(format!("{}.log", s.name)),
                        mode: s.mode.clone(),
                        starts: Vec::new(),
                    },
                    heartbeat_at: None,
                    stop: None,
                },
            );
        }
        Runner {
            inner: Arc::new(Inner {
                specs: specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
                log_dir,
                backoff,
                clock,
                created: Instant::now(),
                state: Mutex::new(state),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// Starts every agent marked `autostart`.
    pub fn start_all(&self) -> Result<(), AgentsError> {
        let names: Vec<String> = self
            .inner
            .specs
            .values()
            .filter(|s| s.autostart)
            .map(|s| s.name.clone())
            .collect();
        for n in names {
            self.start(&n)?;
        }
        Ok(())
    }

    /// Starts `name` under the watchdog (no-op when already supervised).
    pub fn start(&self, name: &str) -> Result<(), AgentsError> {
        let spec = self.inner.specs.get(name).cloned().ok_or_else(|| {
            AgentsError::NotFound(format!("no agent `{name}` in the configuration"))
        })?;
        let stop = {
            let mut st = lock(&self.inner.state);
            let slot = st
                .get_mut(name)
                .ok_or_else(|| AgentsError::NotFound(name.to_owned()))?;
            if slot.stop.is_some() {
                return Ok(());
            }
            let stop = self.inner.cancel.child_token();
            slot.stop = Some(stop.clone());
            slot.runtime.status = AgentStatus::Running;
            stop
        };
        std::fs::create_dir_all(&self.inner.log_dir)?;
        let inner = self.inner.clone();
        self.inner
            .tasks
            .spawn(async move { supervise(inner, spec, stop).await });
        Ok(())
    }

    /// Stops `name` (SIGTERM, then SIGKILL after 5 s) and waits until it is down.
    pub async fn stop(&self, name: &str) -> Result<(), AgentsError> {
        let stop = {
            let mut st = lock(&self.inner.state);
            let slot = st
                .get_mut(name)
                .ok_or_else(|| AgentsError::NotFound(format!("no agent `{name}`")))?;
            slot.stop.take()
        };
        if let Some(stop) = stop {
            let mut changes = self.changes();
            stop.cancel();
            let down = async {
                while self.status(name).is_some_and(|r| {
                    r.status != AgentStatus::Stopped && r.status != AgentStatus::Failed
                }) {
                    if changes.changed().await.is_err() {
                        break;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(10), down)
                .await
                .map_err(|_| AgentsError::Timeout(format!("agent `{name}` did not stop")))?;
        }
        Ok(())
    }

    /// Stops then starts `name`, resetting its failure count.
    pub async fn restart(&self, name: &str) -> Result<(), AgentsError> {
        self.stop(name).await?;
        self.start(name)
    }

    /// Records a heartbeat from `name` (unknown names are ignored).
    pub fn heartbeat(&self, name: &str) {
        let mut st = lock(&self.inner.state);
        if let Some(slot) = st.get_mut(name) {
            slot.heartbeat_at = Some(Instant::now());
            slot.runtime.last_heartbeat = Some(self.inner.clock.now());
        }
    }

    /// A receiver that changes whenever any agent's state changes (wait on it instead of polling).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// One agent's state.
    pub fn status(&self, name: &str) -> Option<AgentRuntime> {
        lock(&self.inner.state).get(name).map(|s| s.runtime.clone())
    }

    /// Every agent's state, by name.
    pub fn statuses(&self) -> Vec<AgentRuntime> {
        let st = lock(&self.inner.state);
        let mut v: Vec<AgentRuntime> = st.values().map(|s| s.runtime.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Stops every agent and waits for the watchdogs to end.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

fn update(inner: &Inner, name: &str, f: impl FnOnce(&mut Slot)) {
    if let Some(slot) = lock(&inner.state).get_mut(name) {
        f(slot);
    }
    inner.changes.send_modify(|v| *v += 1);
}

async fn supervise(inner: Arc<Inner>, spec: AgentSpec, stop: CancellationToken) {
    let mut counter = RestartCounter::default();
    loop {
        let started = Instant::now();
        update(&inner, &spec.name, |s| {
            s.runtime.status = AgentStatus::Running;
            s.heartbeat_at = Some(started);
            s.runtime.starts.push(started - inner.created);
            if s.runtime.starts.len() > 16 {
                s.runtime.starts.remove(0);
            }
        });
        let ended = match spec.mode {
            RunMode::Process => run_process(&inner, &spec, &stop).await,
            RunMode::Tmux { ref session } => run_tmux(&inner, &spec, session, &stop).await,
        };
        let (cause, text) = match ended {
            Ended::Stopped => {
                update(&inner, &spec.name, |s| {
                    s.runtime.status = AgentStatus::Stopped;
                    s.runtime.pid = None;
                    s.runtime.last_exit = Some("stopped".into());
                    s.stop = None;
                });
                return;
            }
            Ended::Exited(t) => ("exit", t),
            Ended::Stale => ("stale_heartbeat", "heartbeat stale: killed".to_owned()),
        };
        let ran = started.elapsed();
        let delay = counter.on_failure(&inner.backoff, ran);
        tracing::warn!(agent = %spec.name, cause, ended = %text, ran_ms = ran.as_millis() as u64, "agent ended");
        let Some(delay) = delay else {
            tracing::error!(agent = %spec.name, "agent failed after its last restart attempt");
            update(&inner, &spec.name, |s| {
                s.runtime.status = AgentStatus::Failed;
                s.runtime.pid = None;
                s.runtime.last_exit = Some(text);
                s.stop = None;
            });
            return;
        };
        update(&inner, &spec.name, |s| {
            s.runtime.status = AgentStatus::Backoff;
            s.runtime.pid = None;
            s.runtime.last_exit = Some(text);
        });
        tokio::select! {
            () = stop.cancelled() => {
                update(&inner, &spec.name, |s| { s.runtime.status = AgentStatus::Stopped; s.stop = None; });
                return;
            }
            () = tokio::time::sleep(delay) => {}
        }
        metrics::counter!(RESTARTS, "agent" => spec.name.clone(), "cause" => cause).increment(1);
        update(&inner, &spec.name, |s| s.runtime.restarts += 1);
    }
}

/// Waits until the heartbeat of `name` is older than `timeout` (never, without a timeout).
async fn stale(inner: &Inner, name: &str, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let last = lock(&inner.state)
            .get(name)
            .and_then(|s| s.heartbeat_at)
            .unwrap_or_else(Instant::now);
        let due = last + timeout;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}

async fn run_process(inner: &Inner, spec: &AgentSpec, stop: &CancellationToken) -> Ended {
    let Some((program, args)) = spec.command.split_first() else {
        return Ended::Exited("empty command".into());
    };
    let log_path = inner.log_dir.join(format!("{}.log", spec.name));
    let log = match OpenOptions::new().create(true).append(true).open(&log_path) {
        Ok(f) => f,
        Err(e) => return Ended::Exited(format!("cannot open log `{}`: {e}", log_path.display())),
    };
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Ended::Exited("cannot share the log file".into()),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(&spec.env)
        .env("AURA_AGENT_NAME", &spec.name)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::Exited(format!("cannot start `{program}`: {e}")),
    };
    let pid = child.id();
    update(inner, &spec.name, |s| s.runtime.pid = pid);
    tokio::select! {
        status = child.wait() => Ended::Exited(match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        }),
        () = stale(inner, &spec.name, spec.heartbeat_timeout) => {
            let _ = child.kill().await;
            Ended::Stale
        }
        () = stop.cancelled() => {
            terminate(&mut child).await;
            Ended::Stopped
        }
    }
}

/// SIGTERM, then SIGKILL after a grace period.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

async fn tmux(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("tmux")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("tmux: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

async fn run_tmux(
    inner: &Inner,
    spec: &AgentSpec,
    session: &str,
    stop: &CancellationToken,
) -> Ended {
    let log_path = inner.log_dir.join(format!("{}.log", spec.name));
    let mut line: Vec<String> = spec
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_quote(v)))
        .collect();
    line.push(format!("AURA_AGENT_NAME={}", shell_quote(&spec.name)));
    line.extend(spec.command.iter().map(|a| shell_quote(a)));
    let script = format!(
        "{} 2>&1 | tee -a {}",
        line.join(" "),
        shell_quote(&log_path.to_string_lossy())
    );
    let target = format!("{session}:{}", spec.name);
    if tmux(&["has-session", "-t", session]).await.is_err()
        && let Err(e) = tmux(&["new-session", "-d", "-s", session, "-n", "aura"]).await
    {
        return Ended::Exited(format!("cannot create tmux session `{session}`: {e}"));
    }
    let _ = tmux(&["kill-window", "-t", &target]).await;
    let mut args = vec![
        "new-window",
        "-d",
        "-t",
        session,
        "-n",
        spec.name.as_str(),
        "-P",
        "-F",
        "#{pane_pid}",
    ];
    let cwd;
    if let Some(c) = &spec.cwd {
        cwd = c.to_string_lossy().into_owned();
        args.extend(["-c", cwd.as_str()]);
    }
    args.push(script.as_str());
    let pid = match tmux(&args).await {
        Ok(p) => p.parse::<u32>().ok(),
        Err(e) => return Ended::Exited(format!("cannot open tmux window `{target}`: {e}")),
    };
    update(inner, &spec.name, |s| s.runtime.pid = pid);
    let gone = async {
        loop {
            if tmux(&["list-panes", "-t", &target, "-F", "#{pane_pid}"])
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        () = gone => Ended::Exited("tmux window closed".into()),
        () = stale(inner, &spec.name, spec.heartbeat_timeout) => {
            let _ = tmux(&["kill-window", "-t", &target]).await;
            Ended::Stale
        }
        () = stop.cancelled() => {
            let _ = tmux(&["kill-window", "-t", &target]).await;
            Ended::Stopped
        }
    }
}
