//! A QoS 1 run under chaos: one sender pipelines numbered messages to one
//! receiver whose connection is cut at random points; both reconnect to
//! whichever gateway is current (a test may kill it and start another).
//!
//! The receiver is an application that does what the README tells clients:
//! it drops every `seq` it has already seen, sends `resume{last seen}` after
//! every reconnect, and acknowledges cumulatively (`ReceiverKind::Literal`); `ReceiverKind::ReAcking` also re-acks on every
//! duplicate. Its view must end with every message once, in order; a `seq`
//! past `last + 1` without a Gap frame is a hole, and fails at once; more
//! replayed duplicates after a reconnect than the in-flight window fails at
//! once. Every wait has the run's deadline or the socket timeout.

use super::{ack, qos1_to_user, resume, Client, Event, Frame, Gateway, Qos, TCP, WS, WS_JSON};
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// The receiver's transports, in turn across reconnects.
const TRANSPORTS: [super::Transport; 3] = [TCP, WS, WS_JSON];

/// Connections tried before `Slot::connect` gives up on the requested shard
/// (with two shards, 200 misses in a row have odds of 2^-200).
const SHARD_TRIES: usize = 200;

/// The gateway's QoS 1 window: unacknowledged messages in flight to one
/// connection (`qos.inflight_window`, 256 by default). After a reconnect,
/// the replay can hold at most this many messages the app already has
/// before one it has not: more means the gateway replays what was acked.
pub const INFLIGHT_WINDOW: usize = 256;

/// How the receiving application answers a duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverKind {
    /// As the README tells clients: drop every `seq <= last seen`, say
    /// nothing, and ack cumulatively as new messages arrive.
    Literal,
    /// Also sends `ack(last seen)` for every duplicate: a client being
    /// extra helpful, which can hide a gateway that forgets acks.
    ReAcking,
}

/// The current gateway and how many times it was replaced.
pub struct Slot {
    gw: Mutex<(u64, Arc<Gateway>)>,
    changed: Condvar,
}

impl Slot {
    pub fn new(gw: Gateway) -> Arc<Slot> {
        Arc::new(Slot {
            gw: Mutex::new((0, Arc::new(gw))),
            changed: Condvar::new(),
        })
    }

    pub fn current(&self) -> (u64, Arc<Gateway>) {
        let g = self.gw.lock().unwrap();
        (g.0, g.1.clone())
    }

    /// Puts a new gateway in place of the current one.
    pub fn replace(&self, gw: Gateway) {
        let mut g = self.gw.lock().unwrap();
        *g = (g.0 + 1, Arc::new(gw));
        self.changed.notify_all();
    }

    /// Waits for a gateway newer than generation `gen`.
    fn next_after(&self, gen: u64, deadline: Instant) -> (u64, Arc<Gateway>) {
        let mut g = self.gw.lock().unwrap();
        while g.0 == gen {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "gateway {gen} is gone and none replaced it"
            );
            g = self.changed.wait_timeout(g, left).unwrap().0;
        }
        (g.0, g.1.clone())
    }

    /// Connects to the current gateway, or to the next one if it is gone;
    /// on `shard` if given (and fails if the kernel never picks that shard
    /// in `SHARD_TRIES` connections). Returns the generation of the gateway
    /// it reached.
    pub fn connect(
        &self,
        t: super::Transport,
        user: &str,
        device: &str,
        shard: Option<u32>,
        deadline: Instant,
    ) -> (u64, Client) {
        let (mut gen, mut gw) = self.current();
        let mut tries = 0;
        loop {
            match gw.try_connect(t, user, device) {
                Some(c) if shard.is_none_or(|s| s == c.auth.shard) => return (gen, c),
                Some(c) => {
                    tries += 1;
                    assert!(
                        tries < SHARD_TRIES,
                        "{user}/{device}: {SHARD_TRIES} connections, none on shard {shard:?} \
                         (last on {})",
                        c.auth.shard
                    );
                }
                None => (gen, gw) = self.next_after(gen, deadline),
            }
        }
    }
}

/// A deterministic xorshift64 generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the receiving application ended with.
#[derive(Default)]
pub struct App {
    /// Payloads (counters) in the order the app accepted them.
    pub view: Vec<usize>,
    /// msg_id of each accepted message (index = seq - 1).
    pub msg_ids: Vec<String>,
    /// Connections the test cut.
    pub cuts: usize,
    /// Connections that ended without the test cutting them.
    pub lost: usize,
    /// Generation of the gateway the app was connected to at the end.
    pub generation: u64,
    /// Deliveries dropped as already seen.
    pub duplicates: usize,
    /// Most deliveries of already-seen messages one connection got before
    /// its first new one (bounded by `INFLIGHT_WINDOW`).
    pub max_replayed: usize,
    /// Resume frames sent right after a (re)connect.
    pub resumes_sent: usize,
}

/// Receives as user `receiver` until the app has `n` messages, cutting the
/// connection when the app reaches each of `cut_at` (sorted) and sometimes
/// right after AuthOk. Tells `progress.1` when the app reaches `progress.0`.
/// At the end it acks everything and waits for a Pong after the ack.
///
/// After every (re)connect, the deliveries of messages the app already has
/// that come before the first new one are counted: more than the gateway's
/// in-flight window means it is replaying what was acked (or retransmitting
/// a window of duplicates a `ReceiverKind::Literal` app will never ack), and the
/// run fails at once.
pub fn run_receiver(
    slot: &Slot,
    kind: ReceiverKind,
    n: usize,
    cut_at: &[usize],
    rng: &mut Rng,
    progress: (usize, mpsc::Sender<()>),
    deadline: Instant,
) -> App {
    let mut app = App::default();
    let (mut acked, mut cuts) = (0u64, cut_at.iter().peekable());
    let mut conns = 0;
    let (mut generation, mut c) = slot.connect(TCP, "receiver", "phone", Some(1), deadline);
    'conn: loop {
        // The README: after every reconnect, a client that has seen
        // messages sends resume{last seen} right after AuthOk (and may ack).
        if !app.view.is_empty() {
            app.resumes_sent += 1;
            c.try_send(&resume(app.view.len() as u64));
            if rng.below(2) == 0 {
                c.try_send(&ack(app.view.len() as u64));
            }
        }
        // Deliveries of known messages before the first new one on this
        // connection; None once a new one came.
        let mut replayed = Some(0usize);
        // Sometimes cut right after AuthOk, before any delivery.
        let mut cut = rng.below(8) == 0 && app.view.len() < n;
        while !cut {
            let last = app.view.len() as u64;
            if last as usize == n {
                if !ack_all(&mut c, &app, n as u64) {
                    app.lost += 1;
                    conns += 1;
                    let t = TRANSPORTS[conns % TRANSPORTS.len()];
                    (generation, c) = slot.connect(t, "receiver", "phone", None, deadline);
                    continue 'conn;
                }
                app.generation = generation;
                return app;
            }
            assert!(Instant::now() < deadline, "receiver: deadline at {last}");
            if cuts.peek().is_some_and(|&&k| last as usize >= k) {
                while cuts.next_if(|&&k| last as usize >= k).is_some() {}
                cut = true;
                continue;
            }
            let d = match c.next_event() {
                Event::Frame(Frame::Deliver(d)) => d,
                Event::Frame(f) => panic!("receiver at {last}: unexpected {f:?}"),
                Event::Closed(_) => {
                    app.lost += 1;
                    conns += 1;
                    let t = TRANSPORTS[conns % TRANSPORTS.len()];
                    (generation, c) = slot.connect(t, "receiver", "phone", None, deadline);
                    continue 'conn;
                }
            };
            assert_eq!(d.qos(), Qos::AtLeastOnce, "{d:?}");
            if d.seq <= last {
                check_duplicate(&app, &d);
                app.duplicates += 1;
                if let Some(r) = &mut replayed {
                    *r += 1;
                    app.max_replayed = app.max_replayed.max(*r);
                    assert!(
                        *r <= INFLIGHT_WINDOW,
                        "receiver at {last}: {r} deliveries of seen messages (latest seq {}) \
                         after connection {conns}'s AuthOk and no new one: more than the \
                         in-flight window of {INFLIGHT_WINDOW}",
                        d.seq
                    );
                }
                if kind == ReceiverKind::ReAcking {
                    c.try_send(&ack(last));
                }
                continue;
            }
            assert_eq!(d.seq, last + 1, "a hole after seq {last}: {d:?}");
            replayed = None;
            let counter: usize = std::str::from_utf8(&d.payload)
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("payload of {d:?}"));
            app.view.push(counter);
            app.msg_ids.push(d.msg_id);
            if app.view.len() == progress.0 {
                let _ = progress.1.send(());
            }
            if d.seq >= acked + 10 {
                c.try_send(&ack(d.seq));
                acked = d.seq;
            }
        }
        app.cuts += 1;
        conns += 1;
        c.abort(rng.below(2) == 0);
        let t = TRANSPORTS[conns % TRANSPORTS.len()];
        (generation, c) = slot.connect(t, "receiver", "phone", None, deadline);
    }
}

/// A delivery of a message the app already has: same seq, same msg_id.
#[track_caller]
fn check_duplicate(app: &App, d: &proto::v1::Deliver) {
    assert!(d.seq > 0, "QoS 1 without a seq: {d:?}");
    let first = &app.msg_ids[d.seq as usize - 1];
    assert_eq!(&d.msg_id, first, "seq {} came with two msg_ids", d.seq);
}

/// Acks `last`, then pings: retransmits that crossed the ack may come
/// before the Pong, nothing else. False if the connection ended first.
fn ack_all(c: &mut Client, app: &App, last: u64) -> bool {
    const NONCE: u64 = 0xac4;
    if !(c.try_send(&ack(last)) && c.try_send(&super::ping(NONCE))) {
        return false;
    }
    loop {
        match c.next_event() {
            Event::Frame(Frame::Pong(p)) if p.nonce == NONCE => return true,
            Event::Frame(Frame::Deliver(d)) if d.seq <= last => check_duplicate(app, &d),
            Event::Frame(f) => panic!("receiver at {last}: unexpected {f:?} awaiting the Pong"),
            Event::Closed(_) => return false,
        }
    }
}

/// After the run (everything acked and the ack answered by a Pong): a new
/// connection of the receiver is replayed nothing. One more QoS 1 message
/// is sent to it; the gateway replays what is unacked before live messages,
/// so the first frame after AuthOk must be that message, seq `n + 1`, and
/// not a delivery of an acked seq.
pub fn assert_acked_not_replayed(slot: &Slot, t: super::Transport, n: usize, deadline: Instant) {
    let (_, mut receiver) = slot.connect(t, "receiver", "phone", None, deadline);
    let (_, mut sender) = slot.connect(TCP, "sender", "last", None, deadline);
    sender.send(&qos1_to_user("receiver", "after-the-run", b"after the run"));
    let r = sender.result_for("after-the-run");
    assert!(r.accepted, "{r:?}");
    match receiver.recv() {
        Frame::Deliver(d) if d.seq == n as u64 + 1 => {
            assert_eq!(
                (&d.payload[..], d.msg_id.as_str()),
                (&b"after the run"[..], r.msg_id.as_str()),
                "{d:?}"
            );
        }
        Frame::Deliver(d) if d.seq <= n as u64 => {
            panic!(
                "after ack({n}) and its Pong, a new connection was replayed seq {}: {d:?}",
                d.seq
            )
        }
        f => panic!(
            "expected the message after the run (seq {}), got {f:?}",
            n + 1
        ),
    }
    receiver.send(&ack(n as u64 + 1));
    receiver.ping(1);
    assert!(receiver.stashed().is_empty(), "{:?}", receiver.stashed());
}
