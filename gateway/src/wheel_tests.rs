//! Unit tests of `wheel`.
use super::*;
use std::collections::BTreeMap;

const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Deterministic xorshift64* generator: no `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Runs the wheel the way a shard does: sleep until `next_expiry`, then
/// advance; returns `(fire instant, value)` for every timer until empty.
fn run_to_empty<T>(wheel: &mut TimingWheel<T>) -> Vec<(Instant, T)> {
    let mut fired = Vec::new();
    let mut out = Vec::new();
    let mut steps = 0;
    while let Some(at) = wheel.next_expiry() {
        steps += 1;
        assert!(steps < 100_000, "wheel does not converge");
        wheel.advance(at, &mut out);
        fired.extend(out.drain(..).map(|v| (at, v)));
    }
    fired
}

#[test]
fn fires_in_order_never_early_at_most_one_tick_late() {
    let start = Instant::now();
    let tick = ms(10);
    let mut wheel = TimingWheel::new(tick, start);
    let deadlines = [0u64, 1, 9, 10, 11, 55, 640, 639, 641, 5_000, 3, 10, 99];
    for &d in &deadlines {
        wheel.insert(start + ms(d), d);
    }
    assert_eq!(wheel.len(), deadlines.len());
    let mut fired = Vec::new();
    let mut out = Vec::new();
    for t in 0..=5_100u64 {
        let now = start + ms(t);
        wheel.advance(now, &mut out);
        for d in out.drain(..) {
            assert!(start + ms(d) <= now, "{d} fired early at {t}");
            assert!(now < start + ms(d) + tick, "{d} fired late at {t}");
            fired.push(d);
        }
    }
    // Ordered by deadline tick; same-tick timers in insertion order.
    let mut sorted = deadlines.to_vec();
    sorted.sort_by_key(|d| d.div_ceil(10));
    assert_eq!(fired, sorted);
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn sub_tick_deadline_rounds_up() {
    let start = Instant::now();
    let mut wheel = TimingWheel::new(ms(10), start);
    wheel.insert(start + ms(1), "a");
    let mut out = Vec::new();
    wheel.advance(start + ms(9), &mut out);
    assert!(out.is_empty());
    assert_eq!(wheel.next_expiry(), Some(start + ms(10)));
    wheel.advance(start + ms(10), &mut out);
    assert_eq!(out, ["a"]);
}

#[test]
fn past_deadline_fires_on_next_advance() {
    let start = Instant::now();
    let mut wheel = TimingWheel::new(ms(50), start);
    let mut out = Vec::new();
    wheel.advance(start + ms(1_000), &mut out);
    wheel.insert(start, 1);
    wheel.insert(start + ms(975), 2);
    wheel.insert(start + ms(1_000), 3);
    assert!(wheel.next_expiry().is_some_and(|t| t <= start + ms(1_000)));
    // Even an advance to an earlier instant fires them: time never goes back.
    wheel.advance(start + ms(10), &mut out);
    assert_eq!(out, [1, 2, 3]);
    assert!(wheel.is_empty());
}

#[test]
fn cancel_and_stale_keys() {
    let start = Instant::now();
    let mut wheel = TimingWheel::new(ms(10), start);
    let a = wheel.insert(start + ms(100), "a");
    let b = wheel.insert(start + ms(100), "b");
    let c = wheel.insert(start + ms(100), "c");
    assert!(wheel.contains(b));
    assert_eq!(wheel.cancel(b), Some("b"));
    assert!(!wheel.contains(b));
    assert_eq!(wheel.cancel(b), None, "double cancel is a no-op");
    assert_eq!(wheel.len(), 2);

    // The freed entry is reused; the old key must not reach the new timer.
    let d = wheel.insert(start + ms(200), "d");
    assert_ne!(b, d);
    assert_eq!(wheel.cancel(b), None);
    assert_eq!(wheel.len(), 2 + 1);

    let mut out = Vec::new();
    wheel.advance(start + ms(100), &mut out);
    assert_eq!(out, ["a", "c"]);
    assert_eq!(wheel.cancel(a), None, "cancel after fire is a no-op");
    assert_eq!(wheel.cancel(c), None);
    assert_eq!(wheel.cancel(d), Some("d"));
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn cancel_head_middle_tail_of_one_slot() {
    let start = Instant::now();
    let mut wheel = TimingWheel::new(ms(10), start);
    let keys: Vec<_> = (0..5).map(|i| wheel.insert(start + ms(300), i)).collect();
    assert_eq!(wheel.cancel(keys[0]), Some(0));
    assert_eq!(wheel.cancel(keys[2]), Some(2));
    assert_eq!(wheel.cancel(keys[4]), Some(4));
    let mut out = Vec::new();
    wheel.advance(start + ms(300), &mut out);
    assert_eq!(out, [1, 3], "same-tick timers fire in insertion order");
    let k = wheel.insert(start + ms(400), 9);
    assert_eq!(wheel.cancel(k), Some(9));
    assert_eq!(
        wheel.next_expiry(),
        None,
        "slot bit cleared when list empties"
    );
}

#[test]
fn cascades_across_every_level() {
    let start = Instant::now();
    let mut wheel = TimingWheel::new(MS, start);
    // Tick counts straddling each level boundary (64^1 .. 64^5) and beyond
    // the wheel's span (MAX_SPAN at 1 ms is about 2.1 years).
    let mut ticks = vec![1u64, 63, 64, 65, 4_095, 4_096, 4_097, 262_143, 262_144];
    ticks.extend([
        1 << 24,
        (1 << 24) + 7,
        (1 << 30) - 1,
        1 << 30,
        (1 << 30) + 1,
    ]);
    ticks.extend([(1 << 36) - 1, 1 << 36, MAX_SPAN + 5, 3 * (1 << 36) + 12_345]);
    for &t in &ticks {
        wheel.insert(start + Duration::from_millis(t), t);
    }
    let fired = run_to_empty(&mut wheel);
    let got: Vec<u64> = fired.iter().map(|&(_, t)| t).collect();
    let mut want = ticks.clone();
    want.sort_unstable();
    assert_eq!(got, want);
    for (at, t) in fired {
        assert_eq!(
            at,
            start + Duration::from_millis(t),
            "tick {t} fired at the wrong time"
        );
    }
}

#[test]
fn jumps_never_fire_early() {
    let start = Instant::now();
    let mut wheel = TimingWheel::new(MS, start);
    let day = Duration::from_secs(86_400);
    let mut now = start;
    for (i, d) in [day * 3, day * 1_000, ms(70_000), ms(262_145)]
        .into_iter()
        .enumerate()
    {
        wheel.insert(now + d, i);
        let mut out = Vec::new();
        wheel.advance(now + d - MS, &mut out);
        assert!(out.is_empty(), "timer {i} fired early");
        wheel.advance(now + d, &mut out);
        assert_eq!(out, [i]);
        // The next one starts from this far-advanced clock.
        now += d;
        wheel.insert(now + ms(5), 99);
        wheel.advance(now + ms(5), &mut out);
        assert_eq!(out, [i, 99]);
        now += ms(5);
    }
}

#[test]
fn rearm_while_processing() {
    // A heartbeat re-armed from each expiry, plus a one-shot re-inserted
    // in the past: both must keep firing on schedule.
    let start = Instant::now();
    let tick = ms(50);
    let mut wheel = TimingWheel::new(tick, start);
    wheel.insert(start + ms(1_000), ("hb", start + ms(1_000)));
    let (mut fired, mut late_pending) = (0, 0);
    let mut out = Vec::new();
    let mut now = start;
    while fired < 100 {
        now += ms(50);
        wheel.advance(now, &mut out);
        let late_fired = out.iter().filter(|(name, _)| *name == "late").count();
        assert_eq!(
            late_fired, late_pending,
            "past deadlines fire on the next advance"
        );
        late_pending = 0;
        for (name, deadline) in out.drain(..) {
            assert!(deadline <= now, "{name} fired early");
            if name == "hb" {
                assert!(now < deadline + tick, "heartbeat late");
                fired += 1;
                wheel.insert(now + ms(1_000), ("hb", now + ms(1_000)));
                wheel.insert(now - ms(500), ("late", now - ms(500)));
                late_pending += 1;
            }
        }
    }
    assert_eq!(wheel.len(), 2);
    assert_eq!(now, start + ms(100 * 1_000));
}

#[test]
fn zero_tick_and_instants_before_start() {
    let start = Instant::now() + Duration::from_secs(10);
    let mut wheel = TimingWheel::new(Duration::ZERO, start);
    assert_eq!(wheel.tick(), Duration::from_nanos(1));
    wheel.insert(start - Duration::from_secs(5), 1);
    let mut out = Vec::new();
    wheel.advance(start - Duration::from_secs(1), &mut out);
    assert_eq!(out, [1]);
    let key = wheel.insert(start + Duration::from_secs(86_400 * 365 * 50), 2);
    assert!(wheel.next_expiry().is_some());
    assert_eq!(wheel.cancel(key), Some(2));
}

/// 100k timers under random inserts, cancels (live and stale) and
/// advances of every size, checked against a `BTreeMap` model.
#[test]
fn matches_reference_model() {
    // 7 ms: deadlines are rarely tick-aligned.
    let (cancelled, stale, advances, peak) = run_model(7_000_000, 100_000, 1);
    let mix = (cancelled, stale, advances, peak);
    assert!(
        cancelled > 3_000 && stale > 1_000 && advances > 10_000,
        "weak mix {mix:?}"
    );
    assert!(peak > 10_000, "model never held many timers: {mix:?}");
}

/// With a 1 us tick, multi-day deadlines exceed the wheel's span and are
/// parked and re-placed from the top level.
#[test]
fn matches_reference_model_beyond_span() {
    const {
        assert!(
            3 * 86_400_000_000 > MAX_SPAN,
            "test no longer exceeds the span"
        )
    };
    let (_, _, _, peak) = run_model(1_000, 30_000, 2);
    assert!(peak > 3_000, "model never held many timers: {peak}");
}

/// Returns `(cancelled, stale cancels, advances, peak live timers)`.
fn run_model(tick_ns: u64, timers: u64, seed: u64) -> (u32, u32, u32, usize) {
    let start = Instant::now();
    let mut wheel = TimingWheel::new(Duration::from_nanos(tick_ns), start);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
    let mut model: BTreeMap<(u64, u64), ()> = BTreeMap::new();
    let mut keys: Vec<TimerKey> = Vec::new();
    let mut deadline_of: Vec<Option<u64>> = Vec::new();
    let (mut now_ns, mut prev_now_ns): (u64, u64) = (0, 0);
    let mut out = Vec::new();
    let (mut cancelled, mut stale, mut advances, mut peak) = (0, 0, 0, 0);
    let ceil_tick = |ns: u64| ns.div_ceil(tick_ns);

    while (keys.len() as u64) < timers || !model.is_empty() {
        let op = rng.below(100);
        if op < 70 && (keys.len() as u64) < timers {
            let offset = match rng.below(100) {
                0..=59 => rng.below(2_000_000_000),
                60..=79 => rng.below(600_000_000_000),
                80..=97 => rng.below(3 * 86_400_000_000_000),
                _ => 0,
            };
            let deadline = if rng.below(50) == 0 {
                now_ns.saturating_sub(rng.below(1_000_000_000))
            } else {
                now_ns + offset
            };
            let id = keys.len() as u64;
            keys.push(wheel.insert(start + Duration::from_nanos(deadline), (id, deadline)));
            deadline_of.push(Some(deadline));
            model.insert((deadline, id), ());
        } else if op < 85 && !keys.is_empty() {
            let len = keys.len() as u64;
            let id = if rng.below(4) == 0 {
                rng.below(len)
            } else {
                len - 1 - rng.below(len.min(5_000))
            };
            let got = wheel.cancel(keys[id as usize]);
            match deadline_of[id as usize].take() {
                Some(deadline) => {
                    assert_eq!(got, Some((id, deadline)));
                    model.remove(&(deadline, id));
                    cancelled += 1;
                }
                None => {
                    assert_eq!(got, None, "stale key {id} cancelled something");
                    stale += 1;
                }
            }
        } else {
            now_ns += match rng.below(10_000) {
                0..=9_989 => rng.below(60_000_000),
                9_990..=9_998 => rng.below(600_000_000_000),
                _ => rng.below(86_400_000_000_000),
            };
            if (keys.len() as u64) >= timers && rng.below(20) == 0 {
                now_ns += 86_400_000_000_000; // drain faster at the end
            }
            advances += 1;
            let prev_tick = prev_now_ns / tick_ns;
            prev_now_ns = now_ns;
            wheel.advance(start + Duration::from_nanos(now_ns), &mut out);
            let now_tick = now_ns / tick_ns;
            let mut want = Vec::new();
            while let Some((&(deadline, id), ())) = model.first_key_value() {
                if ceil_tick(deadline) > now_tick {
                    break;
                }
                model.remove(&(deadline, id));
                deadline_of[id as usize] = None;
                want.push(id);
            }
            let mut last_tick = 0;
            for &(id, deadline) in &out {
                assert!(deadline <= now_ns, "timer {id} fired early");
                // Overdue-at-insert timers count as due when inserted.
                let due = ceil_tick(deadline).max(prev_tick);
                assert!(due >= last_tick, "out of order");
                last_tick = due;
            }
            let mut got: Vec<u64> = out.drain(..).map(|(id, _)| id).collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "expired set differs at {now_ns} ns");
        }
        assert_eq!(wheel.len(), model.len());
        peak = peak.max(model.len());
        match model.first_key_value() {
            Some((&(deadline, _), ())) => {
                let due = ceil_tick(deadline).max(now_ns / tick_ns);
                let bound = start + Duration::from_nanos(due * tick_ns);
                let next = wheel.next_expiry();
                assert!(next.is_some_and(|n| n <= bound), "next_expiry too late");
            }
            None => assert_eq!(wheel.next_expiry(), None),
        }
    }
    assert!(wheel.is_empty());
    (cancelled, stale, advances, peak)
}
