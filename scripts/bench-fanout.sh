#!/usr/bin/env bash
# Fan-out side by side: N subscribers in one room, 64-byte messages, against
# the gateway, nchan and nats-server, RUNS times each; results land in
# bench-results/<date>-fanout-<target>-n<N>-run<i>/.
#
# Env: LISTEN (127.0.0.1; 0.0.0.0 with --spread in LOADGEN_ARGS), SHARDS (2).
# Usage: scripts/bench-fanout.sh [N] [MESSAGES] [RUNS] [TARGETS...]
#   defaults: 10000 100 3 gateway nchan nats
# Env: SHARDS (gateway shards, default 2), LOADGEN_ARGS (extra flags).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10000}
messages=${2:-100}
runs=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(gateway nchan nats)
secret=bench-secret-$$
loadgen=target/release/loadgen
gateway=target/release/gateway
[ -x "$loadgen" ] && [ -x "$gateway" ] || cargo build --release -p gateway -p loadgen

saved=$(mktemp)
TUNE_HOST_SAVE=$saved scripts/tune-host.sh || true
gw_pid=
cleanup() {
    scripts/tune-host.sh --restore "$saved" >/dev/null
    rm -f "$saved"
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    scripts/peers.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

start_gateway() {
    local out=/tmp/bench-gateway.$$.out
    "$gateway" --ws-listen "${LISTEN:-127.0.0.1}:8080" --tcp-listen "${LISTEN:-127.0.0.1}:8081" --admin-listen 127.0.0.1:8082 \
        --shards "${SHARDS:-2}" --jwt-secret "$secret" >"$out" 2>/tmp/bench-gateway.$$.err &
    gw_pid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$out" 2>/dev/null && return 0; sleep 0.1; done
    echo "bench-fanout: the gateway did not start" >&2
    exit 1
}

for target in "${targets[@]}"; do
    for run in $(seq "$runs"); do
        args=(fanout --conns "$n" --room-size "$n" --messages "$messages" --size 64 --label "n$n-run$run")
        case "$target" in
            gateway)
                start_gateway
                LOADGEN_JWT_SECRET=$secret "$loadgen" --target gateway --addr 127.0.0.1:8080 \
                    --server-pid "$gw_pid" "${args[@]}" ${LOADGEN_ARGS:-} || true
                kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=
                ;;
            nchan | nats)
                line=$(scripts/peers.sh start | grep "^$target ")
                if [ "$target" = nchan ]; then
                    master=$(sed 's/.*master=\([0-9]*\).*/\1/' <<<"$line")
                    pids=(--server-pid "$master")
                    for w in $(pgrep -P "$master"); do pids+=(--server-pid "$w"); done
                    addr=127.0.0.1:${NCHAN_PORT:-8090}
                else
                    pids=(--server-pid "$(sed 's/.*pid=\([0-9]*\).*/\1/' <<<"$line")")
                    addr=127.0.0.1:${NATS_WS_PORT:-8091}
                fi
                "$loadgen" --target "$target" --addr "$addr" "${pids[@]}" "${args[@]}" ${LOADGEN_ARGS:-} || true
                scripts/peers.sh stop >/dev/null
                ;;
            *) echo "bench-fanout: unknown target $target" >&2; exit 2 ;;
        esac
    done
done
