//! `soak`: pairs of users exchange numbered messages for a long time
//! (`direct`, usually at QoS 1 on Redis) while a fraction of every
//! connection is cut at intervals and comes back with `last_seq` (as the
//! README tells clients to). With `room_rate`, every connection is also in
//! a room of `room_size` and QoS 0 pushes go to the rooms through the admin
//! API (counted, not audited: a cut member misses them by design). Every
//! `window_secs` a row is kept: connections, sends accepted and refused,
//! deliveries, latency percentiles of that window, room pushes and
//! deliveries, server RSS, CPU and descriptors, and the gateway's error
//! counters. At the end every accepted message is checked against what its
//! receiver got: none missing, none twice. The rows go to `windows.csv`,
//! `soak.png` and `soak-resources.png` in the result directory.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{scrape_metrics, Run, Shape};
use crate::cli::Common;
use crate::report::{Outcome, Pcts, Window};
use crate::sys;
use crate::target::Target;

/// The scenario's bounds.
pub struct Soak {
    /// Connections (pairs x 2).
    pub conns: u64,
    /// Messages per second, all pairs together.
    pub msg_rate: f64,
    /// Seconds of sending.
    pub secs: u64,
    /// Seconds between cuts (0: none).
    pub cut_every_secs: u64,
    /// Fraction of the connections each cut closes.
    pub cut_fraction: f64,
    /// Seconds per row.
    pub window_secs: u64,
    /// Members per room.
    pub room_size: u64,
    /// Room pushes per second (0: no rooms).
    pub room_rate: f64,
}

/// The gateway counters a row reports, read from `/metrics`.
#[derive(Default, Clone, Copy)]
struct Counters {
    errors: u64,
    store_errors: u64,
    slow_closes: u64,
    gaps: u64,
    /// A gauge: the gateway's live heap bytes.
    heap: u64,
}

impl Counters {
    fn scrape(common: &Common) -> Counters {
        let text = scrape_metrics(common);
        Counters {
            errors: counter(&text, "gateway_errors_total"),
            store_errors: counter(&text, "gateway_qos_store_errors_total"),
            slow_closes: counter(&text, "gateway_slow_consumer_closes_total"),
            gaps: counter(&text, "gateway_qos_gaps_total"),
            heap: counter(&text, "gateway_heap_live_bytes"),
        }
    }
}

/// The sum of `name` over its label sets (0 when absent).
fn counter(text: &str, name: &str) -> u64 {
    super::cluster::metric_sum(text, name).unwrap_or(0.0) as u64
}

/// Room pushes made and refused, by the publisher thread.
#[derive(Default)]
struct Pushes {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Pushes QoS 0 messages to the rooms in turn at `rate` a second until
/// `until`, through the gateway's admin API.
fn publish(common: &Common, rooms: u64, rate: f64, until: Instant, p: Arc<Pushes>) {
    let mut pubr = crate::publish::Publisher::gateway(common.admin, false);
    let t0 = Instant::now();
    let mut n = 0u64;
    while Instant::now() < until {
        let body = crate::payload::make(n, 64);
        match pubr.publish(&format!("room{}", n % rooms.max(1)), &body) {
            Ok(()) => p.ok.fetch_add(1, Relaxed),
            Err(_) => p.failed.fetch_add(1, Relaxed),
        };
        n += 1;
        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Counters at the start of a window.
struct Mark {
    at: Instant,
    accepted: u64,
    rejected: u64,
    deliveries: u64,
    failed: u64,
    server_cpu: f64,
    room_pushes: u64,
    room_deliveries: u64,
    counters: Counters,
}

fn mark(run: &Run, pushes: &Pushes) -> Mark {
    let s = run.shared();
    Mark {
        at: Instant::now(),
        accepted: s.accepted.load(Relaxed),
        rejected: s.rejected.load(Relaxed),
        deliveries: s.deliveries.load(Relaxed),
        failed: s.failed.load(Relaxed),
        server_cpu: sys::cpu_sum(&run.mon.pids),
        room_pushes: pushes.ok.load(Relaxed),
        room_deliveries: s.room_deliveries.load(Relaxed),
        counters: Counters::scrape(&run.common),
    }
}

/// The row of the window from mark `m` to mark `now` (the next window
/// starts at `now`: the time spent sampling belongs to one of them).
fn row(run: &Run, t0: Instant, m: &Mark, now: &Mark, cuts: u64) -> Window {
    let s = run.shared();
    let (c, c0) = (now.counters, m.counters);
    let secs = now.at.duration_since(m.at).as_secs_f64().max(1e-6);
    let latency = s
        .window
        .lock()
        .ok()
        .and_then(|mut w| w.take())
        .map(|h| Pcts::of(&h))
        .unwrap_or_default();
    Window {
        t: now.at.duration_since(t0).as_secs_f64(),
        connected: s.connected(),
        accepted: now.accepted - m.accepted,
        rejected: now.rejected - m.rejected,
        deliveries: now.deliveries - m.deliveries,
        failed: now.failed - m.failed,
        cuts,
        p50_us: latency.p50,
        p99_us: latency.p99,
        max_us: latency.max,
        server_rss: sys::rss_sum(&run.mon.pids),
        server_cpu_pct: 100.0 * (now.server_cpu - m.server_cpu) / secs,
        server_fds: sys::fd_sum(&run.mon.pids),
        room_pushes: now.room_pushes - m.room_pushes,
        room_deliveries: now.room_deliveries - m.room_deliveries,
        errors: c.errors.saturating_sub(c0.errors),
        store_errors: c.store_errors.saturating_sub(c0.store_errors),
        slow_closes: c.slow_closes.saturating_sub(c0.slow_closes),
        gaps: c.gaps.saturating_sub(c0.gaps),
        server_heap: c.heap,
    }
}

/// Runs the scenario.
pub fn run(common: &Common, d: &Soak) -> anyhow::Result<Outcome> {
    if common.target != Target::Gateway {
        anyhow::bail!("soak runs against the gateway");
    }
    let conns = d.conns.next_multiple_of(2);
    let shape = Shape {
        conns,
        max_seq: 1 << 26,
        direct: Some((d.msg_rate, 64, Duration::from_secs(d.secs))),
        reconnect: true,
        audit: true,
        room_size: (d.room_rate > 0.0).then_some(d.room_size.max(1)),
        ..Shape::default()
    };
    let mut run = Run::start(common, shape)?;
    let all = run.ramp(Duration::from_secs(600));
    let permille = (d.cut_fraction.clamp(0.0, 1.0) * 1000.0) as u32;
    run.shared().storm_permille.store(permille, Relaxed);
    run.shared().go.store(true, Relaxed);
    let rss0 = sys::rss_sum(&run.mon.pids);
    let cpu0 = (
        sys::cpu_sum(&run.mon.pids),
        sys::machine_busy_secs().unwrap_or(0.0),
    );
    let t0 = Instant::now();
    let pushes = Arc::new(Pushes::default());
    let publisher = (d.room_rate > 0.0).then(|| {
        let (common, p) = (common.clone(), pushes.clone());
        let rooms = conns.div_ceil(d.room_size.max(1));
        let (rate, until) = (d.room_rate, t0 + Duration::from_secs(d.secs));
        std::thread::spawn(move || publish(&common, rooms, rate, until, p))
    });
    let mut windows = Vec::new();
    let mut cuts = 0u64;
    let mut next_cut = d.cut_every_secs;
    let window = Duration::from_secs(d.window_secs.max(1));
    run.mon.phase("soak", d.secs);
    let mut m = mark(&run, &pushes);
    while t0.elapsed().as_secs() < d.secs {
        let until = m.at + window;
        let mut cut_here = 0;
        run.mon.wait(
            until.saturating_duration_since(Instant::now()),
            |s| {
                let t = t0.elapsed().as_secs();
                if d.cut_every_secs > 0 && t >= next_cut && t < d.secs {
                    next_cut += d.cut_every_secs;
                    s.storm_gen.fetch_add(1, Relaxed);
                    cut_here += 1;
                }
                t >= d.secs
            },
            |_| t0.elapsed().as_secs(),
        );
        cuts += cut_here;
        let now = mark(&run, &pushes);
        windows.push(row(&run, t0, &m, &now, cut_here));
        m = now;
    }
    if let Some(h) = publisher {
        let _ = h.join();
    }
    // Drain: every accepted message delivered, or 60 s.
    run.mon.phase("drain", run.shared().accepted.load(Relaxed));
    run.mon.wait(
        Duration::from_secs(60),
        |s| s.connected() >= conns && s.deliveries.load(Relaxed) >= s.accepted.load(Relaxed),
        |s| s.deliveries.load(Relaxed),
    );
    std::thread::sleep(Duration::from_secs(1));
    let span = t0.elapsed().as_secs_f64();
    let cpu1 = (
        sys::cpu_sum(&run.mon.pids),
        sys::machine_busy_secs().unwrap_or(0.0),
    );
    let metrics = scrape_metrics(common);
    let s = run.shared().clone();
    let (accepted, rejected, sent) = (
        s.accepted.load(Relaxed),
        s.rejected.load(Relaxed),
        s.sent.load(Relaxed),
    );
    let rss1 = sys::rss_sum(&run.mon.pids);
    let report = run.stop();
    let mut o = run.outcome("soak", &report, conns);
    o.messages_published = sent;
    o.deliveries = report.distinct;
    o.expected_deliveries = accepted;
    o.rejected = rejected;
    o.lost = report.missing;
    o.deliveries_per_sec = o.deliveries as f64 / span.max(1e-6);
    o.set_cpu(cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    o.server_rss_held_bytes = rss0;
    o.server_rss_after_bytes = rss1;
    o.latency_hist = Some(report.latency.clone());
    o.metrics = metrics;
    o.extra.insert("target_msg_rate".into(), d.msg_rate.into());
    o.extra.insert("send_secs".into(), d.secs.into());
    o.extra.insert("cuts".into(), cuts.into());
    o.extra.insert("cut_fraction".into(), d.cut_fraction.into());
    o.extra.insert("accepted".into(), accepted.into());
    o.extra.insert("room_size".into(), d.room_size.into());
    o.extra.insert("room_rate".into(), d.room_rate.into());
    o.extra
        .insert("room_pushes".into(), pushes.ok.load(Relaxed).into());
    o.extra.insert(
        "room_push_failures".into(),
        pushes.failed.load(Relaxed).into(),
    );
    o.extra.insert(
        "room_deliveries".into(),
        s.room_deliveries.load(Relaxed).into(),
    );
    o.extra.insert(
        "unanswered_sends".into(),
        sent.saturating_sub(accepted + rejected).into(),
    );
    o.windows = windows;
    if !all {
        o.problem(format!("the ramp did not reach {conns} connections"));
    }
    if accepted == 0 {
        o.problem("nothing was accepted".into());
    }
    if report.missing > 0 || report.duplicates > 0 || report.bad_payload > 0 {
        o.problem(format!(
            "of {accepted} accepted messages {} never arrived; {} duplicates, {} bad payloads",
            report.missing, report.duplicates, report.bad_payload
        ));
    }
    Ok(o)
}
