//! The agent-facing edges from the command line: the enforcement proxy beside `aura up`, `aura mcp` (stdio),
//! `aura hook pre-tool-use|post-tool-use` (Claude Code hooks) and `aura tools export`.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use aura_config::ProxyConfig;
use aura_server::{BoundServer, ShutdownReport};

/// Binds the proxy when `proxy.enabled`.
pub(crate) async fn bind_proxy(
    config: &ProxyConfig,
    server: &BoundServer,
) -> anyhow::Result<Option<aura_proxy::BoundProxy>> {
    if !config.enabled {
        return Ok(None);
    }
    let proxy = aura_proxy::bind(config, server.governance(), server.tokens())
        .await
        .context("starting the enforcement proxy")?;
    Ok(Some(proxy))
}

/// Runs the server and the proxy until `shutdown`; the proxy stops (and drains) first, so every request it let
/// through is settled and audited before the server closes the audit log.
pub(crate) async fn run_with_proxy(
    server: BoundServer,
    proxy: Option<aura_proxy::BoundProxy>,
    drain: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<ShutdownReport> {
    let Some(proxy) = proxy else {
        return Ok(server.run(shutdown).await?);
    };
    let cancel = CancellationToken::new();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy_run = {
        let cancel = cancel.clone();
        async move {
            proxy.run(cancel, drain).await;
            let _ = done_tx.send(());
        }
    };
    let server_shutdown = async move {
        shutdown.await;
        cancel.cancel();
        let _ = done_rx.await;
    };
    let (report, ()) = tokio::join!(server.run(server_shutdown), proxy_run);
    Ok(report?)
}

/// Options of `aura mcp`.
#[derive(Debug, clap::Args)]
pub(crate) struct McpArgs {
    /// Server URL and the agent token the tools act with.
    #[command(flatten)]
    pub api: crate::cli::ApiArgs,
}

/// `aura hook …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum HookCommand {
    /// Claude Code `PreToolUse`: reads the hook JSON on stdin, asks the kernel, prints the decision.
    PreToolUse(HookArgs),
    /// Claude Code `PostToolUse`: reads the hook JSON on stdin and settles the decision of that tool call.
    PostToolUse(HookArgs),
}

/// Options of `aura hook`.
#[derive(Debug, clap::Args)]
pub(crate) struct HookArgs {
    /// Server URL and the agent token the hook decides for.
    #[command(flatten)]
    pub api: crate::cli::ApiArgs,
}

/// `aura tools …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ToolsCommand {
    /// Print the MCP tools as function-calling definitions.
    Export(ToolsExportArgs),
}

/// Options of `aura tools export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ToolsExportArgs {
    /// `openai`, `anthropic`, `langchain` or `mcp`.
    #[arg(long, default_value = "openai", value_parser = ["openai", "anthropic", "langchain", "mcp"])]
    pub format: String,
}

/// `aura tools export`.
pub(crate) fn tools(cmd: &ToolsCommand) -> anyhow::Result<std::process::ExitCode> {
    let ToolsCommand::Export(args) = cmd;
    let format = aura_mcp::tools::Format::parse(&args.format)
        .ok_or_else(|| anyhow::anyhow!("unknown format `{}`", args.format))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&aura_mcp::tools::export(format))?
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Governance over the REST API of the running server, with an agent token (for `aura mcp` over stdio).
#[derive(Debug, Clone)]
struct RemoteBackend {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl RemoteBackend {
    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, aura_mcp::BackendError> {
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| aura_mcp::BackendError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let value: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(value)
        } else if status.as_u16() == 422 {
            Err(aura_mcp::BackendError::Invalid(
                value["error"]["message"]
                    .as_str()
                    .unwrap_or("invalid")
                    .to_owned(),
            ))
        } else {
            Err(aura_mcp::BackendError::Unavailable(format!(
                "{status}: {}",
                value["error"]["message"].as_str().unwrap_or("no details")
            )))
        }
    }

    async fn get(&self, path: &str) -> Result<serde_json::Value, aura_mcp::BackendError> {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| aura_mcp::BackendError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let value: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(value)
        } else {
            Err(aura_mcp::BackendError::Unavailable(format!(
                "{status}: {}",
                value["error"]["message"].as_str().unwrap_or("no details")
            )))
        }
    }
}

fn verdict_of(v: &serde_json::Value) -> aura_mcp::Verdict {
    let text = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_owned();
    aura_mcp::Verdict {
        decision_id: text(&v["decision_id"]),
        verdict: v["verdict"].as_str().unwrap_or("deny").to_owned(),
        rule: v["reasons"][0]["rule"]
            .as_str()
            .unwrap_or("default_deny")
            .to_owned(),
        reason: text(&v["reasons"][0]["message"]),
        approval_id: v["approval_id"].as_str().map(str::to_owned),
        audit_seq: v["audit_seq"].as_u64().unwrap_or(0),
    }
}

#[async_trait::async_trait]
impl aura_mcp::Backend for RemoteBackend {
    async fn decide(
        &self,
        _agent: &aura_mcp::Agent,
        kind: &str,
        target: &str,
        args: serde_json::Value,
    ) -> Result<aura_mcp::Verdict, aura_mcp::BackendError> {
        let body = serde_json::json!({"kind": kind, "target": target, "args": args, "labels": {"edge": "mcp"}});
        Ok(verdict_of(&self.post("/api/v1/decide", &body).await?))
    }

    async fn guard_egress(
        &self,
        agent: &aura_mcp::Agent,
        host: &str,
        addr: std::net::SocketAddr,
        for_decision: &str,
    ) -> Result<Option<aura_mcp::Verdict>, aura_mcp::BackendError> {
        let class = aura_server::services::edge::classify(addr.ip());
        if class == aura_server::services::edge::EgressClass::Public {
            return Ok(None);
        }
        let target = format!("egress/{class}/{}", addr.ip());
        let args =
            serde_json::json!({"host": host, "port": addr.port(), "for_decision": for_decision});
        self.decide(agent, "custom", &target, args).await.map(Some)
    }

    async fn settle(&self, _agent: &aura_mcp::Agent, decision_id: &str, success: bool) {
        let body = serde_json::json!({"decision_id": decision_id, "outcome": if success { "success" } else { "failure" }});
        if let Err(e) = self.post("/api/v1/settle", &body).await {
            tracing::warn!(decision = %decision_id, error = %e, "could not settle");
        }
    }

    async fn budget(
        &self,
        _agent: &aura_mcp::Agent,
    ) -> Result<serde_json::Value, aura_mcp::BackendError> {
        Ok(self.get("/api/v1/edge/me").await?["budget"].take())
    }

    async fn limits(
        &self,
        _agent: &aura_mcp::Agent,
    ) -> Result<serde_json::Value, aura_mcp::BackendError> {
        Ok(self.get("/api/v1/edge/me").await?["limits"].take())
    }

    async fn publish(
        &self,
        _agent: &aura_mcp::Agent,
        message: aura_mcp::MeshMessage,
    ) -> Result<aura_mcp::Published, aura_mcp::BackendError> {
        let body = serde_json::json!({"target": message.target, "type": message.kind,
            "priority": message.priority, "payload": message.payload});
        let resp = self
            .client
            .post(format!(
                "{}/api/v1/mesh/topics/{}/messages",
                self.url, message.topic
            ))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| aura_mcp::BackendError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let value: serde_json::Value = resp.json().await.unwrap_or_default();
        let text = value["error"]["message"].as_str().unwrap_or("no details");
        match status.as_u16() {
            200..=299 => {
                let mut sent = value.clone();
                if let Some(map) = sent.as_object_mut() {
                    map.insert("published".into(), true.into());
                    map.insert("target".into(), message.target.into());
                }
                Ok(aura_mcp::Published::Sent(sent))
            }
            403 if value["error"]["code"] == "message_refused" => {
                Ok(aura_mcp::Published::Refused(mesh_refusal(text)))
            }
            422 => Err(aura_mcp::BackendError::Invalid(text.to_owned())),
            _ => Err(aura_mcp::BackendError::Unavailable(format!(
                "{status}: {text}"
            ))),
        }
    }
}

/// The verdict in a mesh refusal's message: `governance answered VERDICT (audit seq N): RULE: REASON; …`.
fn mesh_refusal(text: &str) -> aura_mcp::Verdict {
    let rest = text.strip_prefix("governance answered ").unwrap_or(text);
    let (verdict, rest) = rest.split_once(' ').unwrap_or(("deny", rest));
    let (seq, reasons) = rest
        .strip_prefix("(audit seq ")
        .and_then(|r| r.split_once("): "))
        .unwrap_or(("0", rest));
    let first = reasons.split("; ").next().unwrap_or(reasons);
    let (rule, reason) = first.split_once(": ").unwrap_or(("default_deny", first));
    aura_mcp::Verdict {
        decision_id: String::new(),
        verdict: verdict.to_owned(),
        rule: rule.to_owned(),
        reason: reason.to_owned(),
        approval_id: None,
        audit_seq: seq.parse().unwrap_or(0),
    }
}

/// The server's URL and an agent token from `--url`/`--token` (or `AURA_URL`/`AURA_TOKEN`); the agent's name
/// from `whoami`.
async fn remote(
    cli: &crate::cli::Cli,
    args: &crate::cli::ApiArgs,
) -> anyhow::Result<(RemoteBackend, String)> {
    let api = crate::commands::Api::new(cli, args)?;
    let token = api
        .token
        .clone()
        .context("an agent token is required: --token or AURA_TOKEN")?;
    let backend = RemoteBackend {
        client: api.client.clone(),
        url: api.url.clone(),
        token,
    };
    let who = backend
        .get("/api/v1/whoami")
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Aura at {}: {e}", api.url))?;
    let agent = who["agent"]
        .as_str()
        .context("this token acts for no agent; use an agent token")?
        .to_owned();
    Ok((backend, agent))
}

/// `aura mcp`: one MCP session over stdin/stdout. Nothing but protocol goes to stdout (logs go to stderr).
pub(crate) async fn mcp(
    cli: &crate::cli::Cli,
    args: &McpArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let (config, _) = crate::commands::load_config(cli, None)?;
    let (backend, agent) = remote(cli, &args.api).await?;
    let hub = aura_mcp::Hub::new(
        std::sync::Arc::new(backend),
        std::sync::Arc::new(aura_mcp::context::AavDir::new(
            config.data_dir.join("assets"),
        )),
        aura_mcp::ExecSettings::from_config(&config.mcp),
    );
    let tasks = tokio_util::task::TaskTracker::new();
    let cancel = CancellationToken::new();
    hub.watch(&tasks, cancel.clone());
    let served = aura_mcp::serve_stdio(
        hub,
        aura_mcp::Agent {
            name: agent,
            principal: None,
        },
    )
    .await;
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    served.context("serving MCP over stdio")?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// How a Claude Code tool call maps onto an action: `(kind, target, args)`.
pub(crate) fn hook_action(input: &serde_json::Value) -> (String, String, serde_json::Value) {
    let tool = input["tool_name"].as_str().unwrap_or("unknown");
    let ti = &input["tool_input"];
    let cwd = input["cwd"].as_str();
    let s = |k: &str| ti[k].as_str().map(str::to_owned);
    match tool {
        "Bash" => {
            let command = s("command").unwrap_or_default();
            let mut words = command.split_whitespace();
            let program = words.next().unwrap_or("sh").to_owned();
            let argv: Vec<&str> = words.collect();
            let mut args = serde_json::json!({"argv": argv, "command": command});
            if let Some(cwd) = cwd.filter(|c| c.starts_with('/')) {
                args["cwd"] = serde_json::json!(cwd);
            }
            ("shell".into(), program, args)
        }
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => {
            let path = s("file_path")
                .or_else(|| s("notebook_path"))
                .unwrap_or_default();
            ("file_write".into(), path, serde_json::json!({"tool": tool}))
        }
        "Read" => (
            "file_read".into(),
            s("file_path").unwrap_or_default(),
            serde_json::json!({}),
        ),
        "WebFetch" => (
            "http_request".into(),
            s("url").unwrap_or_default(),
            serde_json::json!({"method": "GET"}),
        ),
        other => {
            let name: String = other
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-:/@".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (
                "tool_call".into(),
                format!("claude/{name}"),
                serde_json::json!({"input": ti}),
            )
        }
    }
}

/// The `PreToolUse` answer for a decision: allow, deny (with reason) or ask (escalate, with the approval id).
pub(crate) fn pre_tool_use_output(decision: &serde_json::Value) -> serde_json::Value {
    let verdict = decision["verdict"].as_str().unwrap_or("deny");
    let rule = decision["reasons"][0]["rule"]
        .as_str()
        .unwrap_or("default_deny");
    let why = decision["reasons"][0]["message"].as_str().unwrap_or("");
    let (permission, reason) = match verdict {
        "allow" => ("allow", format!("Aura allowed this ({rule})")),
        "escalate" => (
            "ask",
            format!(
                "Aura needs a human approval ({rule}: {why}); approval id {}",
                decision["approval_id"].as_str().unwrap_or("?")
            ),
        ),
        "halt" => ("deny", format!("Aura halted this agent ({rule}: {why})")),
        _ => ("deny", format!("Aura denied this ({rule}: {why})")),
    };
    serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": permission,
            "permissionDecisionReason": reason,
        }
    })
}

fn hook_state_file(tool_use_id: &str) -> std::path::PathBuf {
    let safe: String = tool_use_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(128)
        .collect();
    std::env::temp_dir().join("aura-hooks").join(safe)
}

/// `aura hook pre-tool-use|post-tool-use`. Always exits 0 with a hook answer: failures deny (fail closed).
pub(crate) async fn hook(
    cli: &crate::cli::Cli,
    cmd: &HookCommand,
) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Read as _;
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .context("reading the hook JSON on stdin")?;
    let input: serde_json::Value =
        serde_json::from_str(&raw).context("the hook input is not JSON")?;
    match cmd {
        HookCommand::PreToolUse(args) => {
            let answer = match pre_tool_use(cli, &args.api, &input).await {
                Ok(answer) => answer,
                Err(e) => serde_json::json!({"hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "deny",
                    "permissionDecisionReason": format!("Aura could not decide, so this is refused: {e:#}"),
                }}),
            };
            println!("{answer}");
        }
        HookCommand::PostToolUse(args) => {
            if let Err(e) = post_tool_use(cli, &args.api, &input).await {
                eprintln!("aura hook post-tool-use: {e:#}");
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn pre_tool_use(
    cli: &crate::cli::Cli,
    api: &crate::cli::ApiArgs,
    input: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let api = crate::commands::Api::new(cli, api)?;
    let (kind, target, args) = hook_action(input);
    let mut body = serde_json::json!({"kind": kind, "target": target, "args": args,
        "labels": {"edge": "claude-code-hook"}});
    if let Some(session) = input["session_id"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 256)
    {
        body["task"] = serde_json::json!(session);
    }
    let decision = api
        .call(reqwest::Method::POST, "/api/v1/decide", Some(&body))
        .await?;
    if decision["verdict"] == "allow"
        && let (Some(id), Some(use_id)) = (
            decision["decision_id"].as_str(),
            input["tool_use_id"].as_str(),
        )
    {
        let file = hook_state_file(use_id);
        if let Some(dir) = file.parent() {
            use std::os::unix::fs::DirBuilderExt as _;
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let _ = std::fs::write(&file, id);
    }
    Ok(pre_tool_use_output(&decision))
}

async fn post_tool_use(
    cli: &crate::cli::Cli,
    api: &crate::cli::ApiArgs,
    input: &serde_json::Value,
) -> anyhow::Result<()> {
    let Some(use_id) = input["tool_use_id"].as_str() else {
        return Ok(());
    };
    let file = hook_state_file(use_id);
    let Ok(decision_id) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    let _ = std::fs::remove_file(&file);
    let response = &input["tool_response"];
    let failed = response["success"] == false
        || response["is_error"] == true
        || response["interrupted"] == true;
    let api = crate::commands::Api::new(cli, api)?;
    let body = serde_json::json!({"decision_id": decision_id.trim(),
        "outcome": if failed { "failure" } else { "success" }});
    api.call(reqwest::Method::POST, "/api/v1/settle", Some(&body))
        .await?;
    Ok(())
}
