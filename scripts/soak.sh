#!/usr/bin/env bash
# The soak: one gateway on Redis (its own redis-server on a free port),
# CONNS connections in pairs exchanging numbered QoS 1 messages at RATE per
# second for SECS seconds, each connection also in a room of ROOM_SIZE that
# gets QoS 0 pushes (ROOM_RATE per second through the admin API), and
# CUT_FRACTION of the connections cut every CUT_EVERY seconds (they come
# back with last_seq, as the README says). Every accepted QoS 1 message is
# checked at the end (none missing, none twice); windows.csv, soak.png
# (latency, RSS, cuts) and soak-resources.png (RSS, descriptors, CPU,
# traffic, error counters over time) land in
# bench-results/<date>-soak-gateway-<label>/, with Redis' INFO at the end.
# It runs in a private network namespace (scripts/lib/netns.sh): 100,000
# connections need more loopback ports than one address pair has.
#
# Usage: scripts/soak.sh [SECS]   (default 3600)
# Env: CONNS (100000), RATE (2000), ROOM_SIZE (100), ROOM_RATE (20),
#      CUT_EVERY (60), CUT_FRACTION (0.05), SHARDS (8: a shard's descriptor
#      table holds at most ~20,000 here), WIRE (ws).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-3600}
conns=${CONNS:-100000}
rate=${RATE:-2000}
secret=soak-secret-$$
. scripts/lib/netns.sh
if [ "${BENCH_IN_NETNS:-}" != 1 ]; then
    cargo build --release -p gateway -p loadgen
    command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
fi
in_netns "$0" "$@"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
dir=$(mktemp -d /tmp/soak.XXXXXX)
redis-server --port "$redis_port" --save '' --appendonly no >"$dir/redis.log" 2>&1 &
redis_pid=$!
gw_pid=
cleanup() {
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

ws=$(free_port); tcp=$(free_port); admin=$(free_port)
target/release/gateway --ws-listen "0.0.0.0:$ws" --tcp-listen "0.0.0.0:$tcp" \
    --admin-listen "127.0.0.1:$admin" --shards "${SHARDS:-8}" --jwt-secret "$secret" \
    --redis "redis://127.0.0.1:$redis_port/" >"$dir/out" 2>"$dir/err" &
gw_pid=$!
for _ in $(seq 100); do grep -q '^ready ' "$dir/out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready ' "$dir/out" || { echo "soak: the gateway did not start: $(tail -n 3 "$dir/err")" >&2; exit 1; }
addr=127.0.0.1:$ws
[ "${WIRE:-ws}" = tcp ] && addr=127.0.0.1:$tcp

status=0
LOADGEN_JWT_SECRET=$secret target/release/loadgen --target gateway --wire "${WIRE:-ws}" \
    --addr "$addr" --spread 8 --admin "127.0.0.1:$admin" --server-pid "$gw_pid" --qos 1 \
    --label "c$conns-r$rate-s$secs" \
    soak --conns "$conns" --msg-rate "$rate" --secs "$secs" \
    --room-size "${ROOM_SIZE:-100}" --room-rate "${ROOM_RATE:-20}" \
    --cut-every-secs "${CUT_EVERY:-60}" --cut-fraction "${CUT_FRACTION:-0.05}" \
    | tee "$dir/loadgen.out" || status=$?
result=$(sed -n 's/^results: //p' "$dir/loadgen.out")
if [ -n "$result" ]; then
    redis-cli -p "$redis_port" info memory >"$result/redis-info.txt"
    redis-cli -p "$redis_port" info commandstats >>"$result/redis-info.txt"
    # The gateway's log, minus the ready line: warnings and errors seen.
    grep -v '^ready ' "$dir/err" | tail -n 200 >"$result/gateway-log.txt" || true
fi
exit "$status"
