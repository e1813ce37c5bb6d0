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
/// Given with the connection (`last_seq` in `auth`), the point is known
/// before anything is read and the Gap comes first. Given as a `resume`
/// after `authOk` (as the README allows), messages read from what is held
/// may come before it (a real client's resume is a round trip late); the
/// Gap then follows, and what came already comes again with its seq.
///
/// One shard: a device's ack and the next device's read then reach the
/// store in the order the test sends them (with two, an ack routed from
/// one shard may be behind a read routed from the other).
fn past_32_devices_the_furthest_behind_gets_a_gap(driver: Driver) {
    let gw = Gateway::start(
        driver,
        &[NO_RETRANSMIT[0], NO_RETRANSMIT[1], "--shards", "1"],
    );
    let mut alice = gw.connect(WS, "alice", "desk");
    push_d0_out(&gw, &mut alice, "bob");
    let mut d0 = Client::from_tcp(std::net::TcpStream::connect(gw.tcp).expect("connect tcp"));
    d0.send(&proto::v1::ClientFrame {
        frame: Some(proto::v1::client_frame::Frame::Auth(proto::v1::Auth {
            token: user_token("bob", "d0"),
            device: String::new(),
            last_seq: 3,
            rooms: Vec::new(),
        })),
    });
    d0.auth_ok();
    let id = send_q1(&mut alice, "bob", "c7", "m7");
    let g = d0.gap();
    assert_eq!((g.from_seq, g.first_available), (4, 7), "{g:?}");
    assert_q1(&d0.deliver(), 7, "m7", &id);

    push_d0_out(&gw, &mut alice, "carol");
    let mut d0 = gw.connect(WS, "carol", "d0");
    d0.send(&resume(3));
    let id = send_q1(&mut alice, "carol", "c7", "m7");
    let g = d0.recv_matching("Gap", |f| matches!(f, Frame::Gap(_)));
    assert!(
        matches!(g, Frame::Gap(ref g) if (g.from_seq, g.first_available) == (4, 7)),
        "{g:?}"
    );
    // m7 before the Gap (read from what is held), after it (read from the
    // resume point), or both: nothing else, and never 4..=6.
    let before = d0.take_stashed();
    d0.send(&ping(7));
    d0.recv_matching("Pong", |f| matches!(f, Frame::Pong(p) if p.nonce == 7));
    let after = d0.take_stashed();
    assert!(before.len() + after.len() > 0, "m7 never came");
    for f in before.iter().chain(&after) {
        assert!(
            matches!(f, Frame::Deliver(d) if d.seq == 7 && d.msg_id == id),
            "{f:?}"
        );
    }
}

/// For `user`: its device d0 gets 1..=3, acks them and goes offline; 4..=6
/// are sent; 32 more devices get and ack 4..=6. The 33rd pushed d0 out of
/// the tracked 32, so nothing held 4..=6 back: they are freed.
fn push_d0_out(gw: &Gateway, alice: &mut Client, user: &str) {
    let q1 = |alice: &mut Client, i: u64| send_q1(alice, user, &format!("c{i}"), &format!("m{i}"));
    let mut d0 = gw.connect(TCP, user, "d0");
    let early: Vec<String> = (1..=3).map(|i| q1(alice, i)).collect();
    for (i, id) in early.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_q1(&d0.deliver(), seq, &format!("m{seq}"), id);
    }
    d0.send(&ack(3));
    d0.ping(1);
    drop(d0);
    let held: Vec<String> = (4..=6).map(|i| q1(alice, i)).collect();
    for n in 1..=32 {
        let t = if n == 32 { WS_JSON } else { TCP };
        let mut d = gw.connect(t, user, &format!("d{n}"));
        for (i, id) in held.iter().enumerate() {
            let seq = i as u64 + 4;
            assert_q1(&d.deliver(), seq, &format!("m{seq}"), id);
        }
        d.send(&ack(6));
        d.ping(n);
    }
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
