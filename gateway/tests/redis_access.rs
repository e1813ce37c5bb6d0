//! Redis as a trusted part, against a real `redis-server`: an ACL user
//! whose password comes from a file (never in `ps`), a wrong password a
//! node refuses to start with (one line naming why), and Redis over TLS
//! (`rediss://`) checked against a private CA, without which a node
//! refuses to start; and a 3-master Redis Cluster with both (an ACL user,
//! TLS for clients and the cluster bus).

#[allow(unused_macros)] // io_uring only: these are about Redis, not the driver
mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A redis-server with `args` on a free port, ready when `redis-cli` with
/// `cli` answers PONG.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    fn start(tag: &str, args: impl Fn(u16) -> Vec<String>, cli: &[&str]) -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gateway-redis-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(args(port))
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(cli)
                .arg("ping")
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&out.stdout).contains("PONG") {
                break;
            }
            assert!(Instant::now() < deadline, "redis did not answer: {out:?}");
            // Polling a process for readiness: a short pause.
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port, dir }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A QoS 1 message to `bob`, offline: stored (in Redis), then delivered
/// when he connects.
fn stored_and_delivered(gw: &Gateway) {
    let mut alice = gw.connect(TCP, "alice", "phone");
    let id = send_q1(&mut alice, "bob", "m1", "kept in redis");
    let mut bob = gw.connect(TCP, "bob", "phone");
    assert_q1(&bob.deliver(), 1, "kept in redis", &id);
}

/// The node does not start with `args`: exit 1, one line saying why.
fn refuses_to_start(args: &[&str], why: &str) {
    let mut all = vec!["--jwt-secret", "x", "--admin-listen", "127.0.0.1:0"];
    all.extend(["--ws-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"]);
    all.extend(args);
    let out = run_cli(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(why), "{stderr}");
}

#[test]
fn uring_an_acl_user_with_its_password_in_a_file() {
    const PASSWORD: &str = "the gateway's redis password";
    let redis = Redis::start(
        "acl",
        |port| {
            let user = format!(">{PASSWORD}");
            [
                "--port",
                &port.to_string(),
                "--user",
                "default",
                "off",
                "--user",
                "gw",
                "on",
                &user,
                "~*",
                "&*",
                "+@all",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        },
        &["--user", "gw", "--pass", PASSWORD, "--no-auth-warning"],
    );
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let password = file(&redis.dir, "password", &format!("{PASSWORD}\n"));
    let gw = Gateway::start(
        Driver::Uring,
        &[
            "--redis",
            &url,
            "--redis-username",
            "gw",
            "--redis-password-file",
            password.to_str().unwrap(),
        ],
    );
    stored_and_delivered(&gw);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", gw.pid())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(PASSWORD),
        "the password is not in ps"
    );
    // The wrong password: Redis refuses it, and the node says so.
    let wrong = file(&redis.dir, "wrong", "not the password");
    let wrong = wrong.to_str().unwrap();
    refuses_to_start(
        &[
            "--redis",
            &url,
            "--redis-username",
            "gw",
            "--redis-password-file",
            wrong,
        ],
        "authentication failed",
    );
}

#[test]
fn uring_redis_over_tls_checked_against_a_private_ca() {
    let (cert, key) = cert("redis-tls");
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let redis = Redis::start(
        "tls",
        |port| {
            [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                c,
                "--tls-key-file",
                k,
                "--tls-ca-cert-file",
                c,
                "--tls-auth-clients",
                "no",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        },
        &["--tls", "--cacert", c, "-h", "localhost"],
    );
    let url = format!("rediss://localhost:{}/", redis.port);
    let gw = Gateway::start(Driver::Uring, &["--redis", &url, "--redis-ca-file", c]);
    stored_and_delivered(&gw);
    // Without the CA, the system's roots do not vouch for this Redis.
    refuses_to_start(&["--redis", &url], "certificate");
}

#[test]
fn uring_a_redis_cluster_with_an_acl_user_over_tls() {
    const PASSWORD: &str = "the cluster's redis password";
    let (cert, key) = cert("rcluster-tls");
    let dir = cert.parent().unwrap().to_owned();
    let rc = RedisCluster::start_secure(Secure {
        user: "gw".into(),
        password: PASSWORD.into(),
        cert: cert.clone(),
        key,
    });
    let url = rc.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let password = file(&dir, "password", &format!("{PASSWORD}\n"));
    let (c, p) = (cert.to_str().unwrap(), password.to_str().unwrap());
    let access = ["--redis-username", "gw", "--redis-password-file", p];
    let mut args = vec!["--redis", &url, "--redis-ca-file", c];
    args.extend(access);
    let gw = Gateway::start(Driver::Uring, &args);
    stored_and_delivered(&gw);
    assert!(
        rc.key_counts().iter().sum::<u64>() > 0,
        "the inbox lives in the cluster"
    );
    // The wrong password, and no CA: refused at start, one line each.
    let wrong = file(&dir, "wrong", "not the password");
    let wrong = wrong.to_str().unwrap();
    let bad = ["--redis-username", "gw", "--redis-password-file", wrong];
    let mut args = vec!["--redis", &url, "--redis-ca-file", c];
    args.extend(bad);
    refuses_to_start(&args, "redis");
    let mut args = vec!["--redis", url.as_str()];
    args.extend(access);
    refuses_to_start(&args, "redis");
}
