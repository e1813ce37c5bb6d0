//! Counters shared by all workers (atomics, read by the main thread's
//! monitor) and per-worker histograms (merged once, at the end).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::rtt::Rtts;

/// Live counters and commands, shared between the main thread and workers.
/// Workers never wait on each other or on the main thread: they poll these
/// on a timer (monoio's cross-thread wake-ups do not survive
/// `unshare(CLONE_FILES)`).
#[derive(Default)]
pub struct Shared {
    /// Set by the main thread: close everything and finish.
    pub stop: AtomicBool,
    /// Set by the main thread: direct senders may start (every connection
    /// is up and, on a cluster, known where it is sent to).
    pub go: AtomicBool,
    /// Bumped by the main thread to drop `storm_permille` of connections.
    pub storm_gen: AtomicU64,
    /// Thousandths of the connections a storm drops.
    pub storm_permille: AtomicU32,
    /// Connections open and ready now.
    pub connected: AtomicI64,
    /// Times a connection became ready (reconnects included).
    pub readied: AtomicU64,
    /// Connection attempts that failed (any cause).
    pub failed: AtomicU64,
    /// Connections lost after being ready, not by our own doing.
    pub dropped: AtomicU64,
    /// Messages delivered to our connections.
    pub deliveries: AtomicU64,
    /// With `Plan::audit`: QoS 0 room messages delivered (counted apart
    /// from the audited direct ones).
    pub room_deliveries: AtomicU64,
    /// Messages sent by our connections (direct scenario).
    pub sent: AtomicU64,
    /// Heartbeat answers received.
    pub pongs: AtomicU64,
    /// Heartbeats sent.
    pub pings: AtomicU64,
    /// Non-fatal error frames.
    pub warnings: AtomicU64,
    /// Sends the server refused (never accepted, so not owed a delivery).
    pub rejected: AtomicU64,
    /// Sends the server accepted (answered by a send result).
    pub accepted: AtomicU64,
    /// With `Plan::audit`: the latencies of deliveries since the monitor
    /// last took them (workers add theirs every sweeper tick).
    pub window: Mutex<Option<Histogram<u64>>>,
    /// Workers whose runtime has finished.
    pub workers_done: AtomicU32,
    /// Set by the main thread: connections ping every `Plan::ping` and the
    /// round trips are recorded (`rtt`).
    pub pinging: AtomicBool,
    /// The window round trips are classified against (`Rtts::window`), in
    /// microseconds of `payload::now_ns`: its start (0: none yet) ...
    pub window_from_us: AtomicU64,
    /// ... and its end (`u64::MAX` while open).
    pub window_to_us: AtomicU64,
    /// Round trips so far (workers add theirs every sweeper tick).
    pub rtt: Mutex<Option<Rtts>>,
    causes: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    /// Counts one failure under `cause`.
    pub fn fail(&self, cause: &str) {
        self.failed.fetch_add(1, Relaxed);
        self.note(cause);
    }

    /// Counts an event under `cause` without counting a failure.
    pub fn note(&self, cause: &str) {
        if let Ok(mut m) = self.causes.lock() {
            *m.entry(cause.to_string()).or_default() += 1;
        }
    }

    /// Failures (and notes) by cause so far.
    pub fn causes(&self) -> BTreeMap<String, u64> {
        self.causes.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Current ready connections (never negative).
    pub fn connected(&self) -> u64 {
        u64::try_from(self.connected.load(Relaxed)).unwrap_or(0)
    }

    /// The window round trips are classified against, if one was opened.
    pub fn window(&self) -> Option<(u64, u64)> {
        match self.window_from_us.load(Relaxed) {
            0 => None,
            from => Some((from, self.window_to_us.load(Relaxed))),
        }
    }

    /// Opens a window at `from_us` (closing none before it).
    pub fn open_window(&self, from_us: u64) {
        self.window_to_us.store(u64::MAX, Relaxed);
        self.window_from_us.store(from_us.max(1), Relaxed);
    }

    /// Closes the open window at `to_us`.
    pub fn close_window(&self, to_us: u64) {
        self.window_to_us.store(to_us, Relaxed);
    }

    /// Whether the main thread asked to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// A histogram of microseconds from 1 us to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// What one worker measured, sent to the main thread when it finishes.
pub struct WorkerReport {
    /// Connect start to ready, in microseconds.
    pub handshake: Histogram<u64>,
    /// Message send to delivery, in microseconds.
    pub latency: Histogram<u64>,
    /// Distinct numbered messages received, summed over connections.
    pub distinct: u64,
    /// Numbered messages received more than once.
    pub duplicates: u64,
    /// Deliveries whose body was not one of ours.
    pub bad_payload: u64,
    /// With `Plan::audit`: sends the server accepted whose message never
    /// reached its receiver.
    pub missing: u64,
}

impl WorkerReport {
    /// An empty report.
    pub fn new() -> Self {
        WorkerReport {
            handshake: histogram(),
            latency: histogram(),
            distinct: 0,
            duplicates: 0,
            bad_payload: 0,
            missing: 0,
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &WorkerReport) {
        let _ = self.handshake.add(&other.handshake);
        let _ = self.latency.add(&other.latency);
        self.distinct += other.distinct;
        self.duplicates += other.duplicates;
        self.bad_payload += other.bad_payload;
        self.missing += other.missing;
    }
}

/// Which numbered messages one connection has seen: a bitset that grows to
/// the highest number seen (bounded by `max`).
#[derive(Default)]
pub struct Seen {
    bits: Vec<u64>,
}

impl Seen {
    /// Records `seq`; returns `Some(true)` if new, `Some(false)` if a
    /// duplicate, `None` if above `max` (not ours).
    pub fn insert(&mut self, seq: u64, max: u64) -> Option<bool> {
        if seq >= max {
            return None;
        }
        let word = usize::try_from(seq / 64).ok()?;
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        let w = self.bits.get_mut(word)?;
        let new = *w & bit == 0;
        *w |= bit;
        Some(new)
    }

    /// Whether `seq` was recorded.
    pub fn contains(&self, seq: u64) -> bool {
        usize::try_from(seq / 64)
            .ok()
            .and_then(|w| self.bits.get(w))
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// Every recorded number, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u64 * 64 + b)
        })
    }
}
