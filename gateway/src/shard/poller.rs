//! Readiness of a shard's connections: one edge-triggered epoll set per
//! shard, waited on through the shard's runtime (an io_uring `PollAdd` on the
//! epoll descriptor, or the legacy driver's own epoll).
//!
//! Why not a task per connection awaiting its own readiness: a monoio task
//! costs an idle connection ~600 B (its future and header) plus a pending
//! poll in the runtime, and every wake-up re-arms one poll per connection.
//! Here an idle connection costs nothing in user space beyond its `Conn`,
//! its descriptor stays registered for its whole life (no re-arm), and one
//! wait returns every ready connection of the shard at once. monoio exposes
//! neither multishot poll nor provided-buffer rings, which would give the
//! same shape on the ring itself.
//!
//! The shard's two listeners are in the set too (`accept`), under keys no
//! connection gets.
//!
//! Each connection is registered once, at accept, for input, output and
//! hang-up, with a token of its slab key and the low half of its id (a stale
//! event for a reused key is recognised and dropped). Edge-triggered means a
//! connection is read until `EAGAIN`; one that had its share of a round
//! (`reader::READS_PER_TURN`) or whose input was held back by write
//! backpressure is kept in the `again` list and read without a new edge.
use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use super::accept::listener_key;
use super::adopted::Adopted;
use super::reader::{self, ReadEnd};
use super::wake::{runtime_turn, waited, Turns};
use super::Shard;
use crate::router::tables::ConnKey;
use crate::sys;

/// Events collected per `epoll_wait`.
pub(super) const EVENTS: usize = 1024;

pub(super) struct Poller {
    /// The shard's own set. Replaced once, when an upgrade's commit gave
    /// it to the new process (`adopted::leave_sets`).
    epfd: RefCell<OwnedFd>,
    /// Which sets the running poll tasks serve: a task whose set was given
    /// away ends before it polls again.
    pub(super) generation: Cell<u32>,
    /// Connections to read without waiting for a new edge.
    again: RefCell<Vec<u64>>,
    /// Sets handed over by an upgrade's old process, each polled by a task
    /// of its own (`adopted`).
    pub(super) adopted: RefCell<Vec<Adopted>>,
    pub(super) adopted_events: RefCell<Vec<libc::epoll_event>>,
}

impl Poller {
    pub(super) fn new() -> std::io::Result<Poller> {
        Ok(Poller {
            epfd: RefCell::new(sys::epoll_create()?),
            generation: Cell::new(0),
            again: RefCell::new(Vec::new()),
            adopted: RefCell::new(Vec::new()),
            adopted_events: RefCell::new(Vec::new()),
        })
    }

    /// Serves `fresh` from now on (the caller starts its `poll_task`).
    pub(super) fn replace(&self, fresh: OwnedFd) {
        *self.epfd.borrow_mut() = fresh;
        self.generation.set(self.generation.get().wrapping_add(1));
    }
}

/// The epoll token of a connection.
pub(super) fn token(key: ConnKey, id: u64) -> u64 {
    (key as u64 & 0xffff_ffff) | (id << 32)
}

pub(super) fn untoken(token: u64) -> (ConnKey, u32) {
    ((token & 0xffff_ffff) as ConnKey, (token >> 32) as u32)
}

impl Shard {
    /// Starts watching an accepted connection.
    pub(super) fn watch(&self, fd: i32, key: ConnKey, id: u64) -> std::io::Result<()> {
        sys::epoll_add(self.poller_fd(), fd, token(key, id))
    }

    /// The shard's epoll set.
    pub(super) fn poller_fd(&self) -> i32 {
        self.poller.epfd.borrow().as_raw_fd()
    }

    /// Reads `key` again in the next round, without waiting for readiness.
    pub(super) fn read_again(&self, key: ConnKey, id: u64) {
        self.poller.again.borrow_mut().push(token(key, id));
    }

    /// The connections the next round reads without waiting for an edge.
    pub(super) fn unread_keys(&self) -> std::collections::HashSet<ConnKey> {
        let again = self.poller.again.borrow();
        again.iter().map(|t| untoken(*t).0).collect()
    }

    /// A poll task's start: a waiter on the readiness of the set `epfd`,
    /// and which sets the task serves (`round`).
    pub(super) fn waiter(&self, epfd: i32) -> Option<(monoio::net::TcpStream, u32)> {
        match super::wake::readiness(epfd) {
            Ok(w) => Some((w, self.poller.generation.get())),
            Err(e) => {
                tracing::error!(shard = self.id, "cannot poll an epoll set: {e}");
                None
            }
        }
    }

    /// The start of a poll task's round: once the gate is open (while an
    /// upgrade moves the connections, nothing is read). False when the
    /// task's set went to an upgrade's new process: it ends, and never
    /// polls that set again (its events are that process's now).
    pub(super) async fn round(&self, generation: u32) -> bool {
        self.gate.passed().await;
        if self.poller.generation.get() != generation {
            return false;
        }
        self.tick_clock();
        true
    }

    /// Waits for readiness and dispatches it, for the life of the shard.
    pub(super) async fn poll_task(self: Rc<Self>) {
        let Some((waiter, generation)) = self.waiter(self.poller_fd()) else {
            return;
        };
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut again = Vec::new();
        let coalesce = std::time::Duration::from_micros(self.deps.read_coalesce_us);
        let turns = Turns::default();
        while self.round(generation).await {
            std::mem::swap(&mut again, &mut *self.poller.again.borrow_mut());
            for t in again.drain(..) {
                let (key, id) = untoken(t);
                match listener_key(key) {
                    Some(transport) => self.on_acceptable(transport),
                    None => self.on_input(key, id),
                }
            }
            let n = sys::epoll_poll(self.poller_fd(), &mut events);
            for ev in &events[..n] {
                let (key, id) = untoken(ev.u64);
                self.on_event(key, id, ev.events);
            }
            if n == EVENTS || !self.poller.again.borrow().is_empty() {
                // More is waiting. Let the shard's other tasks (the flusher,
                // the router, the listeners' accepts) and the runtime's
                // driver and timers run first.
                runtime_turn().await;
                continue;
            }
            if n > 0 && !coalesce.is_zero() {
                // Read coalescing: look again after the wait instead of
                // waking on the next readiness; a look that finds nothing
                // goes back to waiting on readiness.
                monoio::time::sleep(coalesce).await;
                continue;
            }
            let (ready, did_wait) = waited(waiter.readable(false)).await;
            if ready.is_err() {
                tracing::error!(shard = self.id, "epoll set poll failed");
                return;
            }
            // A client writing without pause keeps the set readable; on the
            // legacy driver that wait then gave the runtime no turn.
            turns.after_wait(did_wait).await;
        }
    }

    pub(super) fn on_event(&self, key: ConnKey, id: u32, events: u32) {
        if let Some(transport) = listener_key(key) {
            self.on_acceptable(transport);
            return;
        }
        let hangup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let blocked = match self.conns.borrow_mut().get_mut(key) {
            Some(c) if c.session().id() as u32 == id => {
                // Data and FIN may come in one edge: remember the FIN, or a
                // short read would wait for an edge that never comes.
                c.hangup |= events & hangup != 0;
                c.write_blocked
            }
            _ => return,
        };
        if blocked && events & libc::EPOLLOUT as u32 != 0 {
            self.unblock(key);
        }
        if events & (libc::EPOLLIN as u32 | hangup) != 0 {
            self.on_input(key, id);
        }
    }

    /// Input may be waiting on `key`: read it, unless writes are blocked.
    pub(super) fn on_input(&self, key: ConnKey, id: u32) {
        let (closing, conn_id) = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key).filter(|c| c.session().id() as u32 == id) else {
                return;
            };
            let closing = c.session().is_closing();
            if c.write_blocked && !closing {
                // Reading stops while the client does not read: backpressure.
                c.read_stalled = true;
                return;
            }
            (closing, c.session().id())
        };
        let end = if closing {
            reader::discard(self, key)
        } else {
            reader::read(self, key)
        };
        match end {
            ReadEnd::Again => {}
            ReadEnd::Yield => self.read_again(key, conn_id),
            ReadEnd::Eof => self.on_peer_closed(key),
        }
    }
}
