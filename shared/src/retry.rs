//! The one retry policy: exponential backoff with full jitter, used both for in-call retries
//! (unprocessed DynamoDB batches, refused SQS batch entries) and for queue redelivery delays.

use std::time::Duration;

use rand::Rng;

/// How many times the queue delivers a job before moving it to the dead-letter queue on its own
/// (the template's `maxReceiveCount`; a test keeps the two in step). The worker parks a job
/// itself on its last delivery, with the reason, so the queue never has to.
pub const MAX_RECEIVES: u32 = 100;

/// How long a job that keeps failing transiently is retried before it is parked: throttles by
/// Meta (`#613`, `#80002`, …) and LiveChat's 429 can last hours.
pub const RETRY_FOR: chrono::Duration = chrono::Duration::hours(6);

/// The longest delay a retry may ask for (SQS caps a visibility timeout at 12 hours).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(12 * 3600);

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

    /// Redelivery of a queued job after a transient failure (SQS visibility timeout): 10 s
    /// doubling to 15 min, for as long as the worker's retry window (6 h) lasts —
    /// `MAX_RECEIVES` deliveries are enough for it even at the shortest delays.
    pub const REDELIVERY: RetryPolicy = RetryPolicy {
        retries: MAX_RECEIVES as usize - 1,
        base: Duration::from_secs(10),
        max: Duration::from_secs(15 * 60),
    };

    /// The delay before attempt `attempt` (1 = first retry): "equal jitter" over the capped
    /// exponential — between half of it and all of it — so retries spread out but the window
    /// a number of retries covers stays predictable.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max);
        let (low, high) = (exp.as_millis() / 2, exp.as_millis());
        Duration::from_millis(rand::rng().random_range(low..=high) as u64)
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
            assert!(d >= p.base / 2);
        }
        // The upper bound doubles: attempt 3 may reach 4× base, attempt 1 never exceeds base.
        assert!((0..200).all(|_| p.delay(1) <= p.base));
        assert!((0..200).any(|_| p.delay(3) > p.base * 2));
    }

    #[test]
    fn the_deliveries_cover_the_retry_window_even_at_the_shortest_delays() {
        let p = RetryPolicy::REDELIVERY;
        // The shortest delay of each retry is half its capped exponential.
        let shortest: Duration = (1..MAX_RECEIVES)
            .map(|a| {
                let exp = p
                    .base
                    .saturating_mul(1u32.checked_shl(a - 1).unwrap_or(u32::MAX));
                exp.min(p.max) / 2
            })
            .sum();
        let window = RETRY_FOR.to_std().unwrap();
        assert!(shortest > window, "{shortest:?} < {window:?}");
    }
}
