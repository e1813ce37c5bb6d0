//! Three real nodes and a real Redis on loopback: direct messages between
//! users on different nodes, room broadcasts across nodes, presence and
//! room counts for the whole cluster, `/nodes` and `/route`.
//!
//! A cluster learns who is where asynchronously (interest travels over the
//! bus): each test first waits until the sending node knows the receivers,
//! as `/presence` and `/rooms` show it, then sends. Absence is proven as in
//! `routing.rs`: a later message must be the very next frame.

mod common;

use common::*;
use proto::v1::Deliver;

driver_tests!(
    direct_reaches_every_device_on_every_node,
    room_spans_nodes_and_reaches_members_only,
);

/// The same, with a 3-master Redis Cluster as the shared state (registry
/// and QoS 1 inboxes): QoS 1 direct messages across nodes, and a room.
#[test]
fn uring_on_a_redis_cluster() {
    // Not about retransmits: none fire while it runs (a copy retransmitted
    // after a slow ack would come before the next round's delivery).
    let flags = QOS1_NO_RETRANSMIT_FLAGS;
    let c = Cluster::start_on_redis_cluster(Driver::Uring, &[&flags, &flags, &flags]);
    direct_and_room_on(&c);
    let counts = c.redis_cluster.as_ref().unwrap().key_counts();
    assert!(
        counts.iter().all(|&n| n > 0),
        "every master holds inboxes: {counts:?}"
    );
}

#[track_caller]
fn send_ok(c: &mut Client, f: &proto::v1::ClientFrame, client_msg_id: &str) -> String {
    c.send(f);
    let r = c.result_for(client_msg_id);
    assert!(r.accepted, "{r:?}");
    r.msg_id
}

#[track_caller]
fn assert_deliver(d: &Deliver, from: &str, room: &str, payload: &[u8], msg_id: &str) {
    assert_eq!(
        (
            d.from.as_str(),
            d.room.as_str(),
            &d.payload[..],
            d.msg_id.as_str()
        ),
        (from, room, payload, msg_id),
        "{d:?}"
    );
}

/// QoS 1 sent to a user the moment its device connects on another node,
/// before that node's interest can have reached the sender's: every
/// message still arrives, without waiting for a later one.
#[test]
fn uring_qos1_to_a_device_that_just_connected_elsewhere() {
    let c = Cluster::start(Driver::Uring, &[&QOS1_FLAGS, &QOS1_FLAGS]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let mut alice = a.connect(WS, "alice", "phone");
    for i in 0..10 {
        let user = format!("late-{i}");
        let mut late = b.connect(TCP, &user, "phone");
        let id = send_q1(&mut alice, &user, &format!("x{i}"), "first");
        assert_q1(&late.deliver(), 1, "first", &id);
    }
}

fn three(driver: Driver) -> Cluster {
    Cluster::start(driver, &[&[], &[], &[]])
}

/// QoS 1 to users spread over the slots, across nodes, and a room.
fn direct_and_room_on(c: &Cluster) {
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let mut alice = a.connect(WS, "alice", "phone");
    // Enough users that their inboxes land on every master.
    let mut users: Vec<(String, Client)> = Vec::new();
    for i in 0..12 {
        let name = format!("user-{i}");
        let node = [b, cc][i % 2];
        let mut client = node.connect(WS, &name, "phone");
        client.join("hall");
        wait_user_known(a, &name, &[node]);
        users.push((name, client));
    }
    alice.join("hall");
    for round in 1..=3u64 {
        let mut ids = Vec::new();
        for (name, _) in &users {
            ids.push(send_q1(
                &mut alice,
                name,
                &format!("{name}-{round}"),
                &format!("p{round}"),
            ));
        }
        for ((_, client), id) in users.iter_mut().zip(&ids) {
            let d = client.deliver();
            assert_q1(&d, round, &format!("p{round}"), id);
            client.send(&ack(d.seq));
        }
    }
    wait_room_members(a, "hall", 13);
    let id = send_ok(&mut alice, &to_room("hall", "h1", b"all"), "h1");
    assert_deliver(&alice.deliver(), "alice", "hall", b"all", &id);
    for (_, client) in &mut users {
        assert_deliver(&client.deliver(), "alice", "hall", b"all", &id);
    }
}

fn direct_reaches_every_device_on_every_node(driver: Driver) {
    let c = three(driver);
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let mut bob_phone = b.connect(WS, "bob", "phone");
    let mut bob_desk = cc.connect(TCP, "bob", "desk");
    let mut bob_web = a.connect(WS_JSON, "bob", "web");
    let mut alice = a.connect(WS, "alice", "phone");
    wait_user_known(a, "bob", &[a, b, cc]);
    let id = send_ok(&mut alice, &to_user("bob", "m1", b"hi bob"), "m1");
    for bob in [&mut bob_phone, &mut bob_desk, &mut bob_web] {
        assert_deliver(&bob.deliver(), "alice", "", b"hi bob", &id);
    }
    // And back, from another node: alice is known there once she is online.
    wait_user_known(b, "alice", &[a]);
    let id = send_ok(&mut bob_phone, &to_user("alice", "r1", b"hi alice"), "r1");
    assert_deliver(&alice.deliver(), "bob", "", b"hi alice", &id);
    // Exactly once: the next message is the very next frame everywhere.
    let id = send_ok(&mut alice, &to_user("bob", "m2", b"again"), "m2");
    for bob in [&mut bob_phone, &mut bob_desk, &mut bob_web] {
        assert_deliver(&bob.deliver(), "alice", "", b"again", &id);
        assert!(bob.take_stashed().is_empty());
    }
    // Presence answers for the cluster: three devices on three nodes (each
    // node writes its part to Redis within a timer tick).
    wait_for("bob's three devices listed on the third node", || {
        let p = cc.get("/presence/bob").json();
        p["connections"].as_array().map(Vec::len) == Some(3)
    });
    let p = cc.get("/presence/bob").json();
    assert_eq!(p["online"], true, "{p}");
    assert_eq!(p["unreachable"].as_array().map(Vec::len), Some(0), "{p}");
    let mut on: Vec<&str> = p["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    on.sort();
    let mut want = vec![a.node_id.as_str(), b.node_id.as_str(), cc.node_id.as_str()];
    want.sort();
    assert_eq!(on, want, "{p}");
    // A device leaving its node withdraws the interest.
    drop(bob_desk);
    wait_for("bob gone from the third node", || {
        let p = a.get("/presence/bob").json();
        p["connections"].as_array().map(Vec::len) == Some(2)
            && !p["nodes"].to_string().contains(&cc.node_id)
    });
    // A kick on one node reaches the user's devices on every node (once
    // that node knows where they are: it sends the kick there).
    wait_user_known(cc, "bob", &[a, b]);
    let r = cc.post("/kick/bob", "");
    assert_eq!(r.status, 200, "{r:?}");
    for bob in [&mut bob_phone, &mut bob_web] {
        let g = bob.go_away();
        assert_eq!(g.reason(), proto::v1::GoAwayReason::Kicked, "{g:?}");
    }
}

fn room_spans_nodes_and_reaches_members_only(driver: Driver) {
    let c = three(driver);
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let mut members = vec![
        a.connect(WS, "m1", "d"),
        b.connect(TCP, "m2", "d"),
        b.connect(WS, "m3", "d"),
        cc.connect(WS_JSON, "m4", "d"),
    ];
    let mut outsider = b.connect(WS, "out", "d");
    for m in &mut members {
        m.join("lobby");
    }
    let mut sender = a.connect(WS, "sender", "d");
    sender.join("lobby");
    wait_room_members(a, "lobby", 5);
    let r = a.get("/rooms/lobby").json();
    assert_eq!(r["nodes"][&a.node_id], 2, "{r}");
    assert_eq!(r["nodes"][&b.node_id], 2, "{r}");
    assert_eq!(r["nodes"][&cc.node_id], 1, "{r}");
    let id = send_ok(&mut sender, &to_room("lobby", "l1", b"hello room"), "l1");
    assert_deliver(&sender.deliver(), "sender", "lobby", b"hello room", &id);
    for m in &mut members {
        assert_deliver(&m.deliver(), "sender", "lobby", b"hello room", &id);
    }
    // The outsider got nothing: a direct message is its very next frame.
    wait_user_known(a, "out", &[b]);
    let id = send_ok(&mut sender, &to_user("out", "d1", b"just you"), "d1");
    assert_deliver(&outsider.deliver(), "sender", "", b"just you", &id);
    // The last member on the third node leaves: its node is no longer sent to.
    let mut last = members.pop().unwrap();
    last.send(&leave("lobby"));
    assert_eq!(last.left().room, "lobby");
    wait_room_members(a, "lobby", 4);
    wait_for("the third node's interest withdrawn", || {
        let owner_view = a.get("/rooms/lobby?local=1").json();
        owner_view["members"] == 2
            && !a.get("/rooms/lobby").json()["nodes"]
                .to_string()
                .contains(&cc.node_id)
    });
    let id = send_ok(&mut sender, &to_room("lobby", "l2", b"after"), "l2");
    for m in members.iter_mut().chain([&mut sender]) {
        assert_deliver(&m.deliver(), "sender", "lobby", b"after", &id);
    }
    // The one who left got nothing more.
    wait_user_known(a, "m4", &[cc]);
    let id = send_ok(&mut sender, &to_user("m4", "d2", b"direct"), "d2");
    assert_deliver(&last.deliver(), "sender", "", b"direct", &id);
}
