#!/usr/bin/env bash
# "Many nodes": what a cluster costs and how fast it routes, on this host's
# loopback (scripts/cluster.sh: one Redis, N gateway nodes on the bus).
#
#  (a) fan-out: one room of ROOM members on ONE node vs the same room spread
#      over NODES nodes (members round-robin, the publisher on node-1's
#      admin), MESSAGES x SIZE-byte messages, RUNS times interleaved; reports
#      deliveries per server CPU-second (every node's CPU summed), bus bytes
#      per delivery and bus envelopes per published message (every node's
#      /metrics, summed over peers).
#  (b) direct: DIRECT_CONNS connections in pairs on NODES nodes, each pair's
#      users on two different nodes (--pairs split), DIRECT_RATE msg/s for
#      DIRECT_SECS s: cross-node latency p50/p99; then the same with each
#      pair on one node (--pairs together) as the local baseline.
#
# Results: bench-results/<date>-cluster-<label>/, one loadgen result dir per
# run inside (summary.md: machine, kernel, commit, exact command), the
# nodes' lines, and README.md (the table).
#
# Usage: scripts/bench-cluster.sh
# Env (defaults): ROOM 30000, MESSAGES 100, SIZE 64, RUNS 3, NODES 3,
#   SHARDS 1 (per node of the cluster), SINGLE_SHARDS 2 (the one node: one
#   shard's fd table cannot hold 30,000 sockets under the 20,000-descriptor
#   hard limit here), DIRECT_CONNS 10000, DIRECT_RATE 10000, DIRECT_SECS 15,
#   PRESENCE_SAMPLE 0 (every receiver), RATE 5000 (connects/s), SKIP_FANOUT,
#   SKIP_DIRECT, SKIP_BASELINE (=1 to skip), LABEL, GATEWAY (binary),
#   NODE_ARGS (more flags for every node, e.g. --cluster-secret-file F).
set -euo pipefail
cd "$(dirname "$0")/.."

room=${ROOM:-30000}
messages=${MESSAGES:-100}
size=${SIZE:-64}
runs=${RUNS:-3}
nodes=${NODES:-3}
shards=${SHARDS:-1}
single_shards=${SINGLE_SHARDS:-2}
dconns=${DIRECT_CONNS:-10000}
drate=${DIRECT_RATE:-10000}
dsecs=${DIRECT_SECS:-15}
rate=${RATE:-5000}
loadgen=target/release/loadgen
export GATEWAY=${GATEWAY:-target/release/gateway}
[ -x "$loadgen" ] && [ -x "$GATEWAY" ] || cargo build --release -q -p gateway -p loadgen

out=bench-results/$(date +%Y%m%d-%H%M%S)-cluster-${LABEL:-r$room-n$nodes}
mkdir -p "$out"
secret=bench-cluster-$$
export CLUSTER_DIR
CLUSTER_DIR=$(mktemp -d /tmp/bench-cluster.XXXXXX)
rmdir "$CLUSTER_DIR" # cluster.sh creates it, and removes it on down

# tune-host.sh raises loopback sysctls; put back what it changed.
keys=(net.ipv4.ip_local_port_range net.core.somaxconn net.ipv4.tcp_max_syn_backlog
    net.core.netdev_max_backlog net.ipv4.tcp_mem fs.file-max fs.nr_open)
declare -A saved
for k in "${keys[@]}"; do saved[$k]=$(sysctl -n "$k" 2>/dev/null | tr -s '[:space:]' ' ' | sed 's/ $//') || true; done
up=0
cleanup() {
    [ "$up" = 1 ] && scripts/cluster.sh down >/dev/null 2>&1
    for k in "${keys[@]}"; do
        [ -n "${saved[$k]:-}" ] || continue
        now=$(sysctl -n "$k" 2>/dev/null | tr -s '[:space:]' ' ' | sed 's/ $//') || continue
        [ "$now" = "${saved[$k]}" ] || sysctl -q -w "$k=${saved[$k]}" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
scripts/tune-host.sh >"$out/tune-host.txt" 2>&1 || true

# cluster_up N SHARDS TAG: starts the cluster; sets ws, admins, admin1, pids.
cluster_up() {
    local n=$1 s=$2 tag=$3 lines
    lines=$(scripts/cluster.sh up "$n" -- --shards "$s" --jwt-secret "$secret" ${NODE_ARGS:-})
    up=1
    echo "$lines" >"$out/nodes-$tag.txt"
    ws=$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' <<<"$lines" | paste -sd,)
    admins=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$lines" | paste -sd,)
    admin1=${admins%%,*}
    pids=()
    for p in $(sed -n 's/.* pid=\([0-9]*\).*/\1/p' <<<"$lines"); do pids+=(--server-pid "$p"); done
}
cluster_down() {
    # The nodes' logs are kept next to the results when they said anything.
    for f in "$CLUSTER_DIR"/node-*.log; do
        [ -s "$f" ] && cp "$f" "$out/$1-$(basename "$f")"
    done
    scripts/cluster.sh down >/dev/null
    up=0
}
lg() { # lg LABEL [loadgen args...]: one run, its results inside $out
    local label=$1; shift
    LOADGEN_JWT_SECRET=$secret "$loadgen" --target gateway --addrs "$ws" --admins "$admins" \
        --admin "$admin1" "${pids[@]}" --rate "$rate" --results "$out" --label "$label" "$@" \
        | tee -a "$out/loadgen.log" || echo "bench-cluster: run $label reported problems" | tee -a "$out/loadgen.log"
}

if [ "${SKIP_FANOUT:-0}" != 1 ]; then
    for run in $(seq "$runs"); do
        for n in 1 "$nodes"; do
            s=$shards; [ "$n" = 1 ] && s=$single_shards
            cluster_up "$n" "$s" "fanout-n$n-run$run"
            lg "n$n-s$s-room$room-run$run" fanout --conns "$room" --room-size "$room" \
                --messages "$messages" --size "$size"
            cluster_down "fanout-n$n-run$run"
        done
    done
fi
if [ "${SKIP_DIRECT:-0}" != 1 ]; then
    cluster_up "$nodes" "$shards" direct
    lg "n$nodes-s$shards-split-c$dconns-r$drate" direct --conns "$dconns" --msg-rate "$drate" \
        --secs "$dsecs" --size "$size" --pairs split --presence-sample "${PRESENCE_SAMPLE:-0}"
    if [ "${SKIP_BASELINE:-0}" != 1 ]; then
        lg "n$nodes-s$shards-together-c$dconns-r$drate" direct --conns "$dconns" --msg-rate "$drate" \
            --secs "$dsecs" --size "$size" --pairs together --presence-sample "${PRESENCE_SAMPLE:-0}"
    fi
    cluster_down direct
fi

cmd="ROOM=$room MESSAGES=$messages SIZE=$size RUNS=$runs NODES=$nodes SHARDS=$shards SINGLE_SHARDS=$single_shards"
cmd+=" DIRECT_CONNS=$dconns DIRECT_RATE=$drate DIRECT_SECS=$dsecs RATE=$rate PRESENCE_SAMPLE=${PRESENCE_SAMPLE:-0} $0"
scripts/bench-cluster-table.py "$out" "$cmd" >"$out/README.md"
if [ "${SKIP_FANOUT:-0}" != 1 ] && [ "$single_shards" != 1 ]; then
    cat >>"$out/README.md" <<EOF
The one-node fan-out runs use \`--shards $single_shards\` (the cluster's nodes \`--shards $shards\`): every
shard unshares its fd table and the hard RLIMIT_NOFILE here is $(ulimit -Hn), so one shard holds at most
~19,990 sockets (a 30,000-connection ramp on \`--shards 1\` stops at 19,986, with \`accept failed: Too
many open files\` in the node's log).
EOF
fi
cat "$out/README.md"
echo "results: $out"
