//! Bus envelopes (`proto::bus_v1::Envelope`) to and from what the shards
//! route ([`PeerMsg`]). An envelope carries a server frame encoded once per
//! message, whatever the number of peers it goes to; the receiver decodes
//! it once and shares it with every local connection (`Outbound`).
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use proto::bus_v1::{
    envelope, interest, Envelope, Interest, Kick, Reset, SnapshotEnd, Stored, ToName,
};
use proto::v1::ServerFrame;

use super::remote::{Kind, Origin};
use crate::outbound::Outbound;

/// What the bus brings to this node's shards (after the receiving shard
/// decoded it), each at the shard named in its doc.
#[derive(Clone)]
#[allow(missing_docs)]
pub enum PeerMsg {
    /// At the user's owner: deliver to its local shards (never back out).
    ToUser { user: Arc<str>, msg: Arc<Outbound> },
    /// At the room's owner: deliver to its interested local shards (in
    /// the room's order when `epoch` is not 0: a message of its history).
    ToRoom {
        room: Arc<str>,
        msg: Arc<Outbound>,
        epoch: u64,
    },
    /// At the user's owner: a stored QoS 1 message for its local holders.
    Stored {
        user: Arc<str>,
        seq: u64,
        msg: Arc<Outbound>,
    },
    /// At the name's owner: a peer gained or lost interest in it.
    Interest {
        kind: Kind,
        name: Arc<str>,
        origin: Origin,
        on: bool,
    },
    /// At every shard: forget what the peer shard said (a snapshot follows;
    /// with `end_follows`, at its `SnapshotEnd`).
    Reset {
        node: Arc<str>,
        shard: u16,
        shards: u16,
        end_follows: bool,
    },
    /// At every shard: the peer shard's snapshot is over.
    SnapshotEnd { node: Arc<str>, shard: u16 },
    /// At the user's owner: kick its local connections.
    Kick { user: Arc<str> },
}

/// Why an envelope was not understood (the link goes on: one bad envelope
/// is logged and counted, not fatal).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// Not a valid `Envelope`, or its frame not a valid `ServerFrame`.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A kind this release does not know (a newer peer): ignored.
    #[error("unknown envelope kind")]
    Unknown,
}

/// A frame encoded for the bus, once per message.
pub(crate) fn frame_bytes(frame: &ServerFrame) -> Bytes {
    Bytes::from(frame.encode_to_vec())
}

fn to_vec(kind: envelope::Kind) -> Vec<u8> {
    Envelope { kind: Some(kind) }.encode_to_vec()
}

/// A live message for `user`'s devices on the peer.
pub(crate) fn to_user(user: &str, frame: Bytes) -> Vec<u8> {
    let name = user.to_owned();
    to_vec(envelope::Kind::ToUser(ToName {
        name,
        frame,
        epoch: 0,
    }))
}

/// A live message for `room`'s members on the peer.
pub(crate) fn to_room(room: &str, frame: Bytes) -> Vec<u8> {
    to_room_at(room, frame, 0)
}

/// A message of `room`'s history (of `epoch`; the frame has the offset).
pub(crate) fn to_room_at(room: &str, frame: Bytes, epoch: u64) -> Vec<u8> {
    let name = room.to_owned();
    to_vec(envelope::Kind::ToRoom(ToName { name, frame, epoch }))
}

/// A stored QoS 1 message for `user`'s devices on the peer.
pub(crate) fn stored(user: &str, seq: u64, frame: Bytes) -> Vec<u8> {
    let user = user.to_owned();
    to_vec(envelope::Kind::Stored(Stored { user, seq, frame }))
}

/// This node gained (`on`) or lost interest in a name.
pub(crate) fn interest(kind: Kind, name: &str, on: bool) -> Vec<u8> {
    let kind = match kind {
        Kind::User => interest::Kind::User,
        Kind::Room => interest::Kind::Room,
    };
    let name = name.to_owned();
    to_vec(envelope::Kind::Interest(Interest {
        kind: kind as i32,
        name,
        on,
    }))
}

/// The sending shard's snapshot follows, then a [`snapshot_end`].
pub(crate) fn reset(shard: u16, shards: u16) -> Vec<u8> {
    to_vec(envelope::Kind::Reset(Reset {
        shard: u32::from(shard),
        shards: u32::from(shards),
        end_follows: true,
    }))
}

/// The sending shard's snapshot is over.
pub(crate) fn snapshot_end() -> Vec<u8> {
    to_vec(envelope::Kind::SnapshotEnd(SnapshotEnd {}))
}

/// Kick `user`'s connections on the peer.
pub(crate) fn kick(user: &str) -> Vec<u8> {
    let user = user.to_owned();
    to_vec(envelope::Kind::Kick(Kick { user }))
}

/// Decodes an envelope from peer `node`'s shard `shard`.
pub(crate) fn decode(bytes: &[u8], node: &Arc<str>, shard: u16) -> Result<PeerMsg, EnvelopeError> {
    let frame = |b: &Bytes| ServerFrame::decode(b.as_ref()).map(Outbound::new);
    let kind = Envelope::decode(bytes)?
        .kind
        .ok_or(EnvelopeError::Unknown)?;
    Ok(match kind {
        envelope::Kind::ToUser(t) => PeerMsg::ToUser {
            msg: frame(&t.frame)?,
            user: Arc::from(t.name),
        },
        envelope::Kind::ToRoom(t) => PeerMsg::ToRoom {
            msg: frame(&t.frame)?,
            room: Arc::from(t.name),
            epoch: t.epoch,
        },
        envelope::Kind::Stored(s) => PeerMsg::Stored {
            msg: frame(&s.frame)?,
            user: Arc::from(s.user),
            seq: s.seq,
        },
        envelope::Kind::Interest(i) => PeerMsg::Interest {
            kind: match interest::Kind::try_from(i.kind) {
                Ok(interest::Kind::User) => Kind::User,
                Ok(interest::Kind::Room) => Kind::Room,
                Err(_) => return Err(EnvelopeError::Unknown),
            },
            name: Arc::from(i.name),
            origin: Origin {
                node: node.clone(),
                shard,
            },
            on: i.on,
        },
        envelope::Kind::Reset(r) => PeerMsg::Reset {
            node: node.clone(),
            shard,
            shards: u16::try_from(r.shards).unwrap_or(u16::MAX),
            end_follows: r.end_follows,
        },
        envelope::Kind::SnapshotEnd(_) => PeerMsg::SnapshotEnd {
            node: node.clone(),
            shard,
        },
        envelope::Kind::Kick(k) => PeerMsg::Kick {
            user: Arc::from(k.user),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{server_frame::Frame, Deliver};

    fn deliver() -> ServerFrame {
        ServerFrame {
            frame: Some(Frame::Deliver(Deliver {
                msg_id: "m1".into(),
                from: "alice".into(),
                payload: Bytes::from_static(b"hi"),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let node: Arc<str> = Arc::from("b");
        let f = frame_bytes(&deliver());
        match decode(&to_user("u", f.clone()), &node, 3).unwrap() {
            PeerMsg::ToUser { user, msg } => {
                assert_eq!(&*user, "u");
                assert_eq!(msg.frame(), &deliver());
            }
            _ => panic!("not ToUser"),
        }
        assert!(
            matches!(decode(&to_room("r", f.clone()), &node, 3).unwrap(),
            PeerMsg::ToRoom { room, .. } if &*room == "r")
        );
        assert!(matches!(
            decode(&stored("u", 7, f), &node, 3).unwrap(),
            PeerMsg::Stored { seq: 7, .. }
        ));
        match decode(&interest(Kind::Room, "r", true), &node, 3).unwrap() {
            PeerMsg::Interest {
                kind,
                name,
                origin,
                on,
            } => {
                assert_eq!((kind, &*name, on), (Kind::Room, "r", true));
                assert_eq!(
                    origin,
                    Origin {
                        node: node.clone(),
                        shard: 3
                    }
                );
            }
            _ => panic!("not Interest"),
        }
        assert!(matches!(
            decode(&reset(3, 4), &node, 3).unwrap(),
            PeerMsg::Reset {
                shard: 3,
                shards: 4,
                end_follows: true,
                ..
            }
        ));
        assert!(matches!(
            decode(&snapshot_end(), &node, 3).unwrap(),
            PeerMsg::SnapshotEnd { shard: 3, .. }
        ));
        assert!(matches!(
            decode(&kick("u"), &node, 0).unwrap(),
            PeerMsg::Kick { .. }
        ));
    }

    #[test]
    fn garbage_and_unknown_kinds_are_errors() {
        let node: Arc<str> = Arc::from("b");
        assert!(matches!(
            decode(&[0xff, 0xff], &node, 0),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(decode(&[], &node, 0), Err(EnvelopeError::Unknown)));
    }
}
