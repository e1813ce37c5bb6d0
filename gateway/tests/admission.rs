//! Limits at accept, per source address and node-wide: a refused socket is
//! closed before anything is read, counted by limit; the others are served.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

driver_tests!(per_ip_and_node_caps_refuse_at_accept, connect_rate_per_ip);

/// True when the server closes `addr`'s new connection without a byte.
fn closed_at_accept(addr: std::net::SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 1];
    loop {
        return match s.read(&mut b) {
            // A signal came (EINTR): read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            // A byte, or nothing within the timeout: not closed.
            Ok(_) => false,
        };
    }
}

fn per_ip_and_node_caps_refuse_at_accept(driver: Driver) {
    let gw = Gateway::start(driver, &["--max-conns-per-ip", "2"]);
    let a = gw.connect(WS, "a", "d");
    let b = gw.connect(TCP, "b", "d");
    assert!(closed_at_accept(gw.ws));
    gw.wait_metric(
        "gateway_refused_conns_total{limit=\"max_conns_per_ip\"}",
        |v| v >= 1.0,
    );
    // A connection that goes frees its slot.
    drop(a);
    gw.wait_metric("gateway_connections", |v| v <= 1.0);
    let _c = gw.connect(WS, "c", "d");
    drop(b);

    let gw = Gateway::start(driver, &["--max-conns", "1"]);
    let _one = gw.connect(WS, "a", "d");
    assert!(closed_at_accept(gw.tcp));
    gw.wait_metric("gateway_refused_conns_total{limit=\"max_conns\"}", |v| {
        v >= 1.0
    });
}

/// What became of a connection that asks for an upgrade at once.
enum Outcome {
    /// Closed without a byte (at accept).
    Closed,
    /// Answered: the gateway accepted it no later than this.
    Served(Instant),
}

/// Connects to the ws port and sends an upgrade request at once, so that a
/// served connection answers (and says when it was accepted at the latest)
/// where a refused one is closed without a byte.
fn upgrade_outcome(addr: SocketAddr) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        user_token("third", "d")
    );
    // A socket closed at accept may already refuse the write (a reset).
    if let Err(e) = s.write_all(request.as_bytes()) {
        assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "write: {e}"
        );
        return Outcome::Closed;
    }
    let mut b = [0u8; 1];
    loop {
        return match s.read(&mut b) {
            // A signal came (EINTR): read again.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Closed with the request unread: a reset.
            Ok(0) => Outcome::Closed,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Outcome::Closed,
            Ok(_) => Outcome::Served(Instant::now()),
            Err(e) => panic!("neither served nor closed within {IO_TIMEOUT:?}: {e}"),
        };
    }
}

fn connect_rate_per_ip(driver: Driver) {
    let gw = Gateway::start(driver, &["--connect-rate-per-ip", "1"]);
    // A burst of two, then refused until the bucket refills: a third
    // connection accepted less than a second after the first is refused.
    // Whether it was is only certain when it was served within 0.9 s of
    // before the first (a tick of the gateway's clock to spare); a loaded
    // machine can take longer, and then the attempt is made again.
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let started = Instant::now();
        let a = gw.connect(WS, "a", "d");
        let b = gw.connect(WS, "b", "d");
        match upgrade_outcome(gw.ws) {
            Outcome::Closed => {
                gw.wait_metric(
                    "gateway_refused_conns_total{limit=\"connect_rate_per_ip\"}",
                    |v| v >= 1.0,
                );
                return;
            }
            Outcome::Served(at) => {
                let took = at - started;
                assert!(
                    took >= Duration::from_millis(900),
                    "a third connection served {took:?} after the first (attempt {attempt})"
                );
            }
        }
        drop((a, b));
        // The passage of time is what is tested: the bucket refills (two
        // tokens at one a second) before the next attempt.
        std::thread::sleep(Duration::from_millis(2100));
    }
    panic!("{ATTEMPTS} attempts, each too slow to tell (a third connect 0.9 s or more after the first)");
}
