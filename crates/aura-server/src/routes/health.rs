//! Liveness, readiness (one check per configured backend) and the Prometheus scrape endpoint.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::wire::{CheckView, LiveView, ReadyView};
use crate::app::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const DEGRADED_AFTER: Duration = Duration::from_millis(500);

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/api/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = LiveView)))]
pub(super) async fn live() -> Json<LiveView> {
    Json(LiveView {
        status: "ok".into(),
    })
}

/// Readiness: every configured backend answers. 503 when any is down or the server is shutting down.
#[utoipa::path(get, path = "/api/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = ReadyView),
        (status = 503, description = "Not ready", body = ReadyView)))]
pub(super) async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await;
    let latency = started.elapsed();
    let (status, error) = match outcome {
        Ok(Ok(())) if latency > DEGRADED_AFTER => ("degraded", None),
        Ok(Ok(())) => ("ok", None),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "store readiness check failed");
            ("down", Some("ping failed; see the server log".to_owned()))
        }
        Err(_) => (
            "down",
            Some(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
        ),
    };
    let checks = vec![CheckView {
        name: "store".into(),
        backend: state.store.backend().into(),
        status: status.into(),
        latency_ms: latency.as_secs_f64() * 1000.0,
        error,
    }];
    let ready = !state.is_draining() && checks.iter().all(|c| c.status != "down");
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ready { "ready" } else { "not_ready" };
    (
        code,
        Json(ReadyView {
            status: status.into(),
            checks,
        }),
    )
}

/// Prometheus text exposition: process metrics, HTTP request counters and latency histograms.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.audit.stats();
    metrics::counter!(crate::services::audit::AUDIT_ENTRIES).absolute(stats.entries);
    metrics::counter!(crate::services::audit::AUDIT_SYNCS).absolute(stats.batches);
    let body = tokio::task::spawn_blocking(move || state.metrics.render())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
