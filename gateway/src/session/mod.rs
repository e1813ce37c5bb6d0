//! One connection's protocol, sans-IO: the session.
//!
//! A `Session` owns everything the client protocol decides for one
//! connection: the phase (upgrade, auth, open, closing), framing through
//! `proto`, the handshake, heartbeat and token-expiry deadlines, the QoS 1
//! in-flight window with its retransmit backoff and resume ordering, the
//! send-queue cap (slow-consumer policy) and the closing state machine. It is
//! the shape of quinn-proto's `Connection`:
//!
//! - fed `handle_bytes(cx, bytes)`, `handle_timeout(cx)`,
//!   `handle_routed(cx, delivery)`, `handle_eof(cx)`;
//! - answered through `output()` (bytes for the socket), `wants_fin()`,
//!   the routes it appends to `cx.fx.routes` (messages for the router),
//!   `poll_timeout(env)` (its next deadline) and `is_closed()`.
//!
//! It opens no socket, reads no clock (`cx.now` is the only time it knows,
//! Unix time derives from it through `env.clock`), holds no reference to its
//! shard and never calls the mesh: the shard (`crate::shard`) is the driver
//! that moves bytes, keeps the timing wheel and the routing tables, and turns
//! routes into mesh messages. Tests drive sessions on simulated time
//! (`tests`).
//!
//! Invariants: an idle session holds no buffer (`out` is a pooled buffer only
//! while bytes wait; `partial` exists only while a frame is incomplete); a
//! closing session queues nothing more; the deadline `poll_timeout` returns
//! only moves earlier when `take_timeout_moved` says so (the driver re-arms
//! its wheel entry lazily otherwise).
mod backoff;
mod frames;
mod handshake;
mod input;
mod qos;
mod timer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use proto::v1::{server_frame::Frame, ErrorCode, GoAway, GoAwayReason, ServerFrame};

use crate::auth::Verifier;
use crate::clock::Clock;
use crate::config::{Limits, QosConfig};
use crate::control::metrics::ShardStats;
use crate::outbound::{Outbound, Wire};
use crate::store::{Replay, StoreError, Stored};

pub use backoff::Backoff;

/// First allocation of a write buffer (it grows as frames queue up).
const BUF_INITIAL: usize = 512;
/// Write buffers kept for reuse, and the largest one kept.
const POOL_BUFFERS: usize = 1024;
const POOL_BUF_MAX: usize = 16 * 1024;

/// Which listener accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The WebSocket port: an HTTP upgrade comes first.
    WebSocket,
    /// The raw TCP port: length-prefixed frames from the first byte.
    Tcp,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// WebSocket: waiting for the HTTP upgrade request.
    Upgrade,
    /// Waiting for the Auth frame.
    Auth,
    /// Authenticated.
    Open,
    /// Closing: nothing more is read or queued; pending output drains, then
    /// our FIN, then the client's FIN (or the linger deadline).
    Closing,
    /// Done: the driver forgets the connection.
    Closed,
}

/// What every session of a shard reads and never changes.
pub struct Env {
    /// Per-connection limits.
    pub limits: Limits,
    /// QoS 1 settings.
    pub qos: QosConfig,
    /// Verifies client tokens.
    pub verifier: Verifier,
    /// Maps `now` to Unix time.
    pub clock: Clock,
    /// This node's id (in `AuthOk`).
    pub node_id: String,
    /// This shard's index (in `AuthOk`).
    pub shard: u16,
    /// Counters the session updates.
    pub stats: Arc<ShardStats>,
    /// Prefix of the message ids this shard makes (node, boot, shard).
    pub id_prefix: String,
    /// The device name of connections that name none (shared).
    pub no_device: Arc<str>,
}

/// What sessions produce for their driver, and what they draw on: one per
/// shard, lent to each call through `Ctx`.
#[derive(Default)]
pub struct Effects {
    /// Messages for the router, in order, from the session just called.
    pub routes: Vec<Route>,
    /// Write buffers for reuse.
    pub pool: BufPool,
    /// Client sends are refused with `OVERLOADED` while set (the driver's
    /// mesh backlog is over its bound).
    pub overloaded: bool,
    next_msg: u64,
}

impl Effects {
    /// A new message id, unique on the node and across restarts.
    fn message_id(&mut self, env: &Env) -> String {
        self.next_msg += 1;
        format!("{}-{}", env.id_prefix, self.next_msg)
    }
}

/// One call's context: the time, the shard's environment, its effects.
pub struct Ctx<'a> {
    /// Now, as the driver read it.
    pub now: Instant,
    /// The shard's environment.
    pub env: &'a Env,
    /// Where the session's routes go and its buffers come from.
    pub fx: &'a mut Effects,
}

/// A message the session hands to the router (the driver fills in which
/// connection it came from).
#[derive(Debug)]
pub enum Route {
    /// Authenticated: list the connection under its user and tell the owner.
    Online {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// The connection's wire.
        wire: Wire,
    },
    /// Joined a room (first join of this room on this connection).
    Joined(Arc<str>),
    /// Left a room it was in.
    Left(Arc<str>),
    /// A live message for a user's connections.
    ToUser {
        /// Recipient.
        user: Arc<str>,
        /// The frame.
        msg: Arc<Outbound>,
    },
    /// A message for a room's members.
    ToRoom {
        /// The room.
        room: Arc<str>,
        /// The frame.
        msg: Arc<Outbound>,
    },
    /// A QoS 1 message for a user: store it, answer this connection.
    Append {
        /// Recipient.
        user: Arc<str>,
        /// The message (seq assigned by the store).
        msg: Box<Stored>,
        /// The sender's id for dedupe.
        client_msg_id: String,
    },
    /// Read this connection's unacknowledged QoS 1 messages.
    Read {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// Resume point (`None`: the device's stored cursor).
        after: Option<u64>,
        /// Most messages to read.
        max: usize,
    },
    /// The device acknowledged up to `seq`.
    Ack {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// Cumulative sequence.
        seq: u64,
    },
}

/// Something the router brings to a session.
pub enum Delivery<'a> {
    /// A live frame (QoS 0, or a room message).
    Live(&'a Outbound),
    /// A stored QoS 1 message of the session's user.
    Stored {
        /// Its sequence.
        seq: u64,
        /// The frame.
        msg: &'a Arc<Outbound>,
    },
    /// The answer to a `Route::Read`.
    Replay(Result<Replay, StoreError>),
    /// The outcome of a QoS 1 send (answer to `Route::Append`).
    SendResult(proto::v1::SendResult),
}

/// Write buffers kept for reuse by one shard.
#[derive(Default)]
pub struct BufPool(Vec<Vec<u8>>);

impl BufPool {
    /// A buffer, reused when one is kept.
    pub fn take(&mut self) -> Vec<u8> {
        self.0
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_INITIAL))
    }

    /// Keeps a buffer for reuse (small ones only, up to a count).
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > POOL_BUF_MAX || self.0.len() >= POOL_BUFFERS {
            return;
        }
        buf.clear();
        self.0.push(buf);
    }

    /// Frees every kept buffer. Keeping even a few pins the allocator pages
    /// they sit in, scattered over the heap by a burst: 10k-subscriber
    /// fan-out, RSS 5 s after the burst was 34 MiB keeping 64 and 19 MiB
    /// (the level before the burst) keeping none.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One connection's protocol state. Kept compact: with the driver's few
/// words it is what an idle connection costs (`tests::session_stays_compact`).
pub struct Session {
    wire: Wire,
    phase: Phase,
    /// Waiting for a replay: live QoS 1 deliveries are ignored meanwhile.
    syncing: bool,
    /// The next deadline may have moved earlier since the driver last asked.
    timeout_moved: bool,
    /// The peer closed (EOF) or the socket failed.
    peer_closed: bool,
    /// Our FIN was sent (closing, output flushed).
    fin_sent: bool,
    /// The client sent a Resume on this connection: `known` is its word.
    resumed: bool,
    id: u64,
    user: Option<Arc<str>>,
    device: Arc<str>,
    rooms: Box<[Arc<str>]>,
    /// Bytes waiting to be written (a pooled buffer, or empty and unallocated).
    out: Vec<u8>,
    /// A partial frame or fragmented message, only while one is pending.
    partial: Option<Box<input::Partial>>,
    /// Accept time until authenticated, then the time bytes last arrived,
    /// then (closing) the time closing began.
    stamp: Instant,
    /// Token expiry, Unix seconds (0: never).
    expires_at: u32,
    /// QoS 1 state while messages are in flight or a replay is pending.
    qos: Option<Box<qos::QosState>>,
    /// Highest sequence the client is known to have (its resume point and
    /// acks, and what was sent to it).
    known: u64,
}

impl Session {
    /// A connection accepted at `now`, with id `id` (unique on the node).
    pub fn new(transport: Transport, id: u64, now: Instant, env: &Env) -> Session {
        let (wire, phase) = match transport {
            Transport::WebSocket => (Wire::WsProto, Phase::Upgrade),
            Transport::Tcp => (Wire::Tcp, Phase::Auth),
        };
        Session {
            wire,
            phase,
            syncing: false,
            timeout_moved: true,
            peer_closed: false,
            fin_sent: false,
            resumed: false,
            id,
            user: None,
            device: env.no_device.clone(),
            rooms: Box::default(),
            out: Vec::new(),
            partial: None,
            stamp: now,
            expires_at: 0,
            qos: None,
            known: 0,
        }
    }

    /// The connection id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The wire format (known once upgraded).
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The authenticated user.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// The device.
    pub fn device(&self) -> &Arc<str> {
        &self.device
    }

    /// The rooms joined.
    pub fn rooms(&self) -> &[Arc<str>] {
        &self.rooms
    }

    /// True once closing began (nothing more is read).
    pub fn is_closing(&self) -> bool {
        self.phase >= Phase::Closing
    }

    /// True when the driver should forget the connection.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes to write to the socket.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of `output()` were written.
    pub fn transmitted(&mut self, n: usize, pool: &mut BufPool) {
        if n >= self.out.len() {
            pool.put(std::mem::take(&mut self.out));
        } else {
            self.out.drain(..n);
        }
    }

    /// Gives the session's buffers back (the driver is forgetting it).
    pub fn recycle(&mut self, pool: &mut BufPool) {
        pool.put(std::mem::take(&mut self.out));
        self.partial = None;
    }

    /// Closing, output flushed, FIN not yet sent: the driver half-closes.
    pub fn wants_fin(&self) -> bool {
        self.phase == Phase::Closing && self.out.is_empty() && !self.fin_sent
    }

    /// The driver sent our FIN.
    pub fn fin_sent(&mut self) {
        self.fin_sent = true;
        if self.peer_closed {
            self.phase = Phase::Closed;
        }
    }

    /// True (once) when the deadline may have moved earlier.
    pub fn take_timeout_moved(&mut self) -> bool {
        std::mem::take(&mut self.timeout_moved)
    }

    /// The peer closed its side (EOF) or the socket failed on read.
    pub fn handle_eof(&mut self, cx: &mut Ctx) {
        self.peer_closed = true;
        if self.phase == Phase::Closing && self.fin_sent {
            self.phase = Phase::Closed;
        }
        self.close_with(cx, None);
    }

    /// A write failed: the peer is gone, nothing more can be written.
    pub fn handle_write_error(&mut self, cx: &mut Ctx) {
        self.out.clear();
        self.peer_closed = true;
        if self.phase < Phase::Closing {
            self.begin_closing(cx);
        }
    }

    /// Closes without a last frame (drain deadline, shutdown).
    pub fn close(&mut self, cx: &mut Ctx) {
        self.close_with(cx, None);
    }

    /// An operator kicked the user: go away and close.
    pub fn kick(&mut self, cx: &mut Ctx) {
        let bye = go_away_frame(GoAwayReason::Kicked, "kicked by an operator", 0);
        self.close_with(cx, Some(&bye));
    }

    /// The node drains: an authenticated client is asked to reconnect
    /// elsewhere (and closes itself); one not yet authenticated is closed.
    /// True when a go-away was sent.
    pub fn drain(&mut self, cx: &mut Ctx, reconnect_after_ms: u32) -> bool {
        match self.phase {
            Phase::Open => {
                let bye = go_away_frame(
                    GoAwayReason::Draining,
                    "node draining: reconnect",
                    reconnect_after_ms,
                );
                self.send_frame(cx, &bye);
                cx.env.stats.go_away(GoAwayReason::Draining);
                true
            }
            Phase::Upgrade | Phase::Auth => {
                self.close(cx);
                false
            }
            Phase::Closing | Phase::Closed => false,
        }
    }

    /// Something routed to this connection arrived.
    pub fn handle_routed(&mut self, cx: &mut Ctx, delivery: Delivery) {
        match delivery {
            Delivery::Live(msg) => {
                if self.phase == Phase::Open && self.queue(cx, msg.bytes(self.wire)) {
                    ShardStats::inc(&cx.env.stats.deliveries);
                }
            }
            Delivery::Stored { seq, msg } => self.qos_deliver(cx, seq, msg),
            Delivery::Replay(replay) => self.qos_replay(cx, replay),
            Delivery::SendResult(result) => {
                let frame = ServerFrame {
                    frame: Some(Frame::SendResult(result)),
                };
                self.send_frame(cx, &frame);
            }
        }
    }

    /// Appends bytes to the pending output, applying the slow-consumer
    /// policy: past `send_queue_bytes` the connection gets an error frame
    /// (beyond the cap) and closes. False when nothing was queued.
    fn queue(&mut self, cx: &mut Ctx, bytes: &[u8]) -> bool {
        if self.phase >= Phase::Closing {
            return false;
        }
        // One frame always fits an empty queue (a frame near the size limit
        // plus its envelope may pass the cap): the cap bounds the backlog.
        let cap = cx.env.limits.send_queue_bytes;
        if !self.out.is_empty() && self.out.len() + bytes.len() > cap {
            ShardStats::inc(&cx.env.stats.slow_consumer_closes);
            cx.env.stats.error(ErrorCode::SlowConsumer);
            let err = error_frame(ErrorCode::SlowConsumer, "send queue full: closing", true);
            self.close_with(cx, Some(&err));
            return false;
        }
        if self.out.capacity() == 0 {
            self.out = cx.fx.pool.take();
        }
        self.out.extend_from_slice(bytes);
        ShardStats::inc(&cx.env.stats.frames_out);
        true
    }

    /// Encodes and queues one frame.
    fn send_frame(&mut self, cx: &mut Ctx, frame: &ServerFrame) {
        let mut bytes = Vec::new();
        self.wire.encode(frame, &mut bytes);
        self.queue(cx, &bytes);
    }

    /// Sends a fatal error and closes.
    fn fail(&mut self, cx: &mut Ctx, code: ErrorCode, message: &str) {
        tracing::debug!(
            shard = cx.env.shard,
            conn = self.id,
            ?code,
            "closing connection: {message}"
        );
        cx.env.stats.error(code);
        self.close_with(cx, Some(&error_frame(code, message, true)));
    }

    /// Starts closing: queues `last` (error or go-away, beyond the
    /// send-queue cap) and the WebSocket close; the driver then writes them
    /// and half-closes, and the session lingers until the client closes.
    fn close_with(&mut self, cx: &mut Ctx, last: Option<&ServerFrame>) {
        if self.phase >= Phase::Closing {
            return;
        }
        if let Some(frame) = last {
            if self.out.capacity() == 0 {
                self.out = cx.fx.pool.take();
            }
            self.wire.encode(frame, &mut self.out);
            ShardStats::inc(&cx.env.stats.frames_out);
            if let Some(Frame::GoAway(g)) = &frame.frame {
                cx.env.stats.go_away(g.reason());
            }
        }
        if self.wire != Wire::Tcp && self.phase != Phase::Upgrade {
            let code = match last.and_then(|f| f.frame.as_ref()) {
                Some(Frame::Error(e)) if e.code() == ErrorCode::FrameTooLarge => 1009,
                Some(Frame::Error(_)) => 1008,
                Some(Frame::GoAway(_)) => 1001,
                _ => 1000,
            };
            if self.out.capacity() == 0 {
                self.out = cx.fx.pool.take();
            }
            proto::ws::encode_close(code, "", None, &mut self.out);
        }
        self.begin_closing(cx);
    }

    /// Enters the closing phase: the linger deadline counts from now.
    fn begin_closing(&mut self, cx: &mut Ctx) {
        self.phase = Phase::Closing;
        self.stamp = cx.now;
        self.partial = None;
        self.syncing = false;
        self.timeout_moved = true;
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
