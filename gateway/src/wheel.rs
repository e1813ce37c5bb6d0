//! A hierarchical timing wheel: one per shard, driving every per-connection
//! deadline (handshake, heartbeat, token expiry, retransmit).
//!
//! Time is counted in whole ticks since the wheel was created. A deadline is
//! rounded *up* to a tick and `now` is rounded *down*, so an entry never fires
//! before its deadline and, when [`TimingWheel::advance`] is called on time,
//! fires at most one tick after it.
//!
//! Layout: [`LEVELS`] levels of [`SLOTS`] slots. Level `L` slot `s` holds the
//! entries whose (placement) tick agrees with `elapsed` on every base-64 digit
//! above `L` and has digit `L` equal to `s`. Entries live in a slab (a `Vec`
//! plus a free list) and each slot is an intrusive doubly-linked list through
//! the slab, so insert and cancel are O(1) and allocate nothing beyond
//! amortised slab growth. A deadline beyond the wheel's span is parked in the
//! top level and re-placed each time its slot comes round (its true tick is
//! kept), so deadlines days or years away work at any tick size.
//!
//! Invariants:
//! - an entry's placement tick is `clamp(when, elapsed, elapsed + MAX_SPAN)`;
//! - after every `advance`, the current slot of every level is empty, except
//!   level 0's, which holds only entries inserted with a past deadline;
//! - an entry at a lower level is always due before any entry at a higher one.
//!
//! Single-threaded by design: no locks, no atomics, `T` need not be `Send`.

use std::time::{Duration, Instant};

/// Number of levels in the wheel.
pub const LEVELS: usize = 6;
/// Slots per level (a base-64 digit of the tick count per level).
pub const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Ticks covered by one top-level slot.
const TOP_SLOT_RANGE: u64 = 1 << (SLOT_BITS * (LEVELS as u32 - 1));
/// Furthest placement ahead of `elapsed`: 63 top-level slots, so a parked
/// entry never lands in the top level's current slot.
const MAX_SPAN: u64 = TOP_SLOT_RANGE * (SLOTS as u64 - 1);
/// End of a list / empty slot.
const NIL: u32 = u32::MAX;

/// Handle to a timer, returned by [`TimingWheel::insert`].
///
/// It carries a generation, so a key whose timer has fired or been cancelled
/// (and whose slab entry may since have been reused) is recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

enum Slot<T> {
    Occupied {
        value: T,
        /// True deadline in ticks since `start`.
        when: u64,
        prev: u32,
        next: u32,
        /// `level * SLOTS + slot` of the list this entry is linked into.
        list: u16,
    },
    Vacant {
        next_free: u32,
    },
}

struct Entry<T> {
    generation: u32,
    slot: Slot<T>,
}

/// A hierarchical timing wheel holding values of type `T` until their
/// deadline passes. See the module documentation for its guarantees.
pub struct TimingWheel<T> {
    start: Instant,
    tick_nanos: u128,
    /// Every tick `< elapsed` has been processed; `elapsed` is the current tick.
    elapsed: u64,
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
    heads: [u32; LEVELS * SLOTS],
    tails: [u32; LEVELS * SLOTS],
    occupied: [u64; LEVELS],
}

impl<T> TimingWheel<T> {
    /// Creates an empty wheel whose tick 0 is `now`. A zero `tick` is treated
    /// as one nanosecond.
    pub fn new(tick: Duration, now: Instant) -> Self {
        TimingWheel {
            start: now,
            tick_nanos: tick.as_nanos().max(1),
            elapsed: 0,
            entries: Vec::new(),
            free_head: NIL,
            len: 0,
            heads: [NIL; LEVELS * SLOTS],
            tails: [NIL; LEVELS * SLOTS],
            occupied: [0; LEVELS],
        }
    }

    /// The tick (granularity) of this wheel.
    pub fn tick(&self) -> Duration {
        duration_from_nanos(self.tick_nanos)
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` names a pending timer.
    pub fn contains(&self, key: TimerKey) -> bool {
        self.live(key).is_some()
    }

    /// Schedules `value` to be returned by the first [`advance`](Self::advance)
    /// whose `now` is at or after `deadline` (rounded up to a tick). A deadline
    /// in the past fires on the next `advance`.
    ///
    /// # Panics
    ///
    /// If more than `u32::MAX - 1` timers are pending at once (about 100 GiB
    /// of entries: far beyond any shard's memory).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let when = self.ticks_ceil(deadline);
        let slot = Slot::Occupied {
            value,
            when,
            prev: NIL,
            next: NIL,
            list: 0,
        };
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            if let Slot::Vacant { next_free } = entry.slot {
                self.free_head = next_free;
            }
            entry.slot = slot;
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("timing wheel capacity (u32::MAX - 1 entries) exceeded");
            self.entries.push(Entry {
                generation: 0,
                slot,
            });
            index
        };
        self.len += 1;
        self.place(index, when);
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Cancels a pending timer and returns its value; `None` (and no effect)
    /// if the key is stale: already fired, already cancelled, or reused.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.live(key)?;
        self.unlink(key.index);
        self.release(key.index)
    }

    /// Moves time to `now` and appends to `expired` the value of every entry
    /// whose deadline is at or before `now` (at tick granularity), in deadline
    /// order (a timer inserted already overdue counts as due at the tick it
    /// was inserted in). Time never
    /// goes backwards: a `now` earlier than a previous one is treated as the
    /// latest seen.
    pub fn advance(&mut self, now: Instant, expired: &mut Vec<T>) {
        let now_tick = self.ticks_floor(now).max(self.elapsed);
        while let Some((level, slot, deadline)) = self.next_expiration() {
            if deadline > now_tick {
                break;
            }
            self.elapsed = self.elapsed.max(deadline);
            let list = level * SLOTS + slot;
            let mut index = self.heads[list];
            self.heads[list] = NIL;
            self.tails[list] = NIL;
            self.occupied[level] &= !(1u64 << slot);
            while index != NIL {
                let (next, when) = match &self.entries[index as usize].slot {
                    Slot::Occupied { next, when, .. } => (*next, *when),
                    Slot::Vacant { .. } => break, // unreachable: lists hold live entries
                };
                if level == 0 {
                    expired.extend(self.release(index));
                } else {
                    // Cascade: re-place relative to the new `elapsed`; it
                    // lands at a lower level (or level 0's current slot).
                    self.place(index, when);
                }
                index = next;
            }
        }
        self.elapsed = now_tick;
    }

    /// A lower bound on the next instant at which [`advance`](Self::advance)
    /// would return something, or `None` if the wheel is empty. Exact for
    /// timers due within the next 64 ticks; otherwise the start of the slot
    /// holding the earliest timer. Never later than the earliest deadline
    /// rounded up to a tick.
    pub fn next_expiry(&self) -> Option<Instant> {
        let (_, _, deadline) = self.next_expiration()?;
        let nanos = u128::from(deadline).saturating_mul(self.tick_nanos);
        let at_elapsed = u128::from(self.elapsed).saturating_mul(self.tick_nanos);
        Some(
            self.start
                .checked_add(duration_from_nanos(nanos))
                .or_else(|| self.start.checked_add(duration_from_nanos(at_elapsed)))
                .unwrap_or(self.start),
        )
    }

    /// The earliest occupied slot: `(level, slot, slot start in ticks)`.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits == 0 {
                continue;
            }
            let shift = SLOT_BITS * level as u32;
            let now_slot = ((self.elapsed >> shift) & SLOT_MASK) as u32;
            let slot = (bits.rotate_right(now_slot).trailing_zeros() + now_slot) % SLOTS as u32;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << SLOT_BITS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start.saturating_add(u64::from(slot) * slot_range);
            if slot < now_slot {
                // Only the top level wraps: a slot behind the cursor is in
                // the next rotation.
                deadline = deadline.saturating_add(level_range);
            }
            return Some((level, slot as usize, deadline));
        }
        None
    }

    /// Links entry `index` into the slot for tick `when`, seen from `elapsed`.
    fn place(&mut self, index: u32, when: u64) {
        let at = when
            .max(self.elapsed)
            .min(self.elapsed.saturating_add(MAX_SPAN));
        let differing = (at ^ self.elapsed) | SLOT_MASK;
        let significant = 63 - differing.leading_zeros();
        let level = ((significant / SLOT_BITS) as usize).min(LEVELS - 1);
        let slot = ((at >> (SLOT_BITS * level as u32)) & SLOT_MASK) as usize;
        let list = level * SLOTS + slot;
        let tail = self.tails[list];
        if let Slot::Occupied {
            prev,
            next,
            list: l,
            ..
        } = &mut self.entries[index as usize].slot
        {
            *prev = tail;
            *next = NIL;
            *l = list as u16;
        }
        if tail == NIL {
            self.heads[list] = index;
        } else if let Slot::Occupied { next, .. } = &mut self.entries[tail as usize].slot {
            *next = index;
        }
        self.tails[list] = index;
        self.occupied[level] |= 1u64 << slot;
    }

    /// Unlinks a live entry from its slot list.
    fn unlink(&mut self, index: u32) {
        let (prev, next, list) = match &self.entries[index as usize].slot {
            Slot::Occupied {
                prev, next, list, ..
            } => (*prev, *next, usize::from(*list)),
            Slot::Vacant { .. } => return,
        };
        if prev == NIL {
            self.heads[list] = next;
        } else if let Slot::Occupied { next: n, .. } = &mut self.entries[prev as usize].slot {
            *n = next;
        }
        if next == NIL {
            self.tails[list] = prev;
        } else if let Slot::Occupied { prev: p, .. } = &mut self.entries[next as usize].slot {
            *p = prev;
        }
        if self.heads[list] == NIL {
            self.occupied[list / SLOTS] &= !(1u64 << (list % SLOTS));
        }
    }

    /// Frees an (already unlinked) live entry and returns its value.
    fn release(&mut self, index: u32) -> Option<T> {
        let entry = self.entries.get_mut(index as usize)?;
        if let Slot::Vacant { .. } = entry.slot {
            return None;
        }
        let old = std::mem::replace(
            &mut entry.slot,
            Slot::Vacant {
                next_free: self.free_head,
            },
        );
        entry.generation = entry.generation.wrapping_add(1);
        self.free_head = index;
        self.len -= 1;
        match old {
            Slot::Occupied { value, .. } => Some(value),
            Slot::Vacant { .. } => None,
        }
    }

    fn live(&self, key: TimerKey) -> Option<&T> {
        let entry = self.entries.get(key.index as usize)?;
        match &entry.slot {
            Slot::Occupied { value, .. } if entry.generation == key.generation => Some(value),
            _ => None,
        }
    }

    fn ticks_floor(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos / self.tick_nanos).unwrap_or(u64::MAX)
    }

    fn ticks_ceil(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos.div_ceil(self.tick_nanos)).unwrap_or(u64::MAX)
    }
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
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
}
