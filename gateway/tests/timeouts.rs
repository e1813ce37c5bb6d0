//! Deadlines the gateway enforces on live connections: token expiry, the
//! handshake (upgrade and Auth) deadline and the heartbeat deadline; and a
//! client's close noticed at once, not at a deadline.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

driver_tests!(
    token_expiry,
    handshake_timeout,
    heartbeat_timeout,
    close_right_after_the_last_frame,
);

fn token_expiry(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let t = token("alice", Some("phone"), Duration::from_secs(2));
    let bearer = format!("Bearer {t}");
    let (ws, _) = upgrade(gw.ws, "/ws", &[("authorization", &bearer)]).expect("upgrade");
    let mut tcp = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    tcp.send(&auth(&t, ""));
    let mut long_lived = gw.connect(WS, "bob", "phone");
    for mut c in [Client::from_ws(ws, Encoding::Proto), tcp] {
        let a = c.auth_ok();
        gw.check_auth(&a, "alice", "phone");
        // Reads time out after IO_TIMEOUT: the GoAway must come before.
        let g = c.go_away();
        assert_eq!(g.reason(), GoAwayReason::TokenExpired, "{g:?}");
        assert!(now_secs() >= a.expires_at, "GoAway before expiry: {a:?}");
        c.expect_closed();
    }
    long_lived.ping(1);
}

/// A connection that never completes its handshake is closed at the
/// deadline; if anything is said first, it is Error(AUTH_TIMEOUT).
#[track_caller]
fn assert_timed_out(c: &mut Client) {
    match c.next_event() {
        Event::Frame(Frame::Error(e)) => {
            assert_error(&e, ErrorCode::AuthTimeout, true);
            c.expect_closed();
        }
        Event::Frame(f) => panic!("unexpected frame before the auth deadline: {f:?}"),
        Event::Closed(_) => {}
    }
}

fn handshake_timeout(driver: Driver) {
    let gw = Gateway::start(driver, &["--handshake-timeout-ms", "300"]);
    let started = Instant::now();
    // Upgraded, but Auth never comes; and a bare TCP connection.
    let (ws, _) = upgrade(gw.ws, "/ws", &[]).expect("upgrade");
    assert_timed_out(&mut Client::from_ws(ws, Encoding::Proto));
    assert_timed_out(&mut Client::from_tcp(TcpStream::connect(gw.tcp).unwrap()));
    // A connection to the ws port that never sends its upgrade request.
    let mut idle = TcpStream::connect(gw.ws).unwrap();
    idle.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut sink = Vec::new();
    match idle.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("a stalled upgrade was not closed: {e}"),
    }
    assert!(
        started.elapsed() < IO_TIMEOUT,
        "deadlines of 300 ms took {:?}",
        started.elapsed()
    );
    gw.assert_shards_serve();
}

fn heartbeat_timeout(driver: Driver) {
    // The timeout must exceed the interval told to clients, which only the
    // config file sets.
    let config = std::env::temp_dir().join(format!(
        "gateway-heartbeat-{}-{}.toml",
        std::process::id(),
        driver.name()
    ));
    std::fs::write(&config, "[limits]\nheartbeat_interval_ms = 200\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let gw = Gateway::start(
        driver,
        &["--config", config_arg, "--heartbeat-timeout-ms", "500"],
    );
    std::fs::remove_file(&config).unwrap();
    for t in [WS, TCP] {
        let mut c = gw.connect(t, "idle", "phone");
        assert_eq!(c.auth.heartbeat_ms, 200, "{:?}", c.auth);
        let g = c.go_away();
        assert_eq!(g.reason(), GoAwayReason::HeartbeatTimeout, "{g:?}");
        c.expect_closed();
    }
}

/// Frames and the FIN written at once usually reach the gateway as one
/// readiness edge: it must still see the FIN (answer, close, forget the
/// connection), not wait for the heartbeat deadline (60 s by default).
fn close_right_after_the_last_frame(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    for i in 0..20u64 {
        let mut bytes = Vec::new();
        let token = user_token("bob", &format!("d{i}"));
        for f in [auth(&token, ""), ping(i), ping(i + 100)] {
            bytes.extend(length_prefixed(&encode_client(&f, Encoding::Proto)));
        }
        let mut s = TcpStream::connect(gw.tcp).expect("connect tcp");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(&bytes).expect("write frames");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let mut answer = Vec::new();
        // EOF within IO_TIMEOUT, or the read times out and this fails.
        s.read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("connection {i}: no close from the gateway: {e}"));
        assert!(!answer.is_empty(), "connection {i}: no AuthOk or Pong");
    }
    gw.wait_metric("gateway_connections", |v| v == 0.0);
}
