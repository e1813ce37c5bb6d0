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
secret=bench-secret-$$
loadgen=target/release/loadgen
gateway=target/release/gateway
[ -x "$loadgen" ] && [ -x "$gateway" ] || cargo build --release -p gateway -p loadgen

saved=$(mktemp)
TUNE_HOST_SAVE=$saved scripts/tune-host.sh >/dev/null || true
gw_pid=
out=$(mktemp)
cleanup() {
    scripts/tune-host.sh --restore "$saved" >/dev/null
    rm -f "$saved" "$out"
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    true
}
trap cleanup EXIT

for run in $(seq "$runs"); do
    for wire in ws sse; do
        "$gateway" --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
            --shards "${SHARDS:-2}" --jwt-secret "$secret" >"$out" 2>/dev/null &
        gw_pid=$!
        for _ in $(seq 100); do grep -q '^ready ' "$out" 2>/dev/null && break; sleep 0.1; done
        ws=$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' "$out")
        admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$out")
        LOADGEN_JWT_SECRET=$secret "$loadgen" --target gateway --wire "$wire" --addr "$ws" \
            --admin "$admin" --server-pid "$gw_pid" --heartbeat-ms "$hb" --label "$wire-n$n-run$run" \
            connect --conns "$n" --hold-secs "$hold" || true
        kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=
    done
done
