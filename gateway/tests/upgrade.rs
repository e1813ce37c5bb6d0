//! Upgrading the binary in place (`POST /upgrade`, `SIGUSR2`, `gateway
//! upgrade`): the new process takes the listeners, so no connect is refused
//! or reset meanwhile; the old one's clients are told `DRAINING` and come
//! back to the same address; counters go on. And every abort (the binary
//! missing, exiting at start, refusing the handover format, killed in the
//! middle) leaves the old process serving, its clients untouched.

mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

driver_tests!(
    upgrade_hands_over_the_listeners,
    upgrade_by_signal_then_by_cli,
    upgrade_aborts_when_the_binary_is_missing,
    upgrade_aborts_when_the_new_process_exits,
    upgrade_aborts_when_the_format_is_refused,
    upgrade_aborts_when_the_new_process_is_killed_mid_handover,
);

/// Kills the processes an upgrade started (not this test's children) when
/// the test ends, however it ends.
#[derive(Default)]
struct Reap(std::sync::Mutex<Vec<i32>>);

impl Reap {
    fn add(&self, pid: i32) {
        self.0.lock().unwrap().push(pid);
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap().drain(..) {
            // SAFETY: kill(2) on a pid an upgrade of this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// True once `pid` has exited (gone, or a zombie nobody reaps yet).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// Connects and authenticates raw TCP clients without pause until stopped,
/// counting those that got neither `AuthOk` nor a `DRAINING` go-away (a
/// refused, reset or dropped connect).
struct Storm {
    stop: Arc<AtomicBool>,
    tried: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Storm {
    fn start(tcp: std::net::SocketAddr) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let tried = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, t, f) = (stop.clone(), tried.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let token = user_token("storm", "d");
            while !s.load(Ordering::Relaxed) {
                t.fetch_add(1, Ordering::Relaxed);
                let ok = std::net::TcpStream::connect(tcp).is_ok_and(|stream| {
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    let mut c = Client::from_tcp(stream);
                    c.try_send(&auth(&token, ""))
                        && match c.next_event() {
                            Event::Frame(Frame::AuthOk(_)) => true,
                            Event::Frame(Frame::GoAway(g)) => g.reason() == GoAwayReason::Draining,
                            _ => false,
                        }
                });
                if !ok {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Storm {
            stop,
            tried,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops; returns (tried, failed).
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.tried.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[track_caller]
fn assert_draining(c: &mut Client) {
    let g = c.go_away();
    assert_eq!(g.reason(), GoAwayReason::Draining, "{g:?}");
}

fn upgrade_hands_over_the_listeners(driver: Driver) {
    let reap = Reap::default();
    let mut gw = Gateway::start(driver, &["--drain-deadline-ms", "60000"]);
    let mut clients = vec![
        gw.connect_on_shard(WS, "alice", "phone", 0),
        gw.connect_on_shard(TCP, "bob", "laptop", 1),
        gw.connect(WS_JSON, "carol", "web"),
    ];
    for (i, c) in clients.iter_mut().enumerate() {
        c.ping(i as u64);
    }
    let accepted = metric(&gw.metrics(), "gateway_accepted_total").unwrap();
    let storm = Storm::start(gw.tcp);
    // The storm is connecting before, during and after the handover.
    gw.wait_metric("gateway_accepted_total", |n| n >= accepted + 5.0);
    let r = gw.post("/upgrade", "");
    assert_eq!(r.status, 200, "{r:?}");
    let pid = r.json()["pid"].as_i64().unwrap() as i32;
    reap.add(pid);
    assert_ne!(pid, gw.pid());
    for c in &mut clients {
        assert_draining(c);
    }
    drop(clients);
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
    // The new process has been accepting the storm since the commit.
    let after = metric(&gw.metrics(), "gateway_accepted_total").unwrap();
    wait_for("the new process accepts the storm", || {
        metric(&gw.metrics(), "gateway_accepted_total").unwrap() >= after + 5.0
    });
    let (tried, failed) = storm.stop();
    assert_eq!(
        failed, 0,
        "{failed} of {tried} connects failed across the upgrade"
    );
    // The old process is gone: the listeners are the new one's.
    let mut c = gw.connect(WS, "alice", "phone");
    c.ping(7);
    let m = gw.metrics();
    assert_eq!(metric(&m, "gateway_upgrades_total"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "gateway_upgrades_aborted_total"), Some(0.0));
    // Counters went on from the old process's totals.
    assert!(
        metric(&m, "gateway_accepted_total").unwrap() >= after,
        "{m}"
    );
    assert!(!exited(pid));
}

/// `SIGUSR2`, then `gateway upgrade` against the process it started.
fn upgrade_by_signal_then_by_cli(driver: Driver) {
    let reap = Reap::default();
    let mut gw = Gateway::start(driver, &[]);
    let mut c = gw.connect(TCP, "bob", "laptop");
    gw.signal(libc::SIGUSR2);
    assert_draining(&mut c);
    drop(c);
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
    let mut c = gw.connect(TCP, "bob", "laptop");
    c.ping(1);
    let admin = gw.admin.to_string();
    let out = run_cli(&["upgrade", "--admin-listen", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let pid = answer["pid"].as_i64().unwrap() as i32;
    reap.add(pid);
    assert_draining(&mut c);
    drop(c);
    let mut c = gw.connect(WS, "bob", "phone");
    c.ping(2);
    let m = gw.metrics();
    assert_eq!(metric(&m, "gateway_upgrades_total"), Some(2.0), "{m}");
    assert!(!exited(pid));
}

/// A script in a fresh folder, to stand in for the new binary.
fn script(name: &str, body: &str) -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gateway-upgrade-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "#!/bin/sh\n{body}").unwrap();
    drop(f);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
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
    // Served as before: the next frame is the pong (no go-away).
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
        &["refused", "format 1 is not one this binary reads"],
    );
}

fn upgrade_aborts_when_the_new_process_is_killed_mid_handover(driver: Driver) {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let path = script(
        "holds",
        &format!(
            "echo $$ > \"$(dirname \"$0\")/pid\"\nGATEWAY_TEST_UPGRADE_HOLD_MS=60000 exec {bin} \"$@\""
        ),
    );
    let pid_file = path.with_file_name("pid");
    let reap = Arc::new(Reap::default());
    let killer = {
        let (reap, pid_file) = (reap.clone(), pid_file.clone());
        move |gw: &Gateway| {
            // The new process holds the listeners (not accepting yet).
            gw.wait_log("upgrade: took the listeners", 1);
            let pid: i32 = std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            reap.add(pid);
            // SAFETY: kill(2) on the process the upgrade started.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        }
    };
    let gw = Arc::new(Gateway::start(
        driver,
        &["--upgrade-binary", path.to_str().unwrap()],
    ));
    let kill = {
        let gw = gw.clone();
        std::thread::spawn(move || killer(&gw))
    };
    let mut c = gw.connect(WS, "alice", "phone");
    let storm = Storm::start(gw.tcp);
    let r = gw.post("/upgrade", "");
    kill.join().unwrap();
    assert_eq!(r.status, 500, "{r:?}");
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("signal: 9"), "{error:?}");
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
}
