//! Every abort of an upgrade (the binary missing, exiting at start,
//! refusing the handover format, killed while it holds the listeners or
//! the connections) leaves the old process serving, its clients untouched
//! and new ones accepted.

mod common;

use common::*;
use std::sync::Arc;

driver_tests!(
    upgrade_aborts_when_the_binary_is_missing,
    upgrade_aborts_when_the_new_process_exits,
    upgrade_aborts_when_the_format_is_refused,
    upgrade_aborts_when_the_new_process_is_killed_mid_handover,
    upgrade_aborts_when_the_new_process_is_killed_holding_the_connections,
);

/// After an abort: `c` is served as before (the next frame is the pong, no
/// go-away), a new client is served, no connect of the storm failed, and
/// the abort is counted (and no upgrade).
fn still_serving(gw: &Gateway, c: &mut Client, storm: Storm) {
    c.ping(1);
    let mut again = gw.connect(TCP, "bob", "laptop");
    again.ping(2);
    let (tried, failed) = storm.stop();
    assert_eq!(failed, 0, "{failed} of {tried} connects failed");
    let m = gw.metrics();
    assert_eq!(
        metric(&m, "gateway_upgrades_aborted_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "gateway_upgrades_total"), Some(0.0));
}

/// Starts a node whose upgrade runs `binary`; asserts the upgrade fails
/// with `why` in its answer while a client stays served and new ones come.
fn assert_aborts(driver: Driver, binary: &str, why: &[&str]) {
    let gw = Gateway::start(driver, &["--upgrade-binary", binary]);
    let mut c = gw.connect(WS, "alice", "phone");
    let storm = Storm::start(gw.tcp);
    let r = gw.post("/upgrade", "");
    assert_eq!(r.status, 500, "{r:?}");
    let error = r.json()["error"].as_str().unwrap().to_owned();
    for w in why {
        assert!(error.contains(w), "{w:?} not in {error:?}");
    }
    still_serving(&gw, &mut c, storm);
    assert_eq!(
        gw.stderr()
            .matches("upgrade aborted, this process serves on")
            .count(),
        1
    );
}

fn upgrade_aborts_when_the_binary_is_missing(driver: Driver) {
    assert_aborts(
        driver,
        "/nonexistent/gateway",
        &["cannot start", "/nonexistent"],
    );
}

fn upgrade_aborts_when_the_new_process_exits(driver: Driver) {
    let path = script("exits", "exit 3");
    assert_aborts(driver, path.to_str().unwrap(), &["exit status: 3"]);
}

fn upgrade_aborts_when_the_format_is_refused(driver: Driver) {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let path = script(
        "refuses",
        &format!("GATEWAY_TEST_UPGRADE_FORMATS=99 exec {bin} \"$@\""),
    );
    assert_aborts(
        driver,
        path.to_str().unwrap(),
        &["refused", "format 3 is not one this binary reads"],
    );
}

/// A node whose upgrade starts the real binary with `hold` (a test hook,
/// see `control::upgrade`) set, and a thread that kills that new process
/// with SIGKILL once the node's log shows `when`.
fn node_killing_its_upgrade(
    driver: Driver,
    hold: &str,
    when: &'static str,
) -> (Arc<Gateway>, std::thread::JoinHandle<()>, Arc<Reap>) {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let path = script(
        "holds",
        &format!("echo $$ > \"$(dirname \"$0\")/pid\"\n{hold}=60000 exec {bin} \"$@\""),
    );
    let pid_file = path.with_file_name("pid");
    let reap = Arc::new(Reap::default());
    let gw = Arc::new(Gateway::start(
        driver,
        &["--upgrade-binary", path.to_str().unwrap()],
    ));
    let kill = {
        let (gw, reap) = (gw.clone(), reap.clone());
        std::thread::spawn(move || {
            gw.wait_log(when, 1);
            let pid: i32 = std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            reap.add(pid);
            // SAFETY: kill(2) on the process the upgrade started.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        })
    };
    (gw, kill, reap)
}

/// Killed while it holds the listeners, before it is ready.
fn upgrade_aborts_when_the_new_process_is_killed_mid_handover(driver: Driver) {
    let (gw, kill, _reap) = node_killing_its_upgrade(
        driver,
        "GATEWAY_TEST_UPGRADE_HOLD_MS",
        "upgrade: took the listeners",
    );
    let mut c = gw.connect(WS, "alice", "phone");
    let storm = Storm::start(gw.tcp);
    let r = gw.post("/upgrade", "");
    kill.join().unwrap();
    assert_eq!(r.status, 500, "{r:?}");
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("signal: 9"), "{error:?}");
    still_serving(&gw, &mut c, storm);
}

/// Killed after it took the connections over and before the commit: the old
/// process never forgot them and serves them on, state and all.
fn upgrade_aborts_when_the_new_process_is_killed_holding_the_connections(driver: Driver) {
    let (gw, kill, _reap) = node_killing_its_upgrade(
        driver,
        "GATEWAY_TEST_UPGRADE_HOLD_TAKEN_MS",
        "upgrade: took the connections over",
    );
    let mut alice = gw.connect(WS, "alice", "phone");
    let mut bob = gw.connect(TCP, "bob", "laptop");
    alice.join("lobby");
    push(&gw, r#""user": "alice""#, "q1", 1);
    assert_eq!(alice.deliver().seq, 1);
    let r = gw.post("/upgrade", "");
    kill.join().unwrap();
    assert_eq!(r.status, 500, "{r:?}");
    // Frozen during the handover, served again after it.
    alice.ping(1);
    bob.ping(2);
    push(&gw, r#""room": "lobby""#, "after", 0);
    assert_eq!(alice.deliver().room, "lobby");
    push(&gw, r#""user": "alice""#, "q2", 1);
    assert_eq!(alice.deliver().seq, 2);
    let m = gw.metrics();
    assert_eq!(
        metric(&m, "gateway_upgrades_aborted_total"),
        Some(1.0),
        "{m}"
    );
}
