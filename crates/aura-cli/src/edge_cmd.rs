//! The agent-facing edges from the command line: the enforcement proxy beside `aura up`, `aura mcp` (stdio),
//! `aura hook pre-tool-use|post-tool-use` (Claude Code hooks) and `aura tools export`.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use aura_config::ProxyConfig;
use aura_server::{BoundServer, ShutdownReport};

/// Binds the proxy when `proxy.enabled`.
pub(crate) async fn bind_proxy(
    config: &ProxyConfig,
    server: &BoundServer,
) -> anyhow::Result<Option<aura_proxy::BoundProxy>> {
    if !config.enabled {
        return Ok(None);
    }
    let proxy = aura_proxy::bind(config, server.governance(), server.tokens())
        .await
        .context("starting the enforcement proxy")?;
    Ok(Some(proxy))
}

/// Runs the server and the proxy until `shutdown`; the proxy stops (and drains) first, so every request it let
/// through is settled and audited before the server closes the audit log.
pub(crate) async fn run_with_proxy(
    server: BoundServer,
    proxy: Option<aura_proxy::BoundProxy>,
    drain: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<ShutdownReport> {
    let Some(proxy) = proxy else {
        return Ok(server.run(shutdown).await?);
    };
    let cancel = CancellationToken::new();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy_run = {
        let cancel = cancel.clone();
        async move {
            proxy.run(cancel, drain).await;
            let _ = done_tx.send(());
        }
    };
    let server_shutdown = async move {
        shutdown.await;
        cancel.cancel();
        let _ = done_rx.await;
    };
    let (report, ()) = tokio::join!(server.run(server_shutdown), proxy_run);
    Ok(report?)
}
