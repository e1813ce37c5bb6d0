//! QoS 1 on the holder's side: replay before live, retransmit with backoff,
//! the in-flight window, resume and acks while a replay is pending, the
//! output budget.
use proto::v1::{client_frame, server_frame::Frame, Ack, ErrorCode, Qos, Resume};

use super::*;
use crate::outbound::Outbound;
use crate::store::{Replay, StoreError, Stored};

fn stored(seq: u64) -> Stored {
    let mut m = Stored::for_test("bob", &format!("{seq}"), 1);
    m.seq = seq;
    m
}

pub(super) fn replay(seqs: std::ops::RangeInclusive<u64>, last_seq: u64) -> Delivery<'static> {
    let from = seqs.start().saturating_sub(1);
    Delivery::Replay(Ok(Replay {
        msgs: seqs.map(stored).collect(),
        gap: None,
        last_seq,
        from,
    }))
}

pub(super) fn live(h: &mut Harness, seq: u64) {
    let msg = Outbound::new(stored(seq).to_frame(Qos::AtLeastOnce));
    h.deliver(Delivery::Stored { seq, msg: &msg });
}

/// The seqs of the Deliver frames written.
pub(super) fn delivered(h: &mut Harness) -> Vec<u64> {
    h.frames()
        .iter()
        .filter_map(|f| match &f.frame {
            Some(Frame::Deliver(d)) => Some(d.seq),
            _ => None,
        })
        .collect()
}

pub(super) fn ack(h: &mut Harness, seq: u64) {
    h.send(client_frame::Frame::Ack(Ack { seq }));
}

pub(super) fn reads(routes: &[Route]) -> Vec<Option<u64>> {
    routes
        .iter()
        .filter_map(|r| match r {
            Route::Read { after, .. } => Some(*after),
            _ => None,
        })
        .collect()
}

pub(super) fn acks(routes: &[Route]) -> Vec<u64> {
    routes
        .iter()
        .filter_map(|r| match r {
            Route::Ack { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn the_replay_comes_before_live_messages_in_order() {
    let mut h = Harness::open(Transport::Tcp);
    // Live while syncing: ignored, the replay has it.
    live(&mut h, 3);
    assert!(delivered(&mut h).is_empty());
    h.deliver(replay(1..=3, 3));
    assert_eq!(delivered(&mut h), [1, 2, 3]);
    live(&mut h, 4);
    assert_eq!(delivered(&mut h), [4]);
    // A live message past a hole asks for a read instead of skipping it.
    live(&mut h, 6);
    assert!(delivered(&mut h).is_empty());
    assert_eq!(reads(&h.routes()), [Some(4)]);
}

#[test]
fn a_message_announced_past_the_replay_is_read_next() {
    let mut h = Harness::open(Transport::Tcp);
    h.routes();
    // From a peer node: stored after the read, announced while it is out.
    live(&mut h, 3);
    h.deliver(replay(1..=2, 2));
    assert_eq!(delivered(&mut h), [1, 2]);
    assert_eq!(reads(&h.routes()), [Some(2)], "read on for seq 3");
    h.deliver(replay(3..=3, 3));
    assert_eq!(delivered(&mut h), [3]);
    // Announced and in the replay (this node's owner): no second read.
    live(&mut h, 4);
    assert_eq!(delivered(&mut h), [4]);
    h.send(client_frame::Frame::Resume(Resume { last_seq: 4 }));
    assert_eq!(reads(&h.routes()), [Some(4)]);
    live(&mut h, 5);
    h.deliver(replay(5..=5, 5));
    assert_eq!(delivered(&mut h), [5]);
    assert!(reads(&h.routes()).is_empty());
}

#[test]
fn unacked_messages_are_retransmitted_with_backoff() {
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(replay(1..=2, 2));
    assert_eq!(delivered(&mut h), [1, 2]);
    let base = Duration::from_millis(h.env.qos.retransmit_ms);
    let mut resent_at = Vec::new();
    let start = h.now;
    for _ in 0..40 {
        let Some(at) = h.s.poll_timeout(&h.env) else {
            break;
        };
        if at - start > Duration::from_secs(50) {
            break;
        }
        h.advance(at - h.now);
        let seqs = delivered(&mut h);
        if !seqs.is_empty() {
            assert_eq!(seqs, [1, 2], "resent in order");
            resent_at.push((h.now - start).as_millis() as u64);
        }
    }
    let b = base.as_millis() as u64;
    // 2 s, doubling to the 30 s cap.
    assert_eq!(resent_at, [b, 3 * b, 7 * b, 15 * b]);
    // An ack of everything stops it.
    ack(&mut h, 2);
    assert_eq!(acks(&h.routes()), [2]);
    h.advance(Duration::from_secs(120));
    assert!(delivered(&mut h).is_empty());
}

#[test]
fn the_in_flight_window_holds_256_and_acks_read_on() {
    let mut h = Harness::open(Transport::Tcp);
    let window = h.env.qos.inflight_window as u64;
    assert_eq!(window, 256);
    h.deliver(Delivery::Replay(Ok(Replay::default())));
    for seq in 1..=300 {
        live(&mut h, seq);
    }
    assert_eq!(delivered(&mut h), (1..=window).collect::<Vec<_>>());
    assert!(h.routes().is_empty());
    // Half the window acked: the rest is read from the inbox, in order.
    ack(&mut h, window / 2);
    assert_eq!(reads(&h.routes()), [Some(window)]);
    h.deliver(replay(window + 1..=300, 300));
    assert_eq!(delivered(&mut h), (window + 1..=300).collect::<Vec<_>>());
}

#[test]
fn resume_and_ack_sent_during_the_replay_are_kept() {
    // The stall: a client that already had 1..=256 (from an earlier
    // connection that never acked) resumes and acks right after AuthOk,
    // while the replay from the stored cursor (0) is still being read.
    let mut h = Harness::open(Transport::Tcp);
    h.send(client_frame::Frame::Resume(Resume { last_seq: 256 }));
    ack(&mut h, 256);
    // The ack goes to the owner at once: a read for another connection of
    // this device (it may reconnect elsewhere any moment) must see it.
    let routes = h.routes();
    assert_eq!((acks(&routes), reads(&routes)), (vec![256], vec![]));
    h.deliver(replay(1..=256, 600));
    // Nothing the client has is sent again, the ack is not sent twice, and
    // the next read starts after what the client has.
    assert!(delivered(&mut h).is_empty());
    let routes = h.routes();
    assert_eq!((acks(&routes), reads(&routes)), (vec![], vec![Some(256)]));
    h.deliver(replay(257..=512, 600));
    assert_eq!(delivered(&mut h), (257..=512).collect::<Vec<_>>());
}

#[test]
fn a_resume_below_where_the_replay_started_reads_again_from_it() {
    // A device the store had stopped tracking (pushed out of its 32) is
    // read for as new, from what is held (6): the client's resume point
    // (3), sent right after AuthOk, came while that read was out.
    let mut h = Harness::open(Transport::Tcp);
    h.routes();
    h.send(client_frame::Frame::Resume(Resume { last_seq: 3 }));
    live(&mut h, 7);
    h.deliver(Delivery::Replay(Ok(Replay {
        last_seq: 6,
        from: 6,
        ..Replay::default()
    })));
    // Nothing is sent from a point the client never had: it is read again.
    assert!(h.frames().is_empty());
    assert_eq!(reads(&h.routes()), [Some(3)]);
    h.deliver(Delivery::Replay(Ok(Replay {
        msgs: vec![stored(7)],
        gap: Some((4, 7)),
        last_seq: 7,
        from: 3,
    })));
    let frames = h.frames();
    assert!(
        matches!(
            frames[0].frame,
            Some(Frame::Gap(proto::v1::Gap {
                from_seq: 4,
                first_available: 7,
                ..
            }))
        ),
        "{frames:?}"
    );
    assert!(matches!(&frames[1].frame, Some(Frame::Deliver(d)) if d.seq == 7));
    // Read once more only when a Resume comes during a read again.
    assert!(reads(&h.routes()).is_empty());
}

#[test]
fn an_ack_never_moves_backwards_and_is_clamped_to_what_was_sent() {
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(replay(1..=5, 5));
    delivered(&mut h);
    ack(&mut h, 3);
    ack(&mut h, 2);
    ack(&mut h, 3);
    ack(&mut h, 99);
    assert_eq!(acks(&h.routes()), [3, 5]);
}

#[test]
fn replays_stop_at_half_the_send_queue_without_a_slow_consumer_close() {
    let limits = Limits {
        send_queue_bytes: 8192,
        ..Limits::default()
    };
    let mut h = Harness::with(Transport::Tcp, limits, QosConfig::default());
    h.authenticate("alice", "phone", 3600);
    let big = |seq: u64| {
        let mut m = stored(seq);
        m.payload = vec![b'x'; 1000].into();
        m
    };
    h.deliver(Delivery::Replay(Ok(Replay {
        msgs: (1..=20).map(big).collect(),
        gap: None,
        last_seq: 20,
        from: 0,
    })));
    // The client does not read: no more than half the queue is filled.
    assert!(
        h.s.output().len() < 8192 / 2 + 1100,
        "{}",
        h.s.output().len()
    );
    assert_eq!(h.s.phase(), Phase::Open);
    let first = delivered(&mut h);
    assert_eq!(first, (1..=first.len() as u64).collect::<Vec<_>>());
    assert!(first.len() < 20);
    // The client reads and acks: the rest is read on.
    ack(&mut h, *first.last().unwrap());
    assert_eq!(reads(&h.routes()), [Some(*first.last().unwrap())]);
}

#[test]
fn a_failed_read_is_unavailable_and_retried_with_backoff() {
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(Delivery::Replay(Err(StoreError::new(
        crate::store::StoreErrorKind::Unreachable,
        "redis down",
    ))));
    let frames = h.frames();
    assert_eq!(
        error_code(&frames[0]),
        Some((ErrorCode::Unavailable, false))
    );
    assert_eq!(h.s.phase(), Phase::Open);
    let at = h.s.poll_timeout(&h.env).unwrap();
    assert!(at > h.now, "not retried at once");
    h.advance(at - h.now);
    assert_eq!(reads(&h.routes()), [None]);
    h.deliver(replay(1..=1, 1));
    assert_eq!(delivered(&mut h), [1]);
}

#[test]
fn a_gap_is_announced_before_the_rest() {
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(Delivery::Replay(Ok(Replay {
        msgs: (5..=6).map(stored).collect(),
        gap: Some((1, 5)),
        last_seq: 6,
        from: 0,
    })));
    let frames = h.frames();
    assert!(matches!(
        frames[0].frame,
        Some(Frame::Gap(proto::v1::Gap {
            from_seq: 1,
            first_available: 5,
            ..
        }))
    ));
    assert_eq!(frames.len(), 3);
}

#[test]
fn the_timer_never_starts_a_second_read_while_one_is_outstanding() {
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(Delivery::Replay(Ok(Replay::default())));
    // Fill the window so the session lags, with its timer armed.
    for seq in 1..=300 {
        live(&mut h, seq);
    }
    delivered(&mut h);
    // Everything acked: the session reads the rest (outstanding) ...
    ack(&mut h, 256);
    assert_eq!(reads(&h.routes()), [Some(256)]);
    // ... and no timer, however late, asks again while it is.
    h.advance(Duration::from_secs(55));
    assert!(reads(&h.routes()).is_empty());
    h.deliver(replay(257..=300, 300));
    assert_eq!(delivered(&mut h).len(), 44);
}

#[test]
fn a_read_on_after_a_full_window_is_no_gap_for_a_client_that_resumed() {
    let mut h = Harness::open(Transport::Tcp);
    h.send(client_frame::Frame::Resume(Resume { last_seq: 10 }));
    h.deliver(replay(11..=266, 400));
    assert_eq!(delivered(&mut h).len(), 256);
    ack(&mut h, 266);
    assert_eq!(reads(&h.routes()), [Some(266)]);
    // The read-on starts after 266: what this connection sent, not a gap.
    h.deliver(replay(267..=300, 300));
    let frames = h.frames();
    assert!(
        frames
            .iter()
            .all(|f| matches!(f.frame, Some(Frame::Deliver(_)))),
        "{frames:?}"
    );
    assert_eq!(frames.len(), 34);
}

#[test]
fn a_resume_point_given_at_auth_starts_the_replay_after_it() {
    let mut h = Harness::new(Transport::Tcp);
    let token = h.token("alice", Some("phone"), 3600);
    h.send(client_frame::Frame::Auth(proto::v1::Auth {
        token,
        device: String::new(),
        last_seq: 40,
        rooms: Vec::new(),
    }));
    h.frames();
    assert_eq!(
        reads(&h.routes()),
        [Some(40)],
        "read after the client's point"
    );
    // A replay that still holds older messages (a lagging cursor) skips them.
    h.deliver(replay(35..=42, 42));
    assert_eq!(delivered(&mut h), [41, 42]);
}
