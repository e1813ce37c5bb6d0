#!/usr/bin/env bash
# permessage-deflate, measured: one room of N subscribers, MESSAGES chat-like
# text messages of SIZE bytes (loadgen --text), with and without --deflate,
# alternating, RUNS times each. Each run reports the bytes the gateway wrote
# per delivery (wire_bytes_per_delivery, from gateway_bytes_out_total), the
# server CPU per delivery and the server RSS per held connection; results
# land in bench-results/<date>-fanout-gateway-{deflate,plain}-n<N>-run<i>/.
#
# Usage: scripts/bench-compression.sh [N] [MESSAGES] [RUNS] [SIZE]
#   defaults: 10000 100 3 200. Env: SHARDS (2), WIRE (ws: binary protobuf).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10000}
messages=${2:-100}
runs=${3:-3}
size=${4:-200}
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
    for mode in plain deflate; do
        "$gateway" --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
            --shards "${SHARDS:-2}" --jwt-secret "$secret" >"$out" 2>/dev/null &
        gw_pid=$!
        for _ in $(seq 100); do grep -q '^ready ' "$out" 2>/dev/null && break; sleep 0.1; done
        ws=$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' "$out")
        admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$out")
        flags=()
        [ "$mode" = deflate ] && flags=(--deflate)
        LOADGEN_JWT_SECRET=$secret "$loadgen" --target gateway --wire "${WIRE:-ws}" --addr "$ws" \
            --admin "$admin" --server-pid "$gw_pid" --text "${flags[@]}" --label "$mode-n$n-run$run" \
            fanout --conns "$n" --room-size "$n" --messages "$messages" --size "$size" || true
        kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=
    done
done
