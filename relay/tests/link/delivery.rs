//! Envelopes arrive exactly once, in order: across cuts, half-open
//! connections and peer restarts; acks free the queue; batches close by
//! size and by deadline.

use std::time::Duration;

use proto::bus::{self, Frame, Limits};
use relay::{Config, LinkEvent, LinkState, SendError};

use crate::pair::{envelope, index_of, Pair};

fn assert_in_order(p: &Pair, n: u32) {
    let got: Vec<u32> = p.delivered.iter().map(|e| index_of(e)).collect();
    assert_eq!(got.len(), n as usize, "delivered count");
    assert!(
        got.iter().copied().eq(0..n),
        "delivered out of order or twice"
    );
}

#[test]
fn hello_welcome_up() {
    let mut p = Pair::new(Config::default());
    assert_eq!(p.link.state(), LinkState::Idle);
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    // Connect (one latency) then HELLO and WELCOME (one each).
    assert_eq!(p.now - p.start, p.latency * 3);
    let (
        _,
        LinkEvent::Up {
            peer,
            peer_restarted,
        },
    ) = &p.link_events[0]
    else {
        panic!("{:?}", p.link_events);
    };
    assert_eq!((peer.node_id.as_str(), peer.incarnation), ("b", 200));
    assert!(!peer_restarted);
    let inbound = p.inbound.as_ref().unwrap();
    assert_eq!(inbound.peer().unwrap().node_id, "a");
    assert_eq!(inbound.peer().unwrap().incarnation, 100);
    let s = p.link.stats();
    assert_eq!((s.connects, s.ups, s.downs), (1, 1, 0));
    assert_eq!(p.link.peer().unwrap().node_id, "b");
}

/// 10k envelopes, sent in rounds while the connection is cut at random
/// points (in-flight bytes lost, sometimes half-open so the acceptor reads
/// the old connection late), delivered in random chunking.
#[test]
fn ten_thousand_exactly_once_across_cuts() {
    const N: u32 = 10_000;
    let mut p = Pair::new(Config::default());
    p.chunking = Some(fastrand::Rng::with_seed(7));
    let mut rng = fastrand::Rng::with_seed(42);
    let mut next = 0u32;
    let mut cuts = 0;
    let deadline = p.now + Duration::from_secs(600);
    while next < N || !p.link.is_empty() || p.delivered.len() < N as usize {
        assert!(
            p.now < deadline,
            "stuck: sent {next}, delivered {}",
            p.delivered.len()
        );
        // One routing round: a few envelopes, then one flush.
        for _ in 0..rng.usize(0..40) {
            if next < N {
                match p.link.send(p.now, &envelope(next, rng.usize(4..200))) {
                    Ok(()) => next += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        p.link.flush(p.now);
        // Written, in flight: a cut now loses batches (later, acks).
        p.drive_now();
        let connected = matches!(p.link.state(), LinkState::Handshaking | LinkState::Up);
        if next < N && connected && rng.u32(0..60) == 0 {
            cuts += 1;
            if rng.bool() {
                p.cut_half_open();
            } else {
                p.cut();
            }
        }
        p.step();
    }
    assert!(cuts >= 5, "only {cuts} cuts");
    assert_in_order(&p, N);
    let s = p.link.stats().clone();
    assert_eq!(s.envelopes_out, u64::from(N));
    assert!(s.batches_resent > 0, "{s:?}");
    assert!(
        p.duplicates > 0,
        "a half-open drain must have raced a resend"
    );
    assert!(s.downs >= cuts);
    assert_eq!(s.queued_bytes, 0);
    assert_eq!(p.batches_parsed, s.batches_out + s.batches_resent);
}

#[test]
fn cumulative_acks_free_the_queue() {
    let mut p = Pair::new(Config::default());
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    for round in 0..10 {
        for i in 0..10 {
            p.link.send(p.now, &envelope(round * 10 + i, 100)).unwrap();
        }
        p.link.flush(p.now);
    }
    assert!(!p.link.is_empty());
    assert!(p.link.stats().queued_bytes > 10 * 100 * 10);
    p.drive_until(Duration::from_secs(1), |p| p.link.is_empty());
    assert_eq!(p.link.stats().queued_bytes, 0);
    assert_eq!(p.link.stats().batches_out, 10);
    assert_in_order(&p, 100);
}

#[test]
fn queued_while_down_goes_out_after_up() {
    let mut p = Pair::new(Config::default());
    p.accepting = false;
    for i in 0..50 {
        p.link.send(p.now, &envelope(i, 10)).unwrap();
        if i % 10 == 9 {
            p.link.flush(p.now);
        }
    }
    p.run_for(Duration::from_millis(300));
    assert_eq!(p.link.stats().bytes_out, 0);
    assert!(p.link.stats().connects >= 2);
    p.accepting = true;
    p.drive_until(Duration::from_secs(5), |p| p.link.is_empty());
    assert_in_order(&p, 50);
    assert_eq!(p.link.stats().batches_resent, 0);
}

#[test]
fn peer_restart_is_reported_and_unacked_resent() {
    let mut p = Pair::new(Config::default());
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    p.link.send(p.now, &envelope(0, 10)).unwrap();
    p.link.flush(p.now);
    p.drive_until(Duration::from_secs(1), |p| p.link.is_empty());
    // Ten batches written, then the peer dies before reading them.
    for i in 1..11 {
        p.link.send(p.now, &envelope(i, 10)).unwrap();
        p.link.flush(p.now);
    }
    p.drive_now();
    assert_eq!(p.to_server.len(), 1, "written, in flight");
    p.restart_server();
    p.drive_until(Duration::from_secs(5), |p| p.link.is_empty());
    assert_eq!(p.ups(), [false, true]);
    assert_eq!(p.link.stats().batches_resent, 10);
    assert_in_order(&p, 11);
    // The next restart-free reconnect is not a restart.
    p.cut();
    p.drive_until(Duration::from_secs(5), Pair::is_up);
    assert_eq!(p.ups(), [false, true, false]);
}

#[test]
fn full_queue_refuses_and_counts() {
    let config = Config {
        max_queue_bytes: 10_000,
        ..Config::default()
    };
    let mut p = Pair::new(config);
    p.accepting = false;
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..200 {
        match p.link.send(p.now, &envelope(i, 100)) {
            Ok(()) if refused == 0 => accepted += 1,
            Ok(()) => panic!("accepted after a refusal with nothing freed"),
            Err(SendError::Full) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!((90..100).contains(&accepted), "{accepted}");
    assert_eq!(p.link.stats().envelopes_refused, refused);
    assert!(p.link.stats().queued_bytes <= 10_000);
    assert!(matches!(
        p.link.send(p.now, &[0; 20_000]),
        Err(SendError::TooLarge { size: 20_000, .. })
    ));
    assert_eq!(
        p.link.stats().envelopes_refused,
        refused,
        "TooLarge is not Full"
    );
    // Once the peer is back, everything accepted arrives and room is made.
    p.accepting = true;
    p.drive_until(Duration::from_secs(5), |p| p.link.is_empty());
    assert_in_order(&p, accepted);
    p.link.send(p.now, &envelope(accepted, 100)).unwrap();
}

/// Collects every batch the dialer writes, parsed.
fn batches_of(bytes: &[u8]) -> Vec<(u64, usize, usize)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((frame, used)) = bus::parse(rest, &Limits::default()).unwrap() {
        if let Frame::Batch(b) = frame {
            out.push((b.seq, b.count as usize, used));
        }
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    out
}

#[test]
fn batches_close_by_size() {
    let config = Config {
        max_batch_bytes: 1000,
        ..Config::default()
    };
    let mut p = Pair::new(config);
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    for i in 0..100 {
        p.link.send(p.now, &envelope(i, 96)).unwrap();
    }
    // No flush, no time passing: only full batches may go.
    let bytes = p.link.poll_transmit(p.now).unwrap();
    let batches = batches_of(&bytes);
    // 20 bytes of headers + 100 a envelope: the tenth reaches 1000.
    assert_eq!(batches.len(), 10);
    for (i, (seq, count, len)) in batches.iter().enumerate() {
        assert_eq!((*seq, *count, *len), (i as u64 + 1, 10, 1020));
    }
    assert!(p.link.poll_transmit(p.now).is_none());
}

#[test]
fn batches_close_by_flush_delay() {
    let mut p = Pair::new(Config::default());
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    let t0 = p.now;
    p.link.send(t0, &envelope(0, 10)).unwrap();
    p.link.send(t0, &envelope(1, 10)).unwrap();
    assert!(p.link.poll_transmit(t0).is_none(), "open batch waits");
    assert_eq!(p.link.poll_timeout(), Some(t0 + Duration::from_millis(2)));
    let t1 = t0 + Duration::from_millis(2);
    // poll_transmit alone closes a batch past its deadline...
    let bytes = p.link.poll_transmit(t1).unwrap();
    assert_eq!(batches_of(&bytes), [(1, 2, 8 + 12 + 28)]);
    // ...and so does handle_timeout.
    p.link.send(t1, &envelope(2, 10)).unwrap();
    let t2 = t1 + Duration::from_millis(2);
    assert_eq!(p.link.poll_timeout(), Some(t2));
    p.link.handle_timeout(t2);
    assert!(p.link.poll_timeout().unwrap() > t2);
    let bytes = p.link.poll_transmit(t2).unwrap();
    assert_eq!(batches_of(&bytes), [(2, 1, 8 + 12 + 14)]);
}
