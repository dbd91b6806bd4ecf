//! The LLM gateway as a service: every call to a model is an `llm_call` action decided by the kernel (the
//! estimated cost reserved before the upstream call), sent to a deployment with retries, breakers and fallbacks
//! (a fallback model is decided again, like the first try), streamed back without buffering, and settled with
//! the real usage (from the response, the stream's usage event, or counted — cut streams included). A HALT
//! cancels in-flight calls and streams. Provider keys stay inside `aura_gateway`; nothing here logs or audits
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_audit::{Actor, RiskLevel};
use aura_config::ProviderKind;
use aura_core::{Action, AgentName, Clock, Estimate, RawAction, Verdict};
use aura_gateway::cache::{AnswerCache, Cache, RedisCache};
use aura_gateway::protocol::{self, Op, RequestFacts, StreamMeter, Usage};
use aura_gateway::router::{AttemptError, Deployment, Gateway, GatewayError, Upstream};
use aura_gateway::sse;
use aura_gateway::translate_stream::StreamTranslator;
use aura_govern::content::{ContentChecker, ContentPolicy};
use aura_govern::kernel::{ActionOutcome, Actual, Obligation};
use aura_policy::SecretsMode;
use aura_store::{Store, UsageRecord, UsageSummary};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ServiceError;
use super::audit::{self, AuditTrail};
use super::govern::Governance;

/// Tokens by model and direction (`input`, `output`, `cached`).
pub const LLM_TOKENS: &str = "aura_llm_tokens_total";
/// Cost in micro-dollars by model.
pub const LLM_COST: &str = "aura_llm_cost_microdollars_total";
/// Gateway call duration by protocol and status.
pub const LLM_DURATION: &str = "aura_llm_request_duration_seconds";

/// How long a settlement entry may wait for decisions to share its fdatasync.
const SETTLE_LINGER: Duration = Duration::from_millis(2);
/// How long the usage writer gathers records before one store transaction (records are also in the audit log).
const USAGE_LINGER: Duration = Duration::from_millis(50);

/// What an inbound gateway request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `POST /v1/chat/completions`.
    OpenaiChat,
    /// `POST /v1/embeddings`.
    OpenaiEmbeddings,
    /// `POST /v1/responses` (the OpenAI Responses API).
    OpenaiResponses,
    /// `POST /v1/messages`.
    AnthropicMessages,
    /// `POST /v1beta/models/{model}:generateContent` or `:streamGenerateContent`.
    Gemini {
        /// The model in the path.
        model: String,
        /// `streamGenerateContent`.
        stream: bool,
    },
}

impl Inbound {
    /// The wire format of the endpoint.
    pub fn protocol(&self) -> ProviderKind {
        match self {
            Inbound::OpenaiChat | Inbound::OpenaiEmbeddings | Inbound::OpenaiResponses => {
                ProviderKind::Openai
            }
            Inbound::AnthropicMessages => ProviderKind::Anthropic,
            Inbound::Gemini { .. } => ProviderKind::Gemini,
        }
    }

    fn op(&self) -> Op {
        match self {
            Inbound::OpenaiEmbeddings => Op::Embeddings,
            Inbound::OpenaiResponses => Op::Responses,
            _ => Op::Chat,
        }
    }
}

/// A successful answer.
#[derive(Debug)]
pub enum Reply {
    /// A complete JSON body with its status.
    Json {
        /// The status.
        status: u16,
        /// The body.
        body: Bytes,
        /// Whether it came from the cache.
        cached: bool,
    },
    /// Server-sent events, forwarded as they arrive.
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

/// A refused or failed call, rendered by the edge in the endpoint's error format.
#[derive(Debug, Clone)]
pub struct Failure {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human message (never a key).
    pub message: String,
    /// When to retry.
    pub retry_after: Option<Duration>,
    /// An upstream error body passed through as is (a 4xx the upstream gave the request itself).
    pub upstream_body: Option<Bytes>,
}

impl Failure {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            code,
            message: message.into(),
            retry_after: None,
            upstream_body: None,
        }
    }
}

enum UsageMsg {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// The gateway service of a running server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: Gateway,
    governance: Governance,
    audit: AuditTrail,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    usage: mpsc::Sender<UsageMsg>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    writer: TaskTracker,
    writer_stop: CancellationToken,
    responses: Option<AnswerCache>,
    embeddings: Option<AnswerCache>,
    redactor: ContentChecker,
}

impl std::fmt::Debug for UsageMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageMsg")
    }
}

impl GatewayService {
    /// Builds the gateway from `gateway` (absent: serves no model), connects its caches and starts the usage
    /// writer.
    pub async fn open(
        config: Option<&aura_config::GatewayConfig>,
        governance: Governance,
        audit: AuditTrail,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
    ) -> Result<GatewayService, ServiceError> {
        let gateway = match config {
            Some(c) => Gateway::from_config(c, |var| std::env::var(var).ok(), clock.clone())
                .map_err(|e| ServiceError::Invalid(e.to_string()))?,
            None => Gateway::empty(),
        };
        let mut responses = None;
        let mut embeddings = None;
        if let Some(c) = config {
            let ttl = Duration::from_secs(c.cache.ttl_seconds);
            for (on, kind, slot) in [
                (c.cache.responses, "responses", &mut responses),
                (c.cache.embeddings, "embeddings", &mut embeddings),
            ] {
                if !on {
                    continue;
                }
                *slot = Some(match (c.cache.backend, c.cache.redis_url.as_deref()) {
                    (aura_config::CacheBackend::Redis, Some(url)) => AnswerCache::Redis(
                        RedisCache::connect(url, kind, ttl)
                            .await
                            .map_err(ServiceError::Unavailable)?,
                    ),
                    _ => AnswerCache::Memory(Cache::new(
                        ttl,
                        usize::try_from(c.cache.max_entries).unwrap_or(usize::MAX),
                    )),
                });
            }
        }
        let redactor = ContentChecker::new(ContentPolicy {
            max_args_bytes: usize::MAX,
            max_string_bytes: usize::MAX,
            allowed_mime_types: None,
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        metrics::describe_counter!(
            LLM_TOKENS,
            metrics::Unit::Count,
            "LLM tokens through the gateway, by model and direction."
        );
        metrics::describe_counter!(
            LLM_COST,
            "LLM cost through the gateway in micro-dollars, by model."
        );
        metrics::describe_histogram!(
            LLM_DURATION,
            metrics::Unit::Seconds,
            "Gateway call duration, by protocol and status."
        );
        let (tx, rx) = mpsc::channel(65_536);
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let writer = TaskTracker::new();
        let writer_stop = CancellationToken::new();
        writer.spawn(usage_writer(store.clone(), rx, writer_stop.clone()));
        Ok(GatewayService {
            inner: Arc::new(Inner {
                gateway,
                governance,
                audit,
                clock,
                store,
                usage: tx,
                tasks,
                cancel,
                writer,
                writer_stop,
                responses,
                embeddings,
                redactor,
            }),
        })
    }

    /// Model names served.
    pub fn models(&self) -> Vec<String> {
        self.inner
            .gateway
            .models()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Cancels in-flight streams, settles them, and flushes usage records. Call once at shutdown.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        // Every call is settled now: write what is queued and stop the writer.
        self.inner.writer_stop.cancel();
        self.inner.writer.close();
        self.inner.writer.wait().await;
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.usage.send(UsageMsg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Usage summed per day, agent and model over the last `days` days (today included).
    pub async fn usage(&self, days: u32) -> Result<Vec<UsageSummary>, ServiceError> {
        self.flush().await;
        let since =
            self.inner.clock.now().as_millis() - i64::from(days.saturating_sub(1)) * 86_400_000;
        let day = day_of(aura_core::Timestamp::from_millis(since));
        Ok(self.inner.store.usage_summary(&day).await?)
    }

    /// Counts the prompt tokens of an Anthropic `count_tokens` body (no upstream call, no cost).
    pub fn count_tokens(&self, body: &[u8]) -> Result<u64, Failure> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            Failure::new(400, "invalid_request", format!("the body is not JSON: {e}"))
        })?;
        protocol::facts(ProviderKind::Anthropic, Op::Chat, &value, None, false)
            .map(|f| f.prompt_tokens)
            .map_err(|e| Failure::new(400, "invalid_request", e.to_string()))
    }

    /// Serves one call for `agent`.
    pub async fn call(
        &self,
        agent: AgentName,
        caller: Actor,
        inbound: Inbound,
        body: &[u8],
        pass: Vec<(String, String)>,
    ) -> Result<Reply, Failure> {
        let started = Instant::now();
        let protocol = inbound.protocol();
        let op = inbound.op();
        let mut request: Value = serde_json::from_slice(body).map_err(|e| {
            Failure::new(400, "invalid_request", format!("the body is not JSON: {e}"))
        })?;
        let (path_model, path_stream) = match &inbound {
            Inbound::Gemini { model, stream } => (Some(model.as_str()), *stream),
            _ => (None, false),
        };
        let facts = protocol::facts(protocol, op, &request, path_model, path_stream)
            .map_err(|e| Failure::new(400, "invalid_request", e.to_string()))?;
        let gw = &self.inner.gateway;
        let chain = gw.chain(&facts.model).map_err(|e| gateway_failure(&e))?;
        let cache = match op {
            Op::Chat if !facts.stream => self.inner.responses.as_ref(),
            Op::Embeddings => self.inner.embeddings.as_ref(),
            // Responses may be stateful upstream (`store`, `previous_response_id`): never answered from a cache.
            Op::Chat | Op::Responses => None,
        };
        let cache_key = cache.map(|_| Cache::key(protocol.as_str(), &facts.model, &request));
        let mut last = Failure::new(
            502,
            "upstream_unavailable",
            "no deployment could serve the call",
        );
        for (i, route) in chain.iter().enumerate() {
            let (mut deployments, price) = match gw.plan(route, protocol, op) {
                Ok(p) => p,
                Err(e @ GatewayError::Unpriced(_)) => return Err(gateway_failure(&e)),
                Err(e) if i == 0 => return Err(gateway_failure(&e)),
                Err(_) => continue,
            };
            let max_tokens = facts.max_tokens.unwrap_or(gw.default_max_tokens);
            let estimate = price.estimate(facts.prompt_tokens, max_tokens);
            let action = llm_action(
                &agent,
                &route.name,
                protocol,
                &facts,
                max_tokens,
                estimate,
                &request,
            )?;
            // The decision is submitted to the audit log; while its group commit is in flight, obligations are
            // applied and the upstream request is built. Nothing is sent before the decision is durable.
            let staged = self
                .inner
                .governance
                .decide_staged(&action, caller.clone())
                .await;
            let mut model = route.name.clone();
            let mut prepared = None;
            if staged.decision().verdict == Verdict::Allow {
                let d = staged.decision();
                for o in &d.obligations {
                    match o {
                        Obligation::DowngradeModel { to } if *to != model => {
                            if let Ok(target) = gw.chain(to)
                                && let Some(r) = target.first()
                                && let Ok((deps, _)) = gw.plan(r, protocol, op)
                            {
                                tracing::info!(agent = %agent, from = %model, to = %to, "model downgraded by budget obligation");
                                deployments = deps;
                                model = to.clone();
                            } else {
                                tracing::warn!(to = %to, "downgrade target is not routable for this endpoint; keeping the model");
                            }
                        }
                        Obligation::Redact { findings } => {
                            if let Some(r) = d.redacted_args.as_ref().and_then(|a| a.get("request"))
                            {
                                tracing::info!(agent = %agent, findings = findings.len(), "prompt redacted before forwarding");
                                request = r.clone();
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(first) = deployments.first() {
                    prepared = gw
                        .prepare(first, protocol, op, &request, facts.stream)
                        .ok()
                        .map(|p| (first.id.clone(), p));
                }
            }
            let decided = staged.durable().await;
            let d = decided.decision;
            if d.verdict != Verdict::Allow {
                return Err(refusal(d.verdict, &d.reasons, d.retry_after));
            }
            let call = Call {
                service: self.clone(),
                agent: agent.clone(),
                caller: caller.clone(),
                decision_id: d.id.clone(),
                model: model.clone(),
                protocol,
                op,
                facts: facts.clone(),
                started,
            };
            let hit = match (cache, cache_key.as_ref()) {
                (Some(cache), Some(key)) => cache.get(key).await,
                _ => None,
            };
            if let Some(hit) = hit {
                call.settle(
                    "cache",
                    &model,
                    Usage::default(),
                    0,
                    "cached",
                    ActionOutcome::Success,
                );
                return Ok(Reply::Json {
                    status: 200,
                    body: hit,
                    cached: true,
                });
            }
            let mut watch = self.inner.governance.kernel().halts().watch(&agent);
            for dep in &deployments {
                let attempt = tokio::select! {
                    biased;
                    _ = watch.halted() => {
                        call.settle(&dep.provider, &dep.model, Usage::default(), 0, "halted", ActionOutcome::Cancelled);
                        return Err(Failure::new(403, "halted", format!("agent `{agent}` was halted")));
                    }
                    r = async {
                        match prepared.take() {
                            Some((id, p)) if id == dep.id => gw.send(dep, &p, &pass).await,
                            _ => gw.call(dep, protocol, op, &request, facts.stream, &pass).await,
                        }
                    } => r,
                };
                match attempt {
                    Ok(Upstream::Complete { status, body }) => {
                        let (body, usage) = self.complete(protocol, dep.kind, &facts, body);
                        let cost = dep.price.map_or(0, |p| p.cost(&usage));
                        if let (Some(cache), Some(key)) = (cache, cache_key) {
                            cache.put(key, body.clone()).await;
                        }
                        call.settle(
                            &dep.provider,
                            &dep.model,
                            usage,
                            cost,
                            "ok",
                            ActionOutcome::Success,
                        );
                        return Ok(Reply::Json {
                            status,
                            body,
                            cached: false,
                        });
                    }
                    Ok(Upstream::Stream(resp)) => {
                        return Ok(Reply::Stream(self.pump(call, dep.clone(), resp, watch)));
                    }
                    Err(AttemptError::Rejected { status, body }) => {
                        call.settle(
                            &dep.provider,
                            &dep.model,
                            Usage::default(),
                            0,
                            "rejected",
                            ActionOutcome::Cancelled,
                        );
                        let mut f = Failure::new(
                            status,
                            "upstream_rejected",
                            "the upstream refused the request",
                        );
                        f.upstream_body = Some(body);
                        return Err(f);
                    }
                    Err(e) => {
                        tracing::warn!(deployment = %dep.id, error = %e, "deployment failed; trying the next");
                        last = match e {
                            AttemptError::Upstream {
                                status: 429,
                                retry_after,
                                ..
                            } => {
                                let mut f = Failure::new(
                                    429,
                                    "upstream_rate_limited",
                                    "the upstream is rate limiting",
                                );
                                f.retry_after = retry_after;
                                f
                            }
                            AttemptError::BreakerOpen => Failure::new(
                                503,
                                "breaker_open",
                                "every deployment's circuit breaker is open",
                            ),
                            other => Failure::new(502, "upstream_unavailable", other.to_string()),
                        };
                    }
                }
            }
            // Every deployment failed: nothing was spent; the next fallback is decided afresh.
            call.settle(
                "-",
                &model,
                Usage::default(),
                0,
                "error",
                ActionOutcome::Failure,
            );
        }
        Err(last)
    }

    /// Usage of a complete body (counted when missing) and the body with secrets redacted when the policy says so;
    /// an answer in the deployment's format `spoken` is translated into the client's `protocol` first.
    fn complete(
        &self,
        protocol: ProviderKind,
        spoken: ProviderKind,
        facts: &RequestFacts,
        body: Bytes,
    ) -> (Bytes, Usage) {
        let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
            return (
                body,
                Usage {
                    input_tokens: facts.prompt_tokens,
                    counted: true,
                    ..Usage::default()
                },
            );
        };
        let usage = protocol::response_usage(spoken, &value).unwrap_or_else(|| Usage {
            input_tokens: facts.prompt_tokens,
            output_tokens: protocol::estimate_tokens(protocol::response_text_chars(spoken, &value)),
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            counted: true,
        });
        let mut body = body;
        if spoken != protocol {
            value = aura_gateway::translate::response(spoken, protocol, &value, &facts.model);
            if let Ok(bytes) = serde_json::to_vec(&value) {
                body = Bytes::from(bytes);
            }
        }
        if self.redact_outputs()
            && let Some(redacted) = self.inner.redactor.redacted_value(&value)
            && let Ok(bytes) = serde_json::to_vec(&redacted)
        {
            return (Bytes::from(bytes), usage);
        }
        (body, usage)
    }

    fn redact_outputs(&self) -> bool {
        self.inner.governance.kernel().policy().content().secrets != SecretsMode::Allow
    }

    /// Forwards a stream event by event; settles when it ends, is cut, goes quiet, the client leaves, the agent
    /// is halted or the server stops.
    fn pump(
        &self,
        call: Call,
        dep: Arc<Deployment>,
        resp: reqwest::Response,
        mut watch: aura_govern::halts::HaltWatch,
    ) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
        let idle = self.inner.gateway.stream_idle_timeout;
        let cancel = self.inner.cancel.clone();
        let redact = self.redact_outputs();
        let service = self.clone();
        self.inner.tasks.spawn(async move {
            let mut body = resp.bytes_stream();
            let mut parser = sse::Parser::new();
            // Usage is read in the deployment's format; events leave in the client's (translated when they differ).
            let mut meter = StreamMeter::new(dep.kind);
            let mut translator = (dep.kind != call.protocol).then(|| {
                StreamTranslator::new(dep.kind, call.protocol, &call.facts.model, call.facts.wants_stream_usage)
            });
            let status = loop {
                let next = tokio::select! {
                    biased;
                    _ = watch.halted() => {
                        let _ = tx.send(Ok(Bytes::from(error_event(call.protocol, call.op, "halted", "the agent was halted")))).await;
                        break "halted";
                    }
                    _ = cancel.cancelled() => break "cancelled",
                    n = tokio::time::timeout(idle, body.next()) => n,
                };
                let chunk = match next {
                    Ok(Some(Ok(chunk))) => chunk,
                    Ok(None) => break if meter.finished { "ok" } else { "cut" },
                    Ok(Some(Err(_))) | Err(_) => break "cut",
                };
                let events = match parser.push(&chunk) {
                    Ok(e) => e,
                    Err(_) => break "cut",
                };
                let mut out = String::new();
                for e in events {
                    let usage_only = meter.observe(&e.data);
                    match translator.as_mut() {
                        Some(t) => service.forward(&t.push(&e), redact, &mut out),
                        None if usage_only && !call.facts.wants_stream_usage => {}
                        None => service.forward(std::slice::from_ref(&e), redact, &mut out),
                    }
                }
                if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                    break "client_gone";
                }
            };
            let mut tail = String::new();
            if let Some(e) = parser.finish() {
                meter.observe(&e.data);
                if let Some(t) = translator.as_mut() {
                    service.forward(&t.push(&e), redact, &mut tail);
                }
            }
            // A translated stream is closed in the client's format once the upstream's own ended properly.
            if status == "ok"
                && let Some(t) = translator.as_mut()
            {
                service.forward(&t.finish(), redact, &mut tail);
            }
            if !tail.is_empty() && matches!(status, "ok" | "cut") {
                let _ = tx.send(Ok(Bytes::from(tail))).await;
            }
            let usage = meter.usage(call.facts.prompt_tokens);
            let cost = dep.price.map_or(0, |p| p.cost(&usage));
            let outcome = if status == "ok" { ActionOutcome::Success } else { ActionOutcome::Failure };
            if status == "cut" {
                // Tell the client in the stream's own format (SDKs raise on it), then abort the response. The
                // route's body flushes what it holds before it yields the `Err`, so the event reaches the client.
                let _ = tx.send(Ok(Bytes::from(error_event(call.protocol, call.op, "upstream_cut", "the upstream stream was cut before it finished")))).await;
                let _ = tx.send(Err(std::io::Error::other("upstream stream cut"))).await;
            }
            drop(tx);
            call.settle_now(&dep.provider, &dep.model, usage, cost, status, outcome).await;
        });
        rx
    }

    /// Appends `events` to `out`, redacted when `redact`.
    fn forward(&self, events: &[sse::Event], redact: bool, out: &mut String) {
        for e in events {
            if redact {
                out.push_str(&self.redact_event(e));
            } else {
                out.push_str(&e.raw);
            }
        }
    }

    fn redact_event(&self, e: &sse::Event) -> String {
        let redacted = self.inner.redactor.redact(&e.data);
        if redacted == e.data {
            return e.raw.clone();
        }
        let mut out = String::new();
        if let Some(name) = &e.event {
            out.push_str(&format!("event: {name}\n"));
        }
        for line in redacted.lines() {
            out.push_str(&format!("data: {line}\n"));
        }
        out.push('\n');
        out
    }
}

/// What settling one decided call needs.
struct Call {
    service: GatewayService,
    agent: AgentName,
    caller: Actor,
    decision_id: String,
    model: String,
    protocol: ProviderKind,
    op: Op,
    facts: RequestFacts,
    started: Instant,
}

impl Call {
    /// Settles in the background (owned by the service's tracker), so the answer is not held up.
    fn settle(
        &self,
        provider: &str,
        upstream: &str,
        usage: Usage,
        cost: i64,
        status: &'static str,
        outcome: ActionOutcome,
    ) {
        let call = Call {
            service: self.service.clone(),
            agent: self.agent.clone(),
            caller: self.caller.clone(),
            decision_id: self.decision_id.clone(),
            model: self.model.clone(),
            protocol: self.protocol,
            op: self.op,
            facts: self.facts.clone(),
            started: self.started,
        };
        let provider = provider.to_owned();
        let upstream = upstream.to_owned();
        self.service.inner.tasks.spawn(async move {
            call.settle_now(&provider, &upstream, usage, cost, status, outcome)
                .await;
        });
    }

    async fn settle_now(
        &self,
        provider: &str,
        upstream: &str,
        usage: Usage,
        cost: i64,
        status: &'static str,
        outcome: ActionOutcome,
    ) {
        let inner = &self.service.inner;
        let elapsed = self.started.elapsed();
        let actual = Actual {
            cost_micros: Some(cost),
            tokens: Some(usage.total()),
            effort: None,
            risk: None,
        };
        let settled = inner
            .governance
            .kernel()
            .settle(&self.decision_id, Some(&self.agent), outcome, actual)
            .await;
        let spent = match &settled {
            Ok(s) => s.spent_micros,
            Err(e) => {
                tracing::warn!(decision = %self.decision_id, error = %e, "could not settle an LLM call");
                0
            }
        };
        if let Ok(s) = &settled
            && s.spent_micros > 0
        {
            for key in &s.keys {
                let label = key
                    .rsplit_once('/')
                    .map_or(key.as_str(), |(h, _)| h)
                    .to_owned();
                metrics::counter!(super::govern::BUDGET_SPENT, "budget" => label)
                    .increment(u64::try_from(s.spent_micros).unwrap_or(0));
            }
        }
        let model = self.model.clone();
        metrics::counter!(LLM_TOKENS, "model" => model.clone(), "direction" => "input")
            .increment(usage.input_tokens);
        metrics::counter!(LLM_TOKENS, "model" => model.clone(), "direction" => "output")
            .increment(usage.output_tokens);
        metrics::counter!(LLM_TOKENS, "model" => model.clone(), "direction" => "cached")
            .increment(usage.cached_input_tokens);
        metrics::counter!(LLM_COST, "model" => model.clone())
            .increment(u64::try_from(cost).unwrap_or(0));
        metrics::histogram!(LLM_DURATION, "protocol" => self.protocol.as_str(), "status" => status)
            .record(elapsed.as_secs_f64());
        let now = inner.clock.now();
        let mut entry = audit::event(
            now,
            self.caller.clone(),
            ("llm", &model),
            "llm.settle",
            RiskLevel::Low,
            json!({
                "decision_id": self.decision_id,
                "model": model,
                "provider": provider,
                "upstream_model": upstream,
                "protocol": self.protocol.as_str(),
                "streamed": self.facts.stream,
                "status": status,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cached_input_tokens": usage.cached_input_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "usage_counted": usage.counted,
                "cost_micros": cost,
                "spent_micros": spent,
                "duration_ms": elapsed.as_millis() as u64,
            }),
        );
        entry.agent = Some(self.agent.clone());
        entry.budget_after_micros = Some(spent);
        // The settlement releases no effect: it rides with the next decisions' group commit.
        if let Err(e) = inner.audit.record_lazy(&entry, SETTLE_LINGER) {
            tracing::error!(error = %e, "could not audit an LLM call's usage");
        }
        if status == "rejected" {
            return;
        }
        let record = UsageRecord {
            id: uuid::Uuid::now_v7().to_string(),
            at: now,
            day: day_of(now),
            agent: self.agent.to_string(),
            model,
            provider: provider.to_owned(),
            upstream_model: upstream.to_owned(),
            input_tokens: i64::try_from(usage.input_tokens).unwrap_or(i64::MAX),
            output_tokens: i64::try_from(usage.output_tokens).unwrap_or(i64::MAX),
            cached_tokens: i64::try_from(usage.cached_input_tokens).unwrap_or(i64::MAX),
            cost_micros: cost,
            status: status.to_owned(),
            streamed: self.facts.stream,
            latency_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        };
        if inner
            .usage
            .send(UsageMsg::Record(Box::new(record)))
            .await
            .is_err()
        {
            tracing::warn!("usage writer stopped; a usage record was dropped");
        }
    }
}

/// Writes usage records in batches (one transaction per batch), so the store's fsync is off the call path.
async fn usage_writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<UsageMsg>,
    stop: CancellationToken,
) {
    let mut batch = Vec::new();
    let mut waiters = Vec::new();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = stop.cancelled() => rx.try_recv().ok(),
        };
        let Some(msg) = msg else { break };
        let push = |m: UsageMsg,
                    batch: &mut Vec<UsageRecord>,
                    waiters: &mut Vec<oneshot::Sender<()>>| match m {
            UsageMsg::Record(r) => batch.push(*r),
            UsageMsg::Flush(w) => waiters.push(w),
        };
        push(msg, &mut batch, &mut waiters);
        // Gather for a moment (unless someone waits for a flush or the server stops), so one store transaction
        // and its fsync carry many records instead of competing with decisions for the disk.
        let until = tokio::time::Instant::now() + USAGE_LINGER;
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(m) => push(m, &mut batch, &mut waiters),
                Err(_) if !waiters.is_empty() || stop.is_cancelled() => break,
                Err(_) => match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(m)) => push(m, &mut batch, &mut waiters),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        if let Err(e) = store.insert_usage(&batch).await {
            tracing::error!(error = %e, records = batch.len(), "could not store usage records");
        }
        batch.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

fn day_of(t: aura_core::Timestamp) -> String {
    t.to_rfc3339().chars().take(10).collect()
}

fn llm_action(
    agent: &AgentName,
    model: &str,
    protocol: ProviderKind,
    facts: &RequestFacts,
    max_tokens: u64,
    estimate: i64,
    request: &Value,
) -> Result<Action, Failure> {
    let mut labels = BTreeMap::new();
    labels.insert("gateway".to_owned(), protocol.as_str().to_owned());
    // Built field by field: `json!` would re-serialize the whole request into a new tree; a clone is a plain copy.
    let mut args = serde_json::Map::new();
    args.insert("max_tokens".into(), Value::from(max_tokens));
    args.insert("stream".into(), Value::Bool(facts.stream));
    args.insert("prompt_tokens".into(), Value::from(facts.prompt_tokens));
    args.insert("request".into(), request.clone());
    Action::extract(RawAction {
        agent: agent.clone(),
        task: None,
        kind: "llm_call".into(),
        target: model.to_owned(),
        args: Value::Object(args),
        estimate: Estimate {
            tokens: Some(facts.prompt_tokens + max_tokens),
            cost_micros: Some(estimate),
            risk: None,
            effort: None,
        },
        labels,
    })
    .map_err(|e| Failure::new(400, "invalid_request", e.to_string()))
}

fn refusal(
    verdict: Verdict,
    reasons: &[aura_core::Reason],
    retry_after: Option<Duration>,
) -> Failure {
    let why = reasons.first().map_or_else(
        || "refused by policy".to_owned(),
        |r| format!("{}: {}", r.rule, r.message),
    );
    let mut f = match verdict {
        Verdict::Halt => Failure::new(403, "halted", why),
        Verdict::Escalate => Failure::new(403, "approval_required", why),
        _ if retry_after.is_some() => Failure::new(429, "rate_limited", why),
        _ if reasons
            .first()
            .is_some_and(|r| r.message.contains("budget")) =>
        {
            Failure::new(402, "budget_exceeded", why)
        }
        _ => Failure::new(403, "denied", why),
    };
    f.retry_after = retry_after;
    f
}

fn gateway_failure(e: &GatewayError) -> Failure {
    match e {
        GatewayError::UnknownModel(_) | GatewayError::NoDeployment { .. } => {
            Failure::new(404, "model_not_found", e.to_string())
        }
        GatewayError::Unpriced(_) => Failure::new(403, "unpriced_model", e.to_string()),
        GatewayError::Config(_) => Failure::new(500, "internal", e.to_string()),
    }
}

/// An error event in the stream's own format: Anthropic's `event: error`, else a `data:` object with `error`.
fn error_event(protocol: ProviderKind, op: Op, code: &str, message: &str) -> String {
    if op == Op::Responses {
        // The Responses API's own `error` event.
        return format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "code": code, "message": message, "param": null, "sequence_number": 0})
        );
    }
    match protocol {
        ProviderKind::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": code, "message": message}})
        ),
        ProviderKind::Gemini => format!(
            "data: {}\n\n",
            json!({"error": {"code": 500, "message": message, "status": code}})
        ),
        ProviderKind::Openai => format!(
            "data: {}\n\n",
            json!({"error": {"message": message, "type": code, "code": code}})
        ),
    }
}
