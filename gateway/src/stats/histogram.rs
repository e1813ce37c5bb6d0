//! Latency histograms with fixed buckets: recorded by the shards, summed
//! over shards into Prometheus text.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::ShardStats;

/// Upper bounds (seconds) of the handshake latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets (seconds).
#[derive(Default)]
pub(crate) struct Histogram {
    pub(crate) buckets: [AtomicU64; BUCKETS.len()],
    pub(crate) count: AtomicU64,
    pub(crate) sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Relaxed);
    }
}

pub(crate) fn render_histogram(
    o: &mut String,
    shards: &[Arc<ShardStats>],
    name: &str,
    help: &str,
    h: fn(&ShardStats) -> &Histogram,
) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, le) in BUCKETS.iter().enumerate() {
        cumulative += shards
            .iter()
            .map(|s| h(s).buckets[i].load(Relaxed))
            .sum::<u64>();
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let count: u64 = shards.iter().map(|s| h(s).count.load(Relaxed)).sum();
    let sum_us: u64 = shards.iter().map(|s| h(s).sum_us.load(Relaxed)).sum();
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(o, "{name}_sum {}", sum_us as f64 / 1e6);
    let _ = writeln!(o, "{name}_count {count}");
}
