//! An upgrade while the backend's authorization hook has not answered a
//! join yet: the old process waits for the answer before the connection
//! moves, so the client gets its RoomJoined, from the new process.

#[allow(unused_macros)] // io_uring only: the hook is not driver-specific
mod common;

use common::*;
use std::io::Write;
use std::sync::mpsc;

/// A hook on loopback that allows everything, but answers each question
/// only when the test says so; it reports each question as it comes.
fn held_hook() -> (std::net::SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (asked_tx, asked) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            if read_request_body(&mut s).is_none() {
                continue;
            }
            let _ = asked_tx.send(());
            if released.recv_timeout(IO_TIMEOUT).is_err() {
                return;
            }
            let reply = r#"{"allow": true}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (addr, asked, release)
}

#[test]
fn uring_a_hook_answer_in_flight_crosses_the_upgrade() {
    let reap = Reap::default();
    let (addr, asked, release) = held_hook();
    let dir = std::env::temp_dir().join(format!("gateway-upgrade-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.toml");
    std::fs::write(
        &path,
        format!(
            "[backend]\nauthorize_url = \"http://{addr}/authorize\"\nauthorize_timeout_ms = 8000\n"
        ),
    )
    .unwrap();
    let mut gw = Gateway::start(Driver::Uring, &["--config", path.to_str().unwrap()]);
    let mut hana = gw.connect(WS, "hana", "phone");
    hana.send(&join("open"));
    asked.recv_timeout(IO_TIMEOUT).expect("the hook was asked");
    // The upgrade waits for the answer (the old process's shard is not
    // settled while it is out); the answer comes while it waits.
    let upgrade = {
        let admin = gw.admin;
        std::thread::spawn(move || http(admin, "POST", "/upgrade", Some("")))
    };
    // Released once the old process freezes (usually while its shard
    // waits for this answer; either way the join must come through).
    gw.wait_log("upgrade: freezing the shards", 1);
    release.send(()).unwrap();
    let r = upgrade.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    reap.add(r.json()["pid"].as_i64().unwrap() as i32);
    assert_eq!(r.json()["connections"], 1, "{r:?}");
    assert_eq!(hana.joined().room, "open");
    hana.ping(1);
    assert_eq!(gw.wait_exit(IO_TIMEOUT).code(), Some(0));
}
