//! Per-shard counters, summed when `/metrics` is scraped.
//!
//! Each shard writes only its own `ShardStats` (relaxed atomics on a cache
//! line no other core writes, so they cost what a plain add costs); the admin
//! thread reads them all and renders Prometheus text. Metric names live here
//! and nowhere else.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::stats::histogram::render_histogram;
pub use crate::stats::BusRow;
use crate::stats::{ShardStats, ERROR_CODES, GO_AWAY};

/// Reads one counter of a shard.
type Field = fn(&ShardStats) -> &AtomicU64;

/// Renders every shard's counters as Prometheus text.
pub fn render(shards: &[Arc<ShardStats>], draining: bool) -> String {
    let mut o = String::with_capacity(4096);
    gauge_header(
        &mut o,
        "gateway_connections",
        "Open connections, by port: ws counts every connection of the WebSocket port (SSE streams and POSTs in flight included).",
    );
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
    let per_shard: [(&str, &str, Field); 23] = [
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
        (
            "gateway_room_appends_total",
            "Room messages stored in their room's history.",
            |s| &s.room_appends,
        ),
        (
            "gateway_room_append_dropped_total",
            "Room messages with no sender to tell (QoS 0, admin) the history store refused.",
            |s| &s.room_append_dropped,
        ),
        (
            "gateway_room_reads_total",
            "Room history reads for joins (recovery, recent messages, position).",
            |s| &s.room_reads,
        ),
        (
            "gateway_room_gaps_total",
            "Room gaps sent: a join that could not recover, a hole skipped.",
            |s| &s.room_gaps,
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

/// The process's CPU time and resident memory (Prometheus' standard
/// names), from `/proc/self`.
pub(super) fn render_process(o: &mut String) {
    let Some((cpu_ms, rss)) = super::series::process_usage() else {
        return;
    };
    counter_header(
        o,
        "process_cpu_seconds_total",
        "User and system CPU time of the process.",
    );
    let _ = writeln!(o, "process_cpu_seconds_total {}", cpu_ms as f64 / 1000.0);
    gauge_header(
        o,
        "process_resident_memory_bytes",
        "Resident memory of the process.",
    );
    let _ = writeln!(o, "process_resident_memory_bytes {rss}");
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
