//! The memory store on simulated time: no sleeping, a clock the test moves.
use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::store::ReplyTo;
use crate::store::WhenFull;

fn store(per_user: usize, total_bytes: usize) -> (MemoryStore, Rc<Cell<u64>>) {
    let now = Rc::new(Cell::new(1_000_000));
    let clock = now.clone();
    let limits = MemoryLimits {
        per_user,
        total_bytes,
        retention: Duration::from_secs(60),
        dedupe_window: 4,
    };
    (MemoryStore::new(limits, Box::new(move || clock.get())), now)
}

fn msg(from: &str, body: &str, ts: u64) -> Stored {
    Stored::for_test(from, body, ts)
}

fn append(
    s: &mut MemoryStore,
    user: &str,
    from: &str,
    cmid: &str,
    body: &str,
    ts: u64,
) -> (u64, bool) {
    append_online(s, user, from, cmid, body, ts, &[])
}

fn append_online(
    s: &mut MemoryStore,
    user: &str,
    from: &str,
    cmid: &str,
    body: &str,
    ts: u64,
    online: &[&str],
) -> (u64, bool) {
    let online = online.iter().map(|d| Arc::from(*d)).collect();
    let msg = msg(from, body, ts);
    s.submit(Op::Append {
        user: Arc::from(user),
        msg,
        client_msg_id: cmid.into(),
        online,
        reply: None,
        when_full: WhenFull::DropOldest,
    });
    let mut out = Vec::new();
    s.completed(&mut out);
    match out.pop() {
        Some(Done::Appended {
            result: Ok(m),
            duplicate,
            ..
        }) => (m.seq, duplicate),
        other => panic!("unexpected {other:?}"),
    }
}

fn read(s: &mut MemoryStore, user: &str, device: &str, after: Option<u64>) -> Replay {
    let conn = ReplyTo {
        shard: 0,
        key: 0,
        conn_id: 1,
    };
    s.submit(Op::Read {
        user: Arc::from(user),
        device: Arc::from(device),
        after,
        max: 1000,
        conn,
    });
    let mut out = Vec::new();
    s.completed(&mut out);
    match out.pop() {
        Some(Done::Read { result: Ok(r), .. }) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn ack(s: &mut MemoryStore, user: &str, device: &str, seq: u64) {
    s.submit(Op::Ack {
        user: Arc::from(user),
        device: Arc::from(device),
        seq,
    });
}

fn seqs(r: &Replay) -> Vec<u64> {
    r.msgs.iter().map(|m| m.seq).collect()
}

#[test]
fn sequences_are_per_user_and_gapless() {
    let (mut s, _) = store(100, 1 << 20);
    assert_eq!(append(&mut s, "bob", "a", "1", "x", 1_000_000), (1, false));
    assert_eq!(append(&mut s, "bob", "a", "2", "y", 1_000_000), (2, false));
    assert_eq!(append(&mut s, "eve", "a", "3", "z", 1_000_000), (1, false));
    assert_eq!(seqs(&read(&mut s, "bob", "phone", None)), vec![1, 2]);
}

#[test]
fn a_retry_returns_the_first_copy_and_is_stored_once() {
    let (mut s, _) = store(100, 1 << 20);
    assert_eq!(
        append(&mut s, "bob", "alice", "c1", "x", 1_000_000),
        (1, false)
    );
    assert_eq!(
        append(&mut s, "bob", "alice", "c1", "x", 1_000_000),
        (1, true)
    );
    assert_eq!(
        append(&mut s, "bob", "carol", "c1", "x", 1_000_000),
        (2, false),
        "ids are per sender"
    );
    assert_eq!(seqs(&read(&mut s, "bob", "phone", None)), vec![1, 2]);
}

#[test]
fn dedupe_window_is_bounded() {
    let (mut s, _) = store(100, 1 << 20);
    for i in 0..6 {
        append(&mut s, "bob", "alice", &format!("c{i}"), "x", 1_000_000);
    }
    assert!(
        !append(&mut s, "bob", "alice", "c0", "x", 1_000_000).1,
        "c0 left the window of 4"
    );
    assert!(append(&mut s, "bob", "alice", "c5", "x", 1_000_000).1);
}

#[test]
fn acks_by_every_tracked_device_free_messages() {
    let (mut s, _) = store(100, 1 << 20);
    for i in 0..5 {
        append_online(
            &mut s,
            "bob",
            "a",
            &i.to_string(),
            "x",
            1_000_000,
            &["phone", "laptop"],
        );
    }
    ack(&mut s, "bob", "phone", 5);
    assert_eq!(s.held().0, 5, "laptop has not acked");
    assert_eq!(
        seqs(&read(&mut s, "bob", "laptop", None)),
        vec![1, 2, 3, 4, 5]
    );
    ack(&mut s, "bob", "laptop", 3);
    assert_eq!(s.held().0, 2);
    assert!(read(&mut s, "bob", "phone", None).msgs.is_empty());
}

#[test]
fn resume_point_is_never_before_the_stored_cursor() {
    let (mut s, _) = store(100, 1 << 20);
    for i in 0..4 {
        append_online(
            &mut s,
            "bob",
            "a",
            &i.to_string(),
            "x",
            1_000_000,
            &["phone", "tab"],
        );
    }
    ack(&mut s, "bob", "phone", 2);
    assert_eq!(seqs(&read(&mut s, "bob", "phone", Some(0))), vec![3, 4]);
    assert_eq!(seqs(&read(&mut s, "bob", "phone", Some(3))), vec![4]);
}

#[test]
fn per_user_bound_reports_a_gap() {
    let (mut s, _) = store(3, 1 << 20);
    for i in 0..5 {
        append_online(
            &mut s,
            "bob",
            "a",
            &i.to_string(),
            "x",
            1_000_000,
            &["phone"],
        );
    }
    let r = read(&mut s, "bob", "phone", None);
    assert_eq!(r.gap, Some((1, 3)));
    assert_eq!(seqs(&r), vec![3, 4, 5]);
    assert_eq!(r.last_seq, 5);
}

#[test]
fn total_bytes_bound_drops_the_oldest_of_any_user() {
    let (mut s, _) = store(100, 10);
    append(&mut s, "bob", "a", "1", "aaaa", 1_000_000);
    append(&mut s, "eve", "a", "2", "bbbb", 1_000_000);
    append(&mut s, "bob", "a", "3", "cccc", 1_000_000);
    assert_eq!(s.held(), (2, 8));
    let r = read(&mut s, "bob", "phone", Some(0));
    assert_eq!(r.gap, Some((1, 2)));
    assert_eq!(seqs(&r), vec![2]);
}

#[test]
fn retention_drops_old_messages() {
    let (mut s, now) = store(100, 1 << 20);
    append(&mut s, "bob", "a", "1", "x", now.get());
    now.set(now.get() + 30_000);
    append(&mut s, "bob", "a", "2", "y", now.get());
    now.set(now.get() + 31_000);
    let r = read(&mut s, "bob", "phone", Some(0));
    assert_eq!(r.gap, Some((1, 2)));
    assert_eq!(seqs(&r), vec![2]);
    now.set(now.get() + 60_000);
    let r = read(&mut s, "bob", "phone", Some(0));
    assert_eq!(r.gap, Some((2, 3)), "the device was told of 1 already");
    assert!(r.msgs.is_empty());
    assert_eq!(s.held(), (0, 0));
}

#[test]
fn offline_messages_wait_for_a_new_device() {
    let (mut s, _) = store(100, 1 << 20);
    append(&mut s, "bob", "a", "1", "x", 1_000_000);
    append(&mut s, "bob", "a", "2", "y", 1_000_000);
    let r = read(&mut s, "bob", "phone", None);
    assert_eq!(seqs(&r), vec![1, 2]);
    assert_eq!(r.gap, None);
}

/// An append that asks to be refused when the inbox is full.
fn append_or_refuse(s: &mut MemoryStore, user: &str, cmid: &str) -> Result<u64, StoreError> {
    s.submit(Op::Append {
        user: Arc::from(user),
        msg: msg("alice", cmid, 1_000_000),
        client_msg_id: cmid.into(),
        online: vec![Arc::from("phone")],
        reply: None,
        when_full: WhenFull::Refuse,
    });
    let mut out = Vec::new();
    s.completed(&mut out);
    match out.pop() {
        Some(Done::Appended { result, .. }) => result.map(|m| m.seq),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_full_inbox_refuses_before_storing_and_takes_the_retry_after_an_ack() {
    let (mut s, _) = store(3, 1 << 20);
    for i in 1..=3 {
        assert_eq!(append_or_refuse(&mut s, "bob", &i.to_string()), Ok(i));
    }
    let e = append_or_refuse(&mut s, "bob", "4").unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Full);
    assert!(e.retryable());
    // Nothing was dropped and nothing was stored for the refused one.
    let r = read(&mut s, "bob", "phone", None);
    assert_eq!((seqs(&r), r.gap, r.last_seq), (vec![1, 2, 3], None, 3));
    // The recipient acks; the sender's retry (same id) is stored once.
    ack(&mut s, "bob", "phone", 2);
    assert_eq!(append_or_refuse(&mut s, "bob", "4"), Ok(4));
    assert_eq!(append_or_refuse(&mut s, "bob", "4"), Ok(4), "deduped");
    assert_eq!(seqs(&read(&mut s, "bob", "phone", Some(2))), vec![3, 4]);
}

/// A device pushed out of the 32 tracked whose messages were freed meanwhile
/// comes back: its first read (no resume point yet) starts it at what is
/// held, a guess; its resume then says what it really has, and what went
/// while it was out is a gap, never a silent hole. Once it acks, its cursor
/// is a floor again.
#[test]
fn a_device_pushed_out_and_back_is_told_what_went() {
    let (mut s, _) = store(100, 1 << 20);
    for i in 1..=3 {
        append(&mut s, "bob", "a", &format!("c{i}"), "x", 1_000_000);
    }
    assert_eq!(seqs(&read(&mut s, "bob", "d0", Some(0))), vec![1, 2, 3]);
    ack(&mut s, "bob", "d0", 3);
    for i in 4..=6 {
        append(&mut s, "bob", "a", &format!("c{i}"), "x", 1_000_000);
    }
    for n in 1..=32 {
        let d = format!("d{n}");
        read(&mut s, "bob", &d, Some(3));
        ack(&mut s, "bob", &d, 6);
    }
    assert_eq!(
        s.held(),
        (0, 0),
        "4..=6 freed once every tracked device had them"
    );
    let first = read(&mut s, "bob", "d0", None);
    assert_eq!((first.gap, seqs(&first)), (None, vec![]));
    let resumed = read(&mut s, "bob", "d0", Some(3));
    assert_eq!(resumed.gap, Some((4, 7)));
    ack(&mut s, "bob", "d0", 6);
    assert_eq!(
        read(&mut s, "bob", "d0", Some(3)).gap,
        None,
        "acked: a floor"
    );
}
