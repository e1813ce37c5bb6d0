//! Run by systemd (`deploy/gateway.service`, `Type=notify`): the node
//! sends `READY=1` (with its pid as `MAINPID`, which after an upgrade names
//! the new process) once it serves, and `STOPPING=1` when a stop drains it.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_node_tells_systemd_it_is_ready_and_then_stopping() {
    let dir = std::env::temp_dir().join(format!("gateway-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--ws-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--jwt-secret", "x"])
        .args(["--drain-deadline-ms", "1000"])
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notice within 20 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(ready, format!("MAINPID={}\nREADY=1", child.id()));
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("a notice within 20 s");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
