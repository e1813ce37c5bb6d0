# Sourced by the benchmarks that start one gateway per run on free ports.
# `bench_setup` tunes the host (restored on exit, with the gateway killed);
# `start_gateway ARGS...` starts target/release/gateway on loopback with
# $secret and SHARDS (2) shards, waits for its ready line and sets gw_pid,
# ws and admin; `stop_gateway` ends it.
bench_setup() {
    secret=bench-secret-$$
    loadgen=target/release/loadgen
    gateway=target/release/gateway
    [ -x "$loadgen" ] && [ -x "$gateway" ] || cargo build --release -p gateway -p loadgen
    saved=$(mktemp)
    TUNE_HOST_SAVE=$saved scripts/tune-host.sh >/dev/null || true
    gw_pid=
    gw_out=$(mktemp)
    trap bench_cleanup EXIT
}

bench_cleanup() {
    scripts/tune-host.sh --restore "$saved" >/dev/null
    rm -f "$saved" "$gw_out"
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    true
}

start_gateway() {
    "$gateway" --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --shards "${SHARDS:-2}" --jwt-secret "$secret" "$@" >"$gw_out" 2>/dev/null &
    gw_pid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$gw_out" 2>/dev/null && break; sleep 0.1; done
    ws=$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' "$gw_out")
    admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$gw_out")
}

stop_gateway() {
    kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=
}
