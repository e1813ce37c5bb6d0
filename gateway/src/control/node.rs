//! A node: the shards, the admin thread and the signal thread, started in the
//! right order and stopped by drain.
//!
//! Start-up order matters because every shard unshares its fd table: the
//! mesh eventfds and every listener (`listeners`; bound here, or taken from
//! the old process in an upgrade) are created first, so every table has
//! them; then the shards start, each closing the listeners not its own; then
//! the admin server starts. The node prints one `ready ...` line on stdout
//! when it accepts connections.
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use super::node_error::os;
pub use super::node_error::NodeError;
use crate::clock::Clock;
use crate::cluster::presence::Presence;
use crate::cluster::{NodeInfo, View};
use crate::config::{Config, ConfigError};
use crate::control::admin;
use crate::control::listeners::{Addrs, Listeners};
use crate::control::registry::Registry;
use crate::control::upgrade::{self, Incoming, UpgradeState};
use crate::control::Control;
use crate::hot::Hot;
use crate::mesh::Mesh;
use crate::shard;
use crate::stats::ShardStats;

/// Messages each shard queue holds before senders back off.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// How long shards may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What every thread of the node shares.
pub struct Node {
    /// The configuration in force.
    pub config: Config,
    /// Verifies client tokens (as at start; see `Control::reload`).
    pub verifier: crate::auth::Verifier,
    /// The shards' queues.
    pub mesh: Arc<Mesh>,
    /// Per-shard counters.
    pub stats: Vec<Arc<ShardStats>>,
    /// WebSocket address every shard listens on (port resolved).
    pub ws_addr: SocketAddr,
    /// Raw TCP address every shard listens on (port resolved).
    pub tcp_addr: SocketAddr,
    /// True once drain has begun.
    pub draining: AtomicBool,
    /// Counter for ids of messages pushed through the admin API.
    pub admin_msgs: AtomicU64,
    /// This process's start (Unix ms, hex), in every message id it makes:
    /// ids never repeat across restarts, so the store's dedupe of a retried
    /// room or admin message never mistakes a new one for it.
    pub boot: String,
    /// The node's clock (Unix time derives from its anchor).
    pub clock: Clock,
    /// Shards that still hold connections during a drain.
    pub shards_busy: Arc<AtomicUsize>,
    /// The node's incarnation (its registry entry, its presence in Redis):
    /// new at every start, kept across an upgrade, so peers see the same
    /// node. The bus links' hello carries `link_incarnation` instead.
    pub incarnation: u64,
    /// Signs SSE streams' POST keys (`session::sse`): random at a start,
    /// kept across an upgrade.
    pub post_secret: [u8; 32],
    /// This process's incarnation on the bus (its acceptors' welcome): new
    /// at every start and every upgrade. Each link it dials says hello with
    /// an incarnation of its own, so a peer's acceptor numbers every new
    /// link's batches afresh.
    pub link_incarnation: u64,
    /// Where the node's listeners listen.
    pub(crate) addrs: Addrs,
    /// The listeners themselves (this table's copies), until a drain or an
    /// upgrade gives them up.
    pub(crate) listeners: std::sync::Mutex<Option<Listeners>>,
    /// Stops the admin server's accepting (an upgrade's commit).
    pub(crate) admin_stop: Arc<tokio::sync::Notify>,
    /// Set once an upgrade hands the node to a new process (from the moment
    /// its listeners are sent; cleared if it aborts): this process consumes
    /// no downstream entry any more (its registry entry it writes until
    /// the commit, `UpgradeState::committed`).
    pub handed_over: AtomicBool,
    /// The node's end of each shard's handover channel (`shard::handover`).
    pub(crate) handover: Vec<std::os::fd::OwnedFd>,
    /// Upgrades done and aborted, and the handover in progress.
    pub upgrade: UpgradeState,
    /// The binary this process was started from (as it was then).
    pub exe: Option<std::path::PathBuf>,
    /// The registry's last reading (this node alone on a single node).
    pub view: Arc<View>,
    /// Cluster presence in Redis (none on a single node).
    pub presence: Option<Arc<Presence>>,
    /// Token buckets of push targets (`backend.rate_per_target`).
    pub push_buckets: std::sync::Mutex<std::collections::HashMap<String, crate::rate::Bucket>>,
    /// The downstream consumer's counters.
    pub downstream: Arc<crate::control::downstream::Counters>,
    /// Connection caps checked at accept.
    pub admission: Arc<crate::admission::Admission>,
    /// How to read the configuration again (set once running).
    pub reload: std::sync::Mutex<Option<Reload>>,
    /// The backend's authorization hook (with `backend.authorize_url`).
    pub hook: Option<Arc<crate::backend::hook::Hook>>,
    /// TLS for the client ports (with `tls.cert_file`), as at start; a
    /// reload hands the shards a new certificate (`Command::Reload`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The admin API's bearer token (`admin.token`); a reload replaces it.
    pub admin_token: Arc<Hot<Option<Vec<u8>>>>,
    /// TLS on the bus (`cluster.tls_*`), as at start.
    pub bus_tls: Option<crate::config::BusTls>,
    /// The console's last ten minutes of figures (`GET /series`).
    pub series: Arc<crate::control::series::Series>,
}

/// Reads the configuration again (the same file and flags), for a reload.
pub type Reload = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Runs a node until it has drained. `reload` re-reads the configuration on
/// SIGHUP (and `POST /reload`): the JWT key and token policy, the TLS
/// certificate and key, and the admin token are replaced together (see
/// `Control::reload`); other settings need a restart.
pub fn run(config: Config, reload: Reload) -> Result<(), NodeError> {
    let (verifier, dev_secret) = config.verifier().map_err(NodeError::Config)?;
    if dev_secret {
        tracing::warn!(
            "NO JWT KEY CONFIGURED: using the public development secret; anyone can mint tokens. \
             Set auth.jwt_secret or auth.jwt_public_key before exposing this node."
        );
    }
    let exe = std::env::current_exe().ok();
    let shards = config.shard_count();
    let incoming = Incoming::from_env().map_err(NodeError::Upgrade)?;
    let tls = config.tls.server_config().map_err(NodeError::Tls)?;
    let bus_tls = config.cluster.bus_tls().map_err(NodeError::Tls)?;
    let (listeners, kept) = match &incoming {
        Some(from) => from
            .take_listeners(&config)
            .map(|(l, kept)| (l, Some(kept)))
            .map_err(NodeError::Upgrade)?,
        None => (Listeners::bind(&config, shards)?, None),
    };
    let kept_incarnation = kept.as_ref().map(|k| k.incarnation);
    let post_secret = match kept.and_then(|k| k.post_secret) {
        Some(s) => s,
        None => crate::sys::random_bytes().map_err(os("read random bytes (getrandom)"))?,
    };
    let addrs = listeners.addrs.clone();
    let (handover, shard_ends): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| crate::sys::seqpacket_pair())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(os("create the handover channels"))?
        .into_iter()
        .unzip();
    let (ws_addr, tcp_addr) = (addrs.ws, addrs.tcp);
    let clock = Clock::system();
    // Unix ms and three random digits: unique per start, and below 2^53 so
    // JSON readers (JavaScript) read it exactly.
    let link_incarnation = clock.unix_ms(clock.now()) * 1000 + fastrand::u64(..1000);
    let incarnation = kept_incarnation.unwrap_or(link_incarnation);
    let mesh = Arc::new(Mesh::new(shards, QUEUE_CAPACITY).map_err(os("create shard queues"))?);
    let hook = crate::backend::hook::Hook::start(&config.backend, &config.node_id, mesh.clone())
        .map_err(NodeError::Hook)?
        .map(Arc::new);
    let view = Arc::new(View::default());
    let node = Arc::new(Node {
        incarnation,
        post_secret,
        link_incarnation,
        addrs,
        listeners: std::sync::Mutex::new(None),
        admin_stop: Arc::new(tokio::sync::Notify::new()),
        handed_over: AtomicBool::new(false),
        upgrade: UpgradeState::default(),
        handover,
        exe,
        view: view.clone(),
        push_buckets: Default::default(),
        reload: std::sync::Mutex::new(None),
        hook,
        tls,
        admin_token: Arc::new(Hot::new(config.admin.token_bytes())),
        series: Default::default(),
        bus_tls,
        admission: Arc::new(crate::admission::Admission::new(
            config.limits.max_conns,
            config.limits.max_conns_per_ip,
            config.limits.connect_rate_per_ip,
        )),
        downstream: Default::default(),
        presence: Presence::from_config(&config, incarnation, &view)
            .map_err(NodeError::Presence)?,
        verifier,
        mesh,
        stats: (0..shards)
            .map(|_| Arc::new(ShardStats::default()))
            .collect(),
        ws_addr,
        tcp_addr,
        draining: AtomicBool::new(false),
        admin_msgs: AtomicU64::new(0),
        boot: format!("{:x}", clock.unix_ms(clock.now())),
        clock,
        shards_busy: Arc::new(AtomicUsize::new(shards)),
        config,
    });

    let mut deps = shard_deps(&node, &listeners, incoming.is_some());
    deps.handover = shard_ends.iter().map(|fd| fd.as_raw_fd()).collect();
    let deps = Arc::new(deps);
    // Every descriptor of the node's table a shard closes in its own.
    let not_for = |id: usize| -> Vec<i32> {
        let mut fds = listeners.not_for(id);
        fds.extend(node.handover.iter().map(|fd| fd.as_raw_fd()));
        fds.extend(
            shard_ends
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != id)
                .map(|(_, fd)| fd.as_raw_fd()),
        );
        fds
    };
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
    let mut threads = Vec::with_capacity(shards);
    for id in 0..shards {
        // Every shard closes the listeners that are not its own.
        threads.push(
            shard::spawn(deps.clone(), id, not_for(id), ready_tx.clone())
                .map_err(os("start a shard thread"))?,
        );
    }
    let mut driver = "";
    for _ in 0..shards {
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(d)) => driver = d,
            Ok(Err(e)) => return Err(NodeError::Shard(e)),
            Err(_) => return Err(NodeError::ShardsLate(START_TIMEOUT)),
        }
    }
    // The shards own their ends of the handover channels now.
    drop(shard_ends);
    let admin_addr = node.addrs.admin;
    let admin =
        crate::sys::dup(listeners.admin.as_raw_fd()).map_err(os("copy the admin listener"))?;
    *node.listeners.lock().unwrap_or_else(|e| e.into_inner()) = Some(listeners);
    let control = Control::new(node.clone());
    if let Some(from) = incoming {
        // Started by an upgrade: accept once the old process has stopped.
        from.ready(node.clone()).map_err(NodeError::Upgrade)?;
        control.start_accepting();
    }
    admin::spawn(admin.into(), control.clone(), node.admin_stop.clone())
        .map_err(os("start the admin server"))?;
    let clock = node.clock;
    node.series
        .start(node.stats.clone(), move || clock.unix_ms(clock.now()))
        .map_err(os("start the series sampler"))?;
    if node.config.backend.downstream && node.config.redis.is_some() {
        crate::control::downstream::start(control.clone(), node.downstream.clone())
            .map_err(NodeError::Downstream)?;
    }
    *node.reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(reload);
    super::signals::spawn(control)?;
    let me = node_info(&node, admin_addr);
    if let Some(p) = &node.presence {
        p.start().map_err(NodeError::Presence)?;
    }
    let registry = match node.config.cluster.enabled() {
        true => Some(Registry::start(node.clone(), me).map_err(NodeError::Registry)?),
        false => {
            node.view.set(vec![me]);
            None
        }
    };

    tracing::info!(%ws_addr, %tcp_addr, %admin_addr, shards, driver, node = %node.config.node_id, "gateway ready");
    let bus = match node.addrs.bus.is_empty() {
        true => String::new(),
        false => {
            let addrs: Vec<String> = node.addrs.bus.iter().map(|a| a.to_string()).collect();
            format!(" node={} bus={}", node.config.node_id, addrs.join(","))
        }
    };
    println!(
        "ready ws={ws_addr} tcp={tcp_addr} admin={admin_addr} shards={shards} driver={driver}{bus}"
    );
    // After an upgrade this process is the service's main one now.
    crate::sys::notify_systemd(&format!("MAINPID={}\nREADY=1", std::process::id()));

    for t in threads {
        let _ = t.join();
    }
    if let Some(r) = registry {
        r.stop();
    }
    upgrade::finish(&node);
    tracing::info!("drained: exiting");
    Ok(())
}

/// What the shards get of the node (never the node itself).
fn shard_deps(node: &Arc<Node>, listeners: &Listeners, accept_later: bool) -> shard::Deps {
    let c = &node.config;
    shard::Deps {
        node_id: c.node_id.clone(),
        incarnation: node.link_incarnation,
        boot: node.boot.clone(),
        clock: node.clock,
        driver: c.driver,
        pin_shards: c.pin_shards,
        timer_tick_ms: c.timer_tick_ms,
        read_coalesce_us: c.read_coalesce_us,
        limits: c.limits.clone(),
        qos: c.qos.clone(),
        rooms: c.rooms.clone(),
        compression: c.compression,
        post_key: Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &node.post_secret,
        )),
        bus_secrets: c.cluster.secrets(),
        bus_tls: node.bus_tls.clone(),
        redis_access: c.redis_access.clone(),
        auth: c.auth.clone(),
        backend: c.backend.clone(),
        drain: c.drain.clone(),
        redis: c.redis.clone(),
        mesh: node.mesh.clone(),
        stats: node.stats.clone(),
        verifier: node.verifier.clone(),
        tls: node.tls.clone(),
        admission: node.admission.clone(),
        presence: node.presence.clone(),
        hook: node.hook.clone(),
        http: Some(crate::cluster::route::http_hook(
            node.view.clone(),
            c.cluster.route_policy,
        )),
        shards_busy: node.shards_busy.clone(),
        listeners: (0..node.mesh.len()).map(|id| listeners.shard(id)).collect(),
        handover: Vec::new(),
        accept_later,
    }
}

/// This node as the registry lists it. Peers and clients reach it at
/// `cluster.bus_advertise` when set, else at the listen address.
fn node_info(node: &Node, admin: SocketAddr) -> NodeInfo {
    let host = |addr: SocketAddr| match &node.config.cluster.bus_advertise {
        Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{}", addr.port()),
        Some(h) => format!("{h}:{}", addr.port()),
        None => addr.to_string(),
    };
    NodeInfo {
        id: node.config.node_id.clone(),
        incarnation: node.incarnation,
        bus: node.addrs.bus.iter().map(|a| host(*a)).collect(),
        ws: host(node.ws_addr),
        tcp: host(node.tcp_addr),
        admin: host(admin),
        conns: 0,
        draining: false,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
    }
}
