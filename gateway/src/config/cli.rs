//! Command-line flags. Every flag overrides the matching config-file
//! setting; flags are accepted before or after the subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Driver};

/// `gateway [FLAGS] [COMMAND]`: with no command, runs the gateway.
#[derive(Debug, clap::Parser)]
#[command(
    name = "gateway",
    version,
    about = "io_uring connection gateway for chat and IM systems"
)]
pub struct Cli {
    /// What to do instead of running the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file and overrides.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Print a token this node's config accepts (HS256 only)
    Token {
        /// User id (the token's `sub`)
        #[arg(long)]
        user: String,
        /// Device id (the token's `device` claim)
        #[arg(long)]
        device: Option<String>,
        /// Lifetime, e.g. 30s, 15m, 1h, 2d (or combined: 1h30m)
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Upgrade the running node (found by this config's admin_listen and
    /// admin token) to a new binary without dropping its listeners; waits
    /// until it is done
    Upgrade,
    /// Print the default config file, every key with one line of meaning,
    /// commented out
    Config,
}

/// The config file and the flags that override its settings.
#[derive(Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML config file; flags override its settings
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// WebSocket listen address (ws_listen)
    #[arg(long, value_name = "ADDR", global = true)]
    pub ws_listen: Option<SocketAddr>,
    /// Raw TCP listen address (tcp_listen)
    #[arg(long, value_name = "ADDR", global = true)]
    pub tcp_listen: Option<SocketAddr>,
    /// Admin HTTP listen address (admin_listen)
    #[arg(long, value_name = "ADDR", global = true)]
    pub admin_listen: Option<SocketAddr>,
    /// Number of shards, 0 = one per CPU (shards)
    #[arg(long, value_name = "N", global = true)]
    pub shards: Option<usize>,
    /// Runtime driver (driver)
    #[arg(long, value_enum, global = true)]
    pub driver: Option<Driver>,
    /// Microseconds a shard waits after a round that read input before it
    /// reads again, 0 = off (read_coalesce_us)
    #[arg(long, value_name = "US", global = true)]
    pub read_coalesce_us: Option<u64>,
    /// The binary an upgrade starts; default the one this node was started
    /// from (upgrade_binary)
    #[arg(long, value_name = "PATH", global = true)]
    pub upgrade_binary: Option<PathBuf>,
    /// HMAC secret for client JWTs (auth.jwt_secret); visible in `ps`, prefer the config file
    #[arg(long, value_name = "SECRET", global = true)]
    pub jwt_secret: Option<String>,
    /// Redis URL for QoS 1 inboxes (redis); none = in-process store
    #[arg(long, value_name = "URL", global = true)]
    pub redis: Option<String>,
    /// File holding the Redis password (redis_password_file; or
    /// GATEWAY_REDIS_PASSWORD)
    #[arg(long, value_name = "PATH", global = true)]
    pub redis_password_file: Option<PathBuf>,
    /// Redis ACL user when the URL names none (redis_username)
    #[arg(long, value_name = "USER", global = true)]
    pub redis_username: Option<String>,
    /// CA certificate (PEM) that signed Redis' certificate, for rediss://
    /// (redis_ca_file)
    #[arg(long, value_name = "PATH", global = true)]
    pub redis_ca_file: Option<PathBuf>,
    /// QoS 1 messages kept per user by the in-process store (qos.inbox_per_user)
    #[arg(long, value_name = "N", global = true)]
    pub inbox_per_user: Option<usize>,
    /// A direct QoS 1 send to a full inbox: refuse (INBOX_FULL) or drop the
    /// oldest (qos.direct_when_full)
    #[arg(long, value_name = "POLICY", global = true)]
    pub direct_when_full: Option<crate::config::WhenFull>,
    /// First QoS 1 retransmit timeout in ms (qos.retransmit_ms)
    #[arg(long, value_name = "MS", global = true)]
    pub retransmit_ms: Option<u64>,
    /// Rooms that keep history, by name pattern with `*` (rooms.history;
    /// repeat it or separate with commas)
    #[arg(long, value_name = "PATTERN", value_delimiter = ',', global = true)]
    pub room_history: Vec<String>,
    /// Messages of history kept per room (rooms.history_size)
    #[arg(long, value_name = "N", global = true)]
    pub room_history_size: Option<usize>,
    /// Seconds a room's history is kept (rooms.history_secs)
    #[arg(long, value_name = "SECS", global = true)]
    pub room_history_secs: Option<u64>,
    /// PEM public key file for client JWTs (auth.jwt_public_key)
    #[arg(long, value_name = "PATH", global = true)]
    pub jwt_public_key: Option<PathBuf>,
    /// This node's id (node_id)
    #[arg(long, value_name = "ID", global = true)]
    pub node_id: Option<String>,
    /// Largest frame in bytes (limits.max_frame_bytes)
    #[arg(long, value_name = "BYTES", global = true)]
    pub max_frame_bytes: Option<usize>,
    /// Slow-consumer cap per connection in bytes (limits.send_queue_bytes)
    #[arg(long, value_name = "BYTES", global = true)]
    pub send_queue_bytes: Option<usize>,
    /// Accept-to-authenticated deadline in ms (limits.handshake_timeout_ms)
    #[arg(long, value_name = "MS", global = true)]
    pub handshake_timeout_ms: Option<u64>,
    /// Close after this long without a client frame, in ms (limits.heartbeat_timeout_ms)
    #[arg(long, value_name = "MS", global = true)]
    pub heartbeat_timeout_ms: Option<u64>,
    /// Drain deadline in ms (drain.deadline_ms)
    #[arg(long, value_name = "MS", global = true)]
    pub drain_deadline_ms: Option<u64>,
    /// Bus listen address; shard i takes port + i (cluster.bus_listen)
    #[arg(long, value_name = "ADDR", global = true)]
    pub bus_listen: Option<SocketAddr>,
    /// File holding the cluster secret the bus links prove
    /// (cluster.secret_file; or GATEWAY_CLUSTER_SECRET)
    #[arg(long, value_name = "PATH", global = true)]
    pub cluster_secret_file: Option<PathBuf>,
    /// Host peers dial for this node (cluster.bus_advertise)
    #[arg(long, value_name = "HOST", global = true)]
    pub bus_advertise: Option<String>,
    /// GET /route policy (cluster.route_policy)
    #[arg(long, value_enum, global = true)]
    pub route_policy: Option<super::RoutePolicy>,
    /// Registry entry lifetime in ms (cluster.registry_ttl_ms)
    #[arg(long, value_name = "MS", global = true)]
    pub registry_ttl_ms: Option<u64>,
    /// Write lifecycle events to the events stream (backend.events)
    #[arg(long, global = true)]
    pub events: bool,
    /// Grace in ms before a user's offline event (presence.offline_grace_ms)
    #[arg(long, value_name = "MS", global = true)]
    pub offline_grace_ms: Option<u64>,
    /// Downstream claim idle time in ms (backend.claim_idle_ms)
    #[arg(long, value_name = "MS", global = true)]
    pub claim_idle_ms: Option<u64>,
    /// Client sends per second per connection, 0 = none (backend.rate_per_conn)
    #[arg(long, value_name = "N", global = true)]
    pub rate_per_conn: Option<u32>,
    /// Client messages per second per room, 0 = none (backend.rate_per_room)
    #[arg(long, value_name = "N", global = true)]
    pub rate_per_room: Option<u32>,
    /// Backend pushes per second per target, 0 = none (backend.rate_per_target)
    #[arg(long, value_name = "N", global = true)]
    pub rate_per_target: Option<u32>,
    /// Room permissions in tokens: enforce, require or ignore (auth.rooms_claim)
    #[arg(long, value_enum, global = true)]
    pub rooms_claim: Option<crate::grants::RoomsClaim>,
    /// Connections the node holds at most, 0 = no cap (limits.max_conns)
    #[arg(long, value_name = "N", global = true)]
    pub max_conns: Option<u64>,
    /// Concurrent connections per IP, 0 = none (limits.max_conns_per_ip)
    #[arg(long, value_name = "N", global = true)]
    pub max_conns_per_ip: Option<u32>,
    /// New connections per second per IP, 0 = none (limits.connect_rate_per_ip)
    #[arg(long, value_name = "N", global = true)]
    pub connect_rate_per_ip: Option<u32>,
    /// Frames per second per connection, 0 = none (limits.max_frames_per_sec)
    #[arg(long, value_name = "N", global = true)]
    pub max_frames_per_sec: Option<u32>,
    /// Required token audience (auth.audience)
    #[arg(long, value_name = "AUD", global = true)]
    pub audience: Option<String>,
    /// Required token issuer (auth.issuer)
    #[arg(long, value_name = "ISS", global = true)]
    pub issuer: Option<String>,
    /// TLS certificate chain, PEM: wss and TLS on the client ports (tls.cert_file)
    #[arg(long, value_name = "PATH", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (tls.key_file)
    #[arg(long, value_name = "PATH", global = true)]
    pub tls_key: Option<PathBuf>,
    /// This node's bus certificate chain, PEM: TLS on the bus (cluster.tls_cert_file)
    #[arg(long, value_name = "PATH", global = true)]
    pub bus_tls_cert: Option<PathBuf>,
    /// The bus certificate's private key, PEM (cluster.tls_key_file)
    #[arg(long, value_name = "PATH", global = true)]
    pub bus_tls_key: Option<PathBuf>,
    /// The cluster CA, PEM (cluster.tls_ca_file)
    #[arg(long, value_name = "PATH", global = true)]
    pub bus_tls_ca: Option<PathBuf>,
    /// Name checked in peers' bus certificates (cluster.tls_server_name)
    #[arg(long, value_name = "NAME", global = true)]
    pub bus_tls_server_name: Option<String>,
    /// JSON Web Key Set file; the token's kid picks the key (auth.jwks_file)
    #[arg(long, value_name = "PATH", global = true)]
    pub jwks_file: Option<PathBuf>,
    /// Longest token lifetime accepted in seconds, 0 = any (auth.max_lifetime_secs)
    #[arg(long, value_name = "SECS", global = true)]
    pub max_token_lifetime_secs: Option<u64>,
    /// Bearer token for the admin API (admin.token); visible in `ps`,
    /// prefer GATEWAY_ADMIN_TOKEN or the config file
    #[arg(
        long,
        value_name = "TOKEN",
        env = "GATEWAY_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for RunArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunArgs")
            .field("config", &self.config)
            .field("ws_listen", &self.ws_listen)
            .field("tcp_listen", &self.tcp_listen)
            .field("admin_listen", &self.admin_listen)
            .field("shards", &self.shards)
            .field("driver", &self.driver)
            .field("read_coalesce_us", &self.read_coalesce_us)
            .field("upgrade_binary", &self.upgrade_binary)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_public_key", &self.jwt_public_key)
            .field("node_id", &self.node_id)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("send_queue_bytes", &self.send_queue_bytes)
            .field("handshake_timeout_ms", &self.handshake_timeout_ms)
            .field("heartbeat_timeout_ms", &self.heartbeat_timeout_ms)
            .field("drain_deadline_ms", &self.drain_deadline_ms)
            .field("redis", &self.redis.as_ref().map(|_| "<set>"))
            .field("inbox_per_user", &self.inbox_per_user)
            .field("direct_when_full", &self.direct_when_full)
            .field("retransmit_ms", &self.retransmit_ms)
            .field("bus_listen", &self.bus_listen)
            .field("bus_advertise", &self.bus_advertise)
            .field("route_policy", &self.route_policy)
            .field("registry_ttl_ms", &self.registry_ttl_ms)
            .field("events", &self.events)
            .field("offline_grace_ms", &self.offline_grace_ms)
            .field("claim_idle_ms", &self.claim_idle_ms)
            .field("rate_per_conn", &self.rate_per_conn)
            .field("rate_per_room", &self.rate_per_room)
            .field("rate_per_target", &self.rate_per_target)
            .field("rooms_claim", &self.rooms_claim)
            .field("jwks_file", &self.jwks_file)
            .field("tls_cert", &self.tls_cert)
            .field("bus_tls_cert", &self.bus_tls_cert)
            .field("bus_tls_key", &self.bus_tls_key)
            .field("bus_tls_ca", &self.bus_tls_ca)
            .field("bus_tls_server_name", &self.bus_tls_server_name)
            .field("tls_key", &self.tls_key)
            .field("max_conns", &self.max_conns)
            .field("max_conns_per_ip", &self.max_conns_per_ip)
            .field("connect_rate_per_ip", &self.connect_rate_per_ip)
            .field("max_frames_per_sec", &self.max_frames_per_sec)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("max_token_lifetime_secs", &self.max_token_lifetime_secs)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Longest duration [`parse_ttl`] accepts (ten years).
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses a duration such as `30s`, `15m`, `1h`, `2d`, `500ms` or a sum of
/// them (`1h30m`). Zero, a bare number and anything above ten years are
/// refused.
pub fn parse_ttl(text: &str) -> Result<Duration, ConfigError> {
    let err = |reason| ConfigError::Duration {
        value: text.to_owned(),
        reason,
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        let part = number.checked_mul(unit_ms).ok_or_else(|| err("too long"))?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| err("too long"))?;
    }
    if total.is_zero() {
        return Err(err("must be greater than zero"));
    }
    if total > MAX_TTL {
        return Err(err("too long (at most 3650d)"));
    }
    Ok(total)
}
