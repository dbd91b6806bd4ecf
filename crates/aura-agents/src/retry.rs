//! Retries with jittered exponential backoff ("full jitter"), honouring a server's `Retry-After`.

use std::time::Duration;

/// How failed work is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included); after the last, the message goes to the dead-letter queue.
    pub max_attempts: u32,
    /// Backoff before the second attempt.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Whether a failed `attempt` (1-based) may be retried.
    pub fn should_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The exponential ceiling after `attempt` failures: `base * 2^(attempt-1)`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The delay before the next attempt: uniformly random in `[ceiling/2, ceiling]` (jitter spreads retries of
    /// many clients), but never less than `retry_after` when the failing side said so (capped at `max`).
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let span = (ceiling - half).as_millis() as u64;
        let jittered = half + Duration::from_millis(rng.u64(0..=span));
        match retry_after {
            Some(r) => jittered.max(r.min(self.max)),
            None => jittered,
        }
    }
}

/// Parses an HTTP `Retry-After` value given in seconds (HTTP dates are not accepted here).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
