//! Cross-shard messaging: one bounded lock-free queue per shard.
//!
//! Every shard owns a queue (a crossbeam `ArrayQueue`) that any thread may
//! push to. A shard that finds its queue empty marks itself parked and sleeps
//! on its eventfd; the first push after that pays one eventfd write, later
//! pushes see the shard awake and pay nothing: one wake-up per batch.
//!
//! The eventfds are created by the main thread before any shard unshares its
//! fd table, so each one has the same number in every table (monoio's own
//! cross-thread waker writes a raw fd number and would hit the wrong file).
//!
//! Names (users, rooms) are owned by one shard each, chosen by hash: the owner
//! keeps the node-wide presence of a user and the set of shards interested in
//! a room. Routing through the owner's FIFO queue keeps per-sender order.
//!
//! (The per-user QoS 1 inboxes are something else: `crate::store`.)
use std::hash::{Hash, Hasher};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use crossbeam_queue::{ArrayQueue, SegQueue};

use crate::cluster::envelope::PeerMsg;
use crate::cluster::Peers;
use crate::outbound::{Outbound, Wire};
use crate::store::{Replay, ReplyTo, StoreError, Stored};
use crate::sys;

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
    /// The registry's live peers changed: open and drop links to match.
    Peers(Peers),
    /// A reload (SIGHUP, `POST /reload`): put these keys (and TLS
    /// certificate, with TLS on) in force, then answer on `done`.
    Reload(Box<Reload>),
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
}

/// The shard (of `shards`) that owns `name`: the same on every thread and
/// for the life of the process.
pub(crate) fn owner(name: &str, shards: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// What a reload hands every shard (`Command::Reload`).
pub struct Reload {
    /// Verifies client tokens from now on.
    pub verifier: crate::auth::Verifier,
    /// The certificate for TLS connections accepted from now on (`None`:
    /// TLS is off, as it was).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Told once the shard has them in force.
    pub done: Sender<()>,
}

struct Queue {
    ring: ArrayQueue<ShardMsg>,
    replies: SegQueue<Reply>,
    parked: AtomicBool,
    eventfd: OwnedFd,
}

/// The queues of every shard of this node.
pub struct Mesh {
    queues: Vec<Queue>,
}

impl Mesh {
    /// Creates `shards` queues of `capacity` messages each. Must be called
    /// before any shard thread unshares its fd table.
    pub fn new(shards: usize, capacity: usize) -> std::io::Result<Mesh> {
        let queues = (0..shards)
            .map(|_| {
                Ok(Queue {
                    ring: ArrayQueue::new(capacity.max(1)),
                    replies: SegQueue::new(),
                    parked: AtomicBool::new(false),
                    eventfd: sys::eventfd()?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Mesh { queues })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// True when there are no shards (never, for a running node).
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The shard that owns `name` (a user or a room).
    pub fn owner(&self, name: &str) -> usize {
        owner(name, self.queues.len())
    }

    /// Pushes without waiting; gives the message back when the queue is full.
    pub fn try_push(&self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        let q = &self.queues[to];
        q.ring.push(msg)?;
        self.wake(q);
        Ok(())
    }

    /// Hands a backend service's reply to shard `to`: never blocks, never
    /// fails (see `Reply` for what bounds the queue).
    pub fn reply(&self, to: usize, reply: Reply) {
        let q = &self.queues[to];
        q.replies.push(reply);
        self.wake(q);
    }

    fn wake(&self, q: &Queue) {
        if q.parked.load(Ordering::Acquire) && q.parked.swap(false, Ordering::AcqRel) {
            sys::eventfd_signal(q.eventfd.as_raw_fd());
        }
    }

    /// Pushes from a thread that may block (the control thread), retrying a
    /// full queue until `timeout`. Gives the message back on timeout.
    pub fn push_blocking(
        &self,
        to: usize,
        msg: ShardMsg,
        timeout: Duration,
    ) -> Result<(), ShardMsg> {
        let deadline = Instant::now() + timeout;
        let mut msg = msg;
        loop {
            match self.try_push(to, msg) {
                Ok(()) => return Ok(()),
                Err(back) if Instant::now() >= deadline => return Err(back),
                Err(back) => {
                    msg = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// Takes the next message of shard `me`'s queue.
    pub fn pop(&self, me: usize) -> Option<ShardMsg> {
        self.queues[me].ring.pop()
    }

    /// Takes the next backend reply for shard `me`.
    pub fn pop_reply(&self, me: usize) -> Option<Reply> {
        self.queues[me].replies.pop()
    }

    /// True when shard `me`'s queues hold nothing.
    pub fn is_idle(&self, me: usize) -> bool {
        let q = &self.queues[me];
        q.ring.is_empty() && q.replies.is_empty()
    }

    /// Marks shard `me` as about to sleep. Returns false when a message
    /// arrived in the meantime (the caller must not sleep then).
    pub fn park(&self, me: usize) -> bool {
        let q = &self.queues[me];
        q.parked.store(true, Ordering::SeqCst);
        if q.ring.is_empty() && q.replies.is_empty() {
            return true;
        }
        q.parked.store(false, Ordering::SeqCst);
        false
    }

    /// The eventfd that wakes shard `me` (the same number in every table).
    pub fn eventfd(&self, me: usize) -> RawFd {
        self.queues[me].eventfd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_gives_the_message_back() {
        let mesh = Mesh::new(2, 1).unwrap();
        assert!(mesh
            .try_push(1, Command::Drain(Redirect::default()).into())
            .is_ok());
        assert!(matches!(
            mesh.try_push(1, Command::Drain(Redirect::default()).into()),
            Err(ShardMsg::Command(Command::Drain(_)))
        ));
        assert!(mesh.pop(1).is_some());
        assert!(mesh.pop(1).is_none());
    }

    #[test]
    fn one_wake_per_batch() {
        let mesh = Mesh::new(1, 8).unwrap();
        assert!(mesh.park(0));
        mesh.try_push(0, Command::Drain(Redirect::default()).into())
            .ok();
        mesh.try_push(0, Command::Drain(Redirect::default()).into())
            .ok();
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer from our eventfd.
        let n = unsafe { libc::read(mesh.eventfd(0), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(n, 8);
        assert_eq!(u64::from_ne_bytes(buf), 1, "two pushes, one wake-up");
    }

    #[test]
    fn a_reply_is_taken_when_the_queue_is_full_and_wakes_the_shard() {
        let mesh = Mesh::new(1, 1).unwrap();
        assert!(mesh
            .try_push(0, Command::Drain(Redirect::default()).into())
            .is_ok());
        assert!(!mesh.park(0), "a message waits");
        assert!(mesh.pop(0).is_some());
        assert!(mesh
            .try_push(0, Command::Drain(Redirect::default()).into())
            .is_ok());
        assert!(
            mesh.try_push(0, Command::Drain(Redirect::default()).into())
                .is_err(),
            "full"
        );
        assert!(mesh.pop(0).is_some());
        assert!(mesh.park(0));
        let reply = ReplyTo {
            shard: 0,
            key: 1,
            conn_id: 7,
        };
        let result = Box::new(proto::v1::SendResult::default());
        mesh.reply(0, Reply::SendDone { reply, result });
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer from our eventfd.
        let n = unsafe { libc::read(mesh.eventfd(0), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(n, 8, "the parked shard was woken");
        assert!(!mesh.park(0), "park refuses while a reply waits");
        assert!(!mesh.is_idle(0));
        assert!(matches!(mesh.pop_reply(0), Some(Reply::SendDone { .. })));
        assert!(mesh.is_idle(0));
    }

    #[test]
    fn park_refuses_when_messages_wait() {
        let mesh = Mesh::new(1, 8).unwrap();
        mesh.try_push(0, Command::Drain(Redirect::default()).into())
            .ok();
        assert!(!mesh.park(0));
    }

    #[test]
    fn owner_is_stable_and_in_range() {
        let mesh = Mesh::new(7, 1).unwrap();
        for name in ["alice", "bob", "room:1", ""] {
            let o = mesh.owner(name);
            assert!(o < 7);
            assert_eq!(o, mesh.owner(name));
        }
    }
}
