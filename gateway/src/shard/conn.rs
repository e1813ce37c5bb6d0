//! The life of one connection: accept, close, linger, cleanup, and its
//! writes.
//!
//! A connection is a slab entry and a registration in the shard's epoll set
//! (`poller`), nothing more. Reading and protocol work happen in `reader` and
//! `session`; writing is done by the shard's flusher, once per connection per
//! round. Closing: the last frame (error or go-away) and the WebSocket close
//! are queued, the flusher writes them and half-closes, the connection reads
//! and discards until the client's FIN, and is removed then or when its
//! linger timer fires, whichever comes first.
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::tables::ConnKey;
use super::timers::TimerKind;
use super::{Conn, Phase, Shard};
use crate::mesh::ShardMsg;
use crate::metrics::ShardStats;
use crate::outbound::Wire;
use crate::sys::{self, Io};

/// How long a closing connection may take to flush and see the client close.
const LINGER: Duration = Duration::from_secs(2);

/// Which listener accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    WebSocket,
    Tcp,
}

impl Shard {
    /// Takes over an accepted socket: a slab entry, a handshake deadline, and
    /// its place in the shard's epoll set. Nothing else (no task, no buffer).
    pub(super) fn accept_conn(&self, fd: RawFd, transport: Transport) {
        sys::set_nodelay(fd);
        let (key, id) = self.open_conn(fd, transport);
        if let Err(e) = self.watch(fd, key, id) {
            tracing::warn!(shard = self.id, "cannot watch an accepted connection: {e}");
            self.remove_conn(key);
        }
    }

    fn open_conn(&self, fd: RawFd, transport: Transport) -> (ConnKey, u64) {
        let now = Instant::now();
        let id = self.next_conn_id();
        let (wire, phase) = match transport {
            Transport::WebSocket => (Wire::WsProto, Phase::Upgrade),
            Transport::Tcp => (Wire::Tcp, Phase::Auth),
        };
        let key = self.conns.borrow_mut().insert(Conn {
            fd,
            wire,
            phase,
            write_blocked: false,
            in_dirty: false,
            read_stalled: false,
            peer_closed: false,
            hangup: false,
            fin_sent: false,
            syncing: false,
            id,
            user: None,
            device: self.no_device.clone(),
            rooms: Box::default(),
            out: Vec::new(),
            partial: None,
            stamp: now,
            expires_at: 0,
            liveness: None,
            qos: None,
            qos_base: 0,
        });
        let deadline = now + Duration::from_millis(self.node.config.limits.handshake_timeout_ms);
        let timer = self.schedule(key, id, TimerKind::Handshake, deadline);
        if let Some(c) = self.conns.borrow_mut().get_mut(key) {
            c.liveness = Some(timer);
        }
        ShardStats::inc(&self.stats.accepted);
        self.gauge(transport, 1);
        (key, id)
    }

    fn gauge(&self, transport: Transport, delta: i64) {
        let g = match transport {
            Transport::WebSocket => &self.stats.conns_ws,
            Transport::Tcp => &self.stats.conns_tcp,
        };
        g.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the closing connection's linger: it has `LINGER` to flush,
    /// half-close and see the client's FIN, then it is removed regardless.
    pub(super) fn start_linger(&self, key: ConnKey, c: &mut Conn) {
        c.phase = Phase::Closing;
        // Input held back by backpressure is still read (and discarded)
        // once writable: it may end with the client's FIN.
        if std::mem::take(&mut c.read_stalled) {
            self.read_again(key, c.id);
        }
        self.cancel(c.liveness.take());
        let at = self.now.get() + LINGER;
        c.liveness = Some(self.schedule(key, c.id, TimerKind::Linger, at));
    }

    /// The peer closed or the socket failed: close our side too, and remove
    /// the connection once its last frames are flushed (see `flush_conn`).
    pub(super) fn on_peer_closed(&self, key: ConnKey) {
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.get_mut(key) else { return };
        c.peer_closed = true;
        self.close_locked(key, c, None);
        // Already closing (and maybe flushed): the flusher finishes it.
        self.mark_dirty(key, c);
    }

    /// Forgets a connection: timers, routing entries, presence, descriptor.
    pub(super) fn remove_conn(&self, key: ConnKey) {
        let Some(mut c) = self.conns.borrow_mut().try_remove(key) else {
            return;
        };
        sys::close(c.fd);
        self.qos_forget(&mut c);
        self.cancel(c.liveness);
        for room in c.rooms.iter() {
            self.leave_room(key, room);
        }
        if let Some(user) = &c.user {
            self.tables.borrow_mut().remove_user(user, key);
            let owner = self.node.mesh.owner(user);
            let msg = ShardMsg::Offline {
                user: user.clone(),
                shard: self.id as u16,
                conn_id: c.id,
            };
            self.send_to(owner, msg);
        }
        self.put_buf(c.out);
        self.gauge(
            if c.wire == Wire::Tcp {
                Transport::Tcp
            } else {
                Transport::WebSocket
            },
            -1,
        );
        self.check_done();
    }

    /// Writes a connection's pending output once. A closing connection whose
    /// output is flushed is half-closed, and removed once the peer has closed.
    pub(super) fn flush_conn(&self, key: ConnKey) {
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.get_mut(key) else { return };
        c.in_dirty = false;
        if !c.out.is_empty() {
            ShardStats::inc(&self.stats.writes);
            match sys::send(c.fd, &c.out) {
                Ok(Io::Done(n)) if n == c.out.len() => {
                    ShardStats::add(&self.stats.bytes_out, n as u64);
                    let buf = std::mem::take(&mut c.out);
                    self.put_buf(buf);
                }
                Ok(Io::Done(n)) => {
                    // A short write leaves the socket flagged for EPOLLOUT
                    // just as EAGAIN does.
                    ShardStats::add(&self.stats.bytes_out, n as u64);
                    c.out.drain(..n);
                    c.write_blocked = true;
                    return;
                }
                Ok(Io::WouldBlock) => {
                    c.write_blocked = true;
                    return;
                }
                Err(_) => {
                    // The peer is gone: nothing more can be written.
                    c.out.clear();
                    c.peer_closed = true;
                    if c.phase != Phase::Closing {
                        self.start_linger(key, c);
                    }
                }
            }
        }
        if c.phase != Phase::Closing {
            return;
        }
        if !c.fin_sent {
            c.fin_sent = true;
            sys::shutdown_write(c.fd);
        }
        if c.peer_closed {
            drop(conns);
            self.remove_conn(key);
        }
    }

    /// The socket is writable again: flush from the shard's next round, and
    /// read what backpressure held back.
    pub(super) fn unblock(&self, key: ConnKey) {
        let mut conns = self.conns.borrow_mut();
        if let Some(c) = conns.get_mut(key) {
            c.write_blocked = false;
            self.mark_dirty(key, c);
            if std::mem::take(&mut c.read_stalled) {
                self.read_again(key, c.id);
            }
        }
    }
}
