//! `storm`: hold N connections, drop a fraction of them at once, let them
//! reconnect, and time until every one is back; the server's CPU and peak
//! memory during the recovery.
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{scrape_metrics, Run, Shape};
use crate::cli::Common;
use crate::report::Outcome;
use crate::sys;

/// Runs the scenario.
pub fn run(
    common: &Common,
    conns: u64,
    fraction: f64,
    timeout_secs: u64,
) -> anyhow::Result<Outcome> {
    let mut run = Run::start(
        common,
        Shape {
            conns,
            reconnect: true,
            ..Shape::default()
        },
    )?;
    let all = run.ramp(Duration::from_secs(600));
    run.hold(1);
    let before = run.mon.sample();
    let machine0 = sys::machine_busy_secs().unwrap_or(0.0);
    let permille = (fraction.clamp(0.0, 1.0) * 1000.0).round() as u32;
    let to_drop = (0..conns)
        .filter(|&u| crate::worker::stormed(u, permille))
        .count() as u64;
    let readied0 = run.shared().readied.load(Relaxed);
    let t0 = Instant::now();
    run.shared().storm_permille.store(permille, Relaxed);
    run.shared().storm_gen.fetch_add(1, Relaxed);
    run.mon.phase("storm", to_drop);
    let back = run.mon.wait(
        Duration::from_secs(timeout_secs),
        |s| s.readied.load(Relaxed) >= readied0 + to_drop && s.connected() >= conns,
        |s| s.readied.load(Relaxed) - readied0,
    );
    let recovery = t0.elapsed().as_secs_f64();
    let after = run.mon.sample();
    let machine1 = sys::machine_busy_secs().unwrap_or(0.0);
    let min_connected = run
        .mon
        .samples
        .iter()
        .filter(|s| s.t >= before.t)
        .map(|s| s.connected)
        .min()
        .unwrap_or(0);
    let peak_rss = run
        .mon
        .samples
        .iter()
        .filter(|s| s.t >= before.t)
        .map(|s| s.server_rss)
        .max()
        .unwrap_or(0);
    let metrics = scrape_metrics(common);
    let held = after.connected;
    let report = run.stop();
    let mut o = run.outcome("storm", &report, held);
    o.server_rss_held_bytes = before.server_rss;
    o.server_rss_after_bytes = after.server_rss;
    o.set_cpu(after.server_cpu - before.server_cpu, machine1 - machine0);
    o.metrics = metrics;
    o.extra.insert("fraction".into(), fraction.into());
    o.extra.insert("dropped_by_storm".into(), to_drop.into());
    o.extra.insert("recovery_secs".into(), recovery.into());
    o.extra
        .insert("min_connected_sampled".into(), min_connected.into());
    o.extra
        .insert("server_rss_peak_bytes".into(), peak_rss.into());
    o.extra.insert(
        "reconnects_per_sec".into(),
        (to_drop as f64 / recovery.max(1e-6)).into(),
    );
    if !all {
        o.problem(format!("ramp reached only {} of {conns}", before.connected));
    }
    if !back {
        o.problem(format!("{held} of {conns} back after {timeout_secs} s"));
    }
    if o.failed > 0 {
        o.problem(format!("{} failed attempts", o.failed));
    }
    Ok(o)
}
