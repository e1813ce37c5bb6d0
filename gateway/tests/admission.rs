//! Limits at accept, per source address and node-wide: a refused socket is
//! closed before anything is read, counted by limit; the others are served.

mod common;

use std::io::Read;
use std::net::TcpStream;

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

fn connect_rate_per_ip(driver: Driver) {
    let gw = Gateway::start(driver, &["--connect-rate-per-ip", "1"]);
    // A burst of two, then refused until the bucket refills.
    let _a = gw.connect(WS, "a", "d");
    let _b = gw.connect(WS, "b", "d");
    assert!(closed_at_accept(gw.ws));
    gw.wait_metric(
        "gateway_refused_conns_total{limit=\"connect_rate_per_ip\"}",
        |v| v >= 1.0,
    );
}
