#!/usr/bin/env bash
# QoS 1 direct-message benchmark on one node: the same load at QoS 0, at QoS 1
# with the in-process store, and at QoS 1 with Redis (a local redis-server).
# Each run writes bench-results/<date>-direct-gateway-<label>/.
#
# Usage: scripts/bench-qos.sh [CONNS] [MSG_RATE] [SECS]   (default 2000 20000 10)
# Env: SHARDS (2), WIRE (tcp), RUNS (1), VARIANTS ("qos0 memory redis"),
# GATEWAY_BIN (target/release/gateway: another build to compare).
set -euo pipefail
cd "$(dirname "$0")/.."

conns=${1:-2000}
rate=${2:-20000}
secs=${3:-10}
secret=bench-secret-$$
cargo build --release -q -p gateway -p loadgen
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }

redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --save '' --appendonly no >/tmp/bench-qos-redis.$$.log 2>&1 &
# (one Redis for every run: its commandstats add up over the runs)
redis_pid=$!
gw_pid=
cleanup() {
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

run() { # run <label> <qos> [gateway args...]
    local label=$1 qos=$2; shift 2
    local out=/tmp/bench-qos.$$.out
    "${GATEWAY_BIN:-target/release/gateway}" --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --shards "${SHARDS:-2}" --jwt-secret "$secret" "$@" >"$out" 2>/tmp/bench-qos.$$.err &
    gw_pid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$out" 2>/dev/null && break; sleep 0.1; done
    local wire=${WIRE:-tcp} addr
    if [ "$wire" = tcp ]; then addr=$(sed -n 's/.* tcp=\([^ ]*\).*/\1/p' "$out"); else addr=$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' "$out"); fi
    local admin; admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$out")
    LOADGEN_JWT_SECRET=$secret target/release/loadgen --target gateway --wire "$wire" --addr "$addr" \
        --qos "$qos" --server-pid "$gw_pid" --admin "$admin" --label "$label" \
        direct --conns "$conns" --msg-rate "$rate" --secs "$secs" | tee "$out.loadgen"
    kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=
    # With Redis: what each script cost Redis, next to the run's results.
    local dir; dir=$(sed -n 's/^results: //p' "$out.loadgen" | tail -1)
    if [ -n "$dir" ] && [[ " $* " == *" --redis "* ]]; then
        redis-cli -p "$redis_port" info commandstats >"$dir/redis-commandstats.txt"
        redis-cli -p "$redis_port" info cpu >>"$dir/redis-commandstats.txt"
    fi
    rm -f "$out.loadgen"
}

for i in $(seq "${RUNS:-1}"); do
    for v in ${VARIANTS:-qos0 memory redis}; do
        case $v in
            qos0) run "qos0-r$rate-run$i" 0 ;;
            memory) run "qos1-memory-r$rate-run$i" 1 ;;
            redis) run "qos1-redis-r$rate-run$i" 1 --redis "redis://127.0.0.1:$redis_port/" ;;
            *) echo "bench-qos: unknown variant $v" >&2; exit 2 ;;
        esac
    done
done
