//! The dialer side of a bus link: one [`Link`] per peer node, living across
//! TCP reconnects, sending numbered batches of envelopes.
//!
//! Lifecycle: `Idle` (waiting for the next connect, possibly backing off)
//! -> `Connecting` ([`Link::poll_connect`] said go) -> `Handshaking`
//! ([`Link::transport_up`] queued the `HELLO`, and with cluster secrets an
//! `AUTH` with our nonce; the acceptor's `AUTH` must prove a secret before
//! ours does, and a `WELCOME` without it is refused) -> `Up` (the
//! `WELCOME` was valid) -> `Idle` again on [`Link::transport_down`].
//!
//! Invariants:
//! - Batches are numbered from 1 for the life of the `Link` (one dialer
//!   incarnation); closed batches are kept, encoded, until a cumulative ACK
//!   (or a `WELCOME`'s `received`) covers them, then transmitted again on the
//!   next connection. An envelope `send` accepted is never dropped.
//! - Nothing is transmitted but the `HELLO` before `Up`; batches closed while
//!   down wait in the queue.
//! - Every connection that reached `transport_up` ends with exactly one
//!   [`LinkEvent::Down`]. A protocol error emits it at once and sets
//!   [`Link::wants_close`]; the caller then closes the socket and calls
//!   [`Link::transport_down`].
//! - The caller's loop: feed bytes and timeouts in, then drain
//!   [`Link::poll_connect`], [`Link::poll_transmit`] (until `None`) and
//!   [`Link::poll_event`], then sleep until [`Link::poll_timeout`].

use std::collections::VecDeque;
use std::time::Instant;

use proto::bus::{self, Hello};

use crate::backoff::Backoff;
use crate::queue::SendQueue;
use crate::timer::{Timer, TimerTable};
use crate::{Config, Identity, LinkStats};

pub use crate::queue::SendError;
pub use event::{LinkEvent, LinkState, PeerInfo};

mod event;
mod receive;

/// Most bytes one [`Link::poll_transmit`] returns (after at least one
/// batch), so a long resend does not build one huge buffer.
const MAX_TRANSMIT: usize = 1 << 20;

/// The dialer's state machine for one peer. See the module doc.
#[derive(Debug)]
pub struct Link {
    local: Identity,
    expect_peer: Option<String>,
    config: Config,
    state: LinkState,
    /// A protocol error or timeout ended this connection; waiting for the
    /// caller's `transport_down`.
    closing: bool,
    /// This connection's `Down` was already emitted.
    down_reported: bool,
    backoff: Backoff,
    timers: TimerTable,
    queue: SendQueue,
    /// `HELLO` or `PING` waiting for `poll_transmit`.
    control: Vec<u8>,
    /// Received bytes not yet forming a whole frame.
    rx: Vec<u8>,
    /// This connection's nonce (with cluster secrets).
    nonce: Option<[u8; bus::NONCE_LEN]>,
    /// The acceptor proved a secret on this connection.
    acceptor_proved: bool,
    /// The peer of the last `Up`.
    peer: Option<PeerInfo>,
    events: VecDeque<LinkEvent>,
    stats: LinkStats,
}

impl Link {
    /// A link to one peer, `Idle` and wanting a connect at `now`.
    /// `expect_peer` is the node id the peer must announce, if known; `seed`
    /// seeds the backoff jitter.
    pub fn new(
        local: Identity,
        expect_peer: Option<String>,
        config: Config,
        seed: u64,
        now: Instant,
    ) -> Link {
        let mut timers = TimerTable::default();
        timers.set(Timer::Connect, now);
        Link {
            local,
            expect_peer,
            backoff: Backoff::new(config.backoff_min, config.backoff_max, seed),
            config,
            state: LinkState::Idle,
            closing: false,
            down_reported: false,
            timers,
            queue: SendQueue::new(),
            control: Vec::new(),
            rx: Vec::new(),
            nonce: None,
            acceptor_proved: false,
            peer: None,
            events: VecDeque::new(),
            stats: LinkStats::default(),
        }
    }

    /// `true` once when the caller should start a TCP connect now.
    pub fn poll_connect(&mut self, now: Instant) -> bool {
        if self.state != LinkState::Idle || !self.timers.is_due(Timer::Connect, now) {
            return false;
        }
        self.timers.stop(Timer::Connect);
        self.timers
            .set(Timer::Hello, now + self.config.hello_timeout);
        self.state = LinkState::Connecting;
        self.closing = false;
        self.stats.connects += 1;
        true
    }

    /// The TCP connect failed (or was aborted): try again after a backoff.
    pub fn connect_failed(&mut self, now: Instant) {
        self.transport_down(now);
    }

    /// The TCP connection is established: queues the `HELLO`.
    pub fn transport_up(&mut self, _now: Instant) {
        if self.state != LinkState::Connecting {
            return;
        }
        self.state = LinkState::Handshaking;
        self.down_reported = false;
        self.control.clear();
        let mut hello = Vec::new();
        bus::encode_hello(&self.hello(), &mut hello);
        self.control = hello;
        self.acceptor_proved = false;
        self.nonce = None;
        if !self.config.secrets.is_empty() {
            let nonce = crate::auth::nonce();
            bus::encode_auth(&nonce, &[], &mut self.control);
            self.nonce = Some(nonce);
        }
    }

    /// The cluster secrets change (a rotation): the next handshake proves
    /// these; a link already up stays up.
    pub fn set_secrets(&mut self, secrets: crate::Secrets) {
        self.config.secrets = secrets;
    }

    /// This node's `HELLO`.
    pub(super) fn hello(&self) -> Hello<'_> {
        Hello {
            version: bus::VERSION,
            shard: self.local.shard,
            shards: self.local.shards,
            incarnation: self.local.incarnation,
            node_id: &self.local.node_id,
        }
    }

    /// The TCP connection is gone (lost, or closed after `wants_close`).
    /// Unacked batches are kept for resend; the next connect is scheduled
    /// after a backoff.
    pub fn transport_down(&mut self, now: Instant) {
        match self.state {
            LinkState::Idle => return,
            LinkState::Connecting => {}
            LinkState::Handshaking | LinkState::Up => {
                if !self.down_reported {
                    self.report_down("connection closed".to_owned());
                }
            }
        }
        self.state = LinkState::Idle;
        self.closing = false;
        self.down_reported = false;
        self.rx = Vec::new();
        self.control.clear();
        for t in [Timer::Hello, Timer::Idle, Timer::Heartbeat] {
            self.timers.stop(t);
        }
        self.timers
            .set(Timer::Connect, now + self.backoff.next_delay());
    }

    /// Ends the current connection on a protocol error or timeout: one
    /// `Down`, then `wants_close` until the caller's `transport_down`.
    pub(super) fn fail(&mut self, reason: String) {
        if self.closing {
            return;
        }
        self.closing = true;
        if matches!(self.state, LinkState::Handshaking | LinkState::Up) {
            self.report_down(reason);
        }
        for t in [Timer::Hello, Timer::Idle, Timer::Heartbeat] {
            self.timers.stop(t);
        }
        self.control.clear();
    }

    pub(super) fn report_down(&mut self, reason: String) {
        self.down_reported = true;
        self.stats.downs += 1;
        self.events.push_back(LinkEvent::Down { reason });
    }

    /// Runs every timer due at `now`: flush deadline, handshake and idle
    /// timeouts (which close the connection), heartbeat. A due reconnect is
    /// reported by [`Link::poll_connect`].
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if !self.timers.is_due(timer, now) {
                continue;
            }
            match timer {
                Timer::Flush => self.flush(now),
                Timer::Connect => {}
                Timer::Hello => {
                    self.timers.stop(Timer::Hello);
                    self.fail(format!(
                        "no WELCOME within {:?} of the connect",
                        self.config.hello_timeout
                    ));
                }
                Timer::Idle => self.fail(format!(
                    "nothing received for {:?}",
                    self.config.idle_timeout
                )),
                Timer::Heartbeat => {
                    bus::encode_ping(&mut self.control);
                    self.timers
                        .set(Timer::Heartbeat, now + self.config.heartbeat);
                }
            }
        }
    }

    /// The earliest instant [`Link::handle_timeout`] (or
    /// [`Link::poll_connect`]) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Queues one envelope into the open batch, also while down. Refuses it
    /// (never blocks, never drops what was accepted) when the queue is full.
    pub fn send(&mut self, now: Instant, envelope: &[u8]) -> Result<(), SendError> {
        let result = self.queue.push(envelope, &self.config);
        if result == Err(SendError::Full) {
            self.stats.envelopes_refused += 1;
        }
        if !self.queue.has_open() {
            self.timers.stop(Timer::Flush);
        } else if self.timers.get(Timer::Flush).is_none() {
            self.timers.set(Timer::Flush, now + self.config.flush_delay);
        }
        self.sync_stats();
        result
    }

    /// Closes the open batch now (the shard calls this at the end of each
    /// routing round, so a round is one write).
    pub fn flush(&mut self, _now: Instant) {
        self.queue.close();
        self.timers.stop(Timer::Flush);
    }

    /// Bytes to write now, several frames at most about 1 MiB; call until
    /// `None`. Only the `HELLO` and `AUTH` go out before `Up`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.closing {
            return None;
        }
        let out = match self.state {
            LinkState::Handshaking if !self.control.is_empty() => std::mem::take(&mut self.control),
            LinkState::Up => {
                if self.timers.is_due(Timer::Flush, now) {
                    self.flush(now);
                }
                if self.control.is_empty() && !self.queue.has_unsent() {
                    return None;
                }
                let mut out = std::mem::take(&mut self.control);
                let t = self.queue.transmit(&mut out, MAX_TRANSMIT);
                self.stats.batches_out += t.batches;
                self.stats.envelopes_out += t.envelopes;
                self.stats.batches_resent += t.resent;
                self.timers
                    .set(Timer::Heartbeat, now + self.config.heartbeat);
                out
            }
            _ => return None,
        };
        self.stats.bytes_out += out.len() as u64;
        Some(out)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// The connection must be closed (protocol error or timeout); call
    /// [`Link::transport_down`] (or [`Link::connect_failed`]) once it is.
    pub fn wants_close(&self) -> bool {
        self.closing
    }

    /// Where the link is in its lifecycle.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// The peer of the last `Up`, if any.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    /// Counters over the link's life.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Nothing unsent or unacked (the open batch included).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(super) fn sync_stats(&mut self) {
        self.stats.queued_bytes = self.queue.queued_bytes();
    }
}
