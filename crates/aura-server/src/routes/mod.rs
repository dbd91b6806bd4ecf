//! The HTTP routes, their access rules, and the OpenAPI document generated from them.
//!
//! Route groups are assembled with `utoipa-axum`, so a route cannot exist without its OpenAPI entry.
//! Public: `/api/health/*` and `/metrics`. Everything else passes [`auth::authenticate`] and then the
//! group's [`auth::require`] permission.

mod a2a;
mod agents;
mod audit;
mod catalog;
mod context;
mod edge;
mod gateway;
mod govern;
mod health;
pub(crate) mod mcp;
mod mesh;
mod meta;
mod tokens;
mod wire;

use axum::Router;
use axum::middleware;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use aura_core::Permission;

use crate::app::AppState;
use crate::auth;
use crate::error::ApiError;
use crate::telemetry;

#[derive(OpenApi)]
#[openapi(
    info(title = "Aura API", description = "The control plane for autonomous AI agents."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "health", description = "Liveness, readiness and metrics; no token needed"),
        (name = "meta", description = "Who am I, server status, configuration, this document"),
        (name = "agents", description = "The agent registry"),
        (name = "tokens", description = "API tokens (admin only)"),
        (name = "governance", description = "Decide and settle actions; policies, approvals, halts, budgets"),
        (name = "audit", description = "The tamper-evident audit trail: checkpoints, entries, proofs"),
        (name = "catalog", description = "The asset catalog: assets, health, queries, live watch streams"),
        (name = "mesh", description = "Event mesh: publish, topics, replay, consume; tasks; dead-letter queues; agents Aura runs"),
        (name = "gateway", description = "The LLM gateway (OpenAI, Anthropic and Gemini formats) and usage reports"),
        (name = "edge", description = "Agent-facing edges: an agent's own limits, A2A agent cards"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn group(permission: Permission, router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router.route_layer(middleware::from_fn(move |req, next| {
        auth::require(permission, req, next)
    }))
}

fn api_routes() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let public = OpenApiRouter::new()
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics));
    let protected = OpenApiRouter::new()
        .merge(group(
            Permission::Authenticated,
            OpenApiRouter::new()
                .routes(routes!(meta::whoami))
                .routes(routes!(meta::status))
                .routes(routes!(meta::openapi)),
        ))
        .merge(group(
            Permission::ReadInventory,
            OpenApiRouter::new()
                .routes(routes!(agents::list))
                .routes(routes!(agents::get)),
        ))
        .merge(group(
            Permission::ReadConfig,
            OpenApiRouter::new().routes(routes!(meta::config)),
        ))
        .merge(group(
            Permission::Act,
            OpenApiRouter::new()
                .routes(routes!(govern::decide))
                .routes(routes!(govern::settle)),
        ))
        .merge(group(
            Permission::Act,
            OpenApiRouter::new()
                .routes(routes!(gateway::chat_completions))
                .routes(routes!(gateway::embeddings))
                .routes(routes!(gateway::responses))
                .routes(routes!(gateway::models))
                .routes(routes!(gateway::messages))
                .routes(routes!(gateway::count_tokens))
                .routes(routes!(gateway::gemini))
                .routes(routes!(gateway::gemini_v1)),
        ))
        .merge(group(
            Permission::ReadInventory,
            OpenApiRouter::new()
                .routes(routes!(gateway::usage_daily))
                .routes(routes!(gateway::usage_budget)),
        ))
        .merge(group(
            Permission::ReadInventory,
            OpenApiRouter::new()
                .routes(routes!(govern::approvals))
                .routes(routes!(govern::halts))
                .routes(routes!(govern::budgets)),
        ))
        .merge(group(
            Permission::ReadConfig,
            OpenApiRouter::new().routes(routes!(govern::policies)),
        ))
        .merge(group(
            Permission::Govern,
            OpenApiRouter::new()
                .routes(routes!(govern::reload))
                .routes(routes!(govern::grant_override))
                .routes(routes!(govern::halt))
                .routes(routes!(govern::approve))
                .routes(routes!(govern::deny))
                .routes(routes!(govern::resume)),
        ))
        .merge(group(
            Permission::ReadAudit,
            OpenApiRouter::new()
                .routes(routes!(audit::checkpoint))
                .routes(routes!(audit::entries))
                .routes(routes!(audit::entry))
                .routes(routes!(audit::inclusion))
                .routes(routes!(audit::consistency)),
        ))
        .merge(group(
            Permission::ReadInventory,
            OpenApiRouter::new()
                .routes(routes!(catalog::list))
                .routes(routes!(catalog::get))
                .routes(routes!(catalog::live))
                .routes(routes!(catalog::health_summary))
                .routes(routes!(catalog::unhealthy))
                .routes(routes!(catalog::system_metrics))
                .routes(routes!(catalog::query))
                .routes(routes!(catalog::watch))
                .routes(routes!(catalog::advise))
                .routes(routes!(catalog::cache_stats)),
        ))
        .merge(group(
            Permission::Act,
            OpenApiRouter::new().routes(routes!(context::push)).layer(
                axum::extract::DefaultBodyLimit::max(context::PUSH_BODY_LIMIT),
            ),
        ))
        .merge(group(
            Permission::Act,
            OpenApiRouter::new()
                .routes(routes!(mesh::publish, mesh::read))
                .routes(routes!(mesh::take))
                .routes(routes!(mesh::socket))
                .routes(routes!(mesh::create_task, mesh::tasks))
                .routes(routes!(mesh::cancel_task)),
        ))
        .merge(group(
            Permission::ReadInventory,
            OpenApiRouter::new()
                .routes(routes!(mesh::topics))
                .routes(routes!(mesh::task))
                .routes(routes!(mesh::dlq_queues))
                .routes(routes!(mesh::dlq_show))
                .routes(routes!(mesh::runner)),
        ))
        .merge(group(
            Permission::Govern,
            OpenApiRouter::new()
                .routes(routes!(mesh::dlq_list, mesh::dlq_purge))
                .routes(routes!(mesh::dlq_replay))
                .routes(routes!(mesh::control)),
        ))
        .merge(group(
            Permission::Act,
            OpenApiRouter::new().routes(routes!(edge::me)),
        ))
        .merge(group(
            Permission::Act,
            OpenApiRouter::new()
                .routes(routes!(a2a::agent_rpc))
                .routes(routes!(a2a::aura_rpc))
                .routes(routes!(a2a::report_status)),
        ))
        .merge(group(
            Permission::Authenticated,
            OpenApiRouter::new()
                .routes(routes!(edge::well_known))
                .routes(routes!(edge::agent_card)),
        ))
        .merge(group(
            Permission::ManageTokens,
            OpenApiRouter::new()
                .routes(routes!(tokens::list, tokens::create))
                .routes(routes!(tokens::revoke)),
        ));
    (public, protected)
}

/// The OpenAPI document of every route, as served at `/api/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (public, protected) = api_routes();
    let mut doc = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(public)
        .merge(protected)
        .into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // Public routes need no token: clear their security requirement.
    for path in ["/api/health/live", "/api/health/ready", "/metrics"] {
        if let Some(item) = doc.paths.paths.get_mut(path)
            && let Some(get) = item.get.as_mut()
        {
            get.security = Some(vec![
                utoipa::openapi::security::SecurityRequirement::default(),
            ]);
        }
    }
    doc
}

/// The application router with every layer that belongs to routing (auth, RBAC, metrics, fallback).
pub(crate) fn router(state: AppState) -> Router {
    let (public, protected) = api_routes();
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    let (router, _doc) = OpenApiRouter::new()
        .merge(public)
        .merge(protected)
        .split_for_parts();
    router
        .route_layer(middleware::from_fn(telemetry::track))
        .fallback(fallback)
        .with_state(state)
}

async fn fallback(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    metrics::counter!(telemetry::HTTP_REQUESTS, "method" => method.as_str().to_owned(), "route" => "unmatched", "status" => "404")
        .increment(1);
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}
