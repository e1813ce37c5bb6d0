//! A real 3-master Redis Cluster on loopback for one test: three
//! `redis-server --cluster-enabled yes` on free ports, joined with
//! `redis-cli --cluster create`, waited on until every node reports
//! `cluster_state:ok`; killed when dropped. `start_secure`: the same with
//! an ACL user (the default user off) and TLS everywhere (clients, the
//! cluster bus).
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(20);

pub struct RedisCluster {
    dir: std::path::PathBuf,
    ports: Vec<u16>,
    children: Vec<Child>,
    /// Port-independent server flags (`--port P` or the TLS ones come
    /// from `spawn_node`).
    secure: Option<Secure>,
}

/// An ACL user and TLS for every connection.
#[derive(Clone)]
pub struct Secure {
    pub user: String,
    pub password: String,
    /// A certificate (and its key) for `localhost` and `127.0.0.1`, which
    /// clients trust as their CA.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Secure {
    fn cli_args(&self) -> Vec<String> {
        let c = self.cert.display().to_string();
        [
            "--tls",
            "--cacert",
            &c,
            "--user",
            &self.user,
            "--pass",
            &self.password,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// A port free now whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(secure: &Option<Secure>, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(secure.iter().flat_map(Secure::cli_args))
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// Starts one cluster-enabled `redis-server` on a free port pair, in
    /// its own directory under the cluster's.
    fn spawn_node(&self) -> (u16, Child) {
        let port = free_port_pair();
        let node_dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut cmd = Command::new("redis-server");
        match &self.secure {
            None => cmd.args(["--port", &port.to_string()]),
            Some(sec) => {
                let user = format!(">{}", sec.password);
                cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                    .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                    .args(["--tls-auth-clients", "no", "--tls-cert-file"])
                    .arg(&sec.cert)
                    .arg("--tls-key-file")
                    .arg(&sec.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&sec.cert)
                    .args(["--user", "default", "off"])
                    .args(["--user", &sec.user, "on", &user, "~*", "&*", "+@all"])
            }
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        (port, child)
    }

    pub fn start() -> RedisCluster {
        RedisCluster::start_with(None)
    }

    /// `start`, with an ACL user (the default user off) and TLS.
    pub fn start_secure(secure: Secure) -> RedisCluster {
        RedisCluster::start_with(Some(secure))
    }

    fn start_with(secure: Option<Secure>) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "gateway-test-rcluster-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (free_port_pair() as u128)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = RedisCluster {
            dir,
            ports: Vec::new(),
            children: Vec::new(),
            secure,
        };
        let deadline = Instant::now() + READY;
        for _ in 0..3 {
            let (port, child) = c.spawn_node();
            c.ports.push(port);
            c.children.push(child);
        }
        // A port found free may be taken before the child binds it (by
        // another test's server): that child exits, and another server
        // would answer on its port. Each node is ours once it answers with
        // our child's pid; a child that exited starts again on new ports.
        for i in 0..3 {
            loop {
                assert!(
                    Instant::now() < deadline,
                    "redis cluster node {} never answered",
                    c.ports[i]
                );
                if let Ok(Some(status)) = c.children[i].try_wait() {
                    eprintln!(
                        "redis cluster node on port {} exited ({status}): new ports",
                        c.ports[i]
                    );
                    let (port, child) = c.spawn_node();
                    (c.ports[i], c.children[i]) = (port, child);
                    continue;
                }
                let pid = format!("process_id:{}", c.children[i].id());
                let info = cli(&c.secure, c.ports[i], &["info", "server"]);
                if info.lines().any(|l| l.trim() == pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = c.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(c.secure.iter().flat_map(Secure::cli_args))
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {out:?}");
        for &p in &c.ports {
            while !cli(&c.secure, p, &["cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "redis cluster never became ok");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        c
    }

    /// The seed list the gateway takes: every master's URL, comma-separated.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|p| match self.secure {
                Some(_) => format!("rediss://127.0.0.1:{p}/"),
                None => format!("redis://127.0.0.1:{p}/"),
            })
            .collect();
        urls.join(",")
    }

    /// How many keys each master holds.
    pub fn key_counts(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|&p| {
                cli(&self.secure, p, &["dbsize"])
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
