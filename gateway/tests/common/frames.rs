//! Client frames the tests send, and the two encodings of the wire.
//!
//! Encoding goes through `proto::codec` (prost, and the canonical protobuf
//! JSON mapping); `auth.rs` checks the JSON wire format by hand.

use prost::bytes::Bytes;
use proto::v1::{client_frame, send, ClientFrame, ServerFrame};

pub use proto::v1::server_frame::Frame;
pub use proto::v1::{ErrorCode, GoAwayReason, Qos};

pub use proto::codec::{Encoding, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO};

/// A ClientFrame whose only field has number 99, which no version of the
/// schema defines: tag `(99 << 3) | 2` = 794 = varint `9a 06`, length 0.
pub const UNKNOWN_MEMBER: [u8; 3] = [0x9a, 0x06, 0x00];

fn frame(f: client_frame::Frame) -> ClientFrame {
    ClientFrame { frame: Some(f) }
}

pub fn auth(token: &str, device: &str) -> ClientFrame {
    frame(client_frame::Frame::Auth(proto::v1::Auth {
        token: token.into(),
        device: device.into(),
        last_seq: 0,
        rooms: Vec::new(),
    }))
}

/// An Auth frame that also re-joins `rooms`, each from its position
/// (`(room, epoch, offset)`): the reconnect in one step.
pub fn auth_with_rooms(token: &str, rooms: &[(&str, &str, u64)]) -> ClientFrame {
    frame(client_frame::Frame::Auth(proto::v1::Auth {
        token: token.into(),
        device: String::new(),
        last_seq: 0,
        rooms: rooms
            .iter()
            .map(|(room, epoch, offset)| proto::v1::JoinRoom {
                room: room.to_string(),
                since: Some(proto::v1::RoomPosition {
                    offset: *offset,
                    epoch: epoch.to_string(),
                }),
                recent: 0,
            })
            .collect(),
    }))
}

/// A join that also asks for the room's last `n` messages.
pub fn join_recent(room: &str, n: u32) -> ClientFrame {
    frame(client_frame::Frame::Join(proto::v1::JoinRoom {
        room: room.into(),
        since: None,
        recent: n,
    }))
}

/// A join that recovers `room` from `offset` of `epoch`.
pub fn join_since(room: &str, epoch: &str, offset: u64) -> ClientFrame {
    frame(client_frame::Frame::Join(proto::v1::JoinRoom {
        room: room.into(),
        since: Some(proto::v1::RoomPosition {
            offset,
            epoch: epoch.into(),
        }),
        recent: 0,
    }))
}

pub fn ping(nonce: u64) -> ClientFrame {
    frame(client_frame::Frame::Ping(proto::v1::Ping { nonce }))
}

pub fn join(room: &str) -> ClientFrame {
    frame(client_frame::Frame::Join(proto::v1::JoinRoom {
        room: room.into(),
        ..Default::default()
    }))
}

pub fn leave(room: &str) -> ClientFrame {
    frame(client_frame::Frame::Leave(proto::v1::LeaveRoom {
        room: room.into(),
    }))
}

/// A Send with any target and QoS.
pub fn send_frame(to: send::To, client_msg_id: &str, qos: Qos, payload: &[u8]) -> ClientFrame {
    frame(client_frame::Frame::Send(proto::v1::Send {
        to: Some(to),
        client_msg_id: client_msg_id.into(),
        qos: qos as i32,
        payload: Bytes::copy_from_slice(payload),
    }))
}

/// A QoS 0 send to every device of `user`.
pub fn to_user(user: &str, client_msg_id: &str, payload: &[u8]) -> ClientFrame {
    send_frame(
        send::To::User(user.into()),
        client_msg_id,
        Qos::AtMostOnce,
        payload,
    )
}

/// A QoS 1 (at-least-once) send to every device of `user`.
pub fn qos1_to_user(user: &str, client_msg_id: &str, payload: &[u8]) -> ClientFrame {
    send_frame(
        send::To::User(user.into()),
        client_msg_id,
        Qos::AtLeastOnce,
        payload,
    )
}

/// A cumulative acknowledgement of every QoS 1 message up to `seq`.
pub fn ack(seq: u64) -> ClientFrame {
    frame(client_frame::Frame::Ack(proto::v1::Ack { seq }))
}

/// Asks for every QoS 1 message after `last_seq`.
pub fn resume(last_seq: u64) -> ClientFrame {
    frame(client_frame::Frame::Resume(proto::v1::Resume { last_seq }))
}

/// A QoS 0 send to every member of `room`.
pub fn to_room(room: &str, client_msg_id: &str, payload: &[u8]) -> ClientFrame {
    send_frame(
        send::To::Room(room.into()),
        client_msg_id,
        Qos::AtMostOnce,
        payload,
    )
}

/// A send addressed to the chat backend.
pub fn to_backend(client_msg_id: &str, payload: &[u8]) -> ClientFrame {
    let to = send::To::Backend(proto::v1::Backend {});
    send_frame(to, client_msg_id, Qos::AtMostOnce, payload)
}

/// Encodes a client frame: prost bytes, or JSON text as bytes.
pub fn encode_client(f: &ClientFrame, enc: Encoding) -> Vec<u8> {
    let mut out = Vec::new();
    proto::codec::encode_client(enc, f, &mut out);
    out
}

/// Decodes a server frame; `None` when it does not decode at all.
pub fn decode_server(bytes: &[u8], enc: Encoding) -> Option<ServerFrame> {
    proto::codec::decode_server(enc, bytes).ok()
}

/// Wraps a payload in the raw TCP transport's u32 big-endian length prefix.
pub fn length_prefixed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    proto::frame::encode(payload, &mut out);
    out
}

/// Asserts an Error frame's code and fatality.
#[track_caller]
pub fn assert_error(e: &proto::v1::Error, code: ErrorCode, fatal: bool) {
    assert_eq!(
        (e.code(), e.fatal),
        (code, fatal),
        "error frame {e:?} (message {:?})",
        e.message
    );
}
