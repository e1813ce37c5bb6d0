//! When a connection's unacknowledged QoS 1 messages are sent again.
//!
//! Pure time arithmetic, driven by the shard's timing wheel: the timer is
//! armed at `deadline()`; when it fires, `fire(now)` says whether to resend,
//! and doubles the timeout up to its cap. Progress (an ack that moved the
//! window, or the first message after an idle spell) restarts from the base.
use std::time::{Duration, Instant};

/// Exponential retransmit backoff of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    rto: Duration,
    since: Instant,
}

impl Backoff {
    /// Starts at `base`, doubling up to `max`, counting from `now`.
    pub(crate) fn new(base: Duration, max: Duration, now: Instant) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            rto: base,
            since: now,
        }
    }

    /// The window moved: the next retransmit is a base timeout from `now`.
    pub(crate) fn progress(&mut self, now: Instant) {
        self.rto = self.base;
        self.since = now;
    }

    /// The current timeout.
    pub(crate) fn rto(&self) -> Duration {
        self.rto
    }

    /// Where the current timeout counts from.
    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// Resumes at timeout `rto` (within `base..=max`): an upgrade's new
    /// process taking the state over.
    pub(crate) fn set_rto(&mut self, rto: Duration) {
        self.rto = rto.clamp(self.base, self.max);
    }

    /// When the timer should fire next.
    pub(crate) fn deadline(&self) -> Instant {
        self.since + self.rto
    }

    /// The timer fired at `now`. True when it is time to resend; the next
    /// timeout is then twice as long (at most `max`), counted from `now`.
    pub(crate) fn fire(&mut self, now: Instant) -> bool {
        if now < self.deadline() {
            return false;
        }
        self.rto = (self.rto * 2).min(self.max);
        self.since = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wheel::TimingWheel;

    const TICK: Duration = Duration::from_millis(50);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs the backoff on a timing wheel on simulated time, acking at
    /// `acks` (ms); returns the times (ms) at which it resent.
    fn simulate(base: u64, max: u64, until: u64, acks: &[u64]) -> Vec<u64> {
        let t0 = Instant::now();
        let mut wheel = TimingWheel::new(TICK, t0);
        let mut b = Backoff::new(ms(base), ms(max), t0);
        let mut key = wheel.insert(b.deadline(), ());
        let mut resent = Vec::new();
        let mut fired = Vec::new();
        let mut now_ms = 0;
        while now_ms <= until {
            let now = t0 + ms(now_ms);
            if acks.contains(&now_ms) {
                b.progress(now);
                wheel.cancel(key);
                key = wheel.insert(b.deadline(), ());
            }
            wheel.advance(now, &mut fired);
            if fired.drain(..).count() > 0 {
                if b.fire(now) {
                    resent.push(now_ms);
                }
                key = wheel.insert(b.deadline().max(now), ());
            }
            now_ms += TICK.as_millis() as u64;
        }
        resent
    }

    #[test]
    fn doubles_up_to_the_cap() {
        // 200, then +400, +800, +1000 (capped), +1000 ...
        assert_eq!(
            simulate(200, 1000, 4500, &[]),
            vec![200, 600, 1400, 2400, 3400, 4400]
        );
    }

    #[test]
    fn progress_restarts_from_the_base() {
        // Resent at 200 and 600; an ack at 700 moves the next to 900.
        assert_eq!(simulate(200, 1000, 1000, &[700]), vec![200, 600, 900]);
    }

    #[test]
    fn never_fires_early() {
        let t0 = Instant::now();
        let mut b = Backoff::new(ms(300), ms(300), t0);
        assert!(!b.fire(t0 + ms(299)));
        assert!(b.fire(t0 + ms(300)));
        assert_eq!(b.deadline(), t0 + ms(600));
    }

    #[test]
    fn a_cap_below_the_base_is_the_base() {
        let t0 = Instant::now();
        let mut b = Backoff::new(ms(500), ms(100), t0);
        assert!(b.fire(t0 + ms(500)));
        assert_eq!(b.deadline(), t0 + ms(1000));
    }
}
