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
    upgrade_moves_every_connection_twice_in_a_row,
    upgrade_by_signal_then_by_cli,
    upgrade_aborts_when_the_binary_is_missing,
    upgrade_aborts_when_the_new_process_exits,
    upgrade_aborts_when_the_format_is_refused,
    upgrade_aborts_when_the_new_process_is_killed_mid_handover,
    upgrade_aborts_when_the_new_process_is_killed_holding_the_connections,
    upgrade_drains_tls_connections,
);

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

/// Pushes through the admin API (`target` is `"user": ..` or `"room": ..`).
fn push(gw: &Gateway, target: &str, text: &str, qos: u8) {
    let r = gw.post(
        "/push",
        &format!(r#"{{{target}, "text": "{text}", "qos": {qos}}}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

/// Connections of every kind, in rooms, one holding a partial frame and one
/// an unacknowledged QoS 1 message, live through two upgrades in a row
/// under a connect storm: none is closed, every ping is answered, the QoS 1
/// inbox and the rooms go on, and the old processes exit.
fn upgrade_moves_every_connection_twice_in_a_row(driver: Driver) {
    let reap = Reap::default();
    let mut gw = Gateway::start(driver, &[]);
    let mut alice = gw.connect_on_shard(WS, "alice", "phone", 0);
    let mut bob = gw.connect_on_shard(TCP, "bob", "laptop", 1);
    let mut carol = gw.connect(WS_JSON, "carol", "web");
    alice.join("lobby");
    bob.join("lobby");
    push(&gw, r#""user": "alice""#, "q1", 1);
    assert_eq!(
        alice.deliver().seq,
        1,
        "held unacknowledged across the upgrade"
    );
    let accepted = metric(&gw.metrics(), "gateway_accepted_total").unwrap();
    let storm = Storm::start(gw.tcp);
    gw.wait_metric("gateway_accepted_total", |n| n >= accepted + 5.0);
    let mut old = gw.pid();
    for round in 1..=2u64 {
        // Half a ping from bob: the rest comes after the upgrade.
        let ping_bytes = length_prefixed(&prost::Message::encode_to_vec(&ping(100 + round)));
        bob.send_raw_tcp(&ping_bytes[..3]);
        let pid = upgrade_node(&gw, &reap);
        assert_ne!(pid, old);
        if round == 1 {
            assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
        } else {
            wait_for("the previous process exits", || exited(old));
        }
        old = pid;
        bob.send_raw_tcp(&ping_bytes[3..]);
        assert_eq!(bob.pong().nonce, 100 + round);
        for (i, c) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
            c.ping(round * 10 + i as u64);
        }
        // The rooms moved with their members.
        push(&gw, r#""room": "lobby""#, &format!("room{round}"), 0);
        for c in [&mut alice, &mut bob] {
            assert_eq!(c.deliver().room, "lobby");
        }
        // The inbox moved: the next QoS 1 message follows the last one.
        push(&gw, r#""user": "alice""#, &format!("q{}", round + 1), 1);
        assert_eq!(alice.deliver().seq, round + 1);
    }
    alice.send(&ack(3));
    alice.ping(99);
    // The storm is accepted by the newest process.
    let after = metric(&gw.metrics(), "gateway_accepted_total").unwrap();
    wait_for("the new process accepts the storm", || {
        metric(&gw.metrics(), "gateway_accepted_total").unwrap() >= after + 5.0
    });
    let (tried, failed) = storm.stop();
    assert_eq!(
        failed, 0,
        "{failed} of {tried} connects failed across the upgrades"
    );
    let m = gw.metrics();
    assert_eq!(metric(&m, "gateway_upgrades_total"), Some(2.0), "{m}");
    assert_eq!(metric(&m, "gateway_upgrades_aborted_total"), Some(0.0));
    // Counters went on from the old processes' totals.
    assert!(
        metric(&m, "gateway_accepted_total").unwrap() >= after,
        "{m}"
    );
    assert!(!exited(old));
}

/// `SIGUSR2`, then `gateway upgrade` against the process it started; the
/// client stays connected through both.
fn upgrade_by_signal_then_by_cli(driver: Driver) {
    let reap = Reap::default();
    let mut gw = Gateway::start(driver, &[]);
    let mut c = gw.connect(TCP, "bob", "laptop");
    gw.signal(libc::SIGUSR2);
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
    c.ping(1);
    let admin = gw.admin.to_string();
    let out = run_cli(&["upgrade", "--admin-listen", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    reap.add(answer["pid"].as_i64().unwrap() as i32);
    assert_eq!(answer["connections"], 1, "{answer}");
    c.ping(2);
    let m = gw.metrics();
    assert_eq!(metric(&m, "gateway_upgrades_total"), Some(2.0), "{m}");
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

/// TLS connections do not move (see the README): they are told DRAINING and
/// reconnect to the new process, which has the certificate too.
fn upgrade_drains_tls_connections(driver: Driver) {
    use proto::codec::Encoding;
    use proto::v1::server_frame::Frame as F;
    use std::io::Read;
    let reap = Reap::default();
    let (mut gw, cert) = tls_gateway(driver, "upgrade", &[]);
    let read = |s: &mut Tls| {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
        proto::codec::decode_server(Encoding::Proto, &body)
            .unwrap()
            .frame
    };
    let hello = |s: &mut Tls| {
        let f = auth(&user_token("tls", "d"), "");
        s.write_all(&length_prefixed(&encode_client(&f, Encoding::Proto)))
            .unwrap();
        assert!(matches!(read(s), Some(F::AuthOk(_))));
    };
    let mut s = connect_tls(gw.tcp, &cert);
    hello(&mut s);
    let r = gw.post("/upgrade", "");
    assert_eq!(r.status, 200, "{r:?}");
    reap.add(r.json()["pid"].as_i64().unwrap() as i32);
    assert_eq!(r.json()["connections"], 0, "{r:?}");
    assert_eq!(r.json()["draining"], 1, "{r:?}");
    // Told to come back after the hint plus a random share of
    // drain.upgrade_spread_ms (1 s and 10 s by default).
    match read(&mut s) {
        Some(F::GoAway(g)) => {
            assert_eq!(g.reason(), GoAwayReason::Draining, "{g:?}");
            assert!((1_000..=11_000).contains(&g.reconnect_after_ms), "{g:?}");
        }
        other => panic!("expected a go-away, got {other:?}"),
    }
    drop(s);
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
    let mut again = connect_tls(gw.tcp, &cert);
    hello(&mut again);
}
