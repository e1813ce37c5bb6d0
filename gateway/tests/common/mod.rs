//! Harness for the gateway's integration tests: starts the real `gateway`
//! binary on loopback ports the kernel picks, and speaks to it as clients
//! (WebSocket, raw TCP) and operators (admin HTTP) would.
//!
//! Invariants: every wait has a deadline (socket reads and writes time out;
//! the ready line, the process exit and CLI runs are events received on
//! channels with a timeout), and every test owns its own gateway process, so
//! tests are independent and run in parallel. The gateway's stderr is kept
//! and printed when a test fails.
// Each test binary uses a different part of the harness.
#![allow(dead_code, unused_imports)]

mod chaos;
mod chaos_sender;
mod client;
mod cluster;
mod connect;
mod frames;
mod http;
mod qos1;
mod redis_cluster;
mod socket;
mod tls;
mod upgrade;
// The same helper the library's own Redis tests use.
#[path = "../../src/store/redis/testutil.rs"]
mod redis_server;

pub use chaos::*;
pub use chaos_sender::*;
pub use client::*;
pub use cluster::*;
pub use connect::*;
pub use frames::*;
pub use http::*;
pub use qos1::*;
pub use redis_cluster::*;
pub use redis_server::*;
pub use tls::*;
pub use upgrade::*;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The HS256 secret every test gateway is started with.
pub const SECRET: &str = "integration-test-secret";
/// How long the gateway may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long any single expected event (a frame, a close, an exit) may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The monoio driver a gateway runs its shards on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Legacy,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Legacy => "legacy",
        }
    }
}

/// Expands `fn name(driver: Driver)` test bodies into `uring::name` and
/// `legacy::name` tests, like monoio's `#[test_all]`. Attributes before a
/// name (`#[ignore = "why"]`) go on both.
macro_rules! driver_tests {
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        mod uring {
            $($(#[$attr])* #[test] fn $name() { super::$name(crate::common::Driver::Uring) })+
        }
        mod legacy {
            $($(#[$attr])* #[test] fn $name() { super::$name(crate::common::Driver::Legacy) })+
        }
    };
}
pub(crate) use driver_tests;

/// A running `gateway` process; killed on drop unless it already exited.
pub struct Gateway {
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
    pub admin: SocketAddr,
    pub shards: u32,
    /// On a cluster: each shard's bus address (from the ready line).
    pub bus: Vec<SocketAddr>,
    pub driver: Driver,
    pid: i32,
    /// This gateway's `--node-id` (unique per test process and start): a
    /// connection answered by another node (a gateway that got a dead
    /// one's port) is not this gateway's.
    pub node_id: String,
    /// In a Mutex so that a Gateway can be shared between client threads.
    exit: Mutex<Receiver<ExitStatus>>,
    exited: Option<ExitStatus>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Gateway {
    /// Starts a gateway with loopback port-0 listeners, two shards (unless
    /// `extra` says `--shards`) and the test secret, and waits for its ready
    /// line.
    pub fn start(driver: Driver, extra: &[&str]) -> Gateway {
        let mut args = vec!["--jwt-secret", SECRET];
        args.extend(extra);
        Gateway::start_keyless(driver, &args)
    }

    /// `start` without the test secret flag: the key comes from `extra`
    /// (e.g. a `--config` file, as a reload test needs).
    pub fn start_keyless(driver: Driver, extra: &[&str]) -> Gateway {
        let mut args: Vec<&str> = vec![
            "--ws-listen",
            "127.0.0.1:0",
            "--tcp-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--driver",
            driver.name(),
        ];
        assert!(
            driver != Driver::Uring || io_uring_available(),
            "this kernel refuses io_uring (seccomp?): the uring tests cannot run here"
        );
        if !extra.contains(&"--shards") {
            args.extend(["--shards", "2"]);
        }
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let node_id = format!(
            "test-{}-{}",
            std::process::id(),
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        if !extra.contains(&"--node-id") {
            args.extend(["--node-id", &node_id]);
        }
        args.extend(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the gateway binary");
        let pid = i32::try_from(child.id()).expect("pid fits an i32");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match err_pipe.read(&mut chunk) {
                    Ok(n @ 1..) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                    // A signal came (EINTR): read again.
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    _ => break,
                }
            }
        });
        let (line_tx, lines) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let (exit_tx, exit) = mpsc::channel();
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut gw = Gateway {
            ws: "0.0.0.0:0".parse().unwrap(),
            tcp: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            shards: 0,
            bus: Vec::new(),
            driver,
            pid,
            node_id: if extra.contains(&"--node-id") {
                String::new()
            } else {
                node_id.clone()
            },
            exit: Mutex::new(exit),
            exited: None,
            stderr,
        };
        let line = match lines.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!("no ready line from `gateway {}`: {e:?}", args.join(" ")),
        };
        gw.parse_ready(&line, driver);
        gw
    }

    fn parse_ready(&mut self, line: &str, driver: Driver) {
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("ready"), "ready line: {line:?}");
        for word in words {
            let (key, value) = word.split_once('=').expect("key=value in ready line");
            let addr = || value.parse().expect("socket address in ready line");
            match key {
                "ws" => self.ws = addr(),
                "tcp" => self.tcp = addr(),
                "admin" => self.admin = addr(),
                "shards" => self.shards = value.parse().expect("shard count"),
                "driver" => assert_eq!(value, driver.name(), "driver in {line:?}"),
                // On a cluster: the node id and its bus ports (one per shard).
                "node" => assert_eq!(value, self.node_id, "node in {line:?}"),
                "bus" => {
                    self.bus = (value.split(','))
                        .map(|a| a.parse().expect("bus address in ready line"))
                        .collect();
                    assert_eq!(self.bus.len(), self.shards as usize, "{line:?}");
                }
                _ => panic!("unknown key {key:?} in ready line {line:?}"),
            }
        }
        for addr in [self.ws, self.tcp, self.admin] {
            assert!(addr.ip().is_loopback() && addr.port() != 0, "{line:?}");
        }
        assert!(self.shards > 0, "{line:?}");
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        match self.exit.get_mut().unwrap().recv_timeout(timeout) {
            Ok(status) => *self.exited.insert(status),
            Err(e) => panic!("gateway did not exit within {timeout:?}: {e:?}"),
        }
    }

    /// The gateway's process id (the one this test started).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends a signal to the gateway process (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of the child we spawned, not yet reaped
        // by us (`exited` is only set after the waiter thread reaped it).
        let rc = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid);
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until the gateway's log has `n` lines containing `needle`.
    pub fn wait_log(&self, needle: &str, n: usize) {
        wait_for(&format!("{n}x {needle:?} in the log"), || {
            self.stderr().matches(needle).count() >= n
        });
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let exit = self.exit.get_mut().unwrap_or_else(|e| e.into_inner());
            match exit.try_recv() {
                Ok(status) => self.exited = Some(status),
                Err(_) => {
                    // SAFETY: as in `signal`; the waiter has not reported an
                    // exit, so the pid is still our child's.
                    unsafe { libc::kill(self.pid, libc::SIGKILL) };
                    let _ = exit.recv_timeout(IO_TIMEOUT);
                }
            }
        }
        if thread::panicking() {
            eprintln!("---- gateway stderr ----\n{}", self.stderr());
        }
    }
}

/// Whether this kernel lets us build an io_uring at all (containers may not).
fn io_uring_available() -> bool {
    // `struct io_uring_params` is 120 bytes; zeroed means default setup.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) writes at most sizeof(io_uring_params) into
    // `params`, which is that large; the fd it returns is closed right away.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is a descriptor we own and no longer use.
    unsafe { libc::close(fd as i32) };
    true
}

/// Runs `gateway ARGS` (e.g. the `token` subcommand) to completion.
pub fn run_cli(args: &[&str]) -> Output {
    run_with_deadline(Command::new(env!("CARGO_BIN_EXE_gateway")).args(args))
}

/// Runs `cmd` to its end (stdout and stderr captured), killed and failed
/// if it takes longer than `IO_TIMEOUT`.
pub fn run_with_deadline(cmd: &mut Command) -> Output {
    run_within(cmd, IO_TIMEOUT)
}

/// `run_with_deadline` with the deadline `timeout`.
pub fn run_within(cmd: &mut Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.expect("command output"),
        Err(RecvTimeoutError::Timeout) => {
            // SAFETY: our child has not been reaped (no output was sent yet).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what} did not finish within {timeout:?}")
        }
        Err(e) => panic!("waiter of {what}: {e}"),
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Mints an HS256 token for `user` with the test secret, valid for `ttl`.
pub fn token(user: &str, device: Option<&str>, ttl: Duration) -> String {
    let mut claims = serde_json::json!({ "sub": user, "exp": now_secs() + ttl.as_secs() });
    if let Some(device) = device {
        claims["device"] = device.into();
    }
    token_with(SECRET, &claims)
}

/// Mints an HS256 token with arbitrary claims and secret.
pub fn token_with(secret: &str, claims: &serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("mint a JWT")
}

/// A token valid for an hour.
pub fn user_token(user: &str, device: &str) -> String {
    token(user, Some(device), Duration::from_secs(3600))
}
