#!/usr/bin/env bash
# What read coalescing (`read_coalesce_us`) costs in latency: the same
# direct-message load (QoS 0, WebSocket) with it off and on, one gateway
# each. Writes bench-results/<date>-direct-gateway-coalesce-<us>/.
# Its CPU side is measured at the heartbeat load it is for:
#   SHARDS=80 HEARTBEAT_MS=2500 [READ_COALESCE_US=10000] scripts/bench-million.sh 100000 40
#
# Usage: scripts/bench-coalesce.sh [US]   (default 10000)
# Env: SHARDS (8), CONNS (10000), RATE (messages/s, 2000), SECS (20).
set -euo pipefail
cd "$(dirname "$0")/.."
us=${1:-10000}
conns=${CONNS:-10000} rate=${RATE:-2000} secs=${SECS:-20}
cargo build --release -q -p gateway -p loadgen
secret=coalesce-$$
out=$(mktemp)
gw_pid=
trap '[ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null; rm -f "$out" "$out.err"' EXIT
for d in 0 "$us"; do
    target/release/gateway --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --shards "${SHARDS:-8}" --jwt-secret "$secret" --read-coalesce-us "$d" >"$out" 2>"$out.err" &
    gw_pid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$out" && break; sleep 0.1; done
    grep -q '^ready ' "$out" || { echo "bench-coalesce: gateway did not start" >&2; cat "$out.err" >&2; exit 1; }
    ws=$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' "$out")
    admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$out")
    LOADGEN_JWT_SECRET=$secret target/release/loadgen --target gateway --wire ws --addr "$ws" \
        --server-pid "$gw_pid" --admin "$admin" --label "coalesce-$d" \
        direct --conns "$conns" --msg-rate "$rate" --secs "$secs"
    kill "$gw_pid" 2>/dev/null || { echo "bench-coalesce: the gateway exited during the run" >&2; cat "$out.err" >&2; exit 1; }
    wait "$gw_pid" 2>/dev/null || true; gw_pid=
done
