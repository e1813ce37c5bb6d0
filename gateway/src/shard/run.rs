//! Starting a shard: its thread, fd table, runtime, listeners and tasks; and
//! stopping it when drained.
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::deps::Deps;
use super::Shard;
use crate::config::Driver;
use crate::sys;

/// io_uring submission queue entries per shard.
const RING_ENTRIES: u32 = 4096;
/// Extra time after the drain deadline for forced closes to finish.
const FORCE_CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What a shard reports once it is listening (or why it could not start).
pub(super) type Ready = Result<&'static str, String>;

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Starts shard `id` on its own thread. `inherited` are descriptors of the
/// parent's table the shard must close in its private copy.
pub(crate) fn spawn(
    deps: Arc<Deps>,
    id: usize,
    inherited: Vec<RawFd>,
    ready: Sender<Ready>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("shard-{id}"))
        .spawn(move || {
            if let Err(e) = sys::block_shutdown_signals().and_then(|()| sys::unshare_files()) {
                let _ = ready.send(Err(format!("shard {id}: unshare(CLONE_FILES) failed: {e}")));
                return;
            }
            for fd in inherited {
                sys::close(fd);
            }
            if deps.pin_shards {
                let _ = sys::pin_to_cpu(id % sys::online_cpus());
            }
            run(deps, id, ready);
        })
}

fn run(deps: Arc<Deps>, id: usize, ready: Sender<Ready>) {
    let want = deps.driver;
    if want != Driver::Legacy {
        match RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .enable_timer()
            .build()
        {
            Ok(mut rt) => return rt.block_on(main(deps, id, ready, "uring")),
            Err(e) if want == Driver::Uring => {
                let _ = ready.send(Err(format!("shard {id}: io_uring unavailable: {e}")));
                return;
            }
            Err(e) => {
                if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!("io_uring refused ({e}): using the legacy epoll driver");
                }
            }
        }
    }
    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => rt.block_on(main(deps, id, ready, "legacy")),
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: cannot start a runtime: {e}")));
        }
    }
}

async fn main(deps: Arc<Deps>, id: usize, ready: Sender<Ready>, driver: &'static str) {
    let store = match super::store::open(&deps, id) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: {e}")));
            return;
        }
    };
    let fds = deps.listeners[id];
    let shard = match Shard::new(id, deps.clone(), store, fds.bus) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: cannot create its epoll set: {e}")));
            return;
        }
    };
    shard.listening.keep(fds.ws, fds.tcp);
    if !deps.accept_later {
        shard.start_accepting();
    }
    monoio::spawn(shard.clone().poll_task());
    monoio::spawn(shard.clone().router_task());
    monoio::spawn(shard.clone().flusher_task());
    monoio::spawn(shard.clone().ticker_task());
    monoio::spawn(shard.clone().outbox_task());
    shard.start_bus();
    let _ = ready.send(Ok(driver));

    shard.draining.wait().await;
    let started = std::time::Instant::now();
    let deadline = Duration::from_millis(deps.drain.deadline_ms);
    if monoio::time::timeout(deadline, shard.done.wait())
        .await
        .is_err()
    {
        let left = shard.conn_count();
        tracing::warn!(
            shard = id,
            left,
            "drain deadline passed: closing remaining connections"
        );
        let keys: Vec<usize> = shard.conns.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            shard.drive(key, |s, cx| s.close_going_away(cx));
        }
        let _ = monoio::time::timeout(FORCE_CLOSE_GRACE, shard.done.wait()).await;
    }
    // This shard still owns users and rooms that other shards' clients use
    // (presence, routing, QoS 1 inboxes): keep serving its inbox until every
    // shard is empty, or until the deadline (and the grace) has passed.
    deps.shards_busy.fetch_sub(1, Ordering::AcqRel);
    let last_call = deadline + FORCE_CLOSE_GRACE;
    while deps.shards_busy.load(Ordering::Acquire) > 0 && started.elapsed() < last_call {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    // Messages already on their way (an ack to its user's owner, a store
    // completion) are still routed: wait until this shard's queue and
    // backlog stay empty for a moment, then close the store, which writes
    // all it was given (an ack answered by a Pong survives a graceful stop).
    let mut quiet = 0;
    while quiet < 3 && started.elapsed() < last_call {
        monoio::time::sleep(Duration::from_millis(20)).await;
        if shard.outbox.is_idle() && deps.mesh.is_idle(id) {
            quiet += 1;
        } else {
            quiet = 0;
        }
    }
    shard.flush_store();
    shard.store.borrow_mut().close();
    shard.drain_store();
    let (unstored, unanswered) = shard.router.borrow().unsettled();
    if unstored > 0 || unanswered > 0 {
        crate::stats::ShardStats::add(&shard.stats.qos_append_dropped, unstored as u64);
        tracing::error!(
            shard = id,
            unstored,
            unanswered,
            "stopping with room and admin QoS 1 messages not stored (given up) or not yet \
             answered by the store (outcome unknown)"
        );
    }
}

impl Shard {
    /// Writes every connection with pending output, once each per round.
    async fn flusher_task(self: Rc<Self>) {
        let mut batch = Vec::new();
        loop {
            self.flush.notified().await;
            // While an upgrade moves the connections, nothing is written
            // (the bytes move with the sessions).
            self.gate.passed().await;
            std::mem::swap(&mut batch, &mut *self.dirty.borrow_mut());
            for key in batch.drain(..) {
                self.flush_conn(key);
            }
        }
    }
}
