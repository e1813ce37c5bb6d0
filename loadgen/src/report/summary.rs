//! `summary.md`: the result for people.
use std::fmt::Write as _;

use super::Outcome;

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The Markdown summary of `o`.
pub fn markdown(o: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# {} against {} ({})\n",
        o.scenario,
        o.target,
        if o.ok { "ok" } else { "PROBLEMS" }
    );
    let _ = writeln!(s, "- date: {}", o.date);
    let _ = writeln!(
        s,
        "- machine: {} CPUs ({}), {:.1} GiB",
        o.cpus,
        o.cpu_model,
        o.mem_total_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(s, "- kernel: {}", o.kernel);
    let _ = writeln!(s, "- commit: {}", o.commit);
    let _ = writeln!(s, "- command: `{}`\n", o.command);
    let _ = writeln!(s, "| measure | value |\n| --- | --- |");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(s, "| {k} | {v} |");
    };
    row("wire", o.wire.clone());
    row(
        "connections held / target",
        format!("{} / {}", o.connections_held, o.connections_target),
    );
    row("failed attempts", o.failed.to_string());
    row("dropped after ready", o.dropped.to_string());
    row(
        "ramp",
        format!(
            "{:.1} s, {:.0} connections/s",
            o.ramp_secs, o.connect_rate_per_sec
        ),
    );
    row(
        "handshake p50 / p99 / p999 (us)",
        format!(
            "{} / {} / {}",
            o.handshake_us.p50, o.handshake_us.p99, o.handshake_us.p999
        ),
    );
    row(
        "server RSS idle / held / after (MiB)",
        format!(
            "{:.1} / {:.1} / {:.1}",
            mib(o.server_rss_idle_bytes),
            mib(o.server_rss_held_bytes),
            mib(o.server_rss_after_bytes)
        ),
    );
    if let Some(b) = o.gateway_rss_bytes_per_conn {
        row(
            "server RSS per connection (user space)",
            format!("{b:.0} B"),
        );
    }
    if let Some(b) = o.kernel_bytes_per_conn {
        row(
            "kernel memory per connection pair (MemFree drop minus RSS)",
            format!("{b:.0} B"),
        );
    }
    if o.expected_deliveries > 0 || o.deliveries > 0 {
        row("messages published", o.messages_published.to_string());
        row(
            "deliveries / expected",
            format!("{} / {}", o.deliveries, o.expected_deliveries),
        );
        row(
            "deliveries per second",
            format!("{:.0}", o.deliveries_per_sec),
        );
        row(
            "server CPU-s (machine CPU-s)",
            format!("{:.2} ({:.2})", o.server_cpu_sec, o.machine_cpu_sec),
        );
        if let Some(d) = o.deliveries_per_server_cpu_sec {
            row("deliveries per server CPU-second", format!("{d:.0}"));
        }
        if let Some(c) = o.server_cpu_sec_per_million_deliveries {
            row("server CPU-s per 1M deliveries", format!("{c:.2}"));
        }
        row(
            "latency p50 / p99 / p999 / max (us)",
            format!(
                "{} / {} / {} / {}",
                o.latency_us.p50, o.latency_us.p99, o.latency_us.p999, o.latency_us.max
            ),
        );
        row(
            "lost / duplicated / bad payload / refused sends",
            format!(
                "{} / {} / {} / {}",
                o.lost, o.duplicated, o.bad_payload, o.rejected
            ),
        );
    } else {
        row(
            "server CPU-s (machine CPU-s)",
            format!("{:.2} ({:.2})", o.server_cpu_sec, o.machine_cpu_sec),
        );
    }
    row(
        "heartbeats sent / answered",
        format!("{} / {}", o.pings, o.pongs),
    );
    for (k, v) in &o.extra {
        match v {
            serde_json::Value::String(text) => row(k, text.clone()),
            v => row(k, v.to_string()),
        }
    }
    if !o.upgrades.is_empty() {
        s.push_str(&super::upgrade::markdown(&o.upgrades));
    }
    if !o.failures.is_empty() {
        let _ = writeln!(s, "\nFailures and notes by cause:\n");
        for (k, v) in &o.failures {
            let _ = writeln!(s, "- `{k}`: {v}");
        }
    }
    if !o.problems.is_empty() {
        let _ = writeln!(s, "\nProblems:\n");
        for p in &o.problems {
            let _ = writeln!(s, "- {p}");
        }
    }
    if o.timeline.is_some() {
        let _ = writeln!(
            s,
            "\n`upgrade.png`: ping round trips by send time (p50, p99, max per 100 ms; each \
             upgrade's POST-to-answer window shaded), and each server process's RSS and CPU; \
             the series are `rtt.csv` and `procs.csv`."
        );
    }
    let _ = writeln!(
        s,
        "\nPlots: `connections-rss.png` (connections and server RSS over time){}.",
        match (o.latency_hist.is_some(), o.windows.is_empty()) {
            (true, true) => ", `latency.png` (latency percentiles)",
            (true, false) => {
                ", `latency.png` (latency percentiles), `soak.png` (latency, RSS and cuts per \
                 window), `soak-resources.png` (RSS, descriptors, CPU, traffic, error counters) \
                 and `windows.csv`"
            }
            _ => "",
        }
    );
    s
}
