//! When to try a registry request again and how long to wait first:
//! exponential backoff with full jitter on connection errors, 408, 429 and
//! 5xx; a `Retry-After` from the registry is honoured up to the cap.

use std::time::Duration;

/// What happened to one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The connection failed or broke before a full response arrived.
    ConnectionError,
    /// The registry answered with this status.
    Status(u16),
    /// The answer did not start in time, or its body came too slowly.
    Stalled,
}

/// Exponential backoff: attempt `n` (0-based) waits a random duration in
/// `[delay/2, delay]` with `delay = min(base * 2^n, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// True when `outcome` is worth another attempt (transient by nature).
    pub fn is_transient(outcome: Outcome) -> bool {
        match outcome {
            Outcome::ConnectionError | Outcome::Stalled => true,
            Outcome::Status(s) => s == 408 || s == 429 || (500..=599).contains(&s),
        }
    }

    /// The wait before attempt `attempt + 1` after attempt `attempt` (0-based)
    /// ended in `outcome`, or `None` to give up. `jitter` is a uniform
    /// random number in `[0, 1)`; `retry_after` is the registry's hint.
    pub fn next_delay(
        &self,
        attempt: u32,
        outcome: Outcome,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt + 1 >= self.max_attempts || !Self::is_transient(outcome) {
            return None;
        }
        // A stall is worth one fresh connection (a dead TCP connection
        // stalls too), not a retry budget's worth of waiting.
        if outcome == Outcome::Stalled && attempt > 0 {
            return None;
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jittered = exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        Some(match retry_after {
            Some(hint) => hint.min(self.max_delay).max(jittered),
            None => jittered,
        })
    }
}

/// A uniform number in `[0, 1)` from the standard library's randomly keyed
/// hasher; good enough to keep clients from retrying in lockstep.
pub fn jitter() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is
/// not used by registries and is ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_outcomes_are_exactly_connection_408_429_and_5xx() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(RetryPolicy::is_transient(Outcome::Status(s)), "{s}");
        }
        for s in [200, 201, 202, 400, 401, 403, 404, 405, 409, 416] {
            assert!(!RetryPolicy::is_transient(Outcome::Status(s)), "{s}");
        }
        assert!(RetryPolicy::is_transient(Outcome::ConnectionError));
    }

    #[test]
    fn a_stall_is_retried_once() {
        let p = RetryPolicy::default();
        assert!(p.next_delay(0, Outcome::Stalled, None, 0.0).is_some());
        assert_eq!(p.next_delay(1, Outcome::Stalled, None, 0.0), None);
    }

    #[test]
    fn backoff_doubles_stays_within_jitter_bounds_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let e = Outcome::Status(503);
        assert_eq!(
            p.next_delay(0, e, None, 0.0),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            p.next_delay(0, e, None, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            p.next_delay(1, e, None, 1.0),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            p.next_delay(3, e, None, 1.0),
            Some(Duration::from_millis(800))
        );
        assert_eq!(p.next_delay(4, e, None, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(
            p.next_delay(8, e, None, 0.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(p.next_delay(9, e, None, 0.0), None, "attempts exhausted");
        assert_eq!(p.next_delay(0, Outcome::Status(404), None, 0.5), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default();
        let e = Outcome::Status(429);
        assert_eq!(
            p.next_delay(0, e, Some(Duration::from_secs(3)), 0.0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.next_delay(0, e, Some(Duration::from_secs(3600)), 0.0),
            Some(p.max_delay)
        );
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
