//! `direct`: pairs of users, the first of each sending numbered, timestamped
//! messages to the second at a target total rate; throughput, end-to-end
//! latency, loss and duplicates.
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
    msg_rate: f64,
    secs: u64,
    size: usize,
) -> anyhow::Result<Outcome> {
    if common.target == crate::target::Target::Nchan {
        anyhow::bail!("direct needs a target whose clients can publish (gateway, nats)");
    }
    let conns = conns.next_multiple_of(2);
    let shape = Shape {
        conns,
        max_seq: 1 << 24,
        direct: Some((msg_rate, size, Duration::from_secs(secs))),
        ..Shape::default()
    };
    let mut run = Run::start(common, shape)?;
    let all = run.ramp(Duration::from_secs(600));
    let before = run.mon.sample();
    let machine0 = sys::machine_busy_secs().unwrap_or(0.0);
    let t0 = Instant::now();
    run.mon.phase("send", (msg_rate * secs as f64) as u64);
    run.mon.wait(
        Duration::from_secs(secs + 1),
        |_| t0.elapsed().as_secs() >= secs,
        |s| s.sent.load(Relaxed),
    );
    run.mon.phase("drain", run.shared().sent.load(Relaxed));
    run.mon.wait(
        Duration::from_secs(10),
        |s| {
            t0.elapsed().as_secs_f64() > secs as f64 + 0.2
                && s.deliveries.load(Relaxed) + s.rejected.load(Relaxed) >= s.sent.load(Relaxed)
        },
        |s| s.deliveries.load(Relaxed),
    );
    let span = t0.elapsed().as_secs_f64();
    let after = run.mon.sample();
    let machine1 = sys::machine_busy_secs().unwrap_or(0.0);
    let metrics = scrape_metrics(common);
    let sent = run.shared().sent.load(Relaxed);
    // A refused send (OVERLOADED) is the server's stated backpressure: the
    // sender knows, and nothing is owed for it.
    let rejected = run.shared().rejected.load(Relaxed);
    let owed = sent.saturating_sub(rejected);
    let held = before.connected;
    let report = run.stop();
    let mut o = run.outcome("direct", &report, held);
    o.messages_published = sent;
    o.deliveries = after.deliveries;
    o.expected_deliveries = owed;
    o.rejected = rejected;
    o.deliveries_per_sec = o.deliveries as f64 / span.max(1e-6);
    o.lost = owed.saturating_sub(report.distinct);
    o.server_rss_held_bytes = before.server_rss;
    o.set_cpu(after.server_cpu - before.server_cpu, machine1 - machine0);
    o.latency_hist = Some(report.latency.clone());
    o.metrics = metrics;
    o.extra.insert("target_msg_rate".into(), msg_rate.into());
    o.extra.insert("send_secs".into(), secs.into());
    o.extra.insert("message_bytes".into(), size.into());
    if !all {
        o.problem(format!("only {held} of {conns} connections were ready"));
    }
    if sent == 0 {
        o.problem("nothing was sent".into());
    }
    if o.lost > 0 || o.duplicated > 0 || o.bad_payload > 0 || o.deliveries != owed {
        o.problem(format!(
            "deliveries {} of {owed} accepted ({rejected} of {sent} refused): lost {}, duplicated {}, bad {}",
            o.deliveries, o.lost, o.duplicated, o.bad_payload
        ));
    }
    Ok(o)
}
