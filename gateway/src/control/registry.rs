//! The registry in Redis: this node's entry, refreshed, and everyone
//! else's, read. Runs on its own thread (`registry`) with one synchronous
//! connection; it never touches a shard but through the mesh (`Peers`).
//!
//! Layout (one hash tag, so one slot on Redis Cluster):
//! - `im:{cluster}:node:ID`: the node's [`NodeInfo`] as JSON, with a TTL of
//!   `cluster.registry_ttl_ms`, written every third of it;
//! - `im:{cluster}:nodes`: the set of ids; an id whose entry expired is
//!   removed by whichever node reads it first.
//!
//! When Redis cannot be reached, the last reading stands (links have their
//! own heartbeats); the outage is logged once and the entry is written again
//! at the first refresh that succeeds. A graceful stop deletes the entry;
//! a process that handed the node to a new one in an upgrade neither writes
//! nor deletes it any more.
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::cluster::{NodeInfo, Peer, Peers};
use crate::control::node::Node;
use crate::mesh::Command;
use crate::redis_client::{Client, Conn, Lazy};

const NODES: &str = "im:{cluster}:nodes";

fn entry_key(id: &str) -> String {
    format!("im:{{cluster}}:node:{id}")
}

/// The running registry thread; `stop` deletes the entry and joins it.
pub struct Registry {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Registry {
    /// Starts the thread; the first refresh happens before it returns, so a
    /// node is listed (and knows its peers) once it prints `ready`.
    pub fn start(node: Arc<Node>, me: NodeInfo) -> Result<Registry, RegistryError> {
        let url = node.config.redis.clone().ok_or(RegistryError::NoRedis)?;
        let timeout = (node.config.cluster.registry_ttl() / 3).max(Duration::from_millis(100));
        let access = &node.config.redis_access;
        let client = Client::open(&url, access, timeout).map_err(RegistryError::Url)?;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let mut r = Refresher {
            node,
            me,
            redis: Lazy::new(client, timeout, timeout)
                .logged("registry", "cannot refresh (keeping the last view)"),
            peers: None,
        };
        // A failure is logged (once for the outage) and retried.
        let _ = r.refresh();
        let thread = std::thread::Builder::new()
            .name("registry".into())
            .spawn(move || r.run(stopped))
            .map_err(RegistryError::Thread)?;
        Ok(Registry {
            stop,
            thread: Some(thread),
        })
    }

    /// Deletes this node's entry and stops the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why the registry could not start, or a refresh failed. Each message is
/// one line, cause included (no `source()`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A cluster without `redis` (the operator's config; validation
    /// refuses it first).
    #[error("a cluster needs redis")]
    NoRedis,
    /// `redis` is not a Redis URL (the operator's config).
    #[error("redis url: {0}")]
    Url(redis::RedisError),
    /// The registry's thread could not be started (the OS).
    #[error("cannot start the registry: {0}")]
    Thread(std::io::Error),
    /// Redis failed, refused or gave an unreadable reply.
    #[error("{0}")]
    Redis(redis::RedisError),
    /// The SMEMBERS reply is not a list of ids.
    #[error("{0}")]
    Reply(redis::ParsingError),
    /// Redis answered the pipeline without the SMEMBERS reply.
    #[error("redis: no reply to SMEMBERS")]
    NoMembers,
    /// This node's entry could not be encoded (a bug).
    #[error("{0}")]
    Encode(serde_json::Error),
    /// A shard's queue stayed full: the peers are sent again next time.
    #[error("shard {0} did not take the new peer set")]
    Shard(usize),
}

impl From<redis::RedisError> for RegistryError {
    fn from(e: redis::RedisError) -> Self {
        RegistryError::Redis(e)
    }
}

struct Refresher {
    node: Arc<Node>,
    me: NodeInfo,
    redis: Lazy,
    /// The peers last sent to the shards.
    peers: Option<Vec<Peer>>,
}

impl Refresher {
    fn period(&self) -> Duration {
        self.node.config.cluster.registry_ttl() / 3
    }

    fn run(mut self, stopped: Receiver<()>) {
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(self.period())
        {
            if self.node.upgrade.committed.load(Ordering::SeqCst) {
                // An upgrade's new process writes this node's entry now.
                continue;
            }
            let counter = match self.refresh() {
                Ok(()) => &self.node.view.refreshes,
                Err(_) => &self.node.view.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.me.id.clone();
        if self.node.upgrade.committed.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(conn) = self.redis.get() {
            let mut del = redis::cmd("DEL");
            del.arg(entry_key(&id));
            let mut srem = redis::cmd("SREM");
            srem.arg(NODES).arg(&id);
            let _ = conn.pipeline(vec![del, srem]);
        }
    }

    /// Writes this node's entry, reads everyone's, and hands the shards the
    /// peers when they changed. Any failure drops the connection; an outage
    /// is logged once.
    fn refresh(&mut self) -> Result<(), RegistryError> {
        let (node, me, peers) = (&self.node, &mut self.me, &mut self.peers);
        self.redis.with(|conn| refresh(conn, node, me, peers))
    }
}

/// One refresh on `conn` (see `Refresher::refresh`).
fn refresh(
    conn: &mut Conn,
    node: &Node,
    me: &mut NodeInfo,
    last: &mut Option<Vec<Peer>>,
) -> Result<(), RegistryError> {
    me.conns = node.stats.iter().map(|s| s.conns()).sum::<i64>().max(0) as u64;
    me.draining = node.draining.load(Ordering::Relaxed);
    let json = serde_json::to_string(&*me).map_err(RegistryError::Encode)?;
    let ttl_ms = node.config.cluster.registry_ttl_ms;
    let (id, key) = (me.id.clone(), entry_key(&me.id));
    let mut set = redis::cmd("SET");
    set.arg(&key).arg(json).arg("PX").arg(ttl_ms);
    let mut sadd = redis::cmd("SADD");
    sadd.arg(NODES).arg(&id);
    let mut smembers = redis::cmd("SMEMBERS");
    smembers.arg(NODES);
    let replies = conn.pipeline(vec![set, sadd, smembers])?;
    let ids: Vec<String> = match replies.into_iter().nth(2) {
        Some(v) => redis::from_redis_value(v).map_err(RegistryError::Reply)?,
        None => return Err(RegistryError::NoMembers),
    };
    let keys: Vec<String> = ids.iter().map(|i| entry_key(i)).collect();
    let mut mget = redis::cmd("MGET");
    mget.arg(&keys);
    let entries: Vec<Option<String>> = conn.query(&mget)?;
    let mut nodes = Vec::with_capacity(ids.len());
    let mut gone = Vec::new();
    for (id, entry) in ids.iter().zip(entries) {
        match entry.as_deref().map(serde_json::from_str::<NodeInfo>) {
            Some(Ok(n)) if n.id == *id => nodes.push(n),
            Some(Ok(_)) | Some(Err(_)) => {
                tracing::warn!(node = %id, "registry: unreadable entry ignored")
            }
            None => gone.push(id.clone()),
        }
    }
    if !gone.is_empty() {
        let mut srem = redis::cmd("SREM");
        srem.arg(NODES).arg(&gone);
        conn.query::<()>(&srem)?;
        tracing::info!(nodes = ?gone, "registry: nodes gone (entry expired)");
    }
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let peers = peers_of(&nodes, me);
    node.view.set(nodes);
    if last.as_ref() != Some(&peers) {
        tracing::info!(peers = ?peers.iter().map(|p| &*p.id).collect::<Vec<_>>(), "registry: peers changed");
        let set: Peers = peers.clone().into();
        for shard in 0..node.mesh.len() {
            let cmd = Command::Peers(set.clone()).into();
            if node
                .mesh
                .push_blocking(shard, cmd, Duration::from_secs(2))
                .is_err()
            {
                return Err(RegistryError::Shard(shard));
            }
        }
        *last = Some(peers);
    }
    Ok(())
}

/// The peers in `nodes`: every other node whose bus addresses resolve.
fn peers_of(nodes: &[NodeInfo], me: &NodeInfo) -> Vec<Peer> {
    let mut seen = HashSet::new();
    let mut peers = Vec::new();
    for n in nodes {
        if n.id == me.id {
            if n.incarnation != me.incarnation {
                tracing::error!(node = %n.id, "registry: another process uses this node id");
            }
            continue;
        }
        if !seen.insert(n.id.as_str()) {
            continue;
        }
        let bus: Option<Vec<SocketAddr>> = n
            .bus
            .iter()
            .map(|a| a.to_socket_addrs().ok().and_then(|mut i| i.next()))
            .collect();
        match bus {
            Some(bus) if !bus.is_empty() => peers.push(Peer {
                id: Arc::from(n.id.as_str()),
                incarnation: n.incarnation,
                bus,
            }),
            _ => {
                tracing::warn!(node = %n.id, bus = ?n.bus, "registry: peer bus address does not resolve")
            }
        }
    }
    peers
}
