//! An upgrade on a node of a cluster: its connections move, the peers see
//! the same node (id and incarnation) served by a new process; QoS 1
//! messages both ways, a room spanning both nodes and presence work after it
//! as before, without a reconnect, and live messages a peer sends across
//! the upgrade all arrive, once, in order.

mod common;

use common::*;

driver_tests!(
    an_upgraded_node_rejoins_its_cluster,
    messages_from_a_peer_cross_the_upgrade,
);

fn an_upgraded_node_rejoins_its_cluster(driver: Driver) {
    let reap = Reap::default();
    let mut c = Cluster::start(driver, &[&[], &[]]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let mut alice = a.connect(WS, "alice", "phone");
    let mut bob = b.connect(TCP, "bob", "laptop");
    alice.join("hall");
    bob.join("hall");
    wait_user_known(b, "alice", &[a]);
    wait_user_known(a, "bob", &[b]);
    wait_room_members(b, "hall", 2);
    let id = send_q1(&mut bob, "alice", "b1", "before");
    assert_q1(&alice.deliver(), 1, "before", &id);
    alice.send(&ack(1));

    upgrade_node(a, &reap);
    assert_eq!(c.nodes[0].wait_exit(IO_TIMEOUT).code(), Some(0));
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // Both still listed, alice still on node a, from either side.
    wait_for("both nodes listed", || node_ids(b).len() == 2);
    wait_user_known(b, "alice", &[a]);
    wait_room_members(b, "hall", 2);
    alice.ping(1);
    bob.ping(2);
    let id = send_q1(&mut bob, "alice", "b2", "after");
    assert_q1(&alice.deliver(), 2, "after", &id);
    alice.send(&ack(2));
    let id = send_q1(&mut alice, "bob", "a1", "back");
    assert_q1(&bob.deliver(), 1, "back", &id);
    bob.send(&ack(1));
    bob.send(&to_room("hall", "h1", b"all"));
    assert_eq!(alice.deliver().room, "hall");
    let _ = &mut c;
}

/// A peer's live messages to a user of the upgraded node, sent without
/// pause across the upgrade: every one arrives, once and in order (what the
/// old process did not read during the freeze is resent by the peer's link
/// to the new one).
fn messages_from_a_peer_cross_the_upgrade(driver: Driver) {
    let reap = Reap::default();
    let mut c = Cluster::start(driver, &[&[], &[]]);
    let mut alice = c.nodes[0].connect(WS, "alice", "phone");
    let bob = c.nodes[1].connect(TCP, "bob", "laptop");
    wait_user_known(&c.nodes[1], "alice", &[&c.nodes[0]]);
    const N: usize = 400;
    let sender = std::thread::spawn(move || {
        let mut bob = bob;
        for i in 0..N {
            bob.send(&to_user("alice", &i.to_string(), i.to_string().as_bytes()));
            let r = bob.result_for(&i.to_string());
            assert!(r.accepted, "{r:?}");
        }
        bob
    });
    let mut got = Vec::new();
    while got.len() < N / 4 {
        got.push(alice.deliver().payload);
    }
    upgrade_node(&c.nodes[0], &reap);
    while got.len() < N {
        match alice.next_event() {
            Event::Frame(Frame::Deliver(d)) => got.push(d.payload),
            other => panic!(
                "after {} messages (last {:?}): {other:?}",
                got.len(),
                got.last().map(|p| String::from_utf8_lossy(p).into_owned())
            ),
        }
    }
    let want: Vec<Vec<u8>> = (0..N).map(|i| i.to_string().into_bytes()).collect();
    assert_eq!(got, want);
    let _bob = sender.join().unwrap();
    assert_eq!(c.nodes[0].wait_exit(IO_TIMEOUT).code(), Some(0));
    let _ = &mut c;
}
