//! The sequencer of a room with history, at the room's owner shard (see
//! `rooms`): releases the room's messages to this node's member shards in
//! offset order, fills holes from the store after the reorder wait,
//! reports what the store no longer has as a `Gap`, and moves the members
//! to a new epoch once the store confirms it.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use proto::v1::{server_frame::Frame, Gap, RoomJoined, ServerFrame};

use super::rooms::MAX_HELD;
use super::Router;
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::rooms::epoch_text;
use crate::store::{RoomHistory, RoomPos, RoomRange, RoomReader, StoreError};

/// One room's sequencer (see the module header).
#[derive(Default)]
pub(super) struct Seq {
    pub(super) epoch: u64,
    /// The next offset to release; 0 while not known yet.
    pub(super) next: u64,
    pub(super) held: BTreeMap<u64, Arc<Outbound>>,
    /// Messages of another epoch than `epoch`: a new life of the log, or a
    /// straggler of an old one. Which it is, only the store can say: they
    /// wait for the next read (at once), which switches to the store's
    /// epoch when it is theirs and drops them otherwise.
    pub(super) foreign: Vec<(RoomPos, Arc<Outbound>)>,
    pub(super) fill_at: Option<Instant>,
    pub(super) filling: bool,
}

impl Router {
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
    pub(super) fn release(&mut self, room: &Arc<str>) {
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

    pub(super) fn filled(
        &mut self,
        now: Instant,
        room: &Arc<str>,
        result: Result<RoomHistory, StoreError>,
    ) {
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
