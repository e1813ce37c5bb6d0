//! Many nodes on loopback: one real Redis and N real gateways joined by
//! the bus, and waits on what the cluster promises (a node listed, a
//! user's or room's interest known to a peer) instead of sleeps.
use std::time::{Duration, Instant};

use super::*;

/// The registry TTL the test clusters run with (a dead node leaves within
/// it and a reading, `LEAVE_TIMEOUT` at most). Refreshed every third of it,
/// each refresh with a third of it as its Redis timeout: long enough that a
/// live node stalled on a loaded machine does not expire.
pub const TTL_MS: u64 = 3000;

/// How long a test waits for a killed node to leave `/nodes`: its entry
/// expires within `TTL_MS`, and a peer reads the registry every third of
/// it; the rest is slack for a loaded machine.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Cluster {
    /// The single Redis (None on a Redis Cluster).
    pub redis: Option<RedisServer>,
    /// The Redis Cluster (None on a single Redis).
    pub redis_cluster: Option<RedisCluster>,
    url: String,
    pub nodes: Vec<Gateway>,
}

/// The flags that join a gateway to the cluster on `redis`.
pub fn cluster_flags(redis: &str) -> Vec<String> {
    [
        "--redis",
        redis,
        "--bus-listen",
        "127.0.0.1:0",
        "--registry-ttl-ms",
        &TTL_MS.to_string(),
        "--heartbeat-timeout-ms",
        "60000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Cluster {
    /// Starts Redis and one gateway per entry of `extra` (its own flags),
    /// and waits until every node lists all of them.
    pub fn start(driver: Driver, extra: &[&[&str]]) -> Cluster {
        let redis = RedisServer::start();
        let url = redis.url();
        Cluster::on(driver, Some(redis), None, url, extra)
    }

    /// `start`, on a fresh 3-master Redis Cluster.
    pub fn start_on_redis_cluster(driver: Driver, extra: &[&[&str]]) -> Cluster {
        let rc = RedisCluster::start();
        let url = rc.url();
        Cluster::on(driver, None, Some(rc), url, extra)
    }

    fn on(
        driver: Driver,
        redis: Option<RedisServer>,
        redis_cluster: Option<RedisCluster>,
        url: String,
        extra: &[&[&str]],
    ) -> Cluster {
        let mut c = Cluster {
            redis,
            redis_cluster,
            url,
            nodes: Vec::new(),
        };
        for flags in extra {
            c.add(driver, flags);
        }
        let n = c.nodes.len();
        for node in &c.nodes {
            wait_for("every node listed", || node_ids(node).len() == n);
        }
        c
    }

    /// Starts one more node on the cluster's Redis.
    pub fn add(&mut self, driver: Driver, flags: &[&str]) -> &Gateway {
        let mut args = cluster_flags(&self.url);
        args.extend(flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes.push(Gateway::start(driver, &args));
        self.nodes.last().unwrap()
    }
}

/// The ids `/nodes` lists on `gw`.
pub fn node_ids(gw: &Gateway) -> Vec<String> {
    let r = gw.get("/nodes");
    assert_eq!(r.status, 200, "{r:?}");
    let nodes = r.json()["nodes"].as_array().cloned().unwrap_or_default();
    nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Polls `cond` until it holds, with a hard deadline.
#[track_caller]
pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_for_within(what, IO_TIMEOUT, cond)
}

/// `wait_for` with the deadline `timeout` from now.
#[track_caller]
pub fn wait_for_within(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        // Polling an HTTP endpoint for a condition: a short pause.
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until `at` routes `user`'s messages to every node of `on` (its
/// interest table, `routed_to`; `at` itself when it is in `on`: the user
/// is connected there), and its presence lists them all.
#[track_caller]
pub fn wait_user_known(at: &Gateway, user: &str, on: &[&Gateway]) {
    let want: Vec<&str> = on.iter().map(|g| g.node_id.as_str()).collect();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let p = at.get(&format!("/presence/{user}")).json();
        let (nodes, routed) = (names(&p["nodes"]), names(&p["routed_to"]));
        let known = want.iter().all(|w| {
            nodes.iter().any(|n| n == w) && (*w == at.node_id || routed.iter().any(|n| n == w))
        });
        if known {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user} never known on {want:?} at {}: {p}",
            at.node_id
        );
        // Polling an HTTP endpoint for a condition: a short pause.
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until `at` counts `members` members of `room` in the cluster.
#[track_caller]
pub fn wait_room_members(at: &Gateway, room: &str, members: u64) {
    wait_for(
        &format!("{room} has {members} members at {}", at.node_id),
        || at.get(&format!("/rooms/{room}")).json()["members"].as_u64() == Some(members),
    );
}
