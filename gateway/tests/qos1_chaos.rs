//! QoS 1 under chaos, against the real binary: 10,000 messages from one
//! sender to one receiver whose connection is cut (no goodbye, sometimes a
//! reset) at 25 random points and that reconnects at once over the next
//! transport; with the in-process store and with Redis, and with the gateway
//! killed (SIGKILL) mid-run and restarted on the same Redis. And Redis
//! itself killed while room and admin QoS 1 messages (which have no sender
//! to retry them) are being stored.
//!
//! The receiver does what the README asks of clients and no more (one run
//! uses the variant that re-acks every duplicate). After each run, a new
//! connection of the receiver must be replayed nothing it acked.
//!
//! The run is deterministic in its choices (cut points, resets, Resume
//! frames) given the seed printed first; `QOS1_SEED=<n>` repeats one.

mod common;

use common::*;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

driver_tests!(chaos_in_process_store);

/// Messages per run.
const N: usize = 10_000;
/// Sends the sender may have without a SendResult.
const WINDOW: usize = 200;
/// Points at which the receiver's connection is cut (at least 20).
const CUTS: usize = 25;
/// The whole run: a bound for a wedged run, far above what a loaded CI
/// machine needs (a run takes seconds); what is asserted is order and
/// counts, never time.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Gateway flags of every run: fast retransmits, and an inbox that holds
/// the whole run (a bound would be a gap, which fails this test).
const FLAGS: [&str; 4] = ["--retransmit-ms", "200", "--inbox-per-user", "20000"];

fn seed() -> u64 {
    let seed = std::env::var("QOS1_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            t.as_nanos() as u64
        })
        | 1;
    // Printed first; shown when the test fails.
    println!("seed {seed} (QOS1_SEED={seed} repeats this run)");
    seed
}

fn start(driver: Driver, redis: Option<&str>) -> Gateway {
    let mut args = FLAGS.to_vec();
    if let Some(url) = redis {
        args.extend(["--redis", url]);
    }
    Gateway::start(driver, &args)
}

/// Runs sender and receiver to the end; `kill`, when given, runs once the
/// receiver's app holds `kill.0` messages.
fn run(
    slot: &Arc<Slot>,
    kind: ReceiverKind,
    kill: Option<(usize, Box<dyn FnOnce() + '_>)>,
) -> (SendLog, App) {
    let seed = seed();
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut rng = Rng(seed);
    let mut cut_at: Vec<usize> = (0..CUTS)
        .map(|_| 1 + rng.below(N as u64 - 1) as usize)
        .collect();
    cut_at.sort_unstable();
    let (tx, progress) = mpsc::channel();
    let notify_at = kill.as_ref().map_or(usize::MAX, |k| k.0);
    let receiver = {
        let slot = slot.clone();
        thread::spawn(move || {
            let mut rng = rng;
            run_receiver(&slot, kind, N, &cut_at, &mut rng, (notify_at, tx), deadline)
        })
    };
    let sender = {
        let slot = slot.clone();
        thread::spawn(move || run_sender(&slot, "receiver", N, WINDOW, deadline))
    };
    if let Some((at, kill)) = kill {
        let left = deadline.saturating_duration_since(Instant::now());
        match progress.recv_timeout(left) {
            Ok(()) => kill(),
            Err(e) => panic!("the receiver never reached {at} messages: {e:?} (seed {seed})"),
        }
    }
    let app = join(receiver);
    let log = join(sender);
    let want: Vec<usize> = (0..N).collect();
    if app.view != want {
        let first_bad = app.view.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "app view of {} messages differs from 0..{N} first at index {first_bad:?} (seed {seed})",
            app.view.len()
        );
    }
    assert!(
        app.msg_ids == log.msg_ids,
        "delivered msg_ids differ from the SendResults (seed {seed})"
    );
    assert!(app.cuts >= 20, "only {} cuts (seed {seed})", app.cuts);
    println!(
        "cuts {} lost {} duplicates {} (at most {} replayed after a connect) \
         resumes sent {} sender reconnects {}",
        app.cuts, app.lost, app.duplicates, app.max_replayed, app.resumes_sent, log.reconnects
    );
    (log, app)
}

/// A thread's result, or its panic passed on.
fn join<T>(h: thread::JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The gateway lives through the run: no connection ends but those cut,
/// every message is stored once, and nothing was dropped.
fn assert_clean_run(slot: &Slot, log: &SendLog, app: &App) {
    assert_eq!(
        (log.reconnects, app.lost),
        (0, 0),
        "connections ended uncut"
    );
    let (_, gw) = slot.current();
    let text = gw.metrics();
    let value =
        |series| metric(&text, series).unwrap_or_else(|| panic!("{series} missing from:\n{text}"));
    assert_eq!(value("gateway_qos_appends_total"), N as f64);
    assert_eq!(value("gateway_qos_dedupe_hits_total"), 0.0);
    assert_eq!(value("gateway_qos_gaps_total"), 0.0);
    let resumes = value("gateway_qos_resumes_total");
    assert!(resumes > app.cuts as f64, "{resumes} inbox reads");
    // Nothing acked comes again on a new connection (one more message).
    let deadline = Instant::now() + RUN_TIMEOUT;
    assert_acked_not_replayed(slot, WS_JSON, N, deadline);
    let appends = gw.wait_metric("gateway_qos_appends_total", |v| v > N as f64);
    assert_eq!(appends, N as f64 + 1.0);
}

fn chaos_in_process_store(driver: Driver) {
    let slot = Slot::new(start(driver, None));
    let (log, app) = run(&slot, ReceiverKind::Literal, None);
    assert_clean_run(&slot, &log, &app);
}

/// The receiver that re-acks every duplicate (a client doing more than the
/// README asks) gets the same result.
#[test]
fn uring_chaos_in_process_store_reacking_receiver() {
    let slot = Slot::new(start(Driver::Uring, None));
    let (log, app) = run(&slot, ReceiverKind::ReAcking, None);
    assert_clean_run(&slot, &log, &app);
}

#[test]
fn uring_chaos_redis_store() {
    let redis = RedisServer::start();
    let slot = Slot::new(start(Driver::Uring, Some(&redis.url())));
    let (log, app) = run(&slot, ReceiverKind::Literal, None);
    assert_clean_run(&slot, &log, &app);
}

/// SIGKILL mid-run, a new gateway on the same Redis: every message the
/// sender got a SendResult for (then, after its retries, all of them) is
/// delivered to the app exactly once, in order.
#[test]
fn uring_gateway_killed_mid_run_redis_store() {
    let redis = RedisServer::start();
    let url = redis.url();
    let slot = Slot::new(start(Driver::Uring, Some(&url)));
    let kill = {
        let slot = slot.clone();
        let url = url.clone();
        move || {
            let (_, old) = slot.current();
            old.signal(libc::SIGKILL);
            slot.replace(start(Driver::Uring, Some(&url)));
        }
    };
    // Early in the receiver's run, so the sender (which may run far ahead
    // of a receiver being cut) is still sending when the gateway dies.
    let (log, app) = run(&slot, ReceiverKind::Literal, Some((N / 10, Box::new(kill))));
    assert!(log.reconnects >= 1, "the sender never saw the gateway die");
    let (generation, gw) = slot.current();
    assert_eq!(
        (generation, app.generation),
        (1, 1),
        "the receiver ended elsewhere"
    );
    assert_eq!(metric(&gw.metrics(), "gateway_qos_gaps_total"), Some(0.0));

    // The dedupe record outlives the gateway that wrote it: a retry of the
    // first message (stored by the killed gateway) gets its msg_id back on
    // the new one, and counts as a dedupe hit there.
    let dedupe = "gateway_qos_dedupe_hits_total";
    let before = metric(&gw.metrics(), dedupe).expect("dedupe counter");
    let mut sender = gw.connect(TCP, "sender", "desk");
    sender.send(&qos1_to_user("receiver", "0", b"0"));
    let r = sender.result_for("0");
    assert!(r.accepted, "{r:?}");
    assert_eq!(r.msg_id, log.msg_ids[0], "a retry after the restart");
    let after = gw.wait_metric(dedupe, |v| v > before);
    assert_eq!(after, before + 1.0, "one retry, one dedupe hit");
    drop(sender);
    // Stored once: nothing of the run comes again, the next seq is N + 1.
    let deadline = Instant::now() + RUN_TIMEOUT;
    assert_acked_not_replayed(&slot, WS, N, deadline);
}

/// Redis is killed; a QoS 1 room broadcast (to a member online) and a QoS 1
/// admin push (to a user never connected) are accepted meanwhile. Nobody can
/// retry them but the gateway: once Redis is back, both are stored and
/// delivered, once.
#[test]
fn uring_room_and_admin_pushes_survive_a_redis_outage() {
    let mut redis = RedisServer::start();
    let mut gw = start(Driver::Uring, Some(&redis.url()));
    let mut bob = gw.connect(WS, "bob", "desk");
    bob.join("ops");
    bob.ping(1);

    redis.kill();
    for body in [
        r#"{"room":"ops","text":"to the room","qos":1}"#,
        r#"{"user":"zoe","text":"to zoe","qos":1}"#,
    ] {
        let r = gw.post("/push", body);
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Both appends reached the store and were refused.
    gw.wait_metric("gateway_qos_store_errors_total", |v| v >= 2.0);
    redis.restart();

    let is = |payload: &'static [u8]| move |f: &Frame| matches!(f, Frame::Deliver(d) if d.payload == payload);
    let Frame::Deliver(d) = bob.recv_matching("the room message", is(b"to the room")) else {
        unreachable!()
    };
    let bob_first = d.msg_id.clone();
    assert_eq!(
        (d.room.as_str(), d.qos()),
        ("ops", Qos::AtLeastOnce),
        "{d:?}"
    );
    bob.send(&ack(d.seq));

    let mut zoe = gw.connect(TCP, "zoe", "phone");
    let Frame::Deliver(d) = zoe.recv_matching("the admin push", is(b"to zoe")) else {
        unreachable!()
    };
    let zoe_first = d.msg_id.clone();
    assert_eq!(d.qos(), Qos::AtLeastOnce, "{d:?}");
    zoe.send(&ack(d.seq));

    // No second copy so far: the acks are taken (a Pong after each) and
    // nothing else came but the gateway's notice (not in the README) to a
    // client whose inbox it could not reach.
    for (c, nonce) in [(&mut bob, 2), (&mut zoe, 3)] {
        c.send(&ping(nonce));
        c.recv_matching("Pong", |f| matches!(f, Frame::Pong(p) if p.nonce == nonce));
        for f in c.take_stashed() {
            match f {
                Frame::Error(e) => assert_error(&e, ErrorCode::Unavailable, false),
                f => panic!("a frame other than the Pong: {f:?}"),
            }
        }
    }
    let text = gw.metrics();
    assert!(
        metric(&text, "gateway_qos_append_retries_total") >= Some(2.0),
        "{text}"
    );
    assert_eq!(metric(&text, "gateway_qos_append_dropped_total"), Some(0.0));

    // And none later: once this gateway has stopped, nothing is left to
    // retry. On a new gateway on the same Redis, the next message of each
    // user has seq 2: one copy stored before it. (Whether the acked first
    // copy comes again first is `uring_acks_survive_a_graceful_restart`.)
    let first_ids = [bob_first, zoe_first];
    drop((bob, zoe));
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
    let gw = start(Driver::Uring, Some(&redis.url()));
    for ((user, device, t), first) in [("bob", "desk", WS), ("zoe", "phone", TCP)]
        .into_iter()
        .zip(first_ids)
    {
        let mut c = gw.connect(t, user, device);
        let body = format!(r#"{{"user":"{user}","text":"next","qos":1}}"#);
        let r = gw.post("/push", &body);
        assert_eq!(r.status, 200, "{r:?}");
        let mut d = c.deliver();
        if d.seq == 1 {
            assert_eq!(d.msg_id, first, "{user}: a second seq 1: {d:?}");
            d = c.deliver();
        }
        assert_eq!((d.seq, &d.payload[..]), (2, &b"next"[..]), "{user}: {d:?}");
    }
}

/// A device acks (and gets a Pong after the ack); the gateway is stopped
/// gracefully (SIGTERM, exit 0); on a new gateway on the same Redis the
/// device is replayed nothing it acked: its first delivery is the next
/// message. Twenty rounds.
#[test]
fn uring_acks_survive_a_graceful_restart() {
    let redis = RedisServer::start();
    let mut gw = start(Driver::Uring, Some(&redis.url()));
    for round in 1..=20u64 {
        let mut zoe = gw.connect(TCP, "zoe", "phone");
        let body = format!(r#"{{"user":"zoe","text":"m{round}","qos":1}}"#);
        let r = gw.post("/push", &body);
        assert_eq!(r.status, 200, "{r:?}");
        let d = zoe.deliver();
        assert_eq!(
            (d.seq, &d.payload[..]),
            (round, format!("m{round}").as_bytes()),
            "round {round}: {d:?}"
        );
        zoe.send(&ack(round));
        zoe.ping(round);
        drop(zoe);
        gw.signal(libc::SIGTERM);
        assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0), "round {round}");
        gw = start(Driver::Uring, Some(&redis.url()));
    }
}

/// Redis is killed: a client's QoS 1 send gets SendResult UNAVAILABLE (it
/// is the client's to retry), QoS 0 still flows. Once Redis is back, the
/// client's retry with the same clientMsgId is stored and delivered once.
/// Besides, a connection whose inbox read failed is told so with non-fatal
/// UNAVAILABLE errors (not in the README); nothing else may come.
#[test]
fn uring_client_qos1_send_is_unavailable_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let gw = start(Driver::Uring, Some(&redis.url()));
    let mut bob = gw.connect(WS, "bob", "desk");
    let mut alice = gw.connect(TCP, "alice", "phone");
    alice.ping(1);
    redis.kill();

    alice.send(&qos1_to_user("bob", "c1", b"stored later"));
    let r = alice.result_for("c1");
    assert_eq!(
        (r.accepted, r.code(), r.msg_id.as_str()),
        (false, ErrorCode::Unavailable, ""),
        "{r:?}"
    );
    alice.send(&to_user("bob", "q0", b"live"));
    assert!(alice.result_for("q0").accepted);
    let d = bob.recv_matching("the QoS 0 message", |f| matches!(f, Frame::Deliver(_)));
    let Frame::Deliver(d) = d else { unreachable!() };
    assert_eq!(
        (d.qos(), &d.payload[..]),
        (Qos::AtMostOnce, &b"live"[..]),
        "{d:?}"
    );

    redis.restart();
    // The client retries, as the README tells it to, until it is stored.
    let deadline = Instant::now() + RUN_TIMEOUT;
    let stored = loop {
        assert!(
            Instant::now() < deadline,
            "never stored after Redis came back"
        );
        alice.send(&qos1_to_user("bob", "c1", b"stored later"));
        let r = alice.result_for("c1");
        if r.accepted {
            break r;
        }
        // Each retry waits for its answer before the next.
        assert_eq!(r.code(), ErrorCode::Unavailable, "{r:?}");
    };
    let d = bob.recv_matching("the QoS 1 message", |f| matches!(f, Frame::Deliver(_)));
    let Frame::Deliver(d) = d else { unreachable!() };
    assert_eq!(
        (d.seq, &d.payload[..], d.msg_id.as_str()),
        (1, &b"stored later"[..], stored.msg_id.as_str()),
        "{d:?}"
    );
    bob.send(&ack(1));
    // Its inbox reads may have failed meanwhile: non-fatal UNAVAILABLE
    // errors (checked at the end) can come before the Pong.
    bob.send(&ping(2));
    bob.recv_matching("Pong", |f| matches!(f, Frame::Pong(p) if p.nonce == 2));
    let id = {
        alice.send(&qos1_to_user("bob", "c2", b"next"));
        let r = alice.result_for("c2");
        assert!(r.accepted, "{r:?}");
        r.msg_id
    };
    let d = bob.recv_matching("the next message", |f| matches!(f, Frame::Deliver(_)));
    let Frame::Deliver(d) = d else { unreachable!() };
    assert_eq!((d.seq, d.msg_id.as_str()), (2, id.as_str()), "{d:?}");
    for c in [&mut alice, &mut bob] {
        for f in c.take_stashed() {
            match f {
                Frame::Error(e) => assert_error(&e, ErrorCode::Unavailable, false),
                f => panic!("unexpected {f:?}"),
            }
        }
    }
}
