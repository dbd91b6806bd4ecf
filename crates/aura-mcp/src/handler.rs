//! The rmcp `ServerHandler`: tools (decided, then run), asset resources, and `resources/subscribe`.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, ServerCapabilities, ServerConfig, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::context::Asset;
use crate::{Agent, Hub, asset_uri, exec, tools};

/// One MCP session's handler.
#[derive(Debug, Clone)]
pub struct McpServer {
    hub: Hub,
    session: u64,
    agent: Option<Agent>,
}

impl McpServer {
    pub(crate) fn new(hub: Hub, session: u64, agent: Option<Agent>) -> McpServer {
        McpServer {
            hub,
            session,
            agent,
        }
    }

    /// The agent of this call: fixed (stdio) or the principal the HTTP layer authenticated.
    fn agent(&self, context: &RequestContext<RoleServer>) -> Result<Agent, McpError> {
        if let Some(agent) = &self.agent {
            return Ok(agent.clone());
        }
        let principal = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<aura_core::Principal>())
            .cloned();
        match principal {
            Some(p) => match &p.agent {
                Some(name) => Ok(Agent {
                    name: name.to_string(),
                    principal: Some(p.clone()),
                }),
                None => Err(McpError::invalid_request(
                    "this token acts for no agent; MCP tools need an agent token",
                    None,
                )),
            },
            None => Err(McpError::invalid_request("no authenticated agent", None)),
        }
    }

    async fn run_tool(&self, agent: &Agent, name: &str, args: Value) -> CallToolResult {
        let hub = &self.hub.inner;
        let limit = hub.exec.max_output_bytes;
        // Execution tools are decided as what they do; the others as `tool_call` on `mcp/<tool>`.
        match name {
            "run_command" => return exec::run_command(hub, agent, &args).await,
            "fetch_url" => return exec::fetch_url(hub, agent, &args).await,
            "write_file" => return exec::write_file(hub, agent, &args).await,
            "request_approval" => return exec::request_approval(hub, agent, &args).await,
            "publish_message" => return exec::publish_message(hub, agent, &args).await,
            _ => {}
        }
        let verdict = match hub
            .backend
            .decide(agent, "tool_call", &format!("mcp/{name}"), args.clone())
            .await
        {
            Ok(v) => v,
            Err(e) => return exec::tool_error(&e.to_string()),
        };
        if !verdict.allowed() {
            return exec::refusal(&verdict);
        }
        let ctx = hub.context.as_ref();
        let answer = match name {
            "query_assets" => {
                let snap = ctx.snapshot();
                let want = |key: &str| args.get(key).and_then(Value::as_str);
                let max = args.get("limit").and_then(Value::as_u64).unwrap_or(50) as usize;
                let matching: Vec<&Asset> = snap
                    .assets
                    .iter()
                    .filter(|a| want("kind").is_none_or(|k| a.kind() == k))
                    .filter(|a| want("health").is_none_or(|h| a.health() == h))
                    .filter(|a| {
                        want("name_contains").is_none_or(|n| {
                            a.name().to_lowercase().contains(&n.to_lowercase()) || a.id.contains(n)
                        })
                    })
                    .collect();
                Ok(listing(&matching, max, &snap.unreadable))
            }
            "get_asset" => match args.get("asset_id").and_then(Value::as_str) {
                Some(id) => ctx
                    .get(id)
                    .map(|a| a.doc)
                    .ok_or_else(|| format!("no asset `{id}`; query_assets lists the known ids")),
                None => Err("`asset_id` is required".to_owned()),
            },
            "health_summary" => {
                let snap = ctx.snapshot();
                let mut by_health = serde_json::Map::new();
                let mut by_kind = serde_json::Map::new();
                for a in &snap.assets {
                    bump(&mut by_health, a.health());
                    bump(&mut by_kind, a.kind());
                }
                Ok(json!({
                    "assets": snap.assets.len(),
                    "by_health": by_health,
                    "by_kind": by_kind,
                    "unreadable_files": snap.unreadable.iter().map(|(f, e)| json!({"file": f, "error": e})).collect::<Vec<_>>(),
                }))
            }
            "unhealthy_assets" => {
                let snap = ctx.snapshot();
                let max = args.get("limit").and_then(Value::as_u64).unwrap_or(50) as usize;
                let bad: Vec<&Asset> = snap
                    .assets
                    .iter()
                    .filter(|a| matches!(a.health(), "degraded" | "unhealthy"))
                    .collect();
                Ok(listing(&bad, max, &snap.unreadable))
            }
            "is_safe_to_deploy" => {
                let ids: Vec<String> = args
                    .get("asset_ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.is_empty() {
                    Err("`asset_ids` must list at least one asset id".to_owned())
                } else {
                    let cpu = args
                        .get("max_cpu_percent")
                        .and_then(Value::as_f64)
                        .unwrap_or(80.0);
                    let mem = args
                        .get("max_memory_percent")
                        .and_then(Value::as_f64)
                        .unwrap_or(90.0);
                    Ok(crate::context::safe_to_deploy(ctx, &ids, cpu, mem))
                }
            }
            "resource_availability" => match args.get("asset_id").and_then(Value::as_str) {
                Some(id) => ctx
                    .get(id)
                    .map(|a| crate::context::availability(&a))
                    .ok_or_else(|| format!("no asset `{id}`")),
                None => Err("`asset_id` is required".to_owned()),
            },
            "my_limits" => match (
                hub.backend.budget(agent).await,
                hub.backend.limits(agent).await,
            ) {
                (Ok(budget), Ok(mut limits)) => {
                    if let Some(map) = limits.as_object_mut() {
                        map.insert(
                            "budget_usage".into(),
                            budget.get("budgets").cloned().unwrap_or(budget),
                        );
                    }
                    Ok(limits)
                }
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            },
            other => Err(format!("unknown tool `{other}`")),
        };
        hub.backend
            .settle(agent, &verdict.decision_id, answer.is_ok())
            .await;
        match answer {
            Ok(value) => exec::json_result(&value, limit),
            Err(message) => exec::tool_error(&message),
        }
    }
}

fn bump(map: &mut serde_json::Map<String, Value>, key: &str) {
    let n = map.get(key).and_then(Value::as_u64).unwrap_or(0) + 1;
    map.insert(key.to_owned(), json!(n));
}

fn listing(assets: &[&Asset], max: usize, unreadable: &[(String, String)]) -> Value {
    let shown: Vec<Value> = assets.iter().take(max).map(|a| a.summary()).collect();
    json!({
        "total": assets.len(),
        "returned": shown.len(),
        "truncated": assets.len() > shown.len(),
        "assets": shown,
        "unreadable_files": unreadable.len(),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, McpError> {
    serde_json::from_value(value).map_err(|e| McpError::internal_error(e.to_string(), None))
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities: ServerCapabilities = serde_json::from_value(json!({
            "tools": {"listChanged": false},
            "resources": {"subscribe": true, "listChanged": false},
        }))
        .unwrap_or_default();
        ServerConfig::new(capabilities)
            .with_server_info(rmcp::model::Implementation::new("aura", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Aura: live context on assets and governed actions. Every tool call is decided by policy and \
                 audited; a refusal names the rule and reason. Asset resources are aav://<asset_id>.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools: Vec<Value> = tools::all().iter().map(tools::mcp_tool).collect();
        from_json(json!({ "tools": tools }))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let agent = self.agent(&context)?;
        let name = request.name.to_string();
        if !tools::all().iter().any(|t| t.name == name) {
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`"),
                None,
            ));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        Ok(self.run_tool(&agent, &name, args).await.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.agent(&context)?;
        let snap = self.hub.inner.context.snapshot();
        let resources: Vec<Value> = snap
            .assets
            .iter()
            .map(|a| {
                json!({
                    "uri": asset_uri(&a.id),
                    "name": a.id,
                    "title": format!("{} ({}, {})", a.name(), a.kind(), a.health()),
                    "mimeType": "application/toml",
                    "size": a.text.len(),
                })
            })
            .collect();
        from_json(json!({ "resources": resources }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.agent(&context)?;
        let Some(id) = request.uri.strip_prefix("aav://") else {
            return Err(McpError::resource_not_found(
                format!("unknown resource `{}`", request.uri),
                None,
            ));
        };
        let Some(asset) = self.hub.inner.context.get(id) else {
            return Err(McpError::resource_not_found(
                format!("no asset `{id}`"),
                None,
            ));
        };
        let result: ReadResourceResult = from_json(json!({
            "contents": [{"uri": request.uri, "mimeType": "application/toml", "text": asset.text}]
        }))?;
        Ok(result.into())
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.agent(&context)?;
        if !request.uri.starts_with("aav://") {
            return Err(McpError::resource_not_found(
                format!("unknown resource `{}`", request.uri),
                None,
            ));
        }
        self.hub
            .subscribe(self.session, &request.uri, context.peer.clone());
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.hub.unsubscribe(self.session, &request.uri);
        Ok(())
    }
}

/// Content blocks of a text answer.
pub(crate) fn text(body: String) -> Vec<ContentBlock> {
    vec![ContentBlock::text(body)]
}
