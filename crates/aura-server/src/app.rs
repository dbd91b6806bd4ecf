//! Shared application state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aura_config::Config;
use aura_core::Timestamp;
use aura_store::Store;

use crate::services::Tokens;
use crate::services::audit::AuditTrail;
use crate::services::catalog::CatalogService;
use crate::services::gateway::GatewayService;
use crate::services::govern::Governance;
use crate::services::mesh::MeshService;
use crate::telemetry::Metrics;

/// Everything a handler may reach. Cloning it is one reference-count increment: axum clones the state for every
/// layer and handler of every request (dozens of clones per request), so it holds one `Arc` and derefs to
/// [`AppInner`], whose handles are cloned only by the code that keeps one.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<AppInner>);

/// The handles behind [`AppState`].
#[derive(Debug)]
pub(crate) struct AppInner {
    pub(crate) tokens: Tokens,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) audit: AuditTrail,
    pub(crate) governance: Governance,
    pub(crate) catalog: CatalogService,
    pub(crate) mesh: MeshService,
    pub(crate) gateway: GatewayService,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Metrics,
    pub(crate) started: Instant,
    pub(crate) started_at: Timestamp,
    pub(crate) openapi_json: Arc<str>,
    draining: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)] // one handle per plane, wired once in `lifecycle::bind`
    pub(crate) fn new(
        tokens: Tokens,
        store: Arc<dyn Store>,
        audit: AuditTrail,
        governance: Governance,
        catalog: CatalogService,
        mesh: MeshService,
        gateway: GatewayService,
        config: Arc<Config>,
        metrics: Metrics,
        openapi_json: Arc<str>,
    ) -> Self {
        let started_at = tokens.now();
        Self(Arc::new(AppInner {
            tokens,
            store,
            audit,
            governance,
            catalog,
            mesh,
            gateway,
            config,
            metrics,
            started: Instant::now(),
            started_at,
            openapi_json,
            draining: AtomicBool::new(false),
        }))
    }

    /// Marks the server as shutting down: readiness turns 503 so load balancers stop sending work.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
