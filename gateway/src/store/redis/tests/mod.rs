//! The Redis store against a real redis-server (one per test): the memory
//! store's cases here, batching and restarts in `durability`.
//! Every wait is on completions with a deadline, never a fixed sleep.
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use redis::Commands;

use super::keys::UserKeys;
use super::testutil::RedisServer;
use super::*;
use crate::store::{Replay, ReplyTo, Stored};

/// How long any batch of operations may take to complete.
pub(super) const WAIT: Duration = Duration::from_secs(15);

pub(super) struct Harness {
    pub(super) store: RedisStore,
    pub(super) wake: Receiver<()>,
}

pub(super) fn limits(per_user: usize) -> RedisLimits {
    RedisLimits {
        per_user,
        ..RedisLimits::default()
    }
}

pub(super) fn harness(server: &RedisServer, limits: RedisLimits) -> Harness {
    let (tx, wake) = crossbeam_channel::unbounded();
    let notify = Box::new(move || {
        let _ = tx.send(());
    });
    let store = RedisStore::start(&server.url(), 0, limits, notify).expect("start the redis store");
    Harness { store, wake }
}

pub(super) fn msg(from: &str, body: &str) -> Stored {
    Stored::for_test(from, body, 1_000_000)
}

pub(super) fn append_op(user: &str, from: &str, cmid: &str, body: &str, online: &[&str]) -> Op {
    let online = online.iter().map(|d| Arc::from(*d)).collect();
    Op::Append {
        user: Arc::from(user),
        msg: msg(from, body),
        client_msg_id: cmid.into(),
        online,
        reply: None,
        when_full: crate::store::WhenFull::DropOldest,
    }
}

/// A read of everything `device` of `user` has not acknowledged.
pub(super) fn read_op(user: &str, device: &str) -> Op {
    Op::Read {
        user: Arc::from(user),
        device: Arc::from(device),
        after: None,
        max: 1000,
        conn: ReplyTo {
            shard: 0,
            key: 0,
            conn_id: 1,
        },
    }
}

impl Harness {
    /// Waits until exactly `n` operations have completed.
    pub(super) fn wait(&mut self, n: usize) -> Vec<Done> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        self.store.flush();
        loop {
            self.store.completed(&mut out);
            if out.len() >= n {
                assert_eq!(out.len(), n, "more completions than operations");
                return out;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} operations completed in {WAIT:?}",
                out.len()
            );
            let _ = self.wake.recv_timeout(left);
        }
    }

    pub(super) fn append_result(
        &mut self,
        user: &str,
        from: &str,
        cmid: &str,
        body: &str,
        online: &[&str],
    ) -> Result<(Stored, bool), StoreError> {
        self.store.submit(append_op(user, from, cmid, body, online));
        match self.wait(1).pop() {
            Some(Done::Appended {
                result, duplicate, ..
            }) => result.map(|m| (m, duplicate)),
            other => panic!("unexpected {other:?}"),
        }
    }

    pub(super) fn append_online(
        &mut self,
        user: &str,
        from: &str,
        cmid: &str,
        body: &str,
        online: &[&str],
    ) -> (u64, bool) {
        let (m, duplicate) = self
            .append_result(user, from, cmid, body, online)
            .expect("append");
        (m.seq, duplicate)
    }

    pub(super) fn append(&mut self, user: &str, from: &str, cmid: &str, body: &str) -> (u64, bool) {
        self.append_online(user, from, cmid, body, &[])
    }

    pub(super) fn read(&mut self, user: &str, device: &str, after: Option<u64>) -> Replay {
        let conn = ReplyTo {
            shard: 0,
            key: 0,
            conn_id: 1,
        };
        self.store.submit(Op::Read {
            user: Arc::from(user),
            device: Arc::from(device),
            after,
            max: 1000,
            conn,
        });
        match self.wait(1).pop() {
            Some(Done::Read { result: Ok(r), .. }) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub(super) fn ack(&mut self, user: &str, device: &str, seq: u64) {
        self.store.submit(Op::Ack {
            user: Arc::from(user),
            device: Arc::from(device),
            seq,
        });
        self.store.flush();
    }
}

pub(super) fn seqs(r: &Replay) -> Vec<u64> {
    r.msgs.iter().map(|m| m.seq).collect()
}

pub(super) fn keys(user: &str) -> UserKeys {
    UserKeys::new("im", user)
}

pub(super) fn held(server: &RedisServer, user: &str) -> usize {
    server.conn().zcard(keys(user).inbox()).expect("ZCARD")
}

#[test]
fn sequences_are_per_user_and_gapless() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    assert_eq!(h.append("bob", "a", "1", "x"), (1, false));
    assert_eq!(h.append("bob", "a", "2", "y"), (2, false));
    assert_eq!(h.append("eve", "a", "3", "z"), (1, false));
    let r = h.read("bob", "phone", None);
    assert_eq!(seqs(&r), vec![1, 2]);
    assert_eq!(
        r.msgs[1],
        Stored {
            seq: 2,
            ..msg("a", "y")
        },
        "stored messages come back whole"
    );
    assert_eq!(r.last_seq, 2);
}

#[test]
fn users_with_separators_in_their_names_do_not_share_keys() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    assert_eq!(h.append("a:{b}", "x", "1", "p"), (1, false));
    assert_eq!(h.append("a", "x", "1", "q"), (1, false));
    assert_eq!(h.append("a:{b}", "x", "2", "r"), (2, false));
    assert_eq!(seqs(&h.read("a", "d:{1}", None)), vec![1]);
}

#[test]
fn a_retry_returns_the_first_copy_and_is_stored_once() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    assert_eq!(h.append("bob", "alice", "c1", "x"), (1, false));
    let (first, dup) = h
        .append_result("bob", "alice", "c1", "retry", &[])
        .expect("append");
    assert!(dup);
    assert_eq!(
        (first.seq, first.msg_id.as_str()),
        (1, "m-x"),
        "the first copy's seq and msg_id"
    );
    assert_eq!(
        h.append("bob", "carol", "c1", "x"),
        (2, false),
        "ids are per sender"
    );
    assert_eq!(
        h.append("bob", "alice", "", "y"),
        (3, false),
        "no id, no dedupe"
    );
    assert_eq!(h.append("bob", "alice", "", "y"), (4, false));
    assert_eq!(seqs(&h.read("bob", "phone", None)), vec![1, 2, 3, 4]);
}

#[test]
fn dedupe_records_last_the_dedupe_window() {
    let server = RedisServer::start();
    let window = Duration::from_secs(30);
    let mut h = harness(
        &server,
        RedisLimits {
            dedupe_window: window,
            ..limits(100)
        },
    );
    h.append("bob", "alice", "c1", "x");
    let key = keys("bob").dedupe("alice", "c1");
    let ttl: i64 = server.conn().pttl(&key).expect("PTTL");
    assert!(ttl > 0 && ttl <= window.as_millis() as i64, "ttl {ttl}");
    // What expiry does, without waiting for it: the id may be used again.
    let _: () = server.conn().del(&key).expect("DEL");
    assert_eq!(h.append("bob", "alice", "c1", "x"), (2, false));
}

#[test]
fn acks_by_every_tracked_device_free_messages() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    for i in 0..5 {
        h.append_online("bob", "a", &i.to_string(), "x", &["phone", "laptop"]);
    }
    h.ack("bob", "phone", 5);
    assert_eq!(
        seqs(&h.read("bob", "laptop", None)),
        vec![1, 2, 3, 4, 5],
        "laptop has not acked"
    );
    assert_eq!(held(&server, "bob"), 5);
    h.ack("bob", "laptop", 3);
    assert!(h.read("bob", "phone", None).msgs.is_empty());
    assert_eq!(held(&server, "bob"), 2);
    h.ack("bob", "laptop", 99);
    assert_eq!(
        h.read("bob", "laptop", Some(0)),
        Replay {
            msgs: vec![],
            gap: None,
            last_seq: 5,
            from: 5,
        }
    );
    assert_eq!(held(&server, "bob"), 0);
}

#[test]
fn resume_point_is_never_before_the_stored_cursor() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    for i in 0..4 {
        h.append_online("bob", "a", &i.to_string(), "x", &["phone", "tab"]);
    }
    h.ack("bob", "phone", 2);
    assert_eq!(seqs(&h.read("bob", "phone", Some(0))), vec![3, 4]);
    assert_eq!(seqs(&h.read("bob", "phone", Some(3))), vec![4]);
    assert_eq!(seqs(&h.read("bob", "tab", None)), vec![1, 2, 3, 4]);
}

#[test]
fn per_user_bound_reports_a_gap() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(3));
    for i in 0..5 {
        h.append_online("bob", "a", &i.to_string(), "x", &["phone"]);
    }
    let r = h.read("bob", "phone", None);
    assert_eq!(r.gap, Some((1, 3)));
    assert_eq!(seqs(&r), vec![3, 4, 5]);
    assert_eq!(r.last_seq, 5);
    h.ack("bob", "phone", 5);
    assert_eq!(
        h.read("bob", "phone", None).gap,
        None,
        "the device was told"
    );
}

#[test]
fn offline_messages_wait_for_a_new_device() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    h.append("bob", "a", "1", "x");
    h.append("bob", "a", "2", "y");
    let r = h.read("bob", "phone", None);
    assert_eq!(seqs(&r), vec![1, 2]);
    assert_eq!(r.gap, None);
}

#[test]
fn an_unknown_user_has_nothing_and_is_not_tracked() {
    let server = RedisServer::start();
    let mut h = harness(&server, limits(100));
    assert_eq!(h.read("nobody", "phone", None), Replay::default());
    h.ack("nobody", "phone", 3);
    assert_eq!(h.read("nobody", "phone", Some(1)), Replay::default());
    let all: Vec<String> = server.conn().keys("*").expect("KEYS");
    assert!(all.is_empty(), "{all:?}");
}

#[test]
fn retention_expires_the_inbox_but_never_the_sequence() {
    let server = RedisServer::start();
    let retention = Duration::from_secs(3600);
    let mut h = harness(
        &server,
        RedisLimits {
            retention,
            ..limits(100)
        },
    );
    for i in 0..3 {
        h.append_online("bob", "a", &i.to_string(), "x", &["phone"]);
    }
    h.ack("bob", "phone", 1);
    assert_eq!(
        seqs(&h.read("bob", "phone", None)),
        vec![2, 3],
        "the ack is applied"
    );
    let k = keys("bob");
    let mut conn = server.conn();
    for key in [k.inbox(), k.cursors()] {
        let ttl: i64 = conn.pttl(&key).expect("PTTL");
        assert!(
            ttl > 0 && ttl <= retention.as_millis() as i64,
            "{key}: {ttl}"
        );
    }
    assert_eq!(
        conn.pttl::<_, i64>(k.seq()).expect("PTTL"),
        -1,
        "sequences never expire"
    );
    // What retention expiry does, without waiting for it.
    let _: () = conn
        .del(&[k.inbox(), k.cursors(), k.dropped()])
        .expect("DEL");
    let r = h.read("bob", "phone", Some(1));
    assert_eq!(
        r,
        Replay {
            msgs: vec![],
            gap: Some((2, 4)),
            last_seq: 3,
            from: 1,
        },
        "unacked messages expired: a gap"
    );
    assert_eq!(
        h.read("bob", "phone", None).gap,
        None,
        "tracked again, from now on"
    );
    assert_eq!(
        h.append_online("bob", "a", "9", "y", &["phone"]),
        (4, false)
    );
    assert_eq!(seqs(&h.read("bob", "phone", None)), vec![4]);
}

mod durability;
