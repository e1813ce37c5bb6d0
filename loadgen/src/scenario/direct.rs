//! `direct`: pairs of users, the first of each sending numbered, timestamped
//! messages to the second at a target total rate; throughput, end-to-end
//! latency, loss and duplicates. On several gateway nodes (`--addrs`,
//! `--admins`) the pairs can be split over two nodes (`--pairs split`);
//! sending then starts once every receiver (or a sample) is online at its
//! sender's node, and the bus traffic of all nodes is reported.
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::cluster::{self, Bus};
use super::{scrape_metrics, Run, Shape};
use crate::cli::Common;
use crate::nodes::Placement;
use crate::report::Outcome;
use crate::sys;
use crate::target::Target;

/// The scenario's bounds.
pub struct Direct {
    /// Connections (pairs x 2).
    pub conns: u64,
    /// Messages per second, all pairs together.
    pub msg_rate: f64,
    /// Seconds of sending.
    pub secs: u64,
    /// Body size.
    pub size: usize,
    /// Where a pair's users are placed among the nodes.
    pub pairs: Placement,
    /// Receivers checked at their sender's node before sending (0: all).
    pub presence_sample: u64,
}

impl Direct {
    /// 64-byte messages, pairs round-robin, every receiver checked.
    pub fn new(conns: u64, msg_rate: f64, secs: u64) -> Self {
        Direct {
            conns,
            msg_rate,
            secs,
            size: 64,
            pairs: Placement::RoundRobin,
            presence_sample: 0,
        }
    }
}

/// The `(sender's node, receiver)` presence checks: every pair's, or
/// `sample` of them evenly spaced.
fn presence_checks(run: &Run, sample: u64) -> Vec<(usize, String)> {
    let pairs = run.plan.conns / 2;
    let n = if sample == 0 {
        pairs
    } else {
        sample.min(pairs)
    };
    (0..n)
        .map(|i| i * pairs / n.max(1))
        .map(|k| {
            let node = run.plan.node_of(2 * k);
            (node, crate::worker::user_name(2 * k + 1))
        })
        .collect()
}

/// Runs the scenario.
pub fn run(common: &Common, d: &Direct) -> anyhow::Result<Outcome> {
    let (msg_rate, secs) = (d.msg_rate, d.secs);
    if common.target == Target::Nchan {
        anyhow::bail!("direct needs a target whose clients can publish (gateway, nats)");
    }
    let nodes = common.client_addrs().len();
    let admins = common.admin_addrs();
    let cluster = common.target == Target::Gateway && nodes > 1;
    if cluster && admins.len() != nodes {
        anyhow::bail!("--admins must name each of the {nodes} nodes of --addrs, in order");
    }
    let conns = d.conns.next_multiple_of(2);
    let shape = Shape {
        conns,
        max_seq: 1 << 24,
        direct: Some((msg_rate, d.size, Duration::from_secs(secs))),
        placement: d.pairs,
        ..Shape::default()
    };
    let mut run = Run::start(common, shape)?;
    let all = run.ramp(Duration::from_secs(600));
    let mut interest = Ok(0.0);
    let mut bus0 = Bus::default();
    if cluster {
        let checks = presence_checks(&run, d.presence_sample);
        run.mon.phase("presence", checks.len() as u64);
        let timeout = Duration::from_secs(common.interest_timeout_secs);
        interest = cluster::wait_presence(&admins, checks, timeout);
        std::thread::sleep(cluster::METRICS_SETTLE);
        bus0 = Bus::scrape(&admins);
    }
    run.shared().go.store(true, Relaxed);
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
    let bus = cluster.then(|| {
        std::thread::sleep(cluster::METRICS_SETTLE);
        Bus::scrape(&admins).since(bus0)
    });
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
    o.extra.insert("message_bytes".into(), d.size.into());
    if nodes > 1 {
        o.extra.insert("nodes".into(), nodes.into());
        o.extra.insert("pairs".into(), d.pairs.name().into());
    }
    if let Some(bus) = bus {
        bus.record(&mut o);
    }
    match interest {
        Ok(s) if cluster => {
            o.extra.insert("presence_wait_secs".into(), s.into());
        }
        Ok(_) => {}
        Err(e) => o.problem(e),
    }
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
