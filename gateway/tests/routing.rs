//! Message routing across shards: ping/pong, direct sends to every device of
//! a user, room broadcasts to members only, and the targets this node cannot
//! serve yet.
//!
//! Absence is proven without sleeping: after the message a connection must
//! not get, a later message is sent to it directly and must be the very next
//! frame it receives.

mod common;

use common::*;
use proto::v1::{send, Deliver};

driver_tests!(
    ping_pong_every_transport,
    direct_across_shards,
    every_device_receives_once,
    room_broadcast_reaches_members_only,
    leave_room,
    unavailable_targets,
);

#[track_caller]
fn assert_deliver(d: &Deliver, from: &str, room: &str, payload: &[u8], msg_id: &str) {
    assert_eq!(d.from, from, "{d:?}");
    assert_eq!(d.room, room, "{d:?}");
    assert_eq!(&d.payload[..], payload, "{d:?}");
    assert_eq!(d.msg_id, msg_id, "{d:?}");
    assert_eq!((d.qos(), d.seq), (Qos::AtMostOnce, 0), "{d:?}");
}

/// Sends from `c` and returns the accepted message's id.
#[track_caller]
fn send_ok(c: &mut Client, f: &proto::v1::ClientFrame, client_msg_id: &str) -> String {
    c.send(f);
    let r = c.result_for(client_msg_id);
    assert!(r.accepted, "{r:?}");
    assert_eq!(r.code(), ErrorCode::Unspecified, "{r:?}");
    assert!(!r.msg_id.is_empty(), "{r:?}");
    r.msg_id
}

/// A direct message from `from` that must be `to`'s very next frame.
#[track_caller]
fn assert_next_is_direct(from: &mut Client, to: &mut Client, id: &str) {
    let user = to.auth.user.clone();
    let msg_id = send_ok(from, &to_user(&user, id, id.as_bytes()), id);
    let sender = from.auth.user.clone();
    assert_deliver(&to.deliver(), &sender, "", id.as_bytes(), &msg_id);
}

fn ping_pong_every_transport(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    for t in [WS, WS_JSON, TCP] {
        let mut c = gw.connect(t, "alice", "phone");
        for nonce in [0, 1, u64::from(u32::MAX) + 1, u64::MAX] {
            c.ping(nonce);
        }
    }
}

fn direct_across_shards(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut alice = gw.connect_on_shard(WS, "alice", "phone", 0);
    let mut bob = gw.connect_on_shard(TCP, "bob", "laptop", 1);
    let first = send_ok(&mut alice, &to_user("bob", "a1", b"hello bob"), "a1");
    assert_deliver(&bob.deliver(), "alice", "", b"hello bob", &first);
    let reply = send_ok(&mut bob, &to_user("alice", "b1", b"hello alice"), "b1");
    assert_deliver(&alice.deliver(), "bob", "", b"hello alice", &reply);
    let second = send_ok(&mut alice, &to_user("bob", "a2", b""), "a2");
    assert_ne!(first, second, "message ids are unique");
    assert_deliver(&bob.deliver(), "alice", "", b"", &second);
}

fn every_device_receives_once(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut bobs = [
        gw.connect_on_shard(WS, "bob", "phone", 0),
        gw.connect_on_shard(TCP, "bob", "laptop", 1),
        gw.connect_on_shard(WS_JSON, "bob", "web", 1),
    ];
    let mut alice = gw.connect(WS, "alice", "phone");
    let msg_id = send_ok(&mut alice, &to_user("bob", "m1", b"to every device"), "m1");
    for bob in &mut bobs {
        assert_deliver(&bob.deliver(), "alice", "", b"to every device", &msg_id);
    }
    // Exactly one copy each: the next message is the next frame everywhere.
    let msg_id = send_ok(&mut alice, &to_user("bob", "m2", b"again"), "m2");
    for bob in &mut bobs {
        assert_deliver(&bob.deliver(), "alice", "", b"again", &msg_id);
    }
    // The sender is not a device of bob: its next frame answers its ping.
    alice.ping(9);
}

fn room_broadcast_reaches_members_only(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut members = [
        gw.connect_on_shard(WS, "m0", "phone", 0),
        gw.connect_on_shard(TCP, "m1", "laptop", 1),
    ];
    let mut outsiders = [
        gw.connect_on_shard(TCP, "n0", "phone", 0),
        gw.connect_on_shard(WS, "n1", "phone", 1),
    ];
    let mut sender = gw.connect(WS_JSON, "s", "web");
    for c in members.iter_mut().chain([&mut sender]) {
        c.join("r1");
    }
    outsiders[1].join("r2");
    let msg_id = send_ok(&mut sender, &to_room("r1", "b1", b"to the room"), "b1");
    assert_deliver(&sender.any_deliver(), "s", "r1", b"to the room", &msg_id);
    for m in &mut members {
        assert_deliver(&m.deliver(), "s", "r1", b"to the room", &msg_id);
    }
    for (i, n) in outsiders.iter_mut().enumerate() {
        assert_next_is_direct(&mut sender, n, &format!("d{i}"));
    }
    let msg_id = send_ok(&mut sender, &to_room("r1", "b2", b"second"), "b2");
    assert_deliver(&sender.any_deliver(), "s", "r1", b"second", &msg_id);
    for m in &mut members {
        assert_deliver(&m.deliver(), "s", "r1", b"second", &msg_id);
    }
}

fn leave_room(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut stay = gw.connect_on_shard(WS, "stay", "phone", 0);
    let mut go = gw.connect_on_shard(TCP, "go", "laptop", 1);
    let mut sender = gw.connect(WS, "sender", "phone");
    stay.join("r1");
    go.join("r1");
    go.send(&leave("r1"));
    assert_eq!(go.left().room, "r1");
    let msg_id = send_ok(&mut sender, &to_room("r1", "b1", b"after leave"), "b1");
    assert_deliver(&stay.deliver(), "sender", "r1", b"after leave", &msg_id);
    assert_next_is_direct(&mut sender, &mut go, "direct");
}

/// With no backend configured, backend sends are UNAVAILABLE; a QoS 1 send
/// is accepted once stored and arrives with the user's first sequence.
fn unavailable_targets(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut c = gw.connect(TCP, "alice", "laptop");
    c.send(&to_backend("be1", b"x"));
    let r = c.send_result();
    assert_eq!(r.client_msg_id, "be1", "{r:?}");
    assert!(!r.accepted, "{r:?}");
    assert_eq!(r.code(), ErrorCode::Unavailable, "{r:?}");
    c.send(&send_frame(
        send::To::User("alice".into()),
        "q1",
        Qos::AtLeastOnce,
        b"x",
    ));
    let r = c.result_for("q1");
    assert!(r.accepted, "{r:?}");
    let d = c.any_deliver();
    assert_eq!(
        (d.seq, d.qos(), &d.payload[..]),
        (1, Qos::AtLeastOnce, &b"x"[..]),
        "{d:?}"
    );
    c.ping(3);
}
