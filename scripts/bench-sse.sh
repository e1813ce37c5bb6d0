#!/usr/bin/env bash
# The SSE + POST fallback beside WebSocket: N connections held idle with
# heartbeats every HB ms (WebSocket: a ping frame on the connection; SSE: a
# POST on a connection of its own, as the README asks), alternating, RUNS
# times each. Reports server RSS per held connection and server CPU per
# heartbeat (server_cpu_us_per_heartbeat) over the hold; results land in
# bench-results/<date>-connect-gateway-{ws,sse}-n<N>-run<i>/.
#
# Usage: scripts/bench-sse.sh [N] [HOLD_SECS] [RUNS] [HB_MS]
#   defaults: 10000 20 3 1000. Env: SHARDS (2).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10000}
hold=${2:-20}
runs=${3:-3}
hb=${4:-1000}
. scripts/lib/gateway.sh
bench_setup

for run in $(seq "$runs"); do
    for wire in ws sse; do
        start_gateway
        LOADGEN_JWT_SECRET=$secret "$loadgen" --target gateway --wire "$wire" --addr "$ws" \
            --admin "$admin" --server-pid "$gw_pid" --heartbeat-ms "$hb" --label "$wire-n$n-run$run" \
            connect --conns "$n" --hold-secs "$hold" || true
        stop_gateway
    done
done
