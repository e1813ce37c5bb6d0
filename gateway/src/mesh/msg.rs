//! What travels between shards: data-plane messages, operator commands,
//! backend replies and what a peer sent (`ShardMsg`), and the values they
//! carry. The queues themselves are `mesh`.
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::cluster::envelope::PeerMsg;
use crate::cluster::Peers;
use crate::outbound::{Outbound, Wire};
use crate::store::{Replay, ReplyTo, StoreError, Stored};

/// A shard index.
pub(crate) type ShardId = u16;

/// One connection as the owner shard of its user records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    /// Shard holding the connection.
    pub shard: ShardId,
    /// Node-unique connection id.
    pub conn_id: u64,
    /// Device name (empty when none was given).
    pub device: Arc<str>,
    /// The connection's wire.
    pub wire: Wire,
}

/// A user's presence as its owner shard knows it.
#[derive(Debug, Clone, Default)]
pub struct Presence {
    /// The user's connections on this node.
    pub local: Vec<PresenceEntry>,
    /// Peer nodes with at least one connection of the user.
    pub nodes: Vec<Arc<str>>,
}

/// What travels between shards (or from the control thread to a shard):
/// data-plane traffic or an operator's command. A new producer (the relay,
/// the backend streams) adds its own kind here, with its own enum, instead of
/// widening one of these.
pub enum ShardMsg {
    /// Routing, presence changes, QoS 1 store traffic.
    Data(DataMsg),
    /// An operator's request (admin API, signals).
    Command(Command),
    /// What a peer node sent over the bus (`crate::cluster`).
    Peer(PeerMsg),
}

impl From<PeerMsg> for ShardMsg {
    fn from(m: PeerMsg) -> ShardMsg {
        ShardMsg::Peer(m)
    }
}

impl From<DataMsg> for ShardMsg {
    fn from(m: DataMsg) -> ShardMsg {
        ShardMsg::Data(m)
    }
}

impl From<Command> for ShardMsg {
    fn from(c: Command) -> ShardMsg {
        ShardMsg::Command(c)
    }
}

/// A user and a connection of it that came online (`DataMsg::OnlineMany`).
pub(crate) type Online = (Arc<str>, PresenceEntry);

/// Data-plane messages: routes, deliveries, presence changes, store traffic.
/// Field names say what they hold; the variant docs say where they go.
#[allow(missing_docs)]
pub enum DataMsg {
    /// At the user's owner: forward to every shard holding the user.
    ToUser { user: Arc<str>, msg: Arc<Outbound> },
    /// At a holding shard: deliver to the user's local connections.
    UserLocal { user: Arc<str>, msg: Arc<Outbound> },
    /// At the room's owner: forward to every interested shard.
    ToRoom { room: Arc<str>, msg: Arc<Outbound> },
    /// At an interested shard: deliver to the room's local members.
    RoomLocal { room: Arc<str>, msg: Arc<Outbound> },
    /// At the user's owner: a connection authenticated.
    Online {
        user: Arc<str>,
        entry: PresenceEntry,
    },
    /// At the users' owner: connections an upgrade handed over, an
    /// `Online` each, in order (one message per owner for a shard's import,
    /// not a million through the queues; `Router::hold_online`).
    OnlineMany(Vec<Online>),
    /// At the user's owner: a connection closed.
    Offline {
        user: Arc<str>,
        shard: ShardId,
        conn_id: u64,
    },
    /// At the room's owner: `shard` gained its first or lost its last member.
    Interest {
        room: Arc<str>,
        shard: ShardId,
        on: bool,
    },
    /// At the user's owner: store a QoS 1 message in the user's inbox.
    Qos1Append {
        user: Arc<str>,
        msg: Box<Stored>,
        client_msg_id: String,
        reply: Option<ReplyTo>,
    },
    /// At a holding shard: a stored QoS 1 message for the user's connections.
    Qos1Deliver {
        user: Arc<str>,
        seq: u64,
        msg: Arc<Outbound>,
    },
    /// At the user's owner: a device acknowledged up to `seq`.
    Qos1Ack {
        user: Arc<str>,
        device: Arc<str>,
        seq: u64,
    },
    /// At the user's owner: read the inbox for a connection (resume).
    Qos1Read {
        user: Arc<str>,
        device: Arc<str>,
        after: Option<u64>,
        max: usize,
        conn: ReplyTo,
    },
    /// At the room's owner: store a message in the room's history.
    RoomAppend(Box<crate::store::RoomAppend>),
    /// At the room's owner: read the room's history for a joining member.
    RoomRead {
        room: Arc<str>,
        range: crate::store::RoomRange,
        conn: ReplyTo,
    },
    /// At the member's shard: what its read of the room's history found.
    RoomHistory {
        conn: ReplyTo,
        room: Arc<str>,
        range: crate::store::RoomRange,
        result: Result<crate::store::RoomHistory, StoreError>,
    },
    /// At the connection's shard: what the read found.
    Qos1Replay {
        conn: ReplyTo,
        replay: Result<Replay, StoreError>,
    },
    /// At the sender's shard: the outcome of a QoS 1 send.
    SendDone {
        reply: ReplyTo,
        result: Box<proto::v1::SendResult>,
    },
    /// At a shard: its QoS 1 store has completions to collect.
    StoreReady,
    /// At the shard of the SSE stream `conn_id`: client frames posted to
    /// it (`session::sse`), answered with `SsePosted` to `reply`.
    SsePost {
        conn_id: u64,
        body: Vec<u8>,
        reply: ReplyTo,
    },
    /// At the POST's shard: the HTTP status to answer it with.
    SsePosted { reply: ReplyTo, status: u16 },
}

/// What a backend service (a thread: the authorization hook's workers, a
/// shard's upstream writer) answers a connection. Replies have their own
/// queue per shard, apart from `ShardMsg`, because their senders must never
/// wait or drop them: pushing one never fails and never blocks (see
/// `Mesh::reply`). Each is the answer to one request a shard made, and each
/// service bounds its own requests in flight, so the queue is bounded by
/// what the services hold (`backend::hook`'s queue and workers, the upstream
/// writer's queue).
#[allow(missing_docs)]
pub enum Reply {
    /// The backend's decision on a join or a publish (`backend::hook`).
    Authorized {
        reply: ReplyTo,
        action: crate::session::Action,
        room: Arc<str>,
        allow: bool,
        send: Option<Box<proto::v1::Send>>,
    },
    /// The outcome of a send to the backend stream (`backend::upstream`).
    SendDone {
        reply: ReplyTo,
        result: Box<proto::v1::SendResult>,
    },
}

/// Operator commands, each answered (where it has an answer) on its channel.
#[allow(missing_docs)]
pub enum Command {
    /// At the user's owner: report the user's connections here and the
    /// peers that have some.
    Presence {
        user: Arc<str>,
        reply: Sender<Presence>,
    },
    /// At the room's owner: the peers with members of the room.
    RoomNodes {
        room: Arc<str>,
        reply: Sender<Vec<Arc<str>>>,
    },
    /// At every shard: how many of its connections are in the room.
    RoomMembers {
        room: Arc<str>,
        reply: Sender<usize>,
    },
    /// At the user's owner: kick every connection of the user.
    Kick {
        user: Arc<str>,
        reply: Option<Sender<usize>>,
    },
    /// At a holding shard: kick the user's local connections.
    KickLocal { user: Arc<str> },
    /// Stop accepting, send go-away to everyone (naming where to go), exit
    /// when empty.
    Drain(Redirect),
    /// Start accepting and serving (a process started by an upgrade, at
    /// the commit).
    Accept,
    /// An upgrade's new process is up: send the descriptors of the movable
    /// plain connections ahead, still serving; answer how many (or why
    /// not).
    Prepass {
        reply: Sender<Result<usize, String>>,
        /// The shard's epoll sets go ahead too (`Accept { sets }`).
        sets: bool,
        /// The sessions too (`Accept { sessions }`).
        sessions: bool,
        /// At the freeze, the sessions that came ahead and did not change
        /// go unnamed (`Accept { unlisted }`).
        unlisted: bool,
    },
    /// An upgrade begins: stop reading, writing and accepting, then answer
    /// once no store operation is out (false: not within the bound).
    Freeze(Sender<bool>),
    /// Write the connections and the store to the handover channel; answer
    /// how many connections (or why not).
    Export(Sender<Result<usize, String>>),
    /// The upgrade committed: forget what was exported.
    Forget,
    /// The upgrade aborted: serve on.
    Thaw,
    /// In a process started by an upgrade: take over what the channel
    /// carries; answer how many connections (or why not).
    Import(Box<Import>),
    /// The registry's live peers changed: open and drop links to match.
    Peers(Peers),
    /// A reload (SIGHUP, `POST /reload`): put these keys (and TLS
    /// certificate, with TLS on) in force, then answer on `done`.
    Reload(Box<Reload>),
}

/// What an upgrade's new process asks of its shard: take over what the
/// shard's channel carries.
pub struct Import {
    /// Told once the descriptors sent ahead are in (the old process then
    /// freezes): their count.
    pub ahead: Sender<usize>,
    /// How many connections it took over, or why not.
    pub done: Sender<Result<usize, String>>,
}

/// Where a draining shard sends its clients: the nodes `GET /route` would
/// choose from (the registry's view without this node), by `policy`. Built
/// by the control plane when the drain starts; empty on a single node
/// (clients then get no address and reconnect where they came from).
#[derive(Debug, Clone, Default)]
pub struct Redirect {
    /// The other live nodes, sorted by id.
    pub nodes: Arc<[crate::cluster::NodeInfo]>,
    /// How `/route` picks among them.
    pub policy: crate::config::RoutePolicy,
    /// The reconnect hint of the go-away (`drain.reconnect_after_ms`).
    pub reconnect_after_ms: u32,
    /// A random share of this is added to each connection's hint (an
    /// upgrade's `drain.upgrade_spread_ms`; 0 for a drain).
    pub spread_ms: u32,
}

/// What a reload hands every shard (`Command::Reload`).
pub struct Reload {
    /// Verifies client tokens from now on.
    pub verifier: crate::auth::Verifier,
    /// The certificate for TLS connections accepted from now on (`None`:
    /// TLS is off, as it was).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The cluster secrets the bus proves and accepts from now on.
    pub bus_secrets: Vec<Vec<u8>>,
    /// The bus's certificates for links opened from now on (`None`: the
    /// bus is plaintext, as it was).
    pub bus_tls: Option<crate::config::BusTls>,
    /// Told once the shard has them in force.
    pub done: Sender<()>,
}
