//! The Redis store under load and failure: pipelining, a new store instance
//! (a gateway restart), Redis going away and coming back, lost scripts.
use super::*;
use crate::store::StoreErrorKind;

#[test]
fn a_thousand_appends_are_pipelined_and_stay_in_order() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(10_000));
    for i in 0..1000 {
        h.store
            .submit(append_op("bob", "alice", &i.to_string(), "x", &["phone"]));
    }
    let done = h.wait(1000);
    for (i, d) in done.iter().enumerate() {
        match d {
            Done::Appended {
                result: Ok(m),
                client_msg_id,
                duplicate: false,
                ..
            } => {
                assert_eq!(
                    (m.seq, client_msg_id.as_str()),
                    (i as u64 + 1, i.to_string().as_str())
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = h.store.stats();
    assert_eq!(stats.ops, 1000);
    assert!(
        stats.batches < 100,
        "{} round trips for 1000 appends",
        stats.batches
    );
    assert_eq!(h.read("bob", "phone", None).msgs.len(), 1000);
}

#[test]
fn state_survives_a_new_store_instance() {
    let server = RedisServer::start();
    {
        let mut h = harness(&server, limits(100));
        for i in 0..3 {
            h.append_online("bob", "a", &i.to_string(), "x", &["phone", "laptop"]);
        }
        h.ack("bob", "phone", 2);
        // Dropping the store finishes what was queued (the ack) first.
    }
    let mut h = harness(&server, limits(100));
    assert_eq!(
        h.append("bob", "a", "3", "y"),
        (4, false),
        "the sequence continues"
    );
    assert_eq!(
        h.append("bob", "a", "0", "x"),
        (1, true),
        "dedupe records survive too"
    );
    assert_eq!(
        seqs(&h.read("bob", "phone", None)),
        vec![3, 4],
        "cursor kept"
    );
    assert_eq!(seqs(&h.read("bob", "laptop", None)), vec![1, 2, 3, 4]);
}

#[test]
fn a_redis_outage_fails_pending_ops_in_order_then_recovers() {
    let mut server = RedisServer::start();
    let mut h = harness(&server, limits(1000));
    for i in 0..5 {
        h.append("bob", "a", &format!("warm{i}"), "x");
    }
    for i in 0..100 {
        h.store
            .submit(append_op("bob", "a", &i.to_string(), "x", &[]));
    }
    server.kill();
    for i in 100..200 {
        h.store
            .submit(append_op("bob", "a", &i.to_string(), "x", &[]));
        if i % 50 == 0 {
            h.ack("bob", "phone", 1);
            let conn = ReplyTo {
                shard: 0,
                key: 0,
                conn_id: 1,
            };
            h.store.submit(Op::Read {
                user: Arc::from("bob"),
                device: Arc::from("p"),
                after: None,
                max: 10,
                conn,
            });
        }
    }
    let done = h.wait(202);
    let mut failed = false;
    let mut next_seq = 6;
    let mut appends = 0;
    for d in &done {
        match d {
            Done::Appended {
                result,
                client_msg_id,
                ..
            } => {
                assert_eq!(
                    client_msg_id,
                    &appends.to_string(),
                    "completions in submission order"
                );
                appends += 1;
                match result {
                    Ok(m) => {
                        assert!(!failed, "nothing succeeds after the outage began");
                        assert_eq!(m.seq, next_seq);
                        next_seq += 1;
                    }
                    Err(e) => {
                        assert!(e.retryable(), "an outage is worth a retry: {e}");
                        failed = true;
                    }
                }
            }
            Done::RoomAppended(_) | Done::RoomRead { .. } => unreachable!("no room ops"),
            Done::Read { result, .. } => assert!(
                result
                    .as_ref()
                    .is_err_and(|e| e.kind == StoreErrorKind::Unreachable),
                "redis is down: {result:?}"
            ),
        }
    }
    assert!(failed && appends == 200);
    assert_eq!(
        h.store.stats().outages,
        1,
        "one outage, however many batches failed"
    );

    server.restart();
    let deadline = Instant::now() + WAIT;
    let first = loop {
        match h.append_result("eve", "a", "back", "x", &[]) {
            Ok((m, _)) => break m,
            Err(e) => assert!(Instant::now() < deadline, "redis did not come back: {e}"),
        }
        std::thread::park_timeout(Duration::from_millis(20));
    };
    assert_eq!(first.seq, 1, "the restarted redis kept no data");
    assert_eq!(h.append("eve", "a", "back2", "y"), (2, false));
    assert_eq!(seqs(&h.read("eve", "phone", None)), vec![1, 2]);
}

#[test]
fn start_fails_fast_when_misconfigured() {
    let server = RedisServer::start();
    let notify = || Box::new(|| {}) as Box<dyn Fn() + Send>;
    let bad_prefix = RedisLimits {
        key_prefix: "a{b".into(),
        ..RedisLimits::default()
    };
    assert!(RedisStore::start(&server.url(), 0, bad_prefix, notify()).is_err());
    assert!(RedisStore::start("not a url", 0, RedisLimits::default(), notify()).is_err());
    let url = server.url();
    drop(server);
    assert!(RedisStore::start(&url, 0, RedisLimits::default(), notify()).is_err());
}

#[test]
fn flushed_scripts_are_loaded_again() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    assert_eq!(h.append("bob", "a", "1", "x"), (1, false));
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut server.conn())
        .expect("SCRIPT FLUSH");
    assert_eq!(h.append("bob", "a", "2", "y"), (2, false));
    assert_eq!(seqs(&h.read("bob", "phone", None)), vec![1, 2]);
    assert_eq!(h.store.stats().failed_ops, 0);
}

#[test]
fn mixed_operations_complete_in_submission_order() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    let conn = ReplyTo {
        shard: 0,
        key: 0,
        conn_id: 1,
    };
    let read = |max| Op::Read {
        user: Arc::from("bob"),
        device: Arc::from("phone"),
        after: None,
        max,
        conn,
    };
    h.store.submit(append_op("bob", "a", "1", "x", &["phone"]));
    h.store.submit(read(10));
    h.store.submit(append_op("bob", "a", "2", "y", &[]));
    h.store.submit(Op::Ack {
        user: Arc::from("bob"),
        device: Arc::from("phone"),
        seq: 1,
    });
    h.store.submit(append_op("bob", "a", "3", "z", &[]));
    h.store.submit(read(1));
    let done = h.wait(5);
    let shape: Vec<String> = done
        .iter()
        .map(|d| match d {
            Done::Appended { result: Ok(m), .. } => format!("append {}", m.seq),
            Done::Read { result: Ok(r), .. } => format!("read {:?} of {}", seqs(r), r.last_seq),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "append 1",
            "read [1] of 1",
            "append 2",
            "append 3",
            "read [2] of 3"
        ]
    );
}

#[test]
fn a_refusal_for_good_is_not_retryable() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(1000));
    // The user's sequence key holds a hash: the append script fails with
    // WRONGTYPE, and would fail the same way however often it is retried.
    let keys = UserKeys::new(&RedisLimits::default().key_prefix, "mallory");
    let _: () = server.conn().hset(keys.seq(), "f", "v").unwrap();
    let e = h.append_result("mallory", "a", "1", "x", &[]).unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Refused, "{e}");
    assert!(!e.retryable());
    // Redis itself is fine: another user's append succeeds.
    assert_eq!(h.append("bob", "a", "1", "x"), (1, false));
}

#[test]
fn a_full_inbox_refuses_a_direct_send_and_takes_its_retry_after_an_ack() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(3));
    let refuse = |h: &mut Harness, cmid: &str| {
        let mut op = append_op("bob", "alice", cmid, cmid, &["phone"]);
        if let Op::Append { when_full, .. } = &mut op {
            *when_full = crate::store::WhenFull::Refuse;
        }
        h.store.submit(op);
        match h.wait(1).pop() {
            Some(Done::Appended { result, .. }) => result.map(|m| m.seq),
            other => panic!("unexpected {other:?}"),
        }
    };
    for i in 1..=3 {
        assert_eq!(refuse(&mut h, &i.to_string()), Ok(i));
    }
    let e = refuse(&mut h, "4").unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Full, "{e}");
    assert!(e.retryable());
    let r = h.read("bob", "phone", None);
    assert_eq!((seqs(&r), r.gap, r.last_seq), (vec![1, 2, 3], None, 3));
    h.ack("bob", "phone", 2);
    assert_eq!(refuse(&mut h, "4"), Ok(4));
    assert_eq!(refuse(&mut h, "4"), Ok(4), "deduped");
    assert_eq!(seqs(&h.read("bob", "phone", Some(2))), vec![3, 4]);
}

#[test]
fn an_ack_refused_for_now_is_sent_again() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(1000));
    for i in 1..=3 {
        h.append_online("bob", "a", &i.to_string(), "x", &["phone"]);
    }
    // Redis refuses writes (OOM under maxmemory with noeviction): the ack
    // is refused, retryably.
    let mut admin = server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query(&mut admin)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut admin)
        .unwrap();
    h.ack("bob", "phone", 2);
    let deadline = Instant::now() + WAIT;
    while h.store.stats().failed_ops == 0 {
        assert!(Instant::now() < deadline, "the ack was never refused");
        std::thread::park_timeout(Duration::from_millis(10));
    }
    // Redis takes writes again: the kept ack lands without a new one.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut admin)
        .unwrap();
    let keys = UserKeys::new(&RedisLimits::default().key_prefix, "bob");
    loop {
        let cursor: Option<u64> = admin.hget(keys.cursors(), "phone").unwrap();
        if cursor == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused ack was never sent again: {cursor:?}"
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }
    assert_eq!(seqs(&h.read("bob", "phone", None)), vec![3]);
}

#[test]
fn a_mixed_batch_runs_in_its_order_in_grouped_calls() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(3));
    // One flush: appends to two users (a retry among them), acks, a read
    // in the middle, and an append refused by a full inbox.
    h.store.submit(append_op("bob", "a", "1", "x", &["phone"]));
    h.store.submit(append_op("eve", "a", "1", "x", &[]));
    h.store.submit(append_op("bob", "a", "2", "x", &[]));
    h.store.submit(append_op("bob", "a", "1", "x", &[]));
    h.store.submit(Op::Ack {
        user: Arc::from("bob"),
        device: Arc::from("phone"),
        seq: 1,
    });
    h.store.submit(read_op("bob", "phone"));
    for i in 2..=4 {
        h.store
            .submit(append_op("eve", "a", &i.to_string(), "x", &[]));
    }
    let mut full = append_op("eve", "a", "5", "x", &[]);
    if let Op::Append { when_full, .. } = &mut full {
        *when_full = crate::store::WhenFull::Refuse;
    }
    h.store.submit(full);
    h.store.submit(append_op("bob", "a", "3", "x", &[]));
    let done = h.wait(10);
    let shape: Vec<String> = done
        .iter()
        .map(|d| match d {
            Done::Appended {
                user,
                result: Ok(m),
                duplicate,
                ..
            } => format!("{user} {} {duplicate}", m.seq),
            Done::Appended {
                user,
                result: Err(e),
                ..
            } => format!("{user} {:?}", e.kind),
            Done::Read { result: Ok(r), .. } => format!("read {:?}", seqs(r)),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "bob 1 false",
            "eve 1 false",
            "bob 2 false",
            "bob 1 true",
            // After the ack of 1, before the append of 3.
            "read [2]",
            "eve 2 false",
            "eve 3 false",
            // eve holds 3 now (the bound drops the oldest on append 4),
            // and the refusing append finds the inbox full.
            "eve 4 false",
            "eve Full",
            "bob 3 false",
        ]
    );
    assert_eq!(seqs(&h.read("bob", "phone", None)), vec![2, 3]);
    let stats = h.store.stats();
    assert!(stats.batches <= 2, "{} round trips", stats.batches);
}
