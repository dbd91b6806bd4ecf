//! Event mesh and coordination commands: `aura mesh pub|sub|read|topics`, `aura tasks list|show|cancel`,
//! `aura dlq list|show|replay|purge`, `aura agents status|start|stop|restart|attach`. They all go through the
//! running server's API (which governs every message).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{ApiArgs, Cli};
use crate::commands::Api;
use crate::output::{self, Output};

/// `aura mesh …`
#[derive(Debug, Subcommand)]
pub(crate) enum MeshCommand {
    /// Publish a protocol message to a topic (decided by the governance kernel first).
    Pub(PubArgs),
    /// Consume messages of a consumer group (acknowledged as they are printed).
    Sub(SubArgs),
    /// Replay a topic from an offset or a time.
    Read(ReadArgs),
    /// List topics with their message counts and consumer lag.
    Topics(ListArgs),
}

/// Options of `aura mesh pub`.
#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    /// Topic.
    pub topic: String,
    /// Receiving agent, or `*` for everyone.
    #[arg(long, default_value = "*")]
    pub to: String,
    /// Message type: task, result, handoff, query, heartbeat or learn.
    #[arg(long = "type", default_value = "task")]
    pub kind: String,
    /// Payload as JSON (a bare word is sent as a string).
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Priority 1-10.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub priority: u8,
    /// Sending agent (required with an admin token).
    #[arg(long)]
    pub source: Option<String>,
    /// Task the message belongs to.
    #[arg(long)]
    pub task: Option<String>,
    /// Idempotency key.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura mesh sub`.
#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    /// Topic.
    pub topic: String,
    /// Consumer group.
    #[arg(long, default_value = "cli")]
    pub group: String,
    /// Messages per request.
    #[arg(long, default_value_t = 10)]
    pub max: usize,
    /// Keep consuming until interrupted, over the mesh WebSocket: each message is acknowledged once its line is
    /// written, so an interrupted `sub` loses nothing (at-least-once); without it, one long-poll that
    /// acknowledges what it takes.
    #[arg(long, short)]
    pub follow: bool,
    /// Milliseconds to wait for messages per request.
    #[arg(long, default_value_t = 1000)]
    pub wait_ms: u64,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Options of `aura mesh read`.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// Topic.
    pub topic: String,
    /// First offset.
    #[arg(long, conflicts_with = "since")]
    pub from: Option<u64>,
    /// First time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub max: usize,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of listing commands.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `aura tasks …`
#[derive(Debug, Subcommand)]
pub(crate) enum TasksCommand {
    /// List tasks, newest first.
    List(TasksListArgs),
    /// Show one task with its children and journaled effects.
    Show(IdArgs),
    /// Cancel a task and its unfinished children.
    Cancel(CancelArgs),
}

/// Options of `aura tasks list`.
#[derive(Debug, Args)]
pub(crate) struct TasksListArgs {
    /// Only in this state (pending, assigned, in_progress, waiting, completed, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// Only held by this agent.
    #[arg(long)]
    pub assignee: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// A task id.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// Task id.
    pub id: String,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura tasks cancel`.
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// Task id.
    pub id: String,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `aura dlq …`
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead-letter queues, or the entries of one topic's queue.
    List(DlqListArgs),
    /// Show one dead-lettered message.
    Show(DlqShowArgs),
    /// Republish entries to their topic (all, or the given offsets).
    Replay(DlqReplayArgs),
    /// Delete a topic's dead-letter queue.
    Purge(DlqTopicArgs),
}

/// Options of `aura dlq list`.
#[derive(Debug, Args)]
pub(crate) struct DlqListArgs {
    /// The original topic; omit for every queue.
    pub topic: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `aura dlq show`.
#[derive(Debug, Args)]
pub(crate) struct DlqShowArgs {
    /// The original topic.
    pub topic: String,
    /// Entry (its offset in the dead-letter queue).
    pub offset: u64,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

/// Options of `aura dlq replay`.
#[derive(Debug, Args)]
pub(crate) struct DlqReplayArgs {
    /// The original topic.
    pub topic: String,
    /// Only this entry (repeatable).
    #[arg(long = "offset")]
    pub offsets: Vec<u64>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// A topic's queue.
#[derive(Debug, Args)]
pub(crate) struct DlqTopicArgs {
    /// The original topic.
    pub topic: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `aura agents …`
#[derive(Debug, Subcommand)]
pub(crate) enum AgentsCommand {
    /// What the agents declared in `mesh.agents` are doing.
    Status(ListArgs),
    /// Start an agent under the watchdog.
    Start(AgentNameArgs),
    /// Stop an agent.
    Stop(AgentNameArgs),
    /// Stop and start an agent.
    Restart(AgentNameArgs),
    /// Attach to an agent: its tmux window, or follow its log.
    Attach(AgentNameArgs),
}

/// An agent name.
#[derive(Debug, Args)]
pub(crate) struct AgentNameArgs {
    /// The agent.
    pub name: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `aura mesh …`
pub(crate) async fn mesh(cli: &Cli, cmd: &MeshCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MeshCommand::Pub(a) => {
            let api = Api::new(cli, &a.api)?;
            let payload: Value = serde_json::from_str(&a.payload)
                .unwrap_or_else(|_| Value::String(a.payload.clone()));
            let mut body =
                json!({"target": a.to, "type": a.kind, "priority": a.priority, "payload": payload});
            for (k, v) in [
                ("source", &a.source),
                ("task_id", &a.task),
                ("idempotency_key", &a.idempotency_key),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let r = api
                .call(
                    Method::POST,
                    &format!("/api/v1/mesh/topics/{}/messages", enc(&a.topic)),
                    Some(&body),
                )
                .await?;
            output::print(a.output, &r, || {
                format!(
                    "published {} to {} at offset {}{}\n",
                    s(&r["id"]),
                    s(&r["topic"]),
                    r["offset"],
                    if r["spooled"].as_bool() == Some(true) {
                        " (spooled locally: the backend is down)"
                    } else {
                        ""
                    }
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Sub(a) if a.follow => {
            let api = Api::new(cli, &a.api)?;
            follow(&api, a).await
        }
        MeshCommand::Sub(a) => {
            let api = Api::new(cli, &a.api)?;
            loop {
                let path = format!(
                    "/api/v1/mesh/topics/{}/groups/{}/take?max={}&wait_ms={}",
                    enc(&a.topic),
                    enc(&a.group),
                    a.max,
                    a.wait_ms
                );
                let got = api.call(Method::POST, &path, None).await?;
                for m in got.as_array().into_iter().flatten() {
                    println!("{}", serde_json::to_string(m)?);
                }
                if !a.follow {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        MeshCommand::Read(a) => {
            let api = Api::new(cli, &a.api)?;
            let mut q = format!("max={}", a.max);
            if let Some(f) = a.from {
                q.push_str(&format!("&from={f}"));
            }
            if let Some(t) = &a.since {
                q.push_str(&format!("&since={}", enc(t)));
            }
            let list = api
                .call(
                    Method::GET,
                    &format!("/api/v1/mesh/topics/{}/messages?{q}", enc(&a.topic)),
                    None,
                )
                .await?;
            output::print(a.output, &list, || {
                output::table(
                    &["OFFSET", "TIME", "KEY", "BODY"],
                    list.as_array().into_iter().flatten().map(|m| {
                        vec![
                            m["offset"].to_string(),
                            s(&m["timestamp"]),
                            s(&m["key"]),
                            m["body"].to_string(),
                        ]
                    }),
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Topics(a) => {
            let api = Api::new(cli, &a.api)?;
            let v = api.call(Method::GET, "/api/v1/mesh/topics", None).await?;
            output::print(a.output, &v, || {
                let mut text = format!("backend: {}", s(&v["backend"]));
                if let Some(p) = v["spool_pending"].as_u64() {
                    text.push_str(&format!(" (spool pending: {p})"));
                }
                text.push('\n');
                text + &output::table(
                    &["TOPIC", "MESSAGES", "FIRST", "LAST", "GROUPS (LAG)"],
                    v["topics"].as_array().into_iter().flatten().map(|t| {
                        let groups: Vec<String> = t["groups"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|g| format!("{}({})", s(&g["group"]), g["lag"]))
                            .collect();
                        vec![
                            s(&t["topic"]),
                            t["messages"].to_string(),
                            t["first_offset"].to_string(),
                            t["last_offset"].to_string(),
                            groups.join(" "),
                        ]
                    }),
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `aura tasks …`
pub(crate) async fn tasks(cli: &Cli, cmd: &TasksCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TasksCommand::List(a) => {
            let api = Api::new(cli, &a.api)?;
            let mut q = format!("limit={}", a.limit);
            if let Some(st) = &a.state {
                q.push_str(&format!("&state={}", enc(st)));
            }
            if let Some(x) = &a.assignee {
                q.push_str(&format!("&assignee={}", enc(x)));
            }
            let list = api
                .call(Method::GET, &format!("/api/v1/tasks?{q}"), None)
                .await?;
            output::print(a.output, &list, || {
                output::table(
                    &["ID", "STATE", "PHASE", "PRI", "ASSIGNEE", "TITLE"],
                    list.as_array().into_iter().flatten().map(task_row),
                )
            })?;
        }
        TasksCommand::Show(a) => {
            let api = Api::new(cli, &a.api)?;
            let t = api
                .call(Method::GET, &format!("/api/v1/tasks/{}", enc(&a.id)), None)
                .await?;
            output::print(a.output, &t, || task_details(&t))?;
        }
        TasksCommand::Cancel(a) => {
            let api = Api::new(cli, &a.api)?;
            let body = json!({"reason": a.reason});
            let t = api
                .call(
                    Method::POST,
                    &format!("/api/v1/tasks/{}/cancel", enc(&a.id)),
                    Some(&body),
                )
                .await?;
            output::print(a.output, &t, || task_details(&t))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn task_row(t: &Value) -> Vec<String> {
    vec![
        s(&t["id"]),
        s(&t["state"]),
        s(&t["phase"]),
        t["priority"].to_string(),
        s(&t["assignee"]),
        s(&t["title"]),
    ]
}

fn task_details(t: &Value) -> String {
    let list = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "id:           {}\ntitle:        {}\nstate:        {}\nphase:        {}\npriority:     {}\nassignee:     {}\nparent:       {}\nchildren:     {}\nattempts:     {}\neffects:      {}\nverification: {}\nerror:        {}\n",
        s(&t["id"]),
        s(&t["title"]),
        s(&t["state"]),
        s(&t["phase"]),
        t["priority"],
        s(&t["assignee"]),
        s(&t["parent"]),
        list(&t["children"]),
        t["attempts"],
        list(&t["effects"]),
        list(&t["verification"]),
        s(&t["error"]),
    )
}

/// `aura dlq …`
pub(crate) async fn dlq(cli: &Cli, cmd: &DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List(a) => {
            let api = Api::new(cli, &a.api)?;
            match &a.topic {
                None => {
                    let v = api.call(Method::GET, "/api/v1/dlq", None).await?;
                    output::print(a.output, &v, || {
                        output::table(
                            &["TOPIC", "SIZE"],
                            v.as_array()
                                .into_iter()
                                .flatten()
                                .map(|q| vec![s(&q["topic"]), q["size"].to_string()]),
                        )
                    })?;
                }
                Some(t) => {
                    let v = api
                        .call(Method::GET, &format!("/api/v1/dlq/{}", enc(t)), None)
                        .await?;
                    output::print(a.output, &v, || {
                        output::table(
                            &["ENTRY", "FROM OFFSET", "ATTEMPTS", "FAILED AT", "REASON"],
                            v.as_array().into_iter().flatten().map(|d| {
                                vec![
                                    d["offset"].to_string(),
                                    d["original_offset"].to_string(),
                                    d["attempts"].to_string(),
                                    s(&d["failed_at"]),
                                    s(&d["reason"]),
                                ]
                            }),
                        )
                    })?;
                }
            }
        }
        DlqCommand::Show(a) => {
            let api = Api::new(cli, &a.api)?;
            let v = api
                .call(
                    Method::GET,
                    &format!("/api/v1/dlq/{}/{}", enc(&a.topic), a.offset),
                    None,
                )
                .await?;
            output::print(a.output, &v, || {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            })?;
        }
        DlqCommand::Replay(a) => {
            let api = Api::new(cli, &a.api)?;
            let body = if a.offsets.is_empty() {
                json!({})
            } else {
                json!({"offsets": a.offsets})
            };
            let v = api
                .call(
                    Method::POST,
                    &format!("/api/v1/dlq/{}/replay", enc(&a.topic)),
                    Some(&body),
                )
                .await?;
            println!("replayed {} message(s) to {}", v["count"], a.topic);
        }
        DlqCommand::Purge(a) => {
            let api = Api::new(cli, &a.api)?;
            let v = api
                .call(
                    Method::DELETE,
                    &format!("/api/v1/dlq/{}", enc(&a.topic)),
                    None,
                )
                .await?;
            println!(
                "purged {} message(s) from the dead-letter queue of {}",
                v["count"], a.topic
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aura agents …`
pub(crate) async fn agents(cli: &Cli, cmd: &AgentsCommand) -> anyhow::Result<ExitCode> {
    let (api, op, name) = match cmd {
        AgentsCommand::Status(a) => {
            let api = Api::new(cli, &a.api)?;
            let v = api.call(Method::GET, "/api/v1/runner", None).await?;
            output::print(a.output, &v, || {
                output::table(
                    &[
                        "AGENT",
                        "STATUS",
                        "MODE",
                        "PID",
                        "RESTARTS",
                        "LAST HEARTBEAT",
                        "LAST EXIT",
                    ],
                    v.as_array().into_iter().flatten().map(|r| {
                        vec![
                            s(&r["name"]),
                            s(&r["status"]),
                            s(&r["mode"]),
                            s(&r["pid"]),
                            r["restarts"].to_string(),
                            s(&r["last_heartbeat"]),
                            s(&r["last_exit"]),
                        ]
                    }),
                )
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        AgentsCommand::Start(a) => (Api::new(cli, &a.api)?, "start", &a.name),
        AgentsCommand::Stop(a) => (Api::new(cli, &a.api)?, "stop", &a.name),
        AgentsCommand::Restart(a) => (Api::new(cli, &a.api)?, "restart", &a.name),
        AgentsCommand::Attach(a) => {
            let api = Api::new(cli, &a.api)?;
            let list = api.call(Method::GET, "/api/v1/runner", None).await?;
            let r = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == a.name.as_str())
                .with_context(|| format!("no agent `{}` in mesh.agents", a.name))?;
            let status = match r["tmux_target"].as_str() {
                Some(target) => std::process::Command::new("tmux")
                    .args(["attach", "-t", target])
                    .status(),
                None => std::process::Command::new("tail")
                    .args(["-n", "100", "-F"])
                    .arg(s(&r["log_path"]))
                    .status(),
            }
            .context("starting tmux/tail")?;
            return Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    };
    let r = api
        .call(
            Method::POST,
            &format!("/api/v1/runner/{}/{op}", enc(name)),
            None,
        )
        .await?;
    println!("{}: {}", s(&r["name"]), s(&r["status"]));
    Ok(ExitCode::SUCCESS)
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `aura mesh sub --follow`: consumes over the WebSocket, printing one JSON line per message and acknowledging it
/// once written.
async fn follow(api: &Api, a: &SubArgs) -> anyhow::Result<ExitCode> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use std::io::Write as _;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let url = format!(
        "{}/api/v1/mesh/topics/{}/ws?group={}&max_in_flight={}",
        api.url.replacen("http", "ws", 1),
        enc(&a.topic),
        enc(&a.group),
        a.max.clamp(1, 1000)
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .context("building the WebSocket request")?;
    if let Some(token) = &api.token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(s) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: Value = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            anyhow::bail!(
                "{} answered {} {}: {}",
                api.url,
                resp.status().as_u16(),
                body["error"]["code"].as_str().unwrap_or(""),
                body["error"]["message"].as_str().unwrap_or("no details")
            );
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot reach Aura at {}; is `aura up` running?", api.url)
            });
        }
    };
    let mut stdout = std::io::stdout();
    while let Some(frame) = socket.next().await {
        let text = match frame.context("reading the mesh stream")? {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match v["type"].as_str() {
            Some("message") => {
                let id = v["id"].clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("type");
                    o.remove("id");
                }
                writeln!(stdout, "{}", serde_json::to_string(&v)?)?;
                stdout.flush()?;
                socket
                    .send(Message::Text(
                        json!({"op": "ack", "id": id}).to_string().into(),
                    ))
                    .await
                    .context("acknowledging")?;
            }
            Some("error") => eprintln!(
                "error: {}: {}",
                v["code"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or("")
            ),
            _ => {}
        }
    }
    eprintln!("the server closed the stream");
    Ok(ExitCode::from(1))
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
