//! Prometheus metrics: one process-wide recorder, process metrics refreshed on scrape, and the HTTP
//! request counter and latency histogram recorded by a route layer.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests served, by method, matched route and status.
pub(crate) const HTTP_REQUESTS: &str = "aura_http_requests_total";
/// Request latency, by method and matched route.
pub(crate) const HTTP_DURATION: &str = "aura_http_request_duration_seconds";
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Decision latency buckets: microseconds (memory path) to tens of milliseconds (fsync'd audit appends).
const DECISION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// The process-wide Prometheus handle plus the process collector.
#[derive(Clone)]
pub(crate) struct Metrics {
    handle: PrometheusHandle,
    process: std::sync::Arc<metrics_process::Collector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();
static INSTALL: Mutex<()> = Mutex::new(());

impl Metrics {
    /// Installs the global recorder on first call and returns the shared handle afterwards.
    pub(crate) fn install() -> Result<Metrics, String> {
        if let Some(m) = METRICS.get() {
            return Ok(m.clone());
        }
        let _guard = INSTALL
            .lock()
            .map_err(|_| "metrics install lock poisoned".to_owned())?;
        if let Some(m) = METRICS.get() {
            return Ok(m.clone());
        }
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), BUCKETS)
            .map_err(|e| e.to_string())?
            .set_buckets_for_metric(
                Matcher::Full(crate::services::govern::DECISION_DURATION.to_owned()),
                DECISION_BUCKETS,
            )
            .map_err(|e| e.to_string())?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
        describe_counter!(
            HTTP_REQUESTS,
            Unit::Count,
            "HTTP requests served, by method, route and status."
        );
        describe_histogram!(
            HTTP_DURATION,
            Unit::Seconds,
            "HTTP request latency from first byte in to response headers out, by method and route."
        );
        let process = metrics_process::Collector::default();
        process.describe();
        let metrics = Metrics {
            handle,
            process: std::sync::Arc::new(process),
        };
        let _ = METRICS.set(metrics.clone());
        Ok(metrics)
    }

    /// Refreshes process metrics and renders the Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        self.process.collect();
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Drains histogram samples into buckets; call periodically so memory stays bounded between scrapes.
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Route layer recording the request counter and latency histogram.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    histogram!(HTTP_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}
