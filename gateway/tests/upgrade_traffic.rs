//! Two upgrades in a row in the middle of QoS 1 traffic, with 1,000
//! connections open (WebSocket protobuf, WebSocket JSON, raw TCP), in rooms,
//! some holding a partial frame: no connection is closed, every message
//! arrives once and in order, every ping is answered afterwards, and each
//! old process exits.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

driver_tests!(
    upgrades_under_traffic_lose_nothing,
    upgrades_under_traffic_with_redis_lose_nothing,
);

/// Sender/receiver pairs (each a connection of its own).
const PAIRS: usize = 12;
/// QoS 1 messages each sender sends.
const MSGS: usize = 300;
/// Messages a sender has out without a SendResult.
const WINDOW: usize = 8;
/// All connections: the pairs and idle ones.
const CONNS: usize = 1000;

fn transport(i: usize) -> Transport {
    [WS, WS_JSON, TCP][i % 3]
}

/// Sends `MSGS` numbered QoS 1 messages to `to`, `WINDOW` at a time.
fn sender(mut c: Client, to: String, deadline: Instant) {
    let (mut sent, mut answered) = (0, 0);
    while answered < MSGS {
        assert!(
            Instant::now() < deadline,
            "sender to {to}: deadline at {answered}"
        );
        while sent < MSGS && sent - answered < WINDOW {
            let id = sent.to_string();
            c.send(&qos1_to_user(&to, &id, id.as_bytes()));
            sent += 1;
        }
        match c.next_event() {
            Event::Frame(Frame::SendResult(r)) => {
                assert!(r.accepted, "{r:?}");
                assert_eq!(r.client_msg_id, answered.to_string(), "answers in order");
                answered += 1;
            }
            other => panic!("sender to {to}: {other:?}"),
        }
    }
}

/// Receives and acknowledges `MSGS` messages: each once, in order.
fn receiver(mut c: Client, progress: Arc<AtomicUsize>, deadline: Instant) {
    for i in 0..MSGS {
        assert!(Instant::now() < deadline, "receiver: deadline at {i}");
        let d = match c.next_event() {
            Event::Frame(Frame::Deliver(d)) => d,
            other => panic!("receiver at {i}: {other:?}"),
        };
        assert_eq!(d.seq, i as u64 + 1, "each once, in order");
        assert_eq!(d.payload, i.to_string().as_bytes(), "{d:?}");
        c.send(&ack(d.seq));
        progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// The in-process store: its inboxes move with the shards.
fn upgrades_under_traffic_lose_nothing(driver: Driver) {
    run(Gateway::start(driver, &[]));
}

/// Inboxes in Redis: operations out at the freeze are waited for, the
/// upstream streams and every Redis connection reopen in the new process.
fn upgrades_under_traffic_with_redis_lose_nothing(driver: Driver) {
    let redis = RedisServer::start();
    run(Gateway::start(driver, &["--redis", &redis.url()]));
}

fn run(mut gw: Gateway) {
    let reap = Reap::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Idle connections of every kind, in rooms; every tenth TCP one holds
    // half a ping through the upgrades.
    let mut idle = Vec::new();
    let mut partial = Vec::new();
    for i in 0..CONNS - 2 * PAIRS {
        let mut c = gw.connect(transport(i), &format!("idle-{i}"), "d");
        c.join(&format!("room-{}", i % 8));
        if transport(i) == TCP && i % 10 == 2 {
            let bytes = length_prefixed(&prost::Message::encode_to_vec(&ping(i as u64)));
            c.send_raw_tcp(&bytes[..3]);
            partial.push((i, bytes));
        }
        idle.push((i, c));
    }
    let progress = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for p in 0..PAIRS {
        let rx = gw.connect(transport(p), &format!("rx-{p}"), "phone");
        let tx = gw.connect(TCP, &format!("tx-{p}"), "desk");
        let progress = progress.clone();
        threads.push(std::thread::spawn(move || receiver(rx, progress, deadline)));
        threads.push(std::thread::spawn(move || {
            sender(tx, format!("rx-{p}"), deadline)
        }));
    }
    let total = PAIRS * MSGS;
    let mut old = gw.pid();
    for (round, at) in [(1, total / 3), (2, 2 * total / 3)] {
        wait_for_within("traffic", Duration::from_secs(60), || {
            progress.load(Ordering::Relaxed) >= at
        });
        let pid = upgrade_node(&gw, &reap);
        if round == 1 {
            assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
        } else {
            wait_for("the previous process exits", || exited(old));
        }
        old = pid;
    }
    for t in threads {
        t.join().unwrap();
    }
    for (i, bytes) in &partial {
        let c = &mut idle.iter_mut().find(|(j, _)| j == i).unwrap().1;
        c.send_raw_tcp(&bytes[3..]);
        assert_eq!(c.pong().nonce, *i as u64);
    }
    for (i, c) in &mut idle {
        c.ping(*i as u64 + 10_000);
    }
    // The rooms are whole: a room message reaches every member.
    let r = gw.post("/push", r#"{"room": "room-3", "text": "all", "qos": 0}"#);
    assert_eq!(r.status, 200, "{r:?}");
    for (i, c) in &mut idle {
        if *i % 8 == 3 {
            assert_eq!(c.deliver().room, "room-3");
        }
    }
    let m = gw.metrics();
    assert_eq!(metric(&m, "gateway_upgrades_total"), Some(2.0), "{m}");
    // The pairs' connections closed with their threads; the rest are here.
    let idle = (CONNS - 2 * PAIRS) as f64;
    gw.wait_metric("gateway_connections", |n| n == idle);
}
