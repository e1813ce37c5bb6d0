//! An upgrade on a node of a cluster: its connections move, the peers see
//! the node's new process (a new incarnation) and route to it again; QoS 1
//! messages both ways, a room spanning both nodes and presence work after it
//! as before, without a reconnect.

mod common;

use common::*;

driver_tests!(an_upgraded_node_rejoins_its_cluster);

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
