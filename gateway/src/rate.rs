//! Token buckets (seed 002's limiter): `rate` tokens a second, a burst of
//! twice that. Refusal, never queueing: a caller over its rate is told how
//! long to wait for the next token (`RATE_LIMITED` with `retry_after_ms`).
use std::time::{Duration, Instant};

/// One bucket. Plain data, driven by the caller's clock.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f32,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now` for `rate` per second.
    pub fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: burst(rate),
            at: now,
        }
    }

    /// Takes one token at `now`, or says how long until one is there.
    pub fn take(&mut self, rate: u32, now: Instant) -> Result<(), Duration> {
        let rate_f = rate.max(1) as f32;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f32();
        self.tokens = (self.tokens + elapsed * rate_f).min(burst(rate));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate_f;
            Err(Duration::from_secs_f32(wait).max(Duration::from_millis(1)))
        }
    }

    /// True when the bucket is full again at `now` (it may be forgotten).
    pub fn is_full(&self, rate: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f32();
        self.tokens + elapsed * rate.max(1) as f32 >= burst(rate)
    }
}

fn burst(rate: u32) -> f32 {
    (rate.max(1) as f32) * 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, t0);
        for _ in 0..20 {
            assert!(b.take(10, t0).is_ok());
        }
        let wait = b.take(10, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(101),
            "{wait:?}"
        );
        assert!(
            b.take(10, t0 + Duration::from_millis(100)).is_ok(),
            "one token per 100 ms"
        );
        assert!(b.take(10, t0 + Duration::from_millis(100)).is_err());
        assert!(b.is_full(10, t0 + Duration::from_secs(3)));
    }
}
