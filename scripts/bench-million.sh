#!/usr/bin/env bash
# The million-connection run in one command: inside a private network
# namespace (its own port range, sysctls and loopback), start the gateway
# with 80 shards on 0.0.0.0:8080 and ramp the loadgen to CONNS authenticated
# WebSocket connections spread over 127.0.0.1-127.0.0.100, hold them HOLD
# seconds with heartbeats, and write bench-results/<date>-connect-gateway-*.
#
# Usage: scripts/bench-million.sh [CONNS] [HOLD_SECS]   (default 1000000 60)
#   SCENARIO=storm: drop FRACTION (0.5) of the connections at once instead
#   of holding, and wait up to HOLD_SECS for all of them to be back.
# Env: SHARDS (80), RATE (connects/s, 20000), WORKERS (0 = one per 12.5k),
#      IN_FLIGHT (connects in flight per loadgen worker, 64), HEARTBEAT_MS
#      (25000), DRIVER (auto), READ_COALESCE_US (0: the gateway's
#      read_coalesce_us).
# The ramp goes as fast as the box takes it: RATE is a ceiling, IN_FLIGHT
# bounds the attempts waiting (80 workers x 64 = 5,120), so on a saturated
# box a connect waits about a second in the queue instead of piling up
# past the handshake deadlines (a client's own 30 s, the gateway's 10 s).
# Needs root (unshare -n). Memory: about 10 GB at a million.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=${1:-1000000}
hold=${2:-60}
. scripts/lib/netns.sh
[ "${BENCH_IN_NETNS:-}" = 1 ] || cargo build --release -q -p gateway -p loadgen
in_netns "$0" "$@"

# Inside the namespace (loopback up, knobs tuned): every 127/8 address local.
ip addr add 127.0.0.2/8 dev lo 2>/dev/null || true

secret=million-$$
out=$(mktemp)
gateway=(target/release/gateway --ws-listen 0.0.0.0:8080 --tcp-listen 0.0.0.0:8081
    --admin-listen 127.0.0.1:8082 --shards "${SHARDS:-80}" --driver "${DRIVER:-auto}"
    --read-coalesce-us "${READ_COALESCE_US:-0}" --heartbeat-timeout-ms 120000)
"${gateway[@]}" --jwt-secret "$secret" >"$out" 2>"$out.err" &
gw=$!
trap 'kill $gw 2>/dev/null || true; wait $gw 2>/dev/null || true; rm -f "$out" "$out.err" "$out.loadgen"' EXIT
for _ in $(seq 300); do grep -q '^ready ' "$out" && break; sleep 0.1; done
grep '^ready ' "$out" || { echo "bench-million: gateway did not start" >&2; cat "$out.err" >&2; exit 1; }

case "${SCENARIO:-connect}" in
    connect) label=n$conns; args=(connect --conns "$conns" --hold-secs "$hold" --ramp-timeout-secs 900) ;;
    storm) label=n$conns-f${FRACTION:-0.5}
        args=(storm --conns "$conns" --fraction "${FRACTION:-0.5}" --timeout-secs "$hold") ;;
    *) echo "bench-million: SCENARIO is connect or storm" >&2; exit 2 ;;
esac
LOADGEN_JWT_SECRET=$secret target/release/loadgen --target gateway --addr 127.0.0.1:8080 \
    --spread 100 --rate "${RATE:-20000}" --workers "${WORKERS:-0}" --in-flight "${IN_FLIGHT:-64}" \
    --heartbeat-ms "${HEARTBEAT_MS:-25000}" --handshake-timeout-ms 30000 \
    --server-pid "$gw" --admin 127.0.0.1:8082 --label "$label" "${args[@]}" | tee "$out.loadgen" || status=$?
# The summary names the loadgen's command; the gateway's goes beside it.
dir=$(sed -n 's/^results: //p' "$out.loadgen" | tail -1)
[ -n "$dir" ] && echo "- gateway: \`${gateway[*]} --jwt-secret <secret>\`" >>"$dir/summary.md"
exit "${status:-0}"
