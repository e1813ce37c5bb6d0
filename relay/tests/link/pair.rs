//! A dialer and an acceptor joined by a simulated TCP connection, on
//! simulated time, in the shape of quinn-proto's `tests/util.rs` `Pair`:
//! `Instant::now()` is read once, then [`Pair::step`] moves bytes both ways
//! and jumps the clock to the next thing either side (or the wire) wants.
//!
//! The wire keeps every write in flight for `latency`; [`Pair::cut`] loses
//! what is in flight and both sides see the connection go (the acceptor's
//! [`Inbound`] is dropped, and a new one is made at the next connect).
//! Every byte the dialer writes is also parsed by `proto::bus::parse`, one
//! stream per connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::bus::{self, Frame, Limits};
use relay::{Config, Identity, Inbound, InboundEvent, Link, LinkEvent, Seen};

/// Bytes written at one instant, arriving `latency` later.
type Wire = VecDeque<(Instant, Vec<u8>)>;

pub fn identity(node_id: &str, incarnation: u64) -> Identity {
    Identity {
        node_id: node_id.to_owned(),
        incarnation,
        shard: 0,
        shards: 1,
    }
}

/// An envelope carrying its index, padded to `len` bytes (at least 4).
pub fn envelope(i: u32, len: usize) -> Vec<u8> {
    let mut e = i.to_be_bytes().to_vec();
    e.resize(len.max(4), 0xEE);
    e
}

pub fn index_of(envelope: &[u8]) -> u32 {
    u32::from_be_bytes(envelope[..4].try_into().unwrap())
}

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub latency: Duration,
    pub config: Config,
    pub link: Link,
    pub server: Identity,
    pub inbound: Option<Inbound>,
    pub seen: Seen,
    /// The acceptor listens; when false, connects are refused.
    pub accepting: bool,
    /// The acceptor reads nothing and writes nothing (a hung peer).
    pub silent: bool,
    /// A connect in progress completes (or fails) at this instant.
    pub connect_at: Option<Instant>,
    pub to_server: Wire,
    pub to_client: Wire,
    /// Deliver writes in random chunks from this generator.
    pub chunking: Option<fastrand::Rng>,
    /// An old connection the acceptor still drains after a cut (half-open):
    /// its inbound and the bytes it has yet to read.
    pub lagging: Option<(Inbound, Vec<u8>)>,
    pub delivered: Vec<Bytes>,
    pub link_events: Vec<(Instant, LinkEvent)>,
    pub closed_reasons: Vec<String>,
    /// When each connect attempt started.
    pub connects: Vec<Instant>,
    /// Duplicates counted by acceptors already dropped.
    pub duplicates: u64,
    /// Frames the dialer wrote, per kind, parsed from its streams.
    pub batches_parsed: u64,
    pub pings_parsed: u64,
    client_stream: Vec<u8>,
    /// Every byte the dialer wrote, all connections in order.
    recorded: Vec<u8>,
}

impl Pair {
    pub fn new(config: Config) -> Pair {
        Pair::with(config, None, 1)
    }

    pub fn with(config: Config, expect_peer: Option<&str>, seed: u64) -> Pair {
        let now = Instant::now();
        let link = Link::new(
            identity("a", 100),
            expect_peer.map(str::to_owned),
            config.clone(),
            seed,
            now,
        );
        Pair {
            now,
            start: now,
            latency: Duration::from_millis(5),
            config,
            link,
            server: identity("b", 200),
            inbound: None,
            seen: Seen::new(),
            accepting: true,
            silent: false,
            connect_at: None,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            chunking: None,
            lagging: None,
            delivered: Vec::new(),
            link_events: Vec::new(),
            closed_reasons: Vec::new(),
            connects: Vec::new(),
            duplicates: 0,
            batches_parsed: 0,
            pings_parsed: 0,
            client_stream: Vec::new(),
            recorded: Vec::new(),
        }
    }

    /// Handles everything due at `now`, then jumps the clock to the next
    /// deadline of either side or of the wire.
    pub fn step(&mut self) {
        self.drive_now();
        if let Some(next) = self.next_wakeup() {
            if next > self.now {
                self.now = next;
            }
        }
        self.drive_now();
    }

    /// Steps until `done` or `max` simulated time has passed; panics then.
    pub fn drive_until(&mut self, max: Duration, mut done: impl FnMut(&Pair) -> bool) {
        let deadline = self.now + max;
        while !done(self) {
            assert!(self.now <= deadline, "not done within {max:?}");
            self.step();
        }
    }

    /// Steps for exactly `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.drive_now();
            match self.next_wakeup() {
                Some(next) if next <= end => self.now = self.now.max(next),
                _ => {
                    self.now = end;
                    self.drive_now();
                    return;
                }
            }
        }
    }

    pub fn is_up(&self) -> bool {
        self.link.state() == relay::LinkState::Up
    }

    /// The TCP connection dies: bytes in flight are lost, the dialer sees
    /// transport down and the acceptor drops its `Inbound`.
    pub fn cut(&mut self) {
        self.to_server.clear();
        self.to_client.clear();
        self.end_connection();
    }

    /// As [`Pair::cut`], but the acceptor has not noticed yet: it keeps the
    /// old connection and will read what was in flight on it later, after
    /// the dialer's next connection is up.
    pub fn cut_half_open(&mut self) {
        let bytes: Vec<u8> = self.to_server.drain(..).flat_map(|(_, b)| b).collect();
        self.to_client.clear();
        if let Some(old) = self.inbound.take() {
            self.lagging = Some((old, bytes));
        }
        self.end_connection();
    }

    /// The acceptor restarts: new incarnation, nothing remembered.
    pub fn restart_server(&mut self) {
        self.cut();
        self.server.incarnation += 1;
        self.seen = Seen::new();
    }

    fn end_connection(&mut self) {
        if let Some(inbound) = self.inbound.take() {
            self.duplicates += inbound.stats().duplicates;
        }
        self.client_stream.clear();
        if self.connect_at.take().is_some() {
            self.link.connect_failed(self.now);
        } else {
            self.link.transport_down(self.now);
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [
            self.link.poll_timeout(),
            // A silent (hung) acceptor runs no timers either.
            self.inbound
                .as_ref()
                .filter(|_| !self.silent)
                .and_then(Inbound::poll_timeout),
            self.to_server.front().map(|(t, _)| *t),
            self.to_client.front().map(|(t, _)| *t),
            self.connect_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn chunks(&mut self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        let Some(rng) = self.chunking.as_mut() else {
            return vec![bytes];
        };
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = rng.usize(1..=rest.len().min(300));
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        out
    }

    /// Everything due at `now`, until nothing changes.
    pub fn drive_now(&mut self) {
        for _ in 0..1000 {
            if !self.drive_once() {
                return;
            }
        }
        panic!("no quiescence at one instant");
    }

    fn drive_once(&mut self) -> bool {
        let now = self.now;
        let mut busy = false;
        // The connect completes, or is refused.
        if self.connect_at.is_some_and(|t| t <= now) {
            self.connect_at = None;
            busy = true;
            if self.accepting {
                self.link.transport_up(now);
                let config = self.config.clone();
                self.inbound = Some(Inbound::new(self.server.clone(), config, now));
            } else {
                self.link.connect_failed(now);
            }
        }
        // Bytes arrive.
        while self.to_server.front().is_some_and(|(t, _)| *t <= now) {
            let (_, bytes) = self.to_server.pop_front().unwrap();
            busy = true;
            if self.silent {
                continue;
            }
            for chunk in self.chunks(bytes) {
                if let Some(inbound) = self.inbound.as_mut() {
                    inbound.handle_bytes(now, &chunk, &mut self.seen);
                }
            }
        }
        while self.to_client.front().is_some_and(|(t, _)| *t <= now) {
            let (_, bytes) = self.to_client.pop_front().unwrap();
            busy = true;
            for chunk in self.chunks(bytes) {
                self.link.handle_bytes(now, &chunk);
            }
        }
        // A half-open old connection drains once the new one said HELLO.
        if self.inbound.as_ref().is_some_and(|i| i.peer().is_some()) {
            if let Some((mut old, bytes)) = self.lagging.take() {
                busy = true;
                old.handle_bytes(now, &bytes, &mut self.seen);
                while let Some(ev) = old.poll_event() {
                    self.record_inbound_event(ev);
                }
                self.duplicates += old.stats().duplicates;
            }
        }
        // Timers.
        if self.link.poll_timeout().is_some_and(|t| t <= now) {
            self.link.handle_timeout(now);
        }
        if let Some(inbound) = self.inbound.as_mut() {
            if !self.silent && inbound.poll_timeout().is_some_and(|t| t <= now) {
                inbound.handle_timeout(now);
            }
        }
        if self.link.poll_connect(now) {
            busy = true;
            self.connects.push(now);
            self.connect_at = Some(now + self.latency);
        }
        // Writes.
        while let Some(bytes) = self.link.poll_transmit(now) {
            busy = true;
            self.check_client_stream(&bytes);
            self.to_server.push_back((now + self.latency, bytes));
        }
        if let Some(inbound) = self.inbound.as_mut() {
            while let Some(bytes) = inbound.poll_transmit() {
                busy = true;
                if !self.silent {
                    self.to_client.push_back((now + self.latency, bytes));
                }
            }
        }
        // Events.
        while let Some(ev) = self.link.poll_event() {
            busy = true;
            self.link_events.push((now, ev));
        }
        while let Some(ev) = self.inbound.as_mut().and_then(Inbound::poll_event) {
            busy = true;
            self.record_inbound_event(ev);
        }
        // Either side closing ends the connection.
        let server_closes = self.inbound.as_ref().is_some_and(Inbound::wants_close);
        if self.link.wants_close() || server_closes {
            busy = true;
            self.cut();
        }
        busy
    }

    fn record_inbound_event(&mut self, ev: InboundEvent) {
        match ev {
            InboundEvent::Envelope(e) => self.delivered.push(e),
            InboundEvent::Closed { reason } => self.closed_reasons.push(reason),
            InboundEvent::Hello { .. } => {}
        }
    }

    /// Parses the dialer's stream with the codec: every frame must be valid.
    /// Every byte the dialer wrote so far (a recording to replay).
    pub fn recorded_client_bytes(&self) -> Vec<u8> {
        self.recorded.clone()
    }

    fn check_client_stream(&mut self, bytes: &[u8]) {
        self.recorded.extend_from_slice(bytes);
        self.client_stream.extend_from_slice(bytes);
        let limits = Limits::default();
        let mut pos = 0;
        while let Some((frame, used)) = bus::parse(&self.client_stream[pos..], &limits).unwrap() {
            match frame {
                Frame::Batch(b) => {
                    self.batches_parsed += 1;
                    assert_eq!(b.envelopes().count(), b.count as usize);
                }
                Frame::Ping => self.pings_parsed += 1,
                Frame::Hello(h) => assert_eq!(h.node_id, "a"),
                Frame::Auth(_) => {}
                other => panic!("dialer sent {other:?}"),
            }
            pos += used;
        }
        assert_eq!(
            pos,
            self.client_stream.len(),
            "writes end on frame boundaries"
        );
        self.client_stream.clear();
    }

    pub fn downs(&self) -> Vec<&str> {
        self.link_events
            .iter()
            .filter_map(|(_, e)| match e {
                LinkEvent::Down { reason } => Some(reason.as_str()),
                LinkEvent::Up { .. } => None,
            })
            .collect()
    }

    pub fn ups(&self) -> Vec<bool> {
        self.link_events
            .iter()
            .filter_map(|(_, e)| match e {
                LinkEvent::Up { peer_restarted, .. } => Some(*peer_restarted),
                LinkEvent::Down { .. } => None,
            })
            .collect()
    }
}
