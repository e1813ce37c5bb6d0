//! The QoS 1 stall of a reconnect during a slow replay, end to end, with a
//! client that follows the README to the letter (drops duplicates, never
//! re-acks them): 600 messages wait for an offline user; a first connection
//! reads 1..=256 without acking and is reset; with Redis stopped (a store
//! that answers slowly) a second connection sends `resume{256}` and
//! `ack{256}` right after AuthOk. Once Redis answers, everything from 257 on
//! is delivered, in order, and nothing the client has comes again.

mod common;

use common::*;
use proto::v1::Deliver;

const TOTAL: u64 = 600;
const WINDOW: u64 = 256;

driver_tests!(a_resume_sent_during_a_slow_replay_is_kept_and_nothing_stalls);

fn a_resume_sent_during_a_slow_replay_is_kept_and_nothing_stalls(driver: Driver) {
    let redis = RedisServer::start();
    let url = redis.url();
    let gw = Gateway::start(driver, &["--redis", &url, "--retransmit-ms", "30000"]);
    let mut alice = gw.connect(WS, "alice", "desk");
    for i in 1..=TOTAL {
        let cmid = i.to_string();
        alice.send(&qos1_to_user("bob", &cmid, cmid.as_bytes()));
        assert!(alice.result_for(&cmid).accepted);
    }
    // First connection: the replay fills the window; nothing is acked.
    let mut bob = gw.connect(TCP, "bob", "phone");
    for seq in 1..=WINDOW {
        assert_eq!(deliver(&mut bob).seq, seq);
    }
    bob.abort(true);
    // Second connection while the store does not answer.
    redis.signal(libc::SIGSTOP);
    let mut bob = gw.connect(TCP, "bob", "phone");
    bob.send(&resume(WINDOW));
    bob.send(&ack(WINDOW));
    // The gateway answers pings while the replay waits on the store.
    bob.ping(1);
    redis.signal(libc::SIGCONT);
    for seq in WINDOW + 1..=TOTAL {
        let d = deliver(&mut bob);
        assert_eq!(d.seq, seq, "after resume{{{WINDOW}}}: {d:?}");
        if seq % 50 == 0 {
            bob.send(&ack(seq));
        }
    }
    bob.send(&ack(TOTAL));
    bob.ping(2);
    // Nothing acked is replayed to a new connection.
    drop(bob);
    let mut bob = gw.connect(TCP, "bob", "phone");
    bob.ping(3);
    assert!(
        bob.take_stashed().is_empty(),
        "a replay after everything was acked"
    );
}

#[track_caller]
fn deliver(c: &mut Client) -> Deliver {
    match c.recv() {
        Frame::Deliver(d) => d,
        f => panic!("expected a Deliver, got {f:?}"),
    }
}
