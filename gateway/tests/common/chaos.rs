//! A QoS 1 run under chaos: one sender pipelines numbered messages to one
//! receiver whose connection is cut at random points; both reconnect to
//! whichever gateway is current (a test may kill it and start another).
//!
//! The receiver is an application: it drops every `seq` it has already seen
//! and acknowledges cumulatively. Its view must end with every message once,
//! in order; a `seq` past `last + 1` without a Gap frame is a hole, and
//! fails at once. Every wait has the run's deadline or the socket timeout.

use super::{ack, qos1_to_user, resume, Client, Event, Frame, Gateway, Qos, TCP, WS, WS_JSON};
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// The receiver's transports, in turn across reconnects.
const TRANSPORTS: [super::Transport; 3] = [TCP, WS, WS_JSON];

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
    /// on `shard` if given (a few tries, then anywhere). Returns the
    /// generation of the gateway it reached.
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
                Some(c) if shard.is_none_or(|s| s == c.auth.shard) || tries > 50 => {
                    return (gen, c)
                }
                Some(_) => tries += 1,
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

/// What the sender saw.
pub struct SendLog {
    /// The msg_id of every message's SendResult, by counter.
    pub msg_ids: Vec<String>,
    /// How many times its connection ended and it reconnected.
    pub reconnects: usize,
}

/// Sends messages `0..n` (client_msg_id and payload = the counter) to
/// `to` with at most `window` unanswered; after a reconnect, resends every
/// message it has no SendResult for, with the same client_msg_id.
pub fn run_sender(slot: &Slot, to: &str, n: usize, window: usize, deadline: Instant) -> SendLog {
    let mut msg_ids: Vec<Option<String>> = vec![None; n];
    let mut next = 0;
    let mut reconnects = 0;
    let (_, mut c) = slot.connect(TCP, "sender", "desk", Some(0), deadline);
    loop {
        // Everything sent on an earlier connection without an answer.
        let mut open: BTreeSet<usize> = (0..next).filter(|&i| msg_ids[i].is_none()).collect();
        let mut ok = open.iter().all(|&i| c.try_send(&numbered(to, i)));
        while ok {
            assert!(Instant::now() < deadline, "sender: deadline, {next} sent");
            while open.len() < window && next < n {
                ok &= c.try_send(&numbered(to, next));
                open.insert(next);
                next += 1;
            }
            if open.is_empty() && next == n {
                let msg_ids = msg_ids.into_iter().map(Option::unwrap).collect();
                return SendLog {
                    msg_ids,
                    reconnects,
                };
            }
            match c.next_event() {
                Event::Frame(Frame::SendResult(r)) => {
                    let i: usize = r.client_msg_id.parse().expect("a counter");
                    assert!(r.accepted && !r.msg_id.is_empty(), "message {i}: {r:?}");
                    if let Some(first) = &msg_ids[i] {
                        assert_eq!(first, &r.msg_id, "a retry of {i} got a new msg_id");
                    }
                    msg_ids[i] = Some(r.msg_id);
                    open.remove(&i);
                }
                Event::Frame(f) => panic!("sender: unexpected {f:?}"),
                Event::Closed(_) => ok = false,
            }
        }
        reconnects += 1;
        c = slot.connect(TCP, "sender", "desk", None, deadline).1;
    }
}

fn numbered(to: &str, i: usize) -> proto::v1::ClientFrame {
    let id = i.to_string();
    qos1_to_user(to, &id, id.as_bytes())
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
    /// Resume frames sent right after a (re)connect.
    pub resumes_sent: usize,
}

/// Receives as user `receiver` until the app has `n` messages, cutting the
/// connection when the app reaches each of `cut_at` (sorted) and sometimes
/// right after AuthOk. Tells `progress.1` when the app reaches `progress.0`.
pub fn run_receiver(
    slot: &Slot,
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
        if rng.below(4) == 0 {
            app.resumes_sent += 1;
            c.try_send(&resume(app.view.len() as u64));
        }
        // Sometimes cut right after AuthOk, before any delivery.
        let mut cut = rng.below(8) == 0 && app.view.len() < n;
        while !cut {
            let last = app.view.len() as u64;
            if last as usize == n {
                c.try_send(&ack(last));
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
                assert!(d.seq > 0, "QoS 1 without a seq: {d:?}");
                let first = &app.msg_ids[d.seq as usize - 1];
                assert_eq!(&d.msg_id, first, "seq {} came with two msg_ids", d.seq);
                app.duplicates += 1;
                c.try_send(&ack(last));
                continue;
            }
            assert_eq!(d.seq, last + 1, "a hole after seq {last}: {d:?}");
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
