//! Aura's Model Context Protocol server (rmcp): context tools over the asset files, governance tools, and governed
//! execution, plus asset resources with `resources/subscribe`.
//!
//! Every tool call is decided by the governance kernel before it runs and audited there: context and governance
//! tools as `tool_call` actions on `mcp/<tool>`, execution tools as the action they are (`shell`, `http_request`,
//! `file_write`, `message`). A refusal comes back as a tool error the model can read (`isError: true`, the rule and reason).
//!
//! The crate knows neither HTTP routes nor the kernel: it talks to governance through the [`Backend`] trait (the
//! server implements it over `Governance`; `aura mcp` over the REST API) and reads context through
//! [`context::ContextSource`].

pub mod context;
mod exec;
mod handler;
pub mod tools;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use rmcp::service::{Peer, RoleServer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use handler::McpServer;

/// The agent a tool call is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The agent's name.
    pub name: String,
    /// The authenticated principal (HTTP transport); `None` when the backend carries the identity (stdio).
    pub principal: Option<aura_core::Principal>,
}

/// A kernel decision as the tools need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Settle with this id.
    pub decision_id: String,
    /// `allow`, `deny`, `halt` or `escalate`.
    pub verdict: String,
    /// The strongest rule.
    pub rule: String,
    /// Its reason.
    pub reason: String,
    /// The approval to wait on (escalate).
    pub approval_id: Option<String>,
    /// Where the decision is in the audit log.
    pub audit_seq: u64,
}

impl Verdict {
    /// Whether the effect may happen.
    pub fn allowed(&self) -> bool {
        self.verdict == "allow"
    }
}

/// Why the backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The action is malformed (the extractor refused it).
    #[error("invalid action: {0}")]
    Invalid(String),
    /// Governance could not be reached.
    #[error("governance unavailable: {0}")]
    Unavailable(String),
}

/// Governance as the MCP server needs it.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Decides an action for `agent` (audited by the kernel's caller before this returns).
    async fn decide(
        &self,
        agent: &Agent,
        kind: &str,
        target: &str,
        args: Value,
    ) -> Result<Verdict, BackendError>;
    /// The SSRF guard for a resolved destination: `None` when the address is public, else the decision on
    /// `custom` `egress/<class>/<ip>`.
    async fn guard_egress(
        &self,
        agent: &Agent,
        host: &str,
        addr: SocketAddr,
        for_decision: &str,
    ) -> Result<Option<Verdict>, BackendError>;
    /// The SSRF guard's allowance, known before the request is decided, for a destination found without DNS (an
    /// IP literal, or `localhost`) that the policy lets `agent` reach whatever its counters: the address to connect
    /// to and the fact to record in the request's own decision as `args.egress`, so that the request is decided
    /// once. `None` (the default): the destination is resolved after the decision and guarded by its own decision
    /// ([`Backend::guard_egress`]).
    fn egress_pass(&self, _agent: &Agent, _host: &str, _port: u16) -> Option<(SocketAddr, Value)> {
        None
    }
    /// Settles an allowed decision after the effect.
    async fn settle(&self, agent: &Agent, decision_id: &str, success: bool);
    /// The agent's budget usage.
    async fn budget(&self, agent: &Agent) -> Result<Value, BackendError>;
    /// The agent's level, pools, rate limits and budgets from the policy.
    async fn limits(&self, agent: &Agent) -> Result<Value, BackendError>;
    /// Publishes `message` from `agent` on the event mesh. The mesh decides it as a `message` action (audited)
    /// before publishing; a refusal comes back as [`Published::Refused`].
    async fn publish(&self, agent: &Agent, message: MeshMessage)
    -> Result<Published, BackendError>;
}

/// A message an agent sends over the event mesh (`publish_message`).
#[derive(Debug, Clone, PartialEq)]
pub struct MeshMessage {
    /// The topic (`agent.<target>` by default, `agents.broadcast` for `*`).
    pub topic: String,
    /// The receiving agent, or `*`.
    pub target: String,
    /// `task`, `result`, `handoff`, `query` or `learn`.
    pub kind: String,
    /// 1 (lowest) to 10.
    pub priority: u8,
    /// The content.
    pub payload: Value,
}

/// What became of a published message.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// Durably published: envelope id, topic, offset, audit sequence.
    Sent(Value),
    /// Governance did not allow it.
    Refused(Verdict),
}

/// Settings of the execution tools (from the `mcp` config section).
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Working directories `run_command` may use.
    pub workdirs: Vec<PathBuf>,
    /// Bound on one command.
    pub command_timeout: Duration,
    /// Largest answer in bytes.
    pub max_output_bytes: usize,
}

impl ExecSettings {
    /// From the `mcp` configuration section.
    pub fn from_config(config: &aura_config::McpConfig) -> ExecSettings {
        ExecSettings {
            workdirs: config.workdirs.clone(),
            command_timeout: Duration::from_secs(config.command_timeout_seconds),
            max_output_bytes: usize::try_from(config.max_output_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// What every session shares: the backend, the context, the settings, and the resource subscriptions.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    backend: Arc<dyn Backend>,
    context: Arc<dyn context::ContextSource>,
    exec: ExecSettings,
    next_session: AtomicU64,
    subscriptions: Mutex<Subscriptions>,
}

/// Resource URI → the sessions subscribed to it (session id, peer to notify).
type Subscriptions = HashMap<String, Vec<(u64, Peer<RoleServer>)>>;

/// The URI of an asset resource.
pub fn asset_uri(id: &str) -> String {
    format!("aav://{id}")
}

impl Hub {
    /// A hub over `backend` and `context`.
    pub fn new(
        backend: Arc<dyn Backend>,
        context: Arc<dyn context::ContextSource>,
        exec: ExecSettings,
    ) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                backend,
                context,
                exec,
                next_session: AtomicU64::new(1),
                subscriptions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A handler for one session; `agent` fixes the identity (stdio), else it comes from each HTTP request.
    pub fn session(&self, agent: Option<Agent>) -> McpServer {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        McpServer::new(self.clone(), id, agent)
    }

    fn subscribe(&self, session: u64, uri: &str, peer: Peer<RoleServer>) {
        if let Ok(mut subs) = self.inner.subscriptions.lock() {
            let list = subs.entry(uri.to_owned()).or_default();
            if !list.iter().any(|(s, _)| *s == session) {
                list.push((session, peer));
            }
        }
    }

    fn unsubscribe(&self, session: u64, uri: &str) {
        if let Ok(mut subs) = self.inner.subscriptions.lock()
            && let Some(list) = subs.get_mut(uri)
        {
            list.retain(|(s, _)| *s != session);
        }
    }

    /// Sends `notifications/resources/updated` to every subscriber of `uri`; drops peers that are gone.
    pub async fn notify_updated(&self, uri: &str) {
        let peers: Vec<(u64, Peer<RoleServer>)> = match self.inner.subscriptions.lock() {
            Ok(subs) => subs.get(uri).cloned().unwrap_or_default(),
            Err(_) => return,
        };
        for (session, peer) in peers {
            let param = rmcp::model::ResourceUpdatedNotificationParam::new(uri.to_owned());
            if peer.notify_resource_updated(param).await.is_err() {
                self.unsubscribe(session, uri);
            }
        }
    }

    /// Watches the context's directory and notifies subscribers when an asset file changes; the task is owned by
    /// `tasks` and stops with `cancel`. Creates the directory when missing.
    pub fn watch(&self, tasks: &TaskTracker, cancel: CancellationToken) {
        let Some(dir) = self.inner.context.watch_dir().map(ToOwned::to_owned) else {
            return;
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the assets directory; no live updates");
            return;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
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
                tracing::warn!(error = %e, "cannot watch assets; no live updates");
                return;
            }
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch assets; no live updates");
            return;
        }
        let hub = self.clone();
        tasks.spawn(async move {
            let _watcher = watcher;
            loop {
                let paths = tokio::select! {
                    () = cancel.cancelled() => break,
                    got = rx.recv() => match got { Some(p) => p, None => break },
                };
                for path in paths {
                    if path.extension().and_then(|e| e.to_str()) != Some("aav") {
                        continue;
                    }
                    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                        continue;
                    };
                    // The resource is named by meta.asset_id; the file stem is the usual id.
                    let id = hub
                        .inner
                        .context
                        .get(stem)
                        .map_or_else(|| stem.to_owned(), |a| a.id);
                    hub.notify_updated(&asset_uri(&id)).await;
                }
            }
        });
    }
}

/// The Streamable HTTP service (mount it at `/mcp` behind authentication that puts an agent's
/// [`aura_core::Principal`] in the request extensions). Sessions end when `cancel` fires.
pub fn streamable_http(
    hub: Hub,
    cancel: CancellationToken,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    McpServer,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    let mut config = rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default();
    config.cancellation_token = cancel;
    // Authentication (bearer agent token) guards the route; any Host may reach it.
    config.allowed_hosts = Vec::new();
    rmcp::transport::streamable_http_server::StreamableHttpService::new(
        move || Ok(hub.session(None)),
        Arc::new(Default::default()),
        config,
    )
}

/// Serves one MCP session over stdin/stdout for `agent` until the client closes it.
pub async fn serve_stdio(hub: Hub, agent: Agent) -> Result<(), std::io::Error> {
    use rmcp::ServiceExt as _;
    let server = hub.session(Some(agent));
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}
