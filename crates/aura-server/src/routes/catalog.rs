//! The asset catalog over HTTP: list and get assets, health summary, unhealthy assets, fleet metrics, queries,
//! and WebSocket streams of diffs (one asset, or every asset matching a filter).

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use aura_catalog::{Answer, AssetKind, Health, Rows, Watch};

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};

/// A page of assets.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AssetPage {
    /// Assets matching the filters.
    pub total: usize,
    /// Assets in this page.
    pub returned: usize,
    /// Whether more assets matched than were returned.
    pub truncated: bool,
    /// The assets (whole documents, `meta` included).
    #[schema(value_type = Vec<Object>)]
    pub assets: Vec<serde_json::Value>,
}

/// Filters and paging for listing assets.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this kind (host, container, pod, service, vm).
    pub kind: Option<String>,
    /// Only this health (healthy, degraded, unhealthy, unknown).
    pub health: Option<String>,
    /// Skip this many (by id).
    pub offset: Option<usize>,
    /// At most this many (default 100, max 10000).
    pub limit: Option<usize>,
}

/// A query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryRequest {
    /// Query text, e.g. `kind = container and cpu.percent > 80 sort by cpu desc limit 10` (docs/queries.md).
    pub query: String,
}

/// The answer to a query.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueryAnswer {
    /// `assets` (whole documents), `projected` (`id` plus the `fields`) or `groups` (aggregates).
    pub kind: &'static str,
    /// Assets matching the filter.
    pub matched: usize,
    /// Rows in the whole answer before offset and limit.
    pub total: usize,
    /// Rows returned.
    pub returned: usize,
    /// Whether rows were left out by the limit.
    pub truncated: bool,
    /// Notes, e.g. fields no asset has.
    pub warnings: Vec<String>,
    /// Time spent in the catalog, µs.
    pub took_us: u64,
    /// The rows.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
}

impl From<Answer> for QueryAnswer {
    fn from(a: Answer) -> Self {
        let kind = match &a.rows {
            Rows::Assets(_) => "assets",
            Rows::Projected(_) => "projected",
            Rows::Groups(_) => "groups",
        };
        QueryAnswer {
            kind,
            matched: a.matched,
            total: a.total,
            returned: a.rows.len(),
            truncated: a.truncated,
            warnings: a.warnings,
            took_us: a.took_us,
            rows: a.rows.to_json(),
        }
    }
}

/// Asset counts by health and kind.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthSummaryView {
    /// All assets.
    pub total: usize,
    /// Per health value.
    pub by_health: std::collections::BTreeMap<String, usize>,
    /// Per kind, per health value.
    pub by_kind: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>,
}

/// The filter of a watch stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    /// A query filter (`kind = container and cpu > 80`); every asset when absent.
    pub filter: Option<String>,
}

fn invalid_query(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
}

/// Lists assets, by id.
#[utoipa::path(get, path = "/api/v1/assets", tag = "catalog", params(ListQuery),
    responses((status = 200, body = AssetPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<AssetPage>, ApiError> {
    let kind = q
        .kind
        .as_deref()
        .map(str::parse::<AssetKind>)
        .transpose()
        .map_err(invalid_query)?;
    let health = q
        .health
        .as_deref()
        .map(str::parse::<Health>)
        .transpose()
        .map_err(invalid_query)?;
    let offset = q.offset.unwrap_or(0);
    let limit = q
        .limit
        .unwrap_or(100)
        .clamp(1, aura_catalog::query::MAX_LIMIT);
    let (total, assets) = state.catalog.catalog().list(kind, health, offset, limit);
    Ok(Json(AssetPage {
        total,
        returned: assets.len(),
        truncated: offset + assets.len() < total,
        assets: assets.iter().map(|a| a.doc.clone()).collect(),
    }))
}

/// One asset's whole document.
#[utoipa::path(get, path = "/api/v1/assets/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .catalog
        .catalog()
        .get(&id)
        .map(|a| Json(a.doc.clone()))
        .ok_or_else(|| ApiError::not_found(format!("no asset `{id}`")))
}

/// Asset counts by health and by kind.
#[utoipa::path(get, path = "/api/v1/health/summary", tag = "catalog",
    responses((status = 200, body = HealthSummaryView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn health_summary(State(state): State<AppState>) -> Json<HealthSummaryView> {
    let s = state.catalog.health_summary();
    Json(HealthSummaryView {
        total: s.total,
        by_health: s.by_health,
        by_kind: s.by_kind,
    })
}

/// Assets reporting `unhealthy` or `degraded`, worst first.
#[utoipa::path(get, path = "/api/v1/health/unhealthy", tag = "catalog",
    responses((status = 200, body = QueryAnswer),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn unhealthy(
    State(state): State<AppState>,
) -> Result<Json<QueryAnswer>, ApiError> {
    state
        .catalog
        .query("health in (unhealthy, degraded) sort by health desc, id limit 1000")
        .map(|a| Json(a.into()))
        .map_err(ApiError::internal)
}

/// Fleet-wide figures: counts, average and peak CPU, memory and storage, the hottest assets.
#[utoipa::path(get, path = "/api/v1/metrics/system", tag = "catalog",
    responses((status = 200, body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn system_metrics(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.catalog.system_metrics())
}

/// The catalog's cache tiers: hot-tier entries, hits and misses; the Redis tier's entries; the cold archive's
/// objects and bytes; what the tiers wrote since start. A tier that is not configured is `null`.
#[utoipa::path(get, path = "/api/v1/cache", tag = "catalog",
    responses((status = 200, body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn cache_stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.catalog.cache_stats().await)
}

/// Runs a catalog query (docs/queries.md). A query that does not parse is a 400 `invalid_query` naming the column.
#[utoipa::path(post, path = "/api/v1/query", tag = "catalog", request_body = QueryRequest,
    responses((status = 200, body = QueryAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn query(
    State(state): State<AppState>,
    body: Result<Json<QueryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(ApiError::from_json)?;
    let answer = state.catalog.query(&req.query).map_err(invalid_query)?;
    // The same JSON as `QueryAnswer`, written straight from the index (documents as their kept JSON text).
    let mut out = Vec::with_capacity(1024);
    answer.write_json(&mut out);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}

/// WebSocket: diffs of one asset as JSON text messages (`ready`, then `added`/`changed`/`removed`/`lagged`).
#[utoipa::path(get, path = "/api/v1/assets/{id}/live", tag = "catalog",
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn live(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let watch = state.catalog.catalog().watch_asset(&id);
    let closing = state.catalog.closing();
    ws.on_upgrade(move |socket| stream(socket, watch, closing))
}

/// WebSocket: diffs of every asset matching `filter` as JSON text messages (`ready`, then `added` with the whole
/// asset once, `changed` with field diffs, `removed` with a reason, `lagged` when the client fell behind).
#[utoipa::path(get, path = "/api/v1/watch", tag = "catalog", params(WatchQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn watch(
    State(state): State<AppState>,
    Query(q): Query<WatchQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let watch = state
        .catalog
        .catalog()
        .watch(q.filter.as_deref())
        .map_err(invalid_query)?;
    let closing = state.catalog.closing();
    Ok(ws.on_upgrade(move |socket| stream(socket, watch, closing)))
}

async fn stream(
    mut socket: WebSocket,
    mut watch: Watch,
    closing: tokio_util::sync::CancellationToken,
) {
    metrics::gauge!("aura_catalog_watchers").increment(1.0);
    let ready = serde_json::json!({"type": "ready"}).to_string();
    if socket.send(Message::Text(ready.into())).await.is_ok() {
        loop {
            tokio::select! {
                () = closing.cancelled() => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                event = watch.next() => {
                    let Some(event) = event else { break };
                    if socket.send(Message::Text(event.to_json().to_string().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    metrics::gauge!("aura_catalog_watchers").decrement(1.0);
}

/// A decision helper to run (seed 001 §7.2).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "helper", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum AdviseRequest {
    /// Instances, dependencies, host headroom and neighbours of a service.
    IsSafeToDeploy {
        /// Asset name, id or `labels.app` of the service.
        service: String,
    },
    /// Hosts with enough free CPU and memory.
    CheckResourceAvailability {
        /// What the workload needs.
        #[schema(value_type = Object)]
        requirements: aura_catalog::helpers::Requirements,
    },
    /// The best host for a workload.
    FindOptimalPlacement {
        /// What the workload needs and where it may go.
        #[schema(value_type = Object)]
        constraints: aura_catalog::helpers::Requirements,
    },
    /// Idle, under-used and stopped assets.
    AnalyzeCostOptimization,
    /// Outliers, overloads and assets not updated since `stale_before` (RFC 3339).
    DetectAnomalies {
        /// Assets last updated before this time are stale.
        stale_before: String,
    },
}

/// Runs a decision helper; the answer carries the evidence used and the blind spots.
#[utoipa::path(post, path = "/api/v1/advise", tag = "catalog", request_body = AdviseRequest,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn advise(
    State(state): State<AppState>,
    body: Result<Json<AdviseRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use aura_catalog::helpers;
    let Json(req) = body.map_err(ApiError::from_json)?;
    let c = state.catalog.catalog();
    let report = match req {
        AdviseRequest::IsSafeToDeploy { service } => helpers::is_safe_to_deploy(c, &service),
        AdviseRequest::CheckResourceAvailability { requirements } => {
            helpers::check_resource_availability(c, &requirements)
        }
        AdviseRequest::FindOptimalPlacement { constraints } => {
            helpers::find_optimal_placement(c, &constraints)
        }
        AdviseRequest::AnalyzeCostOptimization => helpers::analyze_cost_optimization(c),
        AdviseRequest::DetectAnomalies { stale_before } => {
            helpers::detect_anomalies(c, &stale_before)
        }
    };
    serde_json::to_value(report)
        .map(Json)
        .map_err(ApiError::internal)
}
