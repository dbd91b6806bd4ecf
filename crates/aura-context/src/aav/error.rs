//! Errors of the asset-file format, reader and writer.

use std::path::PathBuf;

/// Why an asset file could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum AavError {
    /// A filesystem operation failed.
    #[error("`{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("`{path}`: not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file is TOML but does not follow the schema.
    #[error("`{path}`: {message}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An asset id that cannot name a file.
    #[error(
        "invalid asset id `{0}`: use 1 to 200 letters, digits, `.`, `_` or `-`, not starting with `.`"
    )]
    AssetId(String),
    /// A section name that is not a bare TOML key, or is `meta`.
    #[error(
        "invalid section name `{0}`: use letters, digits, `_` or `-`; `meta` is written by the writer"
    )]
    Section(String),
    /// Serialising the document failed.
    #[error("cannot serialise `{path}`: {message}")]
    Serialize {
        /// The file.
        path: PathBuf,
        /// The serialiser's message.
        message: String,
    },
}

impl AavError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AavError {
        let path = path.into();
        move |source| AavError::Io { path, source }
    }
}
