//! Streamed chat answers translated event by event between OpenAI chat-completion chunks, Anthropic message
//! events and Gemini `streamGenerateContent` chunks, without buffering the stream: each upstream event is decoded
//! into format-neutral pieces (start, text, tool call start and arguments, finish, usage, end) that are encoded at
//! once in the client's format. Only a Gemini client waits for a tool call's arguments to be complete (Gemini
//! sends a function call whole), and the closing events wait for the upstream's own end (usage comes last).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::ProviderKind;
use crate::protocol::Usage;
use crate::sse::Event;

/// Translates one streamed chat answer from the deployment's format into the client's.
#[derive(Debug)]
pub struct StreamTranslator {
    decoder: Decoder,
    encoder: Encoder,
}

impl StreamTranslator {
    /// A translator from `from` (the deployment's format) to `to` (the client's); `model` is the name the client
    /// asked for; `include_usage` whether an OpenAI client asked for the usage chunk
    /// (`stream_options.include_usage`).
    pub fn new(
        from: ProviderKind,
        to: ProviderKind,
        model: &str,
        include_usage: bool,
    ) -> StreamTranslator {
        StreamTranslator {
            decoder: Decoder {
                from,
                started: false,
                usage: Usage::default(),
                calls: 0,
                saw_call: false,
            },
            encoder: Encoder {
                to,
                model: model.to_owned(),
                include_usage,
                id: String::new(),
                started: false,
                ended: false,
                stop: None,
                usage: None,
                slots: HashMap::new(),
                finish_sent: false,
                next_block: 0,
                open: None,
                pending: BTreeMap::new(),
            },
        }
    }

    /// Translates one upstream event into the events to send the client now (often one, possibly none).
    pub fn push(&mut self, event: &Event) -> Vec<Event> {
        let mut pieces = Vec::new();
        self.decoder.decode(event, &mut pieces);
        let mut out = Vec::new();
        for p in pieces {
            self.encoder.encode(p, &mut out);
        }
        out
    }

    /// The upstream stream ended properly: the events that close the answer in the client's format (none when
    /// they were sent already). Not called for a cut stream, which ends with an error event instead.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.encoder.encode(Piece::End, &mut out);
        out
    }
}

/// Why generation stopped, in neutral terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    End,
    Length,
    Tools,
    Filter,
}

/// One format-neutral piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Start {
        id: String,
    },
    Text(String),
    ToolStart {
        index: u64,
        id: String,
        name: String,
    },
    ToolArgs {
        index: u64,
        args: String,
    },
    Finish(Stop),
    Usage(Usage),
    End,
    Error {
        kind: String,
        message: String,
    },
}

#[derive(Debug)]
struct Decoder {
    from: ProviderKind,
    started: bool,
    usage: Usage,
    /// Gemini function calls seen (their made-up ids count them).
    calls: u64,
    saw_call: bool,
}

impl Decoder {
    fn decode(&mut self, e: &Event, out: &mut Vec<Piece>) {
        let data = e.data.trim();
        if data == "[DONE]" {
            out.push(Piece::End);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            let kind = ["type", "status"]
                .iter()
                .find_map(|k| err.get(*k).and_then(Value::as_str))
                .unwrap_or("api_error");
            out.push(Piece::Error {
                kind: kind.to_owned(),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_owned(),
            });
            return;
        }
        match self.from {
            ProviderKind::Openai => self.openai(&v, out),
            ProviderKind::Anthropic => self.anthropic(&v, out),
            ProviderKind::Gemini => self.gemini(&v, out),
        }
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<Piece>) {
        if !self.started {
            self.started = true;
            out.push(Piece::Start {
                id: id.unwrap_or("stream").to_owned(),
            });
        }
    }

    fn openai(&mut self, v: &Value, out: &mut Vec<Piece>) {
        self.start(v.get("id").and_then(Value::as_str), out);
        if let Some(choice) = v.pointer("/choices/0") {
            if let Some(t) = choice
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                out.push(Piece::Text(t.to_owned()));
            }
            for call in choice
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let name = call.pointer("/function/name").and_then(Value::as_str);
                let id = call.get("id").and_then(Value::as_str);
                if id.is_some() || name.is_some() {
                    out.push(Piece::ToolStart {
                        index,
                        id: id.map_or_else(|| format!("call_{index}"), str::to_owned),
                        name: name.unwrap_or("").to_owned(),
                    });
                }
                if let Some(args) = call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    out.push(Piece::ToolArgs {
                        index,
                        args: args.to_owned(),
                    });
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                out.push(Piece::Finish(match reason {
                    "length" => Stop::Length,
                    "tool_calls" | "function_call" => Stop::Tools,
                    "content_filter" => Stop::Filter,
                    _ => Stop::End,
                }));
            }
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Usage {
                input_tokens: n("/prompt_tokens"),
                output_tokens: n("/completion_tokens"),
                cached_input_tokens: n("/prompt_tokens_details/cached_tokens"),
                cache_write_tokens: 0,
                counted: false,
            };
            out.push(Piece::Usage(self.usage));
        }
    }

    fn anthropic(&mut self, v: &Value, out: &mut Vec<Piece>) {
        let n = |p: &str| v.pointer(p).and_then(Value::as_u64);
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.start(v.pointer("/message/id").and_then(Value::as_str), out);
                let read = n("/message/usage/cache_read_input_tokens").unwrap_or(0);
                let write = n("/message/usage/cache_creation_input_tokens").unwrap_or(0);
                self.usage.input_tokens =
                    n("/message/usage/input_tokens").unwrap_or(0) + read + write;
                self.usage.cached_input_tokens = read;
                self.usage.cache_write_tokens = write;
                self.usage.output_tokens = n("/message/usage/output_tokens").unwrap_or(0);
                out.push(Piece::Usage(self.usage));
            }
            Some("content_block_start") => {
                self.start(None, out);
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            out.push(Piece::Text(t.to_owned()));
                        }
                    }
                    Some("tool_use") => out.push(Piece::ToolStart {
                        index,
                        id: block
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        name: block
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    }),
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let field = |k: &str| {
                    delta
                        .get(k)
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                };
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(t) = field("text") {
                            out.push(Piece::Text(t));
                        }
                    }
                    Some("input_json_delta") => {
                        if let Some(args) = field("partial_json") {
                            out.push(Piece::ToolArgs { index, args });
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    out.push(Piece::Finish(match reason {
                        "max_tokens" => Stop::Length,
                        "tool_use" => Stop::Tools,
                        "refusal" => Stop::Filter,
                        _ => Stop::End,
                    }));
                }
                if let Some(o) = n("/usage/output_tokens") {
                    self.usage.output_tokens = o;
                    if let Some(i) = n("/usage/input_tokens").filter(|i| *i > 0) {
                        let read = n("/usage/cache_read_input_tokens")
                            .unwrap_or(self.usage.cached_input_tokens);
                        let write = n("/usage/cache_creation_input_tokens")
                            .unwrap_or(self.usage.cache_write_tokens);
                        self.usage.input_tokens = i + read + write;
                        self.usage.cached_input_tokens = read;
                        self.usage.cache_write_tokens = write;
                    }
                    out.push(Piece::Usage(self.usage));
                }
            }
            Some("message_stop") => out.push(Piece::End),
            _ => {}
        }
    }

    fn gemini(&mut self, v: &Value, out: &mut Vec<Piece>) {
        // Usage first (before the start): every chunk carries the running count, and an Anthropic client's
        // `message_start` carries the input tokens.
        if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
            let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Usage {
                input_tokens: n("/promptTokenCount"),
                output_tokens: n("/candidatesTokenCount") + n("/thoughtsTokenCount"),
                cached_input_tokens: n("/cachedContentTokenCount"),
                cache_write_tokens: 0,
                counted: false,
            };
            out.push(Piece::Usage(self.usage));
        }
        self.start(v.get("responseId").and_then(Value::as_str), out);
        for p in v
            .pointer("/candidates/0/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        {
            if let Some(t) = p
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                out.push(Piece::Text(t.to_owned()));
            }
            if let Some(f) = p.get("functionCall") {
                let index = self.calls;
                self.calls += 1;
                self.saw_call = true;
                out.push(Piece::ToolStart {
                    index,
                    id: f
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("call_{}", index + 1), str::to_owned),
                    name: f
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                });
                out.push(Piece::ToolArgs {
                    index,
                    args: f
                        .get("args")
                        .map_or_else(|| "{}".to_owned(), Value::to_string),
                });
            }
        }
        if let Some(reason) = v
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str)
        {
            out.push(Piece::Finish(match reason {
                "MAX_TOKENS" => Stop::Length,
                "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII"
                | "IMAGE_SAFETY" => Stop::Filter,
                _ if self.saw_call => Stop::Tools,
                _ => Stop::End,
            }));
        }
    }
}

/// Where an Anthropic client's current content block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u64),
    Tool(u64),
}

#[derive(Debug)]
struct Encoder {
    to: ProviderKind,
    model: String,
    include_usage: bool,
    id: String,
    started: bool,
    ended: bool,
    stop: Option<Stop>,
    usage: Option<Usage>,
    /// Upstream tool index → OpenAI tool call index, or Anthropic content block index.
    slots: HashMap<u64, u64>,
    /// OpenAI: the finish chunk went out.
    finish_sent: bool,
    /// Anthropic: the next content block index and the open one.
    next_block: u64,
    open: Option<Open>,
    /// Gemini: tool calls whose arguments are still arriving (id, name, arguments so far).
    pending: BTreeMap<u64, (String, String, String)>,
}

impl Encoder {
    fn encode(&mut self, piece: Piece, out: &mut Vec<Event>) {
        if self.ended {
            return;
        }
        match piece {
            Piece::Usage(u) => self.usage = Some(u),
            Piece::Error { kind, message } => out.push(self.error(&kind, &message)),
            Piece::Start { id } if self.to == ProviderKind::Gemini => self.id = id,
            // OpenAI's role chunk and Anthropic's `message_start` go out at once: the client has its first byte.
            Piece::Start { id } => {
                self.id = id;
                match self.to {
                    ProviderKind::Openai => self.openai(Piece::Start { id: String::new() }, out),
                    _ => self.anthropic(Piece::Start { id: String::new() }, out),
                }
            }
            other => match self.to {
                ProviderKind::Openai => self.openai(other, out),
                ProviderKind::Anthropic => self.anthropic(other, out),
                ProviderKind::Gemini => self.gemini(other, out),
            },
        }
    }

    fn error(&self, kind: &str, message: &str) -> Event {
        match self.to {
            ProviderKind::Openai => Event::new(
                None,
                json!({"error": {"message": message, "type": kind, "code": kind}}).to_string(),
            ),
            ProviderKind::Anthropic => Event::new(
                Some("error"),
                json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
            ),
            ProviderKind::Gemini => Event::new(
                None,
                json!({"error": {"code": 500, "message": message, "status": kind}}).to_string(),
            ),
        }
    }

    fn openai_chunk(&self, delta: Value, finish: Option<&str>) -> Event {
        let id = if self.id.starts_with("chatcmpl") {
            self.id.clone()
        } else {
            format!("chatcmpl-{}", self.id)
        };
        Event::new(
            None,
            json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
            .to_string(),
        )
    }

    fn openai(&mut self, piece: Piece, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            out.push(self.openai_chunk(json!({"role": "assistant", "content": ""}), None));
        }
        match piece {
            Piece::Text(t) => out.push(self.openai_chunk(json!({"content": t}), None)),
            Piece::ToolStart { index, id, name } => {
                let slot = self.slots.len() as u64;
                self.slots.insert(index, slot);
                out.push(self.openai_chunk(
                    json!({"tool_calls": [{"index": slot, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                ));
            }
            Piece::ToolArgs { index, args } => {
                let next = self.slots.len() as u64;
                let slot = *self.slots.entry(index).or_insert(next);
                out.push(self.openai_chunk(
                    json!({"tool_calls": [{"index": slot, "function": {"arguments": args}}]}),
                    None,
                ));
            }
            Piece::Finish(stop) => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    out.push(self.openai_chunk(json!({}), Some(openai_stop(stop))));
                }
            }
            Piece::End => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    let stop = if self.slots.is_empty() {
                        Stop::End
                    } else {
                        Stop::Tools
                    };
                    out.push(self.openai_chunk(json!({}), Some(openai_stop(stop))));
                }
                if self.include_usage
                    && let Some(u) = self.usage
                {
                    let mut chunk = self.openai_chunk(json!({}), None);
                    if let Ok(mut v) = serde_json::from_str::<Value>(&chunk.data) {
                        v["choices"] = json!([]);
                        v["usage"] = json!({"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                            "total_tokens": u.total(), "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens}});
                        chunk = Event::new(None, v.to_string());
                    }
                    out.push(chunk);
                }
                out.push(Event::new(None, "[DONE]".to_owned()));
                self.ended = true;
            }
            Piece::Start { .. } | Piece::Usage(_) | Piece::Error { .. } => {}
        }
    }

    fn anthropic_event(name: &str, mut data: Value) -> Event {
        data["type"] = json!(name);
        Event::new(Some(name), data.to_string())
    }

    fn anthropic_usage(&self) -> Value {
        let u = self.usage.unwrap_or_default();
        json!({"input_tokens": u.input_tokens.saturating_sub(u.cached_input_tokens + u.cache_write_tokens),
            "output_tokens": u.output_tokens, "cache_read_input_tokens": u.cached_input_tokens,
            "cache_creation_input_tokens": u.cache_write_tokens})
    }

    fn close_block(&mut self, out: &mut Vec<Event>) {
        if let Some(Open::Text(b) | Open::Tool(b)) = self.open.take() {
            out.push(Self::anthropic_event(
                "content_block_stop",
                json!({"index": b}),
            ));
        }
    }

    fn anthropic(&mut self, piece: Piece, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            let id = if self.id.starts_with("msg") {
                self.id.clone()
            } else {
                format!("msg_{}", self.id)
            };
            let mut usage = self.anthropic_usage();
            usage["output_tokens"] = json!(0);
            out.push(Self::anthropic_event(
                "message_start",
                json!({"message": {"id": id, "type": "message", "role": "assistant", "content": [],
                    "model": self.model, "stop_reason": null, "stop_sequence": null, "usage": usage}}),
            ));
        }
        match piece {
            Piece::Text(t) => {
                let b = match self.open {
                    Some(Open::Text(b)) => b,
                    _ => {
                        self.close_block(out);
                        let b = self.next_block;
                        self.next_block += 1;
                        self.open = Some(Open::Text(b));
                        out.push(Self::anthropic_event(
                            "content_block_start",
                            json!({"index": b, "content_block": {"type": "text", "text": ""}}),
                        ));
                        b
                    }
                };
                out.push(Self::anthropic_event(
                    "content_block_delta",
                    json!({"index": b, "delta": {"type": "text_delta", "text": t}}),
                ));
            }
            Piece::ToolStart { index, id, name } => {
                self.close_block(out);
                let b = self.next_block;
                self.next_block += 1;
                self.slots.insert(index, b);
                self.open = Some(Open::Tool(b));
                out.push(Self::anthropic_event(
                    "content_block_start",
                    json!({"index": b, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                ));
            }
            Piece::ToolArgs { index, args } => {
                if let Some(b) = self.slots.get(&index) {
                    out.push(Self::anthropic_event(
                        "content_block_delta",
                        json!({"index": b, "delta": {"type": "input_json_delta", "partial_json": args}}),
                    ));
                }
            }
            Piece::Finish(stop) => {
                self.close_block(out);
                self.stop = Some(stop);
            }
            Piece::End => {
                self.close_block(out);
                let stop = self.stop.unwrap_or(if self.slots.is_empty() {
                    Stop::End
                } else {
                    Stop::Tools
                });
                let reason = match stop {
                    Stop::End => "end_turn",
                    Stop::Length => "max_tokens",
                    Stop::Tools => "tool_use",
                    Stop::Filter => "refusal",
                };
                out.push(Self::anthropic_event(
                    "message_delta",
                    json!({"delta": {"stop_reason": reason, "stop_sequence": null}, "usage": self.anthropic_usage()}),
                ));
                out.push(Self::anthropic_event("message_stop", json!({})));
                self.ended = true;
            }
            Piece::Start { .. } | Piece::Usage(_) | Piece::Error { .. } => {}
        }
    }

    fn gemini_chunk(&self, parts: Vec<Value>, stop: Option<Stop>) -> Event {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(s) = stop {
            candidate["finishReason"] = json!(match s {
                Stop::End | Stop::Tools => "STOP",
                Stop::Length => "MAX_TOKENS",
                Stop::Filter => "SAFETY",
            });
        }
        let mut chunk =
            json!({"candidates": [candidate], "modelVersion": self.model, "responseId": self.id});
        if let Some(u) = self.usage {
            let mut meta = json!({"promptTokenCount": u.input_tokens, "candidatesTokenCount": u.output_tokens,
                "totalTokenCount": u.total()});
            if u.cached_input_tokens > 0 {
                meta["cachedContentTokenCount"] = json!(u.cached_input_tokens);
            }
            chunk["usageMetadata"] = meta;
        }
        Event::new(None, chunk.to_string())
    }

    fn pending_calls(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.pending)
            .into_values()
            .map(|(_, name, args)| {
                let args = serde_json::from_str::<Value>(&args).unwrap_or_else(|_| json!({}));
                json!({"functionCall": {"name": name, "args": args}})
            })
            .collect()
    }

    fn gemini(&mut self, piece: Piece, out: &mut Vec<Event>) {
        match piece {
            Piece::Text(t) => {
                let mut parts = self.pending_calls();
                parts.push(json!({"text": t}));
                out.push(self.gemini_chunk(parts, None));
            }
            Piece::ToolStart { index, id, name } => {
                self.pending.insert(index, (id, name, String::new()));
            }
            Piece::ToolArgs { index, args } => {
                if let Some(p) = self.pending.get_mut(&index) {
                    p.2.push_str(&args);
                }
            }
            Piece::Finish(stop) => {
                self.stop = Some(stop);
                let parts = self.pending_calls();
                if !parts.is_empty() {
                    out.push(self.gemini_chunk(parts, None));
                }
            }
            Piece::End => {
                let mut parts = self.pending_calls();
                if parts.is_empty() {
                    parts.push(json!({"text": ""}));
                }
                let stop = self.stop.unwrap_or(Stop::End);
                out.push(self.gemini_chunk(parts, Some(stop)));
                self.ended = true;
            }
            Piece::Start { .. } | Piece::Usage(_) | Piece::Error { .. } => {}
        }
    }
}

fn openai_stop(stop: Stop) -> &'static str {
    match stop {
        Stop::End => "stop",
        Stop::Length => "length",
        Stop::Tools => "tool_calls",
        Stop::Filter => "content_filter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProviderKind::{Anthropic, Gemini, Openai};

    /// A recorded upstream stream: its events as a provider sends them.
    fn recorded(kind: ProviderKind, tool: bool, stop: &str) -> Vec<Event> {
        let ev = |name: Option<&str>, v: Value| Event::new(name, v.to_string());
        match kind {
            Openai => {
                let chunk = |delta: Value, finish: Value| {
                    ev(
                        None,
                        json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
                    )
                };
                let mut out = vec![chunk(
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                )];
                if tool {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}]}),
                        Value::Null,
                    ));
                    out.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}), Value::Null));
                    out.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"Paris\"}"}}]}), Value::Null));
                } else {
                    out.push(chunk(json!({"content": "Hello "}), Value::Null));
                    out.push(chunk(json!({"content": "there"}), Value::Null));
                }
                out.push(chunk(json!({}), json!(stop)));
                out.push(ev(None, json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1,
                    "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 19, "completion_tokens": 10,
                    "total_tokens": 29, "prompt_tokens_details": {"cached_tokens": 4}}})));
                out.push(Event::new(None, "[DONE]".into()));
                out
            }
            Anthropic => {
                let mut out = vec![ev(
                    Some("message_start"),
                    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                        "role": "assistant", "content": [], "model": "claude", "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": 15, "cache_read_input_tokens": 4, "output_tokens": 1}}}),
                )];
                if tool {
                    out.push(ev(
                        Some("content_block_start"),
                        json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
                    ));
                    out.push(ev(
                        Some("content_block_delta"),
                        json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": "Checking."}}),
                    ));
                    out.push(ev(
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": 0}),
                    ));
                    out.push(ev(Some("content_block_start"), json!({"type": "content_block_start", "index": 1,
                        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})));
                    out.push(ev(
                        Some("content_block_delta"),
                        json!({"type": "content_block_delta", "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
                    ));
                    out.push(ev(
                        Some("content_block_delta"),
                        json!({"type": "content_block_delta", "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": " \"Paris\"}"}}),
                    ));
                    out.push(ev(
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": 1}),
                    ));
                } else {
                    out.push(ev(
                        Some("content_block_start"),
                        json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
                    ));
                    out.push(ev(Some("ping"), json!({"type": "ping"})));
                    for t in ["Hello ", "there"] {
                        out.push(ev(
                            Some("content_block_delta"),
                            json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": t}}),
                        ));
                    }
                    out.push(ev(
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": 0}),
                    ));
                }
                out.push(ev(Some("message_delta"), json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 10}})));
                out.push(ev(Some("message_stop"), json!({"type": "message_stop"})));
                out
            }
            Gemini => {
                let usage = json!({"promptTokenCount": 19, "cachedContentTokenCount": 4, "candidatesTokenCount": 10,
                    "totalTokenCount": 29});
                let partial = json!({"promptTokenCount": 19, "totalTokenCount": 19});
                let chunk = |parts: Value, finish: Option<&str>, usage: &Value| {
                    let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
                    if let Some(f) = finish {
                        c["finishReason"] = json!(f);
                    }
                    ev(
                        None,
                        json!({"candidates": [c], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash",
                        "responseId": "resp-1"}),
                    )
                };
                if tool {
                    vec![chunk(
                        json!([{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]),
                        Some(stop),
                        &usage,
                    )]
                } else {
                    vec![
                        chunk(json!([{"text": "Hello "}]), None, &partial),
                        chunk(json!([{"text": "there"}]), Some(stop), &usage),
                    ]
                }
            }
        }
    }

    /// What a client makes of a stream in its format.
    #[derive(Debug, Default, PartialEq)]
    struct Collected {
        text: String,
        /// (id, name, arguments) per call.
        tools: Vec<(String, String, Value)>,
        stop: String,
        input: u64,
        cached: u64,
        output: u64,
        ended: bool,
    }

    fn collect(kind: ProviderKind, events: &[Event]) -> Collected {
        let mut c = Collected::default();
        let mut args: Vec<String> = Vec::new();
        for e in events {
            assert!(!c.ended, "an event after the end: {}", e.raw);
            assert!(e.raw.ends_with("\n\n"), "{:?}", e.raw);
            if e.data == "[DONE]" {
                c.ended = true;
                continue;
            }
            let v: Value = serde_json::from_str(&e.data).unwrap();
            let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            match kind {
                Openai => {
                    assert_eq!(v["object"], "chat.completion.chunk");
                    if let Some(t) = v
                        .pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                    {
                        c.text.push_str(t);
                    }
                    for call in v
                        .pointer("/choices/0/delta/tool_calls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let i = call["index"].as_u64().unwrap() as usize;
                        if i == c.tools.len() {
                            c.tools.push((
                                call["id"].as_str().unwrap().into(),
                                call["function"]["name"].as_str().unwrap().into(),
                                Value::Null,
                            ));
                            args.push(String::new());
                        }
                        args[i].push_str(
                            call.pointer("/function/arguments")
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        );
                    }
                    if let Some(f) = v
                        .pointer("/choices/0/finish_reason")
                        .and_then(Value::as_str)
                    {
                        c.stop = f.into();
                    }
                    if v["usage"].is_object() {
                        assert_eq!(v["choices"], json!([]));
                        (c.input, c.cached, c.output) = (
                            n("/usage/prompt_tokens"),
                            n("/usage/prompt_tokens_details/cached_tokens"),
                            n("/usage/completion_tokens"),
                        );
                    }
                }
                Anthropic => {
                    assert_eq!(e.event.as_deref(), v["type"].as_str());
                    match v["type"].as_str().unwrap() {
                        "message_start" => assert_eq!(v["message"]["role"], "assistant"),
                        "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                            c.tools.push((
                                v["content_block"]["id"].as_str().unwrap().into(),
                                v["content_block"]["name"].as_str().unwrap().into(),
                                Value::Null,
                            ));
                            args.push(String::new());
                        }
                        "content_block_delta" => match v["delta"]["type"].as_str().unwrap() {
                            "text_delta" => c.text.push_str(v["delta"]["text"].as_str().unwrap()),
                            _ => args
                                .last_mut()
                                .unwrap()
                                .push_str(v["delta"]["partial_json"].as_str().unwrap()),
                        },
                        "message_delta" => {
                            c.stop = match v["delta"]["stop_reason"].as_str().unwrap() {
                                "end_turn" => "stop",
                                "max_tokens" => "length",
                                "tool_use" => "tool_calls",
                                other => other,
                            }
                            .into();
                            c.cached = n("/usage/cache_read_input_tokens");
                            c.input = n("/usage/input_tokens") + c.cached;
                            c.output = n("/usage/output_tokens");
                        }
                        "message_stop" => c.ended = true,
                        _ => {}
                    }
                }
                Gemini => {
                    for p in v
                        .pointer("/candidates/0/content/parts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(t) = p["text"].as_str() {
                            c.text.push_str(t);
                        }
                        if let Some(f) = p.get("functionCall") {
                            c.tools.push((
                                String::new(),
                                f["name"].as_str().unwrap().into(),
                                f["args"].clone(),
                            ));
                            args.push(f["args"].to_string());
                        }
                    }
                    if let Some(f) = v
                        .pointer("/candidates/0/finishReason")
                        .and_then(Value::as_str)
                    {
                        c.stop = match f {
                            "MAX_TOKENS" => "length",
                            _ if !c.tools.is_empty() => "tool_calls",
                            _ => "stop",
                        }
                        .into();
                        c.ended = true;
                    }
                    if v["usageMetadata"].is_object() {
                        (c.input, c.cached, c.output) = (
                            n("/usageMetadata/promptTokenCount"),
                            n("/usageMetadata/cachedContentTokenCount"),
                            n("/usageMetadata/candidatesTokenCount"),
                        );
                    }
                }
            }
        }
        for (t, a) in c.tools.iter_mut().zip(&args) {
            t.2 = serde_json::from_str(a).unwrap_or_else(|e| panic!("arguments `{a}`: {e}"));
            if kind == Gemini {
                t.0 = String::new();
            }
        }
        c
    }

    fn translate(
        from: ProviderKind,
        to: ProviderKind,
        events: &[Event],
        include_usage: bool,
    ) -> Vec<Event> {
        let mut t = StreamTranslator::new(from, to, "alias", include_usage);
        let mut out: Vec<Event> = events.iter().flat_map(|e| t.push(e)).collect();
        out.extend(t.finish());
        // A second finish adds nothing.
        assert!(t.finish().is_empty());
        out
    }

    /// Every direction, text and tool calls, every stop reason: the client's view of the translated stream is
    /// the upstream's answer (ids kept where the client format has them).
    #[test]
    fn every_direction_keeps_text_tools_stop_reasons_and_usage() {
        let cases = |k: ProviderKind| -> Vec<(bool, &'static str, &'static str)> {
            match k {
                Openai => vec![
                    (false, "stop", "stop"),
                    (false, "length", "length"),
                    (true, "tool_calls", "tool_calls"),
                ],
                Anthropic => vec![
                    (false, "end_turn", "stop"),
                    (false, "stop_sequence", "stop"),
                    (false, "max_tokens", "length"),
                    (true, "tool_use", "tool_calls"),
                ],
                // Gemini says STOP after a function call too.
                Gemini => vec![
                    (false, "STOP", "stop"),
                    (false, "MAX_TOKENS", "length"),
                    (true, "STOP", "tool_calls"),
                ],
            }
        };
        for from in [Openai, Anthropic, Gemini] {
            for to in [Openai, Anthropic, Gemini] {
                if from == to {
                    continue;
                }
                {
                    for (tool, stop, neutral) in cases(from) {
                        let events = recorded(from, tool, stop);
                        let got = collect(to, &translate(from, to, &events, true));
                        let case = format!("{from:?} → {to:?}, tool {tool}, stop {stop}");
                        assert!(got.ended, "{case}: {got:?}");
                        let text = match (tool, from) {
                            (false, _) => "Hello there",
                            (true, Anthropic) => "Checking.",
                            (true, _) => "",
                        };
                        assert_eq!(got.text, text, "{case}");
                        assert_eq!(got.stop, neutral, "{case}");
                        assert_eq!((got.input, got.cached, got.output), (19, 4, 10), "{case}");
                        if tool {
                            assert_eq!(got.tools.len(), 1, "{case}: {got:?}");
                            assert_eq!(got.tools[0].1, "get_weather", "{case}");
                            assert_eq!(got.tools[0].2, json!({"location": "Paris"}), "{case}");
                            let id = match (from, to) {
                                (_, Gemini) => "",
                                (Openai, _) => "call_abc",
                                (Anthropic, _) => "toolu_1",
                                (Gemini, _) => "call_1",
                            };
                            assert_eq!(got.tools[0].0, id, "{case}");
                        } else {
                            assert!(got.tools.is_empty(), "{case}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_openai_client_gets_chunks_in_order_and_usage_only_when_asked() {
        let events = recorded(Anthropic, false, "end_turn");
        let out = translate(Anthropic, Openai, &events, false);
        let data: Vec<&str> = out.iter().map(|e| e.data.as_str()).collect();
        assert!(data[0].contains(r#""role":"assistant""#), "{data:?}");
        assert_eq!(data.last(), Some(&"[DONE]"));
        assert!(!data.iter().any(|d| d.contains("\"usage\"")), "{data:?}");
        // Nothing is held back: each text delta goes out as it arrives.
        let mut t = StreamTranslator::new(Anthropic, Openai, "alias", false);
        let first = t.push(&events[0]);
        assert_eq!(first.len(), 1, "the role chunk on `message_start`");
        assert!(first[0].data.contains(r#""role":"assistant""#));
        assert!(t.push(&events[1]).is_empty(), "an empty text block");
        assert!(t.push(&events[2]).is_empty(), "ping");
        let hello = t.push(&events[3]);
        assert_eq!(hello.len(), 1);
        assert!(
            hello[0].data.contains("\"content\":\"Hello \""),
            "{}",
            hello[0].data
        );
        assert!(hello[0].data.contains("\"model\":\"alias\""));
    }

    #[test]
    fn an_anthropic_client_gets_blocks_opened_and_closed() {
        let out = translate(
            Openai,
            Anthropic,
            &recorded(Openai, true, "tool_calls"),
            false,
        );
        let names: Vec<&str> = out.iter().map(|e| e.event.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(
            out[0].raw.starts_with("event: message_start\ndata: {"),
            "{}",
            out[0].raw
        );
        assert!(
            out[0].data.contains("\"id\":\"msg_chatcmpl-123\""),
            "{}",
            out[0].data
        );
    }

    #[test]
    fn a_stream_cut_before_its_end_is_not_closed() {
        for from in [Openai, Anthropic, Gemini] {
            for to in [Openai, Anthropic, Gemini] {
                if from == to {
                    continue;
                }
                let events = recorded(from, false, if from == Gemini { "STOP" } else { "stop" });
                let mut t = StreamTranslator::new(from, to, "alias", true);
                // Everything but the upstream's last event, and no `finish`: the client never sees an end.
                let out: Vec<Event> = events[..events.len() - 1]
                    .iter()
                    .flat_map(|e| t.push(e))
                    .collect();
                let got = collect(to, &out);
                assert!(!got.ended, "{from:?} → {to:?}: {got:?}");
                assert!(got.text.starts_with("Hello"), "{from:?} → {to:?}: {got:?}");
            }
        }
    }

    #[test]
    fn upstream_errors_become_client_errors() {
        let err = Event::new(Some("error"), json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string());
        let mut t = StreamTranslator::new(Anthropic, Openai, "alias", false);
        let out = t.push(&err);
        assert_eq!(out.len(), 1);
        let v: Value = serde_json::from_str(&out[0].data).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        let mut t = StreamTranslator::new(Openai, Gemini, "alias", false);
        let out = t.push(&Event::new(
            None,
            json!({"error": {"message": "boom", "type": "server_error"}}).to_string(),
        ));
        let v: Value = serde_json::from_str(&out[0].data).unwrap();
        assert_eq!(
            (
                v["error"]["message"].as_str(),
                v["error"]["status"].as_str()
            ),
            (Some("boom"), Some("server_error"))
        );
    }
}
