//! Graceful stop (优雅停止): `POST /drain` or SIGTERM sends every client
//! GoAway(DRAINING), turns `/healthz` to 503, and exits 0 once the clients
//! have gone or the drain deadline has passed.

mod common;

use common::*;

driver_tests!(
    drain_via_admin,
    drain_via_sigterm,
    drain_deadline_closes_stragglers
);

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

fn drain_deadline_closes_stragglers(driver: Driver) {
    let mut gw = Gateway::start(driver, &["--drain-deadline-ms", "500"]);
    let mut clients = clients(&gw);
    let r = gw.post("/drain", "");
    assert_eq!(r.status, 202, "{r:?}");
    // The clients stay; at the deadline the gateway closes them and exits.
    for c in &mut clients {
        assert_draining(c);
        c.expect_closed();
    }
    let status = gw.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status:?}");

    // With no clients at all, a drain ends at once.
    let mut idle = Gateway::start(driver, &["--drain-deadline-ms", "60000"]);
    idle.signal(libc::SIGTERM);
    assert_eq!(idle.wait_exit(IO_TIMEOUT).code(), Some(0));
}
