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

/// Error codes counted in `gateway_errors_total{code}`.
const ERROR_CODES: [ErrorCode; 12] = [
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
];

/// Go-away reasons counted in `gateway_go_away_total{reason}`.
const GO_AWAY: [GoAwayReason; 4] = [
    GoAwayReason::Draining,
    GoAwayReason::Kicked,
    GoAwayReason::TokenExpired,
    GoAwayReason::HeartbeatTimeout,
];

/// Upper bounds (seconds) of the handshake latency histogram buckets.
const HANDSHAKE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

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
    errors: [AtomicU64; ERROR_CODES.len()],
    go_aways: [AtomicU64; GO_AWAY.len()],
    handshake_buckets: [AtomicU64; HANDSHAKE_BUCKETS.len()],
    handshake_count: AtomicU64,
    handshake_sum_us: AtomicU64,
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
        let secs = took.as_secs_f64();
        if let Some(i) = HANDSHAKE_BUCKETS.iter().position(|b| secs <= *b) {
            self.handshake_buckets[i].fetch_add(1, Relaxed);
        }
        self.handshake_count.fetch_add(1, Relaxed);
        self.handshake_sum_us
            .fetch_add(took.as_micros() as u64, Relaxed);
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
    let per_shard: [(&str, &str, Field); 10] = [
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
            |s| &s.handshake_count,
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
    render_handshake(&mut o, shards);
    gauge_header(&mut o, "gateway_draining", "1 while the node drains.");
    let _ = writeln!(o, "gateway_draining {}", u8::from(draining));
    o
}

fn render_handshake(o: &mut String, shards: &[Arc<ShardStats>]) {
    let name = "gateway_handshake_seconds";
    let _ = writeln!(o, "# HELP {name} Time from accept to authenticated.");
    let _ = writeln!(o, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, le) in HANDSHAKE_BUCKETS.iter().enumerate() {
        cumulative += shards
            .iter()
            .map(|s| s.handshake_buckets[i].load(Relaxed))
            .sum::<u64>();
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let count: u64 = shards.iter().map(|s| s.handshake_count.load(Relaxed)).sum();
    let sum_us: u64 = shards
        .iter()
        .map(|s| s.handshake_sum_us.load(Relaxed))
        .sum();
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(o, "{name}_sum {}", sum_us as f64 / 1e6);
    let _ = writeln!(o, "{name}_count {count}");
}

fn counter_header(o: &mut String, name: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
}

fn gauge_header(o: &mut String, name: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_shards_and_names_codes() {
        let a = Arc::new(ShardStats::default());
        let b = Arc::new(ShardStats::default());
        a.error(ErrorCode::BadFrame);
        b.error(ErrorCode::BadFrame);
        ShardStats::inc(&b.deliveries);
        b.handshake(Duration::from_millis(3));
        let text = render(&[a, b], false);
        assert!(text.contains("gateway_errors_total{code=\"BAD_FRAME\"} 2"));
        assert!(text.contains("gateway_deliveries_total{shard=\"1\"} 1"));
        assert!(text.contains("gateway_handshake_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("gateway_handshake_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("gateway_handshake_seconds_count 1"));
    }
}
