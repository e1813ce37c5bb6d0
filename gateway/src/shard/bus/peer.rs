//! What arrives over the bus, routed on this node: each envelope goes to
//! the shard that owns its name here, which delivers it to its local
//! shards only. A `Reset` goes to every shard (each owns some names).
use std::sync::Arc;

use crate::cluster::envelope::{self, PeerMsg};
use crate::cluster::remote::Kind;
use crate::mesh::{Command, DataMsg};
use crate::shard::Shard;
use crate::stats::ShardStats;

impl Shard {
    /// An envelope from peer `node`'s shard `shard`.
    pub(super) fn on_envelope(&self, node: &Arc<str>, shard: u16, bytes: &[u8]) {
        let msg = match envelope::decode(bytes, node, shard) {
            Ok(m) => m,
            Err(e) => {
                ShardStats::inc(&self.stats.bus_bad_envelopes);
                tracing::debug!(shard = self.id, peer = %node, "bus: {e}");
                return;
            }
        };
        let mesh = &self.deps.mesh;
        let to = match &msg {
            PeerMsg::Reset { .. } => {
                for s in 0..mesh.len() {
                    self.send_to(s, msg.clone());
                }
                return;
            }
            PeerMsg::ToUser { user, .. }
            | PeerMsg::Stored { user, .. }
            | PeerMsg::Kick { user } => mesh.owner(user),
            PeerMsg::ToRoom { room, .. } => mesh.owner(room),
            PeerMsg::Interest { name, .. } => mesh.owner(name),
        };
        self.send_to(to, msg);
    }

    /// A bus message at the shard named in its doc.
    pub(in crate::shard) fn handle_peer(&self, msg: PeerMsg) {
        match msg {
            PeerMsg::ToUser { user, msg } => {
                for s in self.tables.borrow().user_shards(&user) {
                    let (user, msg) = (user.clone(), msg.clone());
                    self.send_to(s as usize, DataMsg::UserLocal { user, msg });
                }
            }
            PeerMsg::ToRoom { room, msg } => {
                let shards = self.tables.borrow().room_shards(&room).to_vec();
                for s in shards {
                    let (room, msg) = (room.clone(), msg.clone());
                    self.send_to(s as usize, DataMsg::RoomLocal { room, msg });
                }
            }
            PeerMsg::Stored { user, seq, msg } => {
                for s in self.tables.borrow().user_shards(&user) {
                    let (user, msg) = (user.clone(), msg.clone());
                    self.send_to(s as usize, DataMsg::Qos1Deliver { user, seq, msg });
                }
            }
            PeerMsg::Interest {
                kind,
                name,
                origin,
                on,
            } => {
                let node = origin.node.clone();
                self.bus
                    .remote
                    .borrow_mut()
                    .set(kind, name.clone(), origin, on);
                if on && kind == Kind::User {
                    self.resend_recent(&name, &node);
                }
            }
            PeerMsg::Reset {
                node,
                shard,
                shards,
            } => self.bus.remote.borrow_mut().reset(&node, shard, shards),
            PeerMsg::Kick { user } => {
                for s in self.tables.borrow().user_shards(&user) {
                    let user = user.clone();
                    self.send_to(s as usize, Command::KickLocal { user });
                }
            }
        }
    }
}
