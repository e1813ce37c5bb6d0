//! The backend's authorization hook against the real binary: a hook
//! server on loopback decides joins and publishes; answers are cached; a
//! hook that does not answer is decided by the policy (deny).

#[allow(unused_macros)] // io_uring only: the hook is not driver-specific
mod common;

use common::*;

/// A backend's authorization hook on loopback: allows joins of `open` and
/// `readonly`, publishes to `open` only; counts the questions.
fn spawn_hook() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let body = read_request_body(&mut s);
            let Some(body) = body else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let q: serde_json::Value = serde_json::from_str(&body).unwrap();
            let allow = matches!(
                (q["action"].as_str(), q["room"].as_str()),
                (_, Some("open")) | (Some("join"), Some("readonly"))
            );
            assert_eq!(q["user"], "hana");
            let reply = serde_json::json!({ "allow": allow }).to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (addr, asked)
}

fn config_with(dir_name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{dir_name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn uring_the_backend_hook_decides_joins_and_publishes() {
    let (addr, asked) = spawn_hook();
    let path = config_with(
        "gateway-hook",
        &format!(
            "[backend]\nauthorize_url = \"http://{addr}/authorize\"\nauthorize_cache_secs = 60\n"
        ),
    );
    let gw = Gateway::start(Driver::Uring, &["--config", path.to_str().unwrap()]);
    let mut hana = gw.connect(WS, "hana", "phone");
    hana.join("open");
    hana.join("readonly");
    hana.send(&join("closed"));
    assert_error(&hana.error(), ErrorCode::Forbidden, false);
    hana.send(&to_room("open", "o1", b"hi"));
    assert!(hana.result_for("o1").accepted);
    assert_eq!(&hana.deliver().payload[..], b"hi");
    hana.send(&to_room("readonly", "r1", b"no"));
    let r = hana.result_for("r1");
    assert_eq!(
        (r.accepted, r.code()),
        (false, ErrorCode::Forbidden),
        "{r:?}"
    );
    // Answers are cached: the same publish again asks nothing new.
    let before = asked.load(std::sync::atomic::Ordering::SeqCst);
    hana.send(&to_room("open", "o2", b"again"));
    assert!(hana.result_for("o2").accepted);
    assert_eq!(&hana.deliver().payload[..], b"again");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), before);
    assert_eq!(
        before, 5,
        "join open, join readonly, join closed, publish open, publish readonly"
    );

    // A hook that does not answer: the policy (deny) decides.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = config_with(
        "gateway-hook-down",
        &format!(
            "[backend]\nauthorize_url = \"http://{dead}/authorize\"\nauthorize_timeout_ms = 300\n"
        ),
    );
    let gw = Gateway::start(Driver::Uring, &["--config", path.to_str().unwrap()]);
    let mut hana = gw.connect(WS, "hana", "phone");
    hana.send(&join("open"));
    assert_error(&hana.error(), ErrorCode::Forbidden, false);
}
