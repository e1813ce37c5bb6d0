//! QoS 1 bounds against the real binary: the in-flight window, room
//! messages stored only for members connected at the time, the 32 tracked
//! devices, and the README's defaults (`qos1.rs` has the basics).
//!
//! Absence is proven without sleeping: after what a connection must not
//! get, a later event (a Pong, a newer message) must come first.

mod common;

use common::*;

driver_tests!(
    at_most_the_window_in_flight,
    room_qos1_is_stored_for_members_connected_then,
    the_defaults_are_the_readmes,
    past_32_devices_the_furthest_behind_gets_a_gap,
);

/// `qos.inflight_window`, 256 by default.
const WINDOW: u64 = 256;

/// 300 messages stored for a device that acks nothing: it gets seqs 1..=256
/// and then nothing until it acks; once its ack leaves fewer than the
/// window unacknowledged, the rest come, in order.
fn at_most_the_window_in_flight(driver: Driver) {
    const N: u64 = 300;
    let gw = Gateway::start(driver, &NO_RETRANSMIT);
    let mut bob = gw.connect(TCP, "bob", "phone");
    let mut alice = gw.connect(WS, "alice", "desk");
    let ids: Vec<String> = (1..=N)
        .map(|i| send_q1(&mut alice, "bob", &format!("c{i}"), &format!("m{i}")))
        .collect();
    let expect = |bob: &mut Client, seqs: std::ops::RangeInclusive<u64>, nonce: u64| {
        for seq in seqs {
            assert_q1(
                &bob.deliver(),
                seq,
                &format!("m{seq}"),
                &ids[seq as usize - 1],
            );
        }
        // Every message was stored (its SendResult came) before: one past
        // the window would have been sent by now, before this Pong.
        bob.ping(nonce);
    };
    expect(&mut bob, 1..=WINDOW, 1);
    // 56 left in flight, room for the 44 that wait.
    bob.send(&ack(200));
    expect(&mut bob, WINDOW + 1..=N, 2);
    bob.send(&ack(N));
    bob.ping(3);
}

/// A QoS 1 room message goes into the inbox of every member connected when
/// it is sent, and of no one else: a member who drops off gets it again on
/// reconnect; a user who joins later never gets it (their first message is
/// seq 1).
fn room_qos1_is_stored_for_members_connected_then(driver: Driver) {
    let gw = Gateway::start(driver, &NO_RETRANSMIT);
    let mut bob = gw.connect_on_shard(WS, "bob", "phone", 0);
    let mut carol = gw.connect_on_shard(TCP, "carol", "laptop", 1);
    bob.join("r1");
    carol.join("r1");
    let mut alice = gw.connect(WS_JSON, "alice", "desk");
    let to_r1 = send_frame(
        proto::v1::send::To::Room("r1".into()),
        "r1",
        Qos::AtLeastOnce,
        b"to the room",
    );
    alice.send(&to_r1);
    let r = alice.result_for("r1");
    assert!(r.accepted, "{r:?}");
    for c in [&mut bob, &mut carol] {
        let d = c.deliver();
        assert_eq!((d.room.as_str(), d.from.as_str()), ("r1", "alice"), "{d:?}");
        assert_q1(&d, 1, "to the room", &r.msg_id);
    }
    carol.send(&ack(1));
    carol.ping(1);
    // Bob never acked: stored for him, so replayed.
    bob.abort(true);
    let mut bob = gw.connect(TCP, "bob", "phone");
    let d = bob.deliver();
    assert_eq!(d.room, "r1", "{d:?}");
    assert_q1(&d, 1, "to the room", &r.msg_id);
    bob.send(&ack(1));
    bob.ping(2);
    // Dave joins after it was sent: nothing of it in his inbox.
    let mut dave = gw.connect(WS, "dave", "tablet");
    dave.join("r1");
    let id = send_q1(&mut alice, "dave", "d1", "to dave");
    assert_q1(&dave.deliver(), 1, "to dave", &id);
}

/// The in-process store tracks 32 devices per user: a 33rd makes the one
/// furthest behind untracked, and when that one returns (saying what it
/// has) it is told of what it missed with a Gap, never a silent hole.
fn past_32_devices_the_furthest_behind_gets_a_gap(driver: Driver) {
    let gw = Gateway::start(driver, &NO_RETRANSMIT);
    let mut alice = gw.connect(WS, "alice", "desk");
    let q1 = |alice: &mut Client, i: u64| send_q1(alice, "bob", &format!("c{i}"), &format!("m{i}"));
    // d0 has 1..=3, acks them, and is offline while 4..=6 are sent: the
    // device furthest behind, and what holds 4..=6.
    let mut d0 = gw.connect(TCP, "bob", "d0");
    let early: Vec<String> = (1..=3).map(|i| q1(&mut alice, i)).collect();
    for (i, id) in early.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_q1(&d0.deliver(), seq, &format!("m{seq}"), id);
    }
    d0.send(&ack(3));
    d0.ping(1);
    drop(d0);
    let held: Vec<String> = (4..=6).map(|i| q1(&mut alice, i)).collect();
    // 31 more devices get and ack 4..=6: 32 tracked.
    for n in 1..=31 {
        let mut d = gw.connect(TCP, "bob", &format!("d{n}"));
        for (i, id) in held.iter().enumerate() {
            let seq = i as u64 + 4;
            assert_q1(&d.deliver(), seq, &format!("m{seq}"), id);
        }
        d.send(&ack(6));
        d.ping(n);
    }
    // The 33rd (which still finds 4..=6 held) pushes d0 out: once it acks,
    // every device still tracked has 4..=6, so they go.
    let mut d32 = gw.connect(WS_JSON, "bob", "d32");
    for (i, id) in held.iter().enumerate() {
        let seq = i as u64 + 4;
        assert_q1(&d32.deliver(), seq, &format!("m{seq}"), id);
    }
    d32.send(&ack(6));
    d32.ping(32);
    drop(d32);
    let mut d0 = gw.connect(WS, "bob", "d0");
    d0.send(&resume(3));
    let id = q1(&mut alice, 7);
    let g = d0.gap();
    assert_eq!((g.from_seq, g.first_available), (4, 7), "{g:?}");
    assert_q1(&d0.deliver(), 7, "m7", &id);
}

/// The QoS defaults the README states, with no flag: `qos.inbox_per_user`
/// 1000 (a direct 1001st is refused with INBOX_FULL, nothing dropped, and
/// stored once retried after the acks), and a first
/// retransmit no sooner than 2 s after the message was sent
/// (`qos.retransmit_ms`, less the gateway's 50 ms timer tick). The 256 window is `at_most_the_window_in_flight`.
fn the_defaults_are_the_readmes(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut alice = gw.connect(WS, "alice", "desk");
    let mut ids: Vec<String> = (1..=1000)
        .map(|i| send_q1(&mut alice, "bob", &format!("c{i}"), &format!("m{i}")))
        .collect();
    alice.send(&qos1_to_user("bob", "c1001", b"m1001"));
    let r = alice.result_for("c1001");
    assert_eq!(
        (r.accepted, r.code()),
        (false, ErrorCode::InboxFull),
        "{r:?}"
    );
    let mut bob = gw.connect(TCP, "bob", "phone");
    for seq in 1..=1000u64 {
        let d = bob.deliver();
        assert_q1(&d, seq, &format!("m{seq}"), &ids[seq as usize - 1]);
        bob.send(&ack(seq));
    }
    bob.ping(1);
    ids.push(send_q1(&mut alice, "bob", "c1001", "m1001"));
    assert_q1(&bob.deliver(), 1001, "m1001", &ids[1000]);
    bob.send(&ack(1001));
    // Timed from before the send: the gateway sends it later than this.
    let sent = std::time::Instant::now();
    let id = send_q1(&mut alice, "bob", "late", "late");
    assert_q1(&bob.deliver(), 1002, "late", &id);
    let again = bob.deliver();
    let took = sent.elapsed();
    assert_q1(&again, 1002, "late", &id);
    assert!(
        took + std::time::Duration::from_millis(50) >= std::time::Duration::from_secs(2),
        "retransmitted after {took:?}"
    );
    bob.send(&ack(1002));
}
