//! `ConfigError` and the translation of serde-saphyr's errors into `file:line:column: what` plus
//! a hint.

use std::path::{Path, PathBuf};

use serde_saphyr::granit_parser::{ErrorKind, ScanError};
use serde_saphyr::{Error as YamlError, ExternalMessageSource};

use crate::index::{Index, Kind, Node, Role};
use crate::values::{EMPTY, HINT, Key, MARK, SECTIONS, show, suggest};

/// Why a configuration could not be loaded. `Display` is the complete message for the user:
///
/// ```text
/// aura.yaml:3:12: `server.listen`: `localhost:99999` is not a valid address
///   hint: expected IP:PORT, e.g. 127.0.0.1:7470
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, too large).
    #[error("`{}`: cannot read config file: {reason}\n  hint: {hint}", path.display())]
    Read {
        /// The file, as given.
        path: PathBuf,
        /// What went wrong, e.g. `file not found`.
        reason: String,
        /// How to fix it.
        hint: String,
    },
    /// The file was read but its content is not a valid configuration.
    #[error("{}:{line}:{column}: {message}\n  hint: {hint}", file.display())]
    Invalid {
        /// The file, as given.
        file: PathBuf,
        /// 1-based line of the offending key or value.
        line: u64,
        /// 1-based column (in characters) of the offending key or value.
        column: u64,
        /// What is wrong, naming the key or value in backticks.
        message: String,
        /// How to fix it.
        hint: String,
    },
}

const YAML_HINT: &str =
    "check the indentation (spaces only) and that every quote and bracket is closed";
const DOCS_HINT: &str = "see docs/configuration.md for every setting";

impl ConfigError {
    pub(crate) fn invalid(
        file: &Path,
        (line, column): (u64, u64),
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Explains a serde-saphyr error in the terms of `aura.yaml`.
pub(crate) fn from_yaml(err: &YamlError, text: &str, file: &Path) -> ConfigError {
    let mut err = err.without_snippet();
    let mut at = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    // An error inside an alias (`*name`) is reported where the alias is used.
    while let YamlError::AliasError {
        error, locations, ..
    } = err
    {
        let used = locations.reference_location;
        if used.line() > 0 {
            at = (used.line(), used.column());
        }
        err = error.without_snippet();
    }
    if let Some((quote_at, quote)) = unclosed_quote(err, text, at) {
        return ConfigError::invalid(
            file,
            quote_at,
            "invalid YAML: the quoted value starting here is not closed on its line",
            format!(
                "add the closing `{quote}`; a quoted value may only continue on lines indented deeper than its key"
            ),
        );
    }
    let (message, hint) = explain(err, text, at);
    ConfigError::invalid(file, at, message, hint)
}

fn explain(err: &YamlError, text: &str, at: (u64, u64)) -> (String, String) {
    match err {
        YamlError::ExternalMessage { source, msg, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan) => {
                let what = if msg.is_empty() {
                    "invalid YAML".to_owned()
                } else {
                    format!("invalid YAML: {msg}")
                };
                (what, syntax_hint(scan, msg))
            }
            _ => (plain_message(err), DOCS_HINT.to_owned()),
        },
        YamlError::MultipleDocuments { .. } => (
            "the file holds more than one YAML document".to_owned(),
            "remove the `---` line that starts a second document; aura.yaml is a single document"
                .to_owned(),
        ),
        YamlError::Budget { .. } => (
            "the file is too large or too deeply nested to be a configuration".to_owned(),
            "check for runaway anchors and aliases (`&name`, `*name`) or deep nesting".to_owned(),
        ),
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let index = Index::build(text);
            unknown_key(field, expected, index.key_at(at.0, at.1))
        }
        YamlError::SerdeMissingField { field, .. } => {
            let index = Index::build(text);
            missing_key(field, index.at(at.0, at.1))
        }
        YamlError::DuplicateMappingKey { key, .. } => {
            let index = Index::build(text);
            duplicate_key(key.as_deref(), &index, at)
        }
        YamlError::Message { msg, .. } if msg.starts_with(MARK) => {
            let index = Index::build(text);
            let path = index
                .at(at.0, at.1)
                .map(|node| node.path.join("."))
                .unwrap_or_default();
            let body = msg.trim_start_matches(MARK);
            let (what, own_hint) = match body.split_once(HINT) {
                Some((what, hint)) => (what, Some(hint.to_owned())),
                None => (body, None),
            };
            let key = Key::find(&path);
            let hint = own_hint
                .or_else(|| key.map(Key::hint))
                .unwrap_or_else(|| DOCS_HINT.to_owned());
            let what = match key {
                Some(key) if what == EMPTY => {
                    format!("expected {}, found an empty value", key.expects)
                }
                _ => what.to_owned(),
            };
            (format!("{}: {what}", key_name(&path)), hint)
        }
        _ => {
            let index = Index::build(text);
            let null = matches!(err, YamlError::NullIntoString { .. });
            match index.at_where(at.0, at.1, |node| !null || node.kind == Kind::Null) {
                Some(node) => mismatch(node, err),
                None => (plain_message(err), DOCS_HINT.to_owned()),
            }
        }
    }
}

/// `unknown key `listn` in `server`` with a did-you-mean and the valid keys.
fn unknown_key(field: &str, expected: &[&str], node: Option<&Node>) -> (String, String) {
    // The expected keys identify the section exactly; the node's path is the fallback.
    let section = SECTIONS
        .iter()
        .find(|(_, keys)| *keys == expected)
        .map(|(name, _)| (*name).to_owned())
        .or_else(|| node.map(|n| parent(&n.path).join(".")))
        .unwrap_or_default();
    let message = if section.is_empty() {
        format!("unknown key {} at top level", show(field))
    } else {
        format!("unknown key {} in `{section}`", show(field))
    };
    let valid = format!("valid keys: {}", expected.join(", "));
    let elsewhere = SECTIONS
        .iter()
        .find(|(name, keys)| *name != section && keys.contains(&field))
        .map(|(name, _)| *name);
    let hint = match (elsewhere, suggest(field, expected)) {
        (Some(""), _) => format!(
            "`{field}` is a top-level key: move it out of `{section}` to the start of a line; {valid}"
        ),
        (Some(home), _) => format!("`{field}` belongs under `{home}:`, move it there; {valid}"),
        (None, Some(best)) => format!("did you mean `{best}`? {valid}"),
        (None, None) => valid,
    };
    (message, hint)
}

/// `` `audit.export`: `url` is required `` with the key's own hint.
fn missing_key(field: &str, node: Option<&Node>) -> (String, String) {
    // The innermost section around the position that has this key.
    let path = node.map(|n| n.path.clone()).unwrap_or_default();
    let section = (0..=path.len())
        .rev()
        .map(|len| path[..len].join("."))
        .find(|name| {
            SECTIONS
                .iter()
                .any(|(section, keys)| section == name && keys.contains(&field))
        })
        .unwrap_or_default();
    let full = if section.is_empty() {
        field.to_owned()
    } else {
        format!("{section}.{field}")
    };
    let hint = match Key::find(&full) {
        Some(key) => format!("add `{field}:` to this section; {}", key.hint()),
        None => format!("add `{field}:` to this section"),
    };
    (
        format!("{}: `{field}` is required", key_name(&section)),
        hint,
    )
}

fn duplicate_key(key: Option<&str>, index: &Index, at: (u64, u64)) -> (String, String) {
    let node = index.key_at(at.0, at.1);
    let name = key
        .map(str::to_owned)
        .or_else(|| node.and_then(|n| n.path.last().cloned()))
        .unwrap_or_default();
    let section = node.map(|n| parent(&n.path).join(".")).unwrap_or_default();
    let message = if section.is_empty() {
        format!("duplicate key {} at top level", show(&name))
    } else {
        format!("duplicate key {} in `{section}`", show(&name))
    };
    let first = node
        .and_then(|n| index.key(&n.path))
        .filter(|first| (first.line, first.column) != at);
    let hint = match first {
        Some(first) => format!(
            "`{name}` is already set on line {}; keep only one of them",
            first.line
        ),
        None => format!("`{name}` is set twice; keep only one of them"),
    };
    (message, hint)
}

/// A value of the wrong shape: `expected a whole number, found a list`.
fn mismatch(node: &Node, err: &YamlError) -> (String, String) {
    let found = match &node.kind {
        Kind::Null => "an empty value".to_owned(),
        Kind::Scalar(value) => show(value),
        Kind::Mapping => "a mapping".to_owned(),
        Kind::Sequence => "a list".to_owned(),
        Kind::Alias => "an alias".to_owned(),
    };
    if node.role == Role::Key {
        let section = parent(&node.path).join(".");
        let found = if node.kind == Kind::Null {
            "an empty key".to_owned()
        } else {
            found
        };
        let place = if section.is_empty() {
            "at top level".to_owned()
        } else {
            format!("in `{section}`")
        };
        return (
            format!("a key must be a plain name, found {found} {place}"),
            "write each key as a plain word followed by a colon, e.g. `listen:`".to_owned(),
        );
    }
    // `level:info` is one plain value, not a key and a value.
    let missing_space = match &node.kind {
        Kind::Scalar(value) => value
            .split_once(':')
            .filter(|(key, rest)| !key.is_empty() && !rest.starts_with(' ') && !key.contains(' '))
            .map(|(key, rest)| format!("put a space after the colon: `{key}: {rest}`")),
        _ => None,
    };
    if node.path.is_empty() {
        return (
            format!("expected a mapping of settings at top level, found {found}"),
            missing_space.unwrap_or_else(|| {
                "write settings as `key: value` lines starting at column 1, e.g. `data_dir: ./aura-data`"
                    .to_owned()
            }),
        );
    }
    let path = node.path.join(".");
    match Key::find(&path) {
        Some(key) => {
            let hint = match missing_space {
                Some(hint) if SECTIONS.iter().any(|(name, _)| *name == path) => hint,
                _ => key.hint(),
            };
            (
                format!("`{path}`: expected {}, found {found}", key.expects),
                hint,
            )
        }
        None => (
            format!("`{path}`: {}", plain_message(err)),
            DOCS_HINT.to_owned(),
        ),
    }
}

/// `` `server.listen` `` or, for the root, `top level`.
fn key_name(path: &str) -> String {
    if path.is_empty() {
        "top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

fn parent(path: &[String]) -> &[String] {
    &path[..path.len().saturating_sub(1)]
}

fn syntax_hint(scan: &ScanError, msg: &str) -> String {
    const TABS: &str = "indent with spaces; YAML does not allow tabs for indentation";
    let hint = match scan.kind() {
        ErrorKind::TabInIndentation
        | ErrorKind::TabInPlainScalar
        | ErrorKind::TabAtBlockScalarStart => TABS,
        ErrorKind::UnclosedFlowCollection { .. }
        | ErrorKind::MismatchedFlowCollectionEnd { .. }
        | ErrorKind::MisplacedFlowCollectionEnd
        | ErrorKind::ExpectedFlowMappingSeparator
        | ErrorKind::ExpectedFlowSequenceSeparator => {
            "close every `[` with `]` and every `{` with `}`"
        }
        ErrorKind::MappingValueNotAllowed
        | ErrorKind::InvalidColonPlacement
        | ErrorKind::MappingKeyNotAllowed => {
            "check the indentation: keys of one section must line up, and a value containing `: ` must be quoted"
        }
        ErrorKind::InvalidMappingValueWhitespace => "put a space after the `:` that ends a key",
        _ if msg.contains("tab") => TABS,
        _ => YAML_HINT,
    };
    hint.to_owned()
}

/// For an unclosed or badly continued quoted value, the position of its opening quote: the
/// parser only notices the problem where the value should have ended.
fn unclosed_quote(err: &YamlError, text: &str, at: (u64, u64)) -> Option<((u64, u64), char)> {
    let YamlError::ExternalMessage { source, .. } = err else {
        return None;
    };
    let ExternalMessageSource::Parser(scan) = source.as_ref() else {
        return None;
    };
    if !matches!(
        scan.kind(),
        ErrorKind::UnclosedQuotedScalar
            | ErrorKind::InvalidQuotedScalarIndent
            | ErrorKind::DocumentIndicatorInQuotedScalar
    ) {
        return None;
    }
    // (quote, line, column) of the quoted value open at the current point, if any.
    let mut open: Option<(char, u64, u64)> = None;
    for (line_no, line) in (1u64..).zip(text.lines()) {
        let mut prev = ' ';
        let mut chars = (1u64..).zip(line.chars()).peekable();
        while let Some((column, c)) = chars.next() {
            if (line_no, column) > at {
                return open.map(|(quote, line, column)| ((line, column), quote));
            }
            match open {
                None if c == '#' && prev.is_whitespace() => break,
                None if (c == '"' || c == '\'')
                    && (prev.is_whitespace() || "[{,:-?".contains(prev)) =>
                {
                    open = Some((c, line_no, column));
                }
                Some(('"', ..)) if c == '\\' => {
                    chars.next();
                }
                Some(('\'', ..))
                    if c == '\'' && chars.peek().is_some_and(|(_, next)| *next == '\'') =>
                {
                    chars.next();
                }
                Some((quote, ..)) if c == quote => open = None,
                _ => {}
            }
            prev = c;
        }
    }
    open.map(|(quote, line, column)| ((line, column), quote))
}

/// serde-saphyr's own message without its ` at line L, column C` suffix.
fn plain_message(err: &YamlError) -> String {
    let rendered = err.to_string();
    match rendered.rfind(" at line ") {
        Some(cut) if rendered[cut..].contains(", column ") => rendered[..cut].to_owned(),
        _ => rendered,
    }
}
