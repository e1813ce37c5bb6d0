#!/usr/bin/env bash
# TLS on vs off: the same fan-out (N subscribers in one room, MESSAGES
# 64-byte messages) and the same idle hold (N connections, heartbeats)
# against the gateway in plaintext and with --tls-cert/--tls-key (a fresh
# self-signed EC P-256 certificate; the loadgen trusts it with --tls-ca),
# alternating, RUNS times each. Results land in
# bench-results/<date>-{fanout,connect}-gateway-n<N>-{plain,tls}-run<i>/.
#
# Usage: scripts/bench-tls.sh [N] [MESSAGES] [RUNS]   (defaults: 10000 100 3)
# Env: SHARDS (gateway shards, default 2), WIRE (ws or tcp, default ws),
#      HOLD_SECS (idle hold, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10000}
messages=${2:-100}
runs=${3:-3}
secret=bench-secret-$$
loadgen=target/release/loadgen
gateway=target/release/gateway
cargo build --release -p gateway -p loadgen

dir=$(mktemp -d /tmp/bench-tls.XXXXXX)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
gw_pid=
cleanup() {
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ws_port=$(free_port); tcp_port=$(free_port); admin_port=$(free_port)

start_gateway() { # start_gateway plain|tls
    local tls=()
    [ "$1" = tls ] && tls=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
    "$gateway" --ws-listen "127.0.0.1:$ws_port" --tcp-listen "127.0.0.1:$tcp_port" \
        --admin-listen "127.0.0.1:$admin_port" \
        --shards "${SHARDS:-2}" --jwt-secret "$secret" "${tls[@]}" >"$dir/out" 2>"$dir/err" &
    gw_pid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$dir/out" 2>/dev/null && return 0; sleep 0.1; done
    echo "bench-tls: the gateway did not start: $(tail -n 3 "$dir/err")" >&2
    exit 1
}

stop_gateway() {
    kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=
}

wire=${WIRE:-ws}
addr=127.0.0.1:$ws_port
[ "$wire" = tcp ] && addr=127.0.0.1:$tcp_port
for run in $(seq "$runs"); do
    for mode in plain tls; do
        ca=()
        [ "$mode" = tls ] && ca=(--tls-ca "$dir/cert.pem")
        common=(--target gateway --wire "$wire" --addr "$addr" --admin "127.0.0.1:$admin_port" "${ca[@]}")
        start_gateway "$mode"
        LOADGEN_JWT_SECRET=$secret "$loadgen" "${common[@]}" --server-pid "$gw_pid" \
            fanout --conns "$n" --room-size "$n" --messages "$messages" --size 64 \
            --label "n$n-$mode-run$run" || true
        stop_gateway
        start_gateway "$mode"
        LOADGEN_JWT_SECRET=$secret "$loadgen" "${common[@]}" --server-pid "$gw_pid" \
            connect --conns "$n" --hold-secs "${HOLD_SECS:-20}" --label "n$n-$mode-run$run" || true
        stop_gateway
    done
done
