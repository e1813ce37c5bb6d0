//! A shard that was too busy to read (here: the whole process stopped, as
//! a saturated box stops it for moments) never times out a peer whose
//! bytes are already waiting: when a deadline about the peer's silence
//! comes (the handshake, the heartbeat), the shard reads first. Without
//! that, a connect storm on two cores turned into HTTP 408s for clients
//! that had sent their upgrade in time (issue 13's unreproducible million).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

driver_tests!(upgrades_waiting_while_stopped_are_read_before_the_deadline);

/// Long enough that connecting every client and stopping the gateway fits
/// inside it, even on a loaded machine (checked below).
const HANDSHAKE_MS: u64 = 8000;
/// What the check below leaves between the stop and the first deadline:
/// the gateway's tick (its clock is read once a tick, so a deadline counts
/// from up to one tick before the accept) and then some.
const STOP_MARGIN: Duration = Duration::from_millis(500);
/// More than one epoll batch per shard (`EVENTS`, 1024), so the ticker gets
/// its turn while upgrades still wait in the ready list.
const CLIENTS: usize = 3000;

fn upgrades_waiting_while_stopped_are_read_before_the_deadline(driver: Driver) {
    let ms = HANDSHAKE_MS.to_string();
    let gw = Gateway::start(driver, &["--handshake-timeout-ms", &ms]);
    // Connected (accepted, the deadline running), then the gateway stops.
    // Every deadline starts after `started` (at its accept).
    let started = std::time::Instant::now();
    let mut socks: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(gw.ws).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s
        })
        .collect();
    wait_for("every connection accepted", || {
        open_connections(&gw) == CLIENTS as f64
    });
    gw.signal(libc::SIGSTOP);
    let setup = started.elapsed();
    // What the test needs: the stop came before the first deadline, so
    // every deadline passes while the process is stopped.
    assert!(
        setup + STOP_MARGIN < Duration::from_millis(HANDSHAKE_MS),
        "connecting took {setup:?}: the first deadline could pass before the stop"
    );
    for (i, s) in socks.iter_mut().enumerate() {
        write!(
            s,
            "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {}\r\n\r\n",
            user_token(&format!("busy{i}"), "d")
        )
        .unwrap();
    }
    // The only sleep: the process is stopped, so nothing of the gateway's
    // is awaited; every deadline passes while the bytes wait unread.
    std::thread::sleep(Duration::from_millis(HANDSHAKE_MS + 500));
    gw.signal(libc::SIGCONT);
    for (i, s) in socks.iter_mut().enumerate() {
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(
            &head,
            b"HTTP/1.1 101",
            "client {i}: {}",
            String::from_utf8_lossy(&head)
        );
    }
}

/// Open connections, summed over shards and transports.
fn open_connections(gw: &Gateway) -> f64 {
    gw.metrics()
        .lines()
        .filter(|l| l.starts_with("gateway_connections{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
