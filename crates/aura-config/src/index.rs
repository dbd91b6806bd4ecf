//! Maps source positions of a YAML document to key paths, so errors can name the key.
//!
//! serde-saphyr reports where an error is but not under which key; walking the parser's events
//! once more gives, for every node, its position, its dotted path (`server.listen`) and what it
//! is (a key, a scalar, a mapping, …). Built only when an error has to be explained.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An empty value, `~` or `null`.
    Null,
    /// Any other scalar, as written after escape processing.
    Scalar(String),
    Mapping,
    Sequence,
    Alias,
}

/// Whether a node is a mapping key or a value (sequence items and the root are values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Key,
    Value,
}

/// One node of the document.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// 1-based line.
    pub line: u64,
    /// 1-based column, in characters.
    pub column: u64,
    /// Keys from the root down to this node; for a key node, ends with the key itself.
    pub path: Vec<String>,
    pub role: Role,
    pub kind: Kind,
}

/// The nodes of a document in source order, as far as the document parses.
pub(crate) struct Index {
    nodes: Vec<Node>,
}

enum Frame {
    Mapping {
        path: Vec<String>,
        next_is_key: bool,
        key: String,
    },
    Sequence {
        path: Vec<String>,
    },
}

impl Index {
    pub(crate) fn build(text: &str) -> Index {
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut nodes = Vec::new();
        while let Some(Ok((event, span))) = parser.next_event() {
            let kind = match &event {
                Event::Scalar(value, style, ..) => {
                    let plain = matches!(style, ScalarStyle::Plain);
                    if plain && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                        Kind::Null
                    } else {
                        Kind::Scalar(value.to_string())
                    }
                }
                Event::MappingStart(..) => Kind::Mapping,
                Event::SequenceStart(..) => Kind::Sequence,
                Event::Alias(_) => Kind::Alias,
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    continue;
                }
                _ => continue,
            };
            let (role, path) = match stack.last_mut() {
                None => (Role::Value, Vec::new()),
                Some(Frame::Sequence { path }) => (Role::Value, path.clone()),
                Some(Frame::Mapping {
                    path,
                    next_is_key,
                    key,
                }) => {
                    let mut path = path.clone();
                    if *next_is_key {
                        *key = match &kind {
                            Kind::Scalar(name) => name.clone(),
                            Kind::Null => String::new(),
                            _ => "?".to_owned(),
                        };
                        path.push(key.clone());
                        *next_is_key = false;
                        (Role::Key, path)
                    } else {
                        // A merge (`<<: {…}`) adds its keys to the mapping that holds it.
                        if key != "<<" {
                            path.push(key.clone());
                        }
                        *next_is_key = true;
                        (Role::Value, path)
                    }
                }
            };
            match kind {
                Kind::Mapping => stack.push(Frame::Mapping {
                    path: path.clone(),
                    next_is_key: true,
                    key: String::new(),
                }),
                Kind::Sequence => stack.push(Frame::Sequence { path: path.clone() }),
                _ => {}
            }
            nodes.push(Node {
                line: span.start.line() as u64,
                column: span.start.col() as u64 + 1,
                path,
                role,
                kind,
            });
        }
        Index { nodes }
    }

    /// The node starting at `line:column`, else the last node starting before it. Where
    /// several start there (a block mapping and its first key), the outermost.
    pub(crate) fn at(&self, line: u64, column: u64) -> Option<&Node> {
        self.at_where(line, column, |_| true)
    }

    /// Like [`Index::at`], preferring a node at exactly `line:column` that satisfies `prefer`.
    pub(crate) fn at_where(
        &self,
        line: u64,
        column: u64,
        prefer: impl Fn(&Node) -> bool,
    ) -> Option<&Node> {
        let exact = |node: &&Node| (node.line, node.column) == (line, column);
        self.nodes
            .iter()
            .find(|node| exact(node) && prefer(node))
            .or_else(|| self.nodes.iter().find(exact))
            .or_else(|| {
                self.nodes
                    .iter()
                    .rev()
                    .find(|node| (node.line, node.column) <= (line, column))
            })
    }

    /// The key node starting at `line:column`, else whatever [`Index::at`] finds. (A block
    /// mapping starts where its first key does.)
    pub(crate) fn key_at(&self, line: u64, column: u64) -> Option<&Node> {
        self.at_where(line, column, |node| node.role == Role::Key)
    }

    /// The first key node with exactly this path.
    pub(crate) fn key(&self, path: &[String]) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|node| node.role == Role::Key && node.path == path)
    }

    /// The value node of the first key with exactly this path.
    pub(crate) fn value(&self, path: &[&str]) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|node| node.role == Role::Value && node.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_positions() {
        let index = Index::build("server:\n  listen: \"x\"\n  n:\nlog: {format: [a]}\n");
        let listen = index.at(2, 11).unwrap();
        assert_eq!(
            (listen.path.join("."), listen.role),
            ("server.listen".to_owned(), Role::Value)
        );
        assert_eq!(listen.kind, Kind::Scalar("x".to_owned()));
        let null = index.at(3, 4).unwrap();
        assert_eq!(
            (null.path.join("."), &null.kind),
            ("server.n".to_owned(), &Kind::Null)
        );
        let format_key = index.at(4, 7).unwrap();
        assert_eq!(
            (format_key.path.join("."), format_key.role),
            ("log.format".to_owned(), Role::Key)
        );
        let seq = index.at(4, 15).unwrap();
        assert_eq!(
            (seq.path.join("."), &seq.kind),
            ("log.format".to_owned(), &Kind::Sequence)
        );
        assert_eq!(
            index.value(&["log", "format"]).map(|n| (n.line, n.column)),
            Some((4, 15))
        );
        assert_eq!(
            index.at(1, 1).map(|n| (n.role, n.path.len())),
            Some((Role::Value, 0))
        );
        let server = index.key_at(1, 1).unwrap();
        assert_eq!(
            (server.role, server.path.join(".")),
            (Role::Key, "server".to_owned())
        );
    }
}
