//! The operator's HTTP API on the admin port: health, Prometheus metrics,
//! push to users and rooms, presence lookup and kick.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

driver_tests!(
    healthz_and_metrics,
    push_to_user_and_room,
    push_validation_errors,
    presence,
    kick
);

const SERIES: [&str; 9] = [
    "gateway_connections{shard=\"0\",transport=\"ws\"}",
    "gateway_frames_in_total",
    "gateway_frames_out_total",
    "gateway_bytes_in_total",
    "gateway_bytes_out_total",
    "gateway_deliveries_total",
    "gateway_errors_total{code=\"BAD_FRAME\"}",
    "gateway_slow_consumer_closes_total",
    "gateway_handshake_seconds_bucket",
];

fn healthz_and_metrics(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let r = gw.get("/healthz");
    assert_eq!((r.status, r.body.trim()), (200, "ok"), "{r:?}");

    let mut ws = gw.connect_on_shard(WS, "alice", "phone", 0);
    let mut tcp = gw.connect(TCP, "bob", "laptop");
    ws.ping(1);
    ws.send(&to_user("bob", "m1", b"hi"));
    assert!(ws.result_for("m1").accepted);
    tcp.deliver();
    let mut bad = gw.connect(TCP, "mallory", "x");
    bad.send_bytes(&[0x12, 0x10, 0x08]);
    bad.error();
    bad.expect_closed();

    // Only alice and bob stay connected.
    gw.wait_metric("gateway_connections", |v| v == 2.0);
    gw.wait_metric("gateway_errors_total{code=\"BAD_FRAME\"}", |v| v >= 1.0);
    gw.wait_metric("gateway_deliveries_total", |v| v >= 1.0);
    let text = gw.metrics();
    for series in SERIES {
        assert!(
            metric(&text, series).is_some(),
            "{series} missing from:\n{text}"
        );
    }
    assert!(
        metric(&text, SERIES[0]).unwrap() >= 1.0,
        "alice is a ws client of shard 0"
    );
    for counter in &SERIES[1..5] {
        assert!(
            metric(&text, counter).unwrap() > 0.0,
            "{counter} is zero:\n{text}"
        );
    }
    assert_eq!(
        metric(&text, "gateway_slow_consumer_closes_total"),
        Some(0.0)
    );
}

fn push_to_user_and_room(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut alices = [
        gw.connect_on_shard(WS, "alice", "phone", 0),
        gw.connect_on_shard(TCP, "alice", "laptop", 1),
    ];
    let mut members = [
        gw.connect_on_shard(WS_JSON, "bob", "web", 0),
        gw.connect_on_shard(TCP, "carol", "laptop", 1),
    ];
    for m in &mut members {
        m.join("r1");
    }
    let mut outsider = gw.connect(WS, "dave", "phone");

    let push = |body: &str| -> String {
        let r = gw.post("/push", body);
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert_eq!(v["accepted"], true, "{v}");
        let id = v["msg_id"].as_str().expect("msg_id string").to_owned();
        assert!(!id.is_empty(), "{v}");
        id
    };
    let check = |c: &mut Client, room: &str, payload: &[u8], msg_id: &str| {
        let d = c.deliver();
        assert_eq!((d.from.as_str(), d.room.as_str()), ("", room), "{d:?}");
        assert_eq!(
            (&d.payload[..], d.msg_id.as_str()),
            (payload, msg_id),
            "{d:?}"
        );
    };

    let id = push(r#"{"user":"alice","text":"hi"}"#);
    for a in &mut alices {
        check(a, "", b"hi", &id);
    }
    let id = push(r#"{"room":"r1","payload_b64":"aGk="}"#);
    for m in &mut members {
        check(m, "r1", b"hi", &id);
    }
    // Neither the outsider nor alice got the room message.
    let id = push(r#"{"user":"dave","text":"only you"}"#);
    check(&mut outsider, "", b"only you", &id);
    let id = push(r#"{"user":"alice","text":"again"}"#);
    for a in &mut alices {
        check(a, "", b"again", &id);
    }
}

/// (conn_id, shard, device, transport) of every connection presence lists.
type Conns = BTreeSet<(u64, u64, String, String)>;

fn presence_of(gw: &Gateway, user: &str) -> (bool, Conns) {
    let r = gw.get(&format!("/presence/{user}"));
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["user"], user, "{v}");
    let num = |x: &Value| {
        x.as_u64()
            .or_else(|| x.as_str()?.parse().ok())
            .expect("integer")
    };
    let conns = v["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no connections: {v}"));
    let conns = conns
        .iter()
        .map(|c| {
            let s = |k: &str| {
                c[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {c}"))
                    .to_owned()
            };
            (
                num(&c["conn_id"]),
                num(&c["shard"]),
                s("device"),
                s("transport"),
            )
        })
        .collect();
    (v["online"].as_bool().expect("online flag"), conns)
}

/// Polls presence (it may be updated in batches) until it equals `want`.
fn wait_presence(gw: &Gateway, user: &str, want: (bool, Conns)) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let got = presence_of(gw, user);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "presence of {user}: {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn presence(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    wait_presence(&gw, "alice", (false, Conns::new()));
    let ws = gw.connect_on_shard(WS, "alice", "phone", 0);
    let tcp = gw.connect_on_shard(TCP, "alice", "laptop", 1);
    let entry = |c: &Client, transport: &str| {
        let a = &c.auth;
        (
            a.conn_id,
            u64::from(a.shard),
            a.device.clone(),
            transport.to_owned(),
        )
    };
    let (e_ws, e_tcp) = (entry(&ws, "ws"), entry(&tcp, "tcp"));
    wait_presence(&gw, "alice", (true, [e_ws, e_tcp.clone()].into()));
    drop(ws);
    wait_presence(&gw, "alice", (true, [e_tcp].into()));
    drop(tcp);
    wait_presence(&gw, "alice", (false, Conns::new()));
}

fn kick(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut alices = [
        gw.connect_on_shard(WS, "alice", "phone", 0),
        gw.connect_on_shard(TCP, "alice", "laptop", 1),
    ];
    let mut bob = gw.connect(WS, "bob", "phone");
    // Connections dropped while choosing shards may still be closing.
    let conns = alices.iter().map(|a| {
        let t = if a.auth.shard == 0 { "ws" } else { "tcp" };
        (
            a.auth.conn_id,
            u64::from(a.auth.shard),
            a.auth.device.clone(),
            t.to_owned(),
        )
    });
    wait_presence(&gw, "alice", (true, conns.collect()));
    let r = gw.post("/kick/alice", "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), serde_json::json!({"kicked": 2}));
    for a in &mut alices {
        assert_eq!(a.go_away().reason(), GoAwayReason::Kicked);
        a.expect_closed();
    }
    bob.ping(1);
    let r = gw.post("/kick/nobody", "");
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!({"kicked": 0}))
    );
}

/// Every malformed `/push` is a 4xx with a JSON `error` and delivers
/// nothing: the next frame the targeted user gets is a later, good push.
fn push_validation_errors(driver: Driver) {
    let gw = Gateway::start(driver, &["--max-frame-bytes", "1024"]);
    let mut alice = gw.connect(TCP, "alice", "phone");
    alice.join("r1");
    let big = "x".repeat(2048);
    let cases: [(&str, u16, &str); 10] = [
        ("not json", 400, "bad JSON"),
        (
            r#"{"text":"to nobody"}"#,
            400,
            "give a user, a room, or users/rooms lists",
        ),
        (
            r#"{"users":["alice",""],"text":"x"}"#,
            400,
            "give a user, a room, or users/rooms lists",
        ),
        (
            r#"{"user":"alice"}"#,
            400,
            "give exactly one of text or payload_b64",
        ),
        (
            r#"{"user":"alice","text":"x","payload_b64":"eA=="}"#,
            400,
            "give exactly one of text or payload_b64",
        ),
        (
            r#"{"user":"alice","payload_b64":"not base64!"}"#,
            400,
            "bad payload_b64",
        ),
        (
            r#"{"user":"alice","text":"x","qos":2}"#,
            400,
            "qos is 0 or 1",
        ),
        (r#"{"room":"r1","text":"x","qos":7}"#, 400, "qos is 0 or 1"),
        (
            &format!(r#"{{"user":"alice","text":"{big}"}}"#),
            413,
            "payload over the node's frame limit",
        ),
        (
            &format!(r#"{{"room":"r1","text":"{big}"}}"#),
            413,
            "payload over the node's frame limit",
        ),
    ];
    for (body, status, error) in cases {
        let r = gw.post("/push", body);
        assert_eq!(r.status, status, "{body}: {r:?}");
        let v = r.json();
        let got = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {v}"));
        assert!(got.starts_with(error), "{body}: {got:?}, want {error:?}");
    }
    let r = gw.get("/push");
    assert_eq!(r.status, 405, "{r:?}");
    let r = gw.post("/push", r#"{"user":"alice","text":"good"}"#);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(&alice.deliver().payload[..], b"good");
}
