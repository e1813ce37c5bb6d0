//! `[qos]`: at-least-once delivery (QoS 1) inboxes, windows and retransmits.
use std::time::Duration;

use serde::Deserialize;

/// `[qos]`: how QoS 1 messages are kept and retransmitted.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QosConfig {
    /// Unacknowledged messages sent to one connection before it waits for
    /// acks (later messages stay in the inbox and follow in order). Default `256`.
    pub inflight_window: usize,
    /// First retransmit timeout for an unacknowledged message, in ms; doubles
    /// on each retransmit up to `retransmit_max_ms`. Default `2000`.
    pub retransmit_ms: u64,
    /// Largest retransmit timeout, in ms. Default `30000`.
    pub retransmit_max_ms: u64,
    /// In-process store: messages kept per user; past it the oldest is
    /// dropped and the client is told with a `Gap` frame. Default `1000`.
    pub inbox_per_user: usize,
    /// In-process store: payload bytes kept per shard. Default 64 MiB.
    pub inbox_total_bytes: usize,
    /// Age after which a stored message is dropped, in seconds (the Redis
    /// store applies it as key expiry). Default `86400`.
    pub retention_secs: u64,
    /// Client message ids remembered per recipient (in-process store) for
    /// dedupe of retried sends. Default `4096`.
    pub dedupe_window: usize,
    /// Redis store: seconds a client message id is remembered. Default `600`.
    pub dedupe_secs: u64,
    /// Appends waiting on the store per shard before sends are refused with
    /// OVERLOADED. Default `65536`.
    pub max_pending_appends: usize,
    /// A client's direct QoS 1 send to a user whose inbox is at
    /// `inbox_per_user` (or, in process, the shard at `inbox_total_bytes`):
    /// `"refuse"` answers `INBOX_FULL` before accepting it, so nothing
    /// accepted is ever dropped by the bound (不丢; the sender retries with
    /// the same client message id once the recipient acks); `"drop_oldest"`
    /// stores it and drops the oldest (devices that had not acked it get a
    /// `gap`). Room broadcasts and admin pushes always drop the oldest: a
    /// room cannot be refused per member. Default `"refuse"`.
    pub direct_when_full: WhenFull,
}

/// What an append does when the user's inbox is at its bound.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum WhenFull {
    /// Store it and drop the oldest (devices that had not acked it are told
    /// with a `gap`).
    DropOldest,
    /// Refuse it (`StoreErrorKind::Full`), nothing stored.
    Refuse,
}

impl Default for QosConfig {
    fn default() -> Self {
        QosConfig {
            inflight_window: 256,
            retransmit_ms: 2_000,
            retransmit_max_ms: 30_000,
            inbox_per_user: 1_000,
            inbox_total_bytes: 64 << 20,
            retention_secs: 86_400,
            dedupe_window: 4_096,
            dedupe_secs: 600,
            max_pending_appends: 65_536,
            direct_when_full: WhenFull::Refuse,
        }
    }
}

impl QosConfig {
    /// `retention_secs` as a `Duration`.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }
}
