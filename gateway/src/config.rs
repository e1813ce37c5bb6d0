//! Gateway configuration: a TOML file plus command-line flags that override
//! it. The doc comment of every field below is the operator's reference.
//!
//! `gateway` with no arguments runs a single node on loopback with the
//! defaults shown here (and a development JWT secret, loudly logged).
//!
//! Invariants: [`load`] returns only a validated [`Config`]: every limit is
//! positive, every timeout fits comfortably in an `Instant` addition (at most
//! one day), `send_queue_bytes` can hold at least one maximal frame, and at
//! most one JWT key is configured, stream names are names, `redis` is a
//! Redis URL (or a list of them), `cluster.bus_advertise` is a host without
//! a port (`validate`, `validate_sections`). Errors are one line an operator
//! can act on, naming the key, and the node exits non-zero.

pub mod admin;
mod auth;
mod backend;
mod bus_tls;
mod cluster;
mod compression;
mod limits;
mod presence;
mod print;
mod qos;
mod redis_access;
mod rooms;
mod tls;
pub use auth::AuthConfig;
pub use backend::BackendConfig;
pub use bus_tls::BusTls;
pub use cluster::{ClusterConfig, RoutePolicy};
pub use compression::CompressionConfig;
pub use limits::{DrainConfig, Limits};
pub use presence::PresenceConfig;
pub use print::commented_default;
pub use qos::{QosConfig, WhenFull};
pub use redis_access::RedisAccess;
pub use rooms::RoomsConfig;
pub use tls::{TlsConfig, TlsError};
mod cli;
mod cli_apply;
mod error;
#[cfg(test)]
mod tests;
mod validate;
mod validate_sections;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{KeySource, Verifier};
pub use cli::{parse_ttl, Cli, Command, RunArgs};
pub use error::ConfigError;
use validate::is_node_id_byte;

/// HMAC secret used when no key is configured. Anyone can mint tokens for
/// it: development only; the binary logs a loud warning when it is in use.
pub const DEV_SECRET: &str = "gateway-dev-secret-do-not-use-in-production";

/// Longest timeout or deadline accepted, in milliseconds (one day).
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// Largest `limits.max_frame_bytes` accepted (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Largest `shards` accepted.
pub const MAX_SHARDS: usize = 1024;

/// Which monoio driver each shard runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring, falling back to epoll (with a log line) where io_uring is
    /// refused, e.g. under a container seccomp profile.
    #[default]
    Auto,
    /// io_uring only; a shard that cannot build its ring fails to start.
    Uring,
    /// epoll (monoio's legacy driver) only.
    Legacy,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::Auto => "auto",
            Driver::Uring => "uring",
            Driver::Legacy => "legacy",
        })
    }
}

/// The whole configuration. In TOML, the top-level keys come first, then the
/// `[auth]`, `[limits]` and `[drain]` sections. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's id in the registry and in logs: ASCII letters, digits and
    /// `-_.:`, at most 128 bytes. Default: `"node-"` + the hostname, or
    /// `"node-1"` if the hostname is unavailable or unsuitable.
    pub node_id: String,
    /// WebSocket listener (clients connect to `/ws`). Default `127.0.0.1:8080`.
    pub ws_listen: SocketAddr,
    /// Raw TCP listener (length-prefixed frames). Default `127.0.0.1:8081`.
    pub tcp_listen: SocketAddr,
    /// Admin HTTP listener (metrics, health, push, drain). Keep it off public
    /// networks. Default `127.0.0.1:8082`.
    pub admin_listen: SocketAddr,
    /// Number of shards (threads with their own runtime and listeners);
    /// `0` means one per available CPU, see [`Config::shard_count`]. At most
    /// 1024. Default `0`.
    pub shards: usize,
    /// Runtime driver: `auto`, `uring` or `legacy`. Default `auto`.
    pub driver: Driver,
    /// Pin shard `i` to CPU `i % cpus`. Default `true`.
    pub pin_shards: bool,
    /// Timing-wheel tick in milliseconds: the granularity of every
    /// deadline (handshake, heartbeat, token expiry, retransmit), 1 to 1000.
    /// Default `50`.
    pub timer_tick_ms: u64,
    /// Read coalescing in microseconds, 0 to 100000: after a round that
    /// read input, a shard waits this long before it looks for more, so one
    /// wake-up reads what many connections sent meanwhile; it goes back to
    /// waking on readiness once a look finds nothing. For a node whose
    /// connections are mostly idle (heartbeats), at the price of up to this
    /// much added to the read of a frame that arrives during the wait (and
    /// to noticing that a blocked client's socket can take output again, or
    /// that a peer hung up); the runtime's timers round it up to whole
    /// milliseconds. Default `0`: every readiness is read at once.
    pub read_coalesce_us: u64,
    /// The binary an upgrade (`SIGUSR2`, `POST /upgrade`, `gateway
    /// upgrade`) starts: a path, relative to the config file's folder when
    /// set there. Default none: the file this node was started from, as
    /// it is at the time of the upgrade (so `install new-gateway PATH`
    /// then `kill -USR2 PID` upgrades).
    pub upgrade_binary: Option<std::path::PathBuf>,
    /// `[auth]`: how client tokens are verified.
    pub auth: AuthConfig,
    /// `[limits]`: per-connection limits.
    pub limits: Limits,
    /// `[drain]`: graceful shutdown.
    pub drain: DrainConfig,
    /// Redis URL (`redis://127.0.0.1:6379/0`) for QoS 1 inboxes shared by
    /// every node and surviving restarts. None: the bounded in-process store.
    /// Default none.
    pub redis: Option<String>,
    /// The Redis ACL user, when the URL names none. Default none.
    pub redis_username: Option<String>,
    /// A file holding the Redis password (kept out of the URL, so out of
    /// `ps` and the config file; or `GATEWAY_REDIS_PASSWORD`). Default none.
    pub redis_password_file: Option<std::path::PathBuf>,
    /// PEM file of the CA that signed Redis' certificate, for `rediss://`
    /// URLs (default: the system's roots).
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// What the files and the environment above say (read at load).
    #[serde(skip)]
    pub redis_access: RedisAccess,
    /// `[qos]`: QoS 1 inboxes, windows and retransmits.
    pub qos: QosConfig,
    /// `[rooms]`: which rooms keep history, and how much.
    pub rooms: RoomsConfig,
    /// `[compression]`: permessage-deflate on the WebSocket port.
    pub compression: CompressionConfig,
    /// `[presence]`: the backend's `online` and `offline` events.
    pub presence: PresenceConfig,
    /// `[cluster]`: the bus to other nodes, the registry, client routing.
    pub cluster: ClusterConfig,
    /// `[backend]`: the streams to and from the chat backend, rate limits.
    pub backend: BackendConfig,
    /// `[tls]`: wss and TLS on the client ports.
    pub tls: TlsConfig,
    /// `[admin]`: the admin API's token and allowed hosts and origins.
    pub admin: admin::AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Config {
            node_id: default_node_id(),
            ws_listen: loopback(8080),
            tcp_listen: loopback(8081),
            admin_listen: loopback(8082),
            shards: 0,
            driver: Driver::Auto,
            pin_shards: true,
            timer_tick_ms: 50,
            read_coalesce_us: 0,
            upgrade_binary: None,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            drain: DrainConfig::default(),
            redis: None,
            redis_username: None,
            redis_password_file: None,
            redis_ca_file: None,
            redis_access: RedisAccess::default(),
            qos: QosConfig::default(),
            rooms: RoomsConfig::default(),
            compression: CompressionConfig::default(),
            presence: PresenceConfig::default(),
            cluster: ClusterConfig::default(),
            backend: BackendConfig::default(),
            tls: TlsConfig::default(),
            admin: admin::AdminConfig::default(),
        }
    }
}

impl Config {
    /// Parses TOML text; `path` is only used in error messages and to
    /// resolve a relative `auth.jwt_public_key`. Does not validate.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::parse(path, text, &e))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        if let Some(key) = config.auth.jwt_public_key.take() {
            config.auth.jwt_public_key = Some(dir.join(key));
        }
        if let Some(jwks) = config.auth.jwks_file.take() {
            config.auth.jwks_file = Some(dir.join(jwks));
        }
        for f in [
            &mut config.tls.cert_file,
            &mut config.tls.key_file,
            &mut config.admin.token_file,
            &mut config.cluster.secret_file,
            &mut config.redis_password_file,
            &mut config.redis_ca_file,
            &mut config.upgrade_binary,
        ] {
            if let Some(p) = f.take() {
                *f = Some(dir.join(p));
            }
        }
        Ok(config)
    }

    /// Reads and parses a TOML file. Does not validate.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// The number of shards to run: `shards`, or with `0` the CPUs this
    /// process may use (affinity and cgroup quota respected; 1 if unknown).
    pub fn shard_count(&self) -> usize {
        match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// `timer_tick_ms` as a `Duration`.
    pub fn timer_tick(&self) -> Duration {
        Duration::from_millis(self.timer_tick_ms)
    }

    /// The JWT key to verify with, reading the public key file if one is
    /// configured, and whether it is [`DEV_SECRET`] (the caller warns).
    pub fn key_source(&self) -> Result<(KeySource, bool), ConfigError> {
        if let Some(path) = &self.auth.jwks_file {
            if self.auth.jwt_secret.is_some() || self.auth.jwt_public_key.is_some() {
                return Err(ConfigError::ConflictingKeys);
            }
            return match std::fs::read(path) {
                Ok(json) => Ok((KeySource::Jwks(json), false)),
                Err(source) => Err(ConfigError::ReadKey {
                    path: path.clone(),
                    source,
                }),
            };
        }
        match (&self.auth.jwt_secret, &self.auth.jwt_public_key) {
            (Some(_), Some(_)) => Err(ConfigError::ConflictingKeys),
            (Some(secret), None) if secret.is_empty() => Err(ConfigError::EmptySecret),
            (Some(secret), None) => Ok((KeySource::Secret(secret.as_bytes().to_vec()), false)),
            (None, Some(path)) => match std::fs::read(path) {
                Ok(pem) => Ok((KeySource::PublicKeyPem(pem), false)),
                Err(source) => Err(ConfigError::ReadKey {
                    path: path.clone(),
                    source,
                }),
            },
            (None, None) => Ok((KeySource::Secret(DEV_SECRET.as_bytes().to_vec()), true)),
        }
    }

    /// Builds the token verifier from [`Config::key_source`] and
    /// `limits.max_name_bytes`; the flag is true for [`DEV_SECRET`].
    pub fn verifier(&self) -> Result<(Verifier, bool), ConfigError> {
        let (source, dev) = self.key_source()?;
        let verifier = Verifier::new(source).map_err(|source| ConfigError::Key {
            path: (self.auth.jwks_file.clone())
                .or_else(|| self.auth.jwt_public_key.clone())
                .unwrap_or_default(),
            source,
        })?;
        let a = &self.auth;
        Ok((
            verifier
                .with_max_name_bytes(self.limits.max_name_bytes)
                .with_claims_policy(
                    a.audience.as_deref(),
                    a.issuer.as_deref(),
                    a.max_lifetime_secs,
                ),
            dev,
        ))
    }
}

/// Reads the config file named by `--config` (if any), applies the other
/// flags over it, and validates the result.
pub fn load(args: &RunArgs) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    args.apply(&mut config);
    config.admin.read_token_file()?;
    config.cluster.read_secret()?;
    config.redis_access = redis_access::read(
        config.redis_username.as_deref(),
        config.redis_password_file.as_ref(),
        config.redis_ca_file.as_ref(),
    )?;
    config.validate()?;
    Ok(config)
}

/// `"node-" + hostname` when the hostname is a valid id, else `"node-1"`.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() && host.len() <= 64 && host.bytes().all(is_node_id_byte) {
        format!("node-{host}")
    } else {
        "node-1".to_owned()
    }
}
