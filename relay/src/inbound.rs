//! The acceptor side of a bus link: one [`Inbound`] per accepted TCP
//! connection, delivering the dialer's envelopes exactly once and in order.
//!
//! Protocol: the first frame must be a `HELLO`; with cluster secrets the
//! challenge-response comes next (`AUTH` from the dialer with its nonce,
//! ours with our nonce and proofs, the dialer's with its proofs; anything
//! else, or a proof that fails, closes the connection before a single
//! envelope is read, counted in `auth_failures`). Then a `WELCOME`
//! whose `received` comes from [`Seen`] (0 when the dialer's incarnation is
//! new). Then each `BATCH` numbered `received + 1` is delivered and recorded
//! in `Seen`; one `<= received` is a duplicate (a resend) and dropped; a gap
//! is a protocol error. When `received` is 0 the first batch may have any
//! number: the dialer resumes after its last ack, which an earlier process
//! of this acceptor gave before it restarted. A `PING` is answered by an `ACK`. Each
//! [`Inbound::handle_bytes`] call that received batches or pings ends with
//! one cumulative `ACK`, not one per batch.
//!
//! Invariants:
//! - [`Seen`] is the truth, not this connection: an old connection of the
//!   same peer shard still draining can never make this one deliver twice,
//!   and a connection whose incarnation was superseded is closed.
//! - An `ACK` never covers more than this connection's `WELCOME` or
//!   batches it carried, so the dialer's "ack beyond what was sent" check
//!   holds even when another connection advanced `Seen`.
//! - Envelopes are zero-copy slices of one `Bytes` per batch frame.
//! - A protocol error or timeout emits one [`InboundEvent::Closed`] and sets
//!   [`Inbound::wants_close`]; nothing is read or written after it.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use proto::bus::{self, Auth, Batch, Frame, Hello, Kind, Welcome, NONCE_LEN};

use crate::auth::{self, Role};
use crate::{Config, Identity, InboundStats, Seen};

/// Largest `HELLO` or `AUTH` body accepted before the handshake is done
/// (a HELLO is at most 79 bytes, an AUTH 145).
const PREAUTH_MAX_BODY: usize = 256;

/// Where the challenge-response of a connection stands (`HELLO` received,
/// no `WELCOME` yet).
#[derive(Debug)]
enum Pending {
    /// Waiting for the dialer's nonce.
    Nonce(Identity),
    /// Our proofs went out; waiting for the dialer's.
    Proof {
        hello: Identity,
        dialer: [u8; NONCE_LEN],
        ours: [u8; NONCE_LEN],
    },
}

impl Pending {
    fn hello(&self) -> &Identity {
        match self {
            Pending::Nonce(h) | Pending::Proof { hello: h, .. } => h,
        }
    }
}

fn as_hello(id: &Identity) -> Hello<'_> {
    Hello {
        version: bus::VERSION,
        shard: id.shard,
        shards: id.shards,
        incarnation: id.incarnation,
        node_id: &id.node_id,
    }
}

/// What happened on an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    /// The dialer introduced itself (and was answered).
    Hello {
        /// Who it is.
        peer: Identity,
    },
    /// One envelope, delivered once, in the dialer's order.
    Envelope(Bytes),
    /// The connection must be closed: protocol error or timeout.
    Closed {
        /// Why, in one line.
        reason: String,
    },
}

/// The acceptor's state machine for one connection. See the module doc.
#[derive(Debug)]
pub struct Inbound {
    local: Identity,
    config: Config,
    buf: BytesMut,
    /// The dialer's `HELLO` while it proves the secret.
    pending: Option<Pending>,
    peer: Option<Identity>,
    /// Highest batch this connection may acknowledge.
    ack_upto: u64,
    out: Vec<u8>,
    events: VecDeque<InboundEvent>,
    closed: bool,
    /// The `HELLO` deadline, then the idle deadline.
    deadline: Instant,
    stats: InboundStats,
}

impl Inbound {
    /// A connection accepted at `now` by the node `local`.
    pub fn new(local: Identity, config: Config, now: Instant) -> Inbound {
        Inbound {
            deadline: now + config.hello_timeout,
            local,
            config,
            buf: BytesMut::new(),
            pending: None,
            peer: None,
            ack_upto: 0,
            out: Vec::new(),
            events: VecDeque::new(),
            closed: false,
            stats: InboundStats::default(),
        }
    }

    /// Bytes received from the dialer, in any chunking.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8], seen: &mut Seen) {
        if self.closed {
            return;
        }
        self.stats.bytes_in += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.peer.is_some() {
            self.deadline = now + self.config.idle_timeout;
        }
        let mut ack = false;
        while !self.closed {
            let header = match bus::peek_header(&self.buf, &self.config.limits) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    self.close(format!("bad frame from the dialer: {e}"));
                    break;
                }
            };
            // Before the handshake only a small HELLO or AUTH may come: an
            // unknown dialer cannot make us buffer a large body.
            let small = header.body_len <= PREAUTH_MAX_BODY;
            if self.peer.is_none() && !(small && matches!(header.kind, Kind::Hello | Kind::Auth)) {
                let got = format!("a {:?} frame of {} bytes", header.kind, header.body_len);
                match self.pending {
                    Some(_) => self.refuse(format!("expected AUTH, got {got}")),
                    None => self.close(format!("expected HELLO, got {got}")),
                }
                break;
            }
            let len = header.frame_len();
            if self.buf.len() < len {
                // Checked against `max_body` already: safe to reserve.
                self.buf.reserve(len - self.buf.len());
                break;
            }
            let bytes = self.buf.split_to(len).freeze();
            let frame = match bus::parse(&bytes, &self.config.limits) {
                Ok(Some((frame, _))) => frame,
                Ok(None) => break, // Unreachable: the whole frame is here.
                Err(e) => {
                    self.close(format!("bad frame from the dialer: {e}"));
                    break;
                }
            };
            match (self.peer.is_some(), frame) {
                (false, Frame::Hello(_)) if self.pending.is_some() => {
                    self.refuse("HELLO twice".to_owned())
                }
                (false, Frame::Hello(hello)) => self.on_hello(now, &hello, seen),
                (false, Frame::Auth(a)) if self.pending.is_some() => self.on_auth(now, &a, seen),
                (false, Frame::Auth(_)) if self.config.secrets.is_empty() => {
                    self.close("the dialer sent AUTH: this node has no cluster secret".to_owned())
                }
                (false, other) if self.pending.is_some() => {
                    self.refuse(format!("expected AUTH, got {:?}", other.kind()))
                }
                (false, other) => self.close(format!("expected HELLO, got {:?}", other.kind())),
                (true, Frame::Batch(batch)) => {
                    self.on_batch(&bytes, &batch, seen);
                    ack = true;
                }
                (true, Frame::Ping) => ack = true,
                // A dialer with a secret talking to us without one: our
                // WELCOME tells it we proved nothing, and it refuses us.
                (true, Frame::Auth(_)) if self.config.secrets.is_empty() => {}
                (true, Frame::Hello(_)) => self.close("HELLO twice".to_owned()),
                (true, other) => self.close(format!(
                    "unexpected {:?} frame from the dialer",
                    other.kind()
                )),
            }
        }
        if ack && !self.closed {
            bus::encode_ack(self.ack_upto, &mut self.out);
        }
    }

    fn on_hello(&mut self, now: Instant, hello: &Hello<'_>, seen: &mut Seen) {
        if hello.version != bus::VERSION {
            return self.close(format!(
                "dialer speaks bus version {}, we speak {}",
                hello.version,
                bus::VERSION
            ));
        }
        if hello.shard >= hello.shards {
            return self.close(format!(
                "dialer says shard {} of {}",
                hello.shard, hello.shards
            ));
        }
        let hello = Identity {
            node_id: hello.node_id.to_owned(),
            incarnation: hello.incarnation,
            shard: hello.shard,
            shards: hello.shards,
        };
        if self.config.secrets.is_empty() {
            self.welcome(now, hello, seen);
        } else {
            self.pending = Some(Pending::Nonce(hello));
        }
    }

    /// The dialer's nonce (answered with ours and our proofs), then its
    /// proofs (checked, then welcomed).
    fn on_auth(&mut self, now: Instant, a: &Auth<'_>, seen: &mut Seen) {
        match self.pending.take() {
            Some(Pending::Nonce(hello)) => {
                let ours = auth::nonce();
                let secrets = &self.config.secrets;
                let proofs =
                    auth::prove(secrets, Role::Acceptor, a.nonce, &ours, &as_hello(&hello));
                bus::encode_auth(&ours, &proofs, &mut self.out);
                self.pending = Some(Pending::Proof {
                    hello,
                    dialer: *a.nonce,
                    ours,
                });
            }
            Some(Pending::Proof {
                hello,
                dialer,
                ours,
            }) => {
                let secrets = &self.config.secrets;
                let h = as_hello(&hello);
                let proved = a.nonce == &dialer
                    && auth::verify(secrets, Role::Dialer, &dialer, &ours, &h, a.proofs());
                if !proved {
                    let id = &hello.node_id;
                    return self.refuse(format!("{id:?} did not prove the cluster secret"));
                }
                self.welcome(now, hello, seen);
            }
            None => self.close("AUTH out of turn".to_owned()),
        }
    }

    /// A dialer that did not authenticate: closed and counted.
    fn refuse(&mut self, reason: String) {
        self.stats.auth_failures += 1;
        self.close(reason);
    }

    /// The dialer is who it says (and proved the secret, if there is one).
    fn welcome(&mut self, now: Instant, hello: Identity, seen: &mut Seen) {
        let received = match seen.get(&hello.node_id, hello.shard) {
            Some(e) if e.incarnation == hello.incarnation => e.received,
            _ => {
                // A new incarnation: its batches start again from 1, and any
                // connection of the old one is superseded.
                seen.record(&hello.node_id, hello.shard, hello.incarnation, 0);
                0
            }
        };
        bus::encode_welcome(
            &Welcome {
                version: bus::VERSION,
                incarnation: self.local.incarnation,
                received,
                node_id: &self.local.node_id,
            },
            &mut self.out,
        );
        let peer = hello;
        self.ack_upto = received;
        self.peer = Some(peer.clone());
        self.deadline = now + self.config.idle_timeout;
        self.events.push_back(InboundEvent::Hello { peer });
    }

    fn on_batch(&mut self, bytes: &Bytes, batch: &Batch<'_>, seen: &mut Seen) {
        let Some(peer) = &self.peer else { return };
        let received = match seen.get(&peer.node_id, peer.shard) {
            Some(e) if e.incarnation == peer.incarnation => e.received,
            Some(e) => {
                let reason = format!("superseded by incarnation {}", e.incarnation);
                return self.close(reason);
            }
            None => return self.close("peer forgotten".to_owned()),
        };
        if batch.seq <= received {
            self.stats.duplicates += 1;
            self.ack_upto = self.ack_upto.max(batch.seq);
            return;
        }
        // Nothing yet from this incarnation: the dialer resumes after its
        // last ack, which an earlier acceptor process (or forgotten entry)
        // gave, so the first batch may have any number.
        if received != 0 && batch.seq != received + 1 {
            let reason = format!("batch {} after batch {received}", batch.seq);
            return self.close(reason);
        }
        for envelope in batch.envelopes() {
            self.events
                .push_back(InboundEvent::Envelope(bytes.slice_ref(envelope)));
        }
        seen.record(&peer.node_id, peer.shard, peer.incarnation, batch.seq);
        self.ack_upto = batch.seq;
        self.stats.batches_in += 1;
        self.stats.envelopes_in += u64::from(batch.count);
    }

    fn close(&mut self, reason: String) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.buf = BytesMut::new();
        self.out = Vec::new();
        self.events.push_back(InboundEvent::Closed { reason });
    }

    /// Closes the connection if the `HELLO` (or, after it, any byte) is
    /// overdue at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed || now < self.deadline {
            return;
        }
        if let Some(p) = &self.pending {
            let id = &p.hello().node_id;
            let within = self.config.hello_timeout;
            self.refuse(format!("{id:?} did not complete AUTH within {within:?}"));
        } else if self.peer.is_none() {
            self.close(format!("no HELLO within {:?}", self.config.hello_timeout));
        } else {
            self.close(format!(
                "nothing received for {:?}",
                self.config.idle_timeout
            ));
        }
    }

    /// When [`Inbound::handle_timeout`] has something to do; `None` once
    /// closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then_some(self.deadline)
    }

    /// Bytes to write now (`AUTH`, `WELCOME`, `ACK`).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.closed || self.out.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.out))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<InboundEvent> {
        self.events.pop_front()
    }

    /// The connection must be closed (an [`InboundEvent::Closed`] said why).
    pub fn wants_close(&self) -> bool {
        self.closed
    }

    /// The dialer, once its `HELLO` arrived.
    pub fn peer(&self) -> Option<&Identity> {
        self.peer.as_ref()
    }

    /// Counters of this connection.
    pub fn stats(&self) -> &InboundStats {
        &self.stats
    }
}
