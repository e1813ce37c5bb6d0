//! Rooms that keep history, at the room's owner shard: appends to the
//! room's log, reads for members who join, and the sequencer that hands
//! this node's members the room's messages in offset order.
//!
//! **One order per room.** The store gives each message of a room its
//! offset (`store::rooms`; Redis for many nodes, so every node agrees).
//! The appending owner relays the message to interested peers with its
//! epoch; every node's owner shard of the room (this one included) then
//! releases messages to its member shards strictly in offset order
//! (`Seq`, in `sequencer`): one ahead of a missing offset is held for
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
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{server_frame::Frame, ErrorCode};

use super::owner::rejected;
use super::sequencer::Seq;
use super::{Action, Router};
use crate::cluster::envelope;
use crate::cluster::remote::Kind;
use crate::config::RoomsConfig;
use crate::mesh::DataMsg;
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::{
    Op, RoomAppend, RoomAppended, RoomHistory, RoomPos, RoomRange, RoomReader, StoreError,
};

/// Messages a sequencer holds ahead of a hole before it gives up on it.
pub(super) const MAX_HELD: usize = 10_000;

/// The owner side's room state.
pub(super) struct RoomsState {
    pub(super) config: Arc<RoomsConfig>,
    pub(super) wait: Duration,
    /// The rooms with history this node has members of.
    pub(super) seqs: HashMap<Arc<str>, Seq>,
    /// Rooms whose sequencer holds something (looked at on ticks).
    pub(super) waiting: HashSet<Arc<str>>,
    /// Appends with a sender at the store.
    pub(super) pending: usize,
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
