#!/usr/bin/env bash
# Upgrading the gateway's binary in place under CONNS connections, and what
# a deploy costs the clients today, in one command. Inside a private network
# namespace (its own port range, sysctls and loopback), start the gateway on
# 0.0.0.0:8080 and ramp the loadgen to CONNS authenticated WebSocket
# connections spread over 127.0.0.1-127.0.0.SPREAD; then
#
# 1. `loadgen upgrade`: every connection pings every PING_MS (each round
#    trip measured) while `POST /upgrade` moves them all, with their state,
#    to a new process (ROUNDS times in a row). Reports the gateway's took_ms
#    and the POST's wall time, the round trips of the pings in flight
#    meanwhile (the pause clients see), connections closed (must be 0), and
#    the RSS and CPU of the old process until it exits and of the new one.
#    -> bench-results/<date>-upgrade-gateway-n<CONNS>[-r<ROUNDS>]/ (with
#    gateway.log, the log of every process of the node)
# 2. `loadgen storm --fraction 1.0` against a fresh gateway: every
#    connection dropped at once, timed until all are back and
#    authenticated, with the server's CPU: a restart as clients see it today.
#    -> bench-results/<date>-storm-gateway-n<CONNS>-f1.0/
#
# Usage: scripts/bench-upgrade.sh [CONNS]   (default 100000)
# Env: SHARDS (8 up to 100k connections, 80 above), PING_MS (CONNS/20, at
#      least 200: about 20,000 pings a second in all, which this 2-core box
#      answers beside the rest; a pause longer than PING_MS reaches every
#      connection, a shorter one the pings in flight), ROUNDS (1), HOLD_SECS
#      (5), AFTER_SECS (10), STORM_TIMEOUT_SECS (CONNS/2000, at least 180),
#      SKIP_STORM=1, RATE (connects/s, 20000), WORKERS (0 = one per 12.5k),
#      IN_FLIGHT (64), SPREAD (20 up to 100k connections, 100 above), DRIVER
#      (auto), GATEWAY_BIN (default: target/release/gateway, built here),
#      GATEWAY_COMMIT (what GATEWAY_BIN was built from, for the summary),
#      RESULTS (bench-results).
# The gateway binary is copied to a temporary directory and started from
# there: an upgrade starts the file the node was started from, which a build
# meanwhile must not replace. Needs root (unshare -n). Memory: about 10 GB
# at a million.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=${1:-100000}
. scripts/lib/netns.sh
if [ "${BENCH_IN_NETNS:-}" != 1 ]; then
    if [ -n "${GATEWAY_BIN:-}" ]; then
        cargo build --release -q -p loadgen
    else
        cargo build --release -q -p gateway -p loadgen
    fi
fi
in_netns "$0" "$@"

# Inside the namespace (loopback up, knobs tuned): every 127/8 address local.
ip addr add 127.0.0.2/8 dev lo 2>/dev/null || true

big=$((conns > 100000))
shards=${SHARDS:-$([ "$big" = 1 ] && echo 80 || echo 8)}
spread=${SPREAD:-$([ "$big" = 1 ] && echo 100 || echo 20)}
ping_ms=${PING_MS:-$((conns / 20 > 200 ? conns / 20 : 200))}
tmp=$(mktemp -d)
bin=$tmp/gateway
cp "${GATEWAY_BIN:-target/release/gateway}" "$bin"
secret=upgrade-$$
gateway=("$bin" --ws-listen 0.0.0.0:8080 --tcp-listen 0.0.0.0:8081 --admin-listen 127.0.0.1:8082
    --shards "$shards" --driver "${DRIVER:-auto}" --heartbeat-timeout-ms 120000)

# The gateway's processes: whoever listens on its ports (after an upgrade,
# the new process; this namespace holds no other).
listeners() {
    ss -ltnpH '( sport = :8080 or sport = :8082 )' 2>/dev/null |
        grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}
gw=
running() { # any of the gateway's processes left?
    [ -n "$(listeners)" ] || { [ -n "$gw" ] && kill -0 "$gw" 2>/dev/null; }
}
stop_gateway() {
    local p
    for p in $gw $(listeners); do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 100); do running || break; sleep 0.1; done
    for p in $gw $(listeners); do kill -9 "$p" 2>/dev/null || true; done
    [ -z "$gw" ] || wait "$gw" 2>/dev/null || true
    gw=
}
trap 'stop_gateway; rm -rf "$tmp"' EXIT

start_gateway() { # log-name
    "${gateway[@]}" --jwt-secret "$secret" >"$tmp/$1.out" 2>"$tmp/$1.err" &
    gw=$!
    for _ in $(seq 300); do grep -q '^ready ' "$tmp/$1.out" && break; sleep 0.1; done
    grep '^ready ' "$tmp/$1.out" || {
        echo "bench-upgrade: gateway did not start" >&2
        cat "$tmp/$1.err" >&2
        exit 1
    }
}

loadgen() { # label args...
    local label=$1
    shift
    LOADGEN_JWT_SECRET=$secret timeout "$((1200 + conns / 500))" target/release/loadgen \
        --target gateway --addr 127.0.0.1:8080 --spread "$spread" --rate "${RATE:-20000}" \
        --workers "${WORKERS:-0}" --in-flight "${IN_FLIGHT:-64}" --heartbeat-ms 25000 \
        --handshake-timeout-ms 30000 --server-pid "$gw" --admin 127.0.0.1:8082 \
        --results "${RESULTS:-bench-results}" --label "$label" "$@"
}

# The summary names the loadgen's command; the gateway's, its binary and
# its log go beside it.
annotate() { # loadgen-output log-name
    local dir
    dir=$(sed -n 's/^results: //p' "$1" | tail -1)
    [ -n "$dir" ] || return 0
    {
        echo "- gateway: \`${gateway[*]} --jwt-secret <secret>\`" \
            "(copied from ${GATEWAY_BIN:-target/release/gateway}," \
            "sha256 $(sha256sum "$bin" | cut -c1-16))"
        [ -z "${GATEWAY_COMMIT:-}" ] || echo "- gateway built from: $GATEWAY_COMMIT"
        echo "- gateway log (stderr of every process of the node): \`gateway.log\`"
    } >>"$dir/summary.md"
    sed "s/\x1b\[[0-9;]*m//g" "$tmp/$2.err" >"$dir/gateway.log"
    cp "$tmp/$2.out" "$dir/gateway.out"
}

status=0
start_gateway upgrade
rounds=${ROUNDS:-1}
label=n$conns
[ "$rounds" = 1 ] || label=$label-r$rounds
loadgen "$label" upgrade --conns "$conns" --ping-ms "$ping_ms" --rounds "$rounds" \
    --hold-secs "${HOLD_SECS:-5}" --after-secs "${AFTER_SECS:-10}" --ramp-timeout-secs 900 \
    | tee "$tmp/upgrade.loadgen" || status=$?
annotate "$tmp/upgrade.loadgen" upgrade
stop_gateway

if [ "${SKIP_STORM:-0}" != 1 ]; then
    start_gateway storm
    storm_secs=${STORM_TIMEOUT_SECS:-$((conns / 2000 > 180 ? conns / 2000 : 180))}
    loadgen "n$conns-f1.0" storm --conns "$conns" --fraction 1.0 --timeout-secs "$storm_secs" \
        | tee "$tmp/storm.loadgen" || status=$?
    annotate "$tmp/storm.loadgen" storm
    stop_gateway
fi
exit "$status"
