//! Cross-format translation between OpenAI chat completions and Anthropic messages, so a route may mix
//! deployments of both providers and fall back from one to the other: the request is rewritten into the
//! deployment's format before it is sent, and the complete answer back into the format the client spoke
//! (text, tool calls, stop reasons and usage). Streams are not translated: a streamed call is only served by
//! deployments speaking the endpoint's own format.

use serde_json::{Map, Value, json};

use crate::ProviderKind;

/// Whether a complete (non-streamed) chat call in `from`'s format can be served by a deployment speaking `to`.
pub fn can_translate(from: ProviderKind, to: ProviderKind) -> bool {
    from == to
        || matches!(
            (from, to),
            (ProviderKind::Openai, ProviderKind::Anthropic)
                | (ProviderKind::Anthropic, ProviderKind::Openai)
        )
}

/// Rewrites a chat request from `from`'s format into `to`'s; `default_max_tokens` fills Anthropic's required
/// `max_tokens` when an OpenAI request sets none. The same format is returned unchanged.
pub fn request(
    from: ProviderKind,
    to: ProviderKind,
    body: &Value,
    default_max_tokens: u64,
) -> Value {
    match (from, to) {
        (ProviderKind::Openai, ProviderKind::Anthropic) => {
            openai_to_anthropic(body, default_max_tokens)
        }
        (ProviderKind::Anthropic, ProviderKind::Openai) => anthropic_to_openai(body),
        _ => body.clone(),
    }
}

/// Rewrites a complete chat answer from the deployment's format `from` into the client's format `to`; `model`
/// is the model name the client asked for.
pub fn response(from: ProviderKind, to: ProviderKind, body: &Value, model: &str) -> Value {
    match (from, to) {
        (ProviderKind::Anthropic, ProviderKind::Openai) => anthropic_answer_to_openai(body, model),
        (ProviderKind::Openai, ProviderKind::Anthropic) => openai_answer_to_anthropic(body, model),
        _ => body.clone(),
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content (a string or parts) as Anthropic content blocks.
fn openai_content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))})),
                Some("image_url") => {
                    let url = p.pointer("/image_url/url").and_then(Value::as_str)?;
                    Some(match url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) {
                        Some((media, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn openai_to_anthropic(body: &Value, default_max_tokens: u64) -> Value {
    let mut out = Map::new();
    if let Some(m) = body.get("model") {
        out.insert("model".into(), m.clone());
    }
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let push = |role: &str, blocks: Vec<Value>, messages: &mut Vec<Value>| {
        // Anthropic wants alternating roles: merge consecutive messages of one role.
        if let Some(last) = messages.last_mut()
            && last["role"] == role
            && let Some(c) = last.get_mut("content").and_then(Value::as_array_mut)
        {
            c.extend(blocks);
            return;
        }
        messages.push(json!({"role": role, "content": blocks}));
    };
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => system.push(text_of(content)),
            Some("assistant") => {
                let mut blocks = openai_content_blocks(content);
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .and_then(|a| serde_json::from_str::<Value>(a).ok())
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or(json!("")),
                        "name": call.pointer("/function/name").cloned().unwrap_or(json!("")), "input": args}));
                }
                push("assistant", blocks, &mut messages);
            }
            Some("tool") => {
                let block = json!({"type": "tool_result", "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(json!("")),
                    "content": text_of(content)});
                push("user", vec![block], &mut messages);
            }
            _ => push("user", openai_content_blocks(content), &mut messages),
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n")));
    }
    out.insert("messages".into(), Value::Array(messages));
    let max = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(default_max_tokens);
    out.insert("max_tokens".into(), json!(max));
    for key in ["temperature", "top_p", "stream"] {
        if let Some(v) = body.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({"name": f.get("name").cloned().unwrap_or(json!("")),
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => {
            out.insert("tool_choice".into(), json!({"type": "any"}));
        }
        Some(Value::String(s)) if s == "auto" => {
            out.insert("tool_choice".into(), json!({"type": "auto"}));
        }
        Some(Value::String(s)) if s == "none" => {
            out.insert("tool_choice".into(), json!({"type": "none"}));
        }
        Some(Value::Object(o)) => {
            if let Some(name) = o.get("function").and_then(|f| f.get("name")) {
                out.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
            }
        }
        _ => {}
    }
    if let Some(user) = body.get("user") {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Value::Object(out)
}

/// Anthropic content (a string or blocks) as OpenAI content parts.
fn anthropic_parts(content: &Value) -> Value {
    match content {
        Value::String(s) => json!(s),
        Value::Array(blocks) => {
            let parts: Vec<Value> = blocks
                .iter()
                .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                    Some("text") => Some(json!({"type": "text", "text": b.get("text").cloned().unwrap_or(json!(""))})),
                    Some("image") => {
                        let src = b.get("source")?;
                        let url = match src.get("type").and_then(Value::as_str) {
                            Some("base64") => format!(
                                "data:{};base64,{}",
                                src.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
                                src.get("data").and_then(Value::as_str).unwrap_or("")
                            ),
                            _ => src.get("url").and_then(Value::as_str)?.to_owned(),
                        };
                        Some(json!({"type": "image_url", "image_url": {"url": url}}))
                    }
                    _ => None,
                })
                .collect();
            // A plain text message stays a string (every OpenAI-compatible server accepts that).
            if parts.len() == 1 && parts[0]["type"] == "text" {
                parts[0]["text"].clone()
            } else {
                Value::Array(parts)
            }
        }
        _ => json!(""),
    }
}

fn anthropic_to_openai(body: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = body.get("model") {
        out.insert("model".into(), m.clone());
    }
    let mut messages = Vec::new();
    match body.get("system") {
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(v @ Value::Array(_)) => {
            messages.push(json!({"role": "system", "content": text_of(v)}))
        }
        _ => {}
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        let blocks = content.as_array().cloned().unwrap_or_default();
        if role == "assistant" {
            let calls: Vec<Value> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| {
                    json!({"id": b.get("id").cloned().unwrap_or(json!("")), "type": "function",
                        "function": {"name": b.get("name").cloned().unwrap_or(json!("")),
                        "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into())}})
                })
                .collect();
            let text = text_of(content);
            let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            messages.push(msg);
            continue;
        }
        // Tool results become `tool` messages; the rest of the user turn follows as one user message.
        for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
            let text = match b.get("content") {
                Some(c) => text_of(c),
                None => String::new(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": b.get("tool_use_id").cloned().unwrap_or(json!("")), "content": text}));
        }
        let rest: Vec<Value> = match content {
            Value::String(_) => Vec::new(),
            _ => blocks
                .iter()
                .filter(|b| b["type"] != "tool_result")
                .cloned()
                .collect(),
        };
        if content.is_string() {
            messages.push(json!({"role": "user", "content": content}));
        } else if !rest.is_empty() {
            messages.push(json!({"role": "user", "content": anthropic_parts(&Value::Array(rest))}));
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max) = body.get("max_tokens") {
        out.insert("max_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p", "stream"] {
        if let Some(v) = body.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.get("name").cloned().unwrap_or(json!("")),
                    "description": t.get("description").cloned().unwrap_or(json!("")),
                    "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))}})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice") {
        let c = match choice.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(json!(""))}})
            }
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), c);
    }
    if let Some(user) = body.pointer("/metadata/user_id") {
        out.insert("user".into(), user.clone());
    }
    Value::Object(out)
}

fn anthropic_answer_to_openai(body: &Value, model: &str) -> Value {
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| {
            json!({"id": b.get("id").cloned().unwrap_or(json!("")), "type": "function",
                "function": {"name": b.get("name").cloned().unwrap_or(json!("")),
                "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into())}})
        })
        .collect();
    let finish = match body.get("stop_reason").and_then(Value::as_str) {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    };
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null, "annotations": []});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let n = |p: &str| body.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let read = n("/usage/cache_read_input_tokens");
    let prompt = n("/usage/input_tokens") + read + n("/usage/cache_creation_input_tokens");
    let completion = n("/usage/output_tokens");
    let id = body.get("id").and_then(Value::as_str).unwrap_or("msg");
    json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read}}})
}

fn openai_answer_to_anthropic(body: &Value, model: &str) -> Value {
    let msg = body
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or(Value::Null);
    let mut content = Vec::new();
    let text = msg.get("content").map(text_of).unwrap_or_default();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let input = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .unwrap_or_else(|| json!({}));
        content.push(
            json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or(json!("")),
            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")), "input": input}),
        );
    }
    let stop = match body
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
    {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    };
    let n = |p: &str| body.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("/usage/prompt_tokens_details/cached_tokens");
    let id = body.get("id").and_then(Value::as_str).unwrap_or("chatcmpl");
    json!({"id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": n("/usage/prompt_tokens").saturating_sub(cached), "output_tokens": n("/usage/completion_tokens"),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_request_to_anthropic_and_back() {
        let body = json!({"model": "m", "max_tokens": 30, "temperature": 0.2, "stop": "END",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Boston?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\":\"Boston\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
            "tool_choice": "required"});
        let a = request(ProviderKind::Openai, ProviderKind::Anthropic, &body, 4096);
        assert_eq!(a["system"], "Be brief.");
        assert_eq!(a["max_tokens"], 30);
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert_eq!(a["messages"].as_array().unwrap().len(), 3, "{a}");
        assert_eq!(a["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(
            a["messages"][1]["content"][0]["input"]["location"],
            "Boston"
        );
        assert_eq!(a["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(a["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(a["tool_choice"]["type"], "any");
        // And back: the same conversation in OpenAI's shape.
        let o = request(ProviderKind::Anthropic, ProviderKind::Openai, &a, 4096);
        let roles: Vec<&str> = o["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(
            o["messages"][2]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(o["messages"][3]["tool_call_id"], "call_1");
        assert_eq!(o["tool_choice"], "required");
        assert_eq!(o["stop"], json!(["END"]));
        // Anthropic needs max_tokens: the default fills it in.
        let bare = request(
            ProviderKind::Openai,
            ProviderKind::Anthropic,
            &json!({"messages": []}),
            777,
        );
        assert_eq!(bare["max_tokens"], 777);
    }

    #[test]
    fn answers_translate_with_usage_and_stop_reasons() {
        let a = json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "SF"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 5}});
        let o = response(ProviderKind::Anthropic, ProviderKind::Openai, &a, "alias");
        assert_eq!(o["model"], "alias");
        assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(o["choices"][0]["message"]["content"], "Checking.");
        assert_eq!(
            o["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"SF\"}"
        );
        assert_eq!(o["usage"]["prompt_tokens"], 25);
        assert_eq!(o["usage"]["completion_tokens"], 7);
        assert_eq!(o["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
        let back = response(ProviderKind::Openai, ProviderKind::Anthropic, &o, "alias");
        assert_eq!(back["stop_reason"], "tool_use");
        assert_eq!(back["content"][1]["input"]["location"], "SF");
        assert_eq!(back["usage"]["input_tokens"], 20);
        assert_eq!(back["usage"]["cache_read_input_tokens"], 5);
        assert_eq!(back["usage"]["output_tokens"], 7);
    }
}
