//! One proxied request: authenticate, decide, guard the destination, forward (plain HTTP) or tunnel (CONNECT),
//! then settle the decision with the outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use aura_audit::{Actor, ActorKind};
use aura_core::Verdict;
use aura_core::{AgentName, Principal};
use aura_govern::kernel::{ActionOutcome, Actual};
use aura_server::services::edge;
use aura_server::services::govern::{Decided, Staged};

use crate::reply::{self, Body};
use crate::{OVERHEAD, REQUESTS, Shared};

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the proxy's own credentials: never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Handles one request on a proxy connection. Never fails: every problem is an answer.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let (outcome, resp) = match exchange(&shared, peer, req, started).await {
        Ok(resp) => ("forwarded", resp),
        Err((outcome, resp)) => (outcome, resp),
    };
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
    resp
}

type Refusal = (&'static str, Response<Body>);

fn bad_request(message: &str) -> Refusal {
    (
        "bad_request",
        reply::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            message,
            serde_json::Value::Null,
        ),
    )
}

async fn exchange(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Response<Body>, Refusal> {
    let principal = authenticate(shared, &req).await?;
    let Some(agent) = principal.agent.clone() else {
        return Err((
            "unauthenticated",
            reply::unauthenticated(&format!(
                "token `{}` acts for no agent; the proxy takes agent tokens only",
                principal.token_name
            )),
        ));
    };
    let actor = Actor {
        kind: ActorKind::Agent,
        id: format!("token:{}:{}", principal.token_id, principal.token_name),
        ip: Some(peer.ip().to_string()),
    };
    let task = req
        .headers()
        .get("x-aura-task")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .map(str::to_owned);
    if req.method() == Method::CONNECT {
        connect(shared, req, agent, task, actor, started).await
    } else {
        plain(shared, req, agent, task, actor, started).await
    }
}

async fn authenticate(shared: &Shared, req: &Request<Incoming>) -> Result<Principal, Refusal> {
    let Some(token) = crate::auth::presented(req.headers()) else {
        return Err((
            "unauthenticated",
            reply::unauthenticated(
                "send your agent token in Proxy-Authorization (Bearer TOKEN, or Basic with the token as password)",
            ),
        ));
    };
    match shared.tokens.authenticate(&token).await {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => Err((
            "unauthenticated",
            reply::unauthenticated("invalid or revoked token"),
        )),
        Err(e) => {
            tracing::error!(error = %e, "proxy could not check a token");
            Err((
                "upstream_error",
                reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the token store is unavailable",
                    serde_json::Value::Null,
                ),
            ))
        }
    }
}

/// Decides `http_request target args` and submits the decision to the audit log without waiting for it, so the
/// caller can get the effect ready meanwhile; nothing may leave before [`released`] returns the decision.
async fn decide_staged(
    shared: &Shared,
    agent: &AgentName,
    task: Option<&str>,
    target: &str,
    args: serde_json::Value,
    actor: Actor,
) -> Result<Staged, Refusal> {
    let action = edge::action(agent, task, "http_request", target, args).map_err(|e| {
        (
            "bad_request",
            reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_action",
                &e.to_string(),
                serde_json::Value::Null,
            ),
        )
    })?;
    Ok(shared.governance.decide_staged(&action, actor).await)
}

/// Waits until the decision's audit entry passes the effect gate (`audit.effect_gate`); a refusal for anything but
/// ALLOW (an entry that cannot be recorded turns the decision into DENY `audit_unavailable`).
async fn released(staged: Staged) -> Result<Decided, Refusal> {
    let decided = staged.durable().await;
    if edge::allowed(&decided) {
        Ok(decided)
    } else {
        Err(reply::refused(&decided, false))
    }
}

/// Decides `http_request target args` and waits for the audit record; a refusal for anything but ALLOW.
async fn decide(
    shared: &Shared,
    agent: &AgentName,
    task: Option<&str>,
    target: &str,
    args: serde_json::Value,
    actor: Actor,
) -> Result<Decided, Refusal> {
    released(decide_staged(shared, agent, task, target, args, actor).await?).await
}

/// The SSRF guard folded into the request's own decision, for a destination known without DNS that the policy
/// allows whatever the counters (`services::edge::egress_pass`): the request is then decided once, with the
/// allowance in its args, instead of a second durable decision on `custom` `egress/<class>/<ip>`.
fn pre_guard(
    shared: &Shared,
    agent: &AgentName,
    task: Option<&str>,
    host: &str,
    port: u16,
) -> Option<edge::EgressPass> {
    let addr = edge::known_address(host, port)?;
    edge::egress_pass(
        &shared.governance,
        shared.tokens.now(),
        agent,
        task,
        host,
        addr,
    )
}

/// Resolves once and runs the SSRF guard; the address to connect to.
async fn destination(
    shared: &Shared,
    agent: &AgentName,
    task: Option<&str>,
    host: &str,
    port: u16,
    actor: Actor,
    decided: &Decided,
) -> Result<SocketAddr, Refusal> {
    let addr = match edge::resolve(host, port).await {
        Ok(addr) => addr,
        Err(e) => {
            cancel(shared, decided);
            return Err((
                "upstream_error",
                reply::error(
                    StatusCode::BAD_GATEWAY,
                    "unresolvable",
                    &e.to_string(),
                    serde_json::Value::Null,
                ),
            ));
        }
    };
    if let Some(guard) = edge::guard_egress(
        &shared.governance,
        agent,
        task,
        host,
        addr,
        &decided.decision.id,
        actor,
    )
    .await
        && !edge::allowed(&guard)
    {
        cancel(shared, decided);
        return Err(reply::refused(&guard, true));
    }
    Ok(addr)
}

async fn dial(shared: &Shared, addr: SocketAddr, decided: &Decided) -> Result<TcpStream, Refusal> {
    let connected = tokio::time::timeout(shared.connect_timeout, TcpStream::connect(addr)).await;
    match connected {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => {
            settle(shared, decided, ActionOutcome::Failure);
            Err(upstream(&format!("cannot connect to {addr}: {e}")))
        }
        Err(_) => {
            settle(shared, decided, ActionOutcome::Failure);
            Err(upstream(&format!(
                "connecting to {addr} took longer than {} s",
                shared.connect_timeout.as_secs()
            )))
        }
    }
}

fn upstream(message: &str) -> Refusal {
    (
        "upstream_error",
        reply::error(
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            message,
            serde_json::Value::Null,
        ),
    )
}

async fn plain(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    agent: AgentName,
    task: Option<String>,
    actor: Actor,
    started: Instant,
) -> Result<Response<Body>, Refusal> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return Err(bad_request(
            "send absolute http:// URLs to the proxy (HTTP_PROXY), and https:// through CONNECT (HTTPS_PROXY)",
        ));
    }
    let Some(host) = uri.host().map(str::to_owned) else {
        return Err(bad_request("the request URL has no host"));
    };
    let port = uri.port_u16().unwrap_or(80);
    let (parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > shared.max_body_bytes
    {
        return Err(too_large(shared.max_body_bytes));
    }
    let limit = usize::try_from(shared.max_body_bytes).unwrap_or(usize::MAX);
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large(shared.max_body_bytes));
            }
            return Err(bad_request(&format!(
                "could not read the request body: {e}"
            )));
        }
    };
    let body_hash = hex::encode(Sha256::digest(&body));
    let mut args = serde_json::json!({
        "method": parts.method.as_str(),
        "body_sha256": body_hash,
        "body_bytes": body.len(),
    });
    let pass = pre_guard(shared, &agent, task.as_deref(), &host, port);
    if let Some(p) = &pass {
        args["egress"] = p.to_json();
    }
    let out = outbound(&parts, &uri, body).map_err(|e| bad_request(&e.to_string()))?;
    let staged = decide_staged(
        shared,
        &agent,
        task.as_deref(),
        &uri.to_string(),
        args,
        actor.clone(),
    )
    .await?;
    // While the decision's audit entry is being written, take an idle connection to the address the guard
    // approved; the request is sent on it only once the decision is released.
    let pooled = match &pass {
        Some(p) if staged.decision().verdict == Verdict::Allow => shared.pool.take(p.addr, &host),
        _ => None,
    };
    let decided = match released(staged).await {
        Ok(decided) => decided,
        Err(refusal) => {
            if let (Some(sender), Some(p)) = (pooled, &pass) {
                shared.pool.put(p.addr, host, sender);
            }
            return Err(refusal);
        }
    };
    let addr = match &pass {
        Some(p) => p.addr,
        None => {
            destination(
                shared,
                &agent,
                task.as_deref(),
                &host,
                port,
                actor,
                &decided,
            )
            .await?
        }
    };
    let mut sender = match pooled.or_else(|| shared.pool.take(addr, &host)) {
        Some(sender) => sender,
        None => {
            let stream = dial(shared, addr, &decided).await?;
            let (sender, conn) = hyper::client::conn::http1::Builder::new()
                .preserve_header_case(true)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| {
                    settle(shared, &decided, ActionOutcome::Failure);
                    upstream(&format!("handshake with {addr} failed: {e}"))
                })?;
            let stop = shared.stop.clone();
            shared.tasks.spawn(async move {
                tokio::select! {
                    result = conn => if let Err(e) = result {
                        tracing::debug!(error = %e, "target connection ended with an error");
                    },
                    () = stop.cancelled() => {}
                }
            });
            sender
        }
    };
    metrics::histogram!(OVERHEAD).record(started.elapsed().as_secs_f64());
    let answered = tokio::time::timeout(shared.request_timeout, sender.send_request(out)).await;
    let resp = match answered {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            settle(shared, &decided, ActionOutcome::Failure);
            return Err(upstream(&format!("{addr} failed to answer: {e}")));
        }
        Err(_) => {
            settle(shared, &decided, ActionOutcome::Failure);
            return Err((
                "upstream_error",
                reply::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    &format!(
                        "{addr} did not answer within {} s",
                        shared.request_timeout.as_secs()
                    ),
                    serde_json::Value::Null,
                ),
            ));
        }
    };
    shared.pool.put(addr, host, sender);
    let outcome = if resp.status().is_server_error() {
        ActionOutcome::Failure
    } else {
        ActionOutcome::Success
    };
    settle(shared, &decided, outcome);
    let (mut head, body) = resp.into_parts();
    for name in &HOP_BY_HOP {
        head.headers.remove(name);
    }
    Ok(Response::from_parts(head, body.boxed()))
}

/// The request to send to the target: origin-form URL, the client's end-to-end headers, `Host` if it sent none.
fn outbound(
    parts: &hyper::http::request::Parts,
    uri: &Uri,
    body: bytes::Bytes,
) -> Result<Request<Body>, hyper::http::Error> {
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(origin_form(uri))
        .version(hyper::Version::HTTP_11)
        .body(reply::full(body))?;
    let headers = out.headers_mut();
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) && !connection_listed(&parts.headers, name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, value);
    }
    Ok(out)
}

fn too_large(limit: u64) -> Refusal {
    (
        "too_large",
        reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!(
                "request bodies through the proxy are limited to {limit} bytes (proxy.max_body_bytes)"
            ),
            serde_json::Value::Null,
        ),
    )
}

/// Headers named in `Connection` are hop-by-hop too.
fn connection_listed(headers: &hyper::HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query().map_or_else(
        || Uri::from_static("/"),
        |pq| Uri::try_from(pq.as_str()).unwrap_or_else(|_| Uri::from_static("/")),
    )
}

async fn connect(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    agent: AgentName,
    task: Option<String>,
    actor: Actor,
    started: Instant,
) -> Result<Response<Body>, Refusal> {
    let Some(authority) = req.uri().authority().cloned() else {
        return Err(bad_request("CONNECT needs host:port"));
    };
    let host = authority.host().to_owned();
    let Some(port) = authority.port_u16() else {
        return Err(bad_request("CONNECT needs host:port"));
    };
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}/")
    } else {
        format!("https://{host}:{port}/")
    };
    // The extractor knows the methods of requests, not CONNECT: a tunnel is decided on `https://host:port/` with
    // `args.tunnel = true` (policies can match it), the method left at its default.
    let mut args = serde_json::json!({"tunnel": true});
    let pass = pre_guard(shared, &agent, task.as_deref(), &host, port);
    if let Some(p) = &pass {
        args["egress"] = p.to_json();
    }
    let decided = decide(
        shared,
        &agent,
        task.as_deref(),
        &target,
        args,
        actor.clone(),
    )
    .await?;
    let addr = match &pass {
        Some(p) => p.addr,
        None => {
            destination(
                shared,
                &agent,
                task.as_deref(),
                &host,
                port,
                actor,
                &decided,
            )
            .await?
        }
    };
    let stream = dial(shared, addr, &decided).await?;
    metrics::histogram!(OVERHEAD).record(started.elapsed().as_secs_f64());
    let upgrade = hyper::upgrade::on(req);
    let tunnel_shared = shared.clone();
    let stop = shared.stop.clone();
    shared.tasks.spawn(async move {
        let mut target = stream;
        let (outcome, up, down) = match upgrade.await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client, &mut target) => match copied {
                        Ok((up, down)) => (ActionOutcome::Success, up, down),
                        Err(e) => {
                            tracing::debug!(error = %e, "tunnel ended with an error");
                            (ActionOutcome::Success, 0, 0)
                        }
                    },
                    () = stop.cancelled() => (ActionOutcome::Cancelled, 0, 0),
                    () = halted(&tunnel_shared, &agent) => {
                        tracing::info!(agent = %agent, "agent halted: tunnel cut");
                        metrics::counter!(REQUESTS, "outcome" => "tunnel_cut").increment(1);
                        (ActionOutcome::Cancelled, 0, 0)
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT upgrade failed");
                (ActionOutcome::Cancelled, 0, 0)
            }
        };
        tracing::debug!(up, down, "tunnel closed");
        settle_now(&tunnel_shared, &decided, outcome).await;
    });
    let mut resp = Response::new(reply::empty());
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

/// How long a settlement's audit entry may wait for a decision to share its write with.
const SETTLE_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// How often an open tunnel checks whether its agent was halted.
const HALT_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Resolves once `agent` is halted (not merely paused: a halt cancels what is in flight, open tunnels included).
async fn halted(shared: &Shared, agent: &AgentName) {
    let mut every = tokio::time::interval(HALT_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if shared
            .governance
            .kernel()
            .halts()
            .status(agent)
            .is_some_and(|h| h.state == aura_govern::halts::HaltState::Halted)
        {
            return;
        }
    }
}

/// Releases an allowed decision whose request never left.
fn cancel(shared: &Shared, decided: &Decided) {
    settle(shared, decided, ActionOutcome::Cancelled);
}

/// Settles in an owned task, off the response path.
fn settle(shared: &Shared, decided: &Decided, outcome: ActionOutcome) {
    let governance = shared.governance.clone();
    let id = decided.decision.id.clone();
    shared.tasks.spawn(async move {
        settle_with(&governance, &id, outcome).await;
    });
}

async fn settle_now(shared: &Shared, decided: &Decided, outcome: ActionOutcome) {
    settle_with(&shared.governance, &decided.decision.id, outcome).await;
}

async fn settle_with(
    governance: &aura_server::services::govern::Governance,
    id: &str,
    outcome: ActionOutcome,
) {
    let caller = Actor {
        kind: ActorKind::System,
        id: "aura-proxy".into(),
        ip: None,
    };
    // The settlement follows the effect and releases nothing: it rides with the next decisions' audit write.
    if let Err(e) = governance
        .settle_lazy(id, None, outcome, Actual::default(), caller, SETTLE_LINGER)
        .await
    {
        tracing::warn!(decision = %id, error = %e, "proxy could not settle a decision");
    }
}
