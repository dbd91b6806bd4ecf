//! A YAML document as a tree of nodes that remember where they start, so every later check can name
//! the line and column of the key or value it rejects.
//!
//! Built from serde-saphyr's event parser. Aliases are expanded (within a node budget, so a "billion
//! laughs" file is refused); tags are ignored; a file holds at most one document.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle};

/// At most this many nodes per file, aliases expanded.
const MAX_NODES: usize = 1_000_000;
/// At most this many nested collections.
const MAX_DEPTH: usize = 64;

/// One node and where it starts (1-based line and column).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: u32,
    pub column: u32,
    pub value: Value,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Empty, `~` or `null`.
    Null,
    /// Any other scalar; `plain` when it was written without quotes (so `5` may be a number).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short description for "expected …, found …" messages.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Null => "an empty value".to_owned(),
            Value::Scalar { text, .. } => format!("`{}`", shorten(text)),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }

    pub(crate) fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Shortens long user text for a message.
pub(crate) fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text.to_owned()
    }
}

/// A syntax error: position, message, hint.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub hint: String,
}

/// An open collection and the anchor defined on it (0 for none).
enum Frame {
    Seq {
        node: Node,
        anchor: usize,
    },
    Map {
        node: Node,
        key: Option<Node>,
        anchor: usize,
    },
}

/// Parses one YAML document. `Ok(None)` for an empty file (or only comments).
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut options = Options::default();
    options.set_emit_comments(false);
    options.flow_nesting_limit = MAX_DEPTH;
    options.block_nesting_limit = MAX_DEPTH;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|err| {
            let marker = err.marker();
            SyntaxError {
                line: to_u32(marker.line()),
                column: to_u32(marker.col() + 1),
                message: format!("invalid YAML: {}", err.info()),
                hint: syntax_hint(&err.info()),
            }
        })?;
        let line = to_u32(span.start.line());
        let column = to_u32(span.start.col() + 1);
        let at = |value| Node {
            line,
            column,
            value,
        };
        let (node, anchor) = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        line,
                        column,
                        message: "the file holds more than one YAML document".to_owned(),
                        hint: "remove the `---` line that starts a second document, or move it to its own file"
                            .to_owned(),
                    });
                }
                continue;
            }
            Event::Scalar(value, style, anchor, _) => {
                let plain = matches!(style, ScalarStyle::Plain);
                let v = if plain && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: value.into_owned(),
                        plain,
                    }
                };
                (at(v), anchor)
            }
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    continue;
                };
                nodes += count_nodes(target);
                if nodes > MAX_NODES {
                    return Err(too_big(line, column));
                }
                let mut copy = target.clone();
                copy.line = line;
                copy.column = column;
                (copy, 0)
            }
            Event::SequenceStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(too_big(line, column));
                }
                stack.push(Frame::Seq {
                    node: at(Value::Seq(Vec::new())),
                    anchor,
                });
                continue;
            }
            Event::MappingStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(too_big(line, column));
                }
                stack.push(Frame::Map {
                    node: at(Value::Map(Vec::new())),
                    key: None,
                    anchor,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else { continue };
                match frame {
                    Frame::Seq { node, anchor } | Frame::Map { node, anchor, .. } => (node, anchor),
                }
            }
            _ => continue,
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(too_big(line, column));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { node: seq, .. }) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map { node: map, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Value::Map(entries) = &mut map.value {
                        entries.push((k, node));
                    }
                }
            },
        }
    }
    Ok(root)
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

fn too_big(line: u32, column: u32) -> SyntaxError {
    SyntaxError {
        line,
        column,
        message: "the file is too large or too deeply nested to be a policy".to_owned(),
        hint: "check for runaway anchors and aliases (`&name`, `*name`) or deep nesting; split big policies into several files"
            .to_owned(),
    }
}

fn syntax_hint(info: &str) -> String {
    let hint = if info.contains("tab") {
        "indent with spaces; YAML does not allow tabs for indentation"
    } else if info.contains("flow") || info.contains("bracket") {
        "close every `[` with `]` and every `{` with `}`"
    } else if info.contains("mapping values are not allowed") || info.contains("mapping") {
        "check the indentation: keys of one section must line up, and a value containing `: ` must be quoted"
    } else if info.contains("quoted") {
        "close the quote on the same value; a quoted value may only continue on lines indented deeper than its key"
    } else {
        "check the indentation (spaces only) and that every quote and bracket is closed"
    };
    hint.to_owned()
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
