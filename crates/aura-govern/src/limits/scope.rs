//! Which actions a limit applies to, and the key that picks its bucket: agent globs, tool globs, key templates.

use std::borrow::Cow;

use aura_core::{Action, ActionKind};

/// What a rate limit or bulkhead is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One bucket per agent whose name matches the glob (`*` matches any run of characters); key = the agent name.
    Agent(String),
    /// One bucket per tool whose name matches the glob, shared by all agents; applies to `tool_call` actions only;
    /// key = the tool name.
    Tool(String),
    /// One bucket per rendered template, e.g. `{agent}/{kind}/{target}`. Placeholders: `{agent}`, `{kind}`,
    /// `{target}`, `{task}`, `{label:NAME}`. The limit does not apply to an action lacking a placeholder's value
    /// (no task, no such label).
    Key(String),
}

/// A scope compiled for matching on the hot path.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    kinds: Vec<ActionKind>,
    scope: CompiledScope,
}

#[derive(Debug, Clone)]
enum CompiledScope {
    Agent(Glob),
    Tool(Glob),
    Key(Vec<Segment>),
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Agent,
    Kind,
    Target,
    Task,
    Label(String),
}

impl Selector {
    /// Compiles a scope and a kind filter (empty = every kind). Errors are messages for the caller's error type.
    pub(crate) fn new(scope: &Scope, kinds: &[ActionKind]) -> Result<Self, String> {
        let scope = match scope {
            Scope::Agent(glob) => CompiledScope::Agent(Glob::new(glob)?),
            Scope::Tool(glob) => CompiledScope::Tool(Glob::new(glob)?),
            Scope::Key(template) => CompiledScope::Key(parse_template(template)?),
        };
        Ok(Self {
            kinds: kinds.to_vec(),
            scope,
        })
    }

    /// The bucket key for `action`, or `None` if the scope does not apply to it.
    pub(crate) fn key<'a>(&self, action: &'a Action) -> Option<Cow<'a, str>> {
        if !self.kinds.is_empty() && !self.kinds.contains(&action.kind()) {
            return None;
        }
        match &self.scope {
            CompiledScope::Agent(glob) => {
                let agent = action.agent().as_str();
                glob.matches(agent).then_some(Cow::Borrowed(agent))
            }
            CompiledScope::Tool(glob) => (action.kind() == ActionKind::ToolCall
                && glob.matches(action.target()))
            .then_some(Cow::Borrowed(action.target())),
            CompiledScope::Key(segments) => render(segments, action).map(Cow::Owned),
        }
    }
}

fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    if template.is_empty() {
        return Err("key template must not be empty".into());
    }
    let mut segments = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in key template `{template}`"))?;
        let name = &after[..close];
        segments.push(match name {
            "agent" => Segment::Agent,
            "kind" => Segment::Kind,
            "target" => Segment::Target,
            "task" => Segment::Task,
            _ => match name.strip_prefix("label:") {
                Some(label) if !label.is_empty() => Segment::Label(label.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown placeholder `{{{name}}}` in key template `{template}`, expected agent, kind, target, task or label:NAME"
                    ));
                }
            },
        });
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("stray `}}` in key template `{template}`"));
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_owned()));
    }
    Ok(segments)
}

fn render(segments: &[Segment], action: &Action) -> Option<String> {
    let mut out = String::with_capacity(64);
    for segment in segments {
        match segment {
            Segment::Literal(s) => out.push_str(s),
            Segment::Agent => out.push_str(action.agent().as_str()),
            Segment::Kind => out.push_str(action.kind().as_str()),
            Segment::Target => out.push_str(action.target()),
            Segment::Task => out.push_str(action.task()?),
            Segment::Label(name) => out.push_str(action.labels().get(name)?),
        }
    }
    Some(out)
}

/// A glob over names: `*` matches any run of characters (including none); everything else is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    parts: Vec<String>,
    any: bool,
}

impl Glob {
    /// Compiles `pattern`.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("glob must not be empty".into());
        }
        Ok(Self {
            parts: pattern.split('*').map(str::to_owned).collect(),
            any: pattern == "*",
        })
    }

    /// Whether `name` matches the whole glob.
    pub(crate) fn matches(&self, name: &str) -> bool {
        if self.any {
            return true;
        }
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return false,
        };
        if rest.is_empty() {
            return name == first;
        }
        let Some(mut remaining) = name.strip_prefix(first.as_str()) else {
            return false;
        };
        let (last, middle) = match rest.split_last() {
            Some(split) => split,
            None => return false,
        };
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.len() >= last.len() && remaining.ends_with(last.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let cases = [
            ("*", "anything", true),
            ("planner", "planner", true),
            ("planner", "planner-2", false),
            ("planner-*", "planner-2", true),
            ("planner-*", "planner-", true),
            ("planner-*", "coder", false),
            ("*-bot", "ops-bot", true),
            ("*-bot", "ops-bot-2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ];
        for (glob, name, want) in cases {
            assert_eq!(
                Glob::new(glob).unwrap().matches(name),
                want,
                "{glob} {name}"
            );
        }
    }

    #[test]
    fn templates_reject_unknown_placeholders() {
        assert!(parse_template("{agent}/{nope}").is_err());
        assert!(parse_template("{agent").is_err());
        assert!(parse_template("agent}").is_err());
        assert!(parse_template("").is_err());
        assert!(parse_template("{label:}").is_err());
        assert_eq!(parse_template("x{agent}y{label:env}").unwrap().len(), 4);
    }
}
