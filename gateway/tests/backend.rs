//! Fronting a backend, against the real binary and a real Redis: client
//! sends reach the upstream stream with every id (and a retried QoS 1 send
//! once); lifecycle events in order; the downstream stream and the HTTP push
//! reach users on two nodes; entries a dead consumer held are claimed;
//! room permissions in the token; a token refreshed on a live connection
//! outlives the old expiry; rate limits refuse with RATE_LIMITED.

#[allow(unused_macros)] // io_uring only: the streams are not driver-specific
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use proto::v1::{client_frame, Refresh};

type Entry = (String, HashMap<String, Vec<u8>>);
/// An entry as XRANGE returns it: its id and field/value pairs.
type RawEntry = (String, Vec<(String, Vec<u8>)>);
/// XPENDING's summary: count, lowest and highest id, per-consumer counts.
type PendingSummary = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

/// Every entry of `stream`, oldest first.
fn xrange(redis: &RedisServer, stream: &str) -> Vec<Entry> {
    let mut c = redis.conn();
    let raw: Vec<RawEntry> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    raw.into_iter()
        .map(|(id, kv)| (id, kv.into_iter().collect()))
        .collect()
}

fn field(e: &Entry, k: &str) -> String {
    String::from_utf8(e.1.get(k).cloned().unwrap_or_default()).unwrap()
}

fn start(redis: &RedisServer, extra: &[&str]) -> Gateway {
    let url = redis.url();
    let mut args = vec!["--redis", &url];
    args.extend(extra);
    Gateway::start(Driver::Uring, &args)
}

#[test]
fn uring_client_sends_reach_the_upstream_stream_once() {
    let redis = RedisServer::start();
    let gw = start(&redis, &[]);
    let mut alice = gw.connect(WS, "alice", "phone");
    let mut q1 = to_backend("c1", b"order #1");
    if let Some(client_frame::Frame::Send(s)) = q1.frame.as_mut() {
        s.qos = proto::v1::Qos::AtLeastOnce as i32;
    }
    alice.send(&q1);
    let first = alice.result_for("c1");
    assert!(first.accepted, "{first:?}");
    // The result came after the append: the entry is there, with every id.
    let entries = xrange(&redis, "gw:upstream");
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(field(e, "user"), "alice");
    assert_eq!(field(e, "device"), "phone");
    assert_eq!(field(e, "node"), gw.node_id);
    assert_eq!(field(e, "conn"), alice.auth.conn_id.to_string());
    assert_eq!(field(e, "client_msg_id"), "c1");
    assert_eq!(field(e, "msg_id"), first.msg_id);
    assert_eq!(field(e, "qos"), "1");
    assert_eq!(e.1["payload"], b"order #1");
    assert!(field(e, "ts").parse::<u64>().unwrap() > 1_600_000_000_000);
    // A retry (same client message id) is answered with the same id, once.
    alice.send(&q1);
    let again = alice.result_for("c1");
    assert_eq!((again.accepted, &again.msg_id), (true, &first.msg_id));
    alice.send(&to_backend("c2", b"qos 0"));
    assert!(alice.result_for("c2").accepted);
    let entries = xrange(&redis, "gw:upstream");
    assert_eq!(entries.len(), 2, "the retry was not appended again");
    assert_eq!(field(&entries[1], "qos"), "0");
}

#[test]
fn uring_lifecycle_events_in_order() {
    let redis = RedisServer::start();
    let gw = start(&redis, &["--events"]);
    let mut bob = gw.connect(TCP, "bob", "desk");
    bob.join("lobby");
    bob.send(&leave("lobby"));
    bob.left();
    let fresh = token("bob", Some("desk"), Duration::from_secs(7200));
    bob.send(&proto::v1::ClientFrame {
        frame: Some(client_frame::Frame::Refresh(Refresh { token: fresh })),
    });
    bob.refreshed();
    let conn = bob.auth.conn_id.to_string();
    drop(bob);
    let mut types = Vec::new();
    wait_for("five events", || {
        types = xrange(&redis, "gw:events")
            .iter()
            .map(|e| field(e, "type"))
            .collect();
        types.len() >= 5
    });
    assert_eq!(types, ["connect", "join", "leave", "refresh", "disconnect"]);
    let events = xrange(&redis, "gw:events");
    for e in &events {
        assert_eq!(
            (field(e, "user"), field(e, "device"), field(e, "conn")),
            ("bob".into(), "desk".into(), conn.clone())
        );
    }
    assert_eq!(field(&events[1], "room"), "lobby");
    assert_eq!(field(&events[4], "reason"), "client_closed");
}

#[test]
fn uring_downstream_and_http_pushes_reach_users_on_two_nodes() {
    // Not about retransmits: none fire while it runs (a copy retransmitted
    // after a slow ack would come before the HTTP push's delivery).
    let flags = QOS1_NO_RETRANSMIT_FLAGS;
    let c = Cluster::start(Driver::Uring, &[&flags, &flags]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let mut ann = a.connect(WS, "ann", "phone");
    let mut ben = b.connect(WS, "ben", "phone");
    ben.join("news");
    wait_user_known(a, "ben", &[b]);
    wait_user_known(b, "ann", &[a]);
    wait_room_members(a, "news", 1);
    let redis = c.redis.as_ref().unwrap();
    let mut r = redis.conn();
    let add = |r: &mut redis::Connection, kv: &[(&str, &str)]| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg("gw:downstream").arg("*");
        for (k, v) in kv {
            cmd.arg(*k).arg(*v);
        }
        cmd.query::<String>(r).unwrap()
    };
    add(
        &mut r,
        &[
            ("users", "ann,ben"),
            ("text", "to both"),
            ("qos", "1"),
            ("id", "d1"),
        ],
    );
    add(&mut r, &[("room", "news"), ("text", "to the room")]);
    let d = ann.deliver();
    assert_eq!(
        (&d.payload[..], d.seq, d.msg_id.as_str()),
        (&b"to both"[..], 1, "ds-d1")
    );
    ann.send(&ack(1));
    // QoS 1 (stored first) and QoS 0 (live) take different paths: either
    // may come first.
    let mut got: Vec<(Vec<u8>, u64)> = (0..2)
        .map(|_| {
            let d = ben.deliver();
            (d.payload.to_vec(), d.seq)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [(b"to both".to_vec(), 1), (b"to the room".to_vec(), 0)]
    );
    ben.send(&ack(1));
    // Acknowledged: nothing pending for the group.
    wait_for("the entries acknowledged", || {
        let pending: PendingSummary = redis::cmd("XPENDING")
            .arg("gw:downstream")
            .arg("gateway")
            .query(&mut r)
            .unwrap();
        pending.0 == 0
    });
    // The HTTP push with a batch of targets, on either node.
    let resp = b.post("/push", r#"{"users":["ann","ben"],"text":"batch"}"#);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(&ann.deliver().payload[..], b"batch");
    assert_eq!(&ben.deliver().payload[..], b"batch");
}

#[test]
fn uring_entries_a_dead_consumer_held_are_claimed() {
    let redis = RedisServer::start();
    let mut r = redis.conn();
    // A node that read two entries and died before acknowledging them.
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("gw:downstream")
        .arg("gateway")
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(&mut r)
        .unwrap();
    for text in ["one", "two"] {
        redis::cmd("XADD")
            .arg("gw:downstream")
            .arg("*")
            .arg("user")
            .arg("cat")
            .arg("text")
            .arg(text)
            .arg("qos")
            .arg("1")
            .query::<String>(&mut r)
            .unwrap();
    }
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("gateway")
        .arg("dead-node")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg("gw:downstream")
        .arg(">")
        .query(&mut r)
        .unwrap();
    assert!(
        matches!(read, redis::Value::Array(_) | redis::Value::Map(_)),
        "{read:?}"
    );
    let gw = start(&redis, &["--claim-idle-ms", "300"]);
    let mut cat = gw.connect(WS, "cat", "phone");
    let mut got = Vec::new();
    while got.len() < 2 {
        let d = cat.deliver();
        if d.seq as usize > got.len() {
            got.push(String::from_utf8(d.payload.to_vec()).unwrap());
        }
    }
    assert_eq!(got, ["one", "two"]);
    gw.wait_metric("gateway_downstream_claimed_total", |v| v >= 2.0);
}

#[test]
fn uring_room_permissions_from_the_token() {
    let redis = RedisServer::start();
    let gw = start(&redis, &[]);
    let claims = serde_json::json!({
        "sub": "dan", "exp": now_secs() + 600,
        "rooms": {"join": ["lobby", "team-*"], "publish": ["lobby"]}
    });
    let mut dan = gw.connect_with(WS, &token_with(SECRET, &claims), "dan", "");
    dan.join("lobby");
    dan.join("team-a");
    dan.send(&join("secret"));
    assert_error(&dan.error(), ErrorCode::Forbidden, false);
    dan.send(&to_room("team-a", "t1", b"x"));
    let r = dan.result_for("t1");
    assert_eq!(
        (r.accepted, r.code()),
        (false, ErrorCode::Forbidden),
        "{r:?}"
    );
    dan.send(&to_room("lobby", "l1", b"x"));
    assert!(dan.result_for("l1").accepted);
    assert_eq!(&dan.deliver().payload[..], b"x");
    // A token without the claim may use any room (rooms_claim = enforce).
    let mut eve = gw.connect(WS, "eve", "phone");
    eve.join("secret");
}

#[test]
fn uring_a_refreshed_token_outlives_the_old_expiry() {
    let redis = RedisServer::start();
    let gw = start(&redis, &[]);
    // Long enough to connect both and refresh one before it passes, even on
    // a loaded machine; short enough that the GoAway comes within a read's
    // IO_TIMEOUT. kim's is minted first, so it passes no later than lee's.
    let short = |u: &str| {
        token_with(
            SECRET,
            &serde_json::json!({"sub": u, "exp": now_secs() + 6}),
        )
    };
    let mut kept = gw.connect_with(WS, &short("kim"), "kim", "");
    let mut other = gw.connect_with(WS, &short("lee"), "lee", "");
    // Another user's token is refused, the connection stays.
    kept.send(&proto::v1::ClientFrame {
        frame: Some(client_frame::Frame::Refresh(Refresh {
            token: token("lee", None, Duration::from_secs(60)),
        })),
    });
    assert_error(&kept.error(), ErrorCode::Forbidden, false);
    let fresh = token("kim", None, Duration::from_secs(3600));
    kept.send(&proto::v1::ClientFrame {
        frame: Some(client_frame::Frame::Refresh(Refresh { token: fresh })),
    });
    let r = kept.refreshed();
    assert!(r.expires_at >= now_secs() + 3500, "{r:?}");
    // The old expiry passes: the unrefreshed connection is told to go...
    let g = other.go_away();
    assert_eq!(g.reason(), proto::v1::GoAwayReason::TokenExpired);
    // ...and the refreshed one is still served.
    kept.ping(5);
}

#[test]
fn uring_rate_limits_refuse_with_a_retry_hint() {
    const RATE: u64 = 5;
    const SENDS: usize = 40;
    let redis = RedisServer::start();
    let gw = start(&redis, &["--rate-per-conn", "5", "--rate-per-target", "1"]);
    let mut fay = gw.connect(WS, "fay", "phone");
    // Pipelined: all sends written, then every answer read. The bucket
    // starts full (a burst of twice the rate) and refills at the rate while
    // the gateway works through them, so what is accepted is bounded by the
    // time they took, not by the round trips of a loaded machine.
    let started = Instant::now();
    for i in 0..SENDS {
        fay.send(&to_user("nobody", &format!("r{i}"), b"x"));
    }
    let results: Vec<_> = (0..SENDS)
        .map(|i| fay.result_for(&format!("r{i}")))
        .collect();
    let elapsed = started.elapsed();
    let accepted = results.iter().filter(|r| r.accepted).count() as u64;
    let refill = (RATE as f64 * elapsed.as_secs_f64()).ceil() as u64;
    assert!(
        (2 * RATE..=2 * RATE + refill).contains(&accepted),
        "burst of twice the rate, plus the refill over {elapsed:?}: {accepted}"
    );
    let refused: Vec<_> = results.iter().filter(|r| !r.accepted).collect();
    assert!(
        !refused.is_empty(),
        "{SENDS} sends in {elapsed:?}, none refused"
    );
    for r in refused {
        assert_eq!(r.code(), ErrorCode::RateLimited, "{r:?}");
        assert!(r.retry_after_ms > 0 && r.retry_after_ms <= 200, "{r:?}");
    }
    // Backend pushes per target (a burst of 2, one a second): the third is
    // refused when the three came within a second (here: 0.9 s, for the
    // gateway's tick); later, it may be served (a token refilled).
    let started = Instant::now();
    let statuses: Vec<HttpResponse> = (0..3)
        .map(|_| gw.post("/push", r#"{"user":"fay","text":"p"}"#))
        .collect();
    let elapsed = started.elapsed();
    assert_eq!(
        (statuses[0].status, statuses[1].status),
        (200, 200),
        "{statuses:?}"
    );
    let third = &statuses[2];
    if elapsed < Duration::from_millis(900) {
        assert_eq!(third.status, 429, "{third:?}");
    }
    if third.status == 429 {
        assert_eq!(third.json()["error"], "RATE_LIMITED");
    } else {
        assert_eq!(third.status, 200, "{third:?} after {elapsed:?}");
    }
    let delivered = statuses.iter().filter(|r| r.status == 200).count();
    for _ in 0..delivered {
        assert_eq!(&fay.deliver().payload[..], b"p");
    }
}
