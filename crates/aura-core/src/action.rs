//! Actions and decisions: what an agent wants to do, and what the governance kernel says about it.
//!
//! **Safe-kernel contract.** An [`Action`] can only be built by [`Action::extract`], which runs the validated
//! extractor for the action's kind. Its fields are private, so raw input cannot reach the kernel: a function that
//! takes `&Action` is guaranteed a validated, canonical action with its args hash computed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AgentName;

/// The kinds of action the kernel decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A call to a language model; target = model name.
    LlmCall,
    /// A call to a tool; target = tool name.
    ToolCall,
    /// An outbound HTTP request; target = absolute http(s) URL.
    HttpRequest,
    /// A shell command; target = the program, args.argv = its arguments.
    Shell,
    /// Reading a file; target = absolute path.
    FileRead,
    /// Writing a file; target = absolute path.
    FileWrite,
    /// A message to another agent (or `*`); target = recipient.
    Message,
    /// Anything else; target = a free-form name.
    Custom,
}

impl ActionKind {
    /// Every kind, in a stable order.
    pub const ALL: [ActionKind; 8] = [
        ActionKind::LlmCall,
        ActionKind::ToolCall,
        ActionKind::HttpRequest,
        ActionKind::Shell,
        ActionKind::FileRead,
        ActionKind::FileWrite,
        ActionKind::Message,
        ActionKind::Custom,
    ];

    /// The snake_case name used in policies and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActionKind::LlmCall => "llm_call",
            ActionKind::ToolCall => "tool_call",
            ActionKind::HttpRequest => "http_request",
            ActionKind::Shell => "shell",
            ActionKind::FileRead => "file_read",
            ActionKind::FileWrite => "file_write",
            ActionKind::Message => "message",
            ActionKind::Custom => "custom",
        }
    }

    /// Parses a snake_case kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether an action of this kind changes the world (as opposed to only reading it).
    pub const fn is_write(self) -> bool {
        matches!(
            self,
            ActionKind::ToolCall
                | ActionKind::HttpRequest
                | ActionKind::Shell
                | ActionKind::FileWrite
                | ActionKind::Custom
        )
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller estimates an action will cost. Money is integer micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    /// Tokens (input + output) the action may use.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Cost in micro-dollars.
    #[serde(default)]
    pub cost_micros: Option<i64>,
    /// Risk points.
    #[serde(default)]
    pub risk: Option<u32>,
    /// Effort in steps.
    #[serde(default)]
    pub effort: Option<u32>,
}

/// Untrusted input describing an action, as received from an edge. Turn it into an [`Action`] with
/// [`Action::extract`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawAction {
    /// The acting agent.
    pub agent: AgentName,
    /// The task or session the action belongs to.
    pub task: Option<String>,
    /// The kind name, e.g. `shell`.
    pub kind: String,
    /// What the action is aimed at.
    pub target: String,
    /// Arguments; must be a JSON object (or null for none).
    pub args: Value,
    /// Estimates.
    pub estimate: Estimate,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

/// Why an action was rejected by its extractor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The kind is not one of the known kinds.
    #[error(
        "unknown action kind `{0}`, expected one of llm_call, tool_call, http_request, shell, file_read, file_write, message, custom"
    )]
    UnknownKind(String),
    /// The target is not valid for the kind.
    #[error("invalid target for `{kind}`: {reason}")]
    Target {
        /// The kind.
        kind: ActionKind,
        /// What is wrong.
        reason: String,
    },
    /// An argument is missing or malformed.
    #[error("invalid args for `{kind}`: {reason}")]
    Args {
        /// The kind.
        kind: ActionKind,
        /// What is wrong.
        reason: String,
    },
    /// A field is malformed.
    #[error("invalid {field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A validated, canonical action. Only [`Action::extract`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    agent: AgentName,
    task: Option<String>,
    kind: ActionKind,
    target: String,
    args: Value,
    #[serde(serialize_with = "hex_hash")]
    args_hash: [u8; 32],
    estimate: Estimate,
    labels: BTreeMap<String, String>,
}

const MAX_TARGET: usize = 4096;
const MAX_LABELS: usize = 64;

impl Action {
    /// Runs the extractor for `raw.kind`: validates and canonicalises the target and args, and hashes them.
    pub fn extract(raw: RawAction) -> Result<Action, ActionError> {
        let kind = ActionKind::parse(&raw.kind)
            .ok_or_else(|| ActionError::UnknownKind(raw.kind.clone()))?;
        let args = match raw.args {
            Value::Null => Value::Object(Default::default()),
            Value::Object(map) => Value::Object(map),
            _ => {
                return Err(ActionError::Args {
                    kind,
                    reason: "must be a JSON object".into(),
                });
            }
        };
        if raw.target.len() > MAX_TARGET {
            return Err(ActionError::Target {
                kind,
                reason: format!("longer than {MAX_TARGET} bytes"),
            });
        }
        if raw.target.chars().any(char::is_control) {
            return Err(ActionError::Target {
                kind,
                reason: "contains control characters".into(),
            });
        }
        if let Some(task) = &raw.task
            && (task.is_empty() || task.len() > 256)
        {
            return Err(ActionError::Field {
                field: "task",
                reason: "must be 1-256 characters".into(),
            });
        }
        if raw.labels.len() > MAX_LABELS
            || raw
                .labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 1024)
        {
            return Err(ActionError::Field {
                field: "labels",
                reason: format!(
                    "at most {MAX_LABELS} labels, keys 1-128 and values up to 1024 characters"
                ),
            });
        }
        if raw.estimate.cost_micros.is_some_and(|c| c < 0) {
            return Err(ActionError::Field {
                field: "estimate.cost_micros",
                reason: "must not be negative".into(),
            });
        }
        let target = match kind {
            ActionKind::LlmCall => extract_llm(&raw.target, &args)?,
            ActionKind::ToolCall | ActionKind::Custom => extract_name(kind, &raw.target)?,
            ActionKind::HttpRequest => extract_http(&raw.target, &args)?,
            ActionKind::Shell => extract_shell(&raw.target, &args)?,
            ActionKind::FileRead | ActionKind::FileWrite => extract_path(kind, &raw.target)?,
            ActionKind::Message => extract_message(&raw.target)?,
        };
        let args_hash = hash_action(kind, &target, &args);
        Ok(Action {
            agent: raw.agent,
            task: raw.task,
            kind,
            target,
            args,
            args_hash,
            estimate: raw.estimate,
            labels: raw.labels,
        })
    }

    /// The acting agent.
    pub fn agent(&self) -> &AgentName {
        &self.agent
    }
    /// The task or session.
    pub fn task(&self) -> Option<&str> {
        self.task.as_deref()
    }
    /// The kind.
    pub fn kind(&self) -> ActionKind {
        self.kind
    }
    /// The canonical target (normalised URL, path, model or name).
    pub fn target(&self) -> &str {
        &self.target
    }
    /// The arguments: always a JSON object, keys sorted.
    pub fn args(&self) -> &Value {
        &self.args
    }
    /// SHA-256 over kind, target and canonical args: binds approvals and detects loops.
    pub fn args_hash(&self) -> &[u8; 32] {
        &self.args_hash
    }
    /// The args hash as lowercase hex.
    pub fn args_hash_hex(&self) -> String {
        self.args_hash.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Estimates.
    pub fn estimate(&self) -> &Estimate {
        &self.estimate
    }
    /// Labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    /// For `http_request`: the method (uppercase), default `GET`.
    pub fn http_method(&self) -> Option<&str> {
        (self.kind == ActionKind::HttpRequest).then(|| {
            self.args
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("GET")
        })
    }
}

fn hex_hash<S: serde::Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Hash of kind, target and canonical JSON args (serde_json maps keep keys sorted), separated by NUL bytes.
fn hash_action(kind: ActionKind, target: &str, args: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(target.as_bytes());
    h.update([0]);
    h.update(args.to_string().as_bytes());
    h.finalize().into()
}

fn target_err(kind: ActionKind, reason: impl Into<String>) -> ActionError {
    ActionError::Target {
        kind,
        reason: reason.into(),
    }
}

fn args_err(kind: ActionKind, reason: impl Into<String>) -> ActionError {
    ActionError::Args {
        kind,
        reason: reason.into(),
    }
}

fn extract_name(kind: ActionKind, target: &str) -> Result<String, ActionError> {
    let ok = !target.is_empty()
        && target.len() <= 256
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@'));
    if ok {
        Ok(target.to_owned())
    } else {
        Err(target_err(
            kind,
            "must be 1-256 characters of letters, digits, `.`, `_`, `-`, `:`, `/`, `@`",
        ))
    }
}

fn extract_llm(target: &str, args: &Value) -> Result<String, ActionError> {
    let kind = ActionKind::LlmCall;
    let model = extract_name(kind, target)?;
    if let Some(max) = args.get("max_tokens")
        && !max.is_u64()
    {
        return Err(args_err(
            kind,
            "`max_tokens` must be a non-negative integer",
        ));
    }
    Ok(model)
}

fn extract_http(target: &str, args: &Value) -> Result<String, ActionError> {
    let kind = ActionKind::HttpRequest;
    let url = url::Url::parse(target)
        .map_err(|e| target_err(kind, format!("not an absolute URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(target_err(
            kind,
            format!("scheme `{}` is not http or https", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(target_err(kind, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(target_err(
            kind,
            "must not carry credentials; send them in a header",
        ));
    }
    if let Some(method) = args.get("method") {
        let ok = method.as_str().is_some_and(|m| {
            matches!(
                m,
                "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
            )
        });
        if !ok {
            return Err(args_err(
                kind,
                "`method` must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            ));
        }
    }
    let mut url = url;
    url.set_fragment(None);
    Ok(url.to_string())
}

fn extract_shell(target: &str, args: &Value) -> Result<String, ActionError> {
    let kind = ActionKind::Shell;
    let program = target.trim();
    if program.is_empty() || program.contains(char::is_whitespace) {
        return Err(target_err(
            kind,
            "must be one program name or path; put its arguments in args.argv",
        ));
    }
    if let Some(argv) = args.get("argv") {
        let ok = argv
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err(args_err(kind, "`argv` must be a list of strings"));
        }
    }
    if let Some(cwd) = args.get("cwd")
        && !cwd.as_str().is_some_and(|c| c.starts_with('/'))
    {
        return Err(args_err(kind, "`cwd` must be an absolute path"));
    }
    Ok(program.to_owned())
}

fn extract_path(kind: ActionKind, target: &str) -> Result<String, ActionError> {
    let path = Path::new(target);
    if !path.is_absolute() {
        return Err(target_err(kind, "must be an absolute path"));
    }
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(target_err(kind, "escapes the root"));
                }
            }
            Component::Normal(part) => normal.push(part),
            Component::Prefix(_) => return Err(target_err(kind, "has a prefix")),
        }
    }
    normal
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| target_err(kind, "is not UTF-8"))
}

fn extract_message(target: &str) -> Result<String, ActionError> {
    if target == "*" {
        return Ok("*".into());
    }
    AgentName::new(target).map(String::from).map_err(|e| {
        target_err(
            ActionKind::Message,
            format!("must be an agent name or `*`: {e}"),
        )
    })
}

/// The kernel's answer. Ordered by precedence: `Halt` > `Deny` > `Escalate` > `Allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Wait for a human approval.
    Escalate,
    /// Refused.
    Deny,
    /// Refused, and the agent is stopped.
    Halt,
}

impl Verdict {
    /// Combines two verdicts: the one with higher precedence wins.
    pub fn combine(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Escalate => "escalate",
            Verdict::Deny => "deny",
            Verdict::Halt => "halt",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason behind a decision: the rule (or built-in check) and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Rule id, e.g. `no-prod-writes`, or a built-in id such as `default_deny`, `kernel_error`.
    pub rule: String,
    /// Human-readable message.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str, target: &str, args: Value) -> RawAction {
        RawAction {
            agent: AgentName::new("bot").unwrap(),
            task: None,
            kind: kind.into(),
            target: target.into(),
            args,
            estimate: Estimate::default(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn extractors_canonicalise_targets() {
        let a =
            Action::extract(raw("file_write", "/srv/app/../etc/./passwd", Value::Null)).unwrap();
        assert_eq!(a.target(), "/srv/etc/passwd");
        let a = Action::extract(raw(
            "http_request",
            "HTTPS://Example.COM/a#frag",
            serde_json::json!({"method": "POST"}),
        ))
        .unwrap();
        assert_eq!(a.target(), "https://example.com/a");
        assert_eq!(a.http_method(), Some("POST"));
        let a = Action::extract(raw("message", "*", Value::Null)).unwrap();
        assert_eq!(a.target(), "*");
    }

    #[test]
    fn extractors_reject_bad_input() {
        for (kind, target, args) in [
            ("teleport", "x", Value::Null),
            ("file_read", "relative/path", Value::Null),
            ("file_read", "/../..", Value::Null),
            ("http_request", "ftp://x", Value::Null),
            ("http_request", "https://u:p@x.com/", Value::Null),
            (
                "http_request",
                "https://x.com/",
                serde_json::json!({"method": "BREW"}),
            ),
            ("shell", "rm -rf /", Value::Null),
            ("shell", "ls", serde_json::json!({"argv": "-la"})),
            ("llm_call", "", Value::Null),
            ("llm_call", "gpt-4o", serde_json::json!({"max_tokens": -1})),
            ("message", "Not An Agent", Value::Null),
            ("tool_call", "search", serde_json::json!([1, 2])),
            ("custom", "a\nb", Value::Null),
        ] {
            assert!(
                Action::extract(raw(kind, target, args.clone())).is_err(),
                "{kind} {target} {args}"
            );
        }
    }

    #[test]
    fn the_hash_binds_kind_target_and_args() {
        let a = Action::extract(raw(
            "tool_call",
            "search",
            serde_json::json!({"q": "x", "n": 1}),
        ))
        .unwrap();
        let b = Action::extract(raw(
            "tool_call",
            "search",
            serde_json::json!({"n": 1, "q": "x"}),
        ))
        .unwrap();
        let c = Action::extract(raw(
            "tool_call",
            "search",
            serde_json::json!({"n": 2, "q": "x"}),
        ))
        .unwrap();
        let d = Action::extract(raw(
            "custom",
            "search",
            serde_json::json!({"n": 1, "q": "x"}),
        ))
        .unwrap();
        assert_eq!(a.args_hash(), b.args_hash(), "key order must not matter");
        assert_ne!(a.args_hash(), c.args_hash());
        assert_ne!(a.args_hash(), d.args_hash());
    }

    #[test]
    fn verdicts_combine_by_precedence() {
        use Verdict::*;
        assert_eq!(Allow.combine(Escalate), Escalate);
        assert_eq!(Escalate.combine(Deny), Deny);
        assert_eq!(Deny.combine(Halt), Halt);
        assert_eq!(Halt.combine(Allow), Halt);
    }
}
