//! The embedded inbox store: bounded, in process, lost on restart.
//!
//! Bounds and what happens at each (the client always learns of a loss):
//! - `per_user` messages: appending past it drops the user's oldest message.
//! - `total_bytes` of payload across the shard: appending past it drops the
//!   oldest messages of any user, oldest first.
//! - `retention`: messages older than this are dropped.
//!
//! A dropped message that a device had not acknowledged becomes a gap: the
//! next read for that device reports (first missing, first available) and
//! the gateway sends the client a `Gap` frame before the messages that remain.
//! Messages acknowledged by every tracked device are dropped at once. At most
//! 32 devices are tracked per user (see `DEVICES_PER_USER`).
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use super::room_log::RoomLimits;
use super::room_log::RoomLogs;
use super::{Done, Op, Replay, Store, StoreError, StoreErrorKind, Stored, WhenFull};

/// The bounds of a memory store.
#[derive(Debug, Clone)]
pub(crate) struct MemoryLimits {
    /// Messages kept per user.
    pub per_user: usize,
    /// Payload bytes kept in all.
    pub total_bytes: usize,
    /// Age after which a message is dropped.
    pub retention: Duration,
    /// Client message ids remembered per user for dedupe.
    pub dedupe_window: usize,
}

#[derive(Default)]
pub(super) struct UserInbox {
    pub(super) last_seq: u64,
    pub(super) msgs: VecDeque<Stored>,
    /// Highest sequence dropped by a bound (not by acknowledgement).
    pub(super) dropped_upto: u64,
    pub(super) cursors: Vec<(Arc<str>, u64)>,
    /// Tracked devices whose cursor the store set (where it started them)
    /// and that have not acknowledged since: their cursor is a guess, so a
    /// resume point below it is believed, and what is gone past that point
    /// is a gap (a device pushed out of the 32 and back).
    pub(super) unconfirmed: Vec<Arc<str>>,
    pub(super) dedupe: HashMap<(String, String), (u64, String)>,
    pub(super) dedupe_order: VecDeque<(String, String)>,
}

impl UserInbox {
    /// Where a device seen for the first time starts: after everything of
    /// the user's that is gone. A user with no tracked device at all never
    /// received anything, so what a bound dropped is a gap for its first
    /// device; another device of a known user starts at what is held.
    fn untracked_start(&self) -> u64 {
        if self.cursors.is_empty() {
            return 0;
        }
        self.msgs.front().map_or(self.last_seq, |m| m.seq - 1)
    }
}

/// Devices tracked per user. Past it the device furthest behind stops being
/// tracked (its backlog no longer holds messages back; if it returns it is a
/// new device and may be told of a gap).
const DEVICES_PER_USER: usize = 32;

impl UserInbox {
    /// Tracks `device` from `at`; past `DEVICES_PER_USER` the device
    /// furthest behind stops being tracked. `confirmed`: `at` is what the
    /// device acknowledged (else the store's guess, see `unconfirmed`).
    fn track(&mut self, device: &Arc<str>, at: u64, confirmed: bool) {
        if self.cursors.len() >= DEVICES_PER_USER {
            if let Some(i) = self
                .cursors
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, c))| *c)
                .map(|(i, _)| i)
            {
                let (gone, _) = self.cursors.swap_remove(i);
                self.unconfirmed.retain(|d| *d != gone);
            }
        }
        self.cursors.push((device.clone(), at));
        if !confirmed {
            self.unconfirmed.push(device.clone());
        }
    }
}

/// A bounded in-process inbox store for the users one shard owns.
pub(crate) struct MemoryStore {
    limits: MemoryLimits,
    clock: Box<dyn Fn() -> u64>,
    pub(super) users: HashMap<Arc<str>, UserInbox>,
    /// (user, seq, bytes, timestamp) in append order, for the global bounds.
    pub(super) order: VecDeque<(Arc<str>, u64, usize, u64)>,
    pub(super) bytes: usize,
    pub(super) held: usize,
    /// The logs of the rooms this shard owns that keep history.
    pub(super) rooms: RoomLogs,
    done: Vec<Done>,
}

impl MemoryStore {
    /// A store whose clock (unix milliseconds) is `clock`.
    pub(crate) fn new(limits: MemoryLimits, clock: Box<dyn Fn() -> u64>) -> MemoryStore {
        MemoryStore {
            limits,
            clock,
            users: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            held: 0,
            rooms: RoomLogs::new(
                RoomLimits {
                    size: 100,
                    age_ms: 300_000,
                    total_bytes: 64 << 20,
                },
                0,
            ),
            done: Vec::new(),
        }
    }

    /// Room logs bounded by `limits`, with epochs mixed from `seed` (the
    /// node's incarnation and the shard: unique per process and shard).
    pub(crate) fn with_rooms(mut self, limits: RoomLimits, seed: u64) -> MemoryStore {
        self.rooms = RoomLogs::new(limits, seed);
        self
    }

    fn append(
        &mut self,
        user: &Arc<str>,
        mut msg: Stored,
        client_msg_id: &str,
        online: &[Arc<str>],
        when_full: WhenFull,
    ) -> Option<(Stored, bool)> {
        let inbox = self.users.entry(user.clone()).or_default();
        // An online device not tracked yet has not been read for: its first
        // read (queued behind its presence, maybe behind this append) is
        // still to come. Track it from where that read starts, so it is
        // owed every message held, not only those from this one on.
        let untracked_from = inbox.untracked_start();
        for device in online {
            if !inbox.cursors.iter().any(|(d, _)| d == device) {
                inbox.track(device, untracked_from, false);
            }
        }
        let key = (msg.from.clone(), client_msg_id.to_owned());
        if !client_msg_id.is_empty() {
            if let Some((seq, msg_id)) = inbox.dedupe.get(&key) {
                let mut first = msg;
                first.seq = *seq;
                first.msg_id = msg_id.clone();
                return Some((first, true));
            }
        }
        // Refused before anything is stored or deduped: a retry is new.
        if when_full == WhenFull::Refuse
            && (inbox.msgs.len() >= self.limits.per_user
                || self.bytes + msg.payload.len() > self.limits.total_bytes)
        {
            return None;
        }
        inbox.last_seq += 1;
        msg.seq = inbox.last_seq;
        if !client_msg_id.is_empty() {
            inbox
                .dedupe
                .insert(key.clone(), (msg.seq, msg.msg_id.clone()));
            inbox.dedupe_order.push_back(key);
            if inbox.dedupe_order.len() > self.limits.dedupe_window {
                if let Some(old) = inbox.dedupe_order.pop_front() {
                    inbox.dedupe.remove(&old);
                }
            }
        }
        let size = msg.payload.len();
        inbox.msgs.push_back(msg.clone());
        self.order
            .push_back((user.clone(), msg.seq, size, msg.timestamp_ms));
        self.bytes += size;
        self.held += 1;
        if inbox.msgs.len() > self.limits.per_user {
            self.drop_oldest(user);
        }
        Some((msg, false))
    }

    /// Drops `user`'s oldest message because of a bound.
    fn drop_oldest(&mut self, user: &str) {
        if let Some(inbox) = self.users.get_mut(user) {
            if let Some(m) = inbox.msgs.pop_front() {
                inbox.dropped_upto = inbox.dropped_upto.max(m.seq);
                self.bytes -= m.payload.len();
                self.held -= 1;
            }
        }
    }

    /// Applies the total-bytes and retention bounds, oldest first.
    fn enforce_bounds(&mut self) {
        let oldest_allowed =
            (self.clock)().saturating_sub(self.limits.retention.as_millis() as u64);
        while let Some((user, seq, _, ts)) = self.order.front().cloned() {
            let present = self
                .users
                .get(&user)
                .and_then(|i| i.msgs.front())
                .is_some_and(|m| m.seq == seq);
            if !present {
                self.order.pop_front();
                continue;
            }
            if self.bytes > self.limits.total_bytes || ts < oldest_allowed {
                self.order.pop_front();
                self.drop_oldest(&user);
            } else {
                break;
            }
        }
        // Entries of messages removed by acks linger until they reach the front;
        // compact when they outnumber live ones so the index stays bounded.
        if self.order.len() > 4 * self.held + 1024 {
            let users = &self.users;
            self.order.retain(|(u, seq, _, _)| {
                users
                    .get(u)
                    .is_some_and(|i| i.msgs.front().is_some_and(|f| f.seq <= *seq))
            });
        }
    }

    fn ack(&mut self, user: &str, device: &Arc<str>, seq: u64) {
        let Some(inbox) = self.users.get_mut(user) else {
            return;
        };
        let seq = seq.min(inbox.last_seq);
        match inbox.cursors.iter_mut().find(|(d, _)| d == device) {
            Some((_, c)) => *c = (*c).max(seq),
            None => inbox.track(device, seq, true),
        }
        inbox.unconfirmed.retain(|d| d != device);
        let floor = inbox.cursors.iter().map(|(_, c)| *c).min().unwrap_or(0);
        while inbox.msgs.front().is_some_and(|m| m.seq <= floor) {
            if let Some(m) = inbox.msgs.pop_front() {
                self.bytes -= m.payload.len();
                self.held -= 1;
            }
        }
    }

    fn read(&mut self, user: &str, device: &Arc<str>, after: Option<u64>, max: usize) -> Replay {
        let Some(inbox) = self.users.get_mut(user) else {
            return Replay::default();
        };
        let cursor = inbox
            .cursors
            .iter()
            .find(|(d, _)| d == device)
            .map(|(_, c)| *c);
        let start = inbox.untracked_start();
        if cursor.is_none() {
            // A device seen for the first time is tracked from now on: the
            // messages it has not acknowledged are kept for it. This read
            // tells it of what is gone, so its cursor starts past that.
            // With a resume point the read tells it of what is gone, so
            // the cursor is what it knows; without, it is a guess.
            let held_from = inbox.msgs.front().map_or(inbox.last_seq, |m| m.seq - 1);
            inbox.track(device, held_from, after.is_some());
        }
        let unconfirmed = cursor.is_some() && inbox.unconfirmed.contains(device);
        // Resume from what the client says it has, never before what it
        // acked (a cursor the store guessed is no such floor).
        let from = match (after, cursor) {
            (Some(a), Some(_)) if unconfirmed => a,
            (Some(a), Some(c)) => a.max(c),
            (Some(a), None) => a,
            (None, Some(c)) => c,
            (None, None) => start,
        };
        let first_available = inbox.msgs.front().map_or(inbox.last_seq + 1, |m| m.seq);
        // Gone past the resume point: dropped by a bound, or freed while
        // the device was not tracked (pushed out by newer devices) once
        // every tracked one had acked them.
        let untracked_behind = (cursor.is_none() || unconfirmed) && after.is_some();
        let gap = ((inbox.dropped_upto > from || untracked_behind) && first_available > from + 1)
            .then_some((from + 1, first_available));
        let msgs = inbox
            .msgs
            .iter()
            .filter(|m| m.seq > from)
            .take(max)
            .cloned()
            .collect();
        Replay {
            msgs,
            gap,
            last_seq: inbox.last_seq,
            from,
        }
    }
}

impl Store for MemoryStore {
    fn submit(&mut self, op: Op) {
        let done = match op {
            Op::Append {
                user,
                msg,
                client_msg_id,
                online,
                reply,
                when_full,
            } => {
                let appended = self.append(&user, msg, &client_msg_id, &online, when_full);
                self.enforce_bounds();
                let (result, duplicate) = match appended {
                    Some((stored, duplicate)) => (Ok(stored), duplicate),
                    None => {
                        let e = StoreError::new(StoreErrorKind::Full, "recipient inbox full");
                        (Err(e), false)
                    }
                };
                Done::Appended {
                    user,
                    result,
                    duplicate,
                    client_msg_id,
                    reply,
                    unstored: None,
                }
            }
            Op::Ack { user, device, seq } => {
                self.ack(&user, &device, seq);
                return;
            }
            Op::Read {
                user,
                device,
                after,
                max,
                conn,
            } => {
                self.enforce_bounds();
                let replay = self.read(&user, &device, after, max);
                Done::Read {
                    result: Ok::<_, StoreError>(replay),
                    conn,
                }
            }
            op @ (Op::RoomAppend(_) | Op::RoomRead { .. }) => self.rooms.handle(op, (self.clock)()),
        };
        self.done.push(done);
    }

    fn completed(&mut self, out: &mut Vec<Done>) {
        out.append(&mut self.done);
    }

    fn held(&self) -> (usize, usize) {
        let (msgs, bytes) = self.rooms.held();
        (self.held + msgs, self.bytes + bytes)
    }

    fn export_state(&self) -> Option<Vec<u8>> {
        Some(MemoryStore::export_state(self))
    }

    fn import_state(&mut self, bytes: &[u8]) -> Result<(), prost::DecodeError> {
        MemoryStore::import_state(self, bytes)
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
