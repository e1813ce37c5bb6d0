//! A shard: one thread, one monoio runtime, its own listeners, and the
//! driver of its connections' sessions. Nothing here is shared with another
//! thread but the mesh queues and the statistics counters.
//!
//! The protocol of a connection lives in its `Session` (`crate::session`,
//! sans-IO), the routing state and decisions in its `Router`
//! (`crate::router`, sans-IO). The shard drives both: the epoll set and the
//! syscalls (`poller`, `reader`, `conn`), the slab of connections, the
//! timing wheel (one entry per connection, at the session's
//! `poll_timeout`), the write-buffer pool, the mesh (`queue` drains this
//! shard's queue, `outbox` feeds the others'), the router's actions
//! (`actions`), the QoS 1 store of the users it owns (`store`: the
//! router decides, the shard submits and collects),
//! and its end of the bus to other nodes (`bus`).
//!
//! Invariants:
//! - A connection never leaves the shard that accepted it (but for the same
//!   shard of an upgrade's new process, see `handover`).
//! - No `RefCell` borrow is held across an `.await` or across a call into
//!   another method that borrows the same cell.
//! - An idle connection holds no read or write buffer and no task; readiness
//!   comes from the shard's epoll set (`poller`).
mod accept;
mod actions;
mod adopted;
mod backend;
mod bus;
mod conn;
pub(crate) mod deps;
mod handover;
mod handover_ahead;
mod handover_early;
mod handover_early_import;
mod handover_import;
mod outbox;
mod poller;
mod queue;
mod reader;
mod routes;
mod run;
mod sse;
mod store;

mod timers;
mod tls;
mod tls_move;
#[cfg(test)]
mod tls_tests;
pub(crate) mod wake;

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use crate::session::{Ctx, Effects, Env, Session};
use crate::stats::ShardStats;
use crate::store::{Done, Store};
use crate::wheel::{TimerKey, TimingWheel};

use crate::router::tables::ConnKey;
use crate::router::{Action, Router};
pub(crate) use conn::Conn;
pub(crate) use deps::{Deps, ShardFds};
pub(crate) use run::spawn;
use timers::Timer;
use wake::{Flag, Notify};

/// The shard's read buffer.
const SCRATCH: usize = 64 * 1024;

/// The state of one shard, owned by its thread.
pub(crate) struct Shard {
    id: usize,
    deps: Arc<Deps>,
    stats: Arc<ShardStats>,
    /// What every session reads.
    env: Env,
    /// What sessions produce (routes) and draw on (buffers, ids).
    fx: RefCell<Effects>,
    conns: RefCell<Slab<Conn>>,
    /// Readiness of every connection of the shard.
    poller: poller::Poller,
    /// The routing state and decisions (sans-IO); the shard carries out
    /// its actions (`actions`).
    router: RefCell<Router>,
    /// Actions being carried out (kept for its allocation).
    actions: RefCell<Vec<Action>>,
    wheel: RefCell<TimingWheel<Timer>>,
    /// The shard's clock, read when it wakes (epoll, queue, tick) and passed
    /// to every session call.
    now: Cell<Instant>,
    dirty: RefCell<Vec<ConnKey>>,
    flush: Notify,
    outbox: outbox::Outbox,
    /// Every read lands here first (see `reader`).
    scratch: RefCell<Vec<u8>>,
    /// Its listeners while it accepts.
    listening: accept::Listening,
    /// Closed while an upgrade moves the connections (`handover`).
    gate: wake::Gate,
    /// Backend requests (hook decisions, sends to the backend stream) whose
    /// reply has not come back yet.
    replies_out: Cell<u64>,
    /// Set at an upgrade's commit: the new process serves this shard's
    /// connections and bus links from now on.
    handed_over: Cell<bool>,
    /// Connections written to an upgrade's new process, not yet forgotten.
    exported: RefCell<Vec<ConnKey>>,
    /// Descriptors an upgrade sends ahead (`handover_early`).
    early: RefCell<handover_early::Early>,
    /// Set when the shard stops accepting (drain).
    draining: Flag,
    /// Where a drain sends clients (for those that authenticate after it
    /// began).
    drain_redirect: RefCell<Option<crate::mesh::Redirect>>,
    /// Set when the shard may exit (drained and empty, or past the deadline).
    done: Flag,
    next_id: Cell<u64>,
    /// QoS 1 store of the users this shard owns.
    store: RefCell<Box<dyn Store>>,
    store_done: RefCell<Vec<Done>>,
    /// Links to the other nodes and what they want (empty on a single node).
    bus: bus::Bus,
    /// The upstream streams' writer (with `redis`).
    upstream: Option<crate::backend::upstream::Upstream>,
    /// Source address of each connection, only when per-IP limits are on.
    ips: RefCell<std::collections::HashMap<ConnKey, std::net::IpAddr>>,
    /// This shard's SSE streams by connection id: where each is (`sse`).
    sse: RefCell<std::collections::HashMap<u64, ConnKey>>,
    /// TLS state of each connection (with `tls.cert_file`).
    tls: RefCell<tls::Tls>,
    /// Deciphered input, lent to the session like the scratch buffer.
    plain: RefCell<Vec<u8>>,
    /// TLS for connections accepted from now on (with `tls.cert_file`).
    tls_config: RefCell<Option<Arc<rustls::ServerConfig>>>,
}

impl Shard {
    fn new(
        id: usize,
        deps: Arc<Deps>,
        store: Box<dyn Store>,
        bus_listener: Option<RawFd>,
    ) -> std::io::Result<Shard> {
        let now = Instant::now();
        let tick = std::time::Duration::from_millis(deps.timer_tick_ms.max(1));
        let stats = deps.stats[id].clone();
        let env = Env {
            limits: deps.limits.clone(),
            qos: deps.qos.clone(),
            verifier: crate::auth::Keys::new(deps.verifier.clone()),
            clock: deps.clock,
            node_id: deps.node_id.clone(),
            shard: id as u16,
            stats: stats.clone(),
            id_prefix: format!("{}-{}-{id}", deps.node_id, deps.boot),
            no_device: Arc::from(""),
            http: deps.http.clone(),
            rooms_claim: deps.auth.rooms_claim,
            origins: deps.auth.origins.clone().into(),
            rate_per_conn: deps.backend.rate_per_conn,
            rate_per_room: match deps.backend.rate_per_room {
                0 => 0,
                r => (r / deps.mesh.len() as u32).max(1),
            },
            backend: deps.redis.is_some(),
            hook: deps.backend.authorize_url.is_some(),
            rooms: Arc::new(deps.rooms.clone()),
            compression: deps.compression.enabled,
            post_key: deps.post_key.clone(),
        };
        let identity = relay::Identity {
            node_id: deps.node_id.clone(),
            incarnation: deps.incarnation,
            shard: id as u16,
            shards: deps.mesh.len() as u16,
        };
        let upstream = match &deps.redis {
            Some(url) => Some(
                crate::backend::upstream::Upstream::start(
                    id,
                    url,
                    &deps.redis_access,
                    deps.backend.clone(),
                    deps.qos.dedupe_secs,
                    deps.mesh.clone(),
                )
                .map_err(std::io::Error::other)?,
            ),
            None => None,
        };
        Ok(Shard {
            bus: bus::Bus::new(
                identity,
                bus_listener,
                &deps.bus_secrets,
                deps.bus_tls.clone(),
            ),
            upstream,
            ips: RefCell::new(std::collections::HashMap::new()),
            sse: RefCell::new(std::collections::HashMap::new()),
            tls: RefCell::new(tls::Tls::default()),
            plain: RefCell::new(Vec::new()),
            tls_config: RefCell::new(deps.tls.clone()),
            id,
            poller: poller::Poller::new()?,
            stats: stats.clone(),
            env,
            fx: RefCell::new(Effects::with_compressor(crate::outbound::Compressor::new(
                deps.compression.level,
                deps.compression.min_bytes,
            ))),
            conns: RefCell::new(Slab::new()),
            router: RefCell::new(Router::new(
                id as u16,
                deps.mesh.len(),
                deps.presence.is_some(),
                &deps.qos,
                Arc::new(deps.rooms.clone()),
                stats,
            )),
            actions: RefCell::new(Vec::new()),
            wheel: RefCell::new(TimingWheel::new(tick, now)),
            now: Cell::new(now),
            dirty: RefCell::new(Vec::new()),
            flush: Notify::default(),
            outbox: outbox::Outbox::new(deps.mesh.len()),
            scratch: RefCell::new(Vec::with_capacity(SCRATCH)),
            listening: accept::Listening::default(),
            gate: {
                let gate = wake::Gate::default();
                if deps.accept_later {
                    // Started by an upgrade: opens at the commit.
                    gate.close();
                }
                gate
            },
            replies_out: Cell::new(0),
            handed_over: Cell::new(false),
            exported: RefCell::new(Vec::new()),
            early: RefCell::default(),
            draining: Flag::default(),
            drain_redirect: RefCell::new(None),
            done: Flag::default(),
            next_id: Cell::new(1),
            store: RefCell::new(store),
            store_done: RefCell::new(Vec::new()),
            deps,
        })
    }

    /// Reads the clock (the driver's only reading; sessions get it passed).
    fn tick_clock(&self) -> Instant {
        let now = Instant::now();
        self.now.set(now);
        now
    }

    /// Calls the session of `key` and settles what the call asked for:
    /// output to flush, an earlier deadline, routes for the router, removal.
    fn drive<R>(&self, key: ConnKey, f: impl FnOnce(&mut Session, &mut Ctx) -> R) -> Option<R> {
        self.drive_if(key, None, f)
    }

    /// `drive`, only if the connection at `key` still has id `conn_id`
    /// (a reply to a connection whose key may have been reused).
    fn drive_if<R>(
        &self,
        key: ConnKey,
        conn_id: Option<u64>,
        f: impl FnOnce(&mut Session, &mut Ctx) -> R,
    ) -> Option<R> {
        let mut conns = self.conns.borrow_mut();
        let c = conns
            .get_mut(key)
            .filter(|c| conn_id.is_none_or(|id| c.session().id() == id))?;
        let mut fx = self.fx.borrow_mut();
        fx.overloaded = self.outbox.overloaded();
        let mut cx = Ctx {
            now: self.now.get(),
            env: &self.env,
            fx: &mut fx,
        };
        let r = f(c.session_mut(), &mut cx);
        self.settle(key, c);
        let (closed, id) = (c.session().is_closed(), c.session().id());
        drop(conns);
        let routes = (!fx.routes.is_empty()).then(|| std::mem::take(&mut fx.routes));
        drop(fx);
        if let Some(mut routes) = routes {
            for route in routes.drain(..) {
                self.apply_route(key, id, route);
            }
            // Keep the allocation for the next call.
            self.fx.borrow_mut().routes = routes;
        }
        if closed {
            self.remove_conn(key);
        }
        Some(r)
    }

    /// After a session call: flush its output this round, re-arm its wheel
    /// entry if its deadline moved earlier (or it has none), read what
    /// backpressure held back once it is closing.
    fn settle(&self, key: ConnKey, c: &mut Conn) {
        if c.session_mut().take_timeout_moved() || c.timer == TimerKey::NONE {
            let mut wheel = self.wheel.borrow_mut();
            wheel.cancel(c.timer);
            c.timer = match c.session().poll_timeout(&self.env) {
                Some(at) => wheel.insert(at, Timer::new(key, c.session().id())),
                None => TimerKey::NONE,
            };
        }
        if !c.session().output().is_empty() || c.session().wants_fin() {
            self.mark_dirty(key, c);
        }
        if c.session().is_closing() && std::mem::take(&mut c.read_stalled) {
            // Input held back by backpressure is still read (and
            // discarded): it may end with the client's FIN.
            self.read_again(key, c.session().id());
        }
    }

    /// `mark_dirty` by key (TLS records to send with no session output).
    fn mark_dirty_key(&self, key: ConnKey) {
        if let Some(c) = self.conns.borrow_mut().get_mut(key) {
            self.mark_dirty(key, c);
        }
    }

    fn mark_dirty(&self, key: ConnKey, c: &mut Conn) {
        if !c.in_dirty && !c.write_blocked {
            c.in_dirty = true;
            let mut dirty = self.dirty.borrow_mut();
            if dirty.is_empty() {
                self.flush.notify();
            }
            dirty.push(key);
        }
    }

    fn next_conn_id(&self) -> u64 {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        // Shard in the top 16 bits: unique on the node without coordination.
        ((self.id as u64) << 48) | n
    }

    fn conn_count(&self) -> usize {
        self.conns.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    /// What an idle connection costs is mostly this struct (its slab entry):
    /// a field that grows it should be a deliberate choice.
    #[test]
    fn conn_stays_compact() {
        let size = std::mem::size_of::<super::Conn>();
        eprintln!(
            "Conn: {size} B, Session: {} B",
            std::mem::size_of::<crate::session::Session>()
        );
        assert!(size <= 152, "Conn grew to {size} bytes");
    }
}
