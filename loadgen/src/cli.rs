//! Command-line flags: options every scenario shares, then one subcommand
//! per scenario with its own bounds.
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use crate::nodes::Placement;
use crate::target::{Target, Wire};

/// `loadgen [COMMON FLAGS] <SCENARIO> [SCENARIO FLAGS]`
#[derive(Debug, clap::Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the gateway, nchan and nats-server"
)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
    /// Options every scenario shares.
    #[command(flatten)]
    pub common: Common,
}

/// Options every scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Server under test
    #[arg(long, value_enum, default_value = "gateway", global = true)]
    pub target: Target,
    /// Gateway framing: WebSocket binary, WebSocket JSON, or raw TCP
    #[arg(long, value_enum, default_value = "ws", global = true)]
    pub wire: Wire,
    /// Gateway QoS of direct sends: 0 (live only) or 1 (stored, acked by
    /// the receiver, which acks every delivery)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1), global = true)]
    pub qos: u8,
    /// Client address to connect to (the WebSocket, or raw TCP, listener)
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    pub addr: SocketAddrV4,
    /// Several nodes' client addresses (comma-separated or repeated; replaces
    /// --addr): connections spread over them by connection index
    #[arg(long, value_delimiter = ',', global = true)]
    pub addrs: Vec<SocketAddrV4>,
    /// Spread connections over this many consecutive IPv4 addresses from
    /// --addr's (the server must listen on 0.0.0.0); keeps each
    /// (source, destination, port) class under ~12k connections
    #[arg(long, default_value_t = 1, global = true)]
    pub spread: u32,
    /// HS256 secret for gateway tokens (the gateway's auth.jwt_secret)
    #[arg(
        long,
        env = "LOADGEN_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Speak TLS to the gateway (wss, or TLS on raw TCP), trusting only the
    /// certificates in this PEM file (the gateway's --tls-cert)
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Gateway WebSocket: offer permessage-deflate (RFC 7692, with
    /// client_no_context_takeover) and inflate what comes compressed
    #[arg(long, global = true)]
    pub deflate: bool,
    /// Message bodies padded with chat-like text instead of dots (what
    /// compression is measured on; dots compress unrealistically well)
    #[arg(long, global = true)]
    pub text: bool,
    /// Server name the certificate must carry (SNI), with --tls-ca
    #[arg(long, default_value = "localhost", global = true)]
    pub tls_name: String,
    /// Worker threads, each with its own fd table (0: one per 12,500 connections, at least 2)
    #[arg(long, default_value_t = 0, global = true)]
    pub workers: u64,
    /// New connections per second (all workers)
    #[arg(long, default_value_t = 5000.0, global = true)]
    pub rate: f64,
    /// Connection attempts in flight per worker at most
    #[arg(long, default_value_t = 1000, global = true)]
    pub in_flight: u64,
    /// Heartbeat period per connection in ms (0: none)
    #[arg(long, default_value_t = 25_000, global = true)]
    pub heartbeat_ms: u64,
    /// Deadline from connect to ready, in ms
    #[arg(long, default_value_t = 10_000, global = true)]
    pub handshake_timeout_ms: u64,
    /// Server process to measure (RSS, CPU); repeat for several (nginx workers)
    #[arg(long = "server-pid", alias = "gateway-pid", global = true)]
    pub server_pids: Vec<u32>,
    /// Gateway admin address (push API, /metrics scrape)
    #[arg(long, default_value = "127.0.0.1:8082", global = true)]
    pub admin: SocketAddr,
    /// Every node's admin address, in --addrs order (comma-separated or
    /// repeated): presence checks at each sender's node, bus metrics summed
    /// over the nodes; --admin stays the publisher's node
    #[arg(long, value_delimiter = ',', global = true)]
    pub admins: Vec<SocketAddr>,
    /// Longest wait for the cluster to know every member (GET /rooms) or
    /// receiver (GET /presence) before sending, in seconds
    #[arg(long, default_value_t = 60, global = true)]
    pub interest_timeout_secs: u64,
    /// nchan publisher address (HTTP; default: --addr)
    #[arg(long, global = true)]
    pub nchan_pub: Option<SocketAddr>,
    /// nats client (TCP) address for publishing
    #[arg(long, default_value = "127.0.0.1:4222", global = true)]
    pub nats_pub: SocketAddr,
    /// Where result directories go
    #[arg(long, default_value = "bench-results", global = true)]
    pub results: PathBuf,
    /// Write no result directory
    #[arg(long, global = true)]
    pub no_results: bool,
    /// Suffix of the result directory name (e.g. run1)
    #[arg(long, global = true)]
    pub label: Option<String>,
}

impl Common {
    /// The nodes' client addresses (`--addrs`, else `--addr`).
    pub fn client_addrs(&self) -> Vec<SocketAddrV4> {
        if self.addrs.is_empty() {
            vec![self.addr]
        } else {
            self.addrs.clone()
        }
    }

    /// The nodes' admin addresses (`--admins`, else `--admin`).
    pub fn admin_addrs(&self) -> Vec<SocketAddr> {
        if self.admins.is_empty() {
            vec![self.admin]
        } else {
            self.admins.clone()
        }
    }
}

/// The scenarios.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// Ramp to N connections, hold them with heartbeats, report memory
    Connect {
        /// Connections
        #[arg(long, default_value_t = 10_000)]
        conns: u64,
        /// Seconds to hold them after the ramp
        #[arg(long, default_value_t = 30)]
        hold_secs: u64,
        /// Longest ramp, in seconds
        #[arg(long, default_value_t = 600)]
        ramp_timeout_secs: u64,
    },
    /// Pairs of users exchange messages at a target rate
    Direct {
        /// Connections (pairs x 2)
        #[arg(long, default_value_t = 10_000)]
        conns: u64,
        /// Messages per second, all pairs together
        #[arg(long, default_value_t = 10_000.0)]
        msg_rate: f64,
        /// Seconds of sending
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Message body bytes (at least 32)
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Nodes of a pair's users with several --addrs: round-robin by
        /// connection index, split (user 2k on node k%N, 2k+1 on (k+1)%N),
        /// or together (both on node k%N)
        #[arg(long, value_enum, default_value = "round-robin")]
        pairs: Placement,
        /// With several nodes, check this many receivers (evenly spaced) at
        /// their sender's node before sending; 0: every receiver
        #[arg(long, default_value_t = 0)]
        presence_sample: u64,
    },
    /// Rooms of S members, a publisher sending numbered messages to each
    Fanout {
        /// Subscribers
        #[arg(long, default_value_t = 10_000)]
        conns: u64,
        /// Members per room
        #[arg(long, default_value_t = 10_000)]
        room_size: u64,
        /// Messages per room
        #[arg(long, default_value_t = 100)]
        messages: u64,
        /// Publishes per second, all rooms together (0: as fast as accepted)
        #[arg(long, default_value_t = 0.0)]
        pub_rate: f64,
        /// Message body bytes (at least 32)
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seconds to wait for deliveries after the last publish
        #[arg(long, default_value_t = 30)]
        drain_secs: u64,
    },
    /// Drop a fraction of the connections at once and time their return
    Storm {
        /// Connections
        #[arg(long, default_value_t = 10_000)]
        conns: u64,
        /// Fraction dropped (0..1)
        #[arg(long, default_value_t = 0.5)]
        fraction: f64,
        /// Seconds to wait for all to be back
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Hold N connections pinging every --ping-ms, upgrade the gateway's
    /// binary in place (POST /upgrade on --admin), and measure the pause
    /// the clients see (ping round trips), closes, and the old and new
    /// processes' memory and CPU (the monitor follows --server-pid, then
    /// the pid the upgrade answers)
    Upgrade {
        /// Connections
        #[arg(long, default_value_t = 10_000)]
        conns: u64,
        /// Ping period of every connection once ramped, in ms; each ping's
        /// round trip is measured (a pause longer than this reaches every
        /// connection)
        #[arg(long, default_value_t = 200)]
        ping_ms: u64,
        /// Seconds of pinging before the first upgrade
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
        /// Seconds of pinging after each upgrade's answer
        #[arg(long, default_value_t = 10)]
        after_secs: u64,
        /// Upgrades in a row
        #[arg(long, default_value_t = 1)]
        rounds: u64,
        /// Longest wait for an upgrade's answer, in seconds
        #[arg(long, default_value_t = 300)]
        upgrade_timeout_secs: u64,
        /// Longest ramp, in seconds
        #[arg(long, default_value_t = 900)]
        ramp_timeout_secs: u64,
    },
    /// Pairs exchange numbered messages for a long time while a fraction of
    /// the connections is cut at intervals; every accepted message checked
    Soak {
        /// Connections (pairs x 2)
        #[arg(long, default_value_t = 10_000)]
        conns: u64,
        /// Messages per second, all pairs together
        #[arg(long, default_value_t = 2_000.0)]
        msg_rate: f64,
        /// Seconds of sending
        #[arg(long, default_value_t = 3_600)]
        secs: u64,
        /// Seconds between cuts (0: none)
        #[arg(long, default_value_t = 60)]
        cut_every_secs: u64,
        /// Fraction of the connections each cut closes
        #[arg(long, default_value_t = 0.05)]
        cut_fraction: f64,
        /// Seconds per row of windows.csv
        #[arg(long, default_value_t = 10)]
        window_secs: u64,
        /// Members per room (every connection joins its user's room)
        #[arg(long, default_value_t = 100)]
        room_size: u64,
        /// QoS 0 room pushes per second through the admin API (0: none)
        #[arg(long, default_value_t = 0.0)]
        room_rate: f64,
    },
    /// Start a gateway and run every scenario small; exit non-zero unless
    /// every count matches
    Smoke {
        /// The gateway binary
        #[arg(long, default_value = "target/release/gateway")]
        gateway_bin: PathBuf,
        /// Connections per scenario
        #[arg(long, default_value_t = 200)]
        conns: u64,
    },
}
