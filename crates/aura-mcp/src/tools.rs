//! The tool definitions (names, short descriptions, JSON Schemas), shared by the MCP server and
//! `aura tools export` (OpenAI, Anthropic, LangChain and MCP formats).

use serde_json::{Value, json};

/// One tool: name, description, JSON Schema of its input.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// The name the model calls.
    pub name: &'static str,
    /// One short sentence.
    pub description: &'static str,
    /// JSON Schema (an object schema).
    pub schema: Value,
    /// Whether the tool only reads (MCP `readOnlyHint`).
    pub read_only: bool,
}

/// Every tool, in a stable order (12: six context, two governance, four governed execution).
pub fn all() -> Vec<ToolDef> {
    let ids = json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 100});
    vec![
        def(
            "query_assets",
            "List assets (hosts, containers, pods, services, VMs), filtered by kind, health or name.",
            json!({
                "kind": {"type": "string", "enum": ["host", "container", "pod", "service", "vm"]},
                "health": {"type": "string", "enum": ["healthy", "degraded", "unhealthy", "unknown"]},
                "name_contains": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
            }),
            &[],
            true,
        ),
        def(
            "get_asset",
            "Get one asset's full live state by asset id.",
            json!({"asset_id": {"type": "string"}}),
            &["asset_id"],
            true,
        ),
        def(
            "health_summary",
            "Count assets by health and kind; list stale or unreadable asset files.",
            json!({}),
            &[],
            true,
        ),
        def(
            "unhealthy_assets",
            "List assets whose health is degraded or unhealthy.",
            json!({"limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}),
            &[],
            true,
        ),
        def(
            "is_safe_to_deploy",
            "Check whether the given assets are healthy and below CPU and memory ceilings; says what it could not see.",
            json!({
                "asset_ids": ids,
                "max_cpu_percent": {"type": "number", "default": 80},
                "max_memory_percent": {"type": "number", "default": 90}
            }),
            &["asset_ids"],
            true,
        ),
        def(
            "resource_availability",
            "Free CPU, memory and storage of one asset.",
            json!({"asset_id": {"type": "string"}}),
            &["asset_id"],
            true,
        ),
        def(
            "my_limits",
            "Your budgets (spent, reserved, remaining), permission level, pools and rate limits.",
            json!({}),
            &[],
            true,
        ),
        def(
            "request_approval",
            "Ask a human to approve an action before you take it; returns the approval id to wait on.",
            json!({
                "kind": {"type": "string", "enum": ["tool_call", "http_request", "shell", "file_read", "file_write", "message", "custom"]},
                "target": {"type": "string", "description": "URL, program, path or name the action is aimed at"},
                "args": {"type": "object"},
                "reason": {"type": "string"}
            }),
            &["kind", "target"],
            false,
        ),
        def(
            "run_command",
            "Run a program (no shell) in an allowed working directory; returns exit code and output.",
            json!({
                "program": {"type": "string"},
                "args": {"type": "array", "items": {"type": "string"}},
                "cwd": {"type": "string", "description": "absolute, inside an allowed working directory"}
            }),
            &["program", "cwd"],
            false,
        ),
        def(
            "fetch_url",
            "Fetch an http(s) URL; returns status, headers and body.",
            json!({
                "url": {"type": "string"},
                "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], "default": "GET"},
                "body": {"type": "string"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}}
            }),
            &["url"],
            false,
        ),
        def(
            "write_file",
            "Write text to a file (absolute path), replacing it atomically.",
            json!({"path": {"type": "string"}, "content": {"type": "string"}}),
            &["path", "content"],
            false,
        ),
        def(
            "publish_message",
            "Send a message to another agent (or `*`) over the event mesh.",
            json!({
                "target": {"type": "string", "description": "agent name, or * for every agent"},
                "type": {"type": "string", "enum": ["task", "result", "handoff", "query", "learn"], "default": "query"},
                "payload": {"description": "the message content (any JSON)"},
                "topic": {"type": "string", "description": "default: the target's inbox agent.<target> (agents.broadcast for *)"},
                "priority": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5}
            }),
            &["target", "payload"],
            false,
        ),
    ]
}

fn def(
    name: &'static str,
    description: &'static str,
    properties: Value,
    required: &[&str],
    read_only: bool,
) -> ToolDef {
    ToolDef {
        name,
        description,
        schema: json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false
        }),
        read_only,
    }
}

/// The formats `aura tools export` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI Chat Completions / Responses `tools` (`{"type": "function", "function": {...}}`).
    OpenAi,
    /// Anthropic Messages `tools` (`name`, `description`, `input_schema`).
    Anthropic,
    /// LangChain: `StructuredTool` specs (`name`, `description`, `args_schema`) for `StructuredTool.from_function`
    /// or `convert_to_openai_tool`.
    LangChain,
    /// MCP `tools/list` result (`name`, `description`, `inputSchema`, `annotations`).
    Mcp,
}

impl Format {
    /// Parses `openai|anthropic|langchain|mcp`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "openai" => Some(Format::OpenAi),
            "anthropic" => Some(Format::Anthropic),
            "langchain" => Some(Format::LangChain),
            "mcp" => Some(Format::Mcp),
            _ => None,
        }
    }
}

/// Every tool in `format`, as one JSON document.
pub fn export(format: Format) -> Value {
    let tools = all();
    match format {
        Format::OpenAi => Value::Array(
            tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.schema}})
                })
                .collect(),
        ),
        Format::Anthropic => Value::Array(
            tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}))
                .collect(),
        ),
        Format::LangChain => Value::Array(
            tools
                .iter()
                .map(|t| {
                    json!({"name": t.name, "description": t.description, "args_schema": t.schema,
                        "return_direct": false})
                })
                .collect(),
        ),
        Format::Mcp => json!({"tools": tools.iter().map(mcp_tool).collect::<Vec<_>>()}),
    }
}

/// One tool as MCP `tools/list` shows it.
pub fn mcp_tool(t: &ToolDef) -> Value {
    json!({
        "name": t.name,
        "description": t.description,
        "inputSchema": t.schema,
        "annotations": {"readOnlyHint": t.read_only, "destructiveHint": !t.read_only, "openWorldHint": t.name == "fetch_url"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_short_tools_in_every_format() {
        let tools = all();
        assert_eq!(tools.len(), 12);
        for t in &tools {
            assert!(t.description.len() <= 120, "{} is too long", t.name);
        }
        assert_eq!(
            export(Format::OpenAi)[0]["function"]["name"],
            "query_assets"
        );
        assert_eq!(
            export(Format::Anthropic)[10]["input_schema"]["required"][0],
            "path"
        );
        assert_eq!(
            export(Format::LangChain)[1]["args_schema"]["required"][0],
            "asset_id"
        );
        assert_eq!(export(Format::Mcp)["tools"][2]["name"], "health_summary");
        assert_eq!(
            export(Format::OpenAi)[11]["function"]["name"],
            "publish_message"
        );
        assert!(!tools.iter().any(|t| t.name == "my_budget"));
        assert_eq!(Format::parse("gemini"), None);
    }
}
