#!/usr/bin/env bash
# A big room with QoS 1, stored two ways, with Redis: `history` (the room
# keeps history: each message stored once, in the room's log) and `inbox`
# (no history: each message stored in the inbox of every member, as rooms
# without history do). One room of N members, MESSAGES admin pushes at RATE
# per second; server and Redis CPU per delivery. Results land in
# bench-results/<date>-fanout-gateway-room-<mode>-.../ with redis-cpu.txt.
#
# Usage: scripts/bench-room-history.sh [N] [MESSAGES] [RATE] [MODES...]
#   defaults: 10000 200 100 history inbox
# Env: SHARDS (2), INBOX_RATE (pushes per second in inbox mode, default 2:
# each is N Redis appends), INBOX_MESSAGES (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10000}
messages=${2:-200}
rate=${3:-100}
shift $(( $# < 3 ? $# : 3 ))
modes=("$@")
[ "${#modes[@]}" -gt 0 ] || modes=(history inbox)
secret=bench-secret-$$
cargo build --release -q -p gateway -p loadgen

saved=$(mktemp)
TUNE_HOST_SAVE=$saved scripts/tune-host.sh || true
redis_pid= gw_pid=
cleanup() {
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    scripts/tune-host.sh --restore "$saved" >/dev/null
    rm -f "$saved"
}
trap cleanup EXIT

cpu_ticks() { # utime + stime of a pid, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}

for mode in "${modes[@]}"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$port" --save '' --appendonly no >/tmp/bench-room-redis.$$.log 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    flags=(--redis "redis://127.0.0.1:$port/")
    m=$messages r=$rate
    case $mode in
        history) flags+=(--room-history '*') ;;
        inbox) m=${INBOX_MESSAGES:-20} r=${INBOX_RATE:-2} ;;
        *) echo "bench-room-history: unknown mode $mode" >&2; exit 2 ;;
    esac
    out=/tmp/bench-room.$$.out
    target/release/gateway --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --shards "${SHARDS:-2}" --jwt-secret "$secret" "${flags[@]}" >"$out" 2>/tmp/bench-room.$$.err &
    gw_pid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$out" 2>/dev/null && break; sleep 0.1; done
    addr=$(sed -n 's/.* tcp=\([^ ]*\).*/\1/p' "$out")
    admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$out")
    r0=$(cpu_ticks "$redis_pid")
    LOADGEN_JWT_SECRET=$secret target/release/loadgen --target gateway --wire tcp --addr "$addr" \
        --qos 1 --server-pid "$gw_pid" --admin "$admin" --label "room-$mode-n$n-r$r" \
        fanout --conns "$n" --room-size "$n" --messages "$m" --pub-rate "$r" --size 64 | tee "$out.loadgen"
    r1=$(cpu_ticks "$redis_pid")
    dir=$(sed -n 's/^results: //p' "$out.loadgen" | tail -1)
    if [ -n "$dir" ]; then
        hz=$(getconf CLK_TCK)
        {
            echo "mode: $mode (gateway flags: ${flags[*]})"
            echo "command: scripts/bench-room-history.sh $n $messages $rate $mode"
            echo "redis CPU-s during the run (ramp included): $(python3 -c "print(($r1-$r0)/$hz)")"
            redis-cli -p "$port" info commandstats | grep -E 'evalsha' || true
        } >"$dir/redis-cpu.txt"
        cat "$dir/redis-cpu.txt"
    fi
    kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=
    kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=
    rm -f "$out" "$out.loadgen"
done
