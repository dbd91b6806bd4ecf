//! The query language: syntax tree and parser. Execution lives with the index.

pub mod ast;
pub mod parse;

pub use parse::{MAX_LIMIT, ParseError, parse};
