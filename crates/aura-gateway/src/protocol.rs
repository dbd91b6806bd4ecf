//! The wire formats: what a request asks for (model, stream, max tokens, prompt size), where it goes upstream,
//! and how usage is read from a response or a stream of events — or counted when the provider leaves it out.

use serde_json::Value;

use crate::ProviderKind;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A chat completion (OpenAI chat, Anthropic messages, Gemini generateContent).
    Chat,
    /// Embeddings (OpenAI).
    Embeddings,
    /// A model response (OpenAI Responses API, `POST /v1/responses`).
    Responses,
}

/// Tokens used by one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens (reasoning included).
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// Whether the numbers were counted by Aura because the provider did not report them.
    pub counted: bool,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// What the gateway needs to know about an inbound request before deciding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// The requested model.
    pub model: String,
    /// Whether the response is streamed.
    pub stream: bool,
    /// The output cap the request sets, if any.
    pub max_tokens: Option<u64>,
    /// Estimated prompt tokens (an upper-leaning count of the text).
    pub prompt_tokens: u64,
    /// Whether the client asked for usage in the stream (OpenAI `stream_options.include_usage`).
    pub wants_stream_usage: bool,
}

/// Why a request body is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not what the endpoint expects.
    #[error("{0}")]
    Invalid(String),
}

/// Reads the facts of a request `body` in `protocol`'s format; `path_model` is the model from the URL (Gemini).
pub fn facts(
    protocol: ProviderKind,
    op: Op,
    body: &Value,
    path_model: Option<&str>,
    stream_from_path: bool,
) -> Result<RequestFacts, RequestError> {
    if !body.is_object() {
        return Err(RequestError::Invalid(
            "the body must be a JSON object".into(),
        ));
    }
    let model = match path_model {
        Some(m) => m.to_owned(),
        None => body
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| RequestError::Invalid("`model` is required".into()))?
            .to_owned(),
    };
    let stream = stream_from_path || body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let max_tokens = match (protocol, op) {
        (_, Op::Embeddings) => Some(0),
        (_, Op::Responses) => body.get("max_output_tokens").and_then(Value::as_u64),
        (ProviderKind::Openai, Op::Chat) => body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64),
        (ProviderKind::Anthropic, Op::Chat) => body.get("max_tokens").and_then(Value::as_u64),
        (ProviderKind::Gemini, Op::Chat) => body
            .pointer("/generationConfig/maxOutputTokens")
            .and_then(Value::as_u64),
    };
    let prompt_field = match (protocol, op) {
        (_, Op::Embeddings | Op::Responses) => body.get("input"),
        (ProviderKind::Openai, Op::Chat) => body.get("messages"),
        (ProviderKind::Anthropic, Op::Chat) => body.get("messages"),
        (ProviderKind::Gemini, Op::Chat) => body.get("contents"),
    };
    if prompt_field.is_none() {
        return Err(RequestError::Invalid(match (protocol, op) {
            (_, Op::Embeddings | Op::Responses) => "`input` is required".into(),
            (ProviderKind::Gemini, _) => "`contents` is required".into(),
            _ => "`messages` is required".into(),
        }));
    }
    let mut chars = 0usize;
    let mut parts = 0u64;
    count_text(body, &mut chars, &mut parts);
    let wants_stream_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(RequestFacts {
        model,
        stream,
        max_tokens,
        prompt_tokens: estimate_tokens(chars) + 4 * parts,
        wants_stream_usage,
    })
}

/// Tokens in `chars` characters of text: one per three characters, rounded up (most tokenizers average about
/// four characters per token in English, so this leans high, which is the safe side for a reservation).
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(3)
}

fn count_text(v: &Value, chars: &mut usize, parts: &mut u64) {
    match v {
        Value::String(s) => {
            *chars += s.chars().count();
            *parts += 1;
        }
        Value::Array(a) => a.iter().for_each(|x| count_text(x, chars, parts)),
        Value::Object(o) => o.values().for_each(|x| count_text(x, chars, parts)),
        _ => {}
    }
}

/// The path (and query) of `op` upstream for `model`.
pub fn upstream_path(protocol: ProviderKind, op: Op, model: &str, stream: bool) -> String {
    match (protocol, op) {
        (ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Gemini, Op::Embeddings) => {
            "/v1/embeddings".into()
        }
        (_, Op::Responses) => "/v1/responses".into(),
        (ProviderKind::Openai, Op::Chat) => "/v1/chat/completions".into(),
        (ProviderKind::Anthropic, Op::Chat) => "/v1/messages".into(),
        (ProviderKind::Gemini, Op::Chat) if stream => {
            format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
        }
        (ProviderKind::Gemini, Op::Chat) => format!("/v1beta/models/{model}:generateContent"),
    }
}

/// The body to send upstream: the model replaced by the deployment's, and for OpenAI chat streams usage
/// requested (a Responses stream reports usage in `response.completed` anyway).
pub fn upstream_body(
    protocol: ProviderKind,
    op: Op,
    body: &Value,
    model: &str,
    stream: bool,
) -> Value {
    let mut out = body.clone();
    if let Value::Object(map) = &mut out {
        match protocol {
            ProviderKind::Gemini => {
                map.remove("model");
            }
            ProviderKind::Openai => {
                map.insert("model".into(), Value::String(model.to_owned()));
                if stream && op == Op::Chat {
                    let opts = map
                        .entry("stream_options")
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Value::Object(o) = opts {
                        o.insert("include_usage".into(), Value::Bool(true));
                    }
                }
            }
            ProviderKind::Anthropic => {
                map.insert("model".into(), Value::String(model.to_owned()));
            }
        }
    }
    out
}

/// Usage reported in a complete (non-streamed) response body.
pub fn response_usage(protocol: ProviderKind, body: &Value) -> Option<Usage> {
    let n = |p: &str| body.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    match protocol {
        // Chat completions say `prompt_tokens`; the Responses API says `input_tokens`.
        ProviderKind::Openai => body.get("usage").filter(|u| u.is_object()).map(|u| {
            let m = |a: &str, b: &str| {
                u.pointer(a)
                    .or_else(|| u.pointer(b))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            Usage {
                input_tokens: m("/prompt_tokens", "/input_tokens"),
                output_tokens: m("/completion_tokens", "/output_tokens"),
                cached_input_tokens: m(
                    "/prompt_tokens_details/cached_tokens",
                    "/input_tokens_details/cached_tokens",
                ),
                cache_write_tokens: 0,
                counted: false,
            }
        }),
        ProviderKind::Anthropic => body.get("usage").filter(|u| u.is_object()).map(|_| {
            let read = n("/usage/cache_read_input_tokens");
            let write = n("/usage/cache_creation_input_tokens");
            Usage {
                input_tokens: n("/usage/input_tokens") + read + write,
                output_tokens: n("/usage/output_tokens"),
                cached_input_tokens: read,
                cache_write_tokens: write,
                counted: false,
            }
        }),
        ProviderKind::Gemini => body
            .get("usageMetadata")
            .filter(|u| u.is_object())
            .map(|_| Usage {
                input_tokens: n("/usageMetadata/promptTokenCount"),
                output_tokens: n("/usageMetadata/candidatesTokenCount")
                    + n("/usageMetadata/thoughtsTokenCount"),
                cached_input_tokens: n("/usageMetadata/cachedContentTokenCount"),
                cache_write_tokens: 0,
                counted: false,
            }),
    }
}

/// Output text of a complete response (for counting when usage is missing).
pub fn response_text_chars(protocol: ProviderKind, body: &Value) -> usize {
    let mut chars = 0;
    let mut parts = 0;
    match protocol {
        ProviderKind::Openai => {
            if let Some(c) = body.get("choices").or_else(|| body.get("output")) {
                count_text(c, &mut chars, &mut parts);
            }
        }
        ProviderKind::Anthropic => {
            if let Some(c) = body.get("content") {
                count_text(c, &mut chars, &mut parts);
            }
        }
        ProviderKind::Gemini => {
            if let Some(c) = body.get("candidates") {
                count_text(c, &mut chars, &mut parts);
            }
        }
    }
    chars
}

/// Follows a stream event by event: the usage it reports, and the text seen so far for counting when it
/// reports none (a stream cut midway is settled with what was seen).
#[derive(Debug, Clone)]
pub struct StreamMeter {
    protocol: ProviderKind,
    reported: Option<Usage>,
    output_chars: usize,
    /// Whether the stream ended properly (`[DONE]`, `message_stop`, a finish reason).
    pub finished: bool,
}

impl StreamMeter {
    /// A meter for a stream in `protocol`'s format.
    pub fn new(protocol: ProviderKind) -> StreamMeter {
        StreamMeter {
            protocol,
            reported: None,
            output_chars: 0,
            finished: false,
        }
    }

    /// Feeds one event's `data`. Returns whether the event carries only usage (OpenAI's last chunk with empty
    /// `choices`), so the caller can drop it when the client did not ask for it.
    pub fn observe(&mut self, data: &str) -> bool {
        if data.trim() == "[DONE]" {
            self.finished = true;
            return false;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return false;
        };
        let n = |p: &str| v.pointer(p).and_then(Value::as_u64);
        match self.protocol {
            // The Responses API: typed events; text in `response.output_text.delta`, usage in the final
            // `response.completed` (or `response.incomplete` / `response.failed`).
            ProviderKind::Openai if v.get("type").is_some() => {
                match v.get("type").and_then(Value::as_str) {
                    Some("response.output_text.delta" | "response.refusal.delta") => {
                        let d = v.get("delta").and_then(Value::as_str).unwrap_or("");
                        self.output_chars += d.chars().count();
                    }
                    Some("response.function_call_arguments.delta") => {
                        let d = v.get("delta").and_then(Value::as_str).unwrap_or("");
                        self.output_chars += d.chars().count();
                    }
                    Some("response.completed" | "response.incomplete" | "response.failed") => {
                        self.finished = true;
                        if let Some(r) = v.get("response")
                            && let Some(u) = response_usage(ProviderKind::Openai, r)
                        {
                            self.reported = Some(u);
                        }
                    }
                    _ => {}
                }
            }
            ProviderKind::Openai => {
                let mut chars = 0;
                let mut parts = 0;
                if let Some(choices) = v.get("choices").and_then(Value::as_array) {
                    for c in choices {
                        if let Some(d) = c.get("delta") {
                            count_text(d, &mut chars, &mut parts);
                        }
                        if c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                            self.finished = true;
                        }
                    }
                }
                self.output_chars += chars;
                if let Some(u) = response_usage(ProviderKind::Openai, &v) {
                    self.reported = Some(u);
                    return v
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty);
                }
            }
            ProviderKind::Anthropic => match v.get("type").and_then(Value::as_str) {
                Some("message_start") => {
                    let read = n("/message/usage/cache_read_input_tokens").unwrap_or(0);
                    let write = n("/message/usage/cache_creation_input_tokens").unwrap_or(0);
                    let u = self.reported.get_or_insert_with(Usage::default);
                    u.input_tokens = n("/message/usage/input_tokens").unwrap_or(0) + read + write;
                    u.cached_input_tokens = read;
                    u.cache_write_tokens = write;
                    u.output_tokens = n("/message/usage/output_tokens").unwrap_or(0);
                }
                Some("content_block_delta") => {
                    let mut parts = 0;
                    if let Some(d) = v.get("delta") {
                        let mut chars = 0;
                        count_text(d, &mut chars, &mut parts);
                        // `type` values ("text_delta") are not output text.
                        let kind = d.get("type").and_then(Value::as_str).map_or(0, str::len);
                        self.output_chars += chars.saturating_sub(kind);
                    }
                }
                Some("message_delta") => {
                    if let Some(out) = n("/usage/output_tokens") {
                        let u = self.reported.get_or_insert_with(Usage::default);
                        u.output_tokens = out;
                        if let Some(i) = n("/usage/input_tokens").filter(|i| *i > 0) {
                            u.input_tokens = i;
                        }
                    }
                }
                Some("message_stop") => self.finished = true,
                _ => {}
            },
            ProviderKind::Gemini => {
                if let Some(c) = v.get("candidates") {
                    let mut chars = 0;
                    let mut parts = 0;
                    count_text(c, &mut chars, &mut parts);
                    let roles = v
                        .pointer("/candidates/0/content/role")
                        .and_then(Value::as_str)
                        .map_or(0, str::len);
                    let reason = v
                        .pointer("/candidates/0/finishReason")
                        .and_then(Value::as_str);
                    self.output_chars += chars.saturating_sub(roles + reason.map_or(0, str::len));
                    if reason.is_some() {
                        self.finished = true;
                    }
                }
                if let Some(u) = response_usage(ProviderKind::Gemini, &v) {
                    self.reported = Some(u);
                }
            }
        }
        false
    }

    /// The usage to settle with: as reported, else counted (`prompt_tokens` estimated from the request).
    pub fn usage(&self, prompt_tokens: u64) -> Usage {
        let counted_output = estimate_tokens(self.output_chars);
        match self.reported {
            Some(u) if self.finished || u.output_tokens >= counted_output => u,
            Some(u) => Usage {
                output_tokens: counted_output,
                counted: true,
                ..u
            },
            None => Usage {
                input_tokens: prompt_tokens,
                output_tokens: counted_output,
                counted: true,
                ..Usage::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn facts_per_protocol() {
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 50, "stream": true});
        let f = facts(ProviderKind::Openai, Op::Chat, &body, None, false).unwrap();
        assert_eq!(
            (f.model.as_str(), f.stream, f.max_tokens),
            ("gpt-4o-mini", true, Some(50))
        );
        assert!(f.prompt_tokens >= 5);
        let g = json!({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 7}});
        let f = facts(
            ProviderKind::Gemini,
            Op::Chat,
            &g,
            Some("gemini-2.0-flash"),
            true,
        )
        .unwrap();
        assert_eq!(
            (f.model.as_str(), f.stream, f.max_tokens),
            ("gemini-2.0-flash", true, Some(7))
        );
        let bad = json!({"model": "x"});
        assert!(facts(ProviderKind::Anthropic, Op::Chat, &bad, None, false).is_err());
    }

    #[test]
    fn usage_from_responses() {
        let o = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}});
        let u = response_usage(ProviderKind::Openai, &o).unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_input_tokens),
            (10, 5, 4)
        );
        let a = json!({"usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 3}});
        let u = response_usage(ProviderKind::Anthropic, &a).unwrap();
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens),
            (15, 2, 3)
        );
        let g = json!({"usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 1}});
        assert_eq!(
            response_usage(ProviderKind::Gemini, &g)
                .unwrap()
                .output_tokens,
            7
        );
    }

    #[test]
    fn responses_api_usage_and_stream() {
        let body = json!({"model": "gpt-4.1", "input": "Tell me a joke", "instructions": "Be brief", "max_output_tokens": 40});
        let f = facts(ProviderKind::Openai, Op::Responses, &body, None, false).unwrap();
        assert_eq!((f.max_tokens, f.stream), (Some(40), false));
        assert!(
            facts(
                ProviderKind::Openai,
                Op::Responses,
                &json!({"model": "m"}),
                None,
                false
            )
            .is_err()
        );
        let up = upstream_body(
            ProviderKind::Openai,
            Op::Responses,
            &json!({"model": "a", "input": "x", "stream": true}),
            "b",
            true,
        );
        assert_eq!(up["model"], "b");
        assert!(up.get("stream_options").is_none(), "{up}");
        assert_eq!(
            upstream_path(ProviderKind::Openai, Op::Responses, "b", true),
            "/v1/responses"
        );
        let r = json!({"object": "response", "output": [], "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 6}, "output_tokens": 87}});
        let u = response_usage(ProviderKind::Openai, &r).unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_input_tokens),
            (36, 87, 6)
        );
        let mut m = StreamMeter::new(ProviderKind::Openai);
        assert!(!m.observe(r#"{"type":"response.created","sequence_number":0,"response":{"status":"in_progress","usage":null}}"#));
        m.observe(
            r#"{"type":"response.output_text.delta","sequence_number":4,"delta":"Hello there"}"#,
        );
        let cut = m.usage(5);
        assert!(cut.counted && !m.finished);
        assert_eq!(cut.output_tokens, estimate_tokens(11));
        m.observe(r#"{"type":"response.completed","sequence_number":9,"response":{"status":"completed","usage":{"input_tokens":12,"output_tokens":3}}}"#);
        let u = m.usage(5);
        assert!(m.finished && !u.counted);
        assert_eq!((u.input_tokens, u.output_tokens), (12, 3));
    }

    #[test]
    fn a_cut_stream_is_counted() {
        let mut m = StreamMeter::new(ProviderKind::Openai);
        m.observe(r#"{"choices":[{"index":0,"delta":{"content":"Hello world, how are"}}]}"#);
        let u = m.usage(12);
        assert!(u.counted);
        assert_eq!(u.input_tokens, 12);
        assert_eq!(
            u.output_tokens,
            estimate_tokens("Hello world, how are".len())
        );
        let mut a = StreamMeter::new(ProviderKind::Anthropic);
        a.observe(
            r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        );
        a.observe(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi there"}}"#);
        a.observe(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#);
        a.observe(r#"{"type":"message_stop"}"#);
        let u = a.usage(0);
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.counted),
            (25, 15, false)
        );
    }
}
