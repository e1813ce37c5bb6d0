//! Which node a client should use: `GET /route` on the admin and the client
//! port, by each policy, never a draining node; and a draining node's
//! go-away naming where to go.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use proto::v1::server_frame::Frame;

driver_tests!(every_policy_answers_and_never_a_draining_node);

/// `GET /route?query` on the client (WebSocket) port, as a plain HTTP GET.
fn route_on_client_port(gw: &Gateway, query: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(gw.ws).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(s, "GET /route?{query} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{raw}");
    serde_json::from_str(body).unwrap()
}

fn route(gw: &Gateway, query: &str) -> serde_json::Value {
    let r = gw.get(&format!("/route?{query}"));
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// The cluster node an answer names; its addresses must be that node's.
#[track_caller]
fn named<'a>(c: &'a Cluster, answer: &serde_json::Value) -> &'a Gateway {
    let id = answer["node"].as_str().unwrap();
    let gw = c
        .nodes
        .iter()
        .find(|g| g.node_id == id)
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(answer["ws"], format!("ws://{}/ws", gw.ws), "{answer}");
    assert_eq!(answer["tcp"], gw.tcp.to_string(), "{answer}");
    gw
}

fn every_policy_answers_and_never_a_draining_node(driver: Driver) {
    let c = Cluster::start(
        driver,
        &[
            &["--route-policy", "least_conns"],
            &[
                "--route-policy",
                "round_robin",
                "--drain-deadline-ms",
                "20000",
            ],
            &["--route-policy", "hash_room"],
        ],
    );
    let (least, rr, hash) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    // Least connections: 2 on the first node, 1 on the third, 0 on the second.
    let _held = [
        least.connect(WS, "u1", "d"),
        least.connect(WS, "u2", "d"),
        hash.connect(TCP, "u3", "d"),
    ];
    wait_for("the registry counts the connections", || {
        route(least, "").get("node") == Some(&rr.node_id.clone().into())
    });
    assert_eq!(
        named(&c, &route_on_client_port(least, "")).node_id,
        rr.node_id
    );

    // Round robin: every node in turn.
    let mut seen: Vec<String> = (0..6)
        .map(|_| named(&c, &route(rr, "")).node_id.clone())
        .collect();
    seen.sort();
    let mut want: Vec<String> = c
        .nodes
        .iter()
        .flat_map(|g| [g.node_id.clone(), g.node_id.clone()])
        .collect();
    want.sort();
    assert_eq!(seen, want);

    // Hash by room: the room decides, on either port; rooms spread.
    let first = named(&c, &route(hash, "room=general&user=a"))
        .node_id
        .clone();
    for q in ["room=general&user=b", "room=general"] {
        assert_eq!(named(&c, &route(hash, q)).node_id, first);
        assert_eq!(named(&c, &route_on_client_port(hash, q)).node_id, first);
    }
    let spread: std::collections::HashSet<String> = (0..60)
        .map(|i| {
            named(&c, &route(hash, &format!("room=r{i}")))
                .node_id
                .clone()
        })
        .collect();
    assert_eq!(spread.len(), 3, "60 rooms on {spread:?}");

    // The second node drains: its client is told where to go, and no
    // answer names it any more, whatever the policy.
    let mut leaving = rr.connect(WS, "u4", "d");
    let r = rr.post("/drain", "");
    assert_eq!(r.status, 202, "{r:?}");
    match leaving.recv() {
        Frame::GoAway(g) => {
            let to = c
                .nodes
                .iter()
                .find(|n| g.reconnect_to == format!("ws://{}/ws", n.ws));
            let to = to.unwrap_or_else(|| panic!("reconnect_to names no node: {g:?}"));
            assert_ne!(to.node_id, rr.node_id, "{g:?}");
        }
        other => panic!("expected a go-away, got {other:?}"),
    }
    for gw in [least, hash] {
        wait_for("every node's registry view lists the drain", || {
            let nodes = gw.get("/nodes").json();
            nodes["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["id"] == rr.node_id.as_str() && n["draining"] == true)
        });
    }
    for gw in [least, hash] {
        for i in 0..30 {
            for answer in [
                route(gw, &format!("room=r{i}")),
                route_on_client_port(gw, &format!("user=x{i}")),
            ] {
                assert_ne!(named(&c, &answer).node_id, rr.node_id, "{answer}");
            }
        }
    }
}
