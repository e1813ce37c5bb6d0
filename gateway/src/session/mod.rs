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
mod close;
mod context;
mod frames;
mod handover;
mod handshake;
mod inflate;
mod input;
mod qos;
mod replay;
mod rooms;
mod route;
mod sse;
mod timer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use proto::v1::{server_frame::Frame, ErrorCode, ServerFrame};

use crate::outbound::Wire;
use crate::stats::ShardStats;

pub(crate) use close::{error_frame, go_away_frame};
pub(crate) use context::{BufPool, Ctx, Effects, Env, HttpHook};
pub(crate) use handover::SessionState;
pub(crate) use rooms::RoomCursors;
pub(crate) use route::{Action, Delivery, Event, Route};

/// Which listener accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The WebSocket port: an HTTP upgrade comes first.
    WebSocket,
    /// The raw TCP port: length-prefixed frames from the first byte.
    Tcp,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
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

/// One connection's protocol state. Kept compact: with the driver's few
/// words it is what an idle connection costs (`tests::session_stays_compact`).
pub(crate) struct Session {
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
    /// The driver's mark (`shard::Conn::session_mut`): borrowed to change
    /// since an upgrade sent it ahead. Here, in the padding of the fields
    /// above, because the connection's entry has no byte to spare.
    changed: bool,
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
    /// What it was closed with (`close_reason`): 1000 + a go-away reason,
    /// an error code, or 0.
    bye: u16,
    /// QoS 1 state while messages are in flight or a replay is pending.
    qos: Option<Box<qos::QosState>>,
    /// Highest sequence the client is known to have (its resume point and
    /// acks, and what was sent to it).
    known: u64,
    /// permessage-deflate: the window of a client that keeps its context
    /// across messages, in bits (its last bytes are in `Effects::inflate`);
    /// 0 when it resets it per message, or compression is off.
    inflate_bits: u8,
}

impl Session {
    /// A connection accepted at `now`, with id `id` (unique on the node).
    pub(crate) fn new(transport: Transport, id: u64, now: Instant, env: &Env) -> Session {
        let (wire, phase) = match transport {
            Transport::WebSocket => (Wire::WsProto, Phase::Upgrade),
            Transport::Tcp => (Wire::Tcp, Phase::Auth),
        };
        Session {
            wire,
            phase,
            syncing: false,
            changed: false,
            bye: 0,
            timeout_moved: true,
            peer_closed: false,
            fin_sent: false,
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
            inflate_bits: 0,
        }
    }

    /// The connection id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The phase.
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The wire format (known once upgraded).
    pub(crate) fn wire(&self) -> Wire {
        self.wire
    }

    /// The authenticated user.
    pub(crate) fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// The device.
    pub(crate) fn device(&self) -> &Arc<str> {
        &self.device
    }

    /// The rooms joined.
    pub(crate) fn rooms(&self) -> &[Arc<str>] {
        &self.rooms
    }

    /// True once closing began (nothing more is read).
    pub(crate) fn is_closing(&self) -> bool {
        self.phase >= Phase::Closing
    }

    /// True when the driver should forget the connection.
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes to write to the socket.
    pub(crate) fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of `output()` were written.
    pub(crate) fn transmitted(&mut self, n: usize, pool: &mut BufPool) {
        if n >= self.out.len() {
            pool.put(std::mem::take(&mut self.out));
        } else {
            self.out.drain(..n);
        }
    }

    /// Gives the session's buffers back (the driver is forgetting it).
    pub(crate) fn recycle(&mut self, pool: &mut BufPool) {
        pool.put(std::mem::take(&mut self.out));
        self.partial = None;
    }

    /// True (once) when the deadline may have moved earlier.
    pub(crate) fn take_timeout_moved(&mut self) -> bool {
        std::mem::take(&mut self.timeout_moved)
    }

    /// Something routed to this connection arrived.
    pub(crate) fn handle_routed(&mut self, cx: &mut Ctx, delivery: Delivery) {
        match delivery {
            Delivery::Live(msg) => {
                if self.phase == Phase::Open && self.room_frame(cx, msg) {
                    return;
                }
                if self.phase == Phase::Open && self.queue_shared(cx, msg) {
                    ShardStats::inc(&cx.env.stats.deliveries);
                }
            }
            Delivery::Stored { seq, msg } => self.qos_deliver(cx, seq, msg),
            Delivery::Replay(replay) => self.qos_replay(cx, replay),
            Delivery::RoomHistory {
                room,
                range,
                result,
            } => {
                if self.phase == Phase::Open {
                    self.on_room_history(cx, room, range, result);
                }
            }
            Delivery::PostDone(status) => self.post_done(cx, status),
            Delivery::SendResult(result) => {
                let frame = ServerFrame {
                    frame: Some(Frame::SendResult(result)),
                };
                self.send_frame(cx, &frame);
            }
            Delivery::Authorized {
                action,
                room,
                allow,
                send,
            } => self.on_authorized(cx, action, room, allow, send),
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

    /// Queues a shared frame in this connection's wire format.
    fn queue_shared(&mut self, cx: &mut Ctx, msg: &crate::outbound::Outbound) -> bool {
        let bytes = msg.bytes(self.wire, &mut cx.fx.compressor);
        self.queue(cx, bytes)
    }

    /// Encodes and queues one frame.
    fn send_frame(&mut self, cx: &mut Ctx, frame: &ServerFrame) {
        let mut bytes = Vec::new();
        cx.fx.compressor.encode(self.wire, frame, &mut bytes);
        self.queue(cx, &bytes);
    }

    /// Sends a fatal error and closes.
    fn fail(&mut self, cx: &mut Ctx, code: ErrorCode, message: &str) {
        self.fail_with(cx, code, message, None);
    }

    /// `fail`, closing a WebSocket with `ws_code` when given (a WebSocket
    /// protocol error: 1002, 1007 or 1009) instead of 1008.
    fn fail_with(&mut self, cx: &mut Ctx, code: ErrorCode, message: &str, ws_code: Option<u16>) {
        tracing::debug!(
            shard = cx.env.shard,
            conn = self.id,
            ?code,
            "closing connection: {message}"
        );
        cx.env.stats.error(code);
        self.close_with_code(cx, Some(&error_frame(code, message, true)), ws_code);
    }
}
