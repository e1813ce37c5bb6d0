//! The control plane: what an operator and the node's lifecycle see of the
//! data plane (the shards), which it reaches only by message.
//!
//! - `node`: start-up order, the shards, the admin and signal threads, drain.
//! - `lifecycle`: reload, drain, and commands that must reach every shard.
//! - `listeners`: every listening socket, bound by the node.
//! - `upgrade`: a new binary takes the node's listeners (`POST /upgrade`,
//!   `SIGUSR2`).
//! - `admin`: the admin HTTP server (its own thread).
//! - `metrics`: every metric name, in one place, and the Prometheus text
//!   (the counters themselves are `crate::stats`, written by the shards).
//! - `registry`, `downstream`: the node's threads that talk to Redis (its
//!   registry entry and the peers' view; the backend's downstream stream).
//!   The presence writer is `cluster::presence`, fed by the shards.
//!
//! This is the composition root: `node` builds each part's narrow
//! dependencies (`shard::Deps`, the hook's and writers' settings), never
//! handing out the `Node` itself, and changes reach shards as commands.
//! - `Control` (here): push, presence, kick and drain, as commands into the
//!   shards' queues. Used by the admin HTTP server and the signal thread;
//!   safe to call from any non-shard thread (it may block briefly).
pub mod admin;
mod bus_metrics;
mod cluster_api;
pub mod downstream;
mod lifecycle;
mod listeners;
pub mod metrics;
pub mod node;
mod node_error;
pub mod registry;
pub mod series;
mod signals;
pub mod upgrade;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use proto::v1::Qos;

use crate::store::Stored;

use crate::control::node::Node;
use crate::mesh::{Command, DataMsg, Presence, ShardMsg};
use crate::outbound::Outbound;
pub use lifecycle::ReloadError;

/// How long an admin call waits for a full inbox or a shard's reply.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why an operator's request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A shard's inbox stayed full or it did not answer in time.
    #[error("node overloaded: a shard did not take the request in time")]
    Overloaded,
}

/// Where a pushed message goes.
pub enum Target {
    /// Every connection of a user.
    User(String),
    /// Every member of a room.
    Room(String),
}

/// A handle on a running node for operator actions.
#[derive(Clone)]
pub struct Control {
    node: Arc<Node>,
}

impl Control {
    /// Wraps a node.
    pub fn new(node: Arc<Node>) -> Control {
        Control { node }
    }

    /// The node's configuration and counters.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Pushes a message to a user or room; returns its message id. With
    /// `qos1` the message goes through the recipients' inboxes (at least
    /// once, resumed after reconnects); the call returns once it is handed to
    /// the owner shard, which stores it in order.
    pub fn push(
        &self,
        target: Target,
        payload: Vec<u8>,
        qos1: bool,
    ) -> Result<String, ControlError> {
        self.push_with(target, payload, qos1, None)
    }

    /// `push`, with the message id given (`id`): a QoS 1 push with an id
    /// already stored for the recipient is stored once (the downstream
    /// stream's entries, which a claim can hand to a second node).
    pub fn push_with(
        &self,
        target: Target,
        payload: Vec<u8>,
        qos1: bool,
        id: Option<&str>,
    ) -> Result<String, ControlError> {
        let msg_id = match id {
            Some(id) => id.to_owned(),
            None => {
                let n = self.node.admin_msgs.fetch_add(1, Ordering::Relaxed);
                format!("{}-{}-admin-{n}", self.node.config.node_id, self.node.boot)
            }
        };
        let (name, room) = match &target {
            Target::User(u) => (u.as_str(), String::new()),
            Target::Room(r) => (r.as_str(), r.clone()),
        };
        let stored = Stored {
            seq: 0,
            msg_id: msg_id.clone(),
            from: String::new(),
            room,
            payload: payload.into(),
            timestamp_ms: self.node.clock.unix_ms(self.node.clock.now()),
        };
        let owner = self.node.mesh.owner(name);
        let name: Arc<str> = Arc::from(name);
        let routed = match target {
            Target::User(_) if qos1 => {
                // Unique per push: a retry after a store failure is deduped.
                let client_msg_id = format!("admin:{msg_id}");
                DataMsg::Qos1Append {
                    user: name,
                    msg: Box::new(stored),
                    client_msg_id,
                    reply: None,
                }
            }
            Target::User(_) => DataMsg::ToUser {
                user: name,
                msg: Outbound::new(stored.to_frame(Qos::AtMostOnce)),
            },
            Target::Room(_) => {
                let qos = if qos1 {
                    Qos::AtLeastOnce
                } else {
                    Qos::AtMostOnce
                };
                DataMsg::ToRoom {
                    room: name,
                    msg: Outbound::new(stored.to_frame(qos)),
                }
            }
        };
        self.push_msg(owner, routed)?;
        Ok(msg_id)
    }

    /// Every connection of `user` on this node, and the peers with some.
    pub fn presence(&self, user: &str) -> Result<Presence, ControlError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let owner = self.node.mesh.owner(user);
        let user = Arc::from(user);
        self.push_msg(owner, Command::Presence { user, reply: tx })?;
        rx.recv_timeout(TIMEOUT)
            .map_err(|_| ControlError::Overloaded)
    }

    /// Members of `room` on this node, and the peers with some.
    pub fn room(&self, room: &str) -> Result<(usize, Vec<Arc<str>>), ControlError> {
        let room: Arc<str> = Arc::from(room);
        let shards = self.node.mesh.len();
        let (tx, rx) = crossbeam_channel::bounded(shards);
        for s in 0..shards {
            let (room, reply) = (room.clone(), tx.clone());
            self.push_msg(s, Command::RoomMembers { room, reply })?;
        }
        let (ntx, nrx) = crossbeam_channel::bounded(1);
        let owner = self.node.mesh.owner(&room);
        self.push_msg(owner, Command::RoomNodes { room, reply: ntx })?;
        let mut members = 0;
        for _ in 0..shards {
            members += rx
                .recv_timeout(TIMEOUT)
                .map_err(|_| ControlError::Overloaded)?;
        }
        let nodes = nrx
            .recv_timeout(TIMEOUT)
            .map_err(|_| ControlError::Overloaded)?;
        Ok((members, nodes))
    }

    /// Sends go-away(KICKED) to every connection of `user`; returns how many.
    pub fn kick(&self, user: &str) -> Result<usize, ControlError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let owner = self.node.mesh.owner(user);
        self.push_msg(
            owner,
            Command::Kick {
                user: Arc::from(user),
                reply: Some(tx),
            },
        )?;
        rx.recv_timeout(TIMEOUT)
            .map_err(|_| ControlError::Overloaded)
    }

    /// Takes a token of `target`'s push bucket (`backend.rate_per_target`),
    /// or says how long until one is there.
    pub fn take_rate(&self, target: &Target) -> Result<(), Duration> {
        let rate = self.node.config.backend.rate_per_target;
        if rate == 0 {
            return Ok(());
        }
        let key = match target {
            Target::User(u) => format!("u:{u}"),
            Target::Room(r) => format!("r:{r}"),
        };
        let now = std::time::Instant::now();
        let mut buckets = self
            .node
            .push_buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| !b.is_full(rate, now));
        }
        let b = buckets
            .entry(key)
            .or_insert_with(|| crate::rate::Bucket::new(rate, now));
        b.take(rate, now)
    }

    /// Waits until `target`'s push bucket has a token (the downstream
    /// consumer: its stream is the queue).
    pub fn wait_for_rate(&self, target: &Target) {
        while let Err(wait) = self.take_rate(target) {
            std::thread::sleep(wait);
        }
    }

    /// Prometheus text of every shard's counters.
    pub fn metrics(&self) -> String {
        let mut text = metrics::render(&self.node.stats, self.is_draining());
        bus_metrics::render_registry(&mut text, &self.node.view, self.node.presence.as_deref());
        bus_metrics::render_backend(&mut text, &self.node);
        bus_metrics::render_admission(&mut text, &self.node.admission);
        bus_metrics::render_upgrades(&mut text, &self.node.upgrade);
        metrics::render_process(&mut text);
        text
    }

    /// `GET /series`: this node's last ten minutes, its links and state.
    pub fn series(&self) -> serde_json::Value {
        let node = self.node();
        let (series, errors, end_ms) = node.series.snapshot();
        let rows: Vec<_> = node.stats.iter().flat_map(|s| s.bus()).collect();
        let up = rows
            .iter()
            .filter(|(_, state, _)| *state == relay::LinkState::Up)
            .count();
        serde_json::json!({
            "node": node.config.node_id,
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "shards": node.stats.len(),
            "draining": self.is_draining(),
            "links_up": up,
            "links": rows.len(),
            "interval_ms": series::INTERVAL.as_millis() as u64,
            "end_ms": end_ms,
            "series": series,
            "errors_by_code": errors,
        })
    }

    fn push_msg(&self, to: usize, msg: impl Into<ShardMsg>) -> Result<(), ControlError> {
        self.node
            .mesh
            .push_blocking(to, msg.into(), TIMEOUT)
            .map_err(|_| ControlError::Overloaded)
    }
}
