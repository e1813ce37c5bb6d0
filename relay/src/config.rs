//! Link configuration and node identity.
//!
//! One [`Config`] serves both ends: the dialer uses every field, the
//! acceptor only the timeouts and the codec [`Limits`].

use std::time::Duration;

use proto::bus::Limits;

use crate::Secrets;

/// Timers, batch sizes and limits of a bus link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A `PING` is sent when nothing was sent for this long while up (1 s).
    pub heartbeat: Duration,
    /// The link is declared down when nothing was received for this long
    /// (5 s). Must be larger than `heartbeat`.
    pub idle_timeout: Duration,
    /// Time from the start of a TCP connect to the `WELCOME` (dialer) or
    /// from accept to the `HELLO` (acceptor) (3 s).
    pub hello_timeout: Duration,
    /// An open batch is closed once it reaches this many bytes (64 KiB).
    pub max_batch_bytes: usize,
    /// An open batch is closed at most this long after its first envelope
    /// (2 ms).
    pub flush_delay: Duration,
    /// Most bytes held unsent plus unacked (32 MiB); past it, `send` refuses.
    pub max_queue_bytes: usize,
    /// First reconnect delay (50 ms).
    pub backoff_min: Duration,
    /// Largest reconnect delay (2 s).
    pub backoff_max: Duration,
    /// Codec limits applied to what the peer sends.
    pub limits: Limits,
    /// The cluster secrets: when there are any, both ends of every link
    /// prove one before anything else (`auth`); a peer that cannot is
    /// refused. Empty (the default): no authentication.
    pub secrets: Secrets,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            heartbeat: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(3),
            max_batch_bytes: 64 << 10,
            flush_delay: Duration::from_millis(2),
            max_queue_bytes: 32 << 20,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            limits: Limits::default(),
            secrets: Secrets::new::<&[u8]>(&[]),
        }
    }
}

/// Who a node shard is on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The node id (1..=64 bytes of UTF-8).
    pub node_id: String,
    /// Changes at every process start, so peers can tell a restart.
    pub incarnation: u64,
    /// The shard this link belongs to.
    pub shard: u16,
    /// How many shards the node runs.
    pub shards: u16,
}
