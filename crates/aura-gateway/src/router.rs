//! Routing: model names to deployments (weighted round robin among healthy ones), ordered fallbacks to other
//! models, one upstream attempt with retries on 429, 5xx and timeouts (honouring `Retry-After`), a circuit
//! breaker per deployment, and per-attempt timeouts.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aura_config::{GatewayConfig, RetryConfig};
use aura_core::Clock;
use bytes::Bytes;
use serde_json::Value;

use crate::ProviderKind;
use crate::pricing::{Price, Pricing};
use crate::protocol::{self, Op};
use crate::translate;

/// Why the gateway cannot serve a model at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No route has this name.
    #[error("model `{0}` is not served by this gateway")]
    UnknownModel(String),
    /// The route has no deployment speaking the endpoint's format.
    #[error("model `{model}` has no deployment speaking the {protocol} format")]
    NoDeployment {
        /// The model.
        model: String,
        /// The format.
        protocol: &'static str,
    },
    /// A deployment's model has no price (fail closed).
    #[error("model `{0}` has no price; add it under gateway.pricing")]
    Unpriced(String),
    /// The configuration is unusable.
    #[error("gateway configuration: {0}")]
    Config(String),
}

/// Why one deployment could not serve a call (after its retries).
#[derive(Debug)]
pub enum AttemptError {
    /// The upstream kept answering 429 or 5xx; `retry_after` as it last said.
    Upstream {
        /// The last status.
        status: u16,
        /// The last body.
        body: Bytes,
        /// The last `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The upstream refused the request itself (4xx other than 429): not retried, not failed over.
    Rejected {
        /// The status.
        status: u16,
        /// The body.
        body: Bytes,
    },
    /// Timed out or could not connect, every try.
    Unreachable(String),
    /// The deployment's breaker is open.
    BreakerOpen,
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Upstream { status, .. } => write!(f, "upstream answered {status}"),
            AttemptError::Rejected { status, .. } => {
                write!(f, "upstream rejected the request ({status})")
            }
            AttemptError::Unreachable(why) => write!(f, "upstream unreachable: {why}"),
            AttemptError::BreakerOpen => f.write_str("circuit breaker open"),
        }
    }
}

/// A successful upstream answer.
#[derive(Debug)]
pub enum Upstream {
    /// A complete body.
    Complete {
        /// The status (2xx).
        status: u16,
        /// The body.
        body: Bytes,
    },
    /// A stream still arriving.
    Stream(reqwest::Response),
}

/// An upstream request built for one deployment, not yet sent.
#[derive(Debug, Clone)]
pub struct Prepared {
    url: String,
    payload: Bytes,
    stream: bool,
}

/// One place a model is served. The API key never appears in `Debug`.
pub struct Deployment {
    /// `provider/model`.
    pub id: String,
    /// The provider's name.
    pub provider: String,
    /// Its wire format.
    pub kind: ProviderKind,
    /// The model upstream.
    pub model: String,
    /// Its price.
    pub price: Option<Price>,
    base_url: String,
    api_key: Option<String>,
    /// Share of the route's traffic.
    pub weight: u32,
    breaker: Breaker,
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.id)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// Whether the breaker lets a call through now.
    pub fn available(&self) -> bool {
        self.breaker.peek()
    }
}

/// A model name and where it is served.
#[derive(Debug)]
pub struct Route {
    /// The model name.
    pub name: String,
    /// Deployments, by index.
    deployments: Vec<usize>,
    /// Weighted slots for round robin.
    slots: Vec<usize>,
    cursor: AtomicUsize,
    /// Fallback model names, in order.
    pub fallbacks: Vec<String>,
}

/// The gateway: routes, deployments, the HTTP client and the retry settings.
#[derive(Debug)]
pub struct Gateway {
    routes: HashMap<String, Route>,
    deployments: Vec<Arc<Deployment>>,
    client: reqwest::Client,
    /// State of the backoff jitter (xorshift), seeded from the clock at start.
    jitter: AtomicU64,
    retries: RetryConfig,
    timeout: Duration,
    /// Bound on a quiet stream.
    pub stream_idle_timeout: Duration,
    /// Output tokens reserved when a request sets none.
    pub default_max_tokens: u64,
}

impl Gateway {
    /// Builds the gateway from its configuration; `env` reads provider keys (`api_key_env`); breakers and
    /// backoff jitter read time from `clock`.
    pub fn from_config(
        config: &GatewayConfig,
        env: impl Fn(&str) -> Option<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Gateway, GatewayError> {
        config.validate().map_err(GatewayError::Config)?;
        let pricing = Pricing::new(&config.pricing);
        let providers: HashMap<&str, &aura_config::ProviderConfig> = config
            .providers
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        let mut deployments = Vec::new();
        let mut routes = HashMap::new();
        for m in &config.models {
            let mut idx = Vec::new();
            let mut slots = Vec::new();
            for d in &m.deployments {
                let p = providers.get(d.provider.as_str()).ok_or_else(|| {
                    GatewayError::Config(format!("unknown provider `{}`", d.provider))
                })?;
                let api_key = match &p.api_key_env {
                    Some(var) => Some(env(var).ok_or_else(|| {
                        GatewayError::Config(format!(
                            "provider `{}`: environment variable `{var}` (api_key_env) is not set",
                            p.name
                        ))
                    })?),
                    None => None,
                };
                let i = deployments.len();
                deployments.push(Arc::new(Deployment {
                    id: format!("{}/{}", p.name, d.model),
                    provider: p.name.clone(),
                    kind: p.kind,
                    model: d.model.clone(),
                    price: pricing.get(&d.model),
                    base_url: p.base_url.trim_end_matches('/').to_owned(),
                    api_key,
                    weight: d.weight,
                    breaker: Breaker::new(
                        config.breaker.failures.max(1),
                        Duration::from_secs(config.breaker.cooldown_seconds),
                        clock.clone(),
                    ),
                }));
                idx.push(i);
                for _ in 0..d.weight {
                    slots.push(i);
                }
            }
            routes.insert(
                m.name.clone(),
                Route {
                    name: m.name.clone(),
                    deployments: idx,
                    slots,
                    cursor: AtomicUsize::new(0),
                    fallbacks: m.fallbacks.clone(),
                },
            );
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| GatewayError::Config(format!("http client: {e}")))?;
        let seed =
            u64::try_from(clock.now().as_millis()).unwrap_or(1) ^ u64::from(std::process::id());
        Ok(Gateway {
            routes,
            deployments,
            client,
            jitter: AtomicU64::new(seed | 1),
            retries: config.retries.clone(),
            timeout: Duration::from_secs(config.timeout_seconds),
            stream_idle_timeout: Duration::from_secs(config.stream_idle_timeout_seconds),
            default_max_tokens: config.default_max_tokens,
        })
    }

    /// A gateway that serves nothing (no `gateway` section).
    pub fn empty() -> Gateway {
        Gateway {
            routes: HashMap::new(),
            deployments: Vec::new(),
            client: reqwest::Client::new(),
            jitter: AtomicU64::new(1),
            retries: RetryConfig::default(),
            timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(60),
            default_max_tokens: 4096,
        }
    }

    /// Model names served, sorted.
    pub fn models(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The route named `model` followed by its fallbacks, in order.
    pub fn chain(&self, model: &str) -> Result<Vec<&Route>, GatewayError> {
        let first = self
            .routes
            .get(model)
            .ok_or_else(|| GatewayError::UnknownModel(model.to_owned()))?;
        let mut out = vec![first];
        for f in &first.fallbacks {
            if let Some(r) = self.routes.get(f) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The deployments of `route` that can serve a call in `protocol`'s format, in the order to try them:
    /// weighted round robin among those whose breaker is closed. A chat call, plain or streamed, may also go to
    /// a deployment of another provider whose format is translated ([`translate::can_translate`]); other
    /// operations only to the same format. Also the highest price among them (what a reservation must cover);
    /// an unpriced deployment fails closed.
    pub fn plan(
        &self,
        route: &Route,
        protocol: ProviderKind,
        op: Op,
    ) -> Result<(Vec<Arc<Deployment>>, Price), GatewayError> {
        let n = route.slots.len().max(1);
        let start = route.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<usize> = Vec::with_capacity(route.deployments.len());
        for k in 0..route.slots.len() {
            let i = route.slots[(start + k) % n];
            if !order.contains(&i) {
                order.push(i);
            }
        }
        let matching: Vec<Arc<Deployment>> = order
            .into_iter()
            .filter_map(|i| self.deployments.get(i).cloned())
            .filter(|d| {
                d.kind == protocol || (op == Op::Chat && translate::can_translate(protocol, d.kind))
            })
            .collect();
        if matching.is_empty() {
            return Err(GatewayError::NoDeployment {
                model: route.name.clone(),
                protocol: protocol.as_str(),
            });
        }
        let mut max = Price {
            input: 0,
            output: 0,
            cached_input: 0,
            cache_write: 0,
            audio_per_minute: 0,
        };
        for d in &matching {
            let p = d
                .price
                .ok_or_else(|| GatewayError::Unpriced(d.model.clone()))?;
            max.input = max.input.max(p.input);
            max.output = max.output.max(p.output);
            max.cached_input = max.cached_input.max(p.cached_input);
            max.cache_write = max.cache_write.max(p.cache_write);
        }
        let (mut healthy, open): (Vec<_>, Vec<_>) =
            matching.into_iter().partition(|d| d.available());
        healthy.extend(open);
        Ok((healthy, max))
    }

    /// One call to `dep`, retried on 429, 5xx and timeouts with backoff (a `Retry-After` wins, capped at
    /// `max_backoff_ms`; a longer one gives up on this deployment). Headers named in `pass` are forwarded.
    /// `body` is in `from`'s format (translated when the deployment speaks another).
    pub async fn call(
        &self,
        dep: &Deployment,
        from: ProviderKind,
        op: Op,
        body: &Value,
        stream: bool,
        pass: &[(String, String)],
    ) -> Result<Upstream, AttemptError> {
        let prepared = self.prepare(dep, from, op, body, stream)?;
        self.send(dep, &prepared, pass).await
    }

    /// Builds the upstream request of `op` for `dep` (URL and serialized body) without sending it, so it can be
    /// prepared while the decision is being made durable.
    pub fn prepare(
        &self,
        dep: &Deployment,
        from: ProviderKind,
        op: Op,
        body: &Value,
        stream: bool,
    ) -> Result<Prepared, AttemptError> {
        let url = format!(
            "{}{}",
            dep.base_url,
            protocol::upstream_path(dep.kind, op, &dep.model, stream)
        );
        let upstream = if dep.kind == from {
            protocol::upstream_body(dep.kind, op, body, &dep.model, stream)
        } else {
            let mut translated = translate::request(from, dep.kind, body, self.default_max_tokens);
            // A Gemini client streams by its URL; OpenAI and Anthropic deployments want `stream` in the body.
            if let Value::Object(map) = &mut translated {
                if stream && dep.kind != ProviderKind::Gemini {
                    map.insert("stream".into(), Value::Bool(true));
                } else {
                    map.remove("stream");
                }
            }
            protocol::upstream_body(dep.kind, op, &translated, &dep.model, stream)
        };
        let payload = Bytes::from(
            serde_json::to_vec(&upstream).map_err(|e| AttemptError::Unreachable(e.to_string()))?,
        );
        Ok(Prepared {
            url,
            payload,
            stream,
        })
    }

    /// Sends a prepared request to `dep`, with the retries, backoff and breaker of [`Gateway::call`].
    pub async fn send(
        &self,
        dep: &Deployment,
        prepared: &Prepared,
        pass: &[(String, String)],
    ) -> Result<Upstream, AttemptError> {
        let (url, payload, stream) = (&prepared.url, &prepared.payload, prepared.stream);
        let mut last = AttemptError::Unreachable("no attempt made".into());
        for attempt in 0..=self.retries.max_retries {
            if !dep.breaker.allow() {
                return Err(AttemptError::BreakerOpen);
            }
            let mut req = self
                .client
                .post(url.as_str())
                .header("content-type", "application/json")
                .body(payload.clone());
            req = match (dep.kind, &dep.api_key) {
                (ProviderKind::Openai, Some(k)) => req.bearer_auth(k),
                (ProviderKind::Anthropic, Some(k)) => req.header("x-api-key", k),
                (ProviderKind::Gemini, Some(k)) => req.header("x-goog-api-key", k),
                (_, None) => req,
            };
            if dep.kind == ProviderKind::Anthropic
                && !pass.iter().any(|(k, _)| k == "anthropic-version")
            {
                req = req.header("anthropic-version", "2023-06-01");
            }
            for (k, v) in pass {
                req = req.header(k.as_str(), v.as_str());
            }
            let retry_after = match tokio::time::timeout(self.timeout, req.send()).await {
                Err(_) => {
                    dep.breaker.record(false);
                    last = AttemptError::Unreachable(format!(
                        "no response within {} s",
                        self.timeout.as_secs()
                    ));
                    None
                }
                Ok(Err(e)) => {
                    dep.breaker.record(false);
                    last = AttemptError::Unreachable(without_url(&e));
                    None
                }
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    if resp.status().is_success() {
                        if stream {
                            dep.breaker.record(true);
                            return Ok(Upstream::Stream(resp));
                        }
                        match tokio::time::timeout(self.timeout, resp.bytes()).await {
                            Ok(Ok(body)) => {
                                dep.breaker.record(true);
                                return Ok(Upstream::Complete { status, body });
                            }
                            Ok(Err(e)) => {
                                dep.breaker.record(false);
                                last = AttemptError::Unreachable(without_url(&e));
                            }
                            Err(_) => {
                                dep.breaker.record(false);
                                last = AttemptError::Unreachable("response body timed out".into());
                            }
                        }
                        None
                    } else if status == 429 || status >= 500 {
                        let after = retry_after(resp.headers());
                        if status >= 500 {
                            dep.breaker.record(false);
                        } else {
                            dep.breaker.release_probe();
                        }
                        let body = resp.bytes().await.unwrap_or_default();
                        last = AttemptError::Upstream {
                            status,
                            body,
                            retry_after: after,
                        };
                        after
                    } else {
                        dep.breaker.release_probe();
                        let body = resp.bytes().await.unwrap_or_default();
                        return Err(AttemptError::Rejected { status, body });
                    }
                }
            };
            if attempt == self.retries.max_retries {
                break;
            }
            let max = Duration::from_millis(self.retries.max_backoff_ms);
            let wait = match retry_after {
                Some(after) if after > max => break,
                Some(after) => after,
                None => backoff(self.retries.backoff_ms, attempt, self.next_random()).min(max),
            };
            tracing::debug!(deployment = %dep.id, attempt, wait_ms = wait.as_millis() as u64, "retrying upstream");
            tokio::time::sleep(wait).await;
        }
        Err(last)
    }
}

impl Gateway {
    /// The next value of the jitter generator (xorshift64; not for secrets).
    fn next_random(&self) -> u64 {
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        x
    }
}

/// The error without the URL (it may carry a query key).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// Exponential backoff with up to 25 % jitter (`random` picks it).
fn backoff(base_ms: u64, attempt: u32, random: u64) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << attempt.min(16));
    let jitter = if exp >= 4 { random % (exp / 4) } else { 0 };
    Duration::from_millis(exp + jitter)
}

/// `retry-after-ms` (OpenAI), else `retry-after` in seconds or as an HTTP date (treated as 1 s).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_micros((ms * 1000.0) as u64));
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_millis((s * 1000.0) as u64)),
        _ => Some(Duration::from_secs(1)),
    }
}

/// A consecutive-failure breaker: opens after `threshold` failures, lets one probe through after `cooldown`.
/// Time comes from the injected clock.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    clock: Arc<dyn Clock>,
    failures: AtomicU32,
    /// Open until this time (milliseconds of the clock).
    open_until: Mutex<Option<i64>>,
    probing: AtomicBool,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration, clock: Arc<dyn Clock>) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            clock,
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
            probing: AtomicBool::new(false),
        }
    }

    fn until(&self) -> Option<i64> {
        *self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        self.clock.now().as_millis()
    }

    /// Closed, or open with its cooldown over (without taking the probe).
    fn peek(&self) -> bool {
        self.until().is_none_or(|u| self.now() >= u)
    }

    fn allow(&self) -> bool {
        match self.until() {
            None => true,
            Some(u) if self.now() < u => false,
            Some(_) => self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
        }
    }

    fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    fn record(&self, success: bool) {
        let mut open = self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if success {
            self.failures.store(0, Ordering::Relaxed);
            *open = None;
        } else {
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.threshold || open.is_some() {
                let cooldown = i64::try_from(self.cooldown.as_millis()).unwrap_or(i64::MAX);
                *open = Some(self.now().saturating_add(cooldown));
                tracing::warn!(
                    failures = n,
                    "circuit breaker opened for an upstream deployment"
                );
            }
        }
        self.probing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual() -> Arc<aura_core::ManualClock> {
        Arc::new(aura_core::ManualClock::new(
            aura_core::Timestamp::from_millis(1_000),
        ))
    }

    /// A route of all three providers: a chat call of any format may go to each (the reservation covers the
    /// dearest), other operations only to their own format; the prepared request is in the deployment's format.
    #[test]
    fn chat_plans_span_formats_and_prepare_translates() {
        use serde_json::json;
        let config: GatewayConfig = serde_json::from_value(json!({
            "providers": [{"name": "o", "kind": "openai", "base_url": "http://o"},
                {"name": "a", "kind": "anthropic", "base_url": "http://a"},
                {"name": "g", "kind": "gemini", "base_url": "http://g/"}],
            "models": [{"name": "mixed", "deployments": [{"provider": "o", "model": "gpt-4o-mini"},
                {"provider": "a", "model": "claude-3-5-haiku-latest"}, {"provider": "g", "model": "gemini-2.0-flash"}]}]
        }))
        .unwrap();
        // The HTTP client needs a TLS provider (the binary installs one at start).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let gw = Gateway::from_config(&config, |_| None, manual()).unwrap();
        let route = gw.chain("mixed").unwrap()[0];
        let dearest = |f: fn(&Price) -> i64| {
            gw.deployments
                .iter()
                .map(|d| f(&d.price.unwrap()))
                .max()
                .unwrap()
        };
        for protocol in [
            ProviderKind::Openai,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            let (deps, price) = gw.plan(route, protocol, Op::Chat).unwrap();
            assert_eq!(deps.len(), 3, "{protocol:?}");
            assert_eq!(price.input, dearest(|p| p.input));
            assert_eq!(price.output, dearest(|p| p.output));
        }
        let (deps, _) = gw
            .plan(route, ProviderKind::Openai, Op::Embeddings)
            .unwrap();
        assert_eq!(deps.len(), 1);
        let (deps, _) = gw.plan(route, ProviderKind::Openai, Op::Responses).unwrap();
        assert_eq!(deps.len(), 1);
        let dep = |kind| gw.deployments.iter().find(|d| d.kind == kind).unwrap();
        let openai = json!({"model": "mixed", "stream": true, "stream_options": {"include_usage": false},
            "messages": [{"role": "user", "content": "Hi"}]});
        let p = gw
            .prepare(
                dep(ProviderKind::Gemini),
                ProviderKind::Openai,
                Op::Chat,
                &openai,
                true,
            )
            .unwrap();
        assert_eq!(
            p.url,
            "http://g/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(
            body,
            json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
        );
        let plain = gw
            .prepare(
                dep(ProviderKind::Gemini),
                ProviderKind::Openai,
                Op::Chat,
                &openai,
                false,
            )
            .unwrap();
        assert!(
            plain.url.ends_with("/gemini-2.0-flash:generateContent"),
            "{}",
            plain.url
        );
        let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
        let p = gw
            .prepare(
                dep(ProviderKind::Openai),
                ProviderKind::Gemini,
                Op::Chat,
                &gemini,
                true,
            )
            .unwrap();
        assert_eq!(p.url, "http://o/v1/chat/completions");
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(
            (
                &body["model"],
                &body["stream"],
                &body["stream_options"]["include_usage"]
            ),
            (&json!("gpt-4o-mini"), &json!(true), &json!(true)),
            "{body}"
        );
        let p = gw
            .prepare(
                dep(ProviderKind::Anthropic),
                ProviderKind::Gemini,
                Op::Chat,
                &gemini,
                false,
            )
            .unwrap();
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        assert!(body.get("stream").is_none(), "{body}");
        assert_eq!(body["max_tokens"], gw.default_max_tokens);
    }

    #[test]
    fn breaker_opens_after_failures_and_probes_after_cooldown() {
        let b = Breaker::new(2, Duration::ZERO, manual());
        assert!(b.allow());
        b.record(false);
        assert!(b.allow());
        b.record(false);
        // Cooldown zero: one probe at a time.
        assert!(b.allow());
        assert!(!b.allow());
        b.record(true);
        assert!(b.allow() && b.allow());
        let long = Breaker::new(1, Duration::from_secs(3600), manual());
        long.record(false);
        assert!(!long.allow());
        assert!(!long.peek());
    }

    #[test]
    fn breaker_cooldown_follows_the_injected_clock() {
        let clock = manual();
        let b = Breaker::new(2, Duration::from_secs(30), clock.clone());
        b.record(false);
        b.record(false);
        assert!(!b.allow() && !b.peek(), "open after two failures");
        clock.advance(29_999);
        assert!(
            !b.allow(),
            "still cooling down one millisecond before the end"
        );
        clock.advance(1);
        assert!(b.peek());
        assert!(b.allow(), "the cooldown is over: one probe");
        assert!(!b.allow(), "only one probe at a time");
        // The probe fails: open again for a whole cooldown from now.
        b.record(false);
        assert!(!b.allow());
        clock.advance(30_000);
        assert!(b.allow());
        b.record(true);
        assert!(b.allow() && b.allow(), "closed after a successful probe");
    }

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter() {
        for random in [0u64, 7, u64::MAX] {
            let d = backoff(100, 0, random).as_millis();
            assert!((100..125).contains(&d), "{d}");
            let d = backoff(100, 3, random).as_millis();
            assert!((800..1000).contains(&d), "{d}");
        }
        assert_eq!(backoff(2, 0, 99), Duration::from_millis(2));
    }

    #[test]
    fn retry_after_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
    }
}
