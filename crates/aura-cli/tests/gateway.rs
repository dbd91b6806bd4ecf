//! Real-binary tests of the LLM gateway: `aura up` in front of the fake upstream (every provider's wire format),
//! driven by the official `openai`, `anthropic` and `google-genai` Python SDKs and by raw HTTP: plain, streaming,
//! tool calls, 429 with Retry-After, 500, timeouts, cut streams, fallbacks, budgets under 1,000 concurrent calls,
//! a HALT cancelling a stream, usage reports, and the provider key never leaving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use aura_gateway::fake::{self, Behavior, FakeUpstream};
use futures_util::StreamExt;
use serde_json::{Value, json};

const PROVIDER_KEY: &str = "sk-upstream-secret-0123456789abcdef";

/// `bot` may call models; a daily budget; loops relaxed (identical prompts are the norm in these tests).
const POLICY: &str = r#"
agents:
  bot: { level: standard }
rules:
  - id: llm
    description: bot may call models
    when: { kind: llm_call, agent: [bot] }
    then: allow
budgets:
  - id: daily-cost
    scope: { agent: "*" }
    period: day
    limit: { cost_usd: 100 }
loops: { repeat: 10000, within: 1s, then: deny }
"#;

fn gateway_yaml(upstream: &str, extra: &str) -> String {
    format!(
        r#"gateway:
  timeout_seconds: 2
  retries: {{ max_retries: 2, backoff_ms: 10, max_backoff_ms: 2000 }}
  breaker: {{ failures: 50, cooldown_seconds: 30 }}
  providers:
    - {{ name: openai, kind: openai, base_url: "{upstream}", api_key_env: FAKE_OPENAI_KEY }}
    - {{ name: backup, kind: openai, base_url: "{upstream}" }}
    - {{ name: anthropic, kind: anthropic, base_url: "{upstream}", api_key_env: FAKE_OPENAI_KEY }}
    - {{ name: gemini, kind: gemini, base_url: "{upstream}", api_key_env: FAKE_OPENAI_KEY }}
  models:
    - name: gpt-4o-mini
      deployments: [{{ provider: openai, model: gpt-4o-mini }}]
      fallbacks: [gpt-4.1-nano]
    - name: gpt-4.1-nano
      deployments: [{{ provider: backup, model: gpt-4.1-nano }}]
    - name: claude-3-5-haiku-latest
      deployments: [{{ provider: anthropic, model: claude-3-5-haiku-latest }}]
    - name: gemini-2.0-flash
      deployments: [{{ provider: gemini, model: gemini-2.0-flash }}]
    - name: text-embedding-3-small
      deployments: [{{ provider: openai, model: text-embedding-3-small }}]
    - name: unpriced
      deployments: [{{ provider: openai, model: some-unpriced-model }}]
{extra}"#
    )
}

fn start(upstream: &FakeUpstream, policy: &str, extra: &str) -> (tempfile::TempDir, Aura) {
    let home = home_with(&[("base.yaml", policy)]);
    std::fs::write(
        home.path().join("aura.yaml"),
        gateway_yaml(&upstream.url(), extra),
    )
    .unwrap();
    let aura = Aura::start_in_with_envs(
        home.path(),
        "data",
        &[],
        &[("FAKE_OPENAI_KEY", PROVIDER_KEY)],
    );
    (home, aura)
}

fn python(script: &str, envs: &[(&str, &str)]) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .envs(envs.iter().copied())
        .output()
        .expect("python3 (scripts/services.sh installs the SDKs)");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls the daily usage report until `pred` holds (settlement and usage records are written after the answer).
async fn usage_until(aura: &Aura, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = aura.get("/api/v1/usage/daily?days=1").await;
        let rows = rows.as_array().unwrap().clone();
        if pred(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "usage never matched: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn row<'a>(rows: &'a [Value], model: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["model"] == model)
}

/// gpt-4o-mini list price: 0.15 $/M input, 0.60 $/M output; the fake reports 19 + 10 tokens.
fn openai_call_cost() -> i64 {
    let (p, c) = fake::OPENAI_USAGE;
    (p as i64 * 150_000 + c as i64 * 600_000 + 999_999) / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_anthropic_and_gemini_sdks_through_the_gateway() {
    let upstream = FakeUpstream::start(0, Duration::from_millis(5))
        .await
        .unwrap();
    upstream.script(
        "gpt-4o-mini",
        [Behavior::Ok, Behavior::Ok, Behavior::ToolCall],
    );
    let (_home, aura) = start(&upstream, POLICY, "");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;

    let openai = python(
        r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["AURA_URL"] + "/v1", api_key=os.environ["AURA_KEY"], max_retries=0)
r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=50)
text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=50, stream=True) if ch.choices)
t = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather?"}], max_tokens=50,
    tools=[{"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}}])
models = [m.id for m in c.models.list()]
e = c.embeddings.create(model="text-embedding-3-small", input="hello")
try:
    c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    missing = None
except openai.NotFoundError as err:
    missing = err.status_code
print(json.dumps({"plain": r.choices[0].message.content, "usage": r.usage.total_tokens, "stream": text,
    "tool": t.choices[0].message.tool_calls[0].function.name, "models": models, "dims": len(e.data[0].embedding),
    "missing": missing}))
"#,
        &[("AURA_URL", &aura.url), ("AURA_KEY", &bot)],
    );
    assert_eq!(openai["plain"], fake::REPLY, "{openai}");
    assert_eq!(openai["usage"], 29);
    assert_eq!(openai["stream"], fake::REPLY, "{openai}");
    assert_eq!(openai["tool"], "get_current_weather");
    assert!(
        openai["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "gpt-4o-mini")
    );
    assert_eq!(openai["dims"], 3);
    assert_eq!(openai["missing"], 404);

    let anthropic = python(
        r#"
import json, os, anthropic
c = anthropic.Anthropic(base_url=os.environ["AURA_URL"], api_key=os.environ["AURA_KEY"], max_retries=0)
m = c.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": "Hello"}])
with c.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
n = c.messages.count_tokens(model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": "Hello"}])
print(json.dumps({"plain": m.content[0].text, "out": m.usage.output_tokens, "stream": text,
    "stream_out": final.usage.output_tokens, "count": n.input_tokens}))
"#,
        &[("AURA_URL", &aura.url), ("AURA_KEY", &bot)],
    );
    assert_eq!(anthropic["plain"], fake::REPLY, "{anthropic}");
    assert_eq!(anthropic["out"], fake::ANTHROPIC_USAGE.1);
    assert_eq!(anthropic["stream"], fake::REPLY);
    assert_eq!(anthropic["stream_out"], fake::ANTHROPIC_USAGE.1);
    assert!(anthropic["count"].as_u64().unwrap() > 0);

    let gemini = python(
        r#"
import json, os
from google import genai
from google.genai import types
c = genai.Client(api_key=os.environ["AURA_KEY"], http_options=types.HttpOptions(base_url=os.environ["AURA_URL"]))
r = c.models.generate_content(model="gemini-2.0-flash", contents="Hello")
text = "".join(ch.text or "" for ch in c.models.generate_content_stream(model="gemini-2.0-flash", contents="Hello"))
print(json.dumps({"plain": r.text, "tokens": r.usage_metadata.total_token_count, "stream": text}))
"#,
        &[("AURA_URL", &aura.url), ("AURA_KEY", &bot)],
    );
    assert_eq!(gemini["plain"], fake::REPLY, "{gemini}");
    assert_eq!(gemini["stream"], fake::REPLY, "{gemini}");

    // Settlement: exact cost per call, from the reported usage (the stream's final usage event included).
    let rows = usage_until(&aura, |rows| {
        row(rows, "gpt-4o-mini").is_some_and(|r| r["calls"] == 3)
            && row(rows, "gemini-2.0-flash").is_some_and(|r| r["calls"] == 2)
            && row(rows, "claude-3-5-haiku-latest").is_some_and(|r| r["calls"] == 2)
    })
    .await;
    let gpt = row(&rows, "gpt-4o-mini").unwrap();
    assert_eq!(gpt["cost_micros"], 3 * openai_call_cost(), "{gpt}");
    assert_eq!(gpt["input_tokens"], 3 * fake::OPENAI_USAGE.0);
    let claude = row(&rows, "claude-3-5-haiku-latest").unwrap();
    assert_eq!(claude["output_tokens"], 2 * fake::ANTHROPIC_USAGE.1);

    // The budget saw the same spend; the CLI report agrees.
    let budget = aura.get("/api/v1/usage/budget?agent=bot").await;
    let spent: i64 = rows
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    assert_eq!(budget[0]["spent_micros"], spent, "{budget}");
    let by_model = aura
        .cli(&["usage", "by-model", "--output", "json"])
        .code(0)
        .json();
    assert!(
        by_model
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["model"] == "gpt-4o-mini" && r["calls"] == 3),
        "{by_model}"
    );
    let by_agent = aura
        .cli(&["usage", "by-agent", "--output", "json"])
        .code(0)
        .json();
    assert_eq!(by_agent[0]["agent"], "bot");
    assert_eq!(by_agent[0]["cost_micros"], spent);
    aura.cli(&["usage", "daily"]).code(0);

    // The upstream got the provider key; it appears nowhere in the audit log, and the SDK key never went upstream.
    assert!(
        upstream
            .seen()
            .iter()
            .all(|s| s.api_key.as_deref() == Some(PROVIDER_KEY))
    );
    for entry in std::fs::read_dir(aura.data_dir.join("audit")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(PROVIDER_KEY),
                "provider key in {}",
                path.display()
            );
        }
    }
    let entries = aura
        .get("/api/v1/audit/entries?limit=1000")
        .await
        .to_string();
    assert!(
        entries.contains("llm.settle") && entries.contains("\"cost_micros\""),
        "{entries}"
    );
    assert!(!entries.contains(PROVIDER_KEY));

    // Metrics.
    let metrics = client()
        .get(aura.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "aura_llm_tokens_total",
        "aura_llm_cost_microdollars_total",
        "aura_llm_request_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    promtool_check(&metrics);
}

async fn chat(aura: &Aura, token: &str, model: &str, stream: bool) -> reqwest::Response {
    client()
        .post(aura.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": model, "max_tokens": 20, "stream": stream,
            "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_fallbacks_errors_and_cut_streams() {
    let upstream = FakeUpstream::start(0, Duration::ZERO).await.unwrap();
    let (_home, aura) = start(&upstream, POLICY, "");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;

    // 429 with Retry-After, then 500: retried on the same deployment, then answered.
    upstream.script(
        "gpt-4o-mini",
        [
            Behavior::Status(429, Some("0".into())),
            Behavior::Status(500, None),
        ],
    );
    let before = upstream.requests();
    let r = chat(&aura, &bot, "gpt-4o-mini", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.requests() - before, 3);

    // 500 on every try: the fallback model answers (decided again).
    upstream.script(
        "gpt-4o-mini",
        [
            Behavior::Status(500, None),
            Behavior::Status(500, None),
            Behavior::Status(500, None),
        ],
    );
    let r = chat(&aura, &bot, "gpt-4o-mini", false).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "gpt-4.1-nano", "{body}");

    // A hanging upstream times out (2 s per try, no retry left after the budget of tries) and falls back.
    upstream.script(
        "gpt-4.1-nano",
        [Behavior::Hang, Behavior::Hang, Behavior::Hang],
    );
    let r = chat(&aura, &bot, "gpt-4.1-nano", false).await;
    assert_eq!(r.status(), 502, "no fallback for gpt-4.1-nano");
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "upstream_unavailable", "{err}");

    // 429 whose Retry-After is too long: passed back as 429 with the hint.
    upstream.script("gpt-4.1-nano", [Behavior::Status(429, Some("3600".into()))]);
    let r = chat(&aura, &bot, "gpt-4.1-nano", false).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());

    // A cut stream: what was seen is forwarded, the client sees the cut, and it is settled with counted tokens.
    upstream.script("gpt-4.1-nano", [Behavior::Cut(3)]);
    let r = chat(&aura, &bot, "gpt-4.1-nano", true).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => seen.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    // Both the OpenAI-format error event and the aborted response: the event is flushed before the abort.
    assert!(seen.contains("Hello!"), "{seen}");
    assert!(!seen.contains("[DONE]"), "{seen}");
    let cut = seen
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("error").is_some());
    let cut = cut.unwrap_or_else(|| panic!("the client must see the upstream_cut event: {seen}"));
    assert_eq!(cut["error"]["code"], "upstream_cut", "{cut}");
    assert!(
        failed,
        "the response must be aborted, not ended cleanly: {seen}"
    );

    // Unknown and unpriced models fail closed; tool-call streams pass through.
    let r = chat(&aura, &bot, "unpriced", false).await;
    assert_eq!(r.status(), 403);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unpriced_model");
    upstream.script("gpt-4o-mini", [Behavior::ToolCall]);
    let text = chat(&aura, &bot, "gpt-4o-mini", true)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("get_current_weather") && text.contains("[DONE]"),
        "{text}"
    );
    assert!(
        !text.contains("\"usage\""),
        "usage chunk not asked for: {text}"
    );

    let rows = usage_until(&aura, |rows| {
        row(rows, "gpt-4.1-nano").is_some_and(|r| r["calls"].as_i64().unwrap() >= 4)
    })
    .await;
    assert!(
        row(&rows, "gpt-4.1-nano").unwrap()["output_tokens"]
            .as_i64()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_never_overshoot_the_budget() {
    let upstream = FakeUpstream::start(0, Duration::from_millis(20))
        .await
        .unwrap();
    // 5,000 micro-dollars a day: each call reserves its worst case and costs 18 (19 + 10 tokens of gpt-4o-mini).
    let policy = POLICY.replace("cost_usd: 100", "cost_usd: 0.005");
    // The SQLite ledger serialises 1,000 holds; on a loaded machine the default 5 s wait for a connection can run
    // out (503), which says nothing about overshoot, so this test waits longer.
    let (_home, aura) = start(
        &upstream,
        &policy,
        "store:\n  connect_timeout_seconds: 60\n",
    );
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let c = client();
    let calls = (0..1000).map(|i| {
        let c = c.clone();
        let url = aura.url("/v1/chat/completions");
        let bot = bot.clone();
        async move {
            let r = c
                .post(url)
                .bearer_auth(bot)
                .json(
                    &json!({"model": "gpt-4o-mini", "max_tokens": 10, "stream": i % 2 == 0,
                    "messages": [{"role": "user", "content": format!("Hello {i}")}]}),
                )
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    assert!(
        ok > 0 && statuses.iter().all(|s| *s == 200 || *s == 402),
        "{statuses:?}"
    );
    let rows = usage_until(&aura, |rows| {
        row(rows, "gpt-4o-mini").is_some_and(|r| r["calls"] == ok)
    })
    .await;
    let spent = row(&rows, "gpt-4o-mini").unwrap()["cost_micros"]
        .as_i64()
        .unwrap();
    assert_eq!(spent, ok * openai_call_cost());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let budget = aura.get("/api/v1/usage/budget?agent=bot").await;
        let b = &budget[0];
        assert!(
            b["spent_micros"].as_i64().unwrap() <= 5_000,
            "overshoot: {b}"
        );
        if b["reserved_micros"] == 0 {
            assert_eq!(b["spent_micros"], spent, "{b}");
            break;
        }
        assert!(Instant::now() < deadline, "reservations never settled: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_cancels_an_in_flight_stream_within_100_ms() {
    let upstream = FakeUpstream::start(0, Duration::ZERO).await.unwrap();
    upstream.script(
        "gpt-4o-mini",
        [Behavior::Slow(10_000, Duration::from_millis(10))],
    );
    let (_home, aura) = start(&upstream, POLICY, "");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let r = chat(&aura, &bot, "gpt-4o-mini", true).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let (status, _) = post(
        &aura.url("/api/v1/halts"),
        &aura.admin_token(),
        json!({"agent": "bot", "reason": "test"}),
    )
    .await;
    let halted = Instant::now();
    assert_eq!(status, 200);
    let mut tail = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        tail.push_str(&String::from_utf8_lossy(&chunk));
    }
    let took = halted.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "stream ended {took:?} after the halt"
    );
    assert!(tail.contains("halted"), "{tail}");
    // New calls are refused.
    let r = chat(&aura, &bot, "gpt-4o-mini", false).await;
    assert_eq!(r.status(), 403);
    let rows = usage_until(&aura, |rows| row(rows, "gpt-4o-mini").is_some()).await;
    assert!(
        row(&rows, "gpt-4o-mini").unwrap()["output_tokens"]
            .as_i64()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_answer_repeated_requests_and_secrets_are_redacted() {
    let upstream = FakeUpstream::start(0, Duration::ZERO).await.unwrap();
    let (_home, aura) = start(
        &upstream,
        POLICY,
        "  cache: { responses: true, embeddings: true, ttl_seconds: 60, max_entries: 100 }\n",
    );
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let before = upstream.requests();
    for _ in 0..3 {
        let r = chat(&aura, &bot, "gpt-4o-mini", false).await;
        assert_eq!(r.status(), 200);
    }
    for _ in 0..2 {
        let (status, _) = post(
            &aura.url("/v1/embeddings"),
            &bot,
            json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        upstream.requests() - before,
        2,
        "one upstream call per distinct request"
    );

    // A secret in the prompt is redacted before it goes upstream.
    let secret = "AKIAIOSFODNN7EXAMPLE";
    let (status, _) = post(
        &aura.url("/v1/chat/completions"),
        &bot,
        json!({"model": "gpt-4o-mini", "max_tokens": 5,
        "messages": [{"role": "user", "content": format!("my key is {secret}")}]}),
    )
    .await;
    assert_eq!(status, 200);
    let last = upstream.seen().last().unwrap().body.to_string();
    assert!(
        !last.contains(secret) && last.contains("REDACTED"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_through_the_openai_sdk_plain_and_streamed() {
    let upstream = FakeUpstream::start(0, Duration::ZERO).await.unwrap();
    let (_home, aura) = start(&upstream, POLICY, "");
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let out = python(
        r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["AURA_URL"] + "/v1", api_key=os.environ["AURA_KEY"], max_retries=0)
r = c.responses.create(model="gpt-4o-mini", input="Tell me a joke", instructions="Be brief", max_output_tokens=40)
types, text, final = [], "", None
for ev in c.responses.create(model="gpt-4o-mini", input="Tell me a joke", stream=True):
    types.append(ev.type)
    if ev.type == "response.output_text.delta":
        text += ev.delta
    if ev.type == "response.completed":
        final = ev.response
print(json.dumps({"plain": r.output_text, "input": r.usage.input_tokens, "output": r.usage.output_tokens,
    "types": types, "stream": text, "final_output": final.usage.output_tokens, "final_text": final.output_text}))
"#,
        &[("AURA_URL", &aura.url), ("AURA_KEY", &bot)],
    );
    assert_eq!(out["plain"], fake::REPLY, "{out}");
    assert_eq!(out["input"], fake::RESPONSES_USAGE.0);
    assert_eq!(out["output"], fake::RESPONSES_USAGE.1);
    assert_eq!(out["stream"], fake::REPLY, "{out}");
    assert_eq!(out["final_text"], fake::REPLY);
    assert_eq!(out["final_output"], fake::RESPONSES_USAGE.1);
    let types: Vec<&str> = out["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    assert!(types.contains(&"response.output_text.delta"), "{types:?}");
    // Upstream saw the Responses API, with the usage request of chat streams left out.
    let seen: Vec<_> = upstream
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/responses")
        .collect();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body.get("stream_options").is_none()));
    // Both calls settled from the reported usage (the stream's from `response.completed`).
    let (i, o) = fake::RESPONSES_USAGE;
    let cost = (i as i64 * 150_000 + o as i64 * 600_000 + 999_999) / 1_000_000;
    let rows = usage_until(&aura, |rows| {
        row(rows, "gpt-4o-mini").is_some_and(|r| r["calls"] == 2)
    })
    .await;
    let r = row(&rows, "gpt-4o-mini").unwrap();
    assert_eq!(r["input_tokens"], 2 * i, "{r}");
    assert_eq!(r["output_tokens"], 2 * o, "{r}");
    assert_eq!(r["cost_micros"], 2 * cost, "{r}");
    // A cut Responses stream ends with the API's own `error` event and is settled with what was seen.
    upstream.script("gpt-4o-mini", [Behavior::Cut(4)]);
    let r = client()
        .post(aura.url("/v1/responses"))
        .bearer_auth(&bot)
        .json(&json!({"model": "gpt-4o-mini", "input": "Hello", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => seen.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(seen.contains("response.output_item.added"), "{seen}");
    assert!(!seen.contains("response.completed"), "{seen}");
    // Both the Responses API's own `error` event and the aborted response.
    let cut = seen
        .split("\n\n")
        .find(|e| e.starts_with("event: error\n"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .and_then(|d| serde_json::from_str::<Value>(d).ok());
    let cut = cut.unwrap_or_else(|| panic!("the client must see the upstream_cut event: {seen}"));
    assert_eq!(cut["type"], "error", "{cut}");
    assert_eq!(cut["code"], "upstream_cut", "{cut}");
    assert!(
        failed,
        "the response must be aborted, not ended cleanly: {seen}"
    );
    usage_until(&aura, |rows| {
        row(rows, "gpt-4o-mini").is_some_and(|r| r["calls"] == 3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_format_routes_and_fallbacks_translate_requests_and_answers() {
    let upstream = FakeUpstream::start(0, Duration::ZERO).await.unwrap();
    let extra = "    - name: claude-then-gpt
      deployments: [{ provider: anthropic, model: claude-3-5-haiku-latest }]
      fallbacks: [gpt-4.1-nano]
    - name: gpt-on-claude
      deployments: [{ provider: anthropic, model: claude-3-5-haiku-latest }]
";
    let (_home, aura) = start(&upstream, POLICY, extra);
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    // The Anthropic deployment fails every try: the fallback is an OpenAI model, and the Anthropic SDK gets an
    // Anthropic message back.
    upstream.script(
        "claude-3-5-haiku-latest",
        [
            Behavior::Status(500, None),
            Behavior::Status(500, None),
            Behavior::Status(500, None),
        ],
    );
    let anthropic = python(
        r#"
import json, os, anthropic
c = anthropic.Anthropic(base_url=os.environ["AURA_URL"], api_key=os.environ["AURA_KEY"], max_retries=0)
m = c.messages.create(model="claude-then-gpt", max_tokens=64, system="Be brief.",
    messages=[{"role": "user", "content": "Hello"}])
print(json.dumps({"text": m.content[0].text, "stop": m.stop_reason, "in": m.usage.input_tokens,
    "out": m.usage.output_tokens, "type": m.type}))
"#,
        &[("AURA_URL", &aura.url), ("AURA_KEY", &bot)],
    );
    assert_eq!(anthropic["text"], fake::REPLY, "{anthropic}");
    assert_eq!(anthropic["stop"], "end_turn");
    assert_eq!(anthropic["type"], "message");
    assert_eq!(anthropic["in"], fake::OPENAI_USAGE.0);
    assert_eq!(anthropic["out"], fake::OPENAI_USAGE.1);
    let last = upstream.seen().last().unwrap().clone();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.model, "gpt-4.1-nano");
    assert_eq!(last.body["messages"][0]["role"], "system", "{}", last.body);
    assert_eq!(
        last.body["messages"][1]["content"], "Hello",
        "{}",
        last.body
    );
    assert_eq!(last.body["max_tokens"], 64);

    // The reverse: the OpenAI SDK on a route served by Anthropic, tool calls included.
    upstream.script(
        "claude-3-5-haiku-latest",
        [Behavior::Ok, Behavior::ToolCall],
    );
    let openai = python(
        r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["AURA_URL"] + "/v1", api_key=os.environ["AURA_KEY"], max_retries=0)
r = c.chat.completions.create(model="gpt-on-claude", messages=[{"role": "user", "content": "Hello"}])
t = c.chat.completions.create(model="gpt-on-claude", messages=[{"role": "user", "content": "Weather?"}], max_tokens=50,
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
call = t.choices[0].message.tool_calls[0]
print(json.dumps({"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
    "prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens, "tool": call.function.name,
    "args": json.loads(call.function.arguments), "tool_finish": t.choices[0].finish_reason}))
"#,
        &[("AURA_URL", &aura.url), ("AURA_KEY", &bot)],
    );
    assert_eq!(openai["text"], fake::REPLY, "{openai}");
    assert_eq!(openai["finish"], "stop");
    assert_eq!(openai["prompt"], fake::ANTHROPIC_USAGE.0);
    assert_eq!(openai["completion"], fake::ANTHROPIC_USAGE.1);
    assert_eq!(openai["tool"], "get_weather");
    assert_eq!(openai["args"]["location"], "San Francisco, CA");
    assert_eq!(openai["tool_finish"], "tool_calls");
    let to_claude: Vec<_> = upstream
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/messages")
        .collect();
    let first = &to_claude[to_claude.len() - 2];
    assert!(
        first.body["max_tokens"].as_u64().unwrap() > 0,
        "Anthropic needs max_tokens: {}",
        first.body
    );
    assert_eq!(
        to_claude.last().unwrap().body["tools"][0]["name"],
        "get_weather"
    );
    // Settled per deployment price: the fallback at gpt-4.1-nano's, the translated ones at Claude's.
    usage_until(&aura, |rows| {
        row(rows, "gpt-4.1-nano").is_some_and(|r| r["calls"] == 1)
            && row(rows, "gpt-on-claude").is_some_and(|r| {
                r["calls"] == 2 && r["output_tokens"] == 2 * fake::ANTHROPIC_USAGE.1
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_response_cache_is_shared_between_nodes() {
    let upstream = FakeUpstream::start(0, Duration::ZERO).await.unwrap();
    let cache = "  cache: { responses: true, backend: redis, redis_url: \"redis://127.0.0.1:6379\", ttl_seconds: 60 }\n";
    let (_home_a, a) = start(&upstream, POLICY, cache);
    let (_home_b, b) = start(&upstream, POLICY, cache);
    let bot_a = a.token("bot-token", "agent", Some("bot")).await;
    let bot_b = b.token("bot-token", "agent", Some("bot")).await;
    // A prompt no earlier run has cached.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prompt = format!("Hello {} {nanos}", std::process::id());
    let ask = |aura: &Aura, token: &str| {
        client()
            .post(aura.url("/v1/chat/completions"))
            .bearer_auth(token.to_owned())
            .json(&json!({"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": prompt}]}))
            .send()
    };
    let before = upstream.requests();
    let first = ask(&a, &bot_a).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("x-aura-cache").is_none());
    let first: Value = first.json().await.unwrap();
    let second = ask(&b, &bot_b).await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        second
            .headers()
            .get("x-aura-cache")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("hit".to_owned()),
        "node B answers from the entry node A stored"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(upstream.requests() - before, 1);
    // The hit is still decided and audited on node B, at zero cost.
    let rows = usage_until(&b, |rows| row(rows, "gpt-4o-mini").is_some()).await;
    assert_eq!(row(&rows, "gpt-4o-mini").unwrap()["cost_micros"], 0);
}

/// The cost of `usage` at `model`'s bundled list price (what settlement must charge the answering deployment).
fn cost_at(model: &str, (input, output): (u64, u64)) -> i64 {
    aura_gateway::Pricing::new(&[])
        .get(model)
        .unwrap()
        .cost(&aura_gateway::Usage {
            input_tokens: input,
            output_tokens: output,
            ..Default::default()
        })
}

/// Streamed calls across formats (OpenAI ↔ Anthropic), Gemini both ways (plain and streamed, tool calls
/// included), and a streamed call whose fallback is another provider: each answered in the client's own format,
/// read by its official SDK, and settled with the upstream's reported usage at the answering deployment's price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_gemini_translate_across_providers_and_settle_at_the_answering_price() {
    let upstream = FakeUpstream::start(0, Duration::ZERO).await.unwrap();
    let extra = "    - name: gpt-on-claude
      deployments: [{ provider: anthropic, model: claude-3-5-haiku-latest }]
    - name: claude-on-gpt
      deployments: [{ provider: openai, model: gpt-4o-mini }]
    - name: gemini-on-gpt
      deployments: [{ provider: openai, model: gpt-4o-mini }]
    - name: gpt-on-gemini
      deployments: [{ provider: gemini, model: gemini-2.0-flash }]
    - name: claude-on-gemini
      deployments: [{ provider: gemini, model: gemini-2.0-flash }]
    - name: stream-fallback
      deployments: [{ provider: backup, model: gpt-4.1-nano }]
      fallbacks: [claude-3-5-haiku-latest]
    - name: cut-on-claude
      deployments: [{ provider: anthropic, model: claude-3-5-haiku-latest }]
";
    let (_home, aura) = start(&upstream, POLICY, extra);
    let bot = aura.token("bot-token", "agent", Some("bot")).await;
    let env = [("AURA_URL", aura.url.as_str()), ("AURA_KEY", bot.as_str())];

    // (a) The OpenAI SDK streams from an Anthropic deployment: text, then a tool call.
    upstream.script(
        "claude-3-5-haiku-latest",
        [Behavior::Ok, Behavior::ToolCall],
    );
    let openai = python(
        r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["AURA_URL"] + "/v1", api_key=os.environ["AURA_KEY"], max_retries=0)
chunks = list(c.chat.completions.create(model="gpt-on-claude", messages=[{"role": "user", "content": "Hello"}],
    max_tokens=50, stream=True, stream_options={"include_usage": True}))
text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
tool = {"ids": [], "name": "", "args": ""}
tool_finish = None
for ch in c.chat.completions.create(model="gpt-on-claude", messages=[{"role": "user", "content": "Weather?"}],
        max_tokens=50, stream=True, tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]):
    if not ch.choices:
        continue
    for d in ch.choices[0].delta.tool_calls or []:
        if d.id:
            tool["ids"].append(d.id)
        if d.function and d.function.name:
            tool["name"] += d.function.name
        if d.function and d.function.arguments:
            tool["args"] += d.function.arguments
    tool_finish = ch.choices[0].finish_reason or tool_finish
print(json.dumps({"text": text, "finish": finish, "prompt": chunks[-1].usage.prompt_tokens,
    "completion": chunks[-1].usage.completion_tokens, "object": chunks[0].object, "tool_ids": tool["ids"],
    "tool": tool["name"], "args": json.loads(tool["args"]), "tool_finish": tool_finish}))
"#,
        &env,
    );
    assert_eq!(openai["text"], fake::REPLY, "{openai}");
    assert_eq!(openai["finish"], json!(["stop"]), "{openai}");
    assert_eq!(openai["object"], "chat.completion.chunk");
    assert_eq!(openai["prompt"], fake::ANTHROPIC_USAGE.0);
    assert_eq!(openai["completion"], fake::ANTHROPIC_USAGE.1);
    assert_eq!(
        openai["tool_ids"],
        json!(["toolu_01T1x1fJ34qAmk2tNTrN7Up6"]),
        "{openai}"
    );
    assert_eq!(openai["tool"], "get_weather");
    assert_eq!(openai["args"]["location"], "San Francisco, CA");
    assert_eq!(openai["tool_finish"], "tool_calls");
    let sent = upstream.seen().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["stream"], true, "{}", sent.body);
    assert_eq!(
        sent.body["tools"][0]["name"], "get_weather",
        "{}",
        sent.body
    );

    // (b) The Anthropic SDK streams from an OpenAI deployment: text, then a tool call.
    upstream.script("gpt-4o-mini", [Behavior::Ok, Behavior::ToolCall]);
    let anthropic = python(
        r#"
import json, os, anthropic
c = anthropic.Anthropic(base_url=os.environ["AURA_URL"], api_key=os.environ["AURA_KEY"], max_retries=0)
with c.messages.stream(model="claude-on-gpt", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]) as s:
    text = "".join(s.text_stream)
    m = s.get_final_message()
with c.messages.stream(model="claude-on-gpt", max_tokens=64, messages=[{"role": "user", "content": "Weather?"}],
        tools=[{"name": "get_current_weather", "input_schema": {"type": "object"}}]) as s:
    t = s.get_final_message()
use = [b for b in t.content if b.type == "tool_use"][0]
print(json.dumps({"text": text, "final": m.content[0].text, "stop": m.stop_reason, "in": m.usage.input_tokens,
    "out": m.usage.output_tokens, "tool": use.name, "id": use.id, "input": use.input, "tool_stop": t.stop_reason}))
"#,
        &env,
    );
    assert_eq!(anthropic["text"], fake::REPLY, "{anthropic}");
    assert_eq!(anthropic["final"], fake::REPLY);
    assert_eq!(anthropic["stop"], "end_turn");
    assert_eq!(anthropic["in"], fake::OPENAI_USAGE.0);
    assert_eq!(anthropic["out"], fake::OPENAI_USAGE.1);
    assert_eq!(anthropic["tool"], "get_current_weather");
    assert_eq!(anthropic["id"], "call_abc123");
    assert_eq!(anthropic["input"]["location"], "Boston, MA");
    assert_eq!(anthropic["tool_stop"], "tool_use");
    let sent = upstream.seen().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["stream"], true, "{}", sent.body);
    assert_eq!(
        sent.body["stream_options"]["include_usage"], true,
        "{}",
        sent.body
    );

    // (c) The Gemini SDK on an OpenAI deployment (plain, streamed, a function call), and the OpenAI and
    // Anthropic SDKs on a Gemini deployment.
    upstream.script(
        "gpt-4o-mini",
        [Behavior::Ok, Behavior::Ok, Behavior::ToolCall],
    );
    let gemini = python(
        r#"
import json, os
from google import genai
from google.genai import types
c = genai.Client(api_key=os.environ["AURA_KEY"], http_options=types.HttpOptions(base_url=os.environ["AURA_URL"]))
cfg = types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=40, stop_sequences=["END"])
r = c.models.generate_content(model="gemini-on-gpt", contents="Hello", config=cfg)
chunks = list(c.models.generate_content_stream(model="gemini-on-gpt", contents="Hello"))
fn = types.FunctionDeclaration(name="get_current_weather", parameters=types.Schema(type="OBJECT",
    properties={"location": types.Schema(type="STRING")}))
t = c.models.generate_content(model="gemini-on-gpt", contents="Weather?",
    config=types.GenerateContentConfig(tools=[types.Tool(function_declarations=[fn])]))
call = t.function_calls[0]
print(json.dumps({"plain": r.text, "finish": r.candidates[0].finish_reason.name, "prompt": r.usage_metadata.prompt_token_count,
    "out": r.usage_metadata.candidates_token_count, "stream": "".join(ch.text or "" for ch in chunks),
    "stream_out": chunks[-1].usage_metadata.candidates_token_count, "tool": call.name, "args": call.args}))
"#,
        &env,
    );
    assert_eq!(gemini["plain"], fake::REPLY, "{gemini}");
    assert_eq!(gemini["finish"], "STOP");
    assert_eq!(gemini["prompt"], fake::OPENAI_USAGE.0);
    assert_eq!(gemini["out"], fake::OPENAI_USAGE.1);
    assert_eq!(gemini["stream"], fake::REPLY, "{gemini}");
    assert_eq!(gemini["stream_out"], fake::OPENAI_USAGE.1);
    assert_eq!(gemini["tool"], "get_current_weather");
    assert_eq!(gemini["args"]["location"], "Boston, MA");
    let to_openai: Vec<_> = upstream
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/chat/completions")
        .collect();
    let plain = &to_openai[to_openai.len() - 3];
    assert_eq!(
        plain.body["messages"][0],
        json!({"role": "system", "content": "Be brief."}),
        "{}",
        plain.body
    );
    assert_eq!(
        plain.body["messages"][1],
        json!({"role": "user", "content": "Hello"}),
        "{}",
        plain.body
    );
    assert_eq!(plain.body["max_tokens"], 40);
    assert_eq!(plain.body["stop"], json!(["END"]));
    assert_eq!(plain.body["model"], "gpt-4o-mini");
    let tools = &to_openai.last().unwrap().body["tools"][0]["function"];
    assert_eq!(tools["name"], "get_current_weather");
    assert_eq!(
        tools["parameters"]["properties"]["location"]["type"], "string",
        "{tools}"
    );

    upstream.script(
        "gemini-2.0-flash",
        [Behavior::Ok, Behavior::Ok, Behavior::ToolCall],
    );
    let on_gemini = python(
        r#"
import json, os, openai, anthropic
c = openai.OpenAI(base_url=os.environ["AURA_URL"] + "/v1", api_key=os.environ["AURA_KEY"], max_retries=0)
r = c.chat.completions.create(model="gpt-on-gemini", messages=[{"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello"}], max_tokens=30)
chunks = list(c.chat.completions.create(model="gpt-on-gemini", messages=[{"role": "user", "content": "Hello"}],
    stream=True, stream_options={"include_usage": True}))
t = c.chat.completions.create(model="gpt-on-gemini", messages=[{"role": "user", "content": "Weather?"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
a = anthropic.Anthropic(base_url=os.environ["AURA_URL"], api_key=os.environ["AURA_KEY"], max_retries=0)
with a.messages.stream(model="claude-on-gemini", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]) as s:
    atext = "".join(s.text_stream)
    m = s.get_final_message()
call = t.choices[0].message.tool_calls[0]
print(json.dumps({"plain": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
    "prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens,
    "stream": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
    "stream_prompt": chunks[-1].usage.prompt_tokens, "tool": call.function.name,
    "args": json.loads(call.function.arguments), "tool_finish": t.choices[0].finish_reason,
    "anthropic": atext, "a_stop": m.stop_reason, "a_in": m.usage.input_tokens, "a_out": m.usage.output_tokens}))
"#,
        &env,
    );
    assert_eq!(on_gemini["plain"], fake::REPLY, "{on_gemini}");
    assert_eq!(on_gemini["finish"], "stop");
    assert_eq!(on_gemini["prompt"], fake::GEMINI_USAGE.0);
    assert_eq!(on_gemini["completion"], fake::GEMINI_USAGE.1);
    assert_eq!(on_gemini["stream"], fake::REPLY, "{on_gemini}");
    assert_eq!(on_gemini["stream_prompt"], fake::GEMINI_USAGE.0);
    assert_eq!(on_gemini["tool"], "get_weather");
    assert_eq!(on_gemini["args"]["location"], "Paris");
    assert_eq!(on_gemini["tool_finish"], "tool_calls");
    assert_eq!(on_gemini["anthropic"], fake::REPLY);
    assert_eq!(on_gemini["a_stop"], "end_turn");
    assert_eq!(on_gemini["a_in"], fake::GEMINI_USAGE.0);
    assert_eq!(on_gemini["a_out"], fake::GEMINI_USAGE.1);
    let to_gemini: Vec<_> = upstream
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1beta/models")
        .collect();
    assert_eq!(to_gemini.len(), 4);
    let first = &to_gemini[0];
    assert_eq!(first.model, "gemini-2.0-flash");
    assert_eq!(
        first.body["systemInstruction"]["parts"][0]["text"], "Be brief.",
        "{}",
        first.body
    );
    assert_eq!(
        first.body["contents"],
        json!([{"role": "user", "parts": [{"text": "Hello"}]}])
    );
    assert_eq!(first.body["generationConfig"]["maxOutputTokens"], 30);
    assert!(
        first.body.get("model").is_none() && first.body.get("stream").is_none(),
        "{}",
        first.body
    );
    assert_eq!(
        to_gemini[2].body["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );

    // (d) A streamed call whose deployment fails (500 on every try) falls back to another provider before the
    // first byte: the OpenAI SDK streams Anthropic's answer.
    upstream.script(
        "gpt-4.1-nano",
        [
            Behavior::Status(500, None),
            Behavior::Status(500, None),
            Behavior::Status(500, None),
        ],
    );
    let before = upstream.requests();
    let fallback = python(
        r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["AURA_URL"] + "/v1", api_key=os.environ["AURA_KEY"], max_retries=0)
chunks = list(c.chat.completions.create(model="stream-fallback", messages=[{"role": "user", "content": "Hello"}],
    stream=True, stream_options={"include_usage": True}))
print(json.dumps({"text": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
    "model": chunks[0].model, "prompt": chunks[-1].usage.prompt_tokens, "completion": chunks[-1].usage.completion_tokens}))
"#,
        &env,
    );
    assert_eq!(fallback["text"], fake::REPLY, "{fallback}");
    assert_eq!(fallback["prompt"], fake::ANTHROPIC_USAGE.0);
    assert_eq!(fallback["completion"], fake::ANTHROPIC_USAGE.1);
    assert_eq!(
        upstream.requests() - before,
        4,
        "three tries, then the fallback"
    );
    assert_eq!(upstream.seen().last().unwrap().path, "/v1/messages");

    // A translated stream cut midway: what was seen reaches the client as OpenAI chunks, then the cut as an
    // OpenAI-format error event, never `[DONE]`; it is settled with the tokens seen.
    upstream.script("claude-3-5-haiku-latest", [Behavior::Cut(4)]);
    let r = chat(&aura, &bot, "cut-on-claude", true).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => seen.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        seen.contains("chat.completion.chunk") && seen.contains("Hello! "),
        "{seen}"
    );
    assert!(
        !seen.contains("[DONE]") && !seen.contains("message_start") && !seen.contains("event:"),
        "{seen}"
    );
    // Both the OpenAI-format error event and the aborted response: the event is flushed before the abort.
    let cut = seen
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("error").is_some());
    let cut = cut.unwrap_or_else(|| panic!("the client must see the upstream_cut event: {seen}"));
    assert_eq!(cut["error"]["code"], "upstream_cut", "{cut}");
    assert!(
        failed,
        "the response must be aborted, not ended cleanly: {seen}"
    );

    // Settlement: the upstream's reported usage at the answering deployment's price, per route.
    let (claude, gpt, gem) = (
        fake::ANTHROPIC_USAGE,
        fake::OPENAI_USAGE,
        fake::GEMINI_USAGE,
    );
    let want = [
        (
            "gpt-on-claude",
            2,
            claude,
            2 * cost_at("claude-3-5-haiku-latest", claude),
        ),
        ("claude-on-gpt", 2, gpt, 2 * cost_at("gpt-4o-mini", gpt)),
        ("gemini-on-gpt", 3, gpt, 3 * cost_at("gpt-4o-mini", gpt)),
        (
            "gpt-on-gemini",
            3,
            gem,
            3 * cost_at("gemini-2.0-flash", gem),
        ),
        ("claude-on-gemini", 1, gem, cost_at("gemini-2.0-flash", gem)),
        (
            "claude-3-5-haiku-latest",
            1,
            claude,
            cost_at("claude-3-5-haiku-latest", claude),
        ),
    ];
    let rows = usage_until(&aura, |rows| {
        want.iter()
            .all(|(m, calls, _, _)| row(rows, m).is_some_and(|r| r["calls"] == *calls))
    })
    .await;
    for (model, calls, (input, output), cost) in want {
        let r = row(&rows, model).unwrap();
        assert_eq!(r["input_tokens"], calls * input, "{model}: {r}");
        assert_eq!(r["output_tokens"], calls * output, "{model}: {r}");
        assert_eq!(r["cost_micros"], cost, "{model}: {r}");
        assert!(cost > 0);
    }
    let cut = usage_until(&aura, |rows| row(rows, "cut-on-claude").is_some()).await;
    let cut = row(&cut, "cut-on-claude").unwrap();
    assert_eq!(cut["input_tokens"], claude.0, "{cut}");
    assert!(cut["output_tokens"].as_i64().unwrap() > 0, "{cut}");
    assert!(cut["cost_micros"].as_i64().unwrap() > 0, "{cut}");
    // The failed first route spent nothing.
    let failed = row(&rows, "stream-fallback").unwrap();
    assert_eq!(failed["cost_micros"], 0, "{failed}");
    let entries = aura
        .get("/api/v1/audit/entries?limit=1000")
        .await
        .to_string();
    assert!(
        entries.contains("\"upstream_model\":\"gemini-2.0-flash\""),
        "{entries}"
    );
}
