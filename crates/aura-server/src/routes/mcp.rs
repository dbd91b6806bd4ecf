//! The MCP server mounted at `/mcp` on the main listener (Streamable HTTP, rmcp), behind the bearer token: every
//! request is authenticated and needs the `act` permission (agent tokens; the tools refuse tokens that act for no
//! agent). The MCP protocol is not REST, so this route has no OpenAPI entry; `docs/integrations.md` documents it.

use axum::Router;
use axum::middleware;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use aura_core::Permission;

use crate::app::AppState;
use crate::auth;
use crate::services::edge::McpGovernance;

/// The `/mcp` router, or `None` when `mcp.enabled` is off. The asset watcher runs on `tasks` until `cancel`.
pub(crate) fn router(
    state: &AppState,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> Option<Router> {
    if !state.config.mcp.enabled {
        return None;
    }
    let hub = aura_mcp::Hub::new(
        std::sync::Arc::new(McpGovernance::new(
            state.governance.clone(),
            state.mesh.clone(),
        )),
        std::sync::Arc::new(aura_mcp::context::AavDir::new(
            state.config.data_dir.join("assets"),
        )),
        aura_mcp::ExecSettings::from_config(&state.config.mcp),
    );
    hub.watch(tasks, cancel.clone());
    let service = aura_mcp::streamable_http(hub, cancel);
    Some(
        Router::new()
            .nest_service("/mcp", service)
            .layer(middleware::from_fn(|req, next| {
                auth::require(Permission::Act, req, next)
            }))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                auth::authenticate,
            )),
    )
}
