//! The shard's end of the bus (`crate::cluster` has the design): a link to
//! every peer (this shard dials shard `self.id % n` of each), the links
//! peers opened to this shard's own bus port (the remote interest of the
//! names this shard owns is the router's).
//!
//! Every link is a `relay` state machine driven by one task (`dial`,
//! `inbound`). Routing code only calls `bus_send`/`bus_broadcast`, which
//! queue an envelope on the link and wake its task: the task runs once the
//! router yields, so every envelope of a routing round leaves in one batch,
//! one write.
//!
//! Invariants:
//! - Interest travels only from a name's owner shard, over that shard's own
//!   links: per-name order is the order of the owner's queue.
//! - Every time a link comes up, the shard sends a `Reset`, a snapshot of
//!   the interest it owns and a `SnapshotEnd`, after whatever the link
//!   resends: the peer's view is whole again whatever it missed or forgot,
//!   and what it had before routes until the end (`cluster::remote`).
//! - A message that arrived over the bus is only ever delivered locally,
//!   never sent out again (no loops).
mod dial;
mod inbound;
mod peer;
mod presence;
mod sock;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use super::wake::Notify;
use super::Shard;
use crate::cluster::envelope;
use crate::cluster::remote::Kind;
use crate::cluster::{Peer, Peers};
use crate::stats::ShardStats;

/// One peer as this shard's link to it.
pub(super) struct PeerLink {
    peer: Peer,
    /// The peer shard this one dials.
    addr: SocketAddr,
    link: RefCell<relay::Link>,
    wake: Notify,
    /// Dropped from the registry: the task closes and exits.
    removed: Cell<bool>,
    /// The link's auth failures already counted.
    auth_failures: Cell<u64>,
}

/// A link a peer opened to this shard.
pub(super) struct InboundHandle {
    node: RefCell<Option<Arc<str>>>,
    close: Cell<bool>,
    wake: Notify,
}

/// The bus state of one shard (empty on a single node).
pub(super) struct Bus {
    /// This shard's bus listener (taken by the accept task).
    listener: Cell<Option<RawFd>>,
    identity: relay::Identity,
    /// The links' settings (the secrets change on a reload).
    config: RefCell<relay::Config>,
    /// TLS on the bus (`config::bus_tls`), for links opened from now on
    /// (a reload replaces the certificates).
    tls: RefCell<Option<crate::config::BusTls>>,
    links: RefCell<HashMap<Arc<str>, Rc<PeerLink>>>,
    inbound: RefCell<Vec<Rc<InboundHandle>>>,
    seen: RefCell<relay::Seen>,
    /// Addresses whose failed authentication was logged (once each; the
    /// set is emptied past 1024, so a flood of sources stays bounded).
    auth_logged: RefCell<std::collections::HashSet<std::net::IpAddr>>,
}

impl Bus {
    pub(super) fn new(
        identity: relay::Identity,
        listener: Option<RawFd>,
        secrets: &[Vec<u8>],
        tls: Option<crate::config::BusTls>,
    ) -> Bus {
        Bus {
            listener: Cell::new(listener),
            tls: RefCell::new(tls),
            identity,
            config: RefCell::new(relay::Config {
                secrets: relay::Secrets::new(secrets),
                ..relay::Config::default()
            }),
            auth_logged: RefCell::new(std::collections::HashSet::new()),
            links: RefCell::new(HashMap::new()),
            inbound: RefCell::new(Vec::new()),
            seen: RefCell::new(relay::Seen::new()),
        }
    }
}

impl Shard {
    /// A bus peer at `from` failed to authenticate: counted, and logged
    /// the first time for its address.
    pub(super) fn bus_auth_failed(&self, from: std::net::IpAddr, failures: u64, why: &str) {
        ShardStats::add(&self.stats.bus_auth_failures, failures);
        let mut logged = self.bus.auth_logged.borrow_mut();
        if logged.len() >= 1024 {
            logged.clear();
        }
        if logged.insert(from) {
            tracing::warn!(shard = self.id, %from, "bus: peer refused, it did not authenticate: {why}");
        } else {
            tracing::debug!(shard = self.id, %from, "bus: peer refused: {why}");
        }
    }

    /// New cluster secrets (a reload): every new connection proves and
    /// accepts these; links already up stay up.
    pub(super) fn set_bus_secrets(&self, secrets: &[Vec<u8>]) {
        let secrets = relay::Secrets::new(secrets);
        if self.bus.config.borrow().secrets == secrets {
            return;
        }
        self.bus.config.borrow_mut().secrets = secrets.clone();
        for pl in self.bus.links.borrow().values() {
            pl.link.borrow_mut().set_secrets(secrets.clone());
        }
    }

    /// New bus certificates (a reload), for links opened from now on.
    pub(super) fn set_bus_tls(&self, tls: Option<crate::config::BusTls>) {
        if tls.is_some() {
            *self.bus.tls.borrow_mut() = tls;
        }
    }

    /// A TLS connection for a link to the peer at `ip` (dialing) or from a
    /// peer (`ip` is `None`), with TLS on the bus; `Err` when rustls
    /// refuses (counted as a failed connect).
    pub(super) fn bus_tls_conn(
        &self,
        dial_to: Option<std::net::IpAddr>,
    ) -> Result<Option<rustls::Connection>, rustls::Error> {
        let tls = self.bus.tls.borrow();
        let Some(t) = tls.as_ref() else {
            return Ok(None);
        };
        Ok(Some(match dial_to {
            Some(ip) => rustls::ClientConnection::new(t.client.clone(), t.name_for(ip))?.into(),
            None => rustls::ServerConnection::new(t.server.clone())?.into(),
        }))
    }

    /// Starts the bus tasks (a no-op on a single node).
    pub(super) fn start_bus(self: &Rc<Self>) {
        if let Some(fd) = self.bus.listener.take() {
            monoio::spawn(self.clone().accept_bus(fd));
        }
    }

    /// The registry's peers changed: dial the new ones, drop the gone ones
    /// (and what they said), replace a restarted one.
    pub(super) fn on_peers(self: &Rc<Self>, peers: Peers) {
        let mut links = self.bus.links.borrow_mut();
        let gone: Vec<Arc<str>> = links
            .keys()
            .filter(|id| !peers.iter().any(|p| &p.id == *id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(pl) = links.remove(&id) {
                pl.removed.set(true);
                pl.wake.notify();
            }
            self.router.borrow_mut().forget_peer(&id);
            self.bus.seen.borrow_mut().forget(&id);
            // Its links to us start again, so it sends its snapshot again.
            for h in self.bus.inbound.borrow().iter() {
                if h.node.borrow().as_deref() == Some(&*id) {
                    h.close.set(true);
                    h.wake.notify();
                }
            }
        }
        self.router.borrow_mut().set_peered(!peers.is_empty());
        for p in peers.iter() {
            let addr = p.bus[self.id % p.bus.len()];
            if let Some(old) = links.get(&p.id) {
                if old.peer.incarnation == p.incarnation && old.addr == addr {
                    continue;
                }
                old.removed.set(true);
                old.wake.notify();
            }
            let now = self.now.get();
            // Each link numbers its batches from 1, so each says hello with
            // an incarnation of its own: a peer dropped from the registry
            // and listed again (its refresh stalled past the TTL, a Redis
            // failover) gets a new link, which its acceptor must not take
            // for the old one, whose batch count it still holds.
            let mut identity = self.bus.identity.clone();
            identity.incarnation = fastrand::u64(1..);
            let link = relay::Link::new(
                identity,
                Some(p.id.to_string()),
                self.bus.config.borrow().clone(),
                fastrand::u64(..),
                now,
            );
            let pl = Rc::new(PeerLink {
                peer: p.clone(),
                addr,
                link: RefCell::new(link),
                wake: Notify::default(),
                removed: Cell::new(false),
                auth_failures: Cell::new(0),
            });
            links.insert(p.id.clone(), pl.clone());
            monoio::spawn(self.clone().link_task(pl));
        }
    }

    /// Queues `env` for peer `node`; false when there is no such link or
    /// its queue is full (counted: a QoS 0 message is then lost, a QoS 1
    /// one waits in the shared inbox for the next read).
    pub(super) fn bus_send(&self, node: &str, env: &[u8]) -> bool {
        let links = self.bus.links.borrow();
        let Some(pl) = links.get(node) else {
            return false;
        };
        let sent = pl.link.borrow_mut().send(self.now.get(), env).is_ok();
        if sent {
            pl.wake.notify();
        } else {
            ShardStats::inc(&self.stats.bus_refused);
        }
        sent
    }

    /// Queues `env` for every peer.
    pub(super) fn bus_broadcast(&self, env: &[u8]) {
        let nodes: Vec<Arc<str>> = self.bus.links.borrow().keys().cloned().collect();
        for node in nodes {
            self.bus_send(&node, env);
        }
    }

    /// The peers interested in `name` (owner side).
    pub(super) fn remote_nodes(&self, kind: Kind, name: &str) -> smallvec::SmallVec<[Arc<str>; 4]> {
        self.router.borrow().remote_nodes(kind, name)
    }

    /// Queues a `Reset` and every name this shard owns with local interest.
    /// An upgrade committed: every link peers opened to this shard closes
    /// unread, so what they sent during the freeze (not acknowledged) is
    /// sent again to the new process.
    pub(super) fn close_inbound_links(&self) {
        for h in self.bus.inbound.borrow().iter() {
            h.close.set(true);
            h.wake.notify();
        }
    }

    fn snapshot(&self, pl: &PeerLink) {
        let now = self.now.get();
        let shards = self.deps.mesh.len() as u16;
        let mut link = pl.link.borrow_mut();
        let mut refused = 0u64;
        let mut send = |env: Vec<u8>| {
            if link.send(now, &env).is_err() {
                refused += 1;
            }
        };
        send(envelope::reset(self.id as u16, shards));
        let router = self.router.borrow();
        let tables = router.tables();
        for user in tables.owned_users() {
            send(envelope::interest(Kind::User, user, true));
        }
        for room in tables.owned_rooms() {
            send(envelope::interest(Kind::Room, room, true));
        }
        send(envelope::snapshot_end());
        drop(link);
        if refused > 0 {
            ShardStats::add(&self.stats.bus_refused, refused);
            tracing::error!(shard = self.id, peer = %pl.peer.id, refused, "bus: interest snapshot did not fit the link's queue");
        }
        pl.wake.notify();
    }

    /// Publishes the links' counters for the metrics page.
    pub(super) fn publish_bus_stats(&self) {
        let links = self.bus.links.borrow();
        if links.is_empty() && self.bus.inbound.borrow().is_empty() {
            return;
        }
        let rows = links
            .values()
            .map(|pl| {
                let link = pl.link.borrow();
                (pl.peer.id.clone(), link.state(), link.stats().clone())
            })
            .collect();
        self.stats.set_bus(rows);
    }
}
