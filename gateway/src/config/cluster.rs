//! `[cluster]`: running as one of many nodes. With no `bus_listen` the node
//! runs alone, exactly as a single node always has (no registry, no bus).
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Which node `GET /route` answers (draining nodes are never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum RoutePolicy {
    /// The live node with the fewest connections (ties: lowest id).
    #[default]
    LeastConns,
    /// The live nodes in turn (per answering node).
    RoundRobin,
    /// Rendezvous hash of the `room` parameter (else the user) over the live
    /// nodes: a room's members meet on one node, and only that room's share
    /// moves when a node comes or goes.
    HashRoom,
    /// Rendezvous hash of the `user` parameter: a user's devices meet.
    HashUser,
}

impl std::fmt::Display for RoutePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutePolicy::LeastConns => "least_conns",
            RoutePolicy::RoundRobin => "round_robin",
            RoutePolicy::HashRoom => "hash_room",
            RoutePolicy::HashUser => "hash_user",
        })
    }
}

/// `[cluster]`: the bus, the registry and client routing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Bus listener for links from other nodes. Shard `i` listens on this
    /// port + `i` (port `0`: each shard gets a free port; the registry
    /// carries the real ones). Needs `redis` (the registry). Default: none,
    /// a single node.
    pub bus_listen: Option<SocketAddr>,
    /// Host other nodes dial for this node's bus (and put in `/route`
    /// answers for its client ports), when the listen address is not the
    /// one they can reach (`0.0.0.0`, NAT). Default: the listen host.
    pub bus_advertise: Option<String>,
    /// Registry entry lifetime in ms: a node that stops refreshing (killed,
    /// cut from Redis) disappears from every peer's view within it. Refreshed
    /// every third of it. 300 to 60000. Default `3000`.
    pub registry_ttl_ms: u64,
    /// Policy of `GET /route`. Default `least_conns`.
    pub route_policy: RoutePolicy,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            bus_listen: None,
            bus_advertise: None,
            registry_ttl_ms: 3_000,
            route_policy: RoutePolicy::LeastConns,
        }
    }
}

impl ClusterConfig {
    /// True when this node joins a cluster.
    pub fn enabled(&self) -> bool {
        self.bus_listen.is_some()
    }

    /// `registry_ttl_ms` as a `Duration`.
    pub fn registry_ttl(&self) -> Duration {
        Duration::from_millis(self.registry_ttl_ms)
    }
}
