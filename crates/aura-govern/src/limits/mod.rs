//! Admission limits consulted on the decision path: GCRA rate limits, circuit breakers and bulkheads.
//!
//! Everything here is in memory, does no I/O and takes the time as an argument, so the kernel can call it on the
//! hot path and tests can run it on a manual clock. Keyed state is bounded: idle keys are dropped.

mod breaker;
mod bulkhead;
mod rate;
mod scope;

pub use breaker::{
    Admission, BreakerOpen, BreakerSpec, BreakerState, CircuitBreakers, FailureRatio, Outcome,
};
pub use bulkhead::{BulkheadFull, BulkheadPermit, BulkheadSpec, Bulkheads, PermitId};
pub use rate::{Cost, LimitedBy, Quota, RateLimitSpec, RateLimited, RateLimits, action_tokens};
pub use scope::Scope;

/// A limit specification that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A rate limit is invalid.
    #[error("invalid rate limit `{id}`: {reason}")]
    RateLimit {
        /// The limit's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A circuit breaker is invalid.
    #[error("invalid circuit breaker `{id}`: {reason}")]
    Breaker {
        /// The breaker's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A bulkhead is invalid.
    #[error("invalid bulkhead `{id}`: {reason}")]
    Bulkhead {
        /// The bulkhead's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A capacity setting is invalid.
    #[error("invalid capacity: {0}")]
    Capacity(String),
}

/// Locks `m`, recovering from poisoning: the state behind these locks is plain numbers written whole, so a panic
/// elsewhere while holding the lock cannot leave it inconsistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
