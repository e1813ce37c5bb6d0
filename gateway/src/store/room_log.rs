//! The in-process store's room logs (see `rooms`): per room, the last
//! `size` messages younger than `age`, in offset order, plus a dedupe map
//! of the senders' client message ids for what is held.
//!
//! Bounds: `size` per room (the oldest goes), `age` (older messages go; a
//! log with nothing held and untouched for `age` is forgotten, so its next
//! use starts a new epoch), `total_bytes` of payload across the shard (the
//! oldest message of any room goes first). What goes is reported to a
//! reader as a gap, never silently.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::rooms::{RoomAppend, RoomEntry, RoomHistory, RoomRange};
use super::{Done, Op};

/// The bounds of the logs.
#[derive(Debug, Clone)]
pub(crate) struct RoomLimits {
    /// Messages per room.
    pub size: usize,
    /// Age in ms after which a message goes.
    pub age_ms: u64,
    /// Payload bytes across the shard.
    pub total_bytes: usize,
}

struct Log {
    epoch: u64,
    top: u64,
    msgs: VecDeque<RoomEntry>,
    /// (from, client_msg_id) -> offset, for what is held.
    dedupe: HashMap<(String, String), u64>,
    /// The same keys in offset order, to forget them with their message.
    dedupe_order: VecDeque<(u64, (String, String))>,
    /// Last append or read, unix ms.
    touched: u64,
}

/// One shard's room logs.
pub(crate) struct RoomLogs {
    limits: RoomLimits,
    /// Mixed into every epoch: unique per process and shard.
    seed: u64,
    made: u64,
    logs: HashMap<Arc<str>, Log>,
    /// (room, offset, bytes) in append order across rooms.
    /// For the byte bound (oldest of any room first). Entries of messages
    /// dropped otherwise (a room's own bound, age) go stale: skipped when
    /// met, compacted away once they outnumber the held ones.
    order: VecDeque<(Arc<str>, u64, usize)>,
    held: usize,
    bytes: usize,
    /// When empty, unused logs are next looked for (unix ms).
    next_sweep: u64,
}

impl RoomLogs {
    /// Logs with `limits`; `seed` must differ between processes and shards
    /// (the node's incarnation and the shard index).
    pub(crate) fn new(limits: RoomLimits, seed: u64) -> RoomLogs {
        RoomLogs {
            limits,
            seed,
            made: 0,
            logs: HashMap::new(),
            order: VecDeque::new(),
            held: 0,
            bytes: 0,
            next_sweep: 0,
        }
    }

    /// Carries out a room operation at `now` (unix ms).
    pub(crate) fn handle(&mut self, op: Op, now: u64) -> Done {
        match op {
            Op::RoomAppend(a) => {
                let (epoch, entry, duplicate) = self.append(&a, now);
                a.done(Ok((epoch, entry)), duplicate)
            }
            Op::RoomRead {
                room,
                range,
                reader,
            } => Done::RoomRead {
                result: Ok(self.read(&room, range, now)),
                room,
                range,
                reader,
            },
            other => unreachable!("not a room operation: {other:?}"),
        }
    }

    /// Messages and payload bytes held.
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.held, self.bytes)
    }

    fn log(&mut self, room: &Arc<str>, now: u64) -> &mut Log {
        let (seed, made) = (self.seed, &mut self.made);
        let log = self.logs.entry(room.clone()).or_insert_with(|| {
            *made += 1;
            Log {
                epoch: mix(seed ^ made.rotate_left(32)),
                top: 0,
                msgs: VecDeque::new(),
                dedupe: HashMap::new(),
                dedupe_order: VecDeque::new(),
                touched: now,
            }
        });
        log.touched = now;
        log
    }

    /// Stores `a` at the room's next offset; a retry of a held message
    /// (same sender and client message id) gives the first copy and `true`.
    pub(crate) fn append(&mut self, a: &RoomAppend, now: u64) -> (u64, RoomEntry, bool) {
        self.expire(&a.room, now);
        let log = self.log(&a.room, now);
        let key = (a.msg.from.clone(), a.client_msg_id.clone());
        if !a.client_msg_id.is_empty() {
            if let Some(first) = log.dedupe.get(&key).and_then(|o| find(log, *o)) {
                return (log.epoch, first.clone(), true);
            }
        }
        log.top += 1;
        let mut msg = a.msg.clone();
        msg.seq = log.top;
        let entry = RoomEntry { msg, qos1: a.qos1 };
        let bytes = entry.msg.payload.len();
        log.msgs.push_back(entry.clone());
        if !a.client_msg_id.is_empty() {
            log.dedupe.insert(key.clone(), log.top);
            log.dedupe_order.push_back((log.top, key));
        }
        let (epoch, offset) = (log.epoch, log.top);
        let over = log.msgs.len() > self.limits.size;
        self.order.push_back((a.room.clone(), offset, bytes));
        self.bytes += bytes;
        self.held += 1;
        if over {
            self.drop_oldest_of(&a.room);
        }
        while self.bytes > self.limits.total_bytes && self.drop_oldest() {}
        (epoch, entry, false)
    }

    /// Reads `range` of the room's log (creating the log if it has none).
    pub(crate) fn read(&mut self, room: &Arc<str>, range: RoomRange, now: u64) -> RoomHistory {
        self.expire(room, now);
        let log = self.log(room, now);
        let first = log.msgs.front().map_or(log.top + 1, |m| m.msg.seq);
        let msgs = match range {
            RoomRange::After(since) => {
                let known = if since.epoch == log.epoch {
                    since.offset
                } else {
                    0
                };
                let skip = known.saturating_sub(first - 1).min(log.msgs.len() as u64);
                log.msgs.iter().skip(skip as usize).cloned().collect()
            }
            RoomRange::Last(n) => {
                let skip = log.msgs.len().saturating_sub(n);
                log.msgs.iter().skip(skip).cloned().collect()
            }
        };
        RoomHistory {
            epoch: log.epoch,
            top: log.top,
            first,
            msgs,
        }
    }

    /// Drops what is older than the age bound: from `room` now (the log
    /// about to be used), from every log at most once a second (then also
    /// forgetting logs with nothing held that were not used for as long).
    fn expire(&mut self, room: &Arc<str>, now: u64) {
        let cutoff = now.saturating_sub(self.limits.age_ms);
        self.expire_room(room, cutoff);
        if now >= self.next_sweep {
            self.next_sweep = now + 1000;
            let aged: Vec<Arc<str>> = (self.logs.iter())
                .filter(|(_, l)| l.msgs.front().is_some_and(|m| m.msg.timestamp_ms < cutoff))
                .map(|(r, _)| r.clone())
                .collect();
            for r in &aged {
                self.expire_room(r, cutoff);
            }
            self.logs
                .retain(|_, l| !(l.msgs.is_empty() && l.touched < cutoff));
        }
    }

    fn expire_room(&mut self, room: &Arc<str>, cutoff: u64) {
        let old = |logs: &HashMap<Arc<str>, Log>| {
            (logs.get(room))
                .and_then(|l| l.msgs.front())
                .is_some_and(|m| m.msg.timestamp_ms < cutoff)
        };
        while old(&self.logs) {
            self.drop_oldest_of(room);
        }
    }

    /// Drops the oldest message held of any room (by `order`); false when
    /// none is.
    fn drop_oldest(&mut self) -> bool {
        while let Some((room, offset, _)) = self.order.pop_front() {
            if self.is_held(&room, offset) {
                self.drop_oldest_of(&room);
                return true;
            }
        }
        false
    }

    /// True when `order`'s entry (room, offset) is still held: offsets are
    /// contiguous from the room's front.
    fn is_held(&self, room: &Arc<str>, offset: u64) -> bool {
        (self.logs.get(room))
            .and_then(|l| l.msgs.front())
            .is_some_and(|m| m.msg.seq <= offset)
    }

    /// Drops the room's oldest message (its bytes leave the total; its
    /// entry in `order` goes stale and is skipped, or compacted away once
    /// stale entries outnumber held ones).
    fn drop_oldest_of(&mut self, room: &Arc<str>) {
        let Some(log) = self.logs.get_mut(room) else {
            return;
        };
        let Some(gone) = log.msgs.pop_front() else {
            return;
        };
        let m = &gone.msg;
        while log.dedupe_order.front().is_some_and(|(o, _)| *o <= m.seq) {
            if let Some((_, key)) = log.dedupe_order.pop_front() {
                log.dedupe.remove(&key);
            }
        }
        self.bytes -= m.payload.len();
        self.held -= 1;
        if self.order.len() > 2 * self.held + 1024 {
            let order = std::mem::take(&mut self.order);
            self.order = (order.into_iter())
                .filter(|(r, o, _)| self.is_held(r, *o))
                .collect();
        }
    }
}

fn find(log: &Log, offset: u64) -> Option<&RoomEntry> {
    let first = log.msgs.front()?.msg.seq;
    log.msgs.get(offset.checked_sub(first)? as usize)
}

/// splitmix64: spreads a seed and a counter over 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[path = "room_log_handover.rs"]
mod handover;
#[cfg(test)]
#[path = "room_log_tests.rs"]
mod tests;
