//! What a session and the router hand each other: routes (session to
//! router) and deliveries (router to session).
use std::sync::Arc;

use crate::outbound::{Outbound, Wire};
use crate::store::{Replay, RoomHistory, RoomRange, StoreError, Stored};

/// A message the session hands to the router (the driver fills in which
/// connection it came from).
#[derive(Debug)]
pub(crate) enum Route {
    /// Authenticated: list the connection under its user and tell the owner.
    Online {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// The connection's wire.
        wire: Wire,
    },
    /// Joined a room (first join of this room on this connection).
    Joined(Arc<str>),
    /// Left a room it was in.
    Left(Arc<str>),
    /// A live message for a user's connections.
    ToUser {
        /// Recipient.
        user: Arc<str>,
        /// The frame.
        msg: Arc<Outbound>,
    },
    /// A message for a room's members.
    ToRoom {
        /// The room.
        room: Arc<str>,
        /// The frame.
        msg: Arc<Outbound>,
    },
    /// A QoS 1 message for a room that keeps history: store it in the
    /// room's log, answer this connection.
    RoomAppend {
        /// The room.
        room: Arc<str>,
        /// The message (offset assigned by the store).
        msg: Box<Stored>,
        /// The sender's id for dedupe.
        client_msg_id: String,
    },
    /// Read a room's history for this connection (it joined the room).
    RoomRead {
        /// The room.
        room: Arc<str>,
        /// What to read.
        range: RoomRange,
    },
    /// A QoS 1 message for a user: store it, answer this connection.
    Append {
        /// Recipient.
        user: Arc<str>,
        /// The message (seq assigned by the store).
        msg: Box<Stored>,
        /// The sender's id for dedupe.
        client_msg_id: String,
    },
    /// Read this connection's unacknowledged QoS 1 messages.
    Read {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// Resume point (`None`: the device's stored cursor).
        after: Option<u64>,
        /// Most messages to read.
        max: usize,
    },
    /// A send to the backend: append it to the upstream stream, answer
    /// this connection once it is there.
    ToBackend {
        /// The sender's id (a retry of a QoS 1 send is deduplicated on it).
        client_msg_id: String,
        /// The server message id given to it.
        msg_id: String,
        /// QoS 1 (deduplicated by `client_msg_id`).
        qos1: bool,
        /// The payload.
        payload: bytes::Bytes,
    },
    /// A lifecycle event for the backend's events stream.
    Event(Event),
    /// Ask the backend's hook whether this connection may join or publish
    /// to `room` (the answer comes back as `Delivery::Authorized`).
    Authorize {
        /// Join or publish.
        action: Action,
        /// The room.
        room: Arc<str>,
        /// The send waiting for the answer (publish).
        send: Option<Box<proto::v1::Send>>,
    },
    /// An SSE stream opened: POSTs may come to it.
    SseOpened,
    /// Client frames posted (with a key that checked) to the SSE stream
    /// `conn_id`: answered with `Delivery::PostDone`.
    SsePost {
        /// The stream's connection id.
        conn_id: u64,
        /// The frames, one per line.
        body: Vec<u8>,
    },
    /// The device acknowledged up to `seq`.
    Ack {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// Cumulative sequence.
        seq: u64,
    },
}

/// What happened to a connection, for the backend (`backend.events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Authenticated.
    Connected,
    /// Joined a room.
    Joined(Arc<str>),
    /// Left a room.
    Left(Arc<str>),
    /// A new token was accepted; it expires at `exp` (Unix seconds).
    Refreshed {
        /// The new expiry.
        exp: u64,
    },
}

/// Something the router brings to a session.
pub(crate) enum Delivery<'a> {
    /// A live frame (QoS 0, or a room message).
    Live(&'a Arc<Outbound>),
    /// A stored QoS 1 message of the session's user.
    Stored {
        /// Its sequence.
        seq: u64,
        /// The frame.
        msg: &'a Arc<Outbound>,
    },
    /// The answer to a `Route::Read`.
    Replay(Result<Replay, StoreError>),
    /// The answer to a `Route::RoomRead`.
    RoomHistory {
        /// The room.
        room: Arc<str>,
        /// What was asked.
        range: RoomRange,
        /// What was found.
        result: Result<RoomHistory, StoreError>,
    },
    /// The outcome of a QoS 1 send (answer to `Route::Append`).
    SendResult(proto::v1::SendResult),
    /// The answer to a `Route::SsePost` this connection (a POST) made: the
    /// HTTP status to give.
    PostDone(u16),
    /// The backend's decision (answer to `Route::Authorize`).
    Authorized {
        /// Join or publish.
        action: Action,
        /// The room.
        room: Arc<str>,
        /// Allowed.
        allow: bool,
        /// The send that waited (publish).
        send: Option<Box<proto::v1::Send>>,
    },
}

/// What a `Route::Authorize` asks the backend's hook (`backend::hook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Join a room.
    Join,
    /// Send to a room.
    Publish,
}
