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
pub(crate) const LEVELS: usize = 6;
/// Slots per level (a base-64 digit of the tick count per level).
pub(crate) const SLOTS: usize = 64;
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
pub(crate) struct TimerKey {
    index: u32,
    generation: u32,
}

impl TimerKey {
    /// A key that names no timer: cancelling it is a no-op, `contains` is
    /// false. Lets a holder keep a key without an `Option` around it.
    pub(crate) const NONE: TimerKey = TimerKey {
        index: NIL,
        generation: 0,
    };
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
pub(crate) struct TimingWheel<T> {
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
    pub(crate) fn new(tick: Duration, now: Instant) -> Self {
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
    #[cfg(test)]
    pub(crate) fn tick(&self) -> Duration {
        duration_from_nanos(self.tick_nanos)
    }

    /// Number of pending timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` names a pending timer.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: TimerKey) -> bool {
        self.live(key).is_some()
    }

    /// Room for `n` more timers (an upgrade's import knows how many come).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Schedules `value` to be returned by the first [`advance`](Self::advance)
    /// whose `now` is at or after `deadline` (rounded up to a tick). A deadline
    /// in the past fires on the next `advance`.
    ///
    /// # Panics
    ///
    /// If more than `u32::MAX - 1` timers are pending at once (about 100 GiB
    /// of entries: far beyond any shard's memory).
    pub(crate) fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
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
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
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
    pub(crate) fn advance(&mut self, now: Instant, expired: &mut Vec<T>) {
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
    #[cfg(test)]
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
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

#[cfg(test)]
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
#[path = "wheel_tests.rs"]
mod tests;
