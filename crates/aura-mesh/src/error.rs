//! The mesh's error type.

/// Why a mesh call failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The input is not acceptable (bad topic or group name, bad offset).
    #[error("{0}")]
    Invalid(String),
    /// The topic does not exist.
    #[error("no topic `{0}`")]
    NoTopic(String),
    /// The backend cannot be reached now; the call may succeed later.
    #[error("mesh backend unavailable: {0}")]
    Unavailable(String),
    /// Local storage failed.
    #[error("mesh storage: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data is damaged.
    #[error("mesh data corrupt: {0}")]
    Corrupt(String),
    /// The mesh was closed.
    #[error("mesh closed")]
    Closed,
    /// The backend answered with an error.
    #[error("mesh backend error: {0}")]
    Backend(String),
}

impl MeshError {
    /// Whether the failure is the backend being unreachable (a spool may take the message instead).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, MeshError::Unavailable(_))
    }
}
