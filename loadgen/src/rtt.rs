//! Heartbeat round trips (the `upgrade` scenario). Every ping carries its
//! send time (microseconds of [`crate::payload::now_ns`]) as its nonce; the
//! gateway echoes it in the `Pong`, whose arrival gives the round trip.
//! Workers keep what they measured since their sweeper's last tick in an
//! [`Rtts`] and add it to the shared one every tick; the main thread reads
//! the shared one.
use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::Pcts;
use crate::stats::Shared;

/// Width of a time-series bucket (by send time), in microseconds.
pub const BUCKET_US: u64 = 100_000;

/// Round trips, in microseconds.
pub struct Rtts {
    /// By send time, one bucket per [`BUCKET_US`]: two significant digits
    /// (a plot's worth; the run's figures come from the histograms below).
    pub buckets: BTreeMap<u64, Histogram<u32>>,
    /// Pings in flight at some moment of the window (sent before it
    /// closed, answered after it opened).
    pub window: Histogram<u64>,
    /// Every other ping answered while recording.
    pub outside: Histogram<u64>,
}

impl Default for Rtts {
    fn default() -> Self {
        Rtts {
            buckets: BTreeMap::new(),
            window: crate::stats::histogram(),
            outside: crate::stats::histogram(),
        }
    }
}

fn bucket_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("constant histogram bounds are valid")
}

impl Rtts {
    /// Records the answer, at `now_us`, to a ping sent at `sent_us`;
    /// `window` is the open or last window `(from, to)`, if any.
    pub fn record(&mut self, sent_us: u64, now_us: u64, window: Option<(u64, u64)>) {
        // A nonce from the future is not a send time of ours.
        if sent_us > now_us {
            return;
        }
        let rtt = (now_us - sent_us).max(1);
        let _ = self
            .buckets
            .entry(sent_us / BUCKET_US)
            .or_insert_with(bucket_histogram)
            .record(rtt);
        let inside = window.is_some_and(|(from, to)| sent_us <= to && now_us >= from);
        let h = match inside {
            true => &mut self.window,
            false => &mut self.outside,
        };
        let _ = h.record(rtt);
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Adds everything to `into` and starts afresh.
    pub fn hand_over(&mut self, into: &mut Rtts) {
        for (k, h) in std::mem::take(&mut self.buckets) {
            match into.buckets.get_mut(&k) {
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => {
                    into.buckets.insert(k, h);
                }
            }
        }
        let _ = into.window.add(&self.window);
        let _ = into.outside.add(&self.outside);
        self.window.reset();
        self.outside.reset();
    }

    /// Takes the window's histogram, leaving an empty one.
    pub fn take_window(&mut self) -> Histogram<u64> {
        std::mem::replace(&mut self.window, crate::stats::histogram())
    }
}

/// The shared round trips (the workers' last ticks included): taken
/// away, or a copy of the buckets only.
pub fn take(shared: &Shared, take: bool) -> Option<Rtts> {
    std::thread::sleep(Duration::from_millis(250));
    let mut r = shared.rtt.lock().ok()?;
    match take {
        true => r.take(),
        false => r.as_ref().map(|r| Rtts {
            buckets: r.buckets.clone(),
            ..Rtts::default()
        }),
    }
}

/// The end of the last bucket after `from_us` whose slowest round trip
/// took `slow_us` or more (payload microseconds; 0: none).
pub fn last_slow(r: &Rtts, from_us: u64, slow_us: u64) -> u64 {
    r.buckets
        .range(from_us / BUCKET_US..)
        .rev()
        .find(|(_, h)| h.max() >= slow_us)
        .map_or(0, |(k, _)| (k + 1) * BUCKET_US)
}

/// Percentiles of the round trips of pings sent in `from..to` (payload
/// microseconds), at the buckets' two significant digits.
pub fn between(r: &Rtts, from: u64, to: u64) -> Pcts {
    let mut h = hdrhistogram::Histogram::<u32>::new_with_bounds(1, 600_000_000, 2)
        .expect("constant histogram bounds are valid");
    let (first, end) = (from / BUCKET_US + 1, to / BUCKET_US);
    if first >= end {
        return Pcts::default();
    }
    for (_, b) in r.buckets.range(first..end) {
        let _ = h.add(b);
    }
    Pcts::of(&h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_in_flight_during_the_window_count_in_it() {
        let mut r = Rtts::default();
        let w = Some((1_000_000, 3_000_000));
        r.record(100_000, 200_000, w); // answered before it opened
        r.record(900_000, 3_500_000, w); // sent before, answered after
        r.record(2_000_000, 2_100_000, w); // inside
        r.record(2_900_000, 3_100_000, w); // sent inside, answered after
        r.record(3_100_000, 3_200_000, w); // sent after it closed
        r.record(5, 4, w); // not ours
        assert_eq!(r.window.len(), 3);
        assert_eq!(r.outside.len(), 2);
        assert!(r.window.max() >= 2_590_000);
        let mut all = Rtts::default();
        r.hand_over(&mut all);
        assert!(r.is_empty() && r.window.is_empty());
        assert_eq!(all.buckets.values().map(|h| h.len()).sum::<u64>(), 5);
        assert_eq!(all.take_window().len(), 3);
        assert!(all.window.is_empty());
    }

    #[test]
    fn buckets_answer_ranges_and_the_last_slow_one() {
        let mut r = Rtts::default();
        for i in 0..50u64 {
            // One ping every 100 ms; those sent in 1.0..1.5 s wait 800 ms.
            let sent = i * BUCKET_US + 10;
            let rtt = if (10..15).contains(&i) {
                800_000
            } else {
                5_000
            };
            r.record(sent, sent + rtt, None);
        }
        let early = between(&r, 0, 1_000_000);
        assert_eq!((early.count, early.max / 1000), (9, 5));
        assert_eq!(between(&r, 900_000, 1_600_000).count, 6);
        assert_eq!(between(&r, 1_000_000, 1_050_000).count, 0);
        assert_eq!(last_slow(&r, 0, 100_000), 1_500_000);
        assert_eq!(last_slow(&r, 1_600_000, 100_000), 0);
    }
}
