//! Cross-format translation between OpenAI chat completions, Anthropic messages and Gemini `generateContent`, so
//! a route may mix deployments of all three providers and fall back from one to another: the request is rewritten
//! into the deployment's format before it is sent, and the complete answer back into the format the client spoke
//! (text, tool calls, stop reasons and usage). OpenAI is the pivot: Anthropic ↔ Gemini goes through it. Streams
//! are translated event by event by [`crate::translate_stream::StreamTranslator`].

use std::collections::{HashMap, VecDeque};

use serde_json::{Map, Value, json};

use crate::ProviderKind;

/// Whether a chat call in `from`'s format can be served by a deployment speaking `to` (plain or streamed).
pub fn can_translate(from: ProviderKind, to: ProviderKind) -> bool {
    use ProviderKind::{Anthropic, Gemini, Openai};
    // Every pair of the three chat formats translates (a new format must be added here explicitly).
    matches!(
        (from, to),
        (Openai | Anthropic | Gemini, Openai | Anthropic | Gemini)
    )
}

/// Rewrites a chat request from `from`'s format into `to`'s; `default_max_tokens` fills Anthropic's required
/// `max_tokens` when the request sets none. The same format is returned unchanged. Whether the call streams is
/// not part of the result for Gemini (its URL says so); the caller sets `stream` for the others.
pub fn request(
    from: ProviderKind,
    to: ProviderKind,
    body: &Value,
    default_max_tokens: u64,
) -> Value {
    use ProviderKind::{Anthropic, Gemini, Openai};
    match (from, to) {
        (Openai, Anthropic) => openai_to_anthropic(body, default_max_tokens),
        (Anthropic, Openai) => anthropic_to_openai(body),
        (Openai, Gemini) => openai_to_gemini(body),
        (Gemini, Openai) => gemini_to_openai(body),
        (Anthropic, Gemini) => openai_to_gemini(&anthropic_to_openai(body)),
        (Gemini, Anthropic) => openai_to_anthropic(&gemini_to_openai(body), default_max_tokens),
        _ => body.clone(),
    }
}

/// Rewrites a complete chat answer from the deployment's format `from` into the client's format `to`; `model`
/// is the model name the client asked for.
pub fn response(from: ProviderKind, to: ProviderKind, body: &Value, model: &str) -> Value {
    use ProviderKind::{Anthropic, Gemini, Openai};
    match (from, to) {
        (Anthropic, Openai) => anthropic_answer_to_openai(body, model),
        (Openai, Anthropic) => openai_answer_to_anthropic(body, model),
        (Gemini, Openai) => gemini_answer_to_openai(body, model),
        (Openai, Gemini) => openai_answer_to_gemini(body, model),
        (Anthropic, Gemini) => {
            openai_answer_to_gemini(&anthropic_answer_to_openai(body, model), model)
        }
        (Gemini, Anthropic) => {
            openai_answer_to_anthropic(&gemini_answer_to_openai(body, model), model)
        }
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

/// Appends a turn of `role` whose items sit under `key`, merged into the previous turn when it has the same role.
fn push_turn(turns: &mut Vec<Value>, role: &str, key: &str, items: Vec<Value>) {
    if let Some(last) = turns.last_mut()
        && last["role"] == role
        && let Some(existing) = last.get_mut(key).and_then(Value::as_array_mut)
    {
        existing.extend(items);
        return;
    }
    turns.push(json!({"role": role, key: items}));
}

fn openai_to_anthropic(body: &Value, default_max_tokens: u64) -> Value {
    let mut out = Map::new();
    if let Some(m) = body.get("model") {
        out.insert("model".into(), m.clone());
    }
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    // Anthropic wants alternating roles: consecutive messages of one role are merged.
    let push = |role: &str, blocks: Vec<Value>, messages: &mut Vec<Value>| {
        push_turn(messages, role, "content", blocks);
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

/// OpenAI content (a string or parts) as Gemini parts.
fn openai_gemini_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"text": p.get("text").cloned().unwrap_or(json!(""))})),
                Some("image_url") => {
                    let url = p.pointer("/image_url/url").and_then(Value::as_str)?;
                    Some(
                        match url
                            .strip_prefix("data:")
                            .and_then(|r| r.split_once(";base64,"))
                        {
                            Some((media, data)) => {
                                json!({"inlineData": {"mimeType": media, "data": data}})
                            }
                            None => json!({"fileData": {"fileUri": url}}),
                        },
                    )
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A JSON schema with Gemini's spelling: `type` values in capitals, keywords its `Schema` lacks left out.
fn gemini_schema(schema: &Value) -> Value {
    respell_schema(schema, true)
}

/// A Gemini schema as JSON schema: `type` values in lower case.
fn json_schema(schema: &Value) -> Value {
    respell_schema(schema, false)
}

/// Walks a schema, spelling `type` values for Gemini (capitals, unknown keywords dropped) or for JSON schema
/// (lower case). `properties` maps names to schemas: its keys are not keywords.
fn respell_schema(schema: &Value, for_gemini: bool) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !for_gemini
                        || !matches!(k.as_str(), "additionalProperties" | "$schema" | "strict")
                })
                .map(|(k, v)| match (k.as_str(), v) {
                    ("type", Value::String(t)) if for_gemini => {
                        (k.clone(), json!(t.to_uppercase()))
                    }
                    ("type", Value::String(t)) => (k.clone(), json!(t.to_lowercase())),
                    ("properties", Value::Object(props)) => (
                        k.clone(),
                        Value::Object(
                            props
                                .iter()
                                .map(|(n, s)| (n.clone(), respell_schema(s, for_gemini)))
                                .collect(),
                        ),
                    ),
                    _ => (k.clone(), respell_schema(v, for_gemini)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|s| respell_schema(s, for_gemini)).collect()),
        other => other.clone(),
    }
}

fn openai_to_gemini(body: &Value) -> Value {
    let mut out = Map::new();
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    // Gemini wants alternating roles too: consecutive turns of one role are merged.
    let push = |role: &str, parts: Vec<Value>, contents: &mut Vec<Value>| {
        if !parts.is_empty() {
            push_turn(contents, role, "parts", parts);
        }
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
                let mut parts = openai_gemini_parts(content);
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        names.insert(id.to_owned(), name.to_owned());
                    }
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .and_then(|a| serde_json::from_str::<Value>(a).ok())
                        .unwrap_or_else(|| json!({}));
                    parts.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                push("model", parts, &mut contents);
            }
            Some("tool") => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let text = text_of(content);
                // `response` must be an object: a JSON object result as is, anything else wrapped.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                let name = names.get(id).cloned().unwrap_or_default();
                push(
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                    &mut contents,
                );
            }
            _ => push("user", openai_gemini_parts(content), &mut contents),
        }
    }
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n")}]}),
        );
    }
    let mut config = Map::new();
    if let Some(max) = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .filter(|v| v.is_u64())
    {
        config.insert("maxOutputTokens".into(), max.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = body.get(from) {
            config.insert(to.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            config.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let decls: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut d = json!({"name": f.get("name").cloned().unwrap_or(json!(""))});
                if let Some(desc) = f.get("description") {
                    d["description"] = desc.clone();
                }
                if let Some(p) = f.get("parameters") {
                    d["parameters"] = gemini_schema(p);
                }
                d
            })
            .collect();
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    let calling = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(json!({"mode": "ANY"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"mode": "AUTO"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"mode": "NONE"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|name| json!({"mode": "ANY", "allowedFunctionNames": [name]})),
        _ => None,
    };
    if let Some(c) = calling {
        out.insert("toolConfig".into(), json!({"functionCallingConfig": c}));
    }
    Value::Object(out)
}

/// Gemini parts (text, inline data, file data) as OpenAI content: a string when it is all text.
fn gemini_openai_content(parts: &[&Value]) -> Value {
    let mut out = Vec::new();
    for p in parts {
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            out.push(json!({"type": "text", "text": t}));
        } else if let Some(d) = p.get("inlineData") {
            let media = d
                .get("mimeType")
                .and_then(Value::as_str)
                .unwrap_or("image/png");
            let data = d.get("data").and_then(Value::as_str).unwrap_or("");
            out.push(json!({"type": "image_url", "image_url": {"url": format!("data:{media};base64,{data}")}}));
        } else if let Some(uri) = p.pointer("/fileData/fileUri").and_then(Value::as_str) {
            out.push(json!({"type": "image_url", "image_url": {"url": uri}}));
        }
    }
    if out.iter().all(|p| p["type"] == "text") {
        json!(
            out.iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        )
    } else {
        Value::Array(out)
    }
}

fn gemini_to_openai(body: &Value) -> Value {
    let mut out = Map::new();
    let mut messages = Vec::new();
    if let Some(parts) = body
        .pointer("/systemInstruction/parts")
        .and_then(Value::as_array)
    {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        messages.push(json!({"role": "system", "content": text.join("\n")}));
    }
    // Gemini calls carry no id (or an optional one): ids are made up in order and each response answers the
    // oldest open call of its name.
    let mut open: VecDeque<(String, String)> = VecDeque::new();
    let mut next_id = 0usize;
    for c in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let parts: Vec<&Value> = c
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
            .collect();
        let plain: Vec<&Value> = parts
            .iter()
            .copied()
            .filter(|p| p.get("functionCall").is_none() && p.get("functionResponse").is_none())
            .collect();
        if c.get("role").and_then(Value::as_str) == Some("model") {
            let calls: Vec<Value> = parts
                .iter()
                .filter_map(|p| p.get("functionCall"))
                .map(|f| {
                    let name = f.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
                    let id = f.get("id").and_then(Value::as_str).map_or_else(
                        || {
                            next_id += 1;
                            format!("call_{next_id}")
                        },
                        str::to_owned,
                    );
                    open.push_back((name.clone(), id.clone()));
                    json!({"id": id, "type": "function", "function": {"name": name,
                        "arguments": f.get("args").map_or_else(|| "{}".to_owned(), Value::to_string)}})
                })
                .collect();
            let content = gemini_openai_content(&plain);
            let empty = content.as_str().is_some_and(str::is_empty);
            let mut msg = json!({"role": "assistant", "content": if empty && !calls.is_empty() { Value::Null } else { content }});
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            messages.push(msg);
            continue;
        }
        for f in parts.iter().filter_map(|p| p.get("functionResponse")) {
            let name = f.get("name").and_then(Value::as_str).unwrap_or("");
            let id = match f.get("id").and_then(Value::as_str) {
                Some(id) => id.to_owned(),
                None => match open.iter().position(|(n, _)| n == name) {
                    Some(i) => open.remove(i).map(|(_, id)| id).unwrap_or_default(),
                    None => String::new(),
                },
            };
            let response = f.get("response").cloned().unwrap_or(json!({}));
            let text = match response.get("content").or_else(|| response.get("output")) {
                Some(Value::String(s)) if response.as_object().is_some_and(|o| o.len() == 1) => {
                    s.clone()
                }
                _ => response.to_string(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
        }
        if !plain.is_empty() {
            messages.push(json!({"role": "user", "content": gemini_openai_content(&plain)}));
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    let config = body.get("generationConfig");
    let get = |k: &str| config.and_then(|c| c.get(k));
    if let Some(max) = get("maxOutputTokens") {
        out.insert("max_tokens".into(), max.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("topP", "top_p")] {
        if let Some(v) = get(from) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = get("stopSequences") {
        out.insert("stop".into(), stop.clone());
    }
    let decls: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .map(|d| {
            let params = d
                .get("parameters")
                .map(json_schema)
                .or_else(|| d.get("parametersJsonSchema").cloned())
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            json!({"type": "function", "function": {"name": d.get("name").cloned().unwrap_or(json!("")),
                "description": d.get("description").cloned().unwrap_or(json!("")), "parameters": params}})
        })
        .collect();
    if !decls.is_empty() {
        out.insert("tools".into(), Value::Array(decls));
    }
    if let Some(c) = body.pointer("/toolConfig/functionCallingConfig") {
        let allowed = c
            .get("allowedFunctionNames")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a.first());
        let choice = match (c.get("mode").and_then(Value::as_str), allowed) {
            (Some("ANY"), Some(name)) => json!({"type": "function", "function": {"name": name}}),
            (Some("ANY"), None) => json!("required"),
            (Some("NONE"), _) => json!("none"),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), choice);
    }
    Value::Object(out)
}

/// A Gemini finish reason in OpenAI's words (`tool_calls` when the answer calls a function).
fn gemini_finish(reason: Option<&str>, calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => "content_filter",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// An OpenAI finish reason in Gemini's words.
fn openai_finish_to_gemini(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

fn gemini_answer_to_openai(body: &Value, model: &str) -> Value {
    let parts: Vec<&Value> = body
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .collect();
    let text: String = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<Value> = parts
        .iter()
        .filter_map(|p| p.get("functionCall"))
        .enumerate()
        .map(|(i, f)| {
            let id = f
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{}", i + 1), str::to_owned);
            json!({"id": id, "type": "function", "function": {"name": f.get("name").cloned().unwrap_or(json!("")),
                "arguments": f.get("args").map_or_else(|| "{}".to_owned(), Value::to_string)}})
        })
        .collect();
    let finish = gemini_finish(
        body.pointer("/candidates/0/finishReason")
            .and_then(Value::as_str),
        !calls.is_empty(),
    );
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null, "annotations": []});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let n = |p: &str| body.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("/usageMetadata/promptTokenCount");
    let completion =
        n("/usageMetadata/candidatesTokenCount") + n("/usageMetadata/thoughtsTokenCount");
    let cached = n("/usageMetadata/cachedContentTokenCount");
    let id = body
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or("gemini");
    json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}})
}

fn openai_answer_to_gemini(body: &Value, model: &str) -> Value {
    let msg = body
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or(Value::Null);
    let mut parts = Vec::new();
    let text = msg.get("content").map(text_of).unwrap_or_default();
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    for call in msg
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
        parts.push(json!({"functionCall": {"name": call.pointer("/function/name").cloned().unwrap_or(json!("")), "args": args}}));
    }
    let finish = openai_finish_to_gemini(
        body.pointer("/choices/0/finish_reason")
            .and_then(Value::as_str),
    );
    let n = |p: &str| body.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (prompt, completion) = (n("/usage/prompt_tokens"), n("/usage/completion_tokens"));
    let mut usage = json!({"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion});
    let cached = n("/usage/prompt_tokens_details/cached_tokens");
    if cached > 0 {
        usage["cachedContentTokenCount"] = json!(cached);
    }
    let id = body.get("id").and_then(Value::as_str).unwrap_or("chatcmpl");
    json!({"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage, "modelVersion": model, "responseId": id})
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

    #[test]
    fn openai_and_anthropic_requests_to_gemini_and_back() {
        let body = json!({"model": "m", "max_tokens": 30, "temperature": 0.2, "top_p": 0.9, "stop": "END", "stream": true,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Boston?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\":\"Boston\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "additionalProperties": false,
                    "properties": {"location": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        let g = request(ProviderKind::Openai, ProviderKind::Gemini, &body, 4096);
        assert_eq!(g["systemInstruction"]["parts"][0]["text"], "Be brief.");
        assert!(g.get("model").is_none() && g.get("stream").is_none(), "{g}");
        let roles: Vec<&str> = g["contents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "model", "user"], "{g}");
        assert_eq!(
            g["contents"][0]["parts"][1]["inlineData"],
            json!({"mimeType": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            g["contents"][1]["parts"][0]["functionCall"],
            json!({"name": "get_weather", "args": {"location": "Boston"}})
        );
        assert_eq!(
            g["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "get_weather", "response": {"content": "Sunny"}})
        );
        assert_eq!(
            g["generationConfig"],
            json!({"maxOutputTokens": 30, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
        );
        let decl = &g["tools"][0]["functionDeclarations"][0];
        assert_eq!(
            decl["parameters"],
            json!({"type": "OBJECT", "properties": {"location": {"type": "STRING"}}})
        );
        assert_eq!(
            g["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
        );
        // Back to OpenAI: the same conversation; the call gets a made-up id that its response answers.
        let o = request(ProviderKind::Gemini, ProviderKind::Openai, &g, 4096);
        let roles: Vec<&str> = o["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"], "{o}");
        assert_eq!(
            o["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        let id = o["messages"][2]["tool_calls"][0]["id"].clone();
        assert_eq!(o["messages"][3]["tool_call_id"], id);
        assert_eq!(o["messages"][3]["content"], "Sunny");
        assert_eq!(
            o["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"Boston\"}"
        );
        assert_eq!(
            (o["max_tokens"].as_u64(), o["top_p"].as_f64()),
            (Some(30), Some(0.9))
        );
        assert_eq!(o["stop"], json!(["END"]));
        assert_eq!(
            o["tools"][0]["function"]["parameters"]["properties"]["location"]["type"],
            "string"
        );
        assert_eq!(o["tool_choice"]["function"]["name"], "get_weather");
        // Anthropic ↔ Gemini through the same shape: Anthropic needs max_tokens, which the default fills in.
        let a = request(
            ProviderKind::Gemini,
            ProviderKind::Anthropic,
            &json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}),
            777,
        );
        assert_eq!(a["max_tokens"], 777);
        assert_eq!(
            a["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        );
        let anth = request(ProviderKind::Openai, ProviderKind::Anthropic, &body, 4096);
        let g2 = request(ProviderKind::Anthropic, ProviderKind::Gemini, &anth, 4096);
        assert_eq!(g2["contents"], g["contents"], "{g2}");
        assert_eq!(g2["systemInstruction"], g["systemInstruction"]);
        assert!(can_translate(ProviderKind::Gemini, ProviderKind::Anthropic));
    }

    #[test]
    fn gemini_answers_translate_with_usage_and_finish_reasons() {
        let g = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking", "thought": true},
            {"text": "Checking."}, {"functionCall": {"name": "get_weather", "args": {"location": "SF"}}}]},
            "finishReason": "STOP", "index": 0}], "responseId": "r1",
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 7, "thoughtsTokenCount": 3, "cachedContentTokenCount": 5}});
        let o = response(ProviderKind::Gemini, ProviderKind::Openai, &g, "alias");
        assert_eq!(o["model"], "alias");
        assert_eq!(o["choices"][0]["message"]["content"], "Checking.");
        assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            o["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"SF\"}"
        );
        assert_eq!(
            o["usage"],
            json!({"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 5}})
        );
        let a = response(ProviderKind::Gemini, ProviderKind::Anthropic, &g, "alias");
        assert_eq!(a["stop_reason"], "tool_use");
        assert_eq!(a["content"][1]["input"]["location"], "SF");
        assert_eq!(
            (
                a["usage"]["input_tokens"].as_u64(),
                a["usage"]["cache_read_input_tokens"].as_u64()
            ),
            (Some(15), Some(5))
        );
        let back = response(ProviderKind::Openai, ProviderKind::Gemini, &o, "alias");
        assert_eq!(
            back["candidates"][0]["content"]["parts"],
            json!([{"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"location": "SF"}}}])
        );
        assert_eq!(back["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            back["usageMetadata"],
            json!({"promptTokenCount": 20, "candidatesTokenCount": 10, "totalTokenCount": 30,
            "cachedContentTokenCount": 5})
        );
        let from_claude = response(
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
            &json!({"id": "msg_1",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens",
            "usage": {"input_tokens": 9, "output_tokens": 4}}),
            "alias",
        );
        assert_eq!(from_claude["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(from_claude["usageMetadata"]["promptTokenCount"], 9);
        let cut = response(
            ProviderKind::Gemini,
            ProviderKind::Openai,
            &json!({"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS"}]}),
            "m",
        );
        assert_eq!(cut["choices"][0]["finish_reason"], "length");
        let unsafe_ = response(
            ProviderKind::Gemini,
            ProviderKind::Openai,
            &json!({"candidates": [{"finishReason": "SAFETY"}]}),
            "m",
        );
        assert_eq!(unsafe_["choices"][0]["finish_reason"], "content_filter");
    }
}
