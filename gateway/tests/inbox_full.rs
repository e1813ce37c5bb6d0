//! The no-drop default for direct QoS 1 (不丢): a send to a recipient whose
//! inbox is at its bound is refused with INBOX_FULL before anything is
//! stored; retried with the same client message id after the recipient
//! acks, it is delivered once, and nothing accepted is ever missing. Room
//! messages keep drop-oldest with a gap (`qos1.rs`).

mod common;

use common::*;
use proto::v1::ErrorCode;

driver_tests!(a_full_inbox_refuses_and_the_retry_lands_once);

#[test]
fn a_full_redis_inbox_refuses_and_the_retry_lands_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    run(Driver::Uring, &["--redis", &url]);
}

fn a_full_inbox_refuses_and_the_retry_lands_once(driver: Driver) {
    run(driver, &[]);
}

fn run(driver: Driver, extra: &[&str]) {
    let mut flags = vec!["--inbox-per-user", "5", "--retransmit-ms", "30000"];
    flags.extend_from_slice(extra);
    let gw = Gateway::start(driver, &flags);
    // Bob is online and reads, but does not ack yet.
    let mut bob = gw.connect(TCP, "bob", "phone");
    let mut alice = gw.connect(WS, "alice", "desk");
    let mut accepted = Vec::new();
    for i in 1..=5 {
        let cmid = format!("c{i}");
        alice.send(&qos1_to_user("bob", &cmid, cmid.as_bytes()));
        let r = alice.result_for(&cmid);
        assert!(r.accepted, "{r:?}");
        accepted.push(r.msg_id);
    }
    for (i, id) in accepted.iter().enumerate() {
        let d = bob.deliver();
        assert_eq!((d.seq, d.msg_id.as_str()), (i as u64 + 1, id.as_str()));
    }
    // The sixth is refused, retryably, and nothing was dropped for it.
    alice.send(&qos1_to_user("bob", "c6", b"c6"));
    let r = alice.result_for("c6");
    assert!(!r.accepted, "{r:?}");
    assert_eq!(r.code, ErrorCode::InboxFull as i32, "{r:?}");
    assert!(r.msg_id.is_empty());
    let mut refusals = 1;
    // Bob acks; Alice's SDK retries with the same id: stored and delivered once.
    bob.send(&ack(5));
    bob.ping(1);
    let retry = loop {
        alice.send(&qos1_to_user("bob", "c6", b"c6"));
        let r = alice.result_for("c6");
        if r.accepted {
            break r;
        }
        // The ack may still be on its way to the store: only INBOX_FULL may
        // come back meanwhile.
        assert_eq!(r.code, ErrorCode::InboxFull as i32, "{r:?}");
        refusals += 1;
    };
    let d = bob.deliver();
    assert_eq!(
        (d.seq, d.msg_id.as_str(), &d.payload[..]),
        (6, retry.msg_id.as_str(), &b"c6"[..])
    );
    // A second retry of the stored message is deduped, not delivered again.
    alice.send(&qos1_to_user("bob", "c6", b"c6"));
    assert_eq!(alice.result_for("c6").msg_id, retry.msg_id);
    bob.send(&ack(6));
    bob.ping(2);
    let refused = metric(&gw.metrics(), "gateway_qos_inbox_full_total");
    assert_eq!(refused, Some(f64::from(refusals)));
}
