//! Per-shard counters, summed when `/metrics` is scraped.
//!
//! Each shard writes only its own `ShardStats` (relaxed atomics on a cache
//! line no other core writes, so they cost what a plain add costs); the admin
//! thread reads them all and renders Prometheus text. Metric names live here
//! and nowhere else.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use proto::v1::{ErrorCode, GoAwayReason};

use super::histogram::{render_histogram, Histogram};

/// Error codes counted in `gateway_errors_total{code}`.
const ERROR_CODES: [ErrorCode; 15] = [
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
const GO_AWAY: [GoAwayReason; 4] = [
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
    /// Lifecycle events dropped: the upstream writer's queue was full.
    pub events_dropped: AtomicU64,
    /// Envelopes a bus link refused (its queue full: QoS 0 lost).
    pub bus_refused: AtomicU64,
    /// Envelopes received over the bus.
    pub bus_envelopes_in: AtomicU64,
    /// Envelopes received over the bus and not understood.
    pub bus_bad_envelopes: AtomicU64,
    /// The shard's links, as it last published them (every 2 s).
    bus: std::sync::Mutex<Vec<BusRow>>,
    inbox_messages: AtomicI64,
    inbox_bytes: AtomicI64,
    store_latency: Histogram,
    errors: [AtomicU64; ERROR_CODES.len()],
    go_aways: [AtomicU64; GO_AWAY.len()],
    handshake: Histogram,
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

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Reads one counter of a shard.
type Field = fn(&ShardStats) -> &AtomicU64;

/// Renders every shard's counters as Prometheus text.
pub fn render(shards: &[Arc<ShardStats>], draining: bool) -> String {
    let mut o = String::with_capacity(4096);
    gauge_header(&mut o, "gateway_connections", "Open connections.");
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(
            o,
            "gateway_connections{{shard=\"{i}\",transport=\"ws\"}} {}",
            s.conns_ws.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "gateway_connections{{shard=\"{i}\",transport=\"tcp\"}} {}",
            s.conns_tcp.load(Relaxed)
        );
    }
    let per_shard: [(&str, &str, Field); 19] = [
        ("gateway_accepted_total", "Connections accepted.", |s| {
            &s.accepted
        }),
        ("gateway_frames_in_total", "Client frames decoded.", |s| {
            &s.frames_in
        }),
        ("gateway_frames_out_total", "Server frames queued.", |s| {
            &s.frames_out
        }),
        ("gateway_bytes_in_total", "Bytes read from clients.", |s| {
            &s.bytes_in
        }),
        (
            "gateway_bytes_out_total",
            "Bytes written to clients.",
            |s| &s.bytes_out,
        ),
        (
            "gateway_writes_total",
            "Write system calls to clients.",
            |s| &s.writes,
        ),
        (
            "gateway_deliveries_total",
            "Messages delivered to connections.",
            |s| &s.deliveries,
        ),
        (
            "gateway_slow_consumer_closes_total",
            "Connections closed for passing the send-queue cap.",
            |s| &s.slow_consumer_closes,
        ),
        (
            "gateway_mesh_backlogged_total",
            "Cross-shard messages delayed by a full inbox.",
            |s| &s.mesh_backlogged,
        ),
        (
            "gateway_handshakes_total",
            "Connections authenticated.",
            |s| &s.handshake.count,
        ),
        ("gateway_qos_appends_total", "QoS 1 messages stored.", |s| {
            &s.qos_appends
        }),
        (
            "gateway_qos_dedupe_hits_total",
            "QoS 1 sends recognised as retries.",
            |s| &s.qos_dedupe_hits,
        ),
        (
            "gateway_qos_retransmits_total",
            "QoS 1 messages sent again for want of an ack.",
            |s| &s.qos_retransmits,
        ),
        (
            "gateway_qos_resumes_total",
            "Inbox reads for resuming connections.",
            |s| &s.qos_resumes,
        ),
        ("gateway_qos_gaps_total", "Gap frames sent.", |s| {
            &s.qos_gaps
        }),
        (
            "gateway_qos_store_errors_total",
            "Inbox store operations that failed.",
            |s| &s.qos_store_errors,
        ),
        (
            "gateway_qos_append_retries_total",
            "Room and admin QoS 1 appends submitted from the retry queue.",
            |s| &s.qos_append_retries,
        ),
        (
            "gateway_qos_append_dropped_total",
            "Room and admin QoS 1 appends given up (retry queue full).",
            |s| &s.qos_append_dropped,
        ),
        (
            "gateway_qos_inbox_full_total",
            "Direct QoS 1 sends refused with INBOX_FULL (recipient's inbox at its bound).",
            |s| &s.qos_inbox_full,
        ),
    ];
    for (name, help, field) in per_shard {
        counter_header(&mut o, name, help);
        for (i, s) in shards.iter().enumerate() {
            let _ = writeln!(o, "{name}{{shard=\"{i}\"}} {}", field(s).load(Relaxed));
        }
    }
    counter_header(
        &mut o,
        "gateway_errors_total",
        "Error frames sent, by code.",
    );
    for (i, code) in ERROR_CODES.iter().enumerate() {
        let n: u64 = shards.iter().map(|s| s.errors[i].load(Relaxed)).sum();
        let _ = writeln!(
            o,
            "gateway_errors_total{{code=\"{}\"}} {n}",
            code.as_str_name()
        );
    }
    counter_header(
        &mut o,
        "gateway_go_away_total",
        "Go-away frames sent, by reason.",
    );
    for (i, reason) in GO_AWAY.iter().enumerate() {
        let n: u64 = shards.iter().map(|s| s.go_aways[i].load(Relaxed)).sum();
        let _ = writeln!(
            o,
            "gateway_go_away_total{{reason=\"{}\"}} {n}",
            reason.as_str_name()
        );
    }
    gauge_header(
        &mut o,
        "gateway_inbox_messages",
        "QoS 1 messages held by the in-process store.",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(
            o,
            "gateway_inbox_messages{{shard=\"{i}\"}} {}",
            s.inbox_messages.load(Relaxed)
        );
    }
    gauge_header(
        &mut o,
        "gateway_inbox_bytes",
        "QoS 1 payload bytes held by the in-process store.",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(
            o,
            "gateway_inbox_bytes{{shard=\"{i}\"}} {}",
            s.inbox_bytes.load(Relaxed)
        );
    }
    super::bus_metrics::render(&mut o, shards);
    render_histogram(
        &mut o,
        shards,
        "gateway_handshake_seconds",
        "Time from accept to authenticated.",
        |s| &s.handshake,
    );
    render_histogram(
        &mut o,
        shards,
        "gateway_store_seconds",
        "Time a QoS 1 append spent in the inbox store.",
        |s| &s.store_latency,
    );
    gauge_header(
        &mut o,
        "gateway_heap_live_bytes",
        "Heap bytes allocated and not freed (RSS minus this is allocator slack and stacks).",
    );
    let _ = writeln!(o, "gateway_heap_live_bytes {}", crate::heap::live_bytes());
    gauge_header(&mut o, "gateway_draining", "1 while the node drains.");
    let _ = writeln!(o, "gateway_draining {}", u8::from(draining));
    o
}

pub(super) fn counter_header(o: &mut String, name: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
}

pub(super) fn gauge_header(o: &mut String, name: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
