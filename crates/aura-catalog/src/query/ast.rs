//! The parsed form of a query: filter, aggregates, grouping, sort, limit, offset and projection.

use std::fmt;
use std::sync::Arc;

use regex::Regex;

use crate::value::Scalar;

/// A parsed query. Paths are canonical (aliases resolved).
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Which assets take part (all when `None`).
    pub filter: Option<Filter>,
    /// Aggregates; when non-empty the answer is one row per group.
    pub aggregates: Vec<Aggregate>,
    /// Group keys of the aggregates (one group over everything when empty).
    pub group_by: Vec<Arc<str>>,
    /// Sort keys, in order.
    pub sort: Vec<SortKey>,
    /// How many rows to return at most (the configured default when `None`).
    pub limit: Option<usize>,
    /// How many rows to skip.
    pub offset: usize,
    /// Projection: only these fields of each asset.
    pub fields: Vec<Arc<str>>,
}

/// A boolean condition on one asset.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// It does not hold.
    Not(Box<Filter>),
    /// `path op value`.
    Cmp(Arc<str>, CmpOp, Scalar),
    /// `path in (v, …)`.
    In(Arc<str>, Vec<Scalar>),
    /// `path contains v`: substring of a string, member of a list.
    Contains(Arc<str>, Scalar),
    /// `path ~ 'regex'`.
    Match(Arc<str>, Arc<Regex>),
    /// `exists path` / `path exists`.
    Exists(Arc<str>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// An aggregate function over the matching assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Which function.
    pub func: AggFn,
    /// Its field (`count()` has none).
    pub path: Option<Arc<str>>,
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}({})",
            self.func.as_str(),
            self.path.as_deref().unwrap_or("")
        )
    }
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    /// Number of assets (or of assets having the field).
    Count,
    /// Mean of the numeric values.
    Avg,
    /// Smallest numeric value.
    Min,
    /// Largest numeric value.
    Max,
    /// Sum of the numeric values.
    Sum,
}

impl AggFn {
    /// The function's name in queries.
    pub fn as_str(self) -> &'static str {
        match self {
            AggFn::Count => "count",
            AggFn::Avg => "avg",
            AggFn::Min => "min",
            AggFn::Max => "max",
            AggFn::Sum => "sum",
        }
    }
}

/// One sort key.
#[derive(Debug, Clone)]
pub struct SortKey {
    /// What to sort by.
    pub target: SortTarget,
    /// Largest first.
    pub descending: bool,
}

/// A field (asset rows or group keys) or an aggregate (group rows).
#[derive(Debug, Clone)]
pub enum SortTarget {
    /// A field path.
    Field(Arc<str>),
    /// An aggregate column.
    Aggregate(Aggregate),
}

impl Filter {
    /// Every path the filter reads.
    pub fn paths<'a>(&'a self, out: &mut Vec<&'a Arc<str>>) {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.paths(out);
                b.paths(out);
            }
            Filter::Not(a) => a.paths(out),
            Filter::Cmp(p, ..)
            | Filter::In(p, _)
            | Filter::Contains(p, _)
            | Filter::Match(p, _)
            | Filter::Exists(p) => out.push(p),
        }
    }
}
