//! The proxy's own answers: JSON bodies with a stable `code`, the deciding rule and its reason.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::{Response, StatusCode};

use aura_core::Verdict;
use aura_server::services::govern::Decided;

/// The body type of every proxy response.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// A body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// A JSON error answer: `{"error": {"code", "message"}}` plus `extra` fields.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: serde_json::Value,
) -> Response<Body> {
    let mut body = serde_json::json!({"error": {"code": code, "message": message}});
    if let (Some(map), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        map.extend(more);
    }
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// 407 with the challenge clients answer with `Proxy-Authorization`.
pub(crate) fn unauthenticated(message: &str) -> Response<Body> {
    let mut resp = error(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "proxy_auth_required",
        message,
        serde_json::Value::Null,
    );
    resp.headers_mut().insert(
        hyper::header::PROXY_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"aura\""),
    );
    resp
}

/// The metric outcome and the 403 answer of a decision that is not ALLOW. `guard` marks the SSRF guard's own
/// decision.
pub(crate) fn refused(decided: &Decided, guard: bool) -> (&'static str, Response<Body>) {
    let d = &decided.decision;
    let first = d.reasons.first();
    let rule = first.map_or("default_deny", |r| r.rule.as_str());
    let reason = first.map_or("denied", |r| r.message.as_str());
    let (outcome, code, message) = match (d.verdict, guard) {
        (Verdict::Escalate, _) => (
            "escalated",
            "approval_required",
            format!(
                "this request needs a human approval ({rule}: {reason}); retry the same request once approval `{}` is granted",
                d.approval_id.as_deref().unwrap_or("?")
            ),
        ),
        (Verdict::Halt, _) => ("halted", "halted", format!("{rule}: {reason}")),
        (_, true) => (
            "ssrf_blocked",
            "ssrf_blocked",
            format!(
                "{rule}: {reason} (non-public destinations need a policy rule allowing `custom` `egress/<class>/<ip>`)"
            ),
        ),
        _ => ("denied", "denied", format!("{rule}: {reason}")),
    };
    let extra = serde_json::json!({
        "verdict": d.verdict.as_str(),
        "rule": rule,
        "reason": reason,
        "reasons": d.reasons.iter().map(|r| serde_json::json!({"rule": r.rule, "message": r.message})).collect::<Vec<_>>(),
        "approval_id": d.approval_id,
        "retry_after_ms": d.retry_after.map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
        "decision_id": d.id,
        "audit_seq": decided.audit_seq,
    });
    (outcome, error(StatusCode::FORBIDDEN, code, &message, extra))
}
