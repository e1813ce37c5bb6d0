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
. scripts/lib/gateway.sh
bench_setup

for run in $(seq "$runs"); do
    for mode in plain deflate; do
        flags=()
        [ "$mode" = deflate ] && flags=(--deflate)
        start_gateway
        LOADGEN_JWT_SECRET=$secret "$loadgen" --target gateway --wire "${WIRE:-ws}" --addr "$ws" \
            --admin "$admin" --server-pid "$gw_pid" --text "${flags[@]}" --label "$mode-n$n-run$run" \
            fanout --conns "$n" --room-size "$n" --messages "$messages" --size "$size" || true
        stop_gateway
    done
done
