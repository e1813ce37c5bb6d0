//! `fanout`: subscribers in rooms of S members, one publisher sending
//! numbered, timestamped messages to every room; deliveries per second,
//! publish-to-delivery latency, loss and duplicates, and the server's CPU
//! per delivery. With several gateway nodes (`--addrs`) the members spread
//! over them and the publisher posts to `--admin`'s node; with `--admins`
//! the bus traffic of every node is reported.
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::cluster::{self, Bus};
use super::{scrape_metrics, Run, Shape};
use crate::cli::Common;
use crate::publish::Publisher;
use crate::report::Outcome;
use crate::sys;
use crate::target::Target;

/// Half-second samples taken after the last delivery before memory is read.
const SETTLE_SAMPLES: usize = 10;

/// The scenario's bounds.
pub struct Fanout {
    /// Subscribers.
    pub conns: u64,
    /// Members per room.
    pub room_size: u64,
    /// Messages per room.
    pub messages: u64,
    /// Publishes per second (0: unpaced).
    pub pub_rate: f64,
    /// Body size.
    pub size: usize,
    /// Seconds to wait for deliveries after the last publish.
    pub drain_secs: u64,
}

fn publisher(common: &Common) -> anyhow::Result<Publisher> {
    Ok(match common.target {
        Target::Gateway => Publisher::gateway(common.admin, common.qos == 1),
        Target::Nchan => Publisher::nchan(
            common
                .nchan_pub
                .unwrap_or(std::net::SocketAddr::V4(common.addr)),
        ),
        Target::Nats => Publisher::nats(common.nats_pub)?,
    })
}

/// Runs the scenario.
pub fn run(common: &Common, f: &Fanout) -> anyhow::Result<Outcome> {
    let rooms = f.conns.div_ceil(f.room_size.max(1));
    let shape = Shape {
        conns: f.conns,
        room_size: Some(f.room_size.max(1)),
        max_seq: f.messages,
        ..Shape::default()
    };
    let mut run = Run::start(common, shape)?;
    let all = run.ramp(Duration::from_secs(600));
    let mut pubr = publisher(common)?;
    let members = run.shared().connected();
    // Interest reaches the other nodes asynchronously: publish once the
    // publisher's node counts every member, cluster-wide.
    let gateway = common.target == Target::Gateway;
    let mut interest = Ok(0.0);
    if gateway {
        run.mon.phase("interest", members);
        let timeout = Duration::from_secs(common.interest_timeout_secs);
        interest = cluster::wait_rooms(common.admin, rooms, members, timeout);
    }
    let admins = common.admin_addrs();
    let cluster = gateway && admins.len() > 1;
    let bus0 = if cluster {
        std::thread::sleep(cluster::METRICS_SETTLE);
        Bus::scrape(&admins)
    } else {
        Bus::default()
    };
    let expected = members * f.messages;
    // Bytes the gateway wrote to clients (every node): per delivery, what
    // compression is judged on.
    let wire_bytes = || {
        let text: String = admins
            .iter()
            .map(|&a| cluster::metrics_of(a) + "\n")
            .collect();
        cluster::metric_sum(&text, "gateway_bytes_out_total")
    };
    let wire0 = if gateway { wire_bytes() } else { None };
    let before = run.mon.sample();
    let machine0 = sys::machine_busy_secs().unwrap_or(0.0);
    run.mon.phase("publish", f.messages * rooms);
    let t0 = Instant::now();
    let mut published = 0u64;
    let mut publish_error = None;
    'outer: for m in 0..f.messages {
        for r in 0..rooms {
            let body = crate::payload::make(m, f.size);
            if let Err(e) = pubr.publish(&format!("room{r}"), &body) {
                publish_error = Some(format!("publish: {e:#}"));
                break 'outer;
            }
            published += 1;
            if f.pub_rate > 0.0 {
                let due = t0 + Duration::from_secs_f64(published as f64 / f.pub_rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            run.mon.tick(published);
        }
    }
    if let Err(e) = pubr.flush() {
        publish_error.get_or_insert(format!("flush: {e:#}"));
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    run.mon.phase("deliver", expected);
    let mut last = (run.shared().deliveries.load(Relaxed), Instant::now());
    run.mon.wait(
        Duration::from_secs(f.drain_secs),
        |s| {
            let d = s.deliveries.load(Relaxed);
            if d != last.0 {
                last = (d, Instant::now());
            }
            d >= expected || last.1.elapsed() > Duration::from_secs(f.drain_secs.min(5))
        },
        |s| s.deliveries.load(Relaxed),
    );
    let span = last.1.duration_since(t0).as_secs_f64().max(1e-6);
    let after = run.mon.sample();
    let machine1 = sys::machine_busy_secs().unwrap_or(0.0);
    // Memory after the burst: give the server a few seconds to hand freed
    // buffers back (the gateway's shards do every 2 s), keep the last sample.
    let mut settled = run.mon.sample();
    for _ in 0..SETTLE_SAMPLES {
        std::thread::sleep(Duration::from_millis(500));
        settled = run.mon.sample();
    }
    let bus = cluster.then(|| Bus::scrape(&admins).since(bus0));
    let wire = wire0.zip(wire_bytes()).map(|(a, b)| b - a);
    let metrics = scrape_metrics(common);
    let report = run.stop();
    let mut o = run.outcome("fanout", &report, members);
    o.messages_published = published;
    o.deliveries = after.deliveries;
    o.expected_deliveries = expected;
    o.deliveries_per_sec = o.deliveries as f64 / span;
    o.lost = expected.saturating_sub(report.distinct);
    o.server_rss_held_bytes = before.server_rss;
    if members > 0 && !common.server_pids.is_empty() {
        let grown = before.server_rss.saturating_sub(run.idle_rss);
        o.gateway_rss_bytes_per_conn = Some(grown as f64 / members as f64);
    }
    o.server_rss_after_bytes = settled.server_rss;
    o.set_cpu(after.server_cpu - before.server_cpu, machine1 - machine0);
    o.latency_hist = Some(report.latency.clone());
    o.metrics = metrics;
    o.extra.insert("rooms".into(), rooms.into());
    o.extra.insert("room_size".into(), f.room_size.into());
    o.extra
        .insert("messages_per_room".into(), f.messages.into());
    o.extra.insert("message_bytes".into(), f.size.into());
    o.extra.insert("publish_secs".into(), publish_secs.into());
    o.extra
        .insert("publish_to_last_delivery_secs".into(), span.into());
    o.extra.insert(
        "server_rss_peak_bytes".into(),
        run.mon
            .samples
            .iter()
            .map(|s| s.server_rss)
            .max()
            .unwrap_or(0)
            .into(),
    );
    if cluster {
        o.extra.insert("nodes".into(), admins.len().into());
    }
    if let Some(bytes) = wire.filter(|_| o.deliveries > 0) {
        o.extra.insert("wire_bytes_out".into(), bytes.into());
        let per = bytes / o.deliveries as f64;
        o.extra.insert("wire_bytes_per_delivery".into(), per.into());
    }
    if let Some(bus) = bus {
        bus.record(&mut o);
    }
    match interest {
        Ok(s) if gateway => {
            o.extra.insert("interest_wait_secs".into(), s.into());
        }
        Ok(_) => {}
        Err(e) => o.problem(e),
    }
    if let Some(e) = publish_error {
        o.problem(e);
    }
    if !all {
        o.problem(format!(
            "only {members} of {} subscribers were ready",
            f.conns
        ));
    }
    if o.lost > 0 || o.duplicated > 0 || o.bad_payload > 0 || o.deliveries != expected {
        o.problem(format!(
            "deliveries {} of {expected}: lost {}, duplicated {}, bad {}",
            o.deliveries, o.lost, o.duplicated, o.bad_payload
        ));
    }
    Ok(o)
}
