//! A connection's rooms that keep history: joining with a position
//! (recovery), the join answered once the room's log was read, live
//! messages held back while it is read, and each room's position so that
//! nothing reaches the client twice or out of order.
//!
//! The order of what a member gets, for each room: `RoomJoined` (with the
//! room's epoch and last offset, and whether the recovery is whole), a
//! `Gap` when it is not, the messages after the member's position, then the
//! live stream. Live messages that arrive while the log is read wait here;
//! those the read already covered (offset at or below the position) are
//! dropped. The router's sequencer releases a room's messages in offset
//! order (`router::rooms`), so a live offset past `last + 1` is a loss (a
//! hold-back buffer that overflowed): the client gets a `Gap` for it.
//!
//! The positions live in the shard's `Effects` by connection id, not in
//! the session, which stays small for the connections that never join a
//! room with history.
use std::sync::Arc;

use proto::v1::{server_frame::Frame, Gap, RoomJoined, ServerFrame};

use super::handover::RoomAt;
use super::{Ctx, Route, Session};
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::rooms::epoch_text;
use crate::store::{RoomHistory, RoomRange, StoreError};

/// Live messages one room holds back while its log is read; past it they
/// are dropped, and the log is read again from where the first read ended
/// (they are in it).
const MAX_HELD: usize = 4096;

/// A connection's rooms with history.
#[derive(Default)]
pub(crate) struct RoomCursors(Vec<Cursor>);

struct Cursor {
    room: Arc<str>,
    /// The epoch of `last` (0: not known).
    epoch: u64,
    /// The highest offset the client has in this room (0: none known).
    last: u64,
    /// Answers still to come for reads of an earlier join (the room was
    /// left meanwhile): ignored when they come (they come in order).
    stale: u8,
    state: State,
}

enum State {
    /// The join waits for the backend's hook; then read this.
    Asked(RoomRange),
    /// The log is being read; live messages wait here (`overflowed`: some
    /// did not fit, so the log is read again after the answer).
    Reading {
        waiting: Vec<Arc<Outbound>>,
        overflowed: bool,
        /// A read again after an overflow: its answer sends no `RoomJoined`.
        again: bool,
    },
    /// Live.
    Live,
    /// Left while a read was out: kept until its answer came.
    Gone,
}

impl State {
    fn reading() -> State {
        State::Reading {
            waiting: Vec::new(),
            overflowed: false,
            again: false,
        }
    }
}

impl RoomCursors {
    fn get(&mut self, room: &str) -> Option<&mut Cursor> {
        self.0.iter_mut().find(|c| *c.room == *room)
    }

    fn set(&mut self, room: &Arc<str>, state: State) {
        match self.get(room) {
            Some(c) => c.state = state,
            None => self.0.push(Cursor {
                room: room.clone(),
                epoch: 0,
                last: 0,
                stale: 0,
                state,
            }),
        }
    }
}

impl RoomCursors {
    /// The positions as an upgrade hands them over. A room whose log is
    /// being read has none yet: the freeze waits for store answers, so by
    /// then every read was answered.
    pub(crate) fn export(&self) -> Vec<RoomAt> {
        (self.0.iter())
            .filter(|c| matches!(c.state, State::Live))
            .map(|c| RoomAt {
                room: c.room.to_string(),
                epoch: c.epoch,
                last: c.last,
            })
            .collect()
    }

    /// Positions another process exported.
    pub(crate) fn import(rooms: Vec<RoomAt>) -> Option<RoomCursors> {
        let cursors: Vec<Cursor> = (rooms.into_iter())
            .map(|r| Cursor {
                room: Arc::from(r.room),
                epoch: r.epoch,
                last: r.last,
                stale: 0,
                state: State::Live,
            })
            .collect();
        (!cursors.is_empty()).then_some(RoomCursors(cursors))
    }
}

impl Session {
    /// A join of a room with history asked for `range`: remembered until
    /// the join is allowed (`join_history`).
    pub(super) fn ask_history(&mut self, cx: &mut Ctx, room: &Arc<str>, range: RoomRange) {
        let cursors = cx.fx.room_cursors.entry(self.id).or_default();
        if !matches!(cursors.get(room), Some(c) if matches!(c.state, State::Reading { .. })) {
            cursors.set(room, State::Asked(range));
        }
    }

    /// The join of a room with history is allowed: read its log (the
    /// answer, `on_room_history`, sends `RoomJoined`).
    pub(super) fn join_history(&mut self, cx: &mut Ctx, room: &Arc<str>) {
        let cursors = cx.fx.room_cursors.entry(self.id).or_default();
        let range = match cursors.get(room).map(|c| &c.state) {
            Some(State::Asked(r)) => *r,
            // A read is out already: it answers this join too.
            Some(State::Reading { .. }) => return,
            _ => RoomRange::Last(0),
        };
        cursors.set(room, State::reading());
        let room = room.clone();
        cx.fx.routes.push(Route::RoomRead { room, range });
    }

    /// The room was left (or its join refused): its position goes (once
    /// the answers of reads still out came).
    pub(super) fn forget_room(&mut self, cx: &mut Ctx, room: &str) {
        if let Some(cursors) = cx.fx.room_cursors.get_mut(&self.id) {
            if let Some(c) = cursors.get(room) {
                if let State::Reading { .. } = c.state {
                    c.stale = c.stale.saturating_add(1);
                }
                c.state = State::Gone;
            }
            cursors.0.retain(|c| *c.room != *room || c.stale > 0);
            if cursors.0.is_empty() {
                cx.fx.room_cursors.remove(&self.id);
            }
        }
    }

    /// What reading the room's log found: the join answer, the gap if the
    /// recovery is not whole, the messages, then what waited.
    pub(super) fn on_room_history(
        &mut self,
        cx: &mut Ctx,
        room: Arc<str>,
        range: RoomRange,
        result: Result<RoomHistory, StoreError>,
    ) {
        let Some(c) = cx
            .fx
            .room_cursors
            .get_mut(&self.id)
            .and_then(|c| c.get(&room))
        else {
            return; // left meanwhile
        };
        if c.stale > 0 {
            // The answer of a read from before a leave: not this join's.
            c.stale -= 1;
            if c.stale == 0 && matches!(c.state, State::Gone) {
                self.forget_room(cx, &room);
            }
            return;
        }
        let State::Reading {
            waiting,
            overflowed,
            again,
        } = std::mem::replace(&mut c.state, State::Live)
        else {
            return;
        };
        let mut frames = Vec::new();
        match result {
            Ok(h) => {
                let since = match range {
                    RoomRange::After(p) => Some(h.recovery(p)),
                    RoomRange::Last(_) => None,
                };
                if !again {
                    let recovered = since.is_some_and(|r| r.recovered);
                    frames.push(joined(&room, h.top, h.epoch, recovered));
                }
                if let Some((from, to)) = since.and_then(|r| r.gap) {
                    ShardStats::inc(&cx.env.stats.room_gaps);
                    frames.push(Outbound::new(gap(&room, h.epoch, from, to)));
                }
                let known = since.map_or(0, |r| r.known);
                for e in h.msgs.iter().filter(|e| e.msg.seq > known) {
                    frames.push(Outbound::new(e.to_frame()));
                }
                (c.epoch, c.last) = (h.epoch, h.top);
            }
            Err(e) => {
                // Live without a place: the client is told its position
                // could not be recovered.
                tracing::debug!(conn = self.id, %room, "room history unreadable: {e}");
                frames.push(joined(&room, 0, 0, false));
                (c.epoch, c.last) = (0, 0);
            }
        }
        for f in &frames {
            self.send_room_frame(cx, f);
        }
        if overflowed {
            // Live messages were dropped while reading: read again from
            // here (they are in the log); what comes meanwhile waits.
            if let Some(c) = cx
                .fx
                .room_cursors
                .get_mut(&self.id)
                .and_then(|c| c.get(&room))
            {
                c.state = State::Reading {
                    waiting: Vec::new(),
                    overflowed: false,
                    again: true,
                };
                let after = RoomRange::After(crate::store::RoomPos {
                    epoch: c.epoch,
                    offset: c.last,
                });
                cx.fx.routes.push(Route::RoomRead { room, range: after });
            }
            return;
        }
        for msg in waiting {
            self.room_live(cx, &room, &msg);
        }
    }

    /// A live frame of a room with history (a message with an offset, or
    /// the sequencer's gap or new-epoch notice). False when it is not one
    /// (delivered as any live frame).
    pub(super) fn room_frame(&mut self, cx: &mut Ctx, msg: &Arc<Outbound>) -> bool {
        let room = match msg.frame().frame.as_ref() {
            Some(Frame::Deliver(d)) if d.offset > 0 && !d.room.is_empty() => &d.room,
            Some(Frame::Gap(g)) if !g.room.is_empty() => &g.room,
            Some(Frame::Joined(j)) => &j.room,
            _ => return false,
        };
        self.room_live(cx, room, msg);
        true
    }

    /// Runs for every member of a room on every message: no allocation.
    fn room_live(&mut self, cx: &mut Ctx, room: &str, msg: &Arc<Outbound>) {
        let Some(name) = self.rooms.iter().find(|r| ***r == *room) else {
            return; // no longer a member
        };
        let cursors = cx.fx.room_cursors.entry(self.id).or_default();
        if cursors.get(room).is_none() {
            // A member without a position (joined before the room kept
            // history, or moved by an upgrade from a binary without it):
            // live from here on.
            cursors.set(name, State::Live);
        }
        let Some(c) = cursors.get(room) else {
            return;
        };
        match &mut c.state {
            State::Reading {
                waiting,
                overflowed,
                ..
            } => {
                if waiting.len() < MAX_HELD {
                    waiting.push(msg.clone());
                } else {
                    *overflowed = true;
                }
                return;
            }
            State::Gone => return,
            State::Asked(_) | State::Live => {}
        }
        let mut hole = None;
        match msg.frame().frame.as_ref() {
            Some(Frame::Deliver(d)) => {
                if d.offset <= c.last {
                    return; // the read had it
                }
                if c.last > 0 && d.offset > c.last + 1 {
                    hole = Some(gap(room, c.epoch, c.last + 1, d.offset));
                }
                c.last = d.offset;
            }
            Some(Frame::Gap(g)) => {
                if g.first_available.saturating_sub(1) <= c.last {
                    return; // the member is past it (its read said so)
                }
                c.last = g.first_available - 1;
            }
            Some(Frame::Joined(j)) => {
                let epoch = crate::store::rooms::parse_epoch(&j.epoch).unwrap_or(0);
                if epoch == c.epoch && j.offset <= c.last {
                    return; // the member's read was in that epoch already
                }
                (c.epoch, c.last) = (epoch, j.offset);
            }
            _ => {}
        }
        if let Some(g) = hole {
            ShardStats::inc(&cx.env.stats.room_gaps);
            self.send_frame(cx, &g);
        }
        self.send_room_frame(cx, msg);
    }

    fn send_room_frame(&mut self, cx: &mut Ctx, msg: &Outbound) {
        if self.queue_shared(cx, msg) {
            ShardStats::inc(&cx.env.stats.deliveries);
        }
    }
}

fn joined(room: &str, offset: u64, epoch: u64, recovered: bool) -> Arc<Outbound> {
    Outbound::new(ServerFrame {
        frame: Some(Frame::Joined(RoomJoined {
            room: room.to_owned(),
            history: true,
            offset,
            epoch: if epoch == 0 {
                String::new()
            } else {
                epoch_text(epoch)
            },
            recovered,
        })),
    })
}

fn gap(room: &str, epoch: u64, from: u64, to: u64) -> ServerFrame {
    ServerFrame {
        frame: Some(Frame::Gap(Gap {
            from_seq: from,
            first_available: to,
            room: room.to_owned(),
            epoch: epoch_text(epoch),
        })),
    }
}
