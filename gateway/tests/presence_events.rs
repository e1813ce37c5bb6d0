//! The backend's `online` and `offline` events (`cluster::presence_events`):
//! once per user per change, cluster-wide, with the grace of
//! `presence.offline_grace_ms`, read from the events stream as a backend
//! reads it.
//!
//! Absence is proven by order, never by waiting: each test ends with the
//! user's `offline`, and the whole list of the user's presence events up to
//! it is asserted.

#[allow(unused_macros)] // io_uring only: presence is not driver-specific
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

/// Long enough that a reconnect made at once is within it on a loaded
/// machine; the test checks how long its reconnect took anyway.
const GRACE_MS: u64 = 3000;

/// One presence event: type, `ts` and `last_seen` (offline).
#[derive(Debug, Clone, PartialEq)]
struct Told {
    kind: String,
    ts: u64,
    last_seen: Option<u64>,
}

/// The presence events of `user` in the events stream, in order.
fn told(redis: &RedisServer, user: &str) -> Vec<Told> {
    type RawEntry = (String, Vec<(String, String)>);
    let mut c = redis.conn();
    let raw: Vec<RawEntry> = redis::cmd("XRANGE")
        .arg("gw:events")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    raw.into_iter()
        .map(|(_, kv)| kv.into_iter().collect::<HashMap<_, _>>())
        .filter(|f| f.get("user").map(String::as_str) == Some(user))
        .filter(|f| matches!(f["type"].as_str(), "online" | "offline"))
        .map(|f| Told {
            kind: f["type"].clone(),
            ts: f["ts"].parse().unwrap(),
            last_seen: f.get("last_seen").map(|s| s.parse().unwrap()),
        })
        .collect()
}

fn kinds(t: &[Told]) -> Vec<&str> {
    t.iter().map(|e| e.kind.as_str()).collect()
}

/// Waits until `user`'s events end with an `offline`, and returns them.
#[track_caller]
fn until_offline(redis: &RedisServer, user: &str, within: Duration) -> Vec<Told> {
    let mut events = Vec::new();
    wait_for_within(&format!("{user}'s offline event"), within, || {
        events = told(redis, user);
        events.last().is_some_and(|e| e.kind == "offline")
    });
    let off = events.last().unwrap();
    let seen = off.last_seen.expect("an offline event has last_seen");
    assert!(
        off.ts >= seen + GRACE_MS,
        "offline told only after the grace: {events:?}"
    );
    events
}

fn flags() -> Vec<&'static str> {
    vec!["--events", "--offline-grace-ms", "3000"]
}

/// One user, two devices on two nodes: one `online`; nothing while one
/// device remains; one `offline` once the last is gone for the grace.
#[test]
fn uring_two_devices_on_two_nodes_one_online_one_offline() {
    let f = flags();
    let c = Cluster::start(Driver::Uring, &[&f, &f]);
    let redis = c.redis.as_ref().unwrap();
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let phone = a.connect(WS, "alice", "phone");
    wait_for("alice online", || {
        kinds(&told(redis, "alice")) == ["online"]
    });
    let tablet = b.connect(TCP, "alice", "tablet");
    // Both devices in Redis before the phone leaves (node b's part is
    // written within a tick of its connect; a reads it from Redis).
    wait_for("both devices listed", || {
        let p = a.get("/presence/alice").json();
        p["connections"].as_array().map(Vec::len) == Some(2)
    });
    phone.abort(false);
    wait_for("only the tablet listed", || {
        let p = b.get("/presence/alice").json();
        p["connections"].as_array().map(Vec::len) == Some(1)
    });
    tablet.abort(false);
    let events = until_offline(redis, "alice", Duration::from_secs(30));
    assert_eq!(kinds(&events), ["online", "offline"], "{events:?}");
}

/// A reconnect within the grace, on another node, is no change: no
/// `offline`, no second `online`.
#[test]
fn uring_a_reconnect_within_the_grace_tells_nothing() {
    let f = flags();
    let c = Cluster::start(Driver::Uring, &[&f, &f]);
    let redis = c.redis.as_ref().unwrap();
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let phone = a.connect(WS, "bob", "phone");
    wait_for("bob online", || kinds(&told(redis, "bob")) == ["online"]);
    let left = Instant::now();
    phone.abort(false);
    let again = b.connect(WS, "bob", "phone");
    let took = left.elapsed();
    wait_for("bob listed on b", || {
        let p = a.get("/presence/bob").json();
        p["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 1 && n[0] == b.node_id.as_str())
    });
    again.abort(false);
    let events = until_offline(redis, "bob", Duration::from_secs(30));
    if took < Duration::from_millis(GRACE_MS / 2) {
        assert_eq!(kinds(&events), ["online", "offline"], "{events:?}");
    } else {
        // The machine stalled past the grace between the two: then the
        // gap was an offline, told once, and the return an online.
        let k = kinds(&events);
        assert!(
            k == ["online", "offline"] || k == ["online", "offline", "online", "offline"],
            "{events:?} (reconnect took {took:?})"
        );
    }
}

/// A node killed with its user's only connection: a peer sweeps the dead
/// incarnation and tells `offline` once.
#[test]
fn uring_a_killed_nodes_users_go_offline_once() {
    let f = flags();
    let c = Cluster::start(Driver::Uring, &[&f, &f]);
    let redis = c.redis.as_ref().unwrap();
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let _carol = a.connect(TCP, "carol", "phone");
    let _dave = b.connect(TCP, "dave", "phone");
    wait_for("carol online", || {
        kinds(&told(redis, "carol")) == ["online"]
    });
    a.signal(libc::SIGKILL);
    // The registry drops a within its TTL; its incarnation is stale 10 s
    // after its last heartbeat; then the grace.
    let events = until_offline(redis, "carol", Duration::from_secs(60));
    assert_eq!(kinds(&events), ["online", "offline"], "{events:?}");
    assert_eq!(
        kinds(&told(redis, "dave")),
        ["online"],
        "dave is still on b"
    );
}

/// A single node (no cluster) with `--events` tells them too.
#[test]
fn uring_a_single_node_tells_online_and_offline() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut args = vec!["--redis", &url];
    args.extend(flags());
    let gw = Gateway::start(Driver::Uring, &args);
    let erin = gw.connect(WS, "erin", "web");
    wait_for("erin online", || kinds(&told(&redis, "erin")) == ["online"]);
    let second = gw.connect(TCP, "erin", "phone");
    erin.abort(false);
    second.abort(false);
    let events = until_offline(&redis, "erin", Duration::from_secs(30));
    assert_eq!(kinds(&events), ["online", "offline"], "{events:?}");
}
