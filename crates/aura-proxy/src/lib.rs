//! Aura's HTTP enforcement proxy: a forward proxy agents set as `HTTP_PROXY`/`HTTPS_PROXY`, so their outbound HTTP
//! cannot bypass governance.
//!
//! Every request is authenticated (`Proxy-Authorization` with an agent token; 407 without), decided by the kernel
//! through [`aura_server::services::govern::Governance::decide`] (audited before anything leaves) and settled after:
//! plain HTTP as an `http_request` action on method, URL and a SHA-256 of the body; `CONNECT` on host and port.
//! DENY and HALT answer `403` with a JSON body naming the rule and reason; ESCALATE answers `403` with the approval
//! id to wait on. The SSRF guard resolves the target once, classifies the address, lets loopback, private,
//! link-local, metadata and reserved addresses through only when a policy allows `custom` `egress/<class>/<ip>`,
//! and connects to exactly the address it checked.

mod auth;
mod forward;
mod pool;
mod reply;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use aura_config::ProxyConfig;
use aura_server::services::Tokens;
use aura_server::services::govern::Governance;

/// Proxy requests, by outcome (`forwarded`, `denied`, `halted`, `escalated`, `unauthenticated`, `ssrf_blocked`,
/// `too_large`, `bad_request`, `upstream_error`; `tunnel_cut` when a halt closes an open tunnel).
pub const REQUESTS: &str = "aura_proxy_requests_total";
/// Time from a request's arrival to the decision and the connection to the target (the proxy's added latency
/// before the target sees the request).
pub const OVERHEAD: &str = "aura_proxy_overhead_seconds";

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What the proxy needs from the running server.
#[derive(Debug, Clone)]
struct Shared {
    governance: Governance,
    tokens: Tokens,
    max_body_bytes: u64,
    connect_timeout: Duration,
    request_timeout: Duration,
    pool: pool::Pool,
    /// Owns tunnels and the settlements owed after a response (awaited at shutdown).
    tasks: TaskTracker,
    /// Cuts open tunnels once the drain bound is reached.
    stop: CancellationToken,
}

/// A proxy that has bound its listener.
#[derive(Debug)]
pub struct BoundProxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Binds the proxy's listen address (`config.listen`; port 0 picks a free port).
pub async fn bind(
    config: &ProxyConfig,
    governance: Governance,
    tokens: Tokens,
) -> Result<BoundProxy, ProxyError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })?;
    metrics::describe_counter!(
        REQUESTS,
        metrics::Unit::Count,
        "Requests through the enforcement proxy, by outcome."
    );
    metrics::describe_histogram!(
        OVERHEAD,
        metrics::Unit::Seconds,
        "Time the proxy adds before a request reaches its target: authentication, decision, audit, connect."
    );
    Ok(BoundProxy {
        listener,
        shared: Arc::new(Shared {
            governance,
            tokens,
            max_body_bytes: config.max_body_bytes,
            connect_timeout: Duration::from_secs(config.connect_timeout_seconds),
            request_timeout: Duration::from_secs(config.request_timeout_seconds),
            pool: pool::Pool::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }),
    })
}

impl BoundProxy {
    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel` fires, then stops accepting and waits up to `drain` for open exchanges and tunnels
    /// (and the settlements they owe) to finish.
    pub async fn run(self, cancel: CancellationToken, drain: Duration) {
        let BoundProxy { listener, shared } = self;
        let connections = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "proxy accept failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let cancel = cancel.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let shared = shared.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(forward::handle(shared, peer, req).await)
                    }
                });
                let conn = http1::Builder::new()
                    .preserve_header_case(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "proxy connection ended with an error");
                        }
                    }
                    () = cancel.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        connections.close();
        shared.tasks.close();
        let waited = tokio::time::timeout(drain, async {
            connections.wait().await;
            shared.tasks.wait().await;
        })
        .await;
        if waited.is_err() {
            tracing::warn!("proxy drain bound reached; closing remaining tunnels");
            shared.stop.cancel();
            shared.tasks.wait().await;
        }
        tracing::info!("proxy stopped");
    }
}
