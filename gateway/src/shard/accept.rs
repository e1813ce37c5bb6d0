//! Accepting: the shard's WebSocket and TCP listeners sit in its epoll set
//! (`poller`) beside its connections, and are accepted from with a
//! non-blocking `accept4` when they are readable.
//!
//! Why not monoio's `accept`: on io_uring an accept is an operation in
//! flight, and one cancelled when the shard stops accepting (a drain, an
//! upgrade handing the listener to a new process) can still complete with a
//! connection that nobody then serves. A readiness-driven `accept4` takes a
//! connection only when the shard is there to serve it; whatever it leaves
//! in the queue stays for the listener's other holders.
use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::Shard;
use crate::router::tables::ConnKey;
use crate::session::Transport;
use crate::sys;

/// Connections taken off one listener per round before the shard's other
/// work runs (the rest wait for the next round, not for a new edge).
const ACCEPTS_PER_TURN: usize = 256;

/// The poller keys of the two listeners (far above any slab key).
const WS_KEY: ConnKey = 0xffff_fff0;
const TCP_KEY: ConnKey = 0xffff_fff1;

/// The shard's listeners: kept until it accepts, then in its epoll set
/// until it stops.
#[derive(Default)]
pub(super) struct Listening {
    kept: RefCell<Vec<(OwnedFd, Transport)>>,
    watched: RefCell<Vec<(OwnedFd, Transport)>>,
}

impl Listening {
    /// Takes this shard's copies of its listeners (numbered as in the
    /// node's table; the shard owns its copies from now on).
    pub(super) fn keep(&self, ws: i32, tcp: i32) {
        for (fd, transport) in [(ws, Transport::WebSocket), (tcp, Transport::Tcp)] {
            // SAFETY: the node gave this shard the descriptor; its copy in
            // the shard's own table is used by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            self.kept.borrow_mut().push((fd, transport));
        }
    }
}

/// Which listener a poller key names, if it names one.
pub(super) fn listener_key(key: ConnKey) -> Option<Transport> {
    match key {
        WS_KEY => Some(Transport::WebSocket),
        TCP_KEY => Some(Transport::Tcp),
        _ => None,
    }
}

impl Shard {
    /// Starts accepting on the listeners kept (once; never after a stop).
    pub(super) fn start_accepting(&self) {
        let kept = std::mem::take(&mut *self.listening.kept.borrow_mut());
        if self.draining.is_set() {
            return;
        }
        for (fd, transport) in kept {
            let key = match transport {
                Transport::WebSocket => WS_KEY,
                Transport::Tcp => TCP_KEY,
            };
            if let Err(e) = self.watch(fd.as_raw_fd(), key, 0) {
                tracing::error!(shard = self.id, "cannot watch a listener: {e}");
                continue;
            }
            // Connections queued before now are reported by the add itself
            // (epoll checks readiness when a descriptor joins the set).
            self.listening.watched.borrow_mut().push((fd, transport));
        }
    }

    /// Stops accepting for now (an upgrade's freeze): the listeners leave
    /// the epoll set and are kept for `start_accepting`.
    pub(super) fn pause_accepting(&self) {
        let watched = std::mem::take(&mut *self.listening.watched.borrow_mut());
        for (fd, transport) in watched {
            sys::epoll_del(self.poller_fd(), fd.as_raw_fd());
            self.listening.kept.borrow_mut().push((fd, transport));
        }
    }

    /// Stops accepting: the listeners leave the epoll set and this shard's
    /// copies are closed. Connections still queued stay in the sockets for
    /// their other holders (the node's table, a new process).
    pub(super) fn stop_accepting(&self) {
        self.listening.kept.borrow_mut().clear();
        for (fd, _) in self.listening.watched.borrow_mut().drain(..) {
            sys::epoll_del(self.poller_fd(), fd.as_raw_fd());
        }
    }

    /// Takes connections off a readable listener, up to a round's share.
    pub(super) fn on_acceptable(&self, transport: Transport) {
        let fd = {
            let listening = self.listening.watched.borrow();
            match listening.iter().find(|(_, t)| *t == transport) {
                Some((fd, _)) => fd.as_raw_fd(),
                None => return,
            }
        };
        for _ in 0..ACCEPTS_PER_TURN {
            match sys::accept(fd) {
                Ok(Some((conn, ip))) => self.admit(conn, ip, transport),
                Ok(None) => return,
                Err(e) => {
                    // Out of descriptors or memory: what is queued waits
                    // for the next connection's edge, not a busy retry.
                    tracing::warn!(shard = self.id, "accept failed: {e}");
                    return;
                }
            }
        }
        let key = match transport {
            Transport::WebSocket => WS_KEY,
            Transport::Tcp => TCP_KEY,
        };
        self.read_again(key, 0);
    }

    /// Checks the node's connection caps, then serves the connection.
    fn admit(&self, fd: i32, ip: std::net::IpAddr, transport: Transport) {
        let open = self
            .deps
            .stats
            .iter()
            .map(|s| s.conns().max(0) as u64)
            .sum();
        match self.deps.admission.admit(ip, open, self.tick_clock()) {
            Ok(()) => self.accept_conn(fd, transport, ip),
            Err(why) => {
                tracing::debug!(shard = self.id, %ip, ?why, "connection refused at accept");
                sys::close(fd);
            }
        }
    }
}
