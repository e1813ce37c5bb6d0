#!/usr/bin/env python3
"""Downstream publisher for scripts/bench-backend.sh (a benchmark, not a test).

XADDs entries to the gateway's downstream stream at a target rate for SECS
seconds, round-robin over USERS users (`<prefix><i>`), each entry
`user <u> text {"p":phase,"i":n,"t":unix_ms} qos <0|1>`. Paced in 2 ms ticks;
each tick's entries go in one pipeline (no MULTI). Prints one JSON line:
what was sent, when, how far behind schedule it fell, and its own CPU.

Usage: bench-backend-publish.py --port P --rate R --secs S --qos Q --users K
       --prefix bb-u --phase NAME [--stream gw:downstream]
"""
import argparse
import json
import resource
import sys
import time

import redis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--qos", choices=["0", "1"], required=True)
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--prefix", default="bb-u")
    ap.add_argument("--phase", required=True)
    ap.add_argument("--stream", default="gw:downstream")
    a = ap.parse_args()

    r = redis.Redis(host="127.0.0.1", port=a.port)
    r.ping()
    total = int(a.rate * a.secs)
    sent = 0
    max_lag_ms = 0.0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    wall0 = time.time() * 1000
    while sent < total:
        now = time.monotonic()
        due = min(total, int(a.rate * (now - t0)))
        if due > sent:
            # Behind schedule by: time since the oldest due entry was due.
            lag = (now - t0 - sent / a.rate) * 1000
            max_lag_ms = max(max_lag_ms, lag)
            p = r.pipeline(transaction=False)
            for n in range(sent, due):
                text = json.dumps({"p": a.phase, "i": n, "t": time.time() * 1000}, separators=(",", ":"))
                p.execute_command("XADD", a.stream, "*", "user", f"{a.prefix}{n % a.users}",
                                  "text", text, "qos", a.qos)
            p.execute()
            sent = due
        else:
            time.sleep(0.002)
    t1 = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    print(json.dumps({
        "phase": a.phase, "sent": sent, "target_rate": a.rate, "secs": t1 - t0,
        "achieved_rate": sent / (t1 - t0), "max_lag_ms": round(max_lag_ms, 2),
        "publisher_cpu_s": round(cpu, 3), "wall_start_ms": wall0,
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
