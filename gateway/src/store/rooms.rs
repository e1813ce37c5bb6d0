//! Room history as the stores keep it: one log per room, a message stored
//! once (read diffusion), each at an offset in the room's one order.
//!
//! A room's log lives with the shard that owns the room's name (as a
//! user's inbox does), so on one node a room's appends and reads go
//! through one store in one order. The in-process store keeps the logs in
//! `room_log`; Redis keeps them under the room's keys (`redis::room_keys`),
//! shared by every node, and assigns the offsets there, so every node
//! agrees on them.
//!
//! An **epoch** names one life of a log: it is chosen when the log is
//! created (at its first append or read) and changes only when the log is
//! lost (the in-process store restarted, the room was silent past
//! `rooms.history_secs`, Redis lost the keys). An offset means something
//! only with its epoch.
use std::sync::Arc;

use proto::v1::{server_frame::Frame, Deliver, Qos, ServerFrame};

use super::{ReplyTo, StoreError, Stored};

/// A position in a room: an offset within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomPos {
    /// The log's epoch.
    pub epoch: u64,
    /// The offset (0: before the first message).
    pub offset: u64,
}

/// An epoch as clients see it (`RoomJoined.epoch`, `RoomPosition.epoch`).
pub(crate) fn epoch_text(epoch: u64) -> String {
    format!("{epoch:016x}")
}

/// A client's epoch text back as a number (`None`: not one of ours, which
/// is just another epoch).
pub(crate) fn parse_epoch(text: &str) -> Option<u64> {
    (text.len() == 16)
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

/// One message of a room's log; `msg.seq` is its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEntry {
    /// The message (its `seq` is the offset, its `room` the room).
    pub msg: Stored,
    /// Sent with QoS 1.
    pub qos1: bool,
}

impl RoomEntry {
    /// The Deliver frame carrying it: `offset` set, `seq` 0 (room
    /// messages in a log are not in anyone's inbox).
    pub fn to_frame(&self) -> ServerFrame {
        let m = &self.msg;
        let qos = if self.qos1 {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        ServerFrame {
            frame: Some(Frame::Deliver(Deliver {
                seq: 0,
                msg_id: m.msg_id.clone(),
                from: m.from.clone(),
                room: m.room.clone(),
                qos: qos as i32,
                payload: m.payload.clone(),
                timestamp_ms: m.timestamp_ms,
                offset: m.seq,
            })),
        }
    }
}

/// What reading a room's log found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomHistory {
    /// The log's epoch.
    pub epoch: u64,
    /// The last offset given (0: none yet).
    pub top: u64,
    /// The oldest offset held (`top + 1` when nothing is held).
    pub first: u64,
    /// The messages asked for, in offset order.
    pub msgs: Vec<RoomEntry>,
}

impl RoomHistory {
    /// What a reader that knows `since` is owed from this read: the offset
    /// it knows in this epoch (0 for another epoch, `top` at most), the
    /// missing range `(from, first_available)` if any, and whether nothing
    /// after `since` is missing (`recovered`).
    pub fn recovery(&self, since: RoomPos) -> Recovery {
        let same = since.epoch == self.epoch;
        let known = if same { since.offset.min(self.top) } else { 0 };
        let gap = (self.first > known + 1 && self.top > known).then_some((known + 1, self.first));
        Recovery {
            known,
            gap,
            recovered: same && since.offset <= self.top && gap.is_none(),
        }
    }
}

/// See `RoomHistory::recovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The offset the reader has in this epoch.
    pub known: u64,
    /// Offsets `[from, to)` that will never arrive.
    pub gap: Option<(u64, u64)>,
    /// Nothing after the reader's position is missing.
    pub recovered: bool,
}

/// Who reads a room's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomReader {
    /// A connection joining the room.
    Member(ReplyTo),
    /// The room's owner shard, filling offsets it missed.
    Fill,
}

/// What to read from a room's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRange {
    /// Everything after this position (all held for another epoch).
    After(RoomPos),
    /// The last `n` messages (0: only the epoch and the top).
    Last(usize),
}

/// A message for a room's log, before its offset is given.
#[derive(Debug)]
pub struct RoomAppend {
    /// The room.
    pub room: Arc<str>,
    /// The message (`seq` ignored).
    pub msg: Stored,
    /// QoS 1.
    pub qos1: bool,
    /// The sender's id for dedupe ("" disables it).
    pub client_msg_id: String,
    /// The sender's connection to answer (QoS 1 sends).
    pub reply: Option<ReplyTo>,
}

impl RoomAppend {
    /// Its outcome: the log's epoch and the stored entry, or why not.
    pub(crate) fn done(
        self,
        result: Result<(u64, RoomEntry), StoreError>,
        duplicate: bool,
    ) -> super::Done {
        super::Done::RoomAppended(Box::new(RoomAppended {
            room: self.room,
            result,
            duplicate,
            client_msg_id: self.client_msg_id,
            reply: self.reply,
        }))
    }
}

/// The outcome of a `RoomAppend`.
#[derive(Debug)]
pub(crate) struct RoomAppended {
    /// The room.
    pub room: Arc<str>,
    /// The log's epoch and the stored entry (a dedupe hit: the first copy).
    pub result: Result<(u64, RoomEntry), StoreError>,
    /// A retry of a message already in the log: nothing new to route.
    pub duplicate: bool,
    /// Echoed to the sender.
    pub client_msg_id: String,
    /// The sender's connection.
    pub reply: Option<ReplyTo>,
}

#[cfg(test)]
mod tests {
    use super::{epoch_text, parse_epoch, RoomHistory, RoomPos};

    fn history(top: u64, first: u64) -> RoomHistory {
        RoomHistory {
            epoch: 7,
            top,
            first,
            msgs: Vec::new(),
        }
    }

    #[test]
    fn recovery_is_whole_only_from_a_position_the_log_still_reaches() {
        let at = |offset| RoomPos { epoch: 7, offset };
        // Held 5..=10: a reader at 4 misses nothing, at 2 misses 3 and 4.
        let r = history(10, 5).recovery(at(4));
        assert!(r.recovered && r.gap.is_none() && r.known == 4);
        let r = history(10, 5).recovery(at(2));
        assert_eq!((r.recovered, r.gap), (false, Some((3, 5))));
        // Up to date, and an empty log at its start.
        assert!(history(10, 5).recovery(at(10)).recovered);
        assert!(history(0, 1).recovery(at(0)).recovered);
        // Everything expired: a reader at the top misses nothing.
        assert!(history(10, 11).recovery(at(10)).recovered);
        let r = history(10, 11).recovery(at(8));
        assert_eq!((r.recovered, r.gap), (false, Some((9, 11))));
    }

    #[test]
    fn another_epoch_or_a_position_ahead_is_not_recovered() {
        let r = history(10, 5).recovery(RoomPos {
            epoch: 8,
            offset: 4,
        });
        assert_eq!((r.recovered, r.known, r.gap), (false, 0, Some((1, 5))));
        let r = history(10, 1).recovery(RoomPos {
            epoch: 8,
            offset: 4,
        });
        assert_eq!((r.recovered, r.known, r.gap), (false, 0, None));
        let r = history(10, 5).recovery(RoomPos {
            epoch: 7,
            offset: 12,
        });
        assert_eq!((r.recovered, r.known, r.gap), (false, 10, None));
    }

    #[test]
    fn epochs_round_trip_as_text_and_foreign_text_is_none() {
        assert_eq!(parse_epoch(&epoch_text(0xdead_beef)), Some(0xdead_beef));
        assert_eq!(parse_epoch(""), None);
        assert_eq!(parse_epoch("xyz"), None);
    }
}
