//! `connect`: ramp to N authenticated connections, hold them with
//! heartbeats, and report the ramp, handshake latency, failures, and the
//! server's memory per connection and idle CPU.
use std::time::Duration;

use super::{scrape_metrics, Run, Shape};
use crate::cli::Common;
use crate::report::Outcome;
use crate::sys;

/// Runs the scenario.
pub fn run(
    common: &Common,
    conns: u64,
    hold_secs: u64,
    ramp_timeout_secs: u64,
) -> anyhow::Result<Outcome> {
    let (free_before, slab_before) = sys::mem_free_and_slab();
    let self_rss_before = sys::rss_bytes(std::process::id()).unwrap_or(0);
    let mut run = Run::start(
        common,
        Shape {
            conns,
            ..Shape::default()
        },
    )?;
    let all = run.ramp(Duration::from_secs(ramp_timeout_secs));
    let at_hold = run.mon.sample();
    let pongs0 = run
        .shared()
        .pongs
        .load(std::sync::atomic::Ordering::Relaxed);
    let machine0 = sys::machine_busy_secs().unwrap_or(0.0);
    run.hold(hold_secs);
    let end = run.mon.sample();
    let pongs = run
        .shared()
        .pongs
        .load(std::sync::atomic::Ordering::Relaxed)
        - pongs0;
    let machine1 = sys::machine_busy_secs().unwrap_or(0.0);
    let (free_held, slab_held) = sys::mem_free_and_slab();
    let self_rss = sys::rss_bytes(std::process::id()).unwrap_or(0);
    let metrics = scrape_metrics(common);
    let held = end.connected;
    let report = run.stop();
    let mut o = run.outcome("connect", &report, held);
    o.server_rss_held_bytes = end.server_rss;
    o.set_cpu(end.server_cpu - at_hold.server_cpu, machine1 - machine0);
    let hold = end.t - at_hold.t;
    if held > 0 && !common.server_pids.is_empty() {
        let grown = end.server_rss.saturating_sub(run.idle_rss) as f64;
        o.gateway_rss_bytes_per_conn = Some(grown / held as f64);
        // Memory the machine lost, minus both processes' user-space growth.
        let user =
            end.server_rss.saturating_sub(run.idle_rss) + self_rss.saturating_sub(self_rss_before);
        let kernel = free_before.saturating_sub(free_held).saturating_sub(user);
        o.kernel_bytes_per_conn = Some(kernel as f64 / held as f64);
    }
    o.extra.insert("hold_secs".into(), hold.into());
    o.extra.insert(
        "server_cpu_percent_while_holding".into(),
        (100.0 * o.server_cpu_sec / hold.max(0.001)).into(),
    );
    o.extra.insert(
        "slab_growth_bytes".into(),
        slab_held.saturating_sub(slab_before).into(),
    );
    o.extra.insert("loadgen_rss_bytes".into(), self_rss.into());
    if pongs > 0 {
        // What a heartbeat costs the server (the hold is heartbeats only).
        o.extra
            .insert("heartbeats_while_holding".into(), pongs.into());
        let us = o.server_cpu_sec * 1e6 / pongs as f64;
        o.extra
            .insert("server_cpu_us_per_heartbeat".into(), us.into());
    }
    o.metrics = metrics;
    if !all || held < conns {
        o.problem(format!("held {held} of {conns} connections"));
    }
    if o.failed > 0 || o.dropped > 0 {
        o.problem(format!(
            "{} failed attempts, {} dropped connections",
            o.failed, o.dropped
        ));
    }
    if common.heartbeat_ms > 0 && hold_secs * 1000 > common.heartbeat_ms * 2 && o.pongs == 0 {
        o.problem("no heartbeat was answered".into());
    }
    Ok(o)
}
