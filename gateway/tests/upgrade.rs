//! Upgrading the binary in place (`POST /upgrade`, `SIGUSR2`, `gateway
//! upgrade`): the new process takes the listeners, so no connect is refused
//! or reset meanwhile, and every plain and TLS 1.3 connection with its
//! state, so none is closed (TLS 1.2 ones are told `DRAINING` and come back
//! to the same address);
//! the in-process store and the counters go on. The aborts are in
//! `upgrade_abort.rs`.

mod common;

use common::*;
use std::io::Write;
use std::sync::Arc;

driver_tests!(
    upgrade_moves_every_connection_twice_in_a_row,
    upgrade_by_signal_then_by_cli,
    upgrade_moves_tls13_connections_and_drains_tls12,
    upgrade_keeps_the_inbox_of_a_user_offline,
    upgrade_drops_a_descriptor_sent_ahead_whose_connection_ended,
    upgrade_drops_it_too_for_a_binary_that_names_what_it_keeps,
    upgrade_carries_what_changed_after_the_sessions_went_ahead,
    upgrade_carries_it_too_for_a_binary_that_names_what_it_keeps,
);

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
    // The plain connections' descriptors went ahead of the freeze.
    assert!(
        gw.stderr().contains("descriptors sent ahead"),
        "{}",
        gw.stderr()
    );
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

/// TLS 1.3 connections move with their record state, through two
/// upgrades, unnoticed by the client; a TLS 1.2 one is told DRAINING and
/// reconnects to the new process, which has the certificate too. A client
/// that updates its keys after a move is closed cleanly (close_notify: the
/// key schedule did not move) and comes back.
fn upgrade_moves_tls13_connections_and_drains_tls12(driver: Driver) {
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
    let send = |s: &mut Tls, f: &proto::v1::ClientFrame| {
        s.write_all(&length_prefixed(&encode_client(f, Encoding::Proto)))
            .unwrap();
    };
    let hello = |s: &mut Tls, user: &str| {
        send(s, &auth(&user_token(user, "d"), ""));
        assert!(matches!(read(s), Some(F::AuthOk(_))));
    };
    let pong = |s: &mut Tls, nonce: u64| {
        send(s, &ping(nonce));
        match read(s) {
            Some(F::Pong(p)) => assert_eq!(p.nonce, nonce),
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    let mut v13 = connect_tls_version(gw.tcp, &cert, Some(&rustls::version::TLS13));
    hello(&mut v13, "tls13");
    let mut v12 = connect_tls_version(gw.tcp, &cert, Some(&rustls::version::TLS12));
    hello(&mut v12, "tls12");
    // A message larger than a record, before the upgrade.
    let big = "x".repeat(40_000);
    push(&gw, r#""user": "tls13""#, &big, 0);
    match read(&mut v13) {
        Some(F::Deliver(d)) => assert_eq!(d.payload.len(), big.len()),
        other => panic!("expected a deliver, got {other:?}"),
    }
    let mut v12 = Some(v12);
    for round in 1..=2 {
        let r = gw.post("/upgrade", "");
        assert_eq!(r.status, 200, "{r:?}");
        reap.add(r.json()["pid"].as_i64().unwrap() as i32);
        assert_eq!(r.json()["connections"], 1, "round {round}: {r:?}");
        if let Some(mut s) = v12.take() {
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
        }
        assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
        // The same TLS session, now served by the new process.
        pong(&mut v13, round);
        push(&gw, r#""user": "tls13""#, &big, 0);
        match read(&mut v13) {
            Some(F::Deliver(d)) => assert_eq!(d.payload.len(), big.len()),
            other => panic!("expected a deliver, got {other:?}"),
        }
    }
    let mut again = connect_tls_version(gw.tcp, &cert, Some(&rustls::version::TLS12));
    hello(&mut again, "tls12");
    // New keys from the client: the moved connection cannot follow them.
    v13.conn.refresh_traffic_keys().unwrap();
    let _ = v13.write_all(&length_prefixed(&encode_client(&ping(9), Encoding::Proto)));
    let mut rest = Vec::new();
    let end = v13.read_to_end(&mut rest);
    assert!(end.is_ok(), "closed with a close_notify: {end:?}");
    let mut back = connect_tls(gw.tcp, &cert);
    hello(&mut back, "tls13");
    pong(&mut back, 10);
}

/// The in-process store moves whole: QoS 1 messages for a user who is not
/// connected during the upgrade wait in the new process, in order, and the
/// sequence goes on.
fn upgrade_keeps_the_inbox_of_a_user_offline(driver: Driver) {
    let reap = Reap::default();
    let mut gw = Gateway::start(driver, &[]);
    for text in ["one", "two"] {
        push(&gw, r#""user": "zoe""#, text, 1);
    }
    upgrade_node(&gw, &reap);
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
    push(&gw, r#""user": "zoe""#, "three", 1);
    let mut zoe = gw.connect(TCP, "zoe", "phone");
    for (seq, text) in [(1, "one"), (2, "two"), (3, "three")] {
        let d = zoe.deliver();
        assert_eq!((d.seq, &d.payload[..]), (seq, text.as_bytes()), "{d:?}");
    }
}

/// A connection that ends in the old process after its descriptor went
/// ahead (kicked while the new process holds its copy) does not live on in
/// the new one: the client sees the end, and the others are served.
fn upgrade_drops_a_descriptor_sent_ahead_whose_connection_ended(driver: Driver) {
    drops_a_descriptor_sent_ahead(driver, Keeps::Unnamed);
}

/// The same with a new binary that keeps only the sessions named at the
/// freeze (one before `Accept { unlisted }`): carol is in no list.
fn upgrade_drops_it_too_for_a_binary_that_names_what_it_keeps(driver: Driver) {
    drops_a_descriptor_sent_ahead(driver, Keeps::Named);
}

fn drops_a_descriptor_sent_ahead(driver: Driver, keeps: Keeps) {
    let (gw, reap) = start_holding_ahead(driver, keeps);
    let mut alice = gw.connect(WS, "alice", "phone");
    let mut carol = gw.connect(TCP, "carol", "laptop");
    let upgrade = upgrade_in_background(&gw, &reap);
    // The new process holds carol's descriptor; the old one still serves.
    gw.wait_log("upgrade: took the descriptors sent ahead", 1);
    let r = gw.post("/kick/carol", "");
    assert_eq!(r.json(), serde_json::json!({"kicked": 1}), "{r:?}");
    assert_eq!(carol.go_away().reason(), GoAwayReason::Kicked);
    carol.expect_closed();
    upgrade.join().unwrap();
    alice.ping(1);
    gw.wait_metric("gateway_connections", |v| v == 1.0);
    let r = gw.get("/presence/carol");
    assert_eq!(r.json()["online"], false, "{r:?}");
}

/// Sessions go ahead with their descriptors; what changes after that (a
/// room joined and one left, a QoS 1 message held unacknowledged, half a
/// ping) goes again at the freeze, and a session that did not change is
/// kept as it came: each is served as the old process left it.
fn upgrade_carries_what_changed_after_the_sessions_went_ahead(driver: Driver) {
    carries_what_changed(driver, Keeps::Unnamed);
}

/// The same with a new binary that keeps only the sessions named at the
/// freeze: dave's is named there.
fn upgrade_carries_it_too_for_a_binary_that_names_what_it_keeps(driver: Driver) {
    carries_what_changed(driver, Keeps::Named);
}

fn carries_what_changed(driver: Driver, keeps: Keeps) {
    let (gw, reap) = start_holding_ahead(driver, keeps);
    let mut alice = gw.connect(WS, "alice", "phone");
    let mut bob = gw.connect(TCP, "bob", "laptop");
    let mut dave = gw.connect(WS_JSON, "dave", "web");
    alice.join("stay");
    alice.join("go");
    bob.join("stay");
    let upgrade = upgrade_in_background(&gw, &reap);
    // The new process holds their sessions; the old one still serves.
    gw.wait_log("upgrade: took the descriptors sent ahead", 1);
    alice.join("new");
    alice.send(&leave("go"));
    assert_eq!(alice.left().room, "go");
    push(&gw, r#""user": "bob""#, "held", 1);
    assert_eq!(bob.deliver().seq, 1);
    let ping_bytes = length_prefixed(&prost::Message::encode_to_vec(&ping(7)));
    bob.send_raw_tcp(&ping_bytes[..3]);
    upgrade.join().unwrap();
    bob.send_raw_tcp(&ping_bytes[3..]);
    assert_eq!(bob.pong().nonce, 7);
    dave.ping(1);
    alice.ping(2);
    wait_room_members(&gw, "stay", 2);
    wait_room_members(&gw, "new", 1);
    wait_room_members(&gw, "go", 0);
    push(&gw, r#""room": "new""#, "fresh", 0);
    assert_eq!(alice.deliver().room, "new");
    // bob's unacknowledged message moved with the rest of his state.
    bob.send(&ack(1));
    push(&gw, r#""user": "bob""#, "next", 1);
    assert_eq!(bob.deliver().seq, 2);
    let m = gw.metrics();
    assert_eq!(metric(&m, "gateway_connections"), Some(3.0), "{m}");
    for user in ["alice", "bob", "dave"] {
        let r = gw.get(&format!("/presence/{user}"));
        assert_eq!(r.json()["online"], true, "{user}: {r:?}");
    }
    assert!(
        gw.stderr().contains("upgrade: took the connections over"),
        "{}",
        gw.stderr()
    );
}

/// What the new binary keeps of the sessions that came ahead: each one
/// the old process does not name as changed or gone (this binary), or
/// only those named as kept (`GATEWAY_TEST_UPGRADE_LISTED`, as an older
/// binary).
#[derive(Clone, Copy)]
enum Keeps {
    Unnamed,
    Named,
}

/// A node whose upgrades start a new binary that holds on for a second
/// once it has taken what was sent ahead (the old process still serving).
fn start_holding_ahead(driver: Driver, keeps: Keeps) -> (Arc<Gateway>, Arc<Reap>) {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let listed = match keeps {
        Keeps::Unnamed => "",
        Keeps::Named => "GATEWAY_TEST_UPGRADE_LISTED=1 ",
    };
    let path = script(
        "holds-ahead",
        &format!("{listed}GATEWAY_TEST_UPGRADE_HOLD_AHEAD_MS=1000 exec {bin} \"$@\""),
    );
    let gw = Gateway::start(driver, &["--upgrade-binary", path.to_str().unwrap()]);
    (Arc::new(gw), Arc::new(Reap::default()))
}

/// Upgrades `gw` on a thread of its own; join it for the new pid.
fn upgrade_in_background(gw: &Arc<Gateway>, reap: &Arc<Reap>) -> std::thread::JoinHandle<i32> {
    let (gw, reap) = (gw.clone(), reap.clone());
    std::thread::spawn(move || upgrade_node(&gw, &reap))
}
