//! Per-user inboxes for QoS 1 (at-least-once) delivery: 不丢 no loss, 不重 no
//! duplicates (with client dedupe by sequence), 不乱 no reordering.
//!
//! A user's inbox lives with the shard that owns the user's name. Every
//! operation on it goes through that shard's `Store` in submission order and
//! completes in the same order, so per-user sequence order is the order in
//! which the owner submitted appends, whatever the backing store.
//!
//! Two stores implement the trait: `memory::MemoryStore` (the embedded
//! default: bounded per user, in total bytes and in age) and
//! `redis::RedisStore` (sequence numbers, messages and device cursors in
//! Redis, shared by every node and surviving restarts; one pipeline per
//! batch of operations per shard).
pub(crate) mod memory;
mod memory_handover;
pub(crate) mod redis;
mod room_log;
pub(crate) mod rooms;

use std::sync::Arc;

use bytes::Bytes;

pub(crate) use rooms::{RoomAppend, RoomAppended, RoomHistory, RoomPos, RoomRange, RoomReader};

/// Who asked for an operation and must hear about its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// Shard of the connection.
    pub shard: u16,
    /// Connection key on that shard.
    pub key: usize,
    /// Connection id (guards against a reused key).
    pub conn_id: u64,
}

/// A message as stored in an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Per-user sequence number, from 1, without gaps.
    pub seq: u64,
    /// Server message id.
    pub msg_id: String,
    /// Sending user ("" for the admin API or the backend).
    pub from: String,
    /// Room it was sent to, "" for direct messages.
    pub room: String,
    /// The application payload.
    pub payload: Bytes,
    /// Server time of acceptance, unix milliseconds.
    pub timestamp_ms: u64,
}

impl Stored {
    /// A test message from `from` with `body` (id `m-<body>`), not stored yet.
    #[cfg(test)]
    pub(crate) fn for_test(from: &str, body: &str, timestamp_ms: u64) -> Stored {
        Stored {
            seq: 0,
            msg_id: format!("m-{body}"),
            from: from.into(),
            room: String::new(),
            payload: bytes::Bytes::copy_from_slice(body.as_bytes()),
            timestamp_ms,
        }
    }

    /// The message a Deliver frame carries (its `seq` as the sequence).
    pub fn from_deliver(d: &proto::v1::Deliver) -> Stored {
        Stored {
            seq: d.seq,
            msg_id: d.msg_id.clone(),
            from: d.from.clone(),
            room: d.room.clone(),
            payload: d.payload.clone(),
            timestamp_ms: d.timestamp_ms,
        }
    }

    /// The Deliver frame carrying this message.
    pub fn to_frame(&self, qos: proto::v1::Qos) -> proto::v1::ServerFrame {
        use proto::v1::{server_frame::Frame, Deliver, ServerFrame};
        ServerFrame {
            frame: Some(Frame::Deliver(Deliver {
                seq: self.seq,
                msg_id: self.msg_id.clone(),
                from: self.from.clone(),
                room: self.room.clone(),
                qos: qos as i32,
                payload: self.payload.clone(),
                timestamp_ms: self.timestamp_ms,
                offset: 0,
            })),
        }
    }
}

pub(crate) use crate::config::WhenFull;

/// An operation on a user's inbox.
#[derive(Debug)]
pub(crate) enum Op {
    /// Store a message unless (from, client_msg_id) was seen in the dedupe
    /// window, in which case the stored copy is reported again.
    Append {
        /// Recipient.
        user: Arc<str>,
        /// The message; its `seq` is ignored and assigned by the store.
        msg: Stored,
        /// Client message id for dedupe ("" disables dedupe).
        client_msg_id: String,
        /// Devices of the user online now: tracked from this message on, so
        /// it is kept until each of them acknowledges it.
        online: Vec<Arc<str>>,
        /// Sender's connection, to be told the outcome.
        reply: Option<ReplyTo>,
        /// At the inbox's bound: refuse, or drop the oldest.
        when_full: WhenFull,
    },
    /// A device acknowledged everything up to `seq`.
    Ack {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// Cumulative sequence.
        seq: u64,
    },
    /// Read what a device has not acknowledged (after `after`, or after the
    /// device's stored cursor when `None`), at most `max` messages.
    Read {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// Explicit resume point from the client.
        after: Option<u64>,
        /// Most messages to return.
        max: usize,
        /// The connection that will receive them.
        conn: ReplyTo,
    },
    /// Store a message in a room's log (`rooms`), giving it the room's
    /// next offset.
    RoomAppend(Box<RoomAppend>),
    /// Read a room's log (creating it, with a new epoch, if it has none).
    RoomRead {
        /// The room.
        room: Arc<str>,
        /// What to read.
        range: RoomRange,
        /// Who gets the result.
        reader: RoomReader,
    },
}

/// What reading an inbox found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replay {
    /// Messages after the resume point, in order.
    pub msgs: Vec<Stored>,
    /// Set when messages the device had not acknowledged were dropped by a
    /// retention bound: (first missing sequence, first available sequence).
    pub gap: Option<(u64, u64)>,
    /// Highest sequence allocated for the user so far.
    pub last_seq: u64,
    /// Where the read started: it holds what comes after this sequence
    /// (the resume point asked for, never before the device's cursor).
    pub from: u64,
}

/// Why a store operation failed: whose fault it is and whether trying the
/// same operation again makes sense (`retryable`). The retry queue of
/// sender-less appends retries only what is retryable; a client's send gets
/// `UNAVAILABLE` either way, with the kind in its message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("inbox store {kind}: {detail}")]
pub struct StoreError {
    /// What went wrong.
    pub kind: StoreErrorKind,
    /// The store's own words.
    pub detail: String,
}

/// The kinds of store failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not be reached (connection refused, lost, timed
    /// out, or reconnecting): retry.
    Unreachable,
    /// The store refused for now (Redis `OOM` under `maxmemory`, `LOADING`,
    /// `BUSY`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`): retry later.
    Busy,
    /// The store refused this operation for good (a script error,
    /// `WRONGTYPE`): the same operation fails the same way again.
    Refused,
    /// The store answered something this gateway does not understand (a
    /// reply of the wrong shape, an undecodable message).
    Unexpected,
    /// The store cannot be used as configured (bad URL, cannot start).
    Config,
    /// The user's inbox is at its bound and the append asked to be refused
    /// then (`WhenFull::Refuse`): retry once the user has acked.
    Full,
}

impl std::fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Unreachable => "unreachable",
            StoreErrorKind::Busy => "busy",
            StoreErrorKind::Refused => "refused the operation",
            StoreErrorKind::Unexpected => "answered unexpectedly",
            StoreErrorKind::Config => "misconfigured",
            StoreErrorKind::Full => "full for this recipient",
        })
    }
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, detail: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            detail: detail.into(),
        }
    }

    /// True when the same operation may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Unreachable | StoreErrorKind::Busy | StoreErrorKind::Full
        )
    }

    /// The kind of a Redis server error code (`OOM`, `ERR`, ...).
    pub fn kind_of_code(code: &str) -> StoreErrorKind {
        match code {
            "OOM" | "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "NOSCRIPT" => {
                StoreErrorKind::Busy
            }
            "INBOXFULL" => StoreErrorKind::Full,
            _ => StoreErrorKind::Refused,
        }
    }
}

/// The outcome of an operation, in submission order.
#[derive(Debug)]
pub(crate) enum Done {
    /// An append: the stored message (a dedupe hit returns the first copy).
    Appended {
        /// Recipient.
        user: Arc<str>,
        /// The stored message, or why it was not stored.
        result: Result<Stored, StoreError>,
        /// True when this was a retry of an already stored message.
        duplicate: bool,
        /// Client message id echoed to the sender.
        client_msg_id: String,
        /// Sender's connection.
        reply: Option<ReplyTo>,
        /// On failure, the message itself, so an append with no sender to
        /// tell (room fan-out, admin push) can be submitted again.
        unstored: Option<Box<Stored>>,
    },
    /// A read.
    Read {
        /// What was found.
        result: Result<Replay, StoreError>,
        /// The connection that asked.
        conn: ReplyTo,
    },
    /// A room append.
    RoomAppended(Box<RoomAppended>),
    /// A room read.
    RoomRead {
        /// The room.
        room: Arc<str>,
        /// What was asked.
        range: RoomRange,
        /// What was found.
        result: Result<RoomHistory, StoreError>,
        /// Who asked.
        reader: RoomReader,
    },
}

/// An inbox store, driven by one owner shard.
pub(crate) trait Store {
    /// Queues an operation. Operations complete in submission order.
    fn submit(&mut self, op: Op);
    /// Moves completed operations, in order, into `out`.
    fn completed(&mut self, out: &mut Vec<Done>);
    /// Ends a batch: the shard calls this once per round, after submitting
    /// what the round produced, so a remote store sends it as one pipeline.
    fn flush(&mut self) {}
    /// The node stops: send everything submitted and wait until the store
    /// has carried it out (completions can still be collected after).
    fn close(&mut self) {}
    /// Messages and bytes held in process (for metrics; 0 for remote stores).
    fn held(&self) -> (usize, usize);
    /// True when every operation submitted has completed (its `Done`, if
    /// it has one, ready for `completed`).
    fn idle(&self) -> bool {
        true
    }
    /// What an upgrade's new process must take over (`None`: the store
    /// keeps nothing in process).
    fn export_state(&self) -> Option<Vec<u8>> {
        None
    }
    /// Takes over what another process's `export_state` wrote.
    fn import_state(&mut self, _bytes: &[u8]) -> Result<(), prost::DecodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{StoreError, StoreErrorKind};

    #[test]
    fn transient_refusals_are_retryable_and_script_errors_are_not() {
        for code in [
            "OOM",
            "LOADING",
            "BUSY",
            "TRYAGAIN",
            "MASTERDOWN",
            "CLUSTERDOWN",
        ] {
            assert_eq!(
                StoreError::kind_of_code(code),
                StoreErrorKind::Busy,
                "{code}"
            );
        }
        for code in ["ERR", "WRONGTYPE", "NOPERM"] {
            assert_eq!(
                StoreError::kind_of_code(code),
                StoreErrorKind::Refused,
                "{code}"
            );
        }
        let retry = |k| StoreError::new(k, "x").retryable();
        assert!(retry(StoreErrorKind::Unreachable) && retry(StoreErrorKind::Busy));
        assert!(!retry(StoreErrorKind::Refused) && !retry(StoreErrorKind::Unexpected));
        assert!(!retry(StoreErrorKind::Config));
    }
}
