//! The life of one connection as the driver sees it: accept, writes, the
//! half-close, removal.
//!
//! A connection is a slab entry (its `Session` and a few flags) and a
//! registration in the shard's epoll set (`poller`), nothing more. What to
//! write and when to close is the session's; the shard's flusher writes each
//! connection's pending output once per round, sends our FIN when the
//! session `wants_fin`, and forgets the connection once the session
//! `is_closed` (the client's FIN came, or the linger deadline passed).
use std::os::fd::RawFd;

use super::{tls, Shard};
use crate::outbound::Wire;
use crate::router::tables::ConnKey;
use crate::session::{Ctx, Session, Transport};
use crate::stats::ShardStats;
use crate::sys::{self, Io};
use crate::wheel::TimerKey;

/// One connection: its descriptor, the driver's few flags, its wheel entry
/// and its session. Everything an idle connection holds in user space
/// besides its routing-table entries; `tests::conn_stays_compact` guards it.
pub(crate) struct Conn {
    pub(super) fd: RawFd,
    /// Output could not be written: waiting for `EPOLLOUT`.
    pub(super) write_blocked: bool,
    /// In the shard's dirty list (flushed this round).
    pub(super) in_dirty: bool,
    /// Input was left unread while writes were blocked (backpressure).
    pub(super) read_stalled: bool,
    /// epoll reported a hang-up (`EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR`): read
    /// until EOF, since no further edge will come for it.
    pub(super) hangup: bool,
    /// The wheel entry at the session's deadline (`TimerKey::NONE`: none).
    pub(super) timer: TimerKey,
    /// Private: read it with `session`, change it with `session_mut`, which
    /// marks the connection `changed`.
    session: Session,
}

impl Conn {
    /// A connection just taken over (accepted, or handed over by an
    /// upgrade): no flags, no wheel entry yet.
    pub(super) fn new(fd: RawFd, session: Session) -> Conn {
        Conn {
            fd,
            write_blocked: false,
            in_dirty: false,
            read_stalled: false,
            hangup: false,
            timer: TimerKey::NONE,
            session,
        }
    }

    pub(super) fn session(&self) -> &Session {
        &self.session
    }

    /// The session, to change: the connection counts as `changed` from
    /// here on (whether or not anything did), so an upgrade that sent the
    /// session ahead sends it again at the freeze.
    pub(super) fn session_mut(&mut self) -> &mut Session {
        self.session.mark(true);
        &mut self.session
    }

    /// Whether the session was borrowed to change since `sent_ahead`.
    pub(super) fn changed(&self) -> bool {
        self.session.marked()
    }

    /// The session went ahead to an upgrade's new process as it is now.
    pub(super) fn sent_ahead(&mut self) {
        self.session.mark(false);
    }

    /// Puts `session` in place of the one here (an upgrade's import: the
    /// one that came for this connection).
    pub(super) fn set_session(&mut self, session: Session) -> Session {
        std::mem::replace(&mut self.session, session)
    }
}

impl Shard {
    /// Takes over an accepted socket: a slab entry with a new session (its
    /// handshake deadline on the wheel) and its place in the shard's epoll
    /// set. Nothing else (no task, no buffer).
    pub(super) fn accept_conn(&self, fd: RawFd, transport: Transport, ip: std::net::IpAddr) {
        sys::set_nodelay(fd);
        let id = self.next_conn_id();
        let now = self.tick_clock();
        let session = Session::new(transport, id, now, &self.env);
        let key = self.conns.borrow_mut().insert(Conn::new(fd, session));
        if self.deps.admission.tracks_ips() {
            self.ips.borrow_mut().insert(key, ip);
        }
        if let Err(e) = self.tls_accept(key) {
            tracing::warn!(shard = self.id, "cannot start TLS on a connection: {e}");
        }
        // Arms the handshake deadline.
        self.drive(key, |_, _| ());
        ShardStats::inc(&self.stats.accepted);
        self.gauge(transport == Transport::Tcp, 1);
        if let Err(e) = self.watch(fd, key, id) {
            tracing::warn!(shard = self.id, "cannot watch an accepted connection: {e}");
            self.remove_conn(key);
        }
    }

    pub(super) fn gauge(&self, tcp: bool, delta: i64) {
        let g = if tcp {
            &self.stats.conns_tcp
        } else {
            &self.stats.conns_ws
        };
        g.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
    }

    /// The peer closed or the socket failed: the session closes its side
    /// too, and the flusher removes it once its last frames are out.
    pub(super) fn on_peer_closed(&self, key: ConnKey) {
        self.drive(key, |s, cx| s.handle_eof(cx));
    }

    /// Forgets a connection: timer, routing entries, presence, descriptor.
    pub(super) fn remove_conn(&self, key: ConnKey) {
        let Some(mut c) = self.conns.borrow_mut().try_remove(key) else {
            return;
        };
        sys::close(c.fd);
        self.tls_forget(key);
        if let Some(ip) = self.ips.borrow_mut().remove(&key) {
            self.deps.admission.release(ip, self.now.get());
        }
        self.wheel.borrow_mut().cancel(c.timer);
        let s = c.session_mut();
        {
            let mut router = self.router.borrow_mut();
            for room in s.rooms() {
                router.leave(key, room);
            }
        }
        self.fx.borrow_mut().forget(s.id());
        self.sse_forget(s.id());
        if let Some(user) = s.user() {
            self.disconnect_event(user, s.device(), s.id(), s.close_reason());
            self.router.borrow_mut().closed(key, user, s.id());
        }
        // One pass for every room withdrawn and the user's `Offline`.
        self.run_actions();
        s.recycle(&mut self.fx.borrow_mut().pool);
        self.gauge(s.wire() == Wire::Tcp, -1);
        self.check_done();
    }

    /// Writes a connection's pending output once. When the session is
    /// closing and its output is out, half-closes; removes it once closed.
    pub(super) fn flush_conn(&self, key: ConnKey) {
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.get_mut(key) else { return };
        c.in_dirty = false;
        if self.is_tls(key) {
            let mut sent = 0;
            let fin = c.session().wants_fin();
            let r = self.tls_flush(key, c.fd, c.session().output(), fin, &mut sent);
            if sent > 0 {
                ShardStats::inc(&self.stats.writes);
                ShardStats::add(&self.stats.bytes_out, sent as u64);
                c.session_mut()
                    .transmitted(sent, &mut self.fx.borrow_mut().pool);
            }
            match r {
                tls::Flushed::Blocked => {
                    c.write_blocked = true;
                    return;
                }
                tls::Flushed::Failed => {
                    self.write_failed(c);
                }
                tls::Flushed::Done => {}
            }
        } else if !c.session().output().is_empty() {
            let out = c.session().output();
            ShardStats::inc(&self.stats.writes);
            let len = out.len();
            match sys::send(c.fd, out) {
                Ok(Io::Done(n)) => {
                    ShardStats::add(&self.stats.bytes_out, n as u64);
                    c.session_mut()
                        .transmitted(n, &mut self.fx.borrow_mut().pool);
                    if n < len {
                        // A short write leaves the socket flagged for
                        // EPOLLOUT just as EAGAIN does.
                        c.write_blocked = true;
                        return;
                    }
                }
                Ok(Io::WouldBlock) => {
                    c.write_blocked = true;
                    return;
                }
                Err(_) => {
                    // The peer is gone: nothing more can be written.
                    self.write_failed(c);
                }
            }
        }
        if c.session().wants_fin() {
            sys::shutdown_write(c.fd);
            c.session_mut().fin_sent();
        }
        if c.session().is_closed() {
            drop(conns);
            self.remove_conn(key);
        }
    }

    /// The peer is gone (or TLS failed): nothing more can be written.
    fn write_failed(&self, c: &mut Conn) {
        let mut fx = self.fx.borrow_mut();
        let mut cx = Ctx {
            now: self.now.get(),
            env: &self.env,
            fx: &mut fx,
        };
        c.session_mut().handle_write_error(&mut cx);
    }

    /// The socket is writable again: flush from the shard's next round, and
    /// read what backpressure held back.
    pub(super) fn unblock(&self, key: ConnKey) {
        let mut conns = self.conns.borrow_mut();
        if let Some(c) = conns.get_mut(key) {
            c.write_blocked = false;
            self.mark_dirty(key, c);
            if std::mem::take(&mut c.read_stalled) {
                self.read_again(key, c.session().id());
            }
        }
    }
}
