//! The node's one clock.
//!
//! Every time the gateway acts on is a monotonic `Instant`, read by the
//! driver (the shard's ticker, the control thread) and passed into the
//! protocol logic, which never reads a clock itself. Unix time (token `exp`,
//! message timestamps, message ids) is derived from that same `Instant`
//! through one anchor taken when the node starts, so a test that moves its
//! simulated `Instant` moves Unix time with it, and the wall clock stepping
//! (NTP) never makes a deadline jump.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Maps monotonic instants to Unix time, from one anchor.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_unix_ms: u64,
}

impl Clock {
    /// Anchors now: the one place the wall clock is read.
    pub fn system() -> Clock {
        Clock::anchored(Instant::now(), unix_ms_now())
    }

    /// A clock where `anchor` is `unix_ms` (simulated time in tests).
    pub fn anchored(anchor: Instant, unix_ms: u64) -> Clock {
        Clock {
            anchor,
            anchor_unix_ms: unix_ms,
        }
    }

    /// The monotonic reading of now (drivers only; protocol logic takes
    /// `now` as an argument).
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Unix milliseconds at `at`.
    pub fn unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(d) => self.anchor_unix_ms.saturating_add(d.as_millis() as u64),
            None => self
                .anchor_unix_ms
                .saturating_sub(self.anchor.duration_since(at).as_millis() as u64),
        }
    }

    /// Unix seconds at `at`.
    pub fn unix_secs(&self, at: Instant) -> u64 {
        self.unix_ms(at) / 1000
    }

    /// The instant at which Unix time reaches `unix_ms` (`None` when it is
    /// too far away to represent).
    pub fn instant_of(&self, unix_ms: u64) -> Option<Instant> {
        if unix_ms >= self.anchor_unix_ms {
            self.anchor
                .checked_add(Duration::from_millis(unix_ms - self.anchor_unix_ms))
        } else {
            let back = Duration::from_millis(self.anchor_unix_ms - unix_ms);
            Some(self.anchor.checked_sub(back).unwrap_or(self.anchor))
        }
    }
}

/// Unix milliseconds now, from the wall clock: for what runs outside any
/// shard and has no clock passed in (the CLI's token minting, the control
/// thread's admin pushes).
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_moves_with_the_instant() {
        let t0 = Instant::now();
        let clock = Clock::anchored(t0, 1_000_000);
        assert_eq!(clock.unix_ms(t0), 1_000_000);
        assert_eq!(clock.unix_ms(t0 + Duration::from_millis(1500)), 1_001_500);
        assert_eq!(clock.unix_secs(t0 + Duration::from_millis(1500)), 1001);
    }

    #[test]
    fn instant_of_inverts_unix_ms() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let clock = Clock::anchored(t0, 5_000_000);
        let at = clock.instant_of(5_000_250).unwrap();
        assert_eq!(at - t0, Duration::from_millis(250));
        assert_eq!(clock.unix_ms(at), 5_000_250);
        // Past instants resolve too (token already expired).
        let past = clock.instant_of(4_999_000).unwrap();
        assert_eq!(t0 - past, Duration::from_millis(1000));
    }
}
