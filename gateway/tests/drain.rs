//! Graceful stop (优雅停止): `POST /drain`, SIGTERM or SIGINT sends every
//! client GoAway(DRAINING) with the configured reconnect hint, stops
//! serving new connections, turns `/healthz` to 503, keeps routing between
//! the clients that stay (on every shard, even one already empty), and
//! exits 0 once the clients have gone, or at the drain deadline (not
//! before it) closing the rest.

mod common;

use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

driver_tests!(
    drain_via_admin,
    drain_via_sigterm,
    drain_via_sigint,
    drain_deadline_closes_stragglers,
    draining_node_refuses_new_clients_and_keeps_routing,
);

/// The gateway's `timer_tick_ms` (default 50): deadlines count from up to
/// one tick before the event.
const TIMER_TICK: Duration = Duration::from_millis(50);

/// Clients on every shard and transport.
fn clients(gw: &Gateway) -> Vec<Client> {
    vec![
        gw.connect_on_shard(WS, "alice", "phone", 0),
        gw.connect_on_shard(TCP, "bob", "laptop", 1),
        gw.connect(WS_JSON, "carol", "web"),
    ]
}

#[track_caller]
fn assert_draining(c: &mut Client) {
    let g = c.go_away();
    assert_eq!(g.reason(), GoAwayReason::Draining, "{g:?}");
}

/// Drains with `trigger`, then the clients leave and the process exits 0.
fn drain_then_clients_leave(driver: Driver, trigger: impl FnOnce(&Gateway)) {
    // A deadline far beyond the test's waits: only the clients leaving can
    // end this drain in time.
    let mut gw = Gateway::start(driver, &["--drain-deadline-ms", "60000"]);
    let mut clients = clients(&gw);
    trigger(&gw);
    for c in &mut clients {
        assert_draining(c);
    }
    let r = gw.get("/healthz");
    assert_eq!(r.status, 503, "healthz while draining: {r:?}");
    // A single node lists itself as draining (the console's state).
    let nodes = gw.get("/nodes").json();
    assert_eq!(nodes["nodes"][0]["draining"], true, "{nodes}");
    let series = gw.get("/series").json();
    assert_eq!(series["draining"], true, "{series}");
    drop(clients);
    let status = gw.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

fn drain_via_admin(driver: Driver) {
    drain_then_clients_leave(driver, |gw| {
        let r = gw.post("/drain", "");
        assert_eq!(r.status, 202, "{r:?}");
    });
}

fn drain_via_sigterm(driver: Driver) {
    drain_then_clients_leave(driver, |gw| gw.signal(libc::SIGTERM));
}

fn drain_via_sigint(driver: Driver) {
    drain_then_clients_leave(driver, |gw| gw.signal(libc::SIGINT));
}

fn drain_deadline_closes_stragglers(driver: Driver) {
    // Long enough for the three GoAways and three ping round trips below
    // on a loaded machine: the clients are served until it passes.
    const DEADLINE: Duration = Duration::from_millis(4000);
    let deadline_ms = DEADLINE.as_millis().to_string();
    let mut gw = Gateway::start(driver, &["--drain-deadline-ms", &deadline_ms]);
    let mut clients = clients(&gw);
    let started = Instant::now();
    let r = gw.post("/drain", "");
    assert_eq!(r.status, 202, "{r:?}");
    // The clients stay, and are served until the deadline; then the gateway
    // closes them (not one before it) and exits.
    for (i, c) in clients.iter_mut().enumerate() {
        assert_draining(c);
        c.ping(i as u64 + 1);
    }
    for c in &mut clients {
        c.expect_closed();
        let took = started.elapsed();
        assert!(
            took + TIMER_TICK >= DEADLINE,
            "closed {took:?} into a drain with a {DEADLINE:?} deadline"
        );
    }
    let status = gw.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status:?}");

    // With no clients at all, a drain ends at once.
    let mut idle = Gateway::start(driver, &["--drain-deadline-ms", "60000"]);
    idle.signal(libc::SIGTERM);
    assert_eq!(idle.wait_exit(IO_TIMEOUT).code(), Some(0));
}

/// While a drain waits for its clients: every client got the configured
/// reconnect hint, new connections are not served on either port, and the
/// shard whose clients have all left keeps routing (it owns some of the
/// users and rooms) for the clients still on the other.
fn draining_node_refuses_new_clients_and_keeps_routing(driver: Driver) {
    let config = std::env::temp_dir().join(format!(
        "gateway-drain-{}-{}.toml",
        std::process::id(),
        driver.name()
    ));
    std::fs::write(&config, "[drain]\nreconnect_after_ms = 2500\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let flags = ["--config", config_arg, "--drain-deadline-ms", "60000"];
    let mut gw = Gateway::start(driver, &flags);
    std::fs::remove_file(&config).unwrap();
    let alice = gw.connect_on_shard(WS, "alice", "phone", 0);
    let bob = gw.connect_on_shard(TCP, "bob", "laptop", 1);
    let mut carol = gw.connect_on_shard(WS_JSON, "carol", "web", 1);
    // Enough rooms that some are owned by shard 0 (by name hash).
    let rooms: Vec<String> = (0..8).map(|i| format!("room-{i}")).collect();
    for room in &rooms {
        carol.join(room);
    }
    let mut clients = [alice, bob, carol];
    let r = gw.post("/drain", "");
    assert_eq!(r.status, 202, "{r:?}");
    for c in &mut clients {
        let g = c.go_away();
        assert_eq!(g.reason(), GoAwayReason::Draining, "{g:?}");
        assert_eq!(g.reconnect_after_ms, 2500, "{g:?}");
    }
    for addr in [gw.ws, gw.tcp] {
        assert_not_served(addr);
    }
    let [alice, mut bob, mut carol] = clients;
    drop(alice);
    gw.wait_metric("gateway_connections{shard=\"0\",transport=\"ws\"}", |v| {
        v == 0.0
    });
    for (i, room) in rooms.iter().enumerate() {
        let id = format!("m{i}");
        bob.send(&to_room(room, &id, room.as_bytes()));
        assert!(bob.result_for(&id).accepted, "{room}");
        let d = carol.deliver();
        assert_eq!(
            (d.room.as_str(), &d.payload[..]),
            (room.as_str(), room.as_bytes())
        );
    }
    bob.send(&to_user("carol", "direct", b"still routed"));
    assert!(bob.result_for("direct").accepted);
    assert_eq!(&carol.deliver().payload[..], b"still routed");
    let r = gw.get("/healthz");
    assert_eq!(r.status, 503, "{r:?}");
    drop((bob, carol));
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
}

/// A connection to `addr` is refused, or closed without a byte.
#[track_caller]
fn assert_not_served(addr: std::net::SocketAddr) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => assert!(got.is_empty(), "{addr} answered while draining: {got:?}"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{addr} kept a connection open while draining: {e}"),
    }
}
