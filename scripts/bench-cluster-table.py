#!/usr/bin/env python3
"""README.md of a scripts/bench-cluster.sh result directory: one table row
per loadgen run inside it (fan-out, then direct), medians of the fan-out
runs per setup, and the machine, commit and commands.

Usage: scripts/bench-cluster-table.py DIR [SCRIPT COMMAND]
"""
import json
import statistics
import sys
from pathlib import Path


def load(d):
    runs = []
    for f in sorted(Path(d).glob("*/result.json")):
        r = json.loads(f.read_text())
        r["dir"] = f.parent.name
        runs.append(r)
    return runs


def num(x, fmt="{:,.0f}"):
    return "-" if x is None else fmt.format(x)


def fanout_rows(runs):
    out = [
        "| run | nodes | members (per node) | deliveries / expected | lost / dup | server CPU-s (machine) "
        "| deliveries per server CPU-s | bus bytes per delivery | bus envelopes per message "
        "| latency p50 / p99 (ms) | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        e = r["extra"]
        n = e.get("nodes", 1)
        out.append(
            f"| `{r['dir']}` | {n} | {r['connections_held']:,} ({r['connections_held'] // n:,}) "
            f"| {r['deliveries']:,} / {r['expected_deliveries']:,} | {r['lost']} / {r['duplicated']} "
            f"| {r['server_cpu_sec']:.2f} ({r['machine_cpu_sec']:.2f}) "
            f"| {num(r['deliveries_per_server_cpu_sec'])} "
            f"| {num(e.get('bus_bytes_per_delivery'), '{:.3f}')} "
            f"| {num(e.get('bus_envelopes_per_message'), '{:.2f}')} "
            f"| {r['latency_us']['p50'] / 1000:.1f} / {r['latency_us']['p99'] / 1000:.1f} "
            f"| {'yes' if r['ok'] else 'NO: ' + '; '.join(r['problems'])} |"
        )
    return out


def fanout_medians(runs):
    by = {}
    for r in runs:
        by.setdefault(r["extra"].get("nodes", 1), []).append(r)
    out = [
        "| nodes | runs | deliveries per server CPU-s, median (range) | bus bytes per delivery | bus envelopes per message |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, rs in sorted(by.items()):
        d = [r["deliveries_per_server_cpu_sec"] or 0 for r in rs]
        med = lambda k: statistics.median(r["extra"].get(k, 0) for r in rs)
        out.append(
            f"| {n} | {len(rs)} | **{statistics.median(d):,.0f}** ({min(d):,.0f}-{max(d):,.0f}) "
            f"| {med('bus_bytes_per_delivery'):.3f} | {med('bus_envelopes_per_message'):.2f} |"
        )
    return out


def direct_rows(runs):
    out = [
        "| run | nodes, pairs | connections | msg/s (target) | sent / delivered | lost / dup / refused "
        "| latency p50 / p99 / p999 / max (ms) | server CPU-s per 1M | bus envelopes / bytes per message "
        "| presence wait (s) | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        e, lat = r["extra"], r["latency_us"]
        out.append(
            f"| `{r['dir']}` | {e.get('nodes', 1)}, {e.get('pairs', '-')} | {r['connections_held']:,} "
            f"| {r['deliveries_per_sec']:,.0f} ({e['target_msg_rate']:,.0f}) "
            f"| {r['messages_published']:,} / {r['deliveries']:,} "
            f"| {r['lost']} / {r['duplicated']} / {r['rejected']} "
            f"| {lat['p50'] / 1000:.2f} / {lat['p99'] / 1000:.2f} / {lat['p999'] / 1000:.2f} / {lat['max'] / 1000:.1f} "
            f"| {num(r['server_cpu_sec_per_million_deliveries'], '{:.1f}')} "
            f"| {num(e.get('bus_envelopes_per_message'), '{:.2f}')} / {num(e.get('bus_bytes_per_message'), '{:.0f}')} "
            f"| {num(e.get('presence_wait_secs'), '{:.1f}')} "
            f"| {'yes' if r['ok'] else 'NO: ' + '; '.join(r['problems'])} |"
        )
    return out


def main():
    d = sys.argv[1]
    script = sys.argv[2] if len(sys.argv) > 2 else "scripts/bench-cluster.sh"
    runs = load(d)
    fan = [r for r in runs if r["scenario"] == "fanout"]
    dm = [r for r in runs if r["scenario"] == "direct"]
    first = runs[0] if runs else {}
    lines = [
        f"# Cluster benchmark: {Path(d).name}",
        "",
        f"- machine: {first.get('cpus')} CPUs ({first.get('cpu_model')}), "
        f"{first.get('mem_total_bytes', 0) / 2**30:.1f} GiB; kernel {first.get('kernel')}; "
        f"commit {first.get('commit')}",
        "- everything on this host's loopback: Redis, the gateway nodes and loadgen share the 2 cores "
        "(3 single-shard nodes are 3 shard threads on 2 cores)",
        f"- script: `{script}`; each run's exact loadgen command is in its `summary.md`, "
        "the nodes' lines in `nodes-*.txt`",
        "- server CPU: utime+stime of every node, summed, publish-to-last-delivery window; "
        "bus figures: `gateway_bus_*_out_total` deltas summed over nodes and peers",
        "",
    ]
    if fan:
        lines += ["## Fan-out: one room, one node vs spread over the cluster", ""]
        lines += fanout_medians(fan) + [""] + fanout_rows(fan) + [""]
    if dm:
        lines += ["## Direct messages, pairs split across nodes (and kept together)", ""]
        lines += direct_rows(dm) + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
