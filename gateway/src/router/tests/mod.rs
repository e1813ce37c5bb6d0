//! The router alone: fed messages, routes and store completions on
//! simulated time, its actions read back. No socket, no thread, no clock.
mod owner;
mod peers;
mod races;
mod rooms;
mod routing;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use proto::v1::{server_frame::Frame, Deliver, Qos, ServerFrame};

use super::*;
use crate::cluster::envelope::PeerMsg;
use crate::cluster::remote::Origin;
use crate::config::QosConfig;
use crate::mesh::{Command, PresenceEntry, Redirect};
use crate::outbound::Wire;
use crate::session::Route;
use crate::store::ReplyTo;
use tables::ConnKey;

const SHARDS: usize = 4;

fn name(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn msg(qos: Qos, id: &str) -> Arc<Outbound> {
    Outbound::new(ServerFrame {
        frame: Some(Frame::Deliver(Deliver {
            msg_id: id.into(),
            qos: qos as i32,
            room: "r".into(),
            ..Default::default()
        })),
    })
}

fn from(key: ConnKey, conn_id: u64) -> ReplyTo {
    ReplyTo {
        shard: 0,
        key,
        conn_id,
    }
}

fn entry(shard: ShardId, conn_id: u64) -> PresenceEntry {
    PresenceEntry {
        shard,
        conn_id,
        device: name("phone"),
        wire: Wire::Tcp,
    }
}

fn take(r: &mut Router) -> Vec<Action> {
    let mut v = Vec::new();
    r.drain(&mut v);
    v
}

/// What the actions say, as short strings (order kept).
fn said(r: &mut Router) -> Vec<String> {
    take(r).iter().map(describe).collect()
}

fn describe(a: &Action) -> String {
    match a {
        Action::Send(to, ShardMsg::Data(m)) => format!("{to}:{}", data(m)),
        Action::Send(to, ShardMsg::Command(Command::KickLocal { user })) => {
            format!("{to}:kick {user}")
        }
        Action::Send(to, ShardMsg::Peer(p)) => format!("{to}:peer {}", peer(p)),
        Action::Send(to, _) => format!("{to}:command"),
        Action::DeliverUser(u, _) => format!("live user {u}"),
        Action::DeliverRoom(r, _) => format!("live room {r}"),
        Action::StoreForMembers(r, _) => format!("store members {r}"),
        Action::DeliverStored(u, seq, _) => format!("stored {u} {seq}"),
        Action::Bus(nodes, _) => format!("bus {}", nodes.join(",")),
        Action::BusAll(_) => "bus all".into(),
        Action::Store(op) => store(op),
    }
}

fn data(m: &DataMsg) -> String {
    match m {
        DataMsg::ToUser { user, .. } => format!("to user {user}"),
        DataMsg::UserLocal { user, .. } => format!("user local {user}"),
        DataMsg::ToRoom { room, .. } => format!("to room {room}"),
        DataMsg::RoomLocal { room, .. } => format!("room local {room}"),
        DataMsg::Online { user, entry } => format!("online {user} {}", entry.conn_id),
        DataMsg::OnlineMany(entries) => format!("online {}", entries.len()),
        DataMsg::Offline { user, conn_id, .. } => format!("offline {user} {conn_id}"),
        DataMsg::Interest { room, shard, on } => format!("interest {room} {shard} {on}"),
        DataMsg::Qos1Append {
            user,
            client_msg_id,
            reply,
            ..
        } => format!("append {user} {client_msg_id} reply={}", reply.is_some()),
        DataMsg::Qos1Deliver { user, seq, .. } => format!("deliver {user} {seq}"),
        DataMsg::Qos1Ack { user, seq, .. } => format!("ack {user} {seq}"),
        DataMsg::Qos1Read { user, conn, .. } => format!("read {user} conn={}", conn.conn_id),
        _ => "other".into(),
    }
}

fn store(op: &Op) -> String {
    match op {
        Op::Append {
            user,
            client_msg_id,
            reply,
            online,
            ..
        } => format!(
            "store append {user} {client_msg_id} reply={} online={}",
            reply.is_some(),
            online.join(",")
        ),
        Op::Ack { user, seq, .. } => format!("store ack {user} {seq}"),
        Op::Read { user, after, .. } => format!("store read {user} after={after:?}"),
        Op::RoomAppend(a) => format!("store room append {} reply={}", a.room, a.reply.is_some()),
        Op::RoomRead { room, range, .. } => format!("store room read {room} {range:?}"),
    }
}

fn peer(p: &PeerMsg) -> String {
    match p {
        PeerMsg::Reset { node, .. } => format!("reset {node}"),
        PeerMsg::SnapshotEnd { node, .. } => format!("end {node}"),
        PeerMsg::ToUser { user, .. } => format!("to user {user}"),
        PeerMsg::Interest { name, .. } => format!("interest {name}"),
        _ => "other".into(),
    }
}

/// Feeding the router the messages most tests start with.
trait Feed {
    /// At the owner: `user`'s connection `conn_id` on `shard` authenticated.
    fn up(&mut self, user: &str, shard: ShardId, conn_id: u64);
}

impl Feed for Router {
    fn up(&mut self, user: &str, shard: ShardId, conn_id: u64) {
        let entry = entry(shard, conn_id);
        self.handle(
            t0(),
            DataMsg::Online {
                user: name(user),
                entry,
            },
        );
    }
}

fn interest(kind: Kind, n: &str, node: &str, on: bool) -> PeerMsg {
    PeerMsg::Interest {
        kind,
        name: name(n),
        origin: Origin {
            node: name(node),
            shard: 0,
        },
        on,
    }
}

/// The simulated clock's start.
fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// `ms` after the start.
fn at(ms: u64) -> Instant {
    t0() + Duration::from_millis(ms)
}

/// Shard `me`'s router with default QoS settings.
fn router(me: ShardId, presence: bool) -> Router {
    router_with(me, presence, &QosConfig::default()).0
}

/// Shard `me`'s router and its counters.
fn router_with(me: ShardId, presence: bool, qos: &QosConfig) -> (Router, Arc<ShardStats>) {
    let stats = Arc::new(ShardStats::default());
    let rooms = Arc::new(crate::config::RoomsConfig::default());
    (
        Router::new(me, SHARDS, presence, qos, rooms, stats.clone()),
        stats,
    )
}

/// A router owning `user` (shard `owner("user")` of `SHARDS`).
fn owner_of(user: &str) -> Router {
    router(owner(user, SHARDS) as ShardId, false)
}
