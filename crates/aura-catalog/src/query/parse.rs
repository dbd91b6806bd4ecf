//! The query language's lexer and recursive-descent parser. Errors carry the byte position, a caret line and a hint.

use std::sync::Arc;

use regex::Regex;

use super::ast::{AggFn, Aggregate, CmpOp, Filter, Query, SortKey, SortTarget};
use crate::value::{Scalar, canonical_path};

/// A query that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}{}", hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Byte offset in the query text.
    pub position: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    /// The query text with a caret under the position (two lines).
    pub caret: String,
}

/// Clause keywords, for suggestions.
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "contains", "exists", "where", "by", "sort", "limit", "offset",
    "fields", "asc", "desc",
];
const AGGS: &[&str] = &["count", "avg", "min", "max", "sum"];
/// Largest `limit` a query may ask for.
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    Pipe,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

/// Parses query text.
pub fn parse(text: &str) -> Result<Query, ParseError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        text,
        tokens,
        at: 0,
    };
    p.query()
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b':' | b'%' | b'@' | b'+')
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                out.push(Token {
                    tok: Tok::LParen,
                    pos: i,
                });
                i += 1;
            }
            b')' => {
                out.push(Token {
                    tok: Tok::RParen,
                    pos: i,
                });
                i += 1;
            }
            b',' => {
                out.push(Token {
                    tok: Tok::Comma,
                    pos: i,
                });
                i += 1;
            }
            b'\'' | b'"' => {
                let quote = b;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = bytes.get(i) else {
                        return Err(error(
                            text,
                            start,
                            "unterminated string",
                            Some(format!("close it with {}", quote as char)),
                        ));
                    };
                    if c == quote {
                        i += 1;
                        break;
                    }
                    if c == b'\\' && i + 1 < bytes.len() {
                        let n = bytes[i + 1];
                        if n == quote || n == b'\\' {
                            s.push(n as char);
                            i += 2;
                            continue;
                        }
                    }
                    // Copy one UTF-8 character.
                    let ch_len = utf8_len(c);
                    s.push_str(&text[i..i + ch_len]);
                    i += ch_len;
                }
                out.push(Token {
                    tok: Tok::Str(s),
                    pos: start,
                });
            }
            b'=' => {
                i += if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                out.push(Token {
                    tok: Tok::Op("="),
                    pos: start,
                });
            }
            b'!' => match bytes.get(i + 1) {
                Some(b'=') => {
                    i += 2;
                    out.push(Token {
                        tok: Tok::Op("!="),
                        pos: start,
                    });
                }
                Some(b'~') => {
                    i += 2;
                    out.push(Token {
                        tok: Tok::Op("!~"),
                        pos: start,
                    });
                }
                _ => {
                    return Err(error(
                        text,
                        start,
                        "unexpected `!`",
                        Some("use `not` to negate, `!=` or `!~` to compare".into()),
                    ));
                }
            },
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                let op = match (b, eq) {
                    (b'<', true) => "<=",
                    (b'<', false) => "<",
                    (_, true) => ">=",
                    (_, false) => ">",
                };
                i += if eq { 2 } else { 1 };
                out.push(Token {
                    tok: Tok::Op(op),
                    pos: start,
                });
            }
            b'~' => {
                i += 1;
                out.push(Token {
                    tok: Tok::Op("~"),
                    pos: start,
                });
            }
            b'&' if bytes.get(i + 1) == Some(&b'&') => {
                i += 2;
                out.push(Token {
                    tok: Tok::Word("and".into()),
                    pos: start,
                });
            }
            b'|' if bytes.get(i + 1) == Some(&b'|') => {
                i += 2;
                out.push(Token {
                    tok: Tok::Word("or".into()),
                    pos: start,
                });
            }
            b'|' => {
                i += 1;
                out.push(Token {
                    tok: Tok::Pipe,
                    pos: start,
                });
            }
            c if is_word_byte(c) || c == b'*' => {
                while i < bytes.len() && (is_word_byte(bytes[i]) || bytes[i] == b'*') {
                    i += 1;
                }
                let word = &text[start..i];
                let tok = match number(word) {
                    Some(n) => Tok::Num(n),
                    None => Tok::Word(word.to_owned()),
                };
                out.push(Token { tok, pos: start });
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(error(
                    text,
                    start,
                    &format!("unexpected character `{ch}`"),
                    Some("quote values that contain spaces or symbols: name = 'my app'".into()),
                ));
            }
        }
    }
    out.push(Token {
        tok: Tok::End,
        pos: text.len(),
    });
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// A number with an optional unit: `80`, `-1.5`, `80%`, `512MiB`, `2GB`, `1.5k`.
fn number(word: &str) -> Option<f64> {
    let split = word
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
        .map_or(word.len(), |(i, _)| i);
    let (digits, unit) = word.split_at(split);
    if digits.is_empty() || !digits.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.matches('.').count() > 1 {
        return None;
    }
    let base: f64 = digits.parse().ok()?;
    let mult = match unit {
        "" | "%" => 1.0,
        "k" | "K" | "KB" | "kB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "T" | "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Some(base * mult)
}

fn error(text: &str, position: usize, message: &str, hint: Option<String>) -> ParseError {
    let position = position.min(text.len());
    let column = text[..position].chars().count() + 1;
    let caret = format!("{text}\n{}^", " ".repeat(column - 1));
    ParseError {
        message: message.to_owned(),
        position,
        column,
        hint,
        caret,
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at.min(self.tokens.len() - 1)].tok
    }

    fn peek2(&self) -> &Tok {
        &self.tokens[(self.at + 1).min(self.tokens.len() - 1)].tok
    }

    fn pos(&self) -> usize {
        self.tokens[self.at.min(self.tokens.len() - 1)].pos
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn err(&self, message: &str, hint: Option<String>) -> ParseError {
        error(self.text, self.pos(), message, hint)
    }

    fn describe(&self) -> String {
        match self.peek() {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Num(n) => format!("number `{n}`"),
            Tok::Op(o) => format!("`{o}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Pipe => "`|`".into(),
            Tok::End => "end of query".into(),
        }
    }

    fn at_clause(&self) -> bool {
        ["where", "by", "sort", "limit", "offset", "fields"]
            .iter()
            .any(|k| self.is_kw(k))
            || *self.peek() == Tok::End
    }

    fn at_aggregate(&self) -> bool {
        matches!(self.peek(), Tok::Word(w) if AGGS.contains(&w.to_ascii_lowercase().as_str()))
            && *self.peek2() == Tok::LParen
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        let mut q = Query::default();
        if self.at_aggregate() {
            q.aggregates = self.aggregates()?;
        } else if !self.at_clause() {
            q.filter = Some(self.filter()?);
            // `filter | count() by host`: aggregates after a pipe.
            if *self.peek() == Tok::Pipe {
                self.bump();
                if !self.at_aggregate() {
                    return Err(self.err(
                        &format!("expected an aggregate after `|`, found {}", self.describe()),
                        Some("kind = container | count() by host".into()),
                    ));
                }
                q.aggregates = self.aggregates()?;
            }
        }
        loop {
            if *self.peek() == Tok::End {
                break;
            }
            let pos = self.pos();
            let Tok::Word(word) = self.peek().clone() else {
                return Err(self.err(
                    &format!("unexpected {}", self.describe()),
                    Some("after the filter come clauses: by, sort, limit, offset, fields".into()),
                ));
            };
            match word.to_ascii_lowercase().as_str() {
                "where" => {
                    self.bump();
                    if q.filter.is_some() {
                        return Err(error(
                            self.text,
                            pos,
                            "a second filter",
                            Some("combine conditions with `and`".into()),
                        ));
                    }
                    q.filter = Some(self.filter()?);
                }
                "by" => {
                    self.bump();
                    if q.aggregates.is_empty() {
                        return Err(error(
                            self.text,
                            pos,
                            "`by` groups aggregates, but the query has none",
                            Some("start with an aggregate: count() by host".into()),
                        ));
                    }
                    q.group_by = self.paths()?;
                }
                "sort" | "order" => {
                    self.bump();
                    self.eat_kw("by");
                    q.sort = self.sort_keys()?;
                }
                "limit" => {
                    self.bump();
                    let n = self.count("limit")?;
                    if n == 0 || n > MAX_LIMIT {
                        return Err(error(
                            self.text,
                            pos,
                            &format!("limit must be between 1 and {MAX_LIMIT}"),
                            None,
                        ));
                    }
                    q.limit = Some(n);
                }
                "offset" => {
                    self.bump();
                    q.offset = self.count("offset")?;
                }
                "fields" | "select" => {
                    self.bump();
                    q.fields = self.paths()?;
                }
                _ => {
                    let hint = suggest(&word, &["where", "by", "sort", "limit", "offset", "fields", "and", "or"])
                        .map(|s| format!("did you mean `{s}`?"))
                        .or_else(|| Some("after the filter come clauses: by, sort, limit, offset, fields; join conditions with `and`/`or`".into()));
                    return Err(error(self.text, pos, &format!("unexpected `{word}`"), hint));
                }
            }
        }
        Ok(q)
    }

    fn count(&mut self, what: &str) -> Result<usize, ParseError> {
        match self.peek().clone() {
            Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => {
                self.bump();
                Ok(n as usize)
            }
            _ => Err(self.err(
                &format!("`{what}` needs a whole number, found {}", self.describe()),
                Some(format!("{what} 10")),
            )),
        }
    }

    fn aggregates(&mut self) -> Result<Vec<Aggregate>, ParseError> {
        let mut out = Vec::new();
        loop {
            let pos = self.pos();
            let Tok::Word(name) = self.bump() else {
                return Err(error(self.text, pos, "expected an aggregate", None));
            };
            let func = match name.to_ascii_lowercase().as_str() {
                "count" => AggFn::Count,
                "avg" => AggFn::Avg,
                "min" => AggFn::Min,
                "max" => AggFn::Max,
                "sum" => AggFn::Sum,
                other => {
                    let hint = suggest(other, AGGS).map(|s| format!("did you mean `{s}()`?"));
                    return Err(error(
                        self.text,
                        pos,
                        &format!("unknown aggregate `{other}`"),
                        hint,
                    ));
                }
            };
            self.expect(Tok::LParen, "`(`")?;
            let path = if *self.peek() == Tok::RParen {
                None
            } else {
                Some(self.path()?)
            };
            self.expect(Tok::RParen, "`)`")?;
            if func != AggFn::Count && path.is_none() {
                return Err(error(
                    self.text,
                    pos,
                    &format!("`{}()` needs a field", func.as_str()),
                    Some(format!("{}(cpu.percent)", func.as_str())),
                ));
            }
            out.push(Aggregate { func, path });
            if *self.peek() == Tok::Comma {
                self.bump();
                continue;
            }
            return Ok(out);
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ParseError> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.err(&format!("expected {what}, found {}", self.describe()), None))
        }
    }

    fn path(&mut self) -> Result<Arc<str>, ParseError> {
        match self.peek().clone() {
            Tok::Word(w)
                if !is_reserved(&w)
                    && w.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_') =>
            {
                self.bump();
                Ok(Arc::from(canonical_path(&w)))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Arc::from(canonical_path(&s)))
            }
            _ => Err(self.err(
                &format!("expected a field path, found {}", self.describe()),
                Some("field paths look like `kind`, `cpu.percent` or `labels.app`".into()),
            )),
        }
    }

    fn paths(&mut self) -> Result<Vec<Arc<str>>, ParseError> {
        let mut out = vec![self.path()?];
        while *self.peek() == Tok::Comma {
            self.bump();
            out.push(self.path()?);
        }
        Ok(out)
    }

    fn sort_keys(&mut self) -> Result<Vec<SortKey>, ParseError> {
        let mut out = Vec::new();
        loop {
            let target = if self.at_aggregate() {
                let mut aggs = self.aggregates_one()?;
                SortTarget::Aggregate(aggs.remove(0))
            } else {
                SortTarget::Field(self.path()?)
            };
            let descending = if self.eat_kw("desc") {
                true
            } else {
                self.eat_kw("asc");
                false
            };
            out.push(SortKey { target, descending });
            if *self.peek() == Tok::Comma {
                self.bump();
                continue;
            }
            return Ok(out);
        }
    }

    fn aggregates_one(&mut self) -> Result<Vec<Aggregate>, ParseError> {
        // Parse exactly one aggregate (no comma continuation).
        let save = self.at;
        let pos = self.pos();
        let Tok::Word(name) = self.bump() else {
            self.at = save;
            return Err(error(self.text, pos, "expected an aggregate", None));
        };
        let func = match name.to_ascii_lowercase().as_str() {
            "count" => AggFn::Count,
            "avg" => AggFn::Avg,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            _ => AggFn::Sum,
        };
        self.expect(Tok::LParen, "`(`")?;
        let path = if *self.peek() == Tok::RParen {
            None
        } else {
            Some(self.path()?)
        };
        self.expect(Tok::RParen, "`)`")?;
        Ok(vec![Aggregate { func, path }])
    }

    fn filter(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.and()?;
        while self.eat_kw("or") {
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.unary()?;
        while self.eat_kw("and") {
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ParseError> {
        if self.eat_kw("not") {
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if *self.peek() == Tok::LParen {
            let open = self.pos();
            self.bump();
            let inner = self.filter()?;
            if *self.peek() != Tok::RParen {
                return Err(self.err(
                    &format!("expected `)`, found {}", self.describe()),
                    Some(format!(
                        "the `(` at column {} is not closed",
                        self.text[..open].chars().count() + 1
                    )),
                ));
            }
            self.bump();
            return Ok(inner);
        }
        if self.eat_kw("exists") {
            return Ok(Filter::Exists(self.path()?));
        }
        if *self.peek() == Tok::End {
            return Err(self.err(
                "expected a condition, found end of query",
                Some("conditions look like `kind = container` or `cpu.percent > 80`".into()),
            ));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, ParseError> {
        let path_pos = self.pos();
        let path = self.path()?;
        let op_pos = self.pos();
        match self.peek().clone() {
            Tok::Op(op) => {
                self.bump();
                let value = self.value()?;
                match op {
                    "~" | "!~" => {
                        let Scalar::Str(pattern) = &value else {
                            return Err(error(
                                self.text,
                                op_pos,
                                "`~` needs a pattern string",
                                Some("name ~ '^web-'".into()),
                            ));
                        };
                        let re = Regex::new(pattern).map_err(|e| {
                            error(
                                self.text,
                                op_pos,
                                &format!(
                                    "invalid pattern: {}",
                                    e.to_string()
                                        .lines()
                                        .last()
                                        .unwrap_or("")
                                        .trim_start_matches("error: ")
                                ),
                                Some("patterns use Rust regex syntax".into()),
                            )
                        })?;
                        let m = Filter::Match(path, Arc::new(re));
                        Ok(if op == "!~" {
                            Filter::Not(Box::new(m))
                        } else {
                            m
                        })
                    }
                    _ => {
                        let op = match op {
                            "=" => CmpOp::Eq,
                            "!=" => CmpOp::Ne,
                            "<" => CmpOp::Lt,
                            "<=" => CmpOp::Le,
                            ">" => CmpOp::Gt,
                            _ => CmpOp::Ge,
                        };
                        Ok(Filter::Cmp(path, op, value))
                    }
                }
            }
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "in" => {
                    self.bump();
                    Ok(Filter::In(path, self.list()?))
                }
                "contains" => {
                    self.bump();
                    Ok(Filter::Contains(path, self.value()?))
                }
                "exists" => {
                    self.bump();
                    Ok(Filter::Exists(path))
                }
                "not" => {
                    self.bump();
                    if self.eat_kw("in") {
                        Ok(Filter::Not(Box::new(Filter::In(path, self.list()?))))
                    } else if self.eat_kw("contains") {
                        Ok(Filter::Not(Box::new(Filter::Contains(path, self.value()?))))
                    } else if self.eat_kw("exists") {
                        Ok(Filter::Not(Box::new(Filter::Exists(path))))
                    } else {
                        Err(self.err("expected `in`, `contains` or `exists` after `not`", None))
                    }
                }
                _ => Err(self.missing_operator(op_pos, path_pos)),
            },
            _ => Err(self.missing_operator(op_pos, path_pos)),
        }
    }

    fn missing_operator(&self, op_pos: usize, path_pos: usize) -> ParseError {
        if *self.peek() == Tok::LParen {
            let name = self.text[path_pos..op_pos].trim();
            let hint = suggest(&name.to_ascii_lowercase(), AGGS)
                .map(|s| format!("did you mean `{s}()`?"))
                .unwrap_or_else(|| "aggregates are count(), avg(f), min(f), max(f), sum(f)".into());
            return error(
                self.text,
                path_pos,
                &format!("unknown aggregate `{name}`"),
                Some(hint),
            );
        }
        let hint = match self.peek() {
            Tok::Word(w) => suggest(&w.to_ascii_lowercase(), KEYWORDS)
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    "compare with =, !=, <, <=, >, >=, ~, in, contains or exists".into()
                }),
            _ => "compare with =, !=, <, <=, >, >=, ~, in, contains or exists".into(),
        };
        error(
            self.text,
            op_pos,
            &format!("expected an operator, found {}", self.describe()),
            Some(hint),
        )
    }

    fn value(&mut self) -> Result<Scalar, ParseError> {
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                Ok(Scalar::Num(n))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Scalar::Str(Arc::from(s.as_str())))
            }
            Tok::Word(w) if !is_reserved(&w) => {
                self.bump();
                Ok(match w.to_ascii_lowercase().as_str() {
                    "true" => Scalar::Bool(true),
                    "false" => Scalar::Bool(false),
                    _ => Scalar::Str(Arc::from(w.as_str())),
                })
            }
            _ => Err(self.err(
                &format!("expected a value, found {}", self.describe()),
                Some("values are numbers (80, 1.5GiB), words (container) or quoted strings ('my app')".into()),
            )),
        }
    }

    fn list(&mut self) -> Result<Vec<Scalar>, ParseError> {
        if *self.peek() != Tok::LParen {
            return Err(self.err(
                &format!("expected `(` after `in`, found {}", self.describe()),
                Some("kind in (container, pod)".into()),
            ));
        }
        self.bump();
        let mut out = vec![self.value()?];
        while *self.peek() == Tok::Comma {
            self.bump();
            out.push(self.value()?);
        }
        self.expect(Tok::RParen, "`)`")?;
        Ok(out)
    }
}

fn is_reserved(w: &str) -> bool {
    [
        "and", "or", "not", "in", "contains", "exists", "where", "by", "sort", "limit", "offset",
        "fields",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(w))
}

/// The closest candidate within a small edit distance.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= 2.min(c.len().saturating_sub(1)).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
