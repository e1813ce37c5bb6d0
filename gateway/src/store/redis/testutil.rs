//! A real `redis-server` per test, on a Unix socket of its own (no TCP
//! port at all), no persistence, killed when dropped.
//!
//! Invariants: the socket path is unique to this server (test process id,
//! a counter, a clock reading), so no other test's Redis can ever answer
//! for it; every answer it is judged ready by is checked against the
//! `process_id` in its `INFO server`, so a restart is proven to be the new
//! process. Waits are polls against a deadline, never fixed sleeps. Used by
//! the store's unit tests and, through `#[path]`, by the integration tests.
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long redis-server may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `redis-server` owned by a test.
pub(crate) struct RedisServer {
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a fresh Unix socket and waits until it answers.
    pub(crate) fn start() -> RedisServer {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "gateway-test-redis-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).expect("a fresh directory for the test redis");
        let mut server = RedisServer { dir, child: None };
        server.spawn();
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// `redis+unix:///<socket>`.
    pub(crate) fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// A plain connection, for inspecting keys. A connect a signal
    /// interrupted (EINTR: any signal handled in the test process
    /// interrupts calls with a timeout, even under SA_RESTART, signal(7);
    /// seen in CI) is tried again.
    pub(crate) fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("redis url");
        loop {
            match client.get_connection_with_timeout(READY_TIMEOUT) {
                Ok(c) => return c,
                Err(e) if e.is_io_error() && e.to_string().contains("(os error 4)") => continue,
                Err(e) => panic!("connect to the test redis: {e}"),
            }
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Sends `sig` to the server (`SIGSTOP` makes it a store that answers
    /// slowly, `SIGCONT` lets it answer again).
    #[allow(dead_code)] // used by the integration tests only
    pub(crate) fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on the pid of a child we spawned and still own.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }

    /// Starts the server again on the same socket (with no data: it keeps
    /// none); returns once the new process answers.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Spawns redis-server and waits until the process we spawned answers
    /// on the socket.
    fn spawn(&mut self) {
        let socket = self.socket();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed by these tests: apt-get install -y redis-server");
        let pid = child.id();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "redis-server on {} exited at start: {status}",
                    socket.display()
                );
            }
            match server_pid(&socket) {
                Some(p) if p == pid => break,
                Some(p) => panic!(
                    "{} is answered by redis-server {p}, not ours ({pid})",
                    socket.display()
                ),
                None if Instant::now() < deadline => {
                    // Polling a process for readiness: a short pause.
                    std::thread::park_timeout(Duration::from_millis(10))
                }
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server on {} did not answer within {READY_TIMEOUT:?}",
                        socket.display()
                    );
                }
            }
        }
        self.child = Some(child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `process_id` of the redis-server answering on `socket`, if any.
fn server_pid(socket: &Path) -> Option<u32> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    // A bulk string: `$<len>\r\n<text>\r\n`; read until the field is in.
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&chunk[..n]);
        let reply = String::from_utf8_lossy(&text);
        if let Some((_, rest)) = reply.split_once("\r\nprocess_id:") {
            if let Some((pid, _)) = rest.split_once("\r\n") {
                return pid.trim().parse().ok();
            }
        }
    }
    None
}
