//! Rooms that keep history, against the real binary: a member cut off
//! while the room talks gets every missed message once, in order, before
//! new ones (in process and on Redis, both drivers); a position the
//! history no longer reaches is told (`recovered: false` and a gap); a
//! node killed with SIGKILL and started again serves its members' recovery
//! from Redis; members on three nodes see one order for messages sent
//! concurrently from two; an upgrade keeps the in-process history (same
//! epoch) and each connection's position.

mod common;

use common::*;
use proto::v1::{Deliver, RoomJoined};

driver_tests!(
    a_cut_member_recovers_what_it_missed_in_process,
    a_cut_member_recovers_what_it_missed_on_redis,
    a_position_behind_the_history_is_told_then_served_in_process,
    a_position_behind_the_history_is_told_then_served_on_redis,
    an_upgrade_keeps_the_history_and_the_positions,
);

const ROOM: &str = "chat:1";

/// Sends message `i` to the room (odd ones QoS 1, even ones QoS 0) and
/// waits until it is accepted.
#[track_caller]
fn say(c: &mut Client, i: u64) {
    let qos = if i % 2 == 1 {
        Qos::AtLeastOnce
    } else {
        Qos::AtMostOnce
    };
    let id = format!("m{i}");
    let to = proto::v1::send::To::Room(ROOM.into());
    c.send(&send_frame(to, &id, qos, id.as_bytes()));
    let r = c.result_for(&id);
    assert!(r.accepted, "{r:?}");
}

/// The next frame is the room's message `i`, at offset `i`.
#[track_caller]
fn heard(c: &mut Client, i: u64) -> Deliver {
    let d = c.deliver();
    assert_eq!(
        (d.room.as_str(), d.offset, &d.payload[..], d.seq),
        (ROOM, i, format!("m{i}").as_bytes(), 0),
        "{d:?}"
    );
    d
}

#[track_caller]
fn joined(c: &mut Client) -> RoomJoined {
    let j = c.joined();
    assert!(j.room == ROOM && j.history && !j.epoch.is_empty(), "{j:?}");
    j
}

/// `user` over TCP, re-joining the room from `(epoch, offset)` in its
/// Auth frame (the reconnect in one step).
fn reconnect(gw: &Gateway, user: &str, epoch: &str, offset: u64) -> Client {
    let mut c = Client::from_tcp(std::net::TcpStream::connect(gw.tcp).expect("connect"));
    c.send(&auth_with_rooms(
        &user_token(user, "phone"),
        &[(ROOM, epoch, offset)],
    ));
    c.auth = c.auth_ok();
    c
}

fn history_flags(redis: Option<&str>) -> Vec<String> {
    let mut flags = vec!["--room-history".to_string(), "chat:*".into()];
    if let Some(url) = redis {
        flags.extend(["--redis".to_string(), url.to_string()]);
    }
    flags
}

fn start(driver: Driver, redis: Option<&str>, extra: &[&str]) -> Gateway {
    let mut flags = history_flags(redis);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Gateway::start(driver, &flags)
}

fn cut_member_recovers(driver: Driver, redis: Option<&str>) {
    let gw = start(driver, redis, &[]);
    let mut alice = gw.connect(TCP, "alice", "phone");
    alice.send(&join(ROOM));
    let j = joined(&mut alice);
    assert_eq!((j.offset, j.recovered), (0, false));
    let mut bob = gw.connect(WS, "bob", "desk");
    for i in 1..=3 {
        say(&mut bob, i);
    }
    for i in 1..=3 {
        heard(&mut alice, i);
    }
    // Cut (a reset, as a phone losing its network), and the room talks on.
    alice.abort(true);
    for i in 4..=8 {
        say(&mut bob, i);
    }
    let mut alice = reconnect(&gw, "alice", &j.epoch, 3);
    let back = joined(&mut alice);
    assert_eq!(
        (back.offset, back.recovered, &back.epoch),
        (8, true, &j.epoch)
    );
    for i in 4..=8 {
        heard(&mut alice, i);
    }
    // Then live, with nothing twice: the next frame is the next message.
    say(&mut bob, 9);
    heard(&mut alice, 9);
    alice.ping(1);
}

fn a_cut_member_recovers_what_it_missed_in_process(driver: Driver) {
    cut_member_recovers(driver, None);
}

fn a_cut_member_recovers_what_it_missed_on_redis(driver: Driver) {
    let redis = RedisServer::start();
    cut_member_recovers(driver, Some(&redis.url()));
}

fn a_position_behind_the_history_is_told_then_served_in_process(driver: Driver) {
    behind_the_history(driver, None);
}

fn a_position_behind_the_history_is_told_then_served_on_redis(driver: Driver) {
    let redis = RedisServer::start();
    behind_the_history(driver, Some(&redis.url()));
}

fn behind_the_history(driver: Driver, redis: Option<&str>) {
    let gw = start(driver, redis, &["--room-history-size", "3"]);
    let mut alice = gw.connect(TCP, "alice", "phone");
    alice.send(&join(ROOM));
    let epoch = joined(&mut alice).epoch;
    alice.send(&leave(ROOM));
    alice.left();
    let mut bob = gw.connect(WS, "bob", "desk");
    for i in 1..=6 {
        say(&mut bob, i);
    }
    // Alice had 1; the history keeps 4..=6.
    alice.send(&join_since(ROOM, &epoch, 1));
    let j = joined(&mut alice);
    assert_eq!((j.offset, j.recovered), (6, false));
    let g = alice.gap();
    assert_eq!(
        (g.room.as_str(), g.from_seq, g.first_available, &g.epoch),
        (ROOM, 2, 4, &epoch)
    );
    for i in 4..=6 {
        heard(&mut alice, i);
    }
    say(&mut bob, 7);
    heard(&mut alice, 7);
    // A new member asks for the last two.
    let mut carol = gw.connect(TCP, "carol", "phone");
    carol.send(&join_recent(ROOM, 2));
    assert_eq!(joined(&mut carol).offset, 7);
    heard(&mut carol, 6);
    heard(&mut carol, 7);
}

/// A node killed with SIGKILL: the room's history is in Redis, so the node
/// started in its place serves the member's recovery.
#[test]
fn uring_a_node_killed_and_restarted_recovers_its_members_from_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut gw = start(Driver::Uring, Some(&url), &[]);
    let mut alice = gw.connect(TCP, "alice", "phone");
    alice.send(&join(ROOM));
    let epoch = joined(&mut alice).epoch;
    let mut bob = gw.connect(WS, "bob", "desk");
    for i in 1..=2 {
        say(&mut bob, i);
        heard(&mut alice, i);
    }
    gw.signal(libc::SIGKILL);
    gw.wait_exit(std::time::Duration::from_secs(10));
    drop((alice.take_stashed(), bob.take_stashed()));
    let gw = start(Driver::Uring, Some(&url), &[]);
    let mut bob = gw.connect(WS, "bob", "desk");
    for i in 3..=4 {
        say(&mut bob, i);
    }
    let mut alice = reconnect(&gw, "alice", &epoch, 2);
    let j = joined(&mut alice);
    assert_eq!((j.offset, j.recovered, &j.epoch), (4, true, &epoch));
    heard(&mut alice, 3);
    heard(&mut alice, 4);
}

/// Two senders on two nodes talk at once; members on all three nodes see
/// the same messages in the same order, offsets 1, 2, 3, ... without a
/// hole.
#[test]
fn uring_members_on_three_nodes_see_one_order() {
    let flags = ["--room-history", "chat:*"];
    let c = Cluster::start(Driver::Uring, &[&flags, &flags, &flags]);
    let mut epoch = String::new();
    let mut members: Vec<Client> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let mut m = node.connect(TCP, &format!("member-{i}"), "phone");
            m.send(&join(ROOM));
            epoch = joined(&mut m).epoch;
            m
        })
        .collect();
    for node in &c.nodes {
        wait_room_members(node, ROOM, 3);
    }
    let mut senders = [
        c.nodes[0].connect(WS, "s0", "desk"),
        c.nodes[1].connect(WS, "s1", "desk"),
    ];
    const EACH: usize = 40;
    for i in 0..EACH {
        for (k, s) in senders.iter_mut().enumerate() {
            let id = format!("s{k}-{i}");
            let to = proto::v1::send::To::Room(ROOM.into());
            s.send(&send_frame(to, &id, Qos::AtMostOnce, id.as_bytes()));
        }
    }
    for (k, s) in senders.iter_mut().enumerate() {
        for i in 0..EACH {
            assert!(s.result_for(&format!("s{k}-{i}")).accepted);
        }
    }
    let orders: Vec<Vec<String>> = members
        .iter_mut()
        .map(|m| {
            (1..=2 * EACH as u64)
                .map(|offset| {
                    let d = m.deliver();
                    assert_eq!(d.offset, offset, "{d:?}");
                    String::from_utf8_lossy(&d.payload).into_owned()
                })
                .collect()
        })
        .collect();
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    // A member cut on one node comes back on another and recovers there:
    // the history is the cluster's.
    let mut m0 = members.remove(0);
    m0.send(&leave(ROOM));
    m0.left();
    m0.abort(true);
    let to = proto::v1::send::To::Room(ROOM.into());
    senders[0].send(&send_frame(to, "late", Qos::AtLeastOnce, b"late"));
    assert!(senders[0].result_for("late").accepted);
    for m in &mut members {
        assert_eq!(&m.deliver().payload[..], b"late");
    }
    let mut back = reconnect(&c.nodes[2], "member-0", &epoch, 2 * EACH as u64);
    let j = joined(&mut back);
    assert_eq!((j.offset, j.recovered), (2 * EACH as u64 + 1, true));
    let d = back.deliver();
    assert_eq!(
        (d.offset, &d.payload[..]),
        (2 * EACH as u64 + 1, &b"late"[..])
    );
    // Each sender's own order holds within the one order.
    for k in 0..2 {
        let mine: Vec<&String> = orders[0]
            .iter()
            .filter(|p| p.starts_with(&format!("s{k}-")))
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("s{k}-{i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
}

/// An upgrade moves the in-process history (same epoch, same offsets) and
/// each connection's position: a live member gets the next message once,
/// and one that reconnects recovers as before.
fn an_upgrade_keeps_the_history_and_the_positions(driver: Driver) {
    let reap = Reap::default();
    let gw = start(driver, None, &[]);
    let mut alice = gw.connect(TCP, "alice", "phone");
    alice.send(&join(ROOM));
    let epoch = joined(&mut alice).epoch;
    let mut carol = gw.connect(TCP, "carol", "phone");
    carol.send(&join(ROOM));
    joined(&mut carol);
    let mut bob = gw.connect(WS, "bob", "desk");
    for i in 1..=3 {
        say(&mut bob, i);
        heard(&mut alice, i);
        heard(&mut carol, i);
    }
    carol.abort(true);
    upgrade_node(&gw, &reap);
    say(&mut bob, 4);
    heard(&mut alice, 4);
    alice.ping(1);
    let mut carol = reconnect(&gw, "carol", &epoch, 3);
    let j = joined(&mut carol);
    assert_eq!((j.offset, j.recovered, &j.epoch), (4, true, &epoch));
    heard(&mut carol, 4);
}
