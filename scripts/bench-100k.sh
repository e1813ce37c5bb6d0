#!/usr/bin/env bash
# Fan-out to 100,000 subscribers in one room and direct messages between
# 50,000 pairs, in a private network namespace (10 shards, destinations
# spread over 127.0.0.1-127.0.0.20 so no address class passes ~12k).
# Usage: scripts/bench-100k.sh [TARGETS...]   (default: gateway nchan)
# Env: MSG_RATE (direct messages/s, 50000), SKIP_FANOUT=1 (direct only).
# nats-server runs as a 6-node cluster (scripts/nats-cluster.sh): one process
# holds at most ~20,000 connections here.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/netns.sh
[ "${BENCH_IN_NETNS:-}" = 1 ] || cargo build --release -q -p gateway -p loadgen
in_netns "$0" "$@"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(gateway nchan)
if [ "${SKIP_FANOUT:-0}" != 1 ]; then
    LISTEN=0.0.0.0 PEERS_LISTEN=0.0.0.0 SHARDS=10 NGINX_WORKERS=6 \
        LOADGEN_ARGS="--spread 20 --rate 12000" scripts/bench-fanout.sh 100000 100 1 "${targets[@]}"
fi

secret=bench-100k-$$
out=$(mktemp)
target/release/gateway --ws-listen 0.0.0.0:8080 --tcp-listen 0.0.0.0:8081 --admin-listen 127.0.0.1:8082 \
    --shards 10 --jwt-secret "$secret" >"$out" 2>/dev/null &
gw=$!
trap 'kill $gw 2>/dev/null || true; wait $gw 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^ready ' "$out" && break; sleep 0.1; done
LOADGEN_JWT_SECRET=$secret target/release/loadgen --target gateway --addr 127.0.0.1:8080 --spread 20 \
    --rate 12000 --server-pid "$gw" --admin 127.0.0.1:8082 --label "n100000-r${MSG_RATE:-50000}" \
    direct --conns 100000 --msg-rate "${MSG_RATE:-50000}" --secs 20

# nats-server as a 6-node cluster (one process cannot hold 100k here).
if [ "${NATS_CLUSTER:-1}" = 1 ] && [ "${SKIP_FANOUT:-0}" != 1 ]; then
    kill $gw 2>/dev/null; wait $gw 2>/dev/null || true
    scripts/nats-cluster.sh start 6
    pids=()
    for p in $(scripts/nats-cluster.sh pids); do pids+=(--server-pid "$p"); done
    target/release/loadgen --target nats --addr 127.0.0.1:8091 --spread 6 --rate 4000 --handshake-timeout-ms 60000 \
        --nats-pub 127.0.0.1:4222 "${pids[@]}" \
        fanout --conns 100000 --room-size 100000 --messages 100 --size 64 --label n100000-cluster6-run1 || true
    scripts/nats-cluster.sh stop
fi
