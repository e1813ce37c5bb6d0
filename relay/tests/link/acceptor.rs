//! The acceptor alone, scripted: HELLO first, WELCOME from `Seen`, in-order
//! delivery, duplicates dropped, gaps and garbage closed, one cumulative ACK
//! per read, timeouts.

use std::time::{Duration, Instant};

use proto::bus::{self, BatchWriter, Frame, Hello, Limits};
use relay::{Config, Inbound, InboundEvent, Seen};

use crate::pair::{identity, index_of};

fn hello(incarnation: u64) -> Vec<u8> {
    let mut out = Vec::new();
    bus::encode_hello(
        &Hello {
            version: bus::VERSION,
            shard: 2,
            shards: 4,
            incarnation,
            node_id: "a",
        },
        &mut out,
    );
    out
}

fn batch(seq: u64, first: u32, n: u32) -> Vec<u8> {
    let mut w = BatchWriter::new(seq);
    for i in first..first + n {
        w.push(&crate::pair::envelope(i, 6));
    }
    w.finish()
}

fn inbound(now: Instant) -> Inbound {
    Inbound::new(identity("b", 77), Config::default(), now)
}

/// Every frame the acceptor wrote.
fn written(i: &mut Inbound) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(bytes) = i.poll_transmit() {
        let mut rest = &bytes[..];
        while let Some((frame, used)) = bus::parse(rest, &Limits::default()).unwrap() {
            out.push(match frame {
                Frame::Welcome(w) => {
                    format!("WELCOME {} {} {}", w.node_id, w.incarnation, w.received)
                }
                Frame::Ack(seq) => format!("ACK {seq}"),
                other => panic!("acceptor wrote {other:?}"),
            });
            rest = &rest[used..];
        }
    }
    out
}

fn envelopes(i: &mut Inbound) -> (Vec<u32>, Vec<String>) {
    let mut got = Vec::new();
    let mut closed = Vec::new();
    while let Some(ev) = i.poll_event() {
        match ev {
            InboundEvent::Envelope(e) => got.push(index_of(&e)),
            InboundEvent::Closed { reason } => closed.push(reason),
            InboundEvent::Hello { .. } => {}
        }
    }
    (got, closed)
}

#[test]
fn hello_welcome_then_batches_with_one_ack_per_read() {
    let now = Instant::now();
    let mut seen = Seen::new();
    let mut i = inbound(now);
    i.handle_bytes(now, &hello(5), &mut seen);
    assert_eq!(written(&mut i), ["WELCOME b 77 0"]);
    let Some(InboundEvent::Hello { peer }) = i.poll_event() else {
        panic!()
    };
    assert_eq!(
        (
            peer.node_id.as_str(),
            peer.shard,
            peer.shards,
            peer.incarnation
        ),
        ("a", 2, 4, 5)
    );
    let mut three = batch(1, 0, 2);
    three.extend(batch(2, 2, 3));
    three.extend(batch(3, 5, 1));
    i.handle_bytes(now, &three, &mut seen);
    assert_eq!(written(&mut i), ["ACK 3"], "one cumulative ACK");
    assert_eq!(envelopes(&mut i).0, [0, 1, 2, 3, 4, 5]);
    assert_eq!(seen.get("a", 2).unwrap().received, 3);
    // A duplicate is dropped and acked; a PING is answered.
    let mut ping = batch(2, 2, 3);
    bus::encode_ping(&mut ping);
    i.handle_bytes(now, &ping, &mut seen);
    assert_eq!(written(&mut i), ["ACK 3"]);
    assert!(envelopes(&mut i).0.is_empty());
    let s = i.stats();
    assert_eq!((s.batches_in, s.envelopes_in, s.duplicates), (3, 6, 1));
    // A half frame: no ACK until it completes.
    let b4 = batch(4, 6, 1);
    i.handle_bytes(now, &b4[..10], &mut seen);
    assert!(written(&mut i).is_empty());
    i.handle_bytes(now, &b4[10..], &mut seen);
    assert_eq!(written(&mut i), ["ACK 4"]);
}

#[test]
fn reconnect_resumes_from_seen_and_new_incarnation_starts_over() {
    let now = Instant::now();
    let mut seen = Seen::new();
    let mut first = inbound(now);
    first.handle_bytes(
        now,
        &[hello(5), batch(1, 0, 1), batch(2, 1, 1)].concat(),
        &mut seen,
    );
    let mut second = inbound(now);
    second.handle_bytes(now, &hello(5), &mut seen);
    assert_eq!(written(&mut second), ["WELCOME b 77 2"]);
    let mut restarted = inbound(now);
    restarted.handle_bytes(now, &hello(6), &mut seen);
    assert_eq!(written(&mut restarted), ["WELCOME b 77 0"]);
    // The old incarnation's connection is superseded.
    second.handle_bytes(now, &batch(3, 2, 1), &mut seen);
    let (got, closed) = envelopes(&mut second);
    assert!(got.is_empty());
    assert!(closed[0].contains("superseded"), "{closed:?}");
    assert!(second.wants_close() && second.poll_timeout().is_none());
    seen.forget("a");
    restarted.handle_bytes(now, &batch(1, 0, 1), &mut seen);
    assert!(envelopes(&mut restarted).1[0].contains("forgotten"));
}

/// Two connections of one dialer shard racing (an old one the acceptor is
/// still draining): each batch is delivered once.
#[test]
fn racing_connections_deliver_once() {
    let now = Instant::now();
    let mut seen = Seen::new();
    let mut old = inbound(now);
    old.handle_bytes(now, &[hello(5), batch(1, 0, 1)].concat(), &mut seen);
    let mut new = inbound(now);
    new.handle_bytes(now, &hello(5), &mut seen);
    assert_eq!(written(&mut new).last().unwrap(), "WELCOME b 77 1");
    old.handle_bytes(now, &[batch(2, 1, 1), batch(3, 2, 1)].concat(), &mut seen);
    new.handle_bytes(
        now,
        &[batch(2, 1, 1), batch(3, 2, 1), batch(4, 3, 1)].concat(),
        &mut seen,
    );
    let mut got = envelopes(&mut old).0;
    got.extend(envelopes(&mut new).0);
    assert_eq!(got, [0, 1, 2, 3]);
    assert_eq!(new.stats().duplicates, 2);
    assert_eq!(written(&mut new), ["ACK 4"]);
}

fn closes_with(bytes: &[u8], why: &str) {
    let now = Instant::now();
    let mut seen = Seen::new();
    let mut i = inbound(now);
    i.handle_bytes(now, bytes, &mut seen);
    assert!(i.wants_close(), "{why}");
    let (_, closed) = envelopes(&mut i);
    assert_eq!(closed.len(), 1);
    assert!(closed[0].contains(why), "{closed:?} lacks {why:?}");
    assert!(i.poll_transmit().is_none());
    i.handle_bytes(now, &hello(5), &mut seen);
    assert!(i.poll_event().is_none(), "nothing after close");
}

#[test]
fn protocol_errors_close() {
    closes_with(b"\x16\x03\x01 TLS?", "bad magic");
    closes_with(&batch(1, 0, 1), "expected HELLO");
    closes_with(&[hello(5), hello(5)].concat(), "HELLO twice");
    closes_with(
        &[hello(5), batch(2, 0, 1), batch(4, 1, 1)].concat(),
        "batch 4 after batch 2",
    );
    let mut ack = hello(5);
    bus::encode_ack(1, &mut ack);
    closes_with(&ack, "unexpected Ack");
    let mut v2 = hello(5);
    v2[9] = 2;
    closes_with(&v2, "version 2");
    let mut shard = hello(5);
    shard[11] = 4;
    closes_with(&shard, "shard 4 of 4");
    closes_with(&[0xB5, 3, 0, 0, 0xFF, 0, 0, 0], "exceeds the maximum");
}

#[test]
fn hello_and_idle_timeouts() {
    let t0 = Instant::now();
    let mut seen = Seen::new();
    let config = Config::default();
    let mut i = inbound(t0);
    assert_eq!(i.poll_timeout(), Some(t0 + config.hello_timeout));
    i.handle_timeout(t0 + config.hello_timeout - Duration::from_millis(1));
    assert!(!i.wants_close());
    i.handle_timeout(t0 + config.hello_timeout);
    assert!(envelopes(&mut i).1[0].contains("no HELLO"));

    let mut i = inbound(t0);
    let t1 = t0 + Duration::from_secs(1);
    i.handle_bytes(t1, &hello(5), &mut seen);
    assert_eq!(i.poll_timeout(), Some(t1 + config.idle_timeout));
    let t2 = t1 + Duration::from_secs(4);
    i.handle_bytes(t2, &[0xB5], &mut seen);
    assert_eq!(i.poll_timeout(), Some(t2 + config.idle_timeout));
    i.handle_timeout(t2 + config.idle_timeout);
    assert!(envelopes(&mut i).1[0].contains("nothing received"));
    assert_eq!(i.poll_timeout(), None);
}
