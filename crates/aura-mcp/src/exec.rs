//! Governed execution: each tool builds the action it is, asks the kernel, runs only on ALLOW, and settles with
//! the outcome. Answers are bounded and say when they were cut.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt as _;

use crate::handler::text;
use crate::{Agent, HubInner, Verdict};

/// A tool error the model reads.
pub(crate) fn tool_error(message: &str) -> CallToolResult {
    CallToolResult::error(text(message.to_owned()))
}

/// A refusal by the kernel, as a tool error naming verdict, rule and reason (and the approval to wait on).
pub(crate) fn refusal(v: &Verdict) -> CallToolResult {
    let mut body = json!({
        "refused": true,
        "verdict": v.verdict,
        "rule": v.rule,
        "reason": v.reason,
        "audit_seq": v.audit_seq,
    });
    if let Some(id) = &v.approval_id {
        body["approval_id"] = json!(id);
        body["next"] = json!("a human must approve this; retry the identical call once approved");
    }
    let mut result = CallToolResult::error(text(format!(
        "{} by policy: {} ({}){}",
        match v.verdict.as_str() {
            "halt" => "halted",
            "escalate" => "needs approval",
            _ => "denied",
        },
        v.reason,
        v.rule,
        v.approval_id
            .as_deref()
            .map(|a| format!("; approval id {a}"))
            .unwrap_or_default()
    )));
    result.structured_content = Some(body);
    result
}

/// A JSON answer, cut to `limit` bytes (the answer says so when cut).
pub(crate) fn json_result(value: &Value, limit: usize) -> CallToolResult {
    let full = serde_json::to_string_pretty(value).unwrap_or_default();
    if full.len() <= limit {
        let mut result = CallToolResult::success(text(full));
        result.structured_content = Some(value.clone());
        return result;
    }
    let cut = floor_char(&full, limit);
    CallToolResult::success(text(format!(
        "{}\n…[truncated: {} of {} bytes shown; narrow the query]",
        &full[..cut],
        cut,
        full.len()
    )))
}

fn floor_char(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn bounded(bytes: &[u8], limit: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= limit {
        (text.into_owned(), false)
    } else {
        (text[..floor_char(&text, limit)].to_owned(), true)
    }
}

async fn decide(
    hub: &HubInner,
    agent: &Agent,
    kind: &str,
    target: &str,
    args: Value,
) -> Result<Verdict, CallToolResult> {
    match hub.backend.decide(agent, kind, target, args).await {
        Ok(v) if v.allowed() => Ok(v),
        Ok(v) => Err(refusal(&v)),
        Err(e) => Err(tool_error(&e.to_string())),
    }
}

/// `request_approval`: decides the described action; ESCALATE yields the approval id, ALLOW says no approval is
/// needed (and releases the reservation: nothing was done), DENY/HALT come back as refusals.
pub(crate) async fn request_approval(
    hub: &HubInner,
    agent: &Agent,
    args: &Value,
) -> CallToolResult {
    let (Some(kind), Some(target)) = (
        args.get("kind").and_then(Value::as_str),
        args.get("target").and_then(Value::as_str),
    ) else {
        return tool_error("`kind` and `target` are required");
    };
    let mut action_args = args.get("args").cloned().unwrap_or(json!({}));
    if let (Some(reason), Some(map)) = (args.get("reason"), action_args.as_object_mut()) {
        map.insert("approval_reason".into(), reason.clone());
    }
    match hub.backend.decide(agent, kind, target, action_args).await {
        Ok(v) if v.verdict == "escalate" => {
            let body = json!({
                "approval_id": v.approval_id,
                "state": "pending",
                "rule": v.rule,
                "reason": v.reason,
                "next": "wait for a human to approve, then take the identical action",
            });
            json_result(&body, hub.exec.max_output_bytes)
        }
        Ok(v) if v.allowed() => {
            hub.backend.settle(agent, &v.decision_id, false).await;
            json_result(
                &json!({"approval_needed": false, "verdict": "allow", "rule": v.rule,
                    "next": "the policy allows this action now; no approval is needed"}),
                hub.exec.max_output_bytes,
            )
        }
        Ok(v) => refusal(&v),
        Err(e) => tool_error(&e.to_string()),
    }
}

/// Whether `cwd` (absolute, normalised) is inside one of the allowed working directories.
fn allowed_cwd(workdirs: &[PathBuf], cwd: &Path) -> Option<PathBuf> {
    if !cwd.is_absolute()
        || cwd
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return None;
    }
    let real = std::fs::canonicalize(cwd).ok()?;
    workdirs
        .iter()
        .filter_map(|w| std::fs::canonicalize(w).ok())
        .any(|w| real.starts_with(&w))
        .then_some(real)
}

/// `run_command`: a program with arguments (no shell), in an allowed working directory, decided as `shell`.
pub(crate) async fn run_command(hub: &HubInner, agent: &Agent, args: &Value) -> CallToolResult {
    let Some(program) = args.get("program").and_then(Value::as_str) else {
        return tool_error("`program` is required");
    };
    let argv: Vec<String> = match args.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return tool_error("`args` must be a list of strings"),
    };
    let Some(cwd) = args.get("cwd").and_then(Value::as_str) else {
        return tool_error("`cwd` is required");
    };
    if hub.exec.workdirs.is_empty() {
        return tool_error(
            "run_command is disabled: no working directories are allowed (mcp.workdirs in aura.yaml)",
        );
    }
    let Some(real_cwd) = allowed_cwd(&hub.exec.workdirs, Path::new(cwd)) else {
        return tool_error(&format!(
            "`{cwd}` is not inside an allowed working directory: {}",
            hub.exec
                .workdirs
                .iter()
                .map(|w| w.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let verdict = match decide(
        hub,
        agent,
        "shell",
        program,
        json!({"argv": argv, "cwd": real_cwd.display().to_string()}),
    )
    .await
    {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv)
        .current_dir(&real_cwd)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("HOME", &real_cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            hub.backend.settle(agent, &verdict.decision_id, false).await;
            return tool_error(&format!("cannot start `{program}`: {e}"));
        }
    };
    let limit = hub.exec.max_output_bytes;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let run = async {
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.take(limit as u64 + 1).read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(limit as u64 + 1).read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        child.wait().await
    };
    let status = tokio::time::timeout(hub.exec.command_timeout, run).await;
    let (code, timed_out) = match status {
        Ok(Ok(s)) => (s.code(), false),
        Ok(Err(_)) => (None, false),
        Err(_) => (None, true),
    };
    let success = code == Some(0);
    hub.backend
        .settle(agent, &verdict.decision_id, success)
        .await;
    let (stdout, out_cut) = bounded(&out, limit);
    let (stderr, err_cut) = bounded(&err, limit);
    let body = json!({
        "exit_code": code,
        "timed_out": timed_out,
        "stdout": stdout,
        "stderr": stderr,
        "truncated": out_cut || err_cut,
        "audit_seq": verdict.audit_seq,
    });
    let mut result = json_result(&body, limit.saturating_mul(2) + 512);
    if !success {
        result.is_error = Some(true);
    }
    result
}

/// `fetch_url`: decided as `http_request` on method, URL and body hash; the SSRF guard checks the resolved
/// address (folded into that one decision when the destination is known without DNS and the policy allows it
/// whatever the counters, as in the proxy), and the request goes to exactly that address; redirects are not followed (each hop would need its own
/// decision).
pub(crate) async fn fetch_url(hub: &HubInner, agent: &Agent, args: &Value) -> CallToolResult {
    let Some(url) = args.get("url").and_then(Value::as_str) else {
        return tool_error("`url` is required");
    };
    let method = args.get("method").and_then(Value::as_str).unwrap_or("GET");
    let body = args
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let parsed = match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => return tool_error(&format!("`{url}` is not an absolute http(s) URL")),
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let mut decide_args = json!({
        "method": method,
        "body_sha256": hex::encode(Sha256::digest(body.as_bytes())),
        "body_bytes": body.len(),
    });
    // A destination known without DNS that the policy allows whatever the counters: the guard's allowance is
    // recorded in the request's own decision, which is then the only one.
    let pass = hub.backend.egress_pass(agent, &host, port);
    if let Some((_, fact)) = &pass {
        decide_args["egress"] = fact.clone();
    }
    let verdict = match decide(hub, agent, "http_request", url, decide_args).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let addr = match pass {
        Some((addr, _)) => addr,
        None => match guarded(hub, agent, &host, &bare, port, &verdict.decision_id).await {
            Ok(addr) => addr,
            Err(refused) => {
                hub.backend.settle(agent, &verdict.decision_id, false).await;
                return refused;
            }
        },
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(&bare, addr)
        .timeout(hub.exec.command_timeout)
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => return tool_error(&e.to_string()),
    };
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client.request(method, parsed);
    if let Some(headers) = args.get("headers").and_then(Value::as_object) {
        for (k, v) in headers {
            if let Some(v) = v.as_str() {
                req = req.header(k, v);
            }
        }
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            hub.backend.settle(agent, &verdict.decision_id, false).await;
            return tool_error(&format!("request failed: {e}"));
        }
    };
    let status = resp.status().as_u16();
    let headers: serde_json::Map<String, Value> = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), json!(v.to_str().ok()?))))
        .collect();
    let limit = hub.exec.max_output_bytes;
    let mut bytes = Vec::new();
    let mut truncated = false;
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > limit {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    let (text_body, cut) = bounded(&bytes, limit);
    hub.backend
        .settle(agent, &verdict.decision_id, status < 500)
        .await;
    json_result(
        &json!({
            "status": status,
            "headers": headers,
            "body": text_body,
            "truncated": truncated || cut,
            "audit_seq": verdict.audit_seq,
        }),
        limit.saturating_mul(2) + 4096,
    )
}

/// Resolves `bare:port` once and runs the SSRF guard's own decision on the address; the address to connect to.
async fn guarded(
    hub: &HubInner,
    agent: &Agent,
    host: &str,
    bare: &str,
    port: u16,
    for_decision: &str,
) -> Result<std::net::SocketAddr, CallToolResult> {
    let addr = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port),
        Err(_) => match tokio::net::lookup_host((bare, port))
            .await
            .map(|mut a| a.next())
        {
            Ok(Some(a)) => a,
            _ => return Err(tool_error(&format!("cannot resolve `{host}`"))),
        },
    };
    match hub
        .backend
        .guard_egress(agent, host, addr, for_decision)
        .await
    {
        Ok(Some(guard)) if !guard.allowed() => Err(refusal(&guard)),
        Ok(_) => Ok(addr),
        Err(e) => Err(tool_error(&e.to_string())),
    }
}

/// `write_file`: decided as `file_write` on the path (args: size and SHA-256 of the content), written atomically.
pub(crate) async fn write_file(hub: &HubInner, agent: &Agent, args: &Value) -> CallToolResult {
    let (Some(path), Some(content)) = (
        args.get("path").and_then(Value::as_str),
        args.get("content").and_then(Value::as_str),
    ) else {
        return tool_error("`path` and `content` are required");
    };
    if !path.starts_with('/') {
        return tool_error("`path` must be absolute");
    }
    let verdict = match decide(
        hub,
        agent,
        "file_write",
        path,
        json!({"bytes": content.len(), "sha256": hex::encode(Sha256::digest(content.as_bytes()))}),
    )
    .await
    {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let target = PathBuf::from(path);
    let written = write_atomically(&target, content.as_bytes()).await;
    hub.backend
        .settle(agent, &verdict.decision_id, written.is_ok())
        .await;
    match written {
        Ok(()) => json_result(
            &json!({"written": path, "bytes": content.len(), "audit_seq": verdict.audit_seq}),
            hub.exec.max_output_bytes,
        ),
        Err(e) => tool_error(&format!("cannot write `{path}`: {e}")),
    }
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = dir.join(format!(".{name}.aura-tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    let file = tokio::fs::File::open(&tmp).await?;
    file.sync_all().await?;
    tokio::fs::rename(&tmp, path).await
}

/// `publish_message`: a protocol envelope to another agent (or `*`) over the event mesh. The mesh decides it as a
/// `message` action (target = the receiving agent) and audits it before publishing; a refusal is a tool error.
pub(crate) async fn publish_message(hub: &HubInner, agent: &Agent, args: &Value) -> CallToolResult {
    let Some(target) = args
        .get("target")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return tool_error("`target` is required: an agent name, or `*` for every agent");
    };
    let Some(payload) = args.get("payload").cloned() else {
        return tool_error("`payload` is required");
    };
    let kind = args.get("type").and_then(Value::as_str).unwrap_or("query");
    if !matches!(kind, "task" | "result" | "handoff" | "query" | "learn") {
        return tool_error(&format!(
            "unknown message type `{kind}`: use task, result, handoff, query or learn"
        ));
    }
    let priority = match args.get("priority") {
        None | Some(Value::Null) => 5,
        Some(p) => match p.as_u64().filter(|p| (1..=10).contains(p)) {
            Some(p) => p as u8,
            None => return tool_error("`priority` must be an integer from 1 to 10"),
        },
    };
    let topic = match args.get("topic").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None if target == "*" => "agents.broadcast".to_owned(),
        None => format!("agent.{target}"),
    };
    let message = crate::MeshMessage {
        topic,
        target: target.to_owned(),
        kind: kind.to_owned(),
        priority,
        payload,
    };
    match hub.backend.publish(agent, message).await {
        Ok(crate::Published::Sent(receipt)) => json_result(&receipt, hub.exec.max_output_bytes),
        Ok(crate::Published::Refused(v)) => refusal(&v),
        Err(e) => tool_error(&e.to_string()),
    }
}
