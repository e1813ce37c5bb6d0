//! The bus and registry metrics (names here, next to `metrics`): per peer,
//! summed over this node's shards.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::metrics::{counter_header, gauge_header};
use crate::stats::ShardStats;

/// A metric: name, help, and how to read it.
type Row<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Appends one counter per row, each read from `of`.
fn counters<T>(o: &mut String, rows: &[Row<T>], of: &T) {
    for (name, help, field) in rows {
        counter_header(o, name, help);
        let _ = writeln!(o, "{name} {}", field(of));
    }
}

/// Appends the bus metrics of every shard to `o`.
pub(super) fn render(o: &mut String, shards: &[Arc<ShardStats>]) {
    let node: [Row<ShardStats>; 4] = [
        (
            "gateway_bus_refused_total",
            "Envelopes a full bus link refused (QoS 0 lost; QoS 1 waits in the inbox).",
            |s| s.bus_refused.load(Relaxed),
        ),
        (
            "gateway_bus_envelopes_in_total",
            "Envelopes received from peers.",
            |s| s.bus_envelopes_in.load(Relaxed),
        ),
        (
            "gateway_bus_bad_envelopes_total",
            "Envelopes from peers that were not understood.",
            |s| s.bus_bad_envelopes.load(Relaxed),
        ),
        (
            "gateway_bus_auth_failures_total",
            "Bus peers refused: they did not prove the cluster secret (or asked for one this node lacks).",
            |s| s.bus_auth_failures.load(Relaxed),
        ),
    ];
    for (name, help, field) in node {
        counter_header(o, name, help);
        let n: u64 = shards.iter().map(|s| field(s)).sum();
        let _ = writeln!(o, "{name} {n}");
    }
    // Per peer, summed over shards (each shard has its own link).
    let mut peers: BTreeMap<Arc<str>, (relay::LinkStats, usize, usize)> = BTreeMap::new();
    for s in shards {
        for (peer, state, stats) in s.bus() {
            let e = peers.entry(peer).or_default();
            e.0.bytes_out += stats.bytes_out;
            e.0.bytes_in += stats.bytes_in;
            e.0.batches_out += stats.batches_out;
            e.0.envelopes_out += stats.envelopes_out;
            e.0.batches_resent += stats.batches_resent;
            e.0.envelopes_refused += stats.envelopes_refused;
            e.0.queued_bytes += stats.queued_bytes;
            e.1 += 1;
            if state == relay::LinkState::Up {
                e.2 += 1;
            }
        }
    }
    let rows: [Row<relay::LinkStats>; 6] = [
        (
            "gateway_bus_bytes_out_total",
            "Bus bytes sent, by peer.",
            |s| s.bytes_out,
        ),
        (
            "gateway_bus_bytes_in_total",
            "Bus bytes received on our links, by peer.",
            |s| s.bytes_in,
        ),
        (
            "gateway_bus_batches_out_total",
            "Bus batches sent, by peer.",
            |s| s.batches_out,
        ),
        (
            "gateway_bus_envelopes_out_total",
            "Bus envelopes queued, by peer.",
            |s| s.envelopes_out,
        ),
        (
            "gateway_bus_resent_batches_total",
            "Bus batches sent again after a reconnect, by peer.",
            |s| s.batches_resent,
        ),
        (
            "gateway_bus_queued_bytes",
            "Bus bytes unsent or unacknowledged, by peer.",
            |s| s.queued_bytes as u64,
        ),
    ];
    for (name, help, field) in rows {
        if name.ends_with("_total") {
            counter_header(o, name, help);
        } else {
            gauge_header(o, name, help);
        }
        for (peer, (stats, _, _)) in &peers {
            let _ = writeln!(o, "{name}{{peer=\"{peer}\"}} {}", field(stats));
        }
    }
    gauge_header(
        o,
        "gateway_bus_links_up",
        "This node's links to the peer that are up (of one per shard), by peer.",
    );
    for (peer, (_, links, up)) in &peers {
        let _ = writeln!(
            o,
            "gateway_bus_links_up{{peer=\"{peer}\",links=\"{links}\"}} {up}"
        );
    }
}

/// Appends the registry's counters to `o`.
pub(super) fn render_registry(
    o: &mut String,
    view: &crate::cluster::View,
    presence: Option<&crate::cluster::presence::Presence>,
) {
    let rows: [Row<crate::cluster::View>; 2] = [
        (
            "gateway_registry_refreshes_total",
            "Registry refreshes written and read.",
            |v| v.refreshes.load(Relaxed),
        ),
        (
            "gateway_registry_errors_total",
            "Registry refreshes that failed.",
            |v| v.errors.load(Relaxed),
        ),
    ];
    counters(o, &rows, view);
    gauge_header(
        o,
        "gateway_registry_nodes",
        "Nodes the registry lists, this one included.",
    );
    let _ = writeln!(o, "gateway_registry_nodes {}", view.nodes().len());
    let Some(p) = presence else { return };
    let rows: [Row<crate::cluster::presence::Presence>; 3] = [
        (
            "gateway_presence_writes_total",
            "Users whose presence was written to Redis.",
            |p| p.writes.load(Relaxed),
        ),
        (
            "gateway_presence_errors_total",
            "Presence pipelines Redis refused or did not answer.",
            |p| p.errors.load(Relaxed),
        ),
        (
            "gateway_presence_dropped_total",
            "Presence batches dropped: the writer's queue was full.",
            |p| p.dropped.load(Relaxed),
        ),
    ];
    counters(o, &rows, p);
    counter_header(
        o,
        "gateway_presence_events_total",
        "Online and offline events this node appended for the backend (cluster-wide, each told once).",
    );
    for (i, kind) in ["online", "offline"].iter().enumerate() {
        let n = p.told[i].load(Relaxed);
        let _ = writeln!(o, "gateway_presence_events_total{{type=\"{kind}\"}} {n}");
    }
    counter_header(
        o,
        "gateway_presence_events_dropped_total",
        "Online and offline events dropped: Redis refused their appends until the outbox was full.",
    );
    let n = p.events_dropped.load(Relaxed);
    let _ = writeln!(o, "gateway_presence_events_dropped_total {n}");
}

/// Appends the backend streams' counters to `o`.
pub(super) fn render_backend(o: &mut String, node: &crate::control::node::Node) {
    let d = &node.downstream;
    let rows: [Row<crate::control::downstream::Counters>; 4] = [
        (
            "gateway_downstream_entries_total",
            "Downstream entries pushed and acknowledged.",
            |c| c.entries.load(Relaxed),
        ),
        (
            "gateway_downstream_claimed_total",
            "Downstream entries claimed from a consumer that stopped.",
            |c| c.claimed.load(Relaxed),
        ),
        (
            "gateway_downstream_malformed_total",
            "Downstream entries with no target or payload.",
            |c| c.malformed.load(Relaxed),
        ),
        (
            "gateway_downstream_errors_total",
            "Failed downstream Redis calls.",
            |c| c.errors.load(Relaxed),
        ),
    ];
    counters(o, &rows, &**d);
    counter_header(
        o,
        "gateway_events_dropped_total",
        "Lifecycle events dropped (the upstream writer was behind).",
    );
    let n: u64 = node
        .stats
        .iter()
        .map(|s| s.events_dropped.load(Relaxed))
        .sum();
    let _ = writeln!(o, "gateway_events_dropped_total {n}");
}

/// Appends the accept-time refusals to `o`.
pub(super) fn render_admission(o: &mut String, a: &crate::admission::Admission) {
    counter_header(
        o,
        "gateway_refused_conns_total",
        "Connections closed at accept, by limit.",
    );
    for (i, reason) in ["max_conns", "max_conns_per_ip", "connect_rate_per_ip"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            o,
            "gateway_refused_conns_total{{limit=\"{reason}\"}} {}",
            a.refused[i].load(Relaxed)
        );
    }
}

/// Appends the upgrades done and aborted (carried across processes).
pub(super) fn render_upgrades(o: &mut String, u: &crate::control::upgrade::UpgradeState) {
    counter_header(
        o,
        "gateway_upgrades_total",
        "Binary upgrades completed (a new process took the listeners).",
    );
    let _ = writeln!(o, "gateway_upgrades_total {}", u.done.load(Relaxed));
    counter_header(
        o,
        "gateway_upgrades_aborted_total",
        "Binary upgrades aborted (the old process served on).",
    );
    let _ = writeln!(
        o,
        "gateway_upgrades_aborted_total {}",
        u.aborted.load(Relaxed)
    );
}
