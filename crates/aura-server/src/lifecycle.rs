//! Server lifecycle: prepare the data dir, open the store, bootstrap the admin token, bind, serve, and on
//! shutdown stop accepting, drain in-flight requests within a bound, then flush and close the store.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::LatencyUnit;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use aura_config::{Config, StoreUrl};
use aura_core::{Clock, SystemClock};
use aura_store::{ConnectOptions, Store, StoreTarget};

use crate::app::AppState;
use crate::routes;
use crate::services::Tokens;
use crate::services::audit::{self, AuditTrail, TrailSettings};
use crate::services::govern::Governance;
use crate::telemetry::Metrics;

const REQUEST_ID: &str = "x-request-id";
const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be created or written.
    #[error("data directory `{path}`: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state store could not be opened.
    #[error("state store: {0}")]
    Store(#[from] aura_store::StoreError),
    /// The admin token could not be created or written.
    #[error("admin token: {0}")]
    AdminToken(String),
    /// The listen address could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The audit log could not be opened or written.
    #[error("audit log: {0}")]
    Audit(String),
    /// The governance kernel could not start (e.g. an invalid policy file).
    #[error("governance: {0}")]
    Governance(String),
    /// The asset catalog could not be loaded.
    #[error("catalog: {0}")]
    Catalog(String),
    /// The event mesh could not be opened.
    #[error("mesh: {0}")]
    Mesh(String),
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// How the store is reached, derived from the configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings(ConnectOptions);

impl StoreSettings {
    /// The store settings of `config`: SQLite at `<data_dir>/aura.db` unless `store.url` says otherwise.
    pub fn from_config(config: &Config) -> Self {
        let target = match &config.store.url {
            None => StoreTarget::Sqlite {
                path: config.data_dir.join("aura.db"),
            },
            Some(StoreUrl::Sqlite(path)) => StoreTarget::Sqlite { path: path.clone() },
            Some(StoreUrl::Postgres(url)) => StoreTarget::Postgres {
                url: url.clone(),
                schema: config.store.schema.clone(),
            },
        };
        Self(ConnectOptions {
            target,
            max_connections: config.store.max_connections,
            connect_timeout: Duration::from_secs(config.store.connect_timeout_seconds),
        })
    }
}

/// Opens the configured store (creating the data dir for SQLite) and applies pending migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServeError> {
    let settings = StoreSettings::from_config(config);
    if let StoreTarget::Sqlite { path } = &settings.0.target
        && let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_private_dir(parent)?;
    }
    Ok(aura_store::open(&settings.0).await?)
}

/// A server that has bound its listener and is ready to serve.
#[derive(Debug)]
pub struct BoundServer {
    listener: TcpListener,
    state: AppState,
    clock: Arc<dyn Clock>,
    admin_token_file: Option<PathBuf>,
    shutdown_timeout: Duration,
    request_timeout: Duration,
    max_body_bytes: usize,
}

/// What happened during shutdown.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownReport {
    /// Whether every in-flight request finished within the bound.
    pub drained: bool,
    /// How long draining took.
    pub drain_time: Duration,
}

/// Prepares everything `aura up` needs and binds the listen address. Nothing is served until [`BoundServer::run`].
pub async fn bind(config: Config) -> Result<BoundServer, ServeError> {
    #[cfg(not(feature = "s3"))]
    if config.audit.export.is_some() {
        return Err(ServeError::Audit(
            "`audit.export` is set, but this `aura` binary was built without S3 support (cargo feature `s3`); \
             remove `audit.export` from the configuration or use a binary built with `s3`"
                .to_owned(),
        ));
    }
    let metrics = Metrics::install().map_err(ServeError::Metrics)?;
    create_private_dir(&config.data_dir)?;
    let store = open_store(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (trail, recovery) = AuditTrail::open(TrailSettings {
        data_dir: config.data_dir.clone(),
        origin: config.audit.origin.clone(),
        segment_bytes: config.audit.segment_bytes,
        checkpoint_interval: Duration::from_millis(config.audit.checkpoint_interval_ms),
        effect_gate: config.audit.effect_gate,
    })
    .await
    .map_err(|e| ServeError::Audit(e.to_string()))?;
    for torn in [&recovery.torn_segment_tail, &recovery.torn_checkpoint_tail]
        .into_iter()
        .flatten()
    {
        tracing::warn!(
            path = %torn.path.display(),
            offset = torn.offset,
            discarded_bytes = torn.discarded_bytes,
            reason = %torn.reason,
            "audit log: truncated a torn tail left by a crash"
        );
    }
    tracing::info!(entries = recovery.entries, key = %trail.public_key(), "audit log opened");
    let tokens = Tokens::new(store.clone(), clock.clone()).with_audit(trail.clone());
    let admin_token_file = match tokens.bootstrap_admin().await {
        Ok(Some(created)) => {
            let path = config.data_dir.join(ADMIN_TOKEN_FILE);
            write_secret_file(&path, &created.token.reveal()).map_err(|e| {
                ServeError::AdminToken(format!("cannot write `{}`: {e}", path.display()))
            })?;
            tracing::info!(path = %path.display(), token_id = %created.record.id, "created the first admin token");
            Some(path)
        }
        Ok(None) => None,
        Err(e) => return Err(ServeError::AdminToken(e.to_string())),
    };
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let openapi_json: Arc<str> = serde_json::to_string(&routes::openapi_document())
        .map_err(|e| ServeError::Metrics(format!("openapi: {e}")))?
        .into();
    let shutdown_timeout = Duration::from_secs(config.server.shutdown_timeout_seconds);
    let request_timeout = Duration::from_secs(config.server.request_timeout_seconds);
    let max_body_bytes = usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX);
    let start = audit::event(
        clock.now(),
        audit::system_actor(),
        ("server", &addr.to_string()),
        "server.start",
        aura_audit::RiskLevel::Low,
        serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "store": store.backend()}),
    );
    trail
        .record(start)
        .await
        .map_err(|e| ServeError::Audit(e.to_string()))?;
    let governance = Governance::open(&config, store.clone(), clock.clone(), trail.clone())
        .await
        .map_err(|e| ServeError::Governance(e.to_string()))?;
    let catalog = crate::services::catalog::CatalogService::open(
        &config.data_dir,
        crate::services::catalog::settings(&config.catalog),
    )
    .map_err(ServeError::Catalog)?
    .with_tiers(&config.cache)
    .await
    .map_err(ServeError::Catalog)?;
    let mesh = crate::services::mesh::MeshService::open(
        &config,
        governance.clone(),
        trail.clone(),
        clock.clone(),
    )
    .await
    .map_err(|e| ServeError::Mesh(e.to_string()))?;
    let gateway = crate::services::gateway::GatewayService::open(
        config.gateway.as_ref(),
        governance.clone(),
        trail.clone(),
        clock.clone(),
        store.clone(),
    )
    .await
    .map_err(|e| ServeError::Governance(format!("gateway: {e}")))?;
    let state = AppState::new(
        tokens,
        store,
        trail,
        governance,
        catalog,
        mesh,
        gateway,
        Arc::new(config),
        metrics,
        openapi_json,
    );
    Ok(BoundServer {
        listener,
        state,
        clock,
        admin_token_file,
        shutdown_timeout,
        request_timeout,
        max_body_bytes,
    })
}

impl BoundServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The governance plane, for edges that run beside the HTTP server (the enforcement proxy).
    pub fn governance(&self) -> Governance {
        self.state.governance.clone()
    }

    /// The token service, for edges that authenticate agents themselves (the enforcement proxy).
    pub fn tokens(&self) -> Tokens {
        self.state.tokens.clone()
    }

    /// Where the admin token was written, when this start created it.
    pub fn admin_token_file(&self) -> Option<&Path> {
        self.admin_token_file.as_deref()
    }

    /// Serves until `shutdown` resolves, then stops accepting, drains in-flight requests for at most the
    /// configured bound, and flushes and closes the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<ShutdownReport, ServeError> {
        let Self {
            listener,
            state,
            clock,
            shutdown_timeout,
            request_timeout,
            max_body_bytes,
            ..
        } = self;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        {
            let metrics = state.metrics.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => metrics.upkeep(),
                    }
                }
            });
        }
        {
            let governance = state.governance.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => governance.upkeep().await,
                    }
                }
            });
        }
        #[cfg(feature = "s3")]
        if let Some(export) = &state.config.audit.export {
            tasks.spawn(audit::periodic::run(
                state.audit.clone(),
                clock.clone(),
                state.config.data_dir.clone(),
                export.clone(),
                cancel.clone(),
            ));
        }
        // The context plane: the local host's sensor and the periodic Guardian (issue 5).
        crate::services::context::start(
            &state.config,
            clock.clone(),
            state.audit.clone(),
            &tasks,
            cancel.clone(),
        );
        state.catalog.spawn_follower(&tasks, cancel.clone());
        {
            let mesh = state.mesh.clone();
            let upkeep_cancel = cancel.clone();
            tasks.spawn(async move {
                let cancel = upkeep_cancel;
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => mesh.upkeep().await,
                    }
                }
            });
            let mesh = state.mesh.clone();
            let watch_cancel = cancel.clone();
            tasks.spawn(async move { mesh.watch_heartbeats(watch_cancel).await });
            if let Err(e) = state.mesh.runner().start_all() {
                tracing::error!(error = %e, "could not start the declared agents");
            }
        }
        if state.config.policies.watch {
            crate::watch::spawn_policy_watcher(
                &tasks,
                cancel.clone(),
                state.governance.clone(),
                state.config.policies.allow_widening,
            );
        }
        let mut app = routes::router(state.clone());
        if let Some(mcp) = routes::mcp::router(&state, &tasks, cancel.clone()) {
            app = app.merge(mcp);
        }
        let app = app
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                request_timeout,
            ))
            .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
                REQUEST_ID,
            )))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(make_span)
                    .on_request(())
                    .on_response(
                        DefaultOnResponse::new()
                            .level(tracing::Level::INFO)
                            .latency_unit(LatencyUnit::Micros),
                    ),
            )
            .layer(SetSensitiveRequestHeadersLayer::new([
                axum::http::header::AUTHORIZATION,
                axum::http::header::PROXY_AUTHORIZATION,
                axum::http::header::COOKIE,
            ]))
            .layer(SetRequestIdLayer::new(
                HeaderName::from_static(REQUEST_ID),
                MakeRequestUuid,
            ));

        let serve =
            axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
        let mut serve = std::pin::pin!(serve.into_future());
        let report = tokio::select! {
            result = &mut serve => {
                result.map_err(ServeError::Serve)?;
                ShutdownReport { drained: true, drain_time: Duration::ZERO }
            }
            () = shutdown => {
                tracing::info!(bound_seconds = shutdown_timeout.as_secs(), "shutting down: draining in-flight requests");
                state.start_draining();
                cancel.cancel();
                let started = Instant::now();
                match tokio::time::timeout(shutdown_timeout, &mut serve).await {
                    Ok(result) => {
                        result.map_err(ServeError::Serve)?;
                        ShutdownReport { drained: true, drain_time: started.elapsed() }
                    }
                    Err(_) => {
                        tracing::warn!("drain bound reached; closing remaining connections");
                        ShutdownReport { drained: false, drain_time: started.elapsed() }
                    }
                }
            }
        };
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
        state.mesh.shutdown().await;
        state.gateway.shutdown().await;
        let stop = audit::event(
            clock.now(),
            audit::system_actor(),
            ("server", "aura"),
            "server.stop",
            aura_audit::RiskLevel::Low,
            serde_json::json!({"drained": report.drained, "drain_ms": report.drain_time.as_millis() as u64}),
        );
        if let Err(e) = state.audit.record(stop).await {
            tracing::error!(error = %e, "could not audit the shutdown");
        }
        state.audit.close().await;
        state.store.close().await;
        tracing::info!(drained = report.drained, "stopped");
        Ok(report)
    }
}

fn make_span(request: &Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        principal = tracing::field::Empty,
    )
}

fn create_private_dir(path: &Path) -> Result<(), ServeError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| ServeError::DataDir {
            path: path.to_owned(),
            source,
        })
}

/// Writes `secret` to `path` with mode 0600: a temp file created 0600, fsync'd, renamed over, dir fsync'd.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{ADMIN_TOKEN_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
