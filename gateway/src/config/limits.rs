//! `[limits]` (what one connection may use) and `[drain]` (how a node
//! stops).
use std::time::Duration;

use serde::Deserialize;

/// `[limits]`: what one connection may use. Every value must be positive.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame accepted from or sent to a client, in bytes; a client
    /// frame above it closes the connection. At most 16 MiB. Default `65536`.
    pub max_frame_bytes: usize,
    /// Time from TCP accept to an authenticated session, in ms; covers the
    /// WebSocket upgrade and the auth frame. At most one day. Default `10000`.
    pub handshake_timeout_ms: u64,
    /// Heartbeat interval told to clients, in ms. Default `25000`.
    pub heartbeat_interval_ms: u32,
    /// A connection with no frame from the client for this long is closed,
    /// in ms. Must exceed `heartbeat_interval_ms`; at most one day.
    /// Default `60000`.
    pub heartbeat_timeout_ms: u64,
    /// Slow-consumer cap: bytes queued for one connection before it is
    /// closed. At least `max_frame_bytes + 16`. Default `262144`.
    pub send_queue_bytes: usize,
    /// Rooms one connection may join at once. Default `64`.
    pub max_rooms_per_conn: usize,
    /// Longest user, room or device name, in bytes (at most 1024).
    /// Default `128`.
    pub max_name_bytes: usize,
    /// Largest WebSocket upgrade request (headers included), in bytes,
    /// 1024 to 1048576. Default `8192`.
    pub max_handshake_bytes: usize,
    /// Largest frame accepted before authentication (an `Auth` frame), in
    /// bytes; a bigger one closes the connection with FRAME_TOO_LARGE
    /// (1009), so an unauthenticated client cannot pin a large buffer.
    /// At least 256. Default `4096`.
    pub max_preauth_frame_bytes: usize,
    /// Connections the node holds at most; past it new ones are closed at
    /// accept (0: no cap but the descriptor limit). Default `0`.
    pub max_conns: u64,
    /// Concurrent connections from one IP address at most (0: none; off by
    /// default: carriers put many phones behind one address). Default `0`.
    pub max_conns_per_ip: u32,
    /// New connections per second from one IP address (a burst of twice
    /// that; 0: none). Default `0`.
    pub connect_rate_per_ip: u32,
    /// Frames per second one authenticated connection may send (a burst of
    /// twice that); a client past it is closed with RATE_LIMITED. No app
    /// sends anywhere near it: it stops floods. 0: none. Default `10000`.
    pub max_frames_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 65_536,
            handshake_timeout_ms: 10_000,
            heartbeat_interval_ms: 25_000,
            heartbeat_timeout_ms: 60_000,
            send_queue_bytes: 262_144,
            max_rooms_per_conn: 64,
            max_name_bytes: 128,
            max_handshake_bytes: 8192,
            max_preauth_frame_bytes: 4096,
            max_conns: 0,
            max_conns_per_ip: 0,
            connect_rate_per_ip: 0,
            max_frames_per_sec: 10_000,
        }
    }
}

impl Limits {
    /// `handshake_timeout_ms` as a `Duration`.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// `heartbeat_interval_ms` as a `Duration`.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.heartbeat_interval_ms))
    }

    /// `heartbeat_timeout_ms` as a `Duration`.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }
}

/// `[drain]`: what happens on SIGTERM or an admin drain.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// After go-away is sent, how long to wait for clients to leave before
    /// closing the rest and exiting, in ms (at most one day). Default `30000`.
    pub deadline_ms: u64,
    /// Reconnect hint sent in go-away, in ms: clients should wait about this
    /// long (plus jitter) before reconnecting elsewhere. Default `1000`.
    pub reconnect_after_ms: u32,
    /// In an upgrade, the connections that cannot move (TLS) are told to
    /// reconnect after `reconnect_after_ms` plus a random share of this
    /// window, in ms (at most one hour), so they come back spread over it,
    /// never all at once. Default `10000`.
    pub upgrade_spread_ms: u32,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            deadline_ms: 30_000,
            reconnect_after_ms: 1_000,
            upgrade_spread_ms: 10_000,
        }
    }
}

impl DrainConfig {
    /// `deadline_ms` as a `Duration`.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// `reconnect_after_ms` as a `Duration`.
    pub fn reconnect_after(&self) -> Duration {
        Duration::from_millis(u64::from(self.reconnect_after_ms))
    }
}
