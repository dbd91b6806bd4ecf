//! Retries with jittered exponential backoff ("full jitter"), honouring a server's `Retry-After`.

use std::time::Duration;

use aura_core::Timestamp;

/// The longest `Retry-After` honoured; a larger value waits this long.
pub const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);

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
    /// many clients), but never less than `retry_after` when the failing side said so — honoured in full, even past
    /// `max`, up to [`RETRY_AFTER_LIMIT`].
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
            Some(r) => jittered.max(r.min(RETRY_AFTER_LIMIT)),
            None => jittered,
        }
    }
}

/// Parses an HTTP `Retry-After` value given in seconds (use [`parse_retry_after_at`] for HTTP dates too).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Parses an HTTP `Retry-After` value (RFC 9110 §10.2.3): delay seconds, or an HTTP date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`) turned into the wait from `now` (zero when the date has passed).
pub fn parse_retry_after_at(value: &str, now: Timestamp) -> Option<Duration> {
    if let Some(d) = parse_retry_after(value) {
        return Some(d);
    }
    let at_ms = imf_fixdate_seconds(value.trim())?.checked_mul(1000)?;
    let wait = at_ms.saturating_sub(now.as_millis()).max(0);
    Some(Duration::from_millis(wait as u64))
}

/// Seconds since the Unix epoch of an IMF-fixdate.
fn imf_fixdate_seconds(s: &str) -> Option<i64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let (h, m, sec): (i64, i64, i64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
    );
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}
