//! A real 3-master Redis Cluster on loopback for one test: three
//! `redis-server --cluster-enabled yes` on free ports, joined with
//! `redis-cli --cluster create`, waited on until every node reports
//! `cluster_state:ok`; killed when dropped.
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(20);

pub struct RedisCluster {
    dir: std::path::PathBuf,
    ports: Vec<u16>,
    children: Vec<Child>,
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

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
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
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
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
                let info = cli(c.ports[i], &["info", "server"]);
                if info.lines().any(|l| l.trim() == pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = c.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {out:?}");
        for &p in &c.ports {
            while !cli(p, &["cluster", "info"]).contains("cluster_state:ok") {
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
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect();
        urls.join(",")
    }

    /// How many keys each master holds.
    pub fn key_counts(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|&p| cli(p, &["dbsize"]).trim().parse().unwrap_or(0))
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
