#!/usr/bin/env bash
# A local nats-server cluster, for fan-out beyond what one nats process can
# hold here (~20,000 connections: the per-process fd limit). Node k listens
# on 127.0.0.k: clients :4222, WebSocket :8091 (no TLS, no compression),
# routes :6222, all routed to each other: what an operator would run.
# Subscribers spread over the nodes with loadgen --spread N; a message
# published on node 1 reaches every node's subscribers.
#
# Usage: scripts/nats-cluster.sh start [N] | stop | pids
# Env: NATS_CLUSTER_DIR (/tmp/loadgen-nats-cluster).
set -euo pipefail
dir=${NATS_CLUSTER_DIR:-/tmp/loadgen-nats-cluster}
cmd=${1:-start}
n=${2:-6}

stop() {
    for f in "$dir"/n*.pid; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
}

case "$cmd" in
    start)
        command -v nats-server >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; }
        mkdir -p "$dir"
        stop
        routes=$(for k in $(seq "$n"); do printf 'nats-route://127.0.0.%d:6222, ' "$k"; done)
        for k in $(seq "$n"); do
            cat >"$dir/n$k.conf" <<CONF
server_name: n$k
listen: 127.0.0.$k:4222
max_payload: 1MB
websocket {
    listen: "127.0.0.$k:8091"
    no_tls: true
    compression: false
}
cluster {
    name: bench
    listen: 127.0.0.$k:6222
    routes: [ ${routes%, } ]
}
CONF
            nats-server -c "$dir/n$k.conf" >"$dir/n$k.log" 2>&1 &
            echo $! >"$dir/n$k.pid"
        done
        # Ready when every node has routes to the n-1 others (20 s at most).
        for _ in $(seq 100); do
            ready=0
            for k in $(seq "$n"); do
                routes_up=$(grep -c "Route connection created" "$dir/n$k.log" 2>/dev/null || true)
                [ "${routes_up:-0}" -ge $((n - 1)) ] && ready=$((ready + 1))
            done
            [ "$ready" -ge "$n" ] && break
            sleep 0.2
        done
        echo "nats-cluster nodes=$n pids=$(cat "$dir"/n*.pid | paste -sd, -)"
        ;;
    stop) stop; echo "nats-cluster: stopped" ;;
    pids) cat "$dir"/n*.pid 2>/dev/null | paste -sd' ' - ;;
    *) echo "usage: $0 start [N] | stop | pids" >&2; exit 2 ;;
esac
