//! Errors of loading a policy bundle: each names the file, line and column, what is wrong and how to fix it.

use std::fmt;
use std::sync::Arc;

/// A place in a policy file: the file's name and a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file, as named when the bundle was loaded (e.g. `policies/prod.yaml`).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem in a policy bundle. `Display` is the complete message for the user:
///
/// ```text
/// policies/prod.yaml:7:7: unknown key `agnt` in `rules[0].when`
///   hint: did you mean `agent`? valid keys: agent, kind, target, args, labels, time, count
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A file or the policy directory could not be read.
    #[error("`{path}`: cannot read policies: {reason}\n  hint: {hint}")]
    Read {
        /// The file or directory, as given.
        path: String,
        /// What went wrong.
        reason: String,
        /// How to fix it.
        hint: String,
    },
    /// A file was read but part of it is not a valid policy.
    #[error("{at}: {message}\n  hint: {hint}")]
    Invalid {
        /// Where the offending key or value starts.
        at: Location,
        /// What is wrong, naming the key or value in backticks.
        message: String,
        /// How to fix it.
        hint: String,
    },
}

/// Every problem found in a policy bundle, in file order. Loading reports all of them at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// The problems, in file order.
    pub fn errors(&self) -> &[PolicyError] {
        &self.0
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}
