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
    heartbeat_deadline_moves_with_traffic,
);

fn token_expiry(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    // Long enough to upgrade and authenticate under load (the claim is in
    // whole seconds, so it lives 5 to 6 s); reads time out after
    // IO_TIMEOUT, so the GoAway must come before that.
    let t = token("alice", Some("phone"), Duration::from_secs(6));
    let bearer = format!("Bearer {t}");
    let (ws, _) = upgrade(gw.ws, "/ws", &[("authorization", &bearer)]).expect("upgrade");
    let mut tcp = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    tcp.send(&auth(&t, ""));
    let mut long_lived = gw.connect(WS, "bob", "phone");
    for mut c in [Client::from_ws(ws, Encoding::Proto), tcp] {
        let a = c.auth_ok();
        gw.check_auth(&a, "alice", "phone");
        let g = c.go_away();
        assert_eq!(g.reason(), GoAwayReason::TokenExpired, "{g:?}");
        assert!(now_secs() >= a.expires_at, "GoAway before expiry: {a:?}");
        c.expect_closed();
    }
    long_lived.ping(1);
}

/// The `--handshake-timeout-ms` of `handshake_timeout`: generous, so that
/// an upgrade under load still fits in it.
const HANDSHAKE_MS: u64 = 3000;

/// The gateway's `timer_tick_ms` (default 50): its clock is read once a
/// tick, so a deadline counts from up to one tick before the event.
const TIMER_TICK: Duration = Duration::from_millis(50);

/// A connection that never completes its handshake gets Error(AUTH_TIMEOUT)
/// and is closed; not before the deadline (counted from before connect, so
/// never later than the gateway's own start of it, but for its tick), nor
/// long after it.
#[track_caller]
fn assert_timed_out(c: &mut Client, connected: Instant) {
    assert_error(&c.error(), ErrorCode::AuthTimeout, true);
    assert_in_deadline(connected.elapsed());
    c.expect_closed();
}

#[track_caller]
fn assert_in_deadline(took: Duration) {
    let deadline = Duration::from_millis(HANDSHAKE_MS);
    assert!(
        took + TIMER_TICK >= deadline && took < deadline + IO_TIMEOUT / 2,
        "a {deadline:?} handshake deadline ended after {took:?}"
    );
}

fn handshake_timeout(driver: Driver) {
    let gw = Gateway::start(
        driver,
        &["--handshake-timeout-ms", &HANDSHAKE_MS.to_string()],
    );
    // All three at once: upgraded but Auth never comes; a bare TCP
    // connection; a connection to the ws port that never sends its upgrade
    // request.
    let started = Instant::now();
    let (ws, _) = upgrade(gw.ws, "/ws", &[]).expect("upgrade");
    let mut ws = Client::from_ws(ws, Encoding::Proto);
    let tcp_started = Instant::now();
    let mut tcp = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    let idle_started = Instant::now();
    let mut idle = TcpStream::connect(gw.ws).unwrap();
    idle.set_read_timeout(Some(IO_TIMEOUT)).unwrap();

    assert_timed_out(&mut ws, started);
    assert_timed_out(&mut tcp, tcp_started);
    let mut answer = Vec::new();
    idle.read_to_end(&mut answer)
        .unwrap_or_else(|e| panic!("a stalled upgrade was not closed: {e}"));
    assert_in_deadline(idle_started.elapsed());
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 ")
            && answer.ends_with("\r\n\r\nno upgrade request in time\n"),
        "a stalled upgrade's answer: {answer:?}"
    );
    gw.wait_metric("gateway_errors_total{code=\"AUTH_TIMEOUT\"}", |v| v >= 2.0);
    gw.assert_shards_serve();
}

/// Without traffic the gateway closes at the heartbeat deadline; every
/// frame from the client moves that deadline.
fn heartbeat_deadline_moves_with_traffic(driver: Driver) {
    // Long against a ping's round trip and the pause after it, so that a
    // loaded machine's delays do not add up to a deadline between frames.
    const TIMEOUT_MS: u64 = 3000;
    let gw = heartbeat_gateway(driver, TIMEOUT_MS);
    let mut c = gw.connect(TCP, "busy", "phone");
    let started = Instant::now();
    let mut nonce = 0;
    // Two deadlines long, a ping every tenth of one: never a GoAway.
    while started.elapsed() < Duration::from_millis(2 * TIMEOUT_MS) {
        nonce += 1;
        c.ping(nonce);
        // Pacing the client's own traffic (nothing is awaited here).
        std::thread::sleep(Duration::from_millis(TIMEOUT_MS / 10));
    }
    // Then silence: the GoAway comes, no sooner than a deadline after the
    // last frame (timed from before it was sent).
    let last = Instant::now();
    c.send(&ping(0));
    assert_eq!(c.pong().nonce, 0);
    let g = c.go_away();
    assert_eq!(g.reason(), GoAwayReason::HeartbeatTimeout, "{g:?}");
    let idle = last.elapsed();
    assert!(
        idle + TIMER_TICK >= Duration::from_millis(TIMEOUT_MS),
        "closed {idle:?} after the last frame, deadline {TIMEOUT_MS} ms, tick {TIMER_TICK:?}"
    );
    c.expect_closed();
}

/// A gateway that tells clients a 200 ms heartbeat interval and closes after
/// `timeout_ms` without a frame (the interval only the config file sets).
fn heartbeat_gateway(driver: Driver, timeout_ms: u64) -> Gateway {
    let config = std::env::temp_dir().join(format!(
        "gateway-heartbeat-{}-{}-{timeout_ms}.toml",
        std::process::id(),
        driver.name()
    ));
    std::fs::write(&config, "[limits]\nheartbeat_interval_ms = 200\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let timeout = timeout_ms.to_string();
    let gw = Gateway::start(
        driver,
        &["--config", config_arg, "--heartbeat-timeout-ms", &timeout],
    );
    std::fs::remove_file(&config).unwrap();
    gw
}

fn heartbeat_timeout(driver: Driver) {
    let gw = heartbeat_gateway(driver, 500);
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
        let frames = decode_all(&answer);
        assert!(
            matches!(&frames[..], [Frame::AuthOk(_), Frame::Pong(a), Frame::Pong(b)]
                if (a.nonce, b.nonce) == (i, i + 100)),
            "connection {i}: {frames:?}"
        );
    }
    gw.wait_metric("gateway_connections", |v| v == 0.0);
}

/// Every length-prefixed server frame in `bytes`, which must end on a frame
/// boundary.
fn decode_all(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let Ok(Some((n, payload))) = proto::frame::decode(bytes, 1 << 20) else {
            panic!("a partial or bad frame at the end: {bytes:?}")
        };
        match decode_server(payload, Encoding::Proto) {
            Some(proto::v1::ServerFrame { frame: Some(f) }) => frames.push(f),
            other => panic!("undecodable frame {other:?}"),
        }
        bytes = &bytes[n..];
    }
    frames
}
