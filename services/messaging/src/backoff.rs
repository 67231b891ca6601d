//! Waiting before trying again: exponential backoff with full jitter, so clients that lost the
//! same broker at the same moment do not all come back at the same moment.

use std::time::Duration;

/// Exponential backoff with full jitter: attempt n waits a uniform draw from
/// `[0, min(max, base × 2ⁿ)]`, never less than a millisecond.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff that starts near `base` and never waits more than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The brokers' default: from 100 ms up to 2 s, so a client is back within about 2 s of its
    /// broker.
    pub fn broker() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// The ceiling of the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(self.attempt.min(31)))
            .min(self.max)
    }

    /// The next wait; each call doubles the ceiling up to the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos)).max(Duration::from_millis(1))
    }

    /// Sleeps for [`Backoff::next_wait`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_maximum_and_stay_jittered_below_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let ceilings: Vec<u128> = (0..7)
            .map(|_| {
                let ceiling = b.ceiling();
                let wait = b.next_wait();
                assert!(wait <= ceiling && wait >= Duration::from_millis(1));
                ceiling.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000]);
        // Full jitter: many draws from the same ceiling are not all alike.
        let draws: std::collections::HashSet<Duration> =
            (0..20).map(|_| b.clone().next_wait()).collect();
        assert!(draws.len() > 10, "{draws:?}");
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
