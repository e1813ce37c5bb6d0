#!/usr/bin/env bash
# Backend streams benchmark (a benchmark, not a test): one release gateway
# with Redis, K WebSocket clients (clients/js/bench/backend-streams.mjs).
#   up:   QoS 1 sends to `backend` (appended to gw:upstream) vs QoS 1 and
#         QoS 0 direct messages to a connected user, at each UP_RATES total
#         rate: send->sendResult latency, accepted/s, XLEN delta.
#   down: a publisher (scripts/bench-backend-publish.py, redis-py pipelines)
#         XADDs to gw:downstream at each DOWN_RATES rate, QoS 0 and 1, to the
#         connected users: delivery latency, deliveries/s, lost, duplicates.
# Gateway and Redis CPU (utime+stime from /proc) per 1k messages per phase.
# Writes bench-results/<YYYYMMDD-HHMMSS>-backend-streams/ (README.md table,
# result.json, machine, kernel, commit, the exact commands, logs).
#
# Usage: scripts/bench-backend.sh
# Env: CLIENTS (200), SECS (10), UP_RATES ("5000 20000"), DOWN_RATES
#      ("5000 20000"), UP_KINDS ("backend-q1 user-q1 user-q0"), DOWN_QOS
#      ("0 1"), SHARDS (2), DRAIN_MS (15000), PAD (0: extra payload bytes),
#      GATEWAY_BIN (target/release/gateway), LABEL (appended to the dir name)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

bin=${GATEWAY_BIN:-target/release/gateway}
if [ ! -x "$bin" ]; then
    echo "bench-backend: $bin missing: building it (cargo build --release -p gateway)" >&2
    cargo build --release -p gateway
fi
command -v redis-server >/dev/null || { echo "bench-backend: redis-server not installed" >&2; exit 2; }
[ -d clients/js/node_modules/ws ] || (cd clients/js && npm ci --silent)
python3 -c 'import redis' || { echo "bench-backend: python3 needs the redis package" >&2; exit 2; }

stamp=$(date -u +%Y%m%d-%H%M%S)
out=bench-results/$stamp-backend-streams${LABEL:+-$LABEL}
mkdir -p "$out"
tmp=$(mktemp -d /tmp/bench-backend.XXXXXX)

redis_pid= gw_pid=
cleanup() {
    set +e
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && { for _ in $(seq 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done; kill -9 "$gw_pid" 2>/dev/null; }
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
secret=bench-backend-$$
redis_cmd="redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$out/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$redis_port" ping >/dev/null

gw_args=(--redis "redis://127.0.0.1:$redis_port/" --shards "${SHARDS:-2}" --jwt-secret "$secret"
    --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --node-id bench-backend)
"$bin" "${gw_args[@]}" >"$tmp/gw.out" 2>"$out/gateway.log" &
gw_pid=$!
for _ in $(seq 200); do grep -q '^ready ' "$tmp/gw.out" 2>/dev/null && break; kill -0 "$gw_pid" || break; sleep 0.1; done
ready=$(grep '^ready ' "$tmp/gw.out") || { echo "bench-backend: gateway did not start:" >&2; cat "$out/gateway.log" >&2; exit 1; }
echo "gateway: $ready" >&2
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$ready"; }

commit=$(git rev-parse --short HEAD)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit-dirty"
vars=$(env | grep -E '^(CLIENTS|SECS|UP_RATES|DOWN_RATES|UP_KINDS|DOWN_QOS|SHARDS|DRAIN_MS|PAD|GATEWAY_BIN|LABEL)=' | sort | sed -E 's/=(.*)/="\1"/' | tr '\n' ' ' || true)
cmd="${vars}scripts/bench-backend.sh"
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
model=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
    echo "nproc: $(nproc)"; echo "model: $model"; echo "memory: $mem"; echo "kernel: $(uname -r)"
    echo "uname: $(uname -a)"; echo "commit: $commit ($(git log -1 --format='%H %cd'))"
    echo "binary: $bin ($(stat -c '%y' "$bin"))"; echo "node: $(node --version)"; echo "python: $(python3 --version) redis-py $(python3 -c 'import redis; print(redis.__version__)')"
    echo "redis-server: $(redis-server --version)"; echo "ulimit -n: $(ulimit -n)"
    echo "git status (tracked):"; git status --porcelain --untracked-files=no
} >"$out/machine.txt"
python3 - "$out/machine.json" <<EOF
import json, sys
json.dump({
    "nproc": $(nproc), "model": """$model""", "mem": "$mem", "kernel": "$(uname -r)", "commit": "$commit",
    "command": """$cmd""",
    "gateway_cmd": """$bin ${gw_args[*]}""",
    "redis_cmd": """$redis_cmd""", "redis_version": "$(redis-server --version | awk '{print $3}')",
    "ready": """$ready""",
}, open(sys.argv[1], "w"), indent=2)
EOF
{
    echo "# exact commands of this run"
    echo "$cmd"
    echo "$redis_cmd"
    echo "$bin ${gw_args[*]}"
    echo "GW_WS=$(field ws) GW_ADMIN=$(field admin) GW_PID=$gw_pid REDIS_PORT=$redis_port REDIS_PID=$redis_pid JWT_SECRET=$secret OUT=$out node clients/js/bench/backend-streams.mjs"
    echo "# the publisher, per downstream phase (see result.json for each phase's arguments):"
    echo "python3 scripts/bench-backend-publish.py --port $redis_port --rate RATE --secs ${SECS:-10} --qos Q --users ${CLIENTS:-200} --prefix bb-u --phase NAME"
} >"$out/commands.txt"

GW_WS=$(field ws) GW_ADMIN=$(field admin) GW_PID=$gw_pid REDIS_PORT=$redis_port REDIS_PID=$redis_pid \
    JWT_SECRET=$secret OUT=$out node clients/js/bench/backend-streams.mjs 2>&1 | tee "$out/driver.log"
rc=${PIPESTATUS[0]}

curl -s "http://$(field admin)/metrics" >"$out/metrics-end.txt" || true
{ redis-cli -p "$redis_port" info commandstats; redis-cli -p "$redis_port" info cpu; redis-cli -p "$redis_port" info memory;
  echo "# XLEN gw:upstream: $(redis-cli -p "$redis_port" xlen gw:upstream)"; echo "# XLEN gw:downstream: $(redis-cli -p "$redis_port" xlen gw:downstream)";
  echo "# XPENDING gw:downstream gateway:"; redis-cli -p "$redis_port" xpending gw:downstream gateway; } >"$out/redis-info.txt" 2>&1 || true
kill -0 "$gw_pid" 2>/dev/null || echo "bench-backend: the gateway exited during the run" >&2
echo "results: $out" >&2
exit "$rc"
