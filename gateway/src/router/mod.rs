//! The router: a shard's routing state and decisions, as a value (the
//! shard's other sans-IO half, quinn-proto's `Endpoint` beside the
//! session's `Connection`; rumqttd's router apart from its links).
//!
//! It holds the shard's tables (`tables`: local users and room members, and
//! for the names this shard owns the node-wide presence and the interested
//! shards) and the peers' interest in the names it owns
//! (`cluster::remote`). It is fed what arrives (a mesh `DataMsg`, a bus
//! `PeerMsg`, a session's `Route`, a connection's removal) and answers with
//! `Action`s, collected until the driver takes them (`drain`): messages for
//! shard queues, live and stored deliveries for local connections, bus
//! envelopes for peers. It opens no socket, reads no clock, holds no
//! `RefCell` and no handle on the node; `tests` drive it alone.
//!
//! It is also the owner side of QoS 1 (`owner`): appends, acks and reads
//! for the users this shard owns become store requests, and the store's
//! completions come back to it to be routed; sender-less appends the store
//! refused wait in `retry`, and the last stored message per user in
//! `recent` (both on the router's clock: the `now` it is fed). And it picks
//! where a draining shard sends each client (`redirect`).
//!
//! Order: every action is produced in the order of the input that caused
//! it, and the driver carries them out in that order, so a sender's
//! messages to one name keep their order through the owner's FIFO queue.
mod owner;
mod recent;
mod retry;
pub(crate) mod tables;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{server_frame::Frame, Qos};
use smallvec::SmallVec;

use crate::cluster::envelope::{self, PeerMsg};
use crate::cluster::remote::{Kind, RemoteInterest};
use crate::cluster::route;
use crate::config::{QosConfig, WhenFull};
use crate::mesh::{owner, Command, DataMsg, PresenceEntry, Redirect, ShardId, ShardMsg};
use crate::outbound::{Outbound, Wire};
use crate::session::Route;
use crate::stats::ShardStats;
use crate::store::{Op, ReplyTo};
use tables::{ConnKey, Tables};

/// What the router asks its driver to do.
pub(crate) enum Action {
    /// Push to shard `to`'s queue (possibly this shard's own), in order.
    Send(usize, ShardMsg),
    /// A live frame for this shard's connections of `user`.
    DeliverUser(Arc<str>, Arc<Outbound>),
    /// A live frame for this shard's members of `room`.
    DeliverRoom(Arc<str>, Arc<Outbound>),
    /// A QoS 1 room message: store it in the inbox of the user of each of
    /// this shard's members of `room` (the driver knows which user a
    /// connection is; `Router::store_for` makes the appends).
    StoreForMembers(Arc<str>, Arc<Outbound>),
    /// A stored QoS 1 message for this shard's connections of `user`.
    DeliverStored(Arc<str>, u64, Arc<Outbound>),
    /// One envelope for each of `nodes`.
    Bus(SmallVec<[Arc<str>; 4]>, Vec<u8>),
    /// One envelope for every peer this shard has a link to.
    BusAll(Vec<u8>),
    /// A request for this shard's QoS 1 store; its completion comes back
    /// through `Router::stored`, in order.
    Store(Op),
}

/// The owner side's state (see `owner`).
struct OwnerState {
    retry: retry::AppendRetry,
    /// Appends at the store, and when each was submitted (latency metric).
    pending_appends: usize,
    store_started: VecDeque<Instant>,
    recent: recent::Recent,
    max_pending_appends: usize,
    direct_when_full: WhenFull,
}

/// One shard's router (see the module header).
pub(crate) struct Router {
    me: ShardId,
    shards: usize,
    tables: Tables,
    remote: RemoteInterest,
    /// Users whose node-wide presence changed, for the presence writer
    /// (`None`: no writer, nothing kept).
    presence_dirty: Option<HashSet<Arc<str>>>,
    /// The shard has links to peers: interest changes are announced.
    peered: bool,
    owner: OwnerState,
    /// The round-robin turn of drain redirects.
    redirect_turn: usize,
    stats: Arc<ShardStats>,
    out: Vec<Action>,
}

impl Router {
    /// The router of shard `me` of `shards`; `presence` keeps the users
    /// whose presence changed for a presence writer (many nodes); `qos`
    /// bounds the owner side; counters go to `stats`.
    pub(crate) fn new(
        me: ShardId,
        shards: usize,
        presence: bool,
        qos: &QosConfig,
        stats: Arc<ShardStats>,
    ) -> Router {
        Router {
            owner: OwnerState {
                retry: retry::AppendRetry::new(Duration::from_secs(qos.dedupe_secs)),
                pending_appends: 0,
                store_started: VecDeque::new(),
                recent: recent::Recent::default(),
                max_pending_appends: qos.max_pending_appends,
                direct_when_full: qos.direct_when_full,
            },
            redirect_turn: me as usize,
            stats,
            me,
            shards: shards.max(1),
            tables: Tables::default(),
            remote: RemoteInterest::default(),
            presence_dirty: presence.then(HashSet::new),
            peered: false,
            out: Vec::new(),
        }
    }

    /// Whether the shard has links to peers (it announces interest changes
    /// only then; a link that comes up gets a snapshot instead).
    pub(crate) fn set_peered(&mut self, peered: bool) {
        self.peered = peered;
    }

    /// The shard that owns `name`.
    pub(crate) fn owner(&self, name: &str) -> usize {
        owner(name, self.shards)
    }

    /// The tables (read-only: changes go through the router's inputs).
    pub(crate) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The peer nodes interested in `name` (owner side).
    pub(crate) fn remote_nodes(&self, kind: Kind, name: &str) -> SmallVec<[Arc<str>; 4]> {
        self.remote.nodes(kind, name)
    }

    /// Moves the actions produced so far into `into` (in order), keeping
    /// the router's allocation.
    pub(crate) fn drain(&mut self, into: &mut Vec<Action>) {
        into.append(&mut self.out);
    }

    /// True when no action waits.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.out.is_empty()
    }

    /// The users whose presence changed since the last call.
    pub(crate) fn take_presence_dirty(&mut self) -> HashSet<Arc<str>> {
        self.presence_dirty
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// A data-plane message from a shard queue, at `now`. Gives back the
    /// ones for this shard's sessions (replays, send results) and the
    /// store's wake-up.
    pub(crate) fn handle(&mut self, now: Instant, msg: DataMsg) -> Option<DataMsg> {
        match msg {
            DataMsg::ToUser { user, msg } => {
                self.relay_out(Kind::User, &user, &msg);
                for s in self.tables.user_shards(&user) {
                    let (user, msg) = (user.clone(), msg.clone());
                    self.send(s as usize, DataMsg::UserLocal { user, msg });
                }
            }
            DataMsg::UserLocal { user, msg } => self.out.push(Action::DeliverUser(user, msg)),
            DataMsg::ToRoom { room, msg } => {
                self.relay_out(Kind::Room, &room, &msg);
                self.forward_to_room_shards(&room, &msg);
            }
            DataMsg::RoomLocal { room, msg } => {
                let qos1 = matches!(msg.frame().frame.as_ref(),
                    Some(Frame::Deliver(d)) if d.qos() == Qos::AtLeastOnce);
                self.out.push(match qos1 {
                    true => Action::StoreForMembers(room, msg),
                    false => Action::DeliverRoom(room, msg),
                });
            }
            DataMsg::Online { user, entry } => {
                self.mark_presence(&user);
                if self.tables.online(user.clone(), entry) {
                    self.announce(Kind::User, &user, true);
                }
            }
            DataMsg::Offline {
                user,
                shard,
                conn_id,
            } => {
                self.mark_presence(&user);
                if self.tables.offline(&user, shard, conn_id) {
                    self.announce(Kind::User, &user, false);
                }
            }
            DataMsg::Interest { room, shard, on } => {
                if self.tables.interest(room.clone(), shard, on) {
                    self.announce(Kind::Room, &room, on);
                }
            }
            DataMsg::Qos1Deliver { user, seq, msg } => {
                self.out.push(Action::DeliverStored(user, seq, msg))
            }
            DataMsg::Qos1Append {
                user,
                msg,
                client_msg_id,
                reply,
            } => self.owner_append(now, user, *msg, client_msg_id, reply),
            DataMsg::Qos1Ack { user, device, seq } => {
                self.out.push(Action::Store(Op::Ack { user, device, seq }))
            }
            DataMsg::Qos1Read {
                user,
                device,
                after,
                max,
                conn,
            } => {
                ShardStats::inc(&self.stats.qos_resumes);
                let read = Op::Read {
                    user,
                    device,
                    after,
                    max,
                    conn,
                };
                self.out.push(Action::Store(read));
            }
            other => return Some(other),
        }
        None
    }

    /// An envelope a peer sent, as it comes off the bus: to the owner shard
    /// of its name (a `Reset` to every shard).
    pub(crate) fn arrived(&mut self, msg: PeerMsg) {
        let to = match &msg {
            PeerMsg::Reset { .. } => {
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
            PeerMsg::ToRoom { room, msg } => self.forward_to_room_shards(&room, &msg),
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
            } => self.remote.reset(&node, shard, shards),
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

    /// A route of the session of connection `from`. Gives back the routes
    /// the router does not carry out (to the backend services).
    pub(crate) fn route(&mut self, from: ReplyTo, route: Route) -> Option<Route> {
        match route {
            Route::Online { user, device, wire } => {
                self.tables.add_user(&user, from.key);
                let entry = PresenceEntry {
                    shard: self.me,
                    conn_id: from.conn_id,
                    device,
                    wire,
                };
                self.send(self.owner(&user), DataMsg::Online { user, entry });
            }
            Route::Joined(room) => {
                if self.tables.join(&room, from.key) {
                    let (to, shard) = (self.owner(&room), self.me);
                    self.send(
                        to,
                        DataMsg::Interest {
                            room,
                            shard,
                            on: true,
                        },
                    );
                }
            }
            Route::Left(room) => self.leave(from.key, &room),
            Route::ToUser { user, msg } => {
                self.send(self.owner(&user), DataMsg::ToUser { user, msg })
            }
            Route::ToRoom { room, msg } => {
                self.send(self.owner(&room), DataMsg::ToRoom { room, msg })
            }
            Route::Append {
                user,
                msg,
                client_msg_id,
            } => {
                let to = self.owner(&user);
                let reply = Some(from);
                let append = DataMsg::Qos1Append {
                    user,
                    msg,
                    client_msg_id,
                    reply,
                };
                self.send(to, append);
            }
            Route::Read {
                user,
                device,
                after,
                max,
            } => {
                let to = self.owner(&user);
                let conn = from;
                self.send(
                    to,
                    DataMsg::Qos1Read {
                        user,
                        device,
                        after,
                        max,
                        conn,
                    },
                );
            }
            Route::Ack { user, device, seq } => {
                self.send(self.owner(&user), DataMsg::Qos1Ack { user, device, seq })
            }
            other @ (Route::ToBackend { .. } | Route::Event(_) | Route::Authorize { .. }) => {
                return Some(other)
            }
        }
        None
    }

    /// Drops a local membership; withdraws interest when it was the last.
    pub(crate) fn leave(&mut self, key: ConnKey, room: &str) {
        if self.tables.leave(room, key) {
            let shard = self.me;
            let room: Arc<str> = Arc::from(room);
            self.send(
                self.owner(&room),
                DataMsg::Interest {
                    room,
                    shard,
                    on: false,
                },
            );
        }
    }

    /// A connection of `user` (id `conn_id`, at `key`) closed; its rooms
    /// are left with `leave` first.
    pub(crate) fn closed(&mut self, key: ConnKey, user: &Arc<str>, conn_id: u64) {
        self.tables.remove_user(user, key);
        let shard = self.me;
        let msg = DataMsg::Offline {
            user: user.clone(),
            shard,
            conn_id,
        };
        self.send(self.owner(user), msg);
    }

    /// The appends a QoS 1 room message makes: one per distinct user among
    /// `users` (this shard's members of the room), each to the user's
    /// owner. The message id dedupes the copies other shards store for the
    /// same user.
    pub(crate) fn store_for(&mut self, mut users: Vec<Arc<str>>, msg: &Outbound) {
        let Some(Frame::Deliver(d)) = msg.frame().frame.as_ref() else {
            return;
        };
        users.sort_unstable();
        users.dedup();
        for user in users {
            let stored = crate::store::Stored {
                seq: 0,
                msg_id: d.msg_id.clone(),
                from: d.from.clone(),
                room: d.room.clone(),
                payload: d.payload.clone(),
                timestamp_ms: d.timestamp_ms,
            };
            let append = DataMsg::Qos1Append {
                client_msg_id: format!("room:{}", d.msg_id),
                msg: Box::new(stored),
                reply: None,
                user: user.clone(),
            };
            self.send(self.owner(&user), append);
        }
    }

    /// Where a draining shard sends a client of `user` on `wire`: the
    /// address of the node `redirect` picks (never this one), or "" when
    /// there is none (the client reconnects where it came from).
    pub(crate) fn redirect(
        &mut self,
        redirect: &Redirect,
        user: Option<&str>,
        wire: Wire,
    ) -> String {
        let turn = self.redirect_turn;
        self.redirect_turn = turn.wrapping_add(1);
        match route::pick(redirect.policy, &redirect.nodes, user, None, turn) {
            Some(n) if wire == Wire::Tcp => n.tcp.clone(),
            Some(n) => format!("ws://{}/ws", n.ws),
            None => String::new(),
        }
    }

    fn send(&mut self, to: usize, msg: impl Into<ShardMsg>) {
        self.out.push(Action::Send(to, msg.into()));
    }

    fn forward_to_room_shards(&mut self, room: &Arc<str>, msg: &Arc<Outbound>) {
        for i in 0..self.tables.room_shards(room).len() {
            let s = self.tables.room_shards(room)[i];
            let (room, msg) = (room.clone(), msg.clone());
            self.send(s as usize, DataMsg::RoomLocal { room, msg });
        }
    }

    /// A live message for a name this shard owns goes to every peer
    /// interested in it: one envelope, the frame encoded once.
    fn relay_out(&mut self, kind: Kind, name: &str, msg: &Outbound) {
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
    fn announce(&mut self, kind: Kind, name: &str, on: bool) {
        if !self.peered {
            return;
        }
        self.out
            .push(Action::BusAll(envelope::interest(kind, name, on)));
    }

    fn mark_presence(&mut self, user: &Arc<str>) {
        if let Some(dirty) = &mut self.presence_dirty {
            dirty.insert(user.clone());
        }
    }
}
