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
mod held;
mod local;
mod owner;
mod peers;
mod recent;
mod retry;
mod rooms;
mod sequencer;
pub(crate) mod tables;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{server_frame::Frame, Qos};
use smallvec::SmallVec;

use crate::cluster::remote::{Kind, RemoteInterest};
use crate::config::{QosConfig, RoomsConfig, WhenFull};
use crate::mesh::{owner, DataMsg, PresenceEntry, ShardId, ShardMsg};
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::Op;
use tables::Tables;

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
    /// Rooms that keep history, at their owner (`rooms`).
    rooms: rooms::RoomsState,
    /// The round-robin turn of drain redirects.
    redirect_turn: usize,
    /// While an upgrade's import runs: the `Online`s for each owner shard,
    /// sent together at its end (`hold_online`).
    held_online: Option<held::HeldOnline>,
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
        rooms: Arc<RoomsConfig>,
        stats: Arc<ShardStats>,
    ) -> Router {
        Router {
            rooms: rooms::RoomsState::new(rooms),
            owner: OwnerState {
                retry: retry::AppendRetry::new(Duration::from_secs(qos.dedupe_secs)),
                pending_appends: 0,
                store_started: VecDeque::new(),
                recent: recent::Recent::default(),
                max_pending_appends: qos.max_pending_appends,
                direct_when_full: qos.direct_when_full,
            },
            redirect_turn: me as usize,
            held_online: None,
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

    /// Makes room in the tables for `n` connections' users (an upgrade's
    /// import).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.tables.reserve(n);
    }

    /// An upgrade's import begins: the connections' `Online`s are held and
    /// go to each owner in one message at its end (`release_online`). A
    /// million single messages through the shards' queues were a fifth of
    /// the freeze, and nothing else this shard sends meanwhile depends on
    /// them (the import routes only users and rooms).
    pub(crate) fn hold_online(&mut self) {
        self.held_online = Some(held::HeldOnline::new(self.shards));
    }

    /// The import is over: every held `Online` goes to its owner, in order.
    pub(crate) fn release_online(&mut self) {
        let held = self.held_online.take();
        for (to, entries) in held.into_iter().flat_map(|h| h.into_batches()) {
            self.send(to, DataMsg::OnlineMany(entries));
        }
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
                if self.keeps_history(&room) {
                    if let Some(a) = rooms::append_of(room, &msg) {
                        self.room_append(a);
                    }
                    return None;
                }
                self.relay_out(Kind::Room, &room, &msg);
                self.forward_to_room_shards(&room, &msg);
            }
            DataMsg::RoomAppend(a) => self.room_append(*a),
            DataMsg::RoomRead { room, range, conn } => {
                ShardStats::inc(&self.stats.room_reads);
                self.room_read(room, range, crate::store::RoomReader::Member(conn))
            }
            DataMsg::RoomLocal { room, msg } => {
                // A message of a room's history (offset > 0) is in the
                // room's log, not in the members' inboxes.
                let qos1 = matches!(msg.frame().frame.as_ref(),
                    Some(Frame::Deliver(d)) if d.qos() == Qos::AtLeastOnce && d.offset == 0);
                self.out.push(match qos1 {
                    true => Action::StoreForMembers(room, msg),
                    false => Action::DeliverRoom(room, msg),
                });
            }
            DataMsg::Online { user, entry } => self.online(user, entry),
            DataMsg::OnlineMany(entries) => {
                for (user, entry) in entries {
                    self.online(user, entry);
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
                    self.room_interest(&room, on);
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

    fn send(&mut self, to: usize, msg: impl Into<ShardMsg>) {
        self.out.push(Action::Send(to, msg.into()));
    }

    pub(super) fn forward_to_room_shards(&mut self, room: &Arc<str>, msg: &Arc<Outbound>) {
        let Router { tables, out, .. } = self;
        for &s in tables.room_shards(room) {
            let (room, msg) = (room.clone(), msg.clone());
            out.push(Action::Send(
                s as usize,
                DataMsg::RoomLocal { room, msg }.into(),
            ));
        }
    }

    /// Owner side: a connection of `user` came online.
    fn online(&mut self, user: Arc<str>, entry: PresenceEntry) {
        self.mark_presence(&user);
        if self.tables.online(user.clone(), entry) {
            self.announce(Kind::User, &user, true);
        }
    }

    fn mark_presence(&mut self, user: &Arc<str>) {
        if let Some(dirty) = &mut self.presence_dirty {
            dirty.insert(user.clone());
        }
    }
}
