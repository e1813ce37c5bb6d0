//! QoS 1 (at-least-once) against the real binary, one behaviour per test:
//! offline delivery and the gap past the in-process bound, dedupe of a
//! retried send, retransmit of what is not acknowledged, a cursor per
//! device, and an ack that holds on whichever shard the device comes back
//! to. The bounds (window, devices, defaults) are in `qos1_bounds.rs`, the
//! chaos runs in `qos1_chaos.rs`.
//!
//! Absence is proven without sleeping: after what a connection must not
//! get, a later event (a Pong, a newer message) must come first.

mod common;

use common::*;

driver_tests!(
    offline_messages_arrive_on_first_connect,
    past_the_bound_a_gap_comes_first,
    retried_send_is_stored_once,
    unacked_message_is_retransmitted,
    every_device_has_its_own_cursor,
    acked_is_not_replayed_on_another_shard,
);

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
