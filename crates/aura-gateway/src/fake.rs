//! A fake upstream speaking the real wire formats of OpenAI (chat completions, embeddings, responses), Anthropic (messages,
//! count_tokens) and Gemini (generateContent, streamGenerateContent), streaming included, built from the
//! providers' documented examples. Behaviour is scripted per upstream model (429 with `Retry-After`, 500,
//! hanging, cut streams, tool calls, slow streams); it serves tests and `aura bench gateway`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Usage the fake reports for OpenAI chat: prompt, completion.
pub const OPENAI_USAGE: (u64, u64) = (19, 10);
/// Usage the fake reports for Anthropic messages: input, output.
pub const ANTHROPIC_USAGE: (u64, u64) = (25, 15);
/// Usage the fake reports for Gemini: prompt, candidates.
pub const GEMINI_USAGE: (u64, u64) = (8, 10);
/// Usage the fake reports for the OpenAI Responses API: input, output.
pub const RESPONSES_USAGE: (u64, u64) = (36, 12);
/// Prompt tokens the fake reports for embeddings.
pub const EMBEDDING_TOKENS: u64 = 8;
/// The reply text.
pub const REPLY: &str = "Hello! How can I assist you today?";

/// What the fake does with the next request for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// A normal answer (streamed if asked).
    Ok,
    /// A tool call instead of text.
    ToolCall,
    /// An error status with an optional `Retry-After` value.
    Status(u16, Option<String>),
    /// Never answers (until the fake stops).
    Hang,
    /// Streams this many events, then drops the connection.
    Cut(usize),
    /// Streams this many text events, one every `interval`.
    Slow(usize, Duration),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The upstream model.
    pub model: String,
    /// The API key presented (any of the three headers).
    pub api_key: Option<String>,
    /// The body.
    pub body: Value,
}

#[derive(Debug, Default)]
struct Shared {
    latency: Duration,
    timer: Option<PreciseTimer>,
    scripts: Mutex<HashMap<String, VecDeque<Behavior>>>,
    seen: Mutex<VecDeque<Seen>>,
    requests: AtomicU64,
    cancel: CancellationToken,
    fast: Mutex<std::collections::HashSet<String>>,
}

/// A running fake upstream. Stops when dropped.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: TaskTracker,
}

impl FakeUpstream {
    /// Starts on `127.0.0.1:port` (0 for any) answering after `latency`.
    pub async fn start(port: u16, latency: Duration) -> std::io::Result<FakeUpstream> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            latency,
            timer: (!latency.is_zero()).then(PreciseTimer::start).transpose()?,
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/embeddings", post(openai_embeddings))
            .route("/v1/responses", post(openai_responses))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/messages/count_tokens", post(anthropic_count))
            .route("/v1beta/models/{target}", post(gemini))
            .with_state(shared.clone());
        let tasks = TaskTracker::new();
        let cancel = shared.cancel.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
        });
        tasks.close();
        Ok(FakeUpstream {
            addr,
            shared,
            tasks,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues behaviours for the next requests naming `model` (then it answers normally).
    pub fn script(&self, model: &str, behaviors: impl IntoIterator<Item = Behavior>) {
        self.shared
            .scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(model.to_owned())
            .or_default()
            .extend(behaviors);
    }

    /// Answers requests naming `model` without the configured latency (for measuring throughput).
    pub fn fast_model(&self, model: &str) {
        self.shared
            .fast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(model.to_owned());
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The last (up to 256) requests.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(self) {
        self.shared.cancel.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        if let Some(timer) = &self.shared.timer {
            timer.stop();
        }
    }
}

/// Wakes sleepers at their deadline to within the OS timer slack (tens of µs), where `tokio::time::sleep` rounds
/// up to its 1 ms wheel and to the millisecond timeout of the driver's park: a jitter of up to ~2 ms that depends on
/// the phase of each request against the wheel, which would swamp the gateway's added latency that `aura bench
/// gateway` measures against this fake. One thread parks until the earliest deadline.
#[derive(Debug)]
struct PreciseTimer {
    inner: Arc<TimerInner>,
    thread: Thread,
}

#[derive(Debug, Default)]
struct TimerInner {
    due: Mutex<TimerQueue>,
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, tokio::sync::oneshot::Sender<()>>,
    next_id: u64,
}

impl PreciseTimer {
    fn start() -> std::io::Result<PreciseTimer> {
        let inner = Arc::new(TimerInner::default());
        let run = inner.clone();
        let handle = std::thread::Builder::new()
            .name("fake-timer".into())
            .spawn(move || {
                while !run.stop.load(Ordering::Acquire) {
                    let next = {
                        let mut q = run.due.lock().unwrap_or_else(PoisonError::into_inner);
                        let now = Instant::now();
                        while let Some(Reverse((at, id))) = q.heap.peek().copied()
                            && at <= now
                        {
                            q.heap.pop();
                            if let Some(tx) = q.wakers.remove(&id) {
                                let _ = tx.send(());
                            }
                        }
                        q.heap.peek().map(|Reverse((at, _))| *at - now)
                    };
                    match next {
                        Some(wait) => std::thread::park_timeout(wait),
                        None => std::thread::park_timeout(Duration::from_millis(100)),
                    }
                }
            })?;
        Ok(PreciseTimer {
            inner,
            thread: handle.thread().clone(),
        })
    }

    async fn sleep(&self, d: Duration) {
        let at = Instant::now() + d;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let earliest = {
            let mut q = self
                .inner
                .due
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let id = q.next_id;
            q.next_id += 1;
            q.wakers.insert(id, tx);
            q.heap.push(Reverse((at, id)));
            q.heap
                .peek()
                .is_some_and(|Reverse((_, first))| *first == id)
        };
        if earliest {
            self.thread.unpark();
        }
        let _ = rx.await;
    }

    fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

impl Shared {
    async fn next(&self, path: &str, model: &str, headers: &HeaderMap, body: &Value) -> Behavior {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let api_key = ["x-api-key", "x-goog-api-key", "authorization"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
            .map(|v| v.trim_start_matches("Bearer ").to_owned());
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.len() >= 256 {
                seen.pop_front();
            }
            seen.push_back(Seen {
                path: path.to_owned(),
                model: model.to_owned(),
                api_key,
                body: body.clone(),
            });
        }
        let behavior = self
            .scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(model)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Behavior::Ok);
        let fast = self
            .fast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(model);
        if !self.latency.is_zero() && !fast {
            // Simulated provider latency.
            match &self.timer {
                Some(timer) => timer.sleep(self.latency).await,
                None => tokio::time::sleep(self.latency).await,
            }
        }
        if behavior == Behavior::Hang {
            self.cancel.cancelled().await;
        }
        behavior
    }
}

fn status_response(code: u16, retry_after: Option<&str>, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if let Some(v) = retry_after.and_then(|v| v.parse().ok()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn sse(events: Vec<String>, behavior: &Behavior) -> Response {
    let (limit, interval) = match behavior {
        Behavior::Cut(n) => (Some(*n), Duration::ZERO),
        Behavior::Slow(_, every) => (None, *every),
        _ => (None, Duration::ZERO),
    };
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let events = events.clone();
        async move {
            if limit.is_some_and(|n| i == n) {
                // Let what was sent reach the client first (else the connection is refused as a whole).
                tokio::time::sleep(Duration::from_millis(50)).await;
                let cut: Result<Bytes, std::io::Error> =
                    Err(std::io::Error::other("stream cut by the fake upstream"));
                return Some((cut, usize::MAX));
            }
            let event = events.get(i)?;
            if !interval.is_zero() && i > 0 {
                tokio::time::sleep(interval).await;
            }
            Some((Ok(Bytes::from(event.clone())), i + 1))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn words(behavior: &Behavior) -> Vec<String> {
    let base: Vec<String> = REPLY.split_inclusive(' ').map(str::to_owned).collect();
    match behavior {
        Behavior::Slow(n, _) => (0..*n).map(|i| base[i % base.len()].clone()).collect(),
        _ => base,
    }
}

fn model_of(body: &Value) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

async fn openai_chat(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let model = model_of(&body);
    let behavior = s
        .next("/v1/chat/completions", &model, &headers, &body)
        .await;
    if let Behavior::Status(code, after) = &behavior {
        return status_response(
            *code,
            after.as_deref(),
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": if *code == 429 { "rate_limit_exceeded" } else { "server_error" }}}),
        );
    }
    let (p, c) = OPENAI_USAGE;
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    let tool = behavior == Behavior::ToolCall;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let message = if tool {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc123", "type": "function", "function": {"name": "get_current_weather", "arguments": "{\"location\": \"Boston, MA\"}"}}], "refusal": null, "annotations": []})
        } else {
            json!({"role": "assistant", "content": REPLY, "refusal": null, "annotations": []})
        };
        return axum::Json(json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": 1741569952,
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": null,
            "finish_reason": if tool { "tool_calls" } else { "stop" }}], "usage": usage, "service_tier": "default",
            "system_fingerprint": "fp_44709d6fcb"
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": model,
                "system_fingerprint": "fp_44709d6fcb", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    if tool {
        events.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_abc123", "type": "function", "function": {"name": "get_current_weather", "arguments": ""}}]}), Value::Null));
        events.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\": \"Boston, MA\"}"}}]}), Value::Null));
        events.push(chunk(json!({}), json!("tool_calls")));
    } else {
        for w in words(&behavior) {
            events.push(chunk(json!({"content": w}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
    }
    if body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
    {
        events.push(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": model,
                "system_fingerprint": "fp_44709d6fcb", "choices": [], "usage": usage})
        ));
    }
    events.push("data: [DONE]\n\n".to_owned());
    sse(events, &behavior)
}

async fn openai_embeddings(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let model = model_of(&body);
    let behavior = s.next("/v1/embeddings", &model, &headers, &body).await;
    if let Behavior::Status(code, after) = &behavior {
        return status_response(
            *code,
            after.as_deref(),
            json!({"error": {"message": "upstream error", "type": "server_error"}}),
        );
    }
    let inputs = match body.get("input") {
        Some(Value::Array(a)) => a.len().max(1),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0023064255, -0.009327292, -0.0028842222]}))
        .collect();
    axum::Json(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS}}))
    .into_response()
}

/// The Responses API (`POST /v1/responses`), shaped like the documented examples: a `response` object with
/// `output` items and `usage`; streamed as typed events from `response.created` to `response.completed`.
async fn openai_responses(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let model = model_of(&body);
    let behavior = s.next("/v1/responses", &model, &headers, &body).await;
    if let Behavior::Status(code, after) = &behavior {
        return status_response(
            *code,
            after.as_deref(),
            json!({"error": {"message": "upstream error", "type": "server_error", "param": null, "code": "server_error"}}),
        );
    }
    let (input, output) = RESPONSES_USAGE;
    let tool = behavior == Behavior::ToolCall;
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output});
    let item = if tool {
        json!({"type": "function_call", "id": "fc_67ca09c6bedc8190a7abfec07b1a1332", "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k",
            "name": "get_current_weather", "arguments": "{\"location\":\"Boston, MA\"}", "status": "completed"})
    } else {
        json!({"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": REPLY, "annotations": []}]})
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_67ccd2bed1ec8190b14f964abc054267", "object": "response", "created_at": 1741476542,
            "status": status, "error": null, "incomplete_details": null, "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null), "model": model,
            "output": output, "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "truncation": "disabled", "usage": usage, "user": null, "metadata": {}})
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        return axum::Json(response("completed", json!([item]), usage)).into_response();
    }
    let mut seq = 0u64;
    let mut ev = |mut data: Value| {
        let name = data["type"].as_str().unwrap_or("").to_owned();
        data["sequence_number"] = json!(seq);
        seq += 1;
        format!("event: {name}\ndata: {data}\n\n")
    };
    let mut events = vec![
        ev(
            json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
        ),
        ev(
            json!({"type": "response.in_progress", "response": response("in_progress", json!([]), Value::Null)}),
        ),
    ];
    let item_id = item["id"].clone();
    if tool {
        let mut added = item.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        events.push(ev(
            json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
        ));
        events.push(ev(json!({"type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": 0, "delta": item["arguments"]})));
        events.push(ev(json!({"type": "response.function_call_arguments.done", "item_id": item_id, "output_index": 0, "arguments": item["arguments"]})));
    } else {
        events.push(ev(json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}})));
        events.push(ev(json!({"type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}})));
        for w in words(&behavior) {
            events.push(ev(json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": w, "logprobs": []})));
        }
        events.push(ev(json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0, "text": REPLY, "logprobs": []})));
        events.push(ev(json!({"type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": REPLY, "annotations": []}})));
    }
    events.push(ev(
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    ));
    events.push(ev(json!({"type": "response.completed", "response": response("completed", json!([item]), usage)})));
    sse(events, &behavior)
}

async fn anthropic_count(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let model = model_of(&body);
    s.next("/v1/messages/count_tokens", &model, &headers, &body)
        .await;
    axum::Json(json!({"input_tokens": ANTHROPIC_USAGE.0})).into_response()
}

async fn anthropic_messages(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let model = model_of(&body);
    let behavior = s.next("/v1/messages", &model, &headers, &body).await;
    if let Behavior::Status(code, after) = &behavior {
        let kind = match code {
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        return status_response(
            *code,
            after.as_deref(),
            json!({"type": "error", "error": {"type": kind, "message": "upstream error"}}),
        );
    }
    let (input, output) = ANTHROPIC_USAGE;
    let tool = behavior == Behavior::ToolCall;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let content = if tool {
            json!([{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA"}}])
        } else {
            json!([{"type": "text", "text": REPLY}])
        };
        return axum::Json(json!({
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": if tool { "tool_use" } else { "end_turn" }, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        }))
        .into_response();
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1}}}),
    )];
    if tool {
        events.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}})));
        events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"location\": \"San Francisco, CA\"}"}})));
    } else {
        events.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        events.push(ev("ping", json!({"type": "ping"})));
        for w in words(&behavior) {
            events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
        }
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": if tool { "tool_use" } else { "end_turn" }, "stop_sequence": null}, "usage": {"output_tokens": output}})));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    sse(events, &behavior)
}

async fn gemini(
    State(s): State<Arc<Shared>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let Some((model, method)) = target.split_once(':') else {
        return status_response(
            404,
            None,
            json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}),
        );
    };
    let behavior = s.next("/v1beta/models", model, &headers, &body).await;
    if let Behavior::Status(code, after) = &behavior {
        return status_response(
            *code,
            after.as_deref(),
            json!({"error": {"code": code, "message": "upstream error", "status": if *code == 429 { "RESOURCE_EXHAUSTED" } else { "INTERNAL" }}}),
        );
    }
    let (p, c) = GEMINI_USAGE;
    let usage = json!({"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c});
    let part = if behavior == Behavior::ToolCall {
        json!({"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}})
    } else {
        json!({"text": REPLY})
    };
    if method == "generateContent" {
        return axum::Json(json!({"candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model, "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"}))
        .into_response();
    }
    if behavior == Behavior::ToolCall {
        // A function call arrives whole, in one chunk.
        let chunk = json!({"candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model});
        return sse(vec![format!("data: {chunk}\r\n\r\n")], &behavior);
    }
    let ws = words(&behavior);
    let n = ws.len();
    let events: Vec<String> = ws
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let mut cand = json!({"content": {"parts": [{"text": w}], "role": "model"}, "index": 0});
            if i + 1 == n {
                cand["finishReason"] = json!("STOP");
            }
            let partial = json!({"promptTokenCount": p, "totalTokenCount": p});
            format!(
                "data: {}\r\n\r\n",
                json!({"candidates": [cand], "usageMetadata": if i + 1 == n { usage.clone() } else { partial }, "modelVersion": model})
            )
        })
        .collect();
    sse(events, &behavior)
}
