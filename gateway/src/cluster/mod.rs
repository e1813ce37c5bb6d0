//! Many nodes: the registry's view, the peers' interest, the bus envelopes
//! and client routing, as values and pure functions. The links themselves
//! are `relay`'s state machines, driven by the shards (`shard::bus`); the
//! registry's thread is `control::registry`.
//!
//! The design, in the order a message meets it:
//! - **Registry** (`control::registry`): every node keeps an entry in Redis
//!   (`im:{cluster}:node:ID`, a JSON [`NodeInfo`] with a TTL, indexed by the
//!   `im:{cluster}:nodes` set; one hash tag, so it works on Redis Cluster).
//!   The control thread refreshes it every third of the TTL and reads the
//!   others; when the set of peers changes, every shard gets the new
//!   [`Peers`] and opens or drops its links. A node killed with `kill -9`
//!   disappears when its entry expires; a node that stops gracefully
//!   deletes its entry.
//! - **Links**: shard `i` of every node dials shard `i mod n` of every
//!   peer (each shard has its own bus port), so a message leaves the shard
//!   that routed it with no hop through another thread, and the receiving
//!   shard keeps the dedupe state of its links across reconnects.
//! - **Interest instead of lookups**: a user's or room's owner shard
//!   (`mesh::Mesh::owner`) tells every peer when this node gains its first
//!   or loses its last local device of the user, or member of the room
//!   ([`Interest`]); peers keep it in a [`remote::RemoteInterest`] table at
//!   their own owner shard of the name. A direct message or a room broadcast
//!   then goes to the local shards plus one envelope per interested node,
//!   with no Redis round trip on the hot path. We chose this over a home
//!   node per user (consistent hashing): a home node adds a second bus hop
//!   to every message and moves every user's state when a node comes or
//!   goes, while interest costs one small entry per remote user or room at
//!   one shard, and is rebuilt from snapshots (`Reset`) when a link comes up
//!   with a peer that restarted.
//! - **Order**: a sender's messages to a name go through the sender node's
//!   owner shard, its one link to the peer, the peer's receiving shard and
//!   the peer's owner shard: FIFO queues all the way, so per-sender order
//!   holds across nodes. QoS 1 order per user holds because sequence
//!   numbers come from the shared Redis inbox: a session that sees a gap
//!   reads the inbox in order (`session::qos`).
//! - **One order per room** (rooms with history, `rooms.history`): the
//!   order is made by the store, not by a node. The sender's node's owner
//!   shard of the room appends the message to the room's log in Redis
//!   (`store::redis::room_scripts`: one script call, atomically the next
//!   offset, the message and the trims), then relays it with its epoch to
//!   the interested peers. Every node's owner shard of the room releases
//!   the room's messages to its members in offset order (`router::rooms`):
//!   a message ahead of a missing offset (another node's, still on its
//!   way) is held up to `rooms.reorder_wait_ms` (200 ms), then the missing
//!   offsets are read from the log. Cost per message: one Redis script
//!   call (on the appending node, pipelined with the shard's other store
//!   operations) and the same bus envelopes as a live message; nothing per
//!   member. We chose the store over an owner node per room: an owner node
//!   adds a bus hop to every message from another node and must hand its
//!   rooms over when nodes come and go, while Redis already holds the
//!   room's history and is the one place every node reaches. A node that
//!   loses Redis cannot store room messages with history: their senders
//!   get `UNAVAILABLE` (QoS 1) and QoS 0 ones are counted in
//!   `gateway_room_append_dropped_total`.
//! - **Redis down**: the registry keeps its last view and links stay up
//!   (they have their own heartbeats); routing goes on between the nodes it
//!   knew. When Redis answers again the entries are written at once.
pub(crate) mod envelope;
pub(crate) mod presence;
pub(crate) mod presence_events;
pub(crate) mod remote;
pub(crate) mod route;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One node as the registry holds it (also the `GET /nodes` items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id (`node_id`).
    pub id: String,
    /// Changes every time the node process starts.
    pub incarnation: u64,
    /// Bus addresses, one per shard (`host:port`).
    pub bus: Vec<String>,
    /// WebSocket address for clients (`host:port`; clients use `/ws`).
    pub ws: String,
    /// Raw TCP address for clients (`host:port`).
    pub tcp: String,
    /// Admin address (`host:port`).
    pub admin: String,
    /// Open client connections at the last refresh.
    pub conns: u64,
    /// True once the node drains: never routed to.
    pub draining: bool,
    /// The binary's version (`CARGO_PKG_VERSION`); empty from a node
    /// that predates the field.
    #[serde(default)]
    pub version: String,
    /// The serving process's id (changes with an upgrade); 0 from a node
    /// that predates the field.
    #[serde(default)]
    pub pid: u32,
}

/// A peer as the shards see it: where its shards' bus ports are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node id.
    pub id: Arc<str>,
    /// The peer process's incarnation.
    pub incarnation: u64,
    /// Resolved bus addresses, one per peer shard.
    pub bus: Vec<SocketAddr>,
}

/// Every live peer (this node excluded), sorted by id.
pub(crate) type Peers = Arc<[Peer]>;

/// The registry's last reading, for the admin API (`/nodes`, `/route`).
#[derive(Default)]
pub struct View {
    nodes: Mutex<Arc<Vec<NodeInfo>>>,
    turn: std::sync::atomic::AtomicUsize,
    /// Registry refreshes that succeeded.
    pub refreshes: std::sync::atomic::AtomicU64,
    /// Registry refreshes that failed (Redis unreachable or refusing).
    pub errors: std::sync::atomic::AtomicU64,
}

impl View {
    /// Every node the registry lists (this one included), sorted by id.
    pub fn nodes(&self) -> Arc<Vec<NodeInfo>> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Replaces the reading.
    pub fn set(&self, nodes: Vec<NodeInfo>) {
        if let Ok(mut n) = self.nodes.lock() {
            *n = Arc::new(nodes);
        }
    }

    /// The next round-robin turn.
    pub fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}
