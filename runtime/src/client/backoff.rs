//! Waiting between attempts: gRPC's connection backoff, and the
//! exponential backoff of gRFC A6 retries.

use std::time::Duration;

use crate::codegen::RetrySpec;

/// A uniform draw from [0, 1).
pub(crate) fn unit() -> f64 {
    (crate::trace::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// gRPC's connection backoff (doc/connection-backoff.md): the first retry
/// after 1 s, each later one ×1.6, at most 120 s, every wait moved by up
/// to ±20 %.
#[derive(Debug, Clone)]
pub(crate) struct ConnectBackoff {
    next: Duration,
}

impl ConnectBackoff {
    pub(crate) const INITIAL: Duration = Duration::from_secs(1);
    pub(crate) const MULTIPLIER: f64 = 1.6;
    pub(crate) const JITTER: f64 = 0.2;
    pub(crate) const MAX: Duration = Duration::from_secs(120);

    pub(crate) fn new() -> ConnectBackoff {
        ConnectBackoff { next: Self::INITIAL }
    }

    /// The wait before the next attempt; each call grows the one after.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = base.mul_f64(Self::MULTIPLIER).min(Self::MAX);
        base.mul_f64(1.0 + Self::JITTER * (2.0 * unit() - 1.0))
    }

    /// After a success: the next failure waits the initial backoff again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::INITIAL;
    }
}

/// gRFC A6: the wait before retry `n` (1 for the first retry) is uniform
/// in [0, min(initial·multiplier^(n−1), max)).
pub(crate) fn retry_wait(policy: &RetrySpec, n: u32) -> Duration {
    retry_bound(policy, n).mul_f64(unit())
}

/// The upper end of [`retry_wait`]'s range.
pub(crate) fn retry_bound(policy: &RetrySpec, n: u32) -> Duration {
    let exp = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
    let grown = policy.initial_backoff.as_secs_f64() * policy.backoff_multiplier.powi(exp);
    Duration::from_secs_f64(grown.min(policy.max_backoff.as_secs_f64()).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_backoff_grows_by_the_spec_within_its_jitter() {
        let mut b = ConnectBackoff::new();
        let mut base = 1.0f64;
        for _ in 0..20 {
            let wait = b.next_wait().as_secs_f64();
            assert!(wait >= base * 0.8 - 1e-9 && wait <= base * 1.2 + 1e-9, "{wait} vs {base}");
            base = (base * 1.6).min(120.0);
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(1200));
    }

    #[test]
    fn retry_backoff_is_bounded_by_the_policy() {
        let policy = RetrySpec {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            backoff_multiplier: 2.0,
            retryable_codes: &[],
        };
        assert_eq!(retry_bound(&policy, 1), Duration::from_millis(100));
        assert_eq!(retry_bound(&policy, 2), Duration::from_millis(200));
        assert_eq!(retry_bound(&policy, 3), Duration::from_millis(300));
        assert_eq!(retry_bound(&policy, 9), Duration::from_millis(300));
        for n in 1..6 {
            assert!(retry_wait(&policy, n) < retry_bound(&policy, n));
        }
    }
}
