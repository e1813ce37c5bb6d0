//! When part of a cluster fails: a node killed with SIGKILL (its clients
//! ask `/route`, reconnect to a live node, resume, and get every QoS 1
//! message once, in order; the node leaves `/nodes`), a bus link cut (no
//! message lost, QoS 0 included while the sender node lives), and Redis
//! stopped and restarted (local delivery and the links go on; the registry
//! comes back by itself).

#[allow(unused_macros)] // io_uring only: the failures are not driver-specific
mod common;

use std::process::Command;
use std::time::Instant;

use common::*;
use proto::v1::Deliver;

/// Reads QoS 1 deliveries until `last` (in order, none missing), as the
/// README tells clients to: a seq already seen is a duplicate (a
/// retransmit) and dropped; the highest seq received is acked.
#[track_caller]
fn read_q1_until(c: &mut Client, mut expect: u64, last: u64, ids: &[String]) -> u64 {
    while expect <= last {
        let d: Deliver = c.deliver();
        if d.seq < expect {
            continue;
        }
        assert_eq!(d.seq, expect, "a gap or reordering: {d:?}");
        assert_eq!(d.msg_id, ids[(expect - 1) as usize], "{d:?}");
        c.send(&ack(d.seq));
        expect += 1;
    }
    expect
}

/// Pings and reads until the Pong: the acks sent before the ping are in
/// once it comes. A copy of a message up to `acked` retransmitted before
/// the acks arrived may come first (dropped, as by a client); nothing else.
#[track_caller]
fn ping_past_retransmits(c: &mut Client, nonce: u64, acked: u64) {
    c.send(&ping(nonce));
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no Pong {nonce} within {IO_TIMEOUT:?}"
        );
        match c.recv() {
            Frame::Pong(p) if p.nonce == nonce => return,
            Frame::Deliver(d) if d.seq <= acked => continue,
            f => panic!("awaiting Pong {nonce} (acked {acked}): {f:?}"),
        }
    }
}

/// Answers of `/route` on `at` until one names a live node; that node.
fn routed<'a>(c: &'a Cluster, at: &Gateway, dead: &str) -> &'a Gateway {
    let mut id = String::new();
    wait_for("a route to a live node", || {
        id = at.get("/route?user=bob").json()["node"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        !id.is_empty() && id != dead
    });
    c.nodes.iter().find(|g| g.node_id == id).unwrap()
}

#[test]
fn uring_a_killed_node_leaves_and_its_clients_resume_elsewhere() {
    let mut flags = QOS1_FLAGS.to_vec();
    flags.extend(["--route-policy", "round_robin"]);
    let c = Cluster::start(Driver::Uring, &[&flags, &flags, &flags]);
    let (a, victim) = (&c.nodes[0], &c.nodes[2]);
    let mut bob = victim.connect(WS, "bob", "phone");
    let mut alice = a.connect(WS, "alice", "phone");
    wait_user_known(a, "bob", &[victim]);
    let mut ids = Vec::new();
    for i in 1..=20 {
        ids.push(send_q1(
            &mut alice,
            "bob",
            &format!("m{i}"),
            &format!("p{i}"),
        ));
    }
    read_q1_until(&mut bob, 1, 20, &ids);
    // The acks are in: answered by a pong after them.
    ping_past_retransmits(&mut bob, 7, 20);

    victim.signal(libc::SIGKILL);
    for i in 21..=40 {
        ids.push(send_q1(
            &mut alice,
            "bob",
            &format!("m{i}"),
            &format!("p{i}"),
        ));
    }
    // Within the registry TTL and a refresh, given a loaded machine's time.
    wait_for_within("the dead node leaves /nodes", LEAVE_TIMEOUT, || {
        !node_ids(a).contains(&victim.node_id)
    });
    // Its presence went with it: bob is offline until he reconnects.
    let p = a.get("/presence/bob").json();
    assert_eq!(p["online"], false, "{p}");
    let to = routed(&c, a, &victim.node_id);
    let mut bob = to.connect(WS, "bob", "phone");
    bob.send(&resume(20));
    read_q1_until(&mut bob, 21, 40, &ids);
    // And live messages keep coming, whichever node alice is on.
    wait_user_known(a, "bob", &[to]);
    ids.push(send_q1(&mut alice, "bob", "m41", "p41"));
    read_q1_until(&mut bob, 41, 41, &ids);
    ping_past_retransmits(&mut bob, 8, 41);
    assert!(bob.take_stashed().is_empty());
}

/// Cuts every bus connection of the cluster (the kernel aborts them: both
/// ends see a reset), in both directions.
fn cut_links(gw: &Gateway) {
    let nodes = gw.get("/nodes").json();
    for node in nodes["nodes"].as_array().unwrap() {
        for addr in node["bus"].as_array().unwrap() {
            let port = addr.as_str().unwrap().rsplit(':').next().unwrap();
            let filter = format!(":{port}");
            let out = Command::new("ss")
                .args(["-K", "-t", "dport", "=", &filter])
                .output()
                .expect("ss");
            assert!(out.status.success(), "ss -K: {out:?}");
        }
    }
}

#[test]
fn uring_a_cut_bus_link_loses_nothing() {
    let c = Cluster::start(Driver::Uring, &[&QOS1_FLAGS, &QOS1_FLAGS]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let mut bob = b.connect(WS, "bob", "phone");
    let mut carol = b.connect(WS, "carol", "phone");
    let mut alice = a.connect(WS, "alice", "phone");
    wait_user_known(a, "bob", &[b]);
    wait_user_known(a, "carol", &[b]);
    let ups = |gw: &Gateway| gw.stderr().matches("bus: link up").count();
    let before = ups(a);
    let mut ids = Vec::new();
    let mut live = Vec::new();
    for i in 1..=300 {
        ids.push(send_q1(
            &mut alice,
            "bob",
            &format!("q{i}"),
            &format!("p{i}"),
        ));
        alice.send(&to_user(
            "carol",
            &format!("z{i}"),
            format!("z{i}").as_bytes(),
        ));
        live.push(alice.result_for(&format!("z{i}")).msg_id);
        if i % 100 == 50 {
            cut_links(a);
        }
    }
    read_q1_until(&mut bob, 1, 300, &ids);
    // QoS 0 too: batches the cut lost are sent again after the reconnect,
    // and the receiver drops what it already had.
    for id in &live {
        let d = carol.deliver();
        assert_eq!(&d.msg_id, id, "QoS 0 lost or reordered across a link cut");
    }
    carol.ping(1);
    assert!(carol.take_stashed().is_empty());
    // The cuts happened: the links came up again. (A cut that lands while
    // a link is still reconnecting from the previous one finds nothing to
    // cut, so not every cut is one more "up" per shard.)
    wait_for("the cut links up again", || ups(a) > before && ups(b) > 0);
    assert!(ups(a) > before, "{}", a.stderr());
}

#[test]
fn uring_redis_restarted_local_and_bus_go_on_registry_recovers() {
    let mut c = Cluster::start(Driver::Uring, &[&[], &[]]);
    let ids: Vec<String> = c.nodes.iter().map(|g| g.node_id.clone()).collect();
    let mut bob = c.nodes[1].connect(WS, "bob", "phone");
    let mut dan = c.nodes[0].connect(WS, "dan", "phone");
    let mut alice = c.nodes[0].connect(WS, "alice", "phone");
    wait_user_known(&c.nodes[0], "bob", &[&c.nodes[1]]);
    c.redis.as_mut().unwrap().kill();
    // Local delivery and the bus do not need Redis.
    alice.send(&to_user("dan", "l1", b"local"));
    assert!(alice.result_for("l1").accepted);
    assert_eq!(&dan.deliver().payload[..], b"local");
    alice.send(&to_user("bob", "r1", b"remote"));
    assert!(alice.result_for("r1").accepted);
    assert_eq!(&bob.deliver().payload[..], b"remote");
    // A restarted (empty) Redis: every node writes its entry again.
    c.redis.as_mut().unwrap().restart();
    let mut r = c.redis.as_ref().unwrap().conn();
    wait_for("both entries back in Redis", || {
        let n: Vec<String> = redis::cmd("SMEMBERS")
            .arg("im:{cluster}:nodes")
            .query(&mut r)
            .unwrap_or_default();
        ids.iter().all(|id| n.contains(id))
    });
    // A node that joins now finds both, and they find it.
    let newcomer = c.add(Driver::Uring, &[]);
    let mut eve = newcomer.connect(WS, "eve", "phone");
    let newcomer_id = newcomer.node_id.clone();
    wait_for("the newcomer sees everyone", || {
        node_ids(&c.nodes[2]).len() == 3
    });
    wait_user_known(&c.nodes[0], "eve", &[&c.nodes[2]]);
    assert!(node_ids(&c.nodes[0]).contains(&newcomer_id));
    alice.send(&to_user("eve", "n1", b"hello newcomer"));
    assert!(alice.result_for("n1").accepted);
    assert_eq!(&eve.deliver().payload[..], b"hello newcomer");
}
