//! What a shard is given by the node that starts it: its own settings (the
//! config sections it reads, copied), the queues and counters it shares with
//! other threads, and handles on the node's backend services. `control`
//! builds one `Deps` for all shards; a shard never sees the node itself, and
//! what changes while it runs (a drain's redirect targets, reloaded keys
//! and certificates) reaches it as a `mesh::Command`.
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::admission::Admission;
use crate::auth::Verifier;
use crate::backend::hook::Hook;
use crate::clock::Clock;
use crate::cluster::presence::Presence;
use crate::config::{AuthConfig, BackendConfig, DrainConfig, Driver, Limits, QosConfig};
use crate::mesh::Mesh;
use crate::session::HttpHook;
use crate::stats::ShardStats;

/// A shard's dependencies (see the module header).
pub(crate) struct Deps {
    /// This node's id (`node_id`).
    pub node_id: String,
    /// This process's incarnation on the bus (what its acceptors' welcome
    /// says): new at every start and every upgrade
    /// (`Node::link_incarnation`). Each dialed link says hello with one of
    /// its own (`bus::on_peers`).
    pub incarnation: u64,
    /// This process's start (hex Unix ms), in every message id it makes.
    pub boot: String,
    /// The node's clock.
    pub clock: Clock,
    /// Which monoio driver to run.
    pub driver: Driver,
    /// Pin each shard to a core.
    pub pin_shards: bool,
    /// The timing wheel's tick.
    pub timer_tick_ms: u64,
    /// `read_coalesce_us` (0: off).
    pub read_coalesce_us: u64,
    /// Per-connection limits.
    pub limits: Limits,
    /// QoS 1 settings.
    pub qos: QosConfig,
    /// Rooms with history.
    pub rooms: crate::config::RoomsConfig,
    /// permessage-deflate.
    pub compression: crate::config::CompressionConfig,
    /// Signs SSE streams' POST keys: the node's secret, kept across an
    /// upgrade (`session::sse`).
    pub post_key: Arc<ring::hmac::Key>,
    /// The user, password and CA to reach Redis with.
    pub redis_access: crate::config::RedisAccess,
    /// The cluster secrets the bus links prove (empty: none).
    pub bus_secrets: Vec<Vec<u8>>,
    /// TLS on the bus (`cluster.tls_*`), as at start (a reload replaces it).
    pub bus_tls: Option<crate::config::BusTls>,
    /// Token policy (origins, the rooms claim).
    pub auth: AuthConfig,
    /// Streams, hooks and rate limits of the backend.
    pub backend: BackendConfig,
    /// Drain timing (`drain.deadline_ms`, `drain.reconnect_after_ms`).
    pub drain: DrainConfig,
    /// Redis (inboxes, streams, presence), if any.
    pub redis: Option<String>,
    /// The shards' queues.
    pub mesh: Arc<Mesh>,
    /// Per-shard counters (shard `i` writes `stats[i]`).
    pub stats: Vec<Arc<ShardStats>>,
    /// Verifies client tokens (as at start; a reload sends the shard a new
    /// one in `Command::Reload`).
    pub verifier: Verifier,
    /// TLS for the client ports (as at start; a reload sends the shard a
    /// new certificate in `Command::Reload`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connection caps checked at accept.
    pub admission: Arc<Admission>,
    /// The writer of cluster presence to Redis (many nodes only).
    pub presence: Option<Arc<Presence>>,
    /// The backend's authorization hook (with `backend.authorize_url`).
    pub hook: Option<Arc<Hook>>,
    /// Answers plain HTTP requests on the client port (`GET /route`).
    pub http: Option<HttpHook>,
    /// Shards that still hold connections during a drain.
    pub shards_busy: Arc<AtomicUsize>,
    /// Each shard's listeners (descriptor numbers of the node's table).
    pub listeners: Vec<ShardFds>,
    /// Each shard's end of its handover channel (the node holds the other).
    pub handover: Vec<RawFd>,
    /// Accept only once told (`Command::Accept`): a process started by an
    /// upgrade, while the old one still accepts.
    pub accept_later: bool,
}

/// One shard's listening sockets, as numbered in the node's table (and so
/// in the shard's copy of it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardFds {
    /// WebSocket.
    pub ws: RawFd,
    /// Raw TCP.
    pub tcp: RawFd,
    /// Bus (many nodes only).
    pub bus: Option<RawFd>,
}
