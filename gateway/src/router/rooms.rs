//! Rooms that keep history, at the room's owner shard: appends to the
//! room's log, reads for members who join, and the sequencer that hands
//! this node's members the room's messages in offset order.
//!
//! **One order per room.** The store gives each message of a room its
//! offset (`store::rooms`; Redis for many nodes, so every node agrees).
//! The appending owner relays the message to interested peers with its
//! epoch; every node's owner shard of the room (this one included) then
//! releases messages to its member shards strictly in offset order
//! (`Seq`): one ahead of a missing offset is held for
//! `rooms.reorder_wait_ms`, then the missing ones are read from the store;
//! what the store no longer has becomes a `Gap` for the members, never a
//! silent hole. The member shards' FIFO queues keep that order to each
//! connection. A node keeps a `Seq` only for rooms it has members of.
//!
//! **Recovery.** A member's join reads the log through this shard, after
//! its interest was registered here (same FIFO), so every message is either
//! in what it read or released to it after; the session buffers live
//! messages while its read is out and drops offsets it already has
//! (`session::rooms`).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{server_frame::Frame, ErrorCode, Gap, RoomJoined, ServerFrame};

use super::owner::rejected;
use super::{Action, Router};
use crate::cluster::envelope;
use crate::cluster::remote::Kind;
use crate::config::RoomsConfig;
use crate::mesh::DataMsg;
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::rooms::epoch_text;
use crate::store::{
    Op, RoomAppend, RoomAppended, RoomHistory, RoomPos, RoomRange, RoomReader, StoreError,
};

/// Messages a sequencer holds ahead of a hole before it gives up on it.
const MAX_HELD: usize = 10_000;

/// The owner side's room state.
pub(super) struct RoomsState {
    config: Arc<RoomsConfig>,
    wait: Duration,
    /// The rooms with history this node has members of.
    seqs: HashMap<Arc<str>, Seq>,
    /// Rooms whose sequencer holds something (looked at on ticks).
    waiting: HashSet<Arc<str>>,
    /// Appends with a sender at the store.
    pending: usize,
}

impl RoomsState {
    pub(super) fn new(config: Arc<RoomsConfig>) -> RoomsState {
        RoomsState {
            wait: Duration::from_millis(config.reorder_wait_ms),
            config,
            seqs: HashMap::new(),
            waiting: HashSet::new(),
            pending: 0,
        }
    }
}

/// One room's sequencer (see the module header).
#[derive(Default)]
struct Seq {
    epoch: u64,
    /// The next offset to release; 0 while not known yet.
    next: u64,
    held: BTreeMap<u64, Arc<Outbound>>,
    /// Messages of another epoch than `epoch`: a new life of the log, or a
    /// straggler of an old one. Which it is, only the store can say: they
    /// wait for the next read (at once), which switches to the store's
    /// epoch when it is theirs and drops them otherwise.
    foreign: Vec<(RoomPos, Arc<Outbound>)>,
    fill_at: Option<Instant>,
    filling: bool,
}

impl Router {
    /// True when `room` keeps history (`rooms.history`).
    pub(crate) fn keeps_history(&self, room: &str) -> bool {
        self.rooms.config.keeps_history(room)
    }

    /// At the owner: store a room message in the room's log.
    pub(super) fn room_append(&mut self, a: RoomAppend) {
        if let Some(r) = a.reply {
            if self.rooms.pending >= self.owner.max_pending_appends {
                self.stats.error(ErrorCode::Overloaded);
                let why = "room history store is behind: retry later";
                let result = rejected(a.client_msg_id, ErrorCode::Overloaded, why);
                return self.send_room_done(r, result);
            }
            self.rooms.pending += 1;
        }
        self.out.push(Action::Store(Op::RoomAppend(Box::new(a))));
    }

    /// At the owner: a member's read of the room's log.
    pub(super) fn room_read(&mut self, room: Arc<str>, range: RoomRange, reader: RoomReader) {
        self.out.push(Action::Store(Op::RoomRead {
            room,
            range,
            reader,
        }));
    }

    /// At the owner: this node gained its first or lost its last member of
    /// `room`.
    pub(super) fn room_interest(&mut self, room: &Arc<str>, on: bool) {
        if !self.keeps_history(room) {
            return;
        }
        if on {
            self.rooms.seqs.entry(room.clone()).or_default();
        } else {
            self.rooms.seqs.remove(room);
            self.rooms.waiting.remove(room);
        }
    }

    /// The store's answer to a room append.
    pub(super) fn room_appended(&mut self, now: Instant, a: RoomAppended) {
        if a.reply.is_some() {
            self.rooms.pending = self.rooms.pending.saturating_sub(1);
        }
        let (epoch, entry) = match a.result {
            Ok(stored) => stored,
            Err(e) => return self.room_not_stored(a.room, a.client_msg_id, a.reply, &e),
        };
        if let Some(r) = a.reply {
            let result = proto::v1::SendResult {
                client_msg_id: a.client_msg_id,
                accepted: true,
                msg_id: entry.msg.msg_id.clone(),
                ..Default::default()
            };
            self.send_room_done(r, result);
        }
        // A retry of a stored message is routed again too: its first copy
        // may have been stored without an answer (a batch cut mid-way), so
        // nobody had it; sequencers and sessions drop offsets they have.
        if a.duplicate {
            ShardStats::inc(&self.stats.qos_dedupe_hits);
        } else {
            ShardStats::inc(&self.stats.room_appends);
        }
        let offset = entry.msg.seq;
        let msg = Outbound::new(entry.to_frame());
        let nodes = self.remote.nodes(Kind::Room, &a.room);
        if !nodes.is_empty() {
            let frame = envelope::frame_bytes(msg.frame());
            let env = envelope::to_room_at(&a.room, frame, epoch);
            self.out.push(Action::Bus(nodes, env));
        }
        self.sequence(now, &a.room, RoomPos { epoch, offset }, msg);
    }

    fn room_not_stored(
        &mut self,
        room: Arc<str>,
        client_msg_id: String,
        reply: Option<crate::store::ReplyTo>,
        e: &StoreError,
    ) {
        ShardStats::inc(&self.stats.qos_store_errors);
        match reply {
            Some(r) => {
                self.stats.error(ErrorCode::Unavailable);
                let result = rejected(client_msg_id, ErrorCode::Unavailable, &e.to_string());
                self.send_room_done(r, result);
            }
            None => {
                ShardStats::inc(&self.stats.room_append_dropped);
                tracing::warn!(shard = self.me, %room, "room message not stored: {e}");
            }
        }
    }

    fn send_room_done(&mut self, to: crate::store::ReplyTo, result: proto::v1::SendResult) {
        let done = DataMsg::SendDone {
            reply: to,
            result: Box::new(result),
        };
        self.send(to.shard as usize, done);
    }

    /// A room message with its place in the room, from this node's store
    /// or a peer's: released to the member shards in offset order.
    pub(super) fn sequence(
        &mut self,
        now: Instant,
        room: &Arc<str>,
        at: RoomPos,
        msg: Arc<Outbound>,
    ) {
        let wait = self.rooms.wait;
        let Some(seq) = self.rooms.seqs.get_mut(room) else {
            return;
        };
        if seq.next != 0 && at.epoch != seq.epoch {
            // Another epoch: asked of the store at the next tick.
            if seq.foreign.len() < MAX_HELD {
                seq.foreign.push((at, msg));
            }
            seq.fill_at = Some(now);
            self.rooms.waiting.insert(room.clone());
            return;
        } else if seq.next == 0 && at.epoch != seq.epoch {
            seq.held.clear();
            seq.epoch = at.epoch;
        }
        let seq = self.rooms.seqs.get_mut(room).expect("kept above");
        if seq.next != 0 && at.offset < seq.next {
            return;
        }
        seq.held.insert(at.offset, msg);
        if seq.next == 0 || at.offset > seq.next {
            if seq.fill_at.is_none() {
                seq.fill_at = Some(now + wait);
                self.rooms.waiting.insert(room.clone());
            }
            if seq.held.len() > MAX_HELD {
                self.give_up_hole(room);
            }
            return;
        }
        self.release(room);
    }

    /// Releases what follows `next` without a hole; clears the fill timer
    /// when nothing is held any more.
    fn release(&mut self, room: &Arc<str>) {
        let Some(seq) = self.rooms.seqs.get_mut(room) else {
            return;
        };
        let mut out = Vec::new();
        while let Some(msg) = seq.held.remove(&seq.next) {
            out.push(msg);
            seq.next += 1;
        }
        if seq.held.is_empty() && seq.foreign.is_empty() {
            seq.fill_at = None;
            self.rooms.waiting.remove(room);
        }
        for msg in out {
            self.forward_to_room_shards(room, &msg);
        }
    }

    /// Too much held behind a hole: the hole is reported and skipped.
    fn give_up_hole(&mut self, room: &Arc<str>) {
        let Some(seq) = self.rooms.seqs.get_mut(room) else {
            return;
        };
        let Some(&first) = seq.held.keys().next() else {
            return;
        };
        let gap = room_gap(room, seq.epoch, seq.next.max(1), first);
        let skipped = seq.next != 0 && first > seq.next;
        seq.next = first;
        seq.held = seq.held.split_off(&first);
        if skipped {
            self.forward_to_room_shards(room, &gap);
        }
        self.release(room);
    }

    /// Time passed: a sequencer that held something for the reorder wait
    /// reads the missing offsets from the store.
    pub(super) fn rooms_tick(&mut self, now: Instant) {
        if self.rooms.waiting.is_empty() {
            return;
        }
        let mut reads = Vec::new();
        for room in &self.rooms.waiting {
            let Some(seq) = self.rooms.seqs.get_mut(room) else {
                continue;
            };
            if seq.filling || seq.fill_at.is_none_or(|t| t > now) {
                continue;
            }
            seq.filling = true;
            let range = match seq.next {
                0 => RoomRange::Last(0),
                next => RoomRange::After(RoomPos {
                    epoch: seq.epoch,
                    offset: next - 1,
                }),
            };
            reads.push((room.clone(), range));
        }
        for (room, range) in reads {
            self.room_read(room, range, RoomReader::Fill);
        }
    }

    /// The store's answer to a room read: a member's goes to its shard;
    /// either may tell a sequencer where the room stands.
    pub(super) fn room_history(
        &mut self,
        now: Instant,
        room: Arc<str>,
        range: RoomRange,
        result: Result<RoomHistory, StoreError>,
        reader: RoomReader,
    ) {
        match reader {
            RoomReader::Member(conn) => {
                if let (Ok(h), Some(seq)) = (&result, self.rooms.seqs.get_mut(&room)) {
                    if seq.next == 0 {
                        // Everything up to the top is in this read.
                        if seq.epoch != h.epoch {
                            seq.held.clear();
                        }
                        seq.epoch = h.epoch;
                        seq.next = h.top + 1;
                        seq.held = seq.held.split_off(&seq.next);
                        self.release(&room);
                    }
                }
                if result.is_err() {
                    ShardStats::inc(&self.stats.qos_store_errors);
                }
                let msg = DataMsg::RoomHistory {
                    conn,
                    room,
                    range,
                    result,
                };
                self.send(conn.shard as usize, msg);
            }
            RoomReader::Fill => self.filled(now, &room, result),
        }
    }

    fn filled(&mut self, now: Instant, room: &Arc<str>, result: Result<RoomHistory, StoreError>) {
        let wait = self.rooms.wait;
        let Some(seq) = self.rooms.seqs.get_mut(room) else {
            return;
        };
        seq.filling = false;
        let h = match result {
            Ok(h) => h,
            Err(_) => {
                ShardStats::inc(&self.stats.qos_store_errors);
                seq.fill_at = Some(now + wait);
                return;
            }
        };
        let foreign = std::mem::take(&mut seq.foreign);
        if seq.next != 0 && h.epoch != seq.epoch {
            // The store is in a new life of the log (its history was lost):
            // the members restart at its offset 1, told by a join answer of
            // the new epoch; what waited of that epoch is kept, the rest
            // (of the old one) goes.
            seq.epoch = h.epoch;
            seq.next = 1;
            seq.held = (foreign.into_iter())
                .filter(|(at, _)| at.epoch == h.epoch)
                .map(|(at, msg)| (at.offset, msg))
                .collect();
            let at = RoomPos {
                epoch: h.epoch,
                offset: 1,
            };
            self.forward_to_room_shards(room, &new_epoch(room, at));
        } else if seq.next == 0 {
            // Not known yet: start at what is held (or after the top).
            if h.epoch != seq.epoch {
                seq.held.clear();
                seq.epoch = h.epoch;
            }
            seq.next = seq.held.keys().next().copied().unwrap_or(h.top + 1);
        }
        let seq = self.rooms.seqs.get_mut(room).expect("kept above");
        let next = seq.next;
        if h.first > next && h.top >= next {
            let gap = room_gap(room, seq.epoch, next, h.first);
            seq.next = h.first;
            seq.held = seq.held.split_off(&h.first);
            self.forward_to_room_shards(room, &gap);
        }
        let seq = self.rooms.seqs.get_mut(room).expect("kept above");
        for e in h.msgs {
            if e.msg.seq >= seq.next {
                seq.held
                    .entry(e.msg.seq)
                    .or_insert_with(|| Outbound::new(e.to_frame()));
            }
        }
        if seq.held.keys().next().is_some_and(|&k| k > seq.next) && seq.next <= h.top {
            // The store no longer holds what is missing: skip it, told.
            self.give_up_hole(room);
        }
        self.release(room);
        if let Some(seq) = self.rooms.seqs.get_mut(room) {
            if !seq.held.is_empty() || !seq.foreign.is_empty() {
                seq.fill_at = Some(now + wait);
                self.rooms.waiting.insert(room.clone());
            }
        }
    }
}

/// The append a live room message makes at its owner (an admin push, a
/// QoS 0 send): nobody to answer, no dedupe.
pub(super) fn append_of(room: Arc<str>, msg: &Outbound) -> Option<RoomAppend> {
    let Some(Frame::Deliver(d)) = msg.frame().frame.as_ref() else {
        return None;
    };
    Some(RoomAppend {
        room,
        msg: crate::store::Stored {
            seq: 0,
            ..crate::store::Stored::from_deliver(d)
        },
        qos1: d.qos() == proto::v1::Qos::AtLeastOnce,
        client_msg_id: String::new(),
        reply: None,
    })
}

/// A `Gap` for a room's members: offsets `[from, to)` of `epoch` are gone.
fn room_gap(room: &str, epoch: u64, from: u64, to: u64) -> Arc<Outbound> {
    Outbound::new(ServerFrame {
        frame: Some(Frame::Gap(Gap {
            from_seq: from,
            first_available: to,
            room: room.to_owned(),
            epoch: epoch_text(epoch),
        })),
    })
}

/// A join answer of a new epoch, for members joined in the old one.
fn new_epoch(room: &str, at: RoomPos) -> Arc<Outbound> {
    Outbound::new(ServerFrame {
        frame: Some(Frame::Joined(RoomJoined {
            room: room.to_owned(),
            history: true,
            offset: at.offset.saturating_sub(1),
            epoch: epoch_text(at.epoch),
            recovered: false,
        })),
    })
}
