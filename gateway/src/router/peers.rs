//! The router's side of many nodes: envelopes as they come off the bus
//! (to their name's owner shard), what a peer sent (delivered here only),
//! live messages relayed to interested peers, interest announced.
use std::time::Instant;

use super::{Action, Router};
use crate::cluster::envelope::{self, PeerMsg};
use crate::cluster::remote::Kind;
use crate::mesh::{Command, DataMsg};
use crate::outbound::Outbound;

impl Router {
    /// An envelope a peer sent, as it comes off the bus: to the owner shard
    /// of its name (a `Reset` and a `SnapshotEnd` to every shard: the
    /// snapshot between them reaches each owner in the order sent).
    pub(crate) fn arrived(&mut self, msg: PeerMsg) {
        let to = match &msg {
            PeerMsg::Reset { .. } | PeerMsg::SnapshotEnd { .. } => {
                for s in 0..self.shards {
                    self.send(s, msg.clone());
                }
                return;
            }
            PeerMsg::ToUser { user, .. }
            | PeerMsg::Stored { user, .. }
            | PeerMsg::Kick { user } => self.owner(user),
            PeerMsg::ToRoom { room, .. } => self.owner(room),
            PeerMsg::Interest { name, .. } => self.owner(name),
        };
        self.send(to, msg);
    }

    /// A bus message at the shard its doc names, at `now`. What came from
    /// a peer is delivered here only, never sent back out.
    pub(crate) fn handle_peer(&mut self, now: Instant, msg: PeerMsg) {
        match msg {
            PeerMsg::ToUser { user, msg } => {
                for s in self.tables.user_shards(&user) {
                    let (user, msg) = (user.clone(), msg.clone());
                    self.send(s as usize, DataMsg::UserLocal { user, msg });
                }
            }
            PeerMsg::ToRoom { room, msg, epoch } => match (epoch, offset_of(&msg)) {
                (0, _) | (_, 0) => self.forward_to_room_shards(&room, &msg),
                (epoch, offset) => {
                    let at = crate::store::RoomPos { epoch, offset };
                    self.sequence(now, &room, at, msg)
                }
            },
            PeerMsg::Stored { user, seq, msg } => {
                for s in self.tables.user_shards(&user) {
                    let (user, msg) = (user.clone(), msg.clone());
                    self.send(s as usize, DataMsg::Qos1Deliver { user, seq, msg });
                }
            }
            PeerMsg::Interest {
                kind,
                name,
                origin,
                on,
            } => {
                let node = origin.node.clone();
                self.remote.set(kind, name.clone(), origin, on);
                if on && kind == Kind::User {
                    self.resend_recent(now, &name, node);
                }
            }
            PeerMsg::Reset {
                node,
                shard,
                shards,
                end_follows,
            } => self.remote.reset(&node, shard, shards, end_follows),
            PeerMsg::SnapshotEnd { node, shard } => self.remote.snapshot_end(&node, shard),
            PeerMsg::Kick { user } => {
                for s in self.tables.user_shards(&user) {
                    let user = user.clone();
                    self.send(s as usize, Command::KickLocal { user });
                }
            }
        }
    }

    /// A peer is gone from the registry: forget what it wanted.
    pub(crate) fn forget_peer(&mut self, node: &str) {
        self.remote.forget(node);
    }

    /// A live message for a name this shard owns goes to every peer
    /// interested in it: one envelope, the frame encoded once.
    pub(super) fn relay_out(&mut self, kind: Kind, name: &str, msg: &Outbound) {
        let nodes = self.remote.nodes(kind, name);
        if nodes.is_empty() {
            return;
        }
        let frame = envelope::frame_bytes(msg.frame());
        let env = match kind {
            Kind::User => envelope::to_user(name, frame),
            Kind::Room => envelope::to_room(name, frame),
        };
        self.out.push(Action::Bus(nodes, env));
    }

    /// Tells every peer this node gained or lost interest in a name this
    /// shard owns.
    pub(super) fn announce(&mut self, kind: Kind, name: &str, on: bool) {
        if !self.peered {
            return;
        }
        self.out
            .push(Action::BusAll(envelope::interest(kind, name, on)));
    }
}

/// The room offset a Deliver frame carries (0: none).
fn offset_of(msg: &Outbound) -> u64 {
    match msg.frame().frame.as_ref() {
        Some(proto::v1::server_frame::Frame::Deliver(d)) => d.offset,
        _ => 0,
    }
}
