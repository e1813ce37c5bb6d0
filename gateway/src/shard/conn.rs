//! The life of one connection: accept, read loop, close, cleanup.
//!
//! One task per connection waits on readiness (io_uring `PollAdd`, or epoll)
//! or on a wake-up from the shard (close requested, write blocked). Reading
//! and protocol work happen in `reader` and `session`; writing is done by the
//! shard's flusher, once per connection per round.
use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::reader::{ReadEnd, Reader};
use super::tables::ConnKey;
use super::timers::TimerKind;
use super::{Conn, Phase, Shard, WAKE_CLOSE, WAKE_WRITABLE};
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

enum Wake {
    Readable(std::io::Result<()>),
    Shard(u8),
}

impl Shard {
    /// Serves one accepted connection until it is closed and cleaned up.
    pub(super) async fn serve(self: Rc<Self>, stream: TcpStream, transport: Transport) {
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let key = self.open_conn(fd, transport);
        let max_message = self.node.config.limits.max_frame_bytes;
        let mut reader = Reader::new(transport == Transport::WebSocket, max_message);
        'serve: loop {
            let wake = monoio::select! {
                r = stream.readable(false) => Wake::Readable(r),
                w = self.woken(key) => Wake::Shard(w),
            };
            match wake {
                Wake::Readable(Err(_)) => break,
                Wake::Readable(Ok(())) => loop {
                    match reader.on_readable(&self, key, fd) {
                        ReadEnd::Again => break,
                        ReadEnd::Closed => break 'serve,
                        ReadEnd::Yield => super::signal::yield_now().await,
                    }
                },
                Wake::Shard(mut bits) => {
                    if bits & WAKE_WRITABLE != 0 && bits & WAKE_CLOSE == 0 {
                        // Reading stops while the client does not read: backpressure.
                        monoio::select! {
                            r = stream.writable(false) => if r.is_ok() { self.unblock(key) },
                            w = self.woken(key) => bits |= w,
                        }
                    }
                    if bits & WAKE_CLOSE != 0 {
                        break;
                    }
                }
            }
        }
        self.close(key, None);
        // Boxed: closing is rare, and inline its state would enlarge the task
        // of every open connection.
        let linger = Box::pin(async {
            let _ = monoio::time::timeout(LINGER, self.linger(&stream, key, &mut reader)).await;
        });
        linger.await;
        self.remove_conn(key);
    }

    /// Flushes what is pending, half-closes, and waits for the client's FIN so
    /// the last frames (error, go-away) are not lost to a reset.
    async fn linger(&self, stream: &TcpStream, key: ConnKey, reader: &mut Reader) {
        let fd = stream.as_raw_fd();
        while self.flush_conn(key) {
            if stream.writable(false).await.is_err() {
                return;
            }
            self.unblock(key);
        }
        sys::shutdown_write(fd);
        loop {
            if stream.readable(false).await.is_err() {
                return;
            }
            if let ReadEnd::Closed = reader.discard(self, fd) {
                return;
            }
        }
    }

    fn woken(&self, key: ConnKey) -> impl std::future::Future<Output = u8> + '_ {
        poll_fn(move |cx| {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key) else {
                return Poll::Ready(WAKE_CLOSE);
            };
            if c.wake != 0 {
                return Poll::Ready(std::mem::take(&mut c.wake));
            }
            c.waker = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    fn open_conn(&self, fd: i32, transport: Transport) -> ConnKey {
        let now = Instant::now();
        let id = self.next_conn_id();
        let (wire, phase) = match transport {
            Transport::WebSocket => (Wire::WsProto, Phase::Upgrade),
            Transport::Tcp => (Wire::Tcp, Phase::Auth),
        };
        let key = self.conns.borrow_mut().insert(Conn {
            fd,
            id,
            wire,
            phase,
            user: None,
            device: std::sync::Arc::from(""),
            rooms: Vec::new(),
            out: Vec::new(),
            write_blocked: false,
            in_dirty: false,
            wake: 0,
            waker: None,
            accepted_at: now,
            last_seen: now,
            liveness: None,
            expiry: None,
            syncing: false,
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
        key
    }

    fn gauge(&self, transport: Transport, delta: i64) {
        let g = match transport {
            Transport::WebSocket => &self.stats.conns_ws,
            Transport::Tcp => &self.stats.conns_tcp,
        };
        g.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
    }

    fn remove_conn(&self, key: ConnKey) {
        let Some(mut c) = self.conns.borrow_mut().try_remove(key) else {
            return;
        };
        self.qos_forget(&mut c);
        self.cancel(c.liveness);
        self.cancel(c.expiry);
        for room in &c.rooms {
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

    /// Writes a connection's pending output once. True when bytes remain and
    /// the socket is full (the caller waits for writability).
    pub(super) fn flush_conn(&self, key: ConnKey) -> bool {
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.get_mut(key) else {
            return false;
        };
        c.in_dirty = false;
        if c.out.is_empty() {
            return false;
        }
        ShardStats::inc(&self.stats.writes);
        match sys::send(c.fd, &c.out) {
            Ok(Io::Done(n)) if n == c.out.len() => {
                ShardStats::add(&self.stats.bytes_out, n as u64);
                let buf = std::mem::take(&mut c.out);
                drop(conns);
                self.put_buf(buf);
                false
            }
            Ok(Io::Done(n)) => {
                ShardStats::add(&self.stats.bytes_out, n as u64);
                c.out.drain(..n);
                self.block(c)
            }
            Ok(Io::WouldBlock) => self.block(c),
            Err(_) => {
                // The peer is gone: nothing more can be written.
                c.out.clear();
                if c.phase != Phase::Closing {
                    c.phase = Phase::Closing;
                    c.wake |= WAKE_CLOSE;
                    if let Some(w) = c.waker.take() {
                        w.wake();
                    }
                }
                false
            }
        }
    }

    fn block(&self, c: &mut Conn) -> bool {
        if !c.write_blocked {
            c.write_blocked = true;
            c.wake |= WAKE_WRITABLE;
            if let Some(w) = c.waker.take() {
                w.wake();
            }
        }
        true
    }

    /// The socket is writable again: flush from the shard's next round.
    fn unblock(&self, key: ConnKey) {
        let mut conns = self.conns.borrow_mut();
        if let Some(c) = conns.get_mut(key) {
            c.write_blocked = false;
            self.mark_dirty(key, c);
        }
    }
}
