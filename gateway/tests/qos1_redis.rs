//! QoS 1 when Redis goes away or the gateway stops, against the real
//! binary: room and admin QoS 1 messages (which have no sender to retry
//! them) stored once Redis is back; a client's QoS 1 send refused with
//! UNAVAILABLE while it is down and stored once when retried; acks that
//! survive a graceful stop.

#[allow(unused_macros)] // every test here is io_uring only: no driver_tests!
mod common;

use common::*;
use std::time::{Duration, Instant};

/// How long a client may retry a send once Redis is back.
const RETRY_TIMEOUT: Duration = Duration::from_secs(600);

/// A QoS 1 gateway on `redis` whose retransmits cannot fire while a test
/// runs (a retransmitted copy crossing an ack would be one more frame
/// before the Pong or the next message). Only for tests where Redis stays
/// up: the same backoff paces the retry of a failed inbox read, so a test
/// with an outage runs with the fast default (`start_qos1`) and accepts
/// retransmitted copies of what it already has (same `msg_id`).
fn start(redis: &RedisServer) -> Gateway {
    start_qos1_with(Driver::Uring, Some(&redis.url()), &QOS1_NO_RETRANSMIT_FLAGS)
}

/// Redis is killed; a QoS 1 room broadcast (to a member online) and a QoS 1
/// admin push (to a user never connected) are accepted meanwhile. Nobody can
/// retry them but the gateway: once Redis is back, both are stored and
/// delivered, once.
#[test]
fn uring_room_and_admin_pushes_survive_a_redis_outage() {
    let mut redis = RedisServer::start();
    let mut gw = start_qos1(Driver::Uring, Some(&redis.url()));
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
    // A retransmitted copy of the message it has (same id) may cross the
    // ack: QoS 1 allows it and clients drop it.
    for (c, nonce, first) in [(&mut bob, 2, &bob_first), (&mut zoe, 3, &zoe_first)] {
        c.send(&ping(nonce));
        c.recv_matching("Pong", |f| matches!(f, Frame::Pong(p) if p.nonce == nonce));
        for f in c.take_stashed() {
            match f {
                Frame::Error(e) => assert_error(&e, ErrorCode::Unavailable, false),
                Frame::Deliver(d) if d.msg_id == *first => {}
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
    let gw = start(&redis);
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
    let mut gw = start(&redis);
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
        gw = start(&redis);
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
    let gw = start_qos1(Driver::Uring, Some(&redis.url()));
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
    let deadline = Instant::now() + RETRY_TIMEOUT;
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
    let next = |f: &Frame| matches!(f, Frame::Deliver(d) if d.seq == 2);
    let d = bob.recv_matching("the next message", next);
    let Frame::Deliver(d) = d else { unreachable!() };
    assert_eq!((d.seq, d.msg_id.as_str()), (2, id.as_str()), "{d:?}");
    for c in [&mut alice, &mut bob] {
        for f in c.take_stashed() {
            match f {
                Frame::Error(e) => assert_error(&e, ErrorCode::Unavailable, false),
                // A retransmitted copy of the first message crossing its ack.
                Frame::Deliver(d) if d.msg_id == stored.msg_id => {}
                f => panic!("unexpected {f:?}"),
            }
        }
    }
}
