//! Reconnect delays: exponential with jitter, from a seeded generator so
//! tests are deterministic.
//!
//! Attempt `k` (from 0) draws uniformly from `[max(min, c/2), c]` where
//! `c = min(min * 2^(k+1), max)`. Delays therefore never leave
//! `[min, max]`, never shrink before the cap is reached, and two nodes that
//! lost the same peer at the same instant do not retry in lockstep.

use std::time::Duration;

/// Jittered exponential backoff.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt; each call grows the next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.saturating_add(1));
        let ceiling = self.min.saturating_mul(factor).min(self.max);
        let floor = (ceiling / 2).max(self.min);
        self.attempt = self.attempt.saturating_add(1);
        let lo = nanos(floor);
        let hi = nanos(ceiling);
        Duration::from_nanos(self.rng.u64(lo..=hi))
    }

    /// Back to the first delay (after a successful handshake).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_then_caps() {
        let (min, max) = (Duration::from_millis(50), Duration::from_secs(2));
        let mut b = Backoff::new(min, max, 7);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for d in &delays {
            assert!(*d >= min && *d <= max, "{d:?}");
        }
        // 100, 200, 400, 800, 1600 ms ceilings: strictly ordered ranges.
        for w in delays[..5].windows(2) {
            assert!(w[0] <= w[1], "{delays:?}");
        }
        assert!(delays[6..].iter().all(|d| *d >= max / 2));
        b.reset();
        assert!(b.next_delay() <= min * 2);
    }

    #[test]
    fn seeds_differ_and_repeat() {
        let draw = |seed| {
            let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2), seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn max_below_min_is_min() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_millis(10), 0);
        assert_eq!(b.next_delay(), Duration::from_millis(50));
    }
}
