//! Helpers of the upgrade tests: the processes an upgrade starts are not
//! the test's children, so they are reaped here and watched through /proc.
use super::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Kills the processes an upgrade started (not this test's children) when
/// the test ends, however it ends.
#[derive(Default)]
pub struct Reap(std::sync::Mutex<Vec<i32>>);

impl Reap {
    pub fn add(&self, pid: i32) {
        self.0.lock().unwrap().push(pid);
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap().drain(..) {
            // SAFETY: kill(2) on a pid an upgrade of this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// True once `pid` has exited (gone, or a zombie nobody reaps yet).
pub fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// Upgrades through `POST /upgrade`; returns the new process's pid.
pub fn upgrade_node(gw: &Gateway, reap: &Reap) -> i32 {
    let r = gw.post("/upgrade", "");
    assert_eq!(r.status, 200, "{r:?}");
    let pid = r.json()["pid"].as_i64().unwrap() as i32;
    reap.add(pid);
    pid
}

/// Connects and authenticates raw TCP clients without pause until stopped,
/// counting those that got neither `AuthOk` nor a `DRAINING` go-away (a
/// refused, reset or dropped connect).
pub struct Storm {
    stop: Arc<AtomicBool>,
    tried: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Storm {
    pub fn start(tcp: std::net::SocketAddr) -> Storm {
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
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.tried.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Pushes through the admin API (`target` is `"user": ..` or `"room": ..`).
pub fn push(gw: &Gateway, target: &str, text: &str, qos: u8) {
    let r = gw.post(
        "/push",
        &format!(r#"{{{target}, "text": "{text}", "qos": {qos}}}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

/// A script in a fresh folder, to stand in for the new binary.
pub fn script(name: &str, body: &str) -> std::path::PathBuf {
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
