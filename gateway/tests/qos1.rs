//! QoS 1 (at-least-once) against the real binary, one behaviour per test:
//! offline delivery and the gap past the in-process bound, dedupe of a
//! retried send, retransmit of what is not acknowledged, a cursor per
//! device, and an ack that holds on whichever shard the device comes back
//! to. The chaos runs are in `qos1_chaos.rs`.
//!
//! Absence is proven without sleeping: after what a connection must not
//! get, a later event (a Pong, a newer message) must come first.

mod common;

use common::*;
use proto::v1::Deliver;

driver_tests!(
    offline_messages_arrive_on_first_connect,
    past_the_bound_a_gap_comes_first,
    retried_send_is_stored_once,
    unacked_message_is_retransmitted,
    every_device_has_its_own_cursor,
    acked_is_not_replayed_on_another_shard,
    at_most_the_window_in_flight,
    room_qos1_is_stored_for_members_connected_then,
    the_defaults_are_the_readmes,
    past_32_devices_the_furthest_behind_gets_a_gap,
);

/// Retransmits that cannot fire while a test runs (they would be extra
/// frames in tests that are not about them).
const NO_RETRANSMIT: [&str; 2] = ["--retransmit-ms", "30000"];

/// Sends a QoS 1 message and returns its msg_id once it is stored.
#[track_caller]
fn send_q1(c: &mut Client, to: &str, client_msg_id: &str, payload: &str) -> String {
    c.send(&qos1_to_user(to, client_msg_id, payload.as_bytes()));
    let r = c.result_for(client_msg_id);
    assert!(r.accepted && !r.msg_id.is_empty(), "{r:?}");
    r.msg_id
}

#[track_caller]
fn assert_q1(d: &Deliver, seq: u64, payload: &str, msg_id: &str) {
    assert_eq!(d.qos(), Qos::AtLeastOnce, "{d:?}");
    assert_eq!(
        (d.seq, &d.payload[..], d.msg_id.as_str()),
        (seq, payload.as_bytes(), msg_id),
        "{d:?}"
    );
}

fn offline_messages_arrive_on_first_connect(driver: Driver) {
    let gw = Gateway::start(driver, &NO_RETRANSMIT);
    let mut alice = gw.connect(WS, "alice", "desk");
    let ids: Vec<String> = (0..3)
        .map(|i| send_q1(&mut alice, "bob", &format!("c{i}"), &format!("m{i}")))
        .collect();
    let mut bob = gw.connect(TCP, "bob", "phone");
    for (i, id) in ids.iter().enumerate() {
        let d = bob.deliver();
        assert_eq!(d.from, "alice", "{d:?}");
        assert_q1(&d, i as u64 + 1, &format!("m{i}"), id);
    }
    bob.send(&ack(3));
    bob.ping(1);
    // Live messages follow the offline ones in the same sequence.
    let id = send_q1(&mut alice, "bob", "c3", "m3");
    assert_q1(&bob.deliver(), 4, "m3", &id);
}

/// `--inbox-per-user 5` with direct sends set to drop the oldest (the
/// default refuses them: `inbox_full.rs`): a user who was never connected,
/// and a device that was, each learn where their loss ends before the
/// messages that remain.
fn past_the_bound_a_gap_comes_first(driver: Driver) {
    let mut flags = NO_RETRANSMIT.to_vec();
    flags.extend(["--inbox-per-user", "5", "--direct-when-full", "drop_oldest"]);
    let gw = Gateway::start(driver, &flags);
    let mut alice = gw.connect(WS, "alice", "desk");
    let ids: Vec<String> = (1..=8)
        .map(|i| send_q1(&mut alice, "bob", &format!("c{i}"), &format!("m{i}")))
        .collect();
    let mut bob = gw.connect(WS_JSON, "bob", "phone");
    let gap = bob.gap();
    assert_eq!((gap.from_seq, gap.first_available), (1, 4), "{gap:?}");
    for seq in 4..=8 {
        assert_q1(
            &bob.deliver(),
            seq,
            &format!("m{seq}"),
            &ids[seq as usize - 1],
        );
    }
    bob.send(&ack(8));
    bob.ping(1);
    drop(bob);
    // The device is tracked now; it is offline for seqs 9..=15.
    let ids: Vec<String> = (9..=15)
        .map(|i| send_q1(&mut alice, "bob", &format!("c{i}"), &format!("m{i}")))
        .collect();
    let mut bob = gw.connect(TCP, "bob", "phone");
    let gap = bob.gap();
    assert_eq!((gap.from_seq, gap.first_available), (9, 11), "{gap:?}");
    for seq in 11..=15 {
        assert_q1(
            &bob.deliver(),
            seq,
            &format!("m{seq}"),
            &ids[seq as usize - 9],
        );
    }
    bob.ping(2);
    gw.wait_metric("gateway_qos_gaps_total", |v| v >= 2.0);
}

fn retried_send_is_stored_once(driver: Driver) {
    let gw = Gateway::start(driver, &NO_RETRANSMIT);
    let mut bob = gw.connect_on_shard(TCP, "bob", "phone", 1);
    let mut alice = gw.connect_on_shard(WS, "alice", "desk", 0);
    let first = send_q1(&mut alice, "bob", "c1", "once");
    assert_eq!(send_q1(&mut alice, "bob", "c1", "once"), first, "a retry");
    // A retry sent before the first answer came back.
    alice.send(&qos1_to_user("bob", "c2", b"twice"));
    let second = send_q1(&mut alice, "bob", "c2", "twice");
    assert_eq!(alice.result_for("c2").msg_id, second);
    assert_ne!(first, second);
    assert_q1(&bob.deliver(), 1, "once", &first);
    assert_q1(&bob.deliver(), 2, "twice", &second);
    bob.send(&ack(2));
    let third = send_q1(&mut alice, "bob", "c3", "after");
    assert_q1(&bob.deliver(), 3, "after", &third);
    let text = gw.metrics();
    assert_eq!(metric(&text, "gateway_qos_appends_total"), Some(3.0));
    assert_eq!(metric(&text, "gateway_qos_dedupe_hits_total"), Some(2.0));
}

/// `--retransmit-ms 200`: an unacknowledged message comes again, same seq
/// and msg_id, until it is acknowledged; then only newer ones come again.
fn unacked_message_is_retransmitted(driver: Driver) {
    let gw = Gateway::start(driver, &["--retransmit-ms", "200"]);
    let mut bob = gw.connect(TCP, "bob", "phone");
    let mut alice = gw.connect(WS, "alice", "desk");
    let first = send_q1(&mut alice, "bob", "c1", "m1");
    for _ in 0..3 {
        assert_q1(&bob.deliver(), 1, "m1", &first);
    }
    bob.send(&ack(1));
    bob.send(&ping(7));
    // A retransmit of 1 may have crossed the ack; once the Pong is here the
    // ack was taken.
    loop {
        match bob.recv() {
            Frame::Deliver(d) => assert_q1(&d, 1, "m1", &first),
            Frame::Pong(p) => break assert_eq!(p.nonce, 7),
            f => panic!("expected Pong, got {f:?}"),
        }
    }
    let second = send_q1(&mut alice, "bob", "c2", "m2");
    // The next two deliveries: 2, and 2 again (a retransmit carrying only
    // what is unacknowledged: not 1).
    assert_q1(&bob.deliver(), 2, "m2", &second);
    assert_q1(&bob.deliver(), 2, "m2", &second);
    bob.send(&ack(2));
    gw.wait_metric("gateway_qos_retransmits_total", |v| v >= 3.0);
}

/// Device A acknowledges, device B drops its connection without: B gets
/// the messages again on reconnect, A does not.
fn every_device_has_its_own_cursor(driver: Driver) {
    let gw = Gateway::start(driver, &NO_RETRANSMIT);
    let mut phone = gw.connect_on_shard(WS, "bob", "phone", 0);
    let mut laptop = gw.connect_on_shard(TCP, "bob", "laptop", 1);
    let mut alice = gw.connect(WS_JSON, "alice", "desk");
    let ids: Vec<String> = (1..=5)
        .map(|i| send_q1(&mut alice, "bob", &format!("c{i}"), &format!("m{i}")))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_q1(&phone.deliver(), seq, &format!("m{seq}"), id);
        assert_q1(&laptop.deliver(), seq, &format!("m{seq}"), id);
    }
    phone.send(&ack(5));
    phone.ping(1);
    laptop.abort(true);
    let mut laptop = gw.connect(WS, "bob", "laptop");
    for (i, id) in ids.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_q1(&laptop.deliver(), seq, &format!("m{seq}"), id);
    }
    laptop.send(&ack(5));
    laptop.ping(2);
    drop(phone);
    // Not the shard that took the ack: its Pong came, so the ack counts
    // wherever the phone connects next.
    let mut phone = gw.connect_on_shard(TCP, "bob", "phone", 1);
    let id = send_q1(&mut alice, "bob", "c6", "m6");
    assert_q1(&phone.deliver(), 6, "m6", &id);
    assert_q1(&laptop.deliver(), 6, "m6", &id);
}

/// A device acks on one shard, gets the Pong after its ack, and reconnects
/// at once on the other: the first delivery on the new connection is the
/// next message, never one it acked (replay comes before live messages, so
/// a replay of an acked one would come first). Twenty rounds, both ways.
fn acked_is_not_replayed_on_another_shard(driver: Driver) {
    acked_not_replayed_elsewhere(&Gateway::start(driver, &NO_RETRANSMIT));
}

/// The same with the Redis store, where the ack cursor is written by the
/// owner shard's store worker.
#[test]
fn uring_acked_is_not_replayed_on_another_shard_redis_store() {
    let redis = RedisServer::start();
    let mut flags = NO_RETRANSMIT.to_vec();
    let url = redis.url();
    flags.extend(["--redis", &url]);
    acked_not_replayed_elsewhere(&Gateway::start(Driver::Uring, &flags));
}

fn acked_not_replayed_elsewhere(gw: &Gateway) {
    assert_eq!(gw.shards, 2);
    let mut alice = gw.connect(WS, "alice", "desk");
    let mut phone = gw.connect_on_shard(TCP, "bob", "phone", 0);
    for round in 1..=20u64 {
        let id = send_q1(
            &mut alice,
            "bob",
            &format!("c{round}"),
            &format!("m{round}"),
        );
        assert_q1(&phone.deliver(), round, &format!("m{round}"), &id);
        phone.send(&ack(round));
        phone.ping(round);
        let other = 1 - phone.auth.shard;
        drop(phone);
        phone = gw.connect_on_shard(
            [TCP, WS, WS_JSON][round as usize % 3],
            "bob",
            "phone",
            other,
        );
        phone.send(&ping(1000 + round));
        // Nothing comes before the Pong, and the next round's first
        // delivery must be the next message (a replay would come first).
        assert_eq!(phone.pong().nonce, 1000 + round, "round {round}");
    }
    let id = send_q1(&mut alice, "bob", "last", "last");
    assert_q1(&phone.deliver(), 21, "last", &id);
}

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
