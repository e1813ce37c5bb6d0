//! Per-shard counters: each shard writes only its own `ShardStats` (relaxed
//! atomics on a cache line no other core writes, so they cost what a plain
//! add costs); the control plane reads them all when `/metrics` is scraped
//! (`control::metrics` renders them and names every metric).
//!
//! Base layer: imports nothing of this crate but `histogram`.
pub(crate) mod histogram;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use proto::v1::{ErrorCode, GoAwayReason};

use histogram::Histogram;

/// Error codes counted in `gateway_errors_total{code}`.
pub(crate) const ERROR_CODES: [ErrorCode; 15] = [
    ErrorCode::BadFrame,
    ErrorCode::Unauthenticated,
    ErrorCode::NotAuthenticated,
    ErrorCode::AuthTimeout,
    ErrorCode::AlreadyAuthenticated,
    ErrorCode::FrameTooLarge,
    ErrorCode::UnknownFrame,
    ErrorCode::InvalidArgument,
    ErrorCode::TooManyRooms,
    ErrorCode::SlowConsumer,
    ErrorCode::Overloaded,
    ErrorCode::Unavailable,
    ErrorCode::InboxFull,
    ErrorCode::Forbidden,
    ErrorCode::RateLimited,
];

/// Go-away reasons counted in `gateway_go_away_total{reason}`.
pub(crate) const GO_AWAY: [GoAwayReason; 4] = [
    GoAwayReason::Draining,
    GoAwayReason::Kicked,
    GoAwayReason::TokenExpired,
    GoAwayReason::HeartbeatTimeout,
];

/// One bus link of a shard: the peer, its state and its counters.
pub type BusRow = (Arc<str>, relay::LinkState, relay::LinkStats);

/// The counters of one shard.
#[derive(Default)]
pub struct ShardStats {
    /// Open WebSocket connections.
    pub conns_ws: AtomicI64,
    /// Open raw TCP connections.
    pub conns_tcp: AtomicI64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Client frames decoded.
    pub frames_in: AtomicU64,
    /// Server frames queued for sending.
    pub frames_out: AtomicU64,
    /// Bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Bytes written to clients.
    pub bytes_out: AtomicU64,
    /// Write system calls (one per connection per flush round).
    pub writes: AtomicU64,
    /// Messages delivered to a connection.
    pub deliveries: AtomicU64,
    /// Connections closed because their send queue passed its cap.
    pub slow_consumer_closes: AtomicU64,
    /// Cross-shard messages that waited because an inbox was full.
    pub mesh_backlogged: AtomicU64,
    /// QoS 1 messages stored in an inbox.
    pub qos_appends: AtomicU64,
    /// QoS 1 sends recognised as retries of a stored message.
    pub qos_dedupe_hits: AtomicU64,
    /// QoS 1 messages sent again for want of an ack.
    pub qos_retransmits: AtomicU64,
    /// Inbox reads for resuming connections.
    pub qos_resumes: AtomicU64,
    /// Gap frames sent (messages dropped by a retention bound).
    pub qos_gaps: AtomicU64,
    /// Inbox store operations that failed.
    pub qos_store_errors: AtomicU64,
    /// Room and admin QoS 1 appends submitted from the retry queue (refused
    /// by the store, or queued behind one that was).
    pub qos_append_retries: AtomicU64,
    /// Room and admin QoS 1 appends given up: the retry queue was full.
    pub qos_append_dropped: AtomicU64,
    /// Direct QoS 1 sends refused because the recipient's inbox was full.
    pub qos_inbox_full: AtomicU64,
    /// Room messages stored in their room's history.
    pub room_appends: AtomicU64,
    /// Room messages without a sender to tell (QoS 0, admin pushes) that
    /// the history store refused: not delivered.
    pub room_append_dropped: AtomicU64,
    /// Joins that read a room's history (recovery, recent, position).
    pub room_reads: AtomicU64,
    /// Room gaps sent (a join that could not recover, a hole skipped).
    pub room_gaps: AtomicU64,
    /// Lifecycle events dropped: the upstream writer's queue was full.
    pub events_dropped: AtomicU64,
    /// Envelopes a bus link refused (its queue full: QoS 0 lost).
    pub bus_refused: AtomicU64,
    /// Envelopes received over the bus.
    pub bus_envelopes_in: AtomicU64,
    /// Envelopes received over the bus and not understood.
    pub bus_bad_envelopes: AtomicU64,
    /// Bus peers refused because they did not prove the cluster secret (or
    /// asked for one this node does not have).
    pub bus_auth_failures: AtomicU64,
    /// The shard's links, as it last published them (every 2 s).
    pub(crate) bus: std::sync::Mutex<Vec<BusRow>>,
    pub(crate) inbox_messages: AtomicI64,
    pub(crate) inbox_bytes: AtomicI64,
    pub(crate) store_latency: Histogram,
    pub(crate) errors: [AtomicU64; ERROR_CODES.len()],
    pub(crate) go_aways: [AtomicU64; GO_AWAY.len()],
    pub(crate) handshake: Histogram,
}

impl ShardStats {
    /// Counts an error frame sent to a client.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a go-away sent to a client.
    pub fn go_away(&self, reason: GoAwayReason) {
        if let Some(i) = GO_AWAY.iter().position(|r| *r == reason) {
            self.go_aways[i].fetch_add(1, Relaxed);
        }
    }

    /// Records the time from accept to authenticated.
    pub fn handshake(&self, took: Duration) {
        self.handshake.record(took);
    }

    /// Records the time an append spent in the inbox store.
    pub fn store_latency(&self, took: Duration) {
        self.store_latency.record(took);
    }

    /// Sets the in-process inbox gauges.
    pub fn set_inbox(&self, messages: usize, bytes: usize) {
        self.inbox_messages.store(messages as i64, Relaxed);
        self.inbox_bytes.store(bytes as i64, Relaxed);
    }

    /// Open connections (both transports).
    pub fn conns(&self) -> i64 {
        self.conns_ws.load(Relaxed) + self.conns_tcp.load(Relaxed)
    }

    /// Publishes the shard's links (called by the shard, every few seconds).
    pub fn set_bus(&self, rows: Vec<BusRow>) {
        if let Ok(mut b) = self.bus.lock() {
            *b = rows;
        }
    }

    /// The shard's links as last published.
    pub fn bus(&self) -> Vec<BusRow> {
        self.bus.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The counters that only grow, in a fixed order: what an upgrade hands
    /// the new process (gauges and histograms start anew there).
    fn monotonic(&self) -> impl Iterator<Item = &AtomicU64> {
        [
            &self.accepted,
            &self.frames_in,
            &self.frames_out,
            &self.bytes_in,
            &self.bytes_out,
            &self.writes,
            &self.deliveries,
            &self.slow_consumer_closes,
            &self.mesh_backlogged,
            &self.qos_appends,
            &self.qos_dedupe_hits,
            &self.qos_retransmits,
            &self.qos_resumes,
            &self.qos_gaps,
            &self.qos_store_errors,
            &self.qos_append_retries,
            &self.qos_append_dropped,
            &self.qos_inbox_full,
            &self.events_dropped,
            &self.bus_refused,
            &self.bus_envelopes_in,
            &self.bus_bad_envelopes,
        ]
        .into_iter()
        .chain(&self.errors)
        .chain(&self.go_aways)
        // New counters go last: an upgrade from an older binary hands over
        // a prefix of this list.
        .chain([
            &self.room_appends,
            &self.room_append_dropped,
            &self.room_reads,
            &self.room_gaps,
            &self.bus_auth_failures,
        ])
    }

    /// The counters that only grow (see `add_totals`).
    pub(crate) fn totals(&self) -> Vec<u64> {
        self.monotonic().map(|c| c.load(Relaxed)).collect()
    }

    /// Adds totals read by `totals` (of another process's shard): the
    /// counters go on from there. Extra or missing entries are ignored.
    pub(crate) fn add_totals(&self, totals: &[u64]) {
        for (c, n) in self.monotonic().zip(totals) {
            c.fetch_add(*n, Relaxed);
        }
    }

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{Relaxed, ShardStats};
    use proto::v1::{ErrorCode, GoAwayReason};

    /// An upgrade's new process goes on from the old one's totals: every
    /// counter that only grows is carried, gauges are not.
    #[test]
    fn totals_carry_every_counter_and_no_gauge() {
        let old = ShardStats::default();
        old.accepted.store(5, Relaxed);
        old.bus_bad_envelopes.store(2, Relaxed);
        old.error(ErrorCode::RateLimited);
        old.go_away(GoAwayReason::HeartbeatTimeout);
        old.conns_ws.store(9, Relaxed);
        let new = ShardStats::default();
        new.accepted.store(1, Relaxed);
        new.add_totals(&old.totals());
        assert_eq!(new.accepted.load(Relaxed), 6);
        assert_eq!(new.bus_bad_envelopes.load(Relaxed), 2);
        assert_eq!(new.errors.iter().map(|c| c.load(Relaxed)).sum::<u64>(), 1);
        assert_eq!(new.go_aways.iter().map(|c| c.load(Relaxed)).sum::<u64>(), 1);
        assert_eq!(new.conns_ws.load(Relaxed), 0);
        // A shorter list (an older binary's) adds what it has.
        new.add_totals(&[1]);
        assert_eq!(new.accepted.load(Relaxed), 7);
    }
}
