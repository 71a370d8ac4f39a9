//! The one retry policy: exponential backoff with full jitter, used both for in-call retries
//! (unprocessed DynamoDB batches, refused SQS batch entries) and for queue redelivery delays.

use std::time::Duration;

use rand::Rng;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: usize,
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// Retries inside one invocation: short, so a Lambda never waits long on a platform.
    pub const IN_CALL: RetryPolicy = RetryPolicy {
        retries: 3,
        base: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };

    /// Redelivery of a queued job after a transient failure (SQS visibility timeout).
    pub const REDELIVERY: RetryPolicy = RetryPolicy {
        retries: 5,
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
    };

    /// The delay before attempt `attempt` (1 = first retry): full jitter over the capped
    /// exponential, never less than a tenth of `base`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max);
        let floor = self.base / 10;
        let ms =
            rand::rng().random_range(floor.as_millis()..=exp.as_millis().max(floor.as_millis()));
        Duration::from_millis(ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::REDELIVERY;
        for attempt in 1..40 {
            let d = p.delay(attempt);
            assert!(d <= p.max, "attempt {attempt}: {d:?}");
            assert!(d >= p.base / 10);
        }
        // The upper bound doubles: attempt 3 may reach 4× base, attempt 1 never exceeds base.
        assert!((0..200).all(|_| p.delay(1) <= p.base));
        assert!((0..200).any(|_| p.delay(3) > p.base * 2));
    }
}
