//! A shard: one thread, one monoio runtime, its own listeners, connections,
//! timers and routing tables. Nothing here is shared with another thread but
//! the mesh inboxes and the statistics counters.
//!
//! Invariants:
//! - A connection never leaves the shard that accepted it.
//! - No `RefCell` borrow is held across an `.await` or across a call into
//!   another method that borrows the same cell.
//! - An idle connection holds no read or write buffer and no task: `Conn::out`
//!   is a pooled buffer only while bytes wait to be written, `Conn::partial`
//!   exists only while a frame is incomplete, and readiness comes from the
//!   shard's epoll set (`poller`).
mod backoff;
mod conn;
mod inbox;
mod outbox;
mod owner;
mod poller;
mod qos;
mod reader;
mod retry;
mod rooms;
mod run;
mod session;
pub mod signal;
mod store;
pub mod tables;
mod timers;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use proto::v1::{server_frame::Frame, ErrorCode, GoAway, GoAwayReason, ServerFrame};
use slab::Slab;

use crate::inbox::{Done, Store};
use crate::metrics::ShardStats;
use crate::node::Node;
use crate::outbound::{Outbound, Wire};
use crate::wheel::{TimerKey, TimingWheel};

pub use run::spawn;
use signal::{Flag, Notify};
use tables::{ConnKey, Tables};
use timers::Timer;

/// Write buffers kept for reuse per shard, and the largest one kept.
const POOL_BUFFERS: usize = 1024;
const POOL_BUF_MAX: usize = 16 * 1024;
/// First allocation of a write buffer (it grows as frames queue up).
const BUF_INITIAL: usize = 512;
/// The shard's read buffer.
const SCRATCH: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// WebSocket: waiting for the HTTP upgrade request.
    Upgrade,
    /// Waiting for the Auth frame.
    Auth,
    /// Authenticated.
    Open,
    /// Closing: no more frames are read or queued, pending output drains.
    Closing,
}

/// One connection's shard-local state: everything an idle connection holds
/// in user space besides its routing-table and timer entries (no task, no
/// buffer). Kept compact; `tests::conn_stays_compact` guards its size.
pub(crate) struct Conn {
    fd: RawFd,
    wire: Wire,
    phase: Phase,
    /// Output could not be written: waiting for `EPOLLOUT`.
    write_blocked: bool,
    /// In the shard's dirty list (flushed this round).
    in_dirty: bool,
    /// Input was left unread while writes were blocked (backpressure).
    read_stalled: bool,
    /// The peer closed (EOF) or the socket failed.
    peer_closed: bool,
    /// epoll reported a hang-up (`EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR`): read
    /// until EOF, since no further edge will come for it.
    hangup: bool,
    /// Our FIN was sent (closing, output flushed).
    fin_sent: bool,
    /// Waiting for an inbox replay: live QoS 1 deliveries are ignored.
    syncing: bool,
    id: u64,
    user: Option<Arc<str>>,
    device: Arc<str>,
    rooms: Box<[Arc<str>]>,
    /// Bytes waiting to be written (a pooled buffer, or empty and unallocated).
    out: Vec<u8>,
    /// A partial frame or fragmented message, only while one is pending.
    partial: Option<Box<reader::Partial>>,
    /// Accept time until authenticated, then the time bytes last arrived.
    stamp: Instant,
    /// When the token expires, in Unix seconds (0: never); checked by the
    /// liveness timer.
    expires_at: u32,
    /// The one wheel timer of the connection outside QoS 1: handshake, then
    /// heartbeat and token expiry, then linger while closing.
    liveness: Option<TimerKey>,
    /// QoS 1 state, while the connection has QoS 1 messages in flight.
    qos: Option<Box<qos::QosState>>,
    /// Highest sequence the connection is known to have when `qos` is None.
    qos_base: u64,
}

/// The state of one shard, owned by its thread.
pub(crate) struct Shard {
    id: usize,
    node: Arc<Node>,
    stats: Arc<ShardStats>,
    conns: RefCell<Slab<Conn>>,
    /// Readiness of every connection of the shard.
    poller: poller::Poller,
    tables: RefCell<Tables>,
    wheel: RefCell<TimingWheel<Timer>>,
    /// Coarse clock, refreshed every timer tick (liveness is kept to a tick).
    now: Cell<Instant>,
    dirty: RefCell<Vec<ConnKey>>,
    flush: Notify,
    outbox: outbox::Outbox,
    pool: RefCell<Vec<Vec<u8>>>,
    /// Every read lands here first (see `reader`).
    scratch: RefCell<Vec<u8>>,
    /// Set when the shard stops accepting (drain).
    draining: Flag,
    /// Set when the shard may exit (drained and empty, or past the deadline).
    done: Flag,
    next_id: Cell<u64>,
    /// The device name of connections that name none (shared, not one
    /// allocation per connection).
    no_device: Arc<str>,
    /// Inboxes of the users this shard owns.
    store: RefCell<Box<dyn Store>>,
    store_done: RefCell<Vec<Done>>,
    /// Submission times of appends in flight, for the store latency metric.
    store_started: RefCell<VecDeque<Instant>>,
    pending_appends: Cell<usize>,
    /// Sender-less QoS 1 appends the store refused, to submit again.
    append_retry: RefCell<retry::AppendRetry>,
}

impl Shard {
    fn new(id: usize, node: Arc<Node>, store: Box<dyn Store>) -> std::io::Result<Shard> {
        let now = Instant::now();
        let tick = std::time::Duration::from_millis(node.config.timer_tick_ms.max(1));
        Ok(Shard {
            id,
            poller: poller::Poller::new()?,
            stats: node.stats[id].clone(),
            conns: RefCell::new(Slab::new()),
            tables: RefCell::new(Tables::default()),
            wheel: RefCell::new(TimingWheel::new(tick, now)),
            now: Cell::new(now),
            dirty: RefCell::new(Vec::new()),
            flush: Notify::default(),
            outbox: outbox::Outbox::new(node.mesh.len()),
            pool: RefCell::new(Vec::new()),
            scratch: RefCell::new(Vec::with_capacity(SCRATCH)),
            draining: Flag::default(),
            done: Flag::default(),
            next_id: Cell::new(1),
            no_device: Arc::from(""),
            store: RefCell::new(store),
            store_done: RefCell::new(Vec::new()),
            store_started: RefCell::new(VecDeque::new()),
            pending_appends: Cell::new(0),
            append_retry: RefCell::new(retry::AppendRetry::new(std::time::Duration::from_secs(
                node.config.qos.dedupe_secs,
            ))),
            node,
        })
    }

    fn take_buf(&self) -> Vec<u8> {
        self.pool
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_INITIAL))
    }

    fn put_buf(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > POOL_BUF_MAX {
            return;
        }
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_BUFFERS {
            buf.clear();
            pool.push(buf);
        }
    }

    /// Frees every pooled buffer (each collect period). Keeping even a few
    /// pins the allocator pages they sit in, scattered over the heap by a
    /// burst: 10k-subscriber fan-out, RSS 5 s after the burst was 34 MiB
    /// keeping 64 and 19 MiB (the level before the burst) keeping none.
    fn trim_pool(&self) {
        self.pool.borrow_mut().clear();
    }

    /// Appends bytes to a connection's pending output, applying the
    /// slow-consumer policy: past `send_queue_bytes` the connection gets an
    /// error frame (beyond the cap) and is closed. False when it was closed.
    fn queue_bytes(&self, key: ConnKey, c: &mut Conn, bytes: &[u8]) -> bool {
        if c.phase == Phase::Closing {
            return false;
        }
        // One frame always fits an empty queue (a frame near the size limit
        // plus its envelope may pass the cap): the cap bounds the backlog.
        if !c.out.is_empty() && c.out.len() + bytes.len() > self.node.config.limits.send_queue_bytes
        {
            ShardStats::inc(&self.stats.slow_consumer_closes);
            let err = error_frame(ErrorCode::SlowConsumer, "send queue full: closing", true);
            self.stats.error(ErrorCode::SlowConsumer);
            self.close_locked(key, c, Some(&err));
            return false;
        }
        if c.out.capacity() == 0 {
            c.out = self.take_buf();
        }
        c.out.extend_from_slice(bytes);
        ShardStats::inc(&self.stats.frames_out);
        self.mark_dirty(key, c);
        true
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

    /// Encodes and queues one frame for one connection.
    fn send_frame(&self, key: ConnKey, frame: &ServerFrame) {
        let mut conns = self.conns.borrow_mut();
        if let Some(c) = conns.get_mut(key) {
            self.send_frame_locked(key, c, frame);
        }
    }

    fn send_frame_locked(&self, key: ConnKey, c: &mut Conn, frame: &ServerFrame) {
        let mut bytes = Vec::new();
        c.wire.encode(frame, &mut bytes);
        self.queue_bytes(key, c, &bytes);
    }

    /// Queues a shared message for one connection.
    fn deliver(&self, key: ConnKey, msg: &Outbound) {
        let mut conns = self.conns.borrow_mut();
        if let Some(c) = conns.get_mut(key) {
            if c.phase == Phase::Open && self.queue_bytes(key, c, msg.bytes(c.wire)) {
                ShardStats::inc(&self.stats.deliveries);
            }
        }
    }

    /// Starts closing a connection: queues `last` (error or go-away, beyond
    /// the send-queue cap); the flusher then writes it and half-closes, and
    /// the connection lingers until the client closes (see `conn`).
    fn close(&self, key: ConnKey, last: Option<&ServerFrame>) {
        let mut conns = self.conns.borrow_mut();
        if let Some(c) = conns.get_mut(key) {
            self.close_locked(key, c, last);
        }
    }

    fn close_locked(&self, key: ConnKey, c: &mut Conn, last: Option<&ServerFrame>) {
        if c.phase == Phase::Closing {
            return;
        }
        if let Some(frame) = last {
            if c.out.capacity() == 0 {
                c.out = self.take_buf();
            }
            c.wire.encode(frame, &mut c.out);
            ShardStats::inc(&self.stats.frames_out);
            if let Some(Frame::GoAway(g)) = &frame.frame {
                self.stats.go_away(g.reason());
            }
        }
        if c.wire != Wire::Tcp && c.phase != Phase::Upgrade {
            let code = match last.and_then(|f| f.frame.as_ref()) {
                Some(Frame::Error(e)) if e.code() == ErrorCode::FrameTooLarge => 1009,
                Some(Frame::Error(_)) => 1008,
                Some(Frame::GoAway(_)) => 1001,
                _ => 1000,
            };
            proto::ws::encode_close(code, "", None, &mut c.out);
        }
        self.start_linger(key, c);
        self.mark_dirty(key, c);
    }

    fn next_conn_id(&self) -> u64 {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        // Shard in the top 16 bits: unique on the node without coordination.
        ((self.id as u64) << 48) | n
    }

    fn message_id(&self) -> String {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        format!(
            "{}-{}-{}-{n}",
            self.node.config.node_id, self.node.boot, self.id
        )
    }

    fn conn_count(&self) -> usize {
        self.conns.borrow().len()
    }
}

/// An error frame.
pub(crate) fn error_frame(code: ErrorCode, message: &str, fatal: bool) -> ServerFrame {
    ServerFrame {
        frame: Some(Frame::Error(proto::v1::Error {
            code: code as i32,
            message: message.to_owned(),
            fatal,
        })),
    }
}

/// A go-away frame.
pub(crate) fn go_away_frame(
    reason: GoAwayReason,
    message: &str,
    reconnect_after_ms: u32,
) -> ServerFrame {
    ServerFrame {
        frame: Some(Frame::GoAway(GoAway {
            reason: reason as i32,
            message: message.to_owned(),
            reconnect_after_ms,
            reconnect_to: String::new(),
        })),
    }
}

#[cfg(test)]
mod tests {
    /// What an idle connection costs is mostly this struct (its slab entry):
    /// a field that grows it should be a deliberate choice.
    #[test]
    fn conn_stays_compact() {
        let size = std::mem::size_of::<super::Conn>();
        assert!(size <= 152, "Conn grew to {size} bytes");
    }
}
