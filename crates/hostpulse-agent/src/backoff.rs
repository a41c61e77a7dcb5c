//! Capped exponential backoff with jitter, for retrying Portal requests and connections.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// `base × 2^attempt`, capped, with "equal jitter": a delay uniformly in `[d/2, d]`, so that many
/// agents restarted together do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempts: u32,
}

impl Backoff {
    /// `attempts` tries in all (the first plus `attempts - 1` retries).
    pub const fn new(base: Duration, cap: Duration, attempts: u32) -> Self {
        Backoff { base, cap, attempts }
    }

    /// Tries in all.
    pub fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// The delay before retry number `attempt + 1` (`attempt` counts from 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.base.saturating_mul(1u32 << attempt.min(20)).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in `[0, 1)` that differs per call and per process (no `rand` crate needed for this).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let h = RandomState::new().hash_one(nanos);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_double_stay_capped_and_jitter_within_half() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 10);
        for (attempt, full_ms) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (30, 1000)] {
            for _ in 0..50 {
                let d = b.delay(attempt).as_secs_f64() * 1000.0;
                assert!((full_ms as f64 / 2.0..=full_ms as f64).contains(&d), "attempt {attempt}: {d} ms");
            }
        }
        let spread: std::collections::HashSet<u128> = (0..50).map(|_| b.delay(3).as_micros()).collect();
        assert!(spread.len() > 10, "jitter varies");
        assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO, 0).attempts(), 1);
    }
}
