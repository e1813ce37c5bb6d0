//! The console's live charts: the last ten minutes of a node's figures,
//! one point a second, kept in memory (`GET /series`), so an operator sees
//! them without Prometheus.
//!
//! A thread (`series`) reads the shards' counters once a second (the same
//! atomics `/metrics` reads) and the process's CPU time and RSS from
//! `/proc/self`, and appends one point per series to a ring. Rates are the
//! difference of two totals over the time between the readings; a total
//! that went down (a bus link's counters restart with the link) counts as
//! zero, never as a negative rate. The bus figures, which the shards
//! publish every 2 s, are a rate over the last two readings.
//!
//! Memory: [`SERIES`] + one series per error code ([`ERROR_CODES`], 15),
//! each [`POINTS`] `f32`s: 25 × 600 × 4 B = 60 KB per node, allocated once
//! at start, and nothing per connection. The ring starts empty in a new
//! process (an upgrade's counters carry on in `/metrics`, not here).
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::stats::{ShardStats, ERROR_CODES};

/// Points kept per series: ten minutes at one a second.
pub const POINTS: usize = 600;
/// How often a point is taken.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The series, by the name `GET /series` gives them.
pub const SERIES: [&str; 10] = [
    "connections", // gauge
    "connects",    // accepted connections per second
    "msgs_in",     // client frames decoded per second
    "deliveries",  // messages delivered to connections per second
    "errors",      // error frames sent per second, all codes
    "slow_closes", // slow-consumer closes per second
    "inbox_depth", // QoS 1 messages held by the in-process store (gauge)
    "bus_bytes",   // bus bytes in and out per second
    "cpu",         // percent of one core
    "rss",         // resident bytes (gauge)
];
const GAUGES: [usize; 3] = [0, 6, 9];
/// `bus_bytes`: a rate over the last two seconds (see `Ring::before`).
const BUS: usize = 7;

/// One reading of the node's totals (counters since start, and gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Milliseconds on a monotonic clock.
    pub at_ms: u64,
    /// Per series, in [`SERIES`] order (`cpu`: CPU milliseconds used).
    pub values: [u64; SERIES.len()],
    /// Error frames sent, per code in [`ERROR_CODES`] order.
    pub errors: [u64; ERROR_CODES.len()],
}

/// The ring of points: oldest first once read.
pub struct Ring {
    values: Box<[[f32; POINTS]; SERIES.len()]>,
    errors: Box<[[f32; POINTS]; ERROR_CODES.len()]>,
    /// Where the next point goes.
    head: usize,
    /// Points held (at most [`POINTS`]).
    len: usize,
    last: Option<Reading>,
    /// The reading before `last`: bus figures are published by the shards
    /// every 2 s, so their rate is taken over two readings.
    before: Option<Reading>,
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            values: Box::new([[0.0; POINTS]; SERIES.len()]),
            errors: Box::new([[0.0; POINTS]; ERROR_CODES.len()]),
            head: 0,
            len: 0,
            last: None,
            before: None,
        }
    }
}

impl Ring {
    /// Adds the point between the last reading and `now` (the first reading
    /// only sets the base).
    pub fn record(&mut self, now: Reading) {
        let Some(prev) = self.last.replace(now) else {
            return;
        };
        let before = self.before.replace(prev).unwrap_or(prev);
        let secs = now.at_ms.saturating_sub(prev.at_ms) as f32 / 1000.0;
        if secs <= 0.0 {
            return;
        }
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f32 / secs;
        let bus_secs = now.at_ms.saturating_sub(before.at_ms) as f32 / 1000.0;
        for (i, series) in self.values.iter_mut().enumerate() {
            series[self.head] = match i {
                i if GAUGES.contains(&i) => now.values[i] as f32,
                // CPU milliseconds per second, as a percent of one core.
                8 => rate(prev.values[i], now.values[i]) / 10.0,
                BUS => now.values[i].saturating_sub(before.values[i]) as f32 / bus_secs,
                _ => rate(prev.values[i], now.values[i]),
            };
        }
        for (i, series) in self.errors.iter_mut().enumerate() {
            series[self.head] = rate(prev.errors[i], now.errors[i]);
        }
        self.head = (self.head + 1) % POINTS;
        self.len = (self.len + 1).min(POINTS);
    }

    /// True before the second reading.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One series, oldest point first.
    fn ordered(&self, series: &[f32; POINTS]) -> Vec<f32> {
        let start = (self.head + POINTS - self.len) % POINTS;
        (0..self.len)
            .map(|i| series[(start + i) % POINTS])
            .collect()
    }

    /// The JSON of `GET /series`'s `series` and `errors_by_code` (codes
    /// with no error in the window are left out).
    pub fn to_json(&self) -> (Value, Value) {
        let mut series = Map::new();
        for (name, values) in SERIES.iter().zip(self.values.iter()) {
            series.insert((*name).into(), json!(self.ordered(values)));
        }
        let mut errors = Map::new();
        for (code, values) in ERROR_CODES.iter().zip(self.errors.iter()) {
            let points = self.ordered(values);
            if points.iter().any(|v| *v > 0.0) {
                errors.insert(code.as_str_name().into(), json!(points));
            }
        }
        (Value::Object(series), Value::Object(errors))
    }
}

/// The node's ring, shared by the sampler and the admin API.
#[derive(Default)]
pub struct Series {
    ring: Mutex<Ring>,
    /// Unix ms of the newest point.
    end_ms: std::sync::atomic::AtomicU64,
}

impl Series {
    /// Starts the sampler thread over `shards` (it runs for the process's
    /// life). `unix_ms` tells the wall clock for the answer's `end_ms`.
    pub fn start(
        self: &Arc<Self>,
        shards: Vec<Arc<ShardStats>>,
        unix_ms: impl Fn() -> u64 + Send + 'static,
    ) -> std::io::Result<()> {
        let me = self.clone();
        let started = std::time::Instant::now();
        std::thread::Builder::new()
            .name("series".into())
            .spawn(move || {
                let mut next = std::time::Instant::now();
                loop {
                    let at_ms = started.elapsed().as_millis() as u64;
                    let reading = read(&shards, at_ms);
                    if let Ok(mut ring) = me.ring.lock() {
                        ring.record(reading);
                    }
                    me.end_ms.store(unix_ms(), Relaxed);
                    next += INTERVAL;
                    let now = std::time::Instant::now();
                    match next.checked_duration_since(now) {
                        Some(wait) => std::thread::sleep(wait),
                        // Behind (a stopped process): start afresh from now.
                        None => next = now,
                    }
                }
            })
            .map(|_| ())
    }

    /// `series` and `errors_by_code`, the number of points and the Unix ms
    /// of the newest one.
    pub fn snapshot(&self) -> (Value, Value, u64) {
        let (series, errors) = self
            .ring
            .lock()
            .map(|r| r.to_json())
            .unwrap_or((json!({}), json!({})));
        (series, errors, self.end_ms.load(Relaxed))
    }
}

/// Reads the node's totals now.
fn read(shards: &[Arc<ShardStats>], at_ms: u64) -> Reading {
    let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
    let bus_bytes: u64 = shards
        .iter()
        .flat_map(|s| s.bus())
        .map(|(_, _, st)| st.bytes_in + st.bytes_out)
        .sum();
    let (cpu_ms, rss) = process_usage().unwrap_or_default();
    let mut errors = [0; ERROR_CODES.len()];
    for (i, e) in errors.iter_mut().enumerate() {
        *e = shards.iter().map(|s| s.errors[i].load(Relaxed)).sum();
    }
    Reading {
        at_ms,
        values: [
            sum(|s| s.conns().max(0) as u64),
            sum(|s| s.accepted.load(Relaxed)),
            sum(|s| s.frames_in.load(Relaxed)),
            sum(|s| s.deliveries.load(Relaxed)),
            errors.iter().sum(),
            sum(|s| s.slow_consumer_closes.load(Relaxed)),
            sum(|s| s.inbox_messages.load(Relaxed).max(0) as u64),
            bus_bytes,
            cpu_ms,
            rss,
        ],
        errors,
    }
}

/// The process's CPU time (user + system, ms) and resident bytes, from
/// `/proc/self`.
pub fn process_usage() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let (hz, page) = crate::sys::clock_ticks_and_page_size();
    Some((ticks * 1000 / hz.max(1), pages * page))
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
