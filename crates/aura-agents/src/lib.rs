//! Agent coordination on top of the event mesh: the protocol [`envelope`] (seed 004's message schema plus trace
//! context and an idempotency key), the inter-agent [`patterns`], the durable [`tasks`] store with its side-effect
//! journal, [`routing`] of tasks to agents by capability and load, [`retry`] with jittered backoff, the per-topic
//! dead-letter queue ([`dlq`]), the consuming [`worker`] loop with graceful shutdown, and the [`runner`] that runs
//! declared agents as child processes (or tmux windows) under a heartbeat watchdog.
//!
//! Architecture invariant: nothing here knows HTTP or the governance kernel. Every outgoing message goes through an
//! [`patterns::Outbox`], which the server implements by asking the kernel first (kind `message`).

pub mod dlq;
pub mod envelope;
pub mod patterns;
pub mod retry;
pub mod routing;
pub mod runner;
pub mod tasks;
pub mod worker;

/// Why an agents-plane call failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// The input breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the current state (e.g. an illegal task transition).
    #[error("{0}")]
    Conflict(String),
    /// A wait ran out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The mesh failed.
    #[error(transparent)]
    Mesh(#[from] aura_mesh::MeshError),
    /// Local storage failed.
    #[error("agents storage: {0}")]
    Io(#[from] std::io::Error),
    /// The outbox refused the message (e.g. governance denied it).
    #[error("message refused: {0}")]
    Refused(String),
}
