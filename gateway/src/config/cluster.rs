//! `[cluster]`: running as one of many nodes. With no `bus_listen` the node
//! runs alone, exactly as a single node always has (no registry, no bus).
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Which node `GET /route` answers (draining nodes are never answered).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum,
)]
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
#[derive(Clone, Deserialize, serde::Serialize)]
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
    /// The cluster secret (at least 32 bytes): every bus link proves it
    /// both ways (a challenge-response over fresh nonces) before a single
    /// envelope is accepted or sent; a peer that cannot is refused, logged
    /// once per address and counted (`gateway_bus_auth_failures_total`).
    /// Required when `bus_listen` is not a loopback address. Prefer
    /// `secret_file` or `GATEWAY_CLUSTER_SECRET` (a config file may be
    /// readable by more people than the secret should be). Default none.
    pub secret: Option<String>,
    /// A file holding the cluster secret (one line). Default none.
    pub secret_file: Option<std::path::PathBuf>,
    /// This node's certificate chain for the bus, PEM: with `tls_key_file`
    /// and `tls_ca_file`, every bus link is TLS 1.3 with both ends' certificates
    /// checked against the cluster CA (`config::bus_tls`). Default: unset
    /// (plaintext bus).
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The private key of `tls_cert_file`, PEM. Default: unset.
    pub tls_key_file: Option<std::path::PathBuf>,
    /// The cluster CA, PEM: the only issuer whose node certificates the bus
    /// accepts, both ways. Default: unset.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The name a dialing node checks in every peer's certificate, one name
    /// for the whole cluster such as `gateway-bus`; unset, the peer's bus IP
    /// address, which the certificates must then carry. Default: unset.
    pub tls_server_name: Option<String>,
    /// The secrets still accepted from peers besides `secret`, during a
    /// rotation (every node gets the new `secret` with the old one here,
    /// then the old one goes). Default none.
    pub previous_secrets: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            bus_listen: None,
            bus_advertise: None,
            registry_ttl_ms: 3_000,
            route_policy: RoutePolicy::LeastConns,
            secret: None,
            secret_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_server_name: None,
            previous_secrets: Vec::new(),
        }
    }
}

/// The secrets never appear in a debug print (nor in a log).
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("bus_listen", &self.bus_listen)
            .field("bus_advertise", &self.bus_advertise)
            .field("registry_ttl_ms", &self.registry_ttl_ms)
            .field("route_policy", &self.route_policy)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_server_name", &self.tls_server_name)
            .field("previous_secrets", &self.previous_secrets.len())
            .finish()
    }
}

impl ClusterConfig {
    /// True when this node joins a cluster.
    pub fn enabled(&self) -> bool {
        self.bus_listen.is_some()
    }

    /// Reads `secret_file`, or `GATEWAY_CLUSTER_SECRET` when no secret is
    /// configured, into `secret`.
    pub fn read_secret(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.secret_file {
            if self.secret.is_some() {
                let why = "set cluster.secret or cluster.secret_file, not both".to_owned();
                return Err(ConfigError::invalid(
                    "cluster.secret_file",
                    path.display(),
                    why,
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                let why = format!("cannot read it: {e}");
                ConfigError::invalid("cluster.secret_file", path.display(), why)
            })?;
            self.secret = Some(text.trim_end_matches(['\n', '\r']).to_owned());
        } else if self.secret.is_none() {
            self.secret = std::env::var("GATEWAY_CLUSTER_SECRET").ok();
        }
        Ok(())
    }

    /// The secrets the bus accepts, the one it proves with first.
    pub fn secrets(&self) -> Vec<Vec<u8>> {
        let current = self.secret.iter();
        (current.chain(&self.previous_secrets))
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }

    /// `registry_ttl_ms` as a `Duration`.
    pub fn registry_ttl(&self) -> Duration {
        Duration::from_millis(self.registry_ttl_ms)
    }
}
