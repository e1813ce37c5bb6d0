#!/usr/bin/env bash
# The network and processes of scripts/faults.sh, as subcommands, so that
# the bash script and the Python cases (scripts/lib/faults/*.py, which call
# it back) share one implementation:
#
#   net.sh setup | teardown              namespaces, veths, addresses, routes
#   net.sh cut X Y | heal X Y            the X-Y link down (both ends) / up
#   net.sh reset                         every link up, every route direct
#   net.sh route X Y VIA                 X reaches Y's node address over X-VIA
#   net.sh redis-start | redis-flush     the one Redis (in the redis namespace)
#   net.sh rc-start [MS] | rc-stop       a Redis Cluster: 3 masters + 3 replicas
#                                        (cluster-node-timeout MS, default 1000)
#   net.sh rc-cli PORT ARGS...           redis-cli against one of its servers
#   net.sh rc-kill PORT                  kill -9 that server
#   net.sh node-start ID [FLAGS...]      start gateway node ID (a, b, c)
#   net.sh node-kill ID [SIGNAL]         signal it (default KILL) and wait
#   net.sh nodes-stop                    kill every node and the proxy
#   net.sh proxy-start MAP...            scripts/lib/faults/proxy.py in its namespace
#
# Environment (set by faults.sh): FAULTS_DIR (state: logs, addresses),
# FAULTS_NS (namespace name prefix), FAULTS_GW (the gateway binary).
#
# Topology: every namespace has a /32 "node address" on lo and a veth
# point-to-point link to each namespace it talks to, with a /32 host route
# to each peer's node address over the direct link, so downing one link
# cuts exactly that pair:
#   a 10.77.0.1  b 10.77.0.2  c 10.77.0.3   gateway nodes (links: each other, r, k, and a/b: p)
#   r 10.77.0.10                            Redis (single, or the 6 servers of the cluster case)
#   k 10.77.0.20                            the test clients (links: a, b, c)
#   p 10.77.0.30                            the TCP proxy (links: a, b)
# a and b also hold 10.77.1.1 / 10.77.1.2 (their "alternate" addresses,
# reached only from p): when the slow-link case routes a's traffic for b's
# node address to p (`route a b p`), p answers as 10.77.0.2 and forwards to
# 10.77.1.2, so the a-b bus goes through the proxy and nothing else does.
set -euo pipefail
: "${FAULTS_DIR:?}" "${FAULTS_NS:?}"
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

declare -A ADDR=([a]=10.77.0.1 [b]=10.77.0.2 [c]=10.77.0.3 [r]=10.77.0.10 [k]=10.77.0.20 [p]=10.77.0.30)
declare -A ALT=([a]=10.77.1.1 [b]=10.77.1.2)
LINKS="a-b a-c b-c a-r b-r c-r a-k b-k c-k a-p b-p"
REDIS_PORT=6379
RC_PORTS="7001 7002 7003 7004 7005 7006"

ns() { echo "$FAULTS_NS-$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

# src_for X Y: the source address X uses toward Y.
src_for() {
  if [ "$2" = p ] && [ -n "${ALT[$1]:-}" ]; then echo "${ALT[$1]}"; else echo "${ADDR[$1]}"; fi
}

# route X Y [VIA]: in X, Y's node address over the link X-VIA (default Y).
route() {
  local x=$1 y=$2 via=${3:-$2} src
  src=$(src_for "$x" "$via")
  ip -n "$(ns "$x")" route replace "${ADDR[$y]}/32" dev "to-$via" src "$src"
}

link_routes() { # link_routes X Y: the routes the X-Y link carries, both ways
  local x=$1 y=$2
  if [ "$x" = p ] || [ "$y" = p ]; then
    # A node and the proxy: node -> p's own address, p -> the node's alternate one.
    local n=$([ "$x" = p ] && echo "$y" || echo "$x")
    route "$n" p
    ip -n "$(ns p)" route replace "${ALT[$n]}/32" dev "to-$n" src "${ADDR[p]}"
  else
    route "$x" "$y"
    route "$y" "$x"
  fi
}

setup() {
  local n
  for n in a b c r k p; do
    ip netns add "$(ns "$n")"
    ip -n "$(ns "$n")" link set lo up
    ip -n "$(ns "$n")" addr add "${ADDR[$n]}/32" dev lo
  done
  ip -n "$(ns a)" addr add "${ALT[a]}/32" dev lo
  ip -n "$(ns b)" addr add "${ALT[b]}/32" dev lo
  # p impersonates a and b toward each other (see the header).
  ip -n "$(ns p)" addr add "${ADDR[a]}/32" dev lo
  ip -n "$(ns p)" addr add "${ADDR[b]}/32" dev lo
  local l x y
  for l in $LINKS; do
    x=${l%-*} y=${l#*-}
    ip link add "to-$y" netns "$(ns "$x")" type veth peer name "to-$x" netns "$(ns "$y")"
    ip -n "$(ns "$x")" link set "to-$y" up
    ip -n "$(ns "$y")" link set "to-$x" up
    link_routes "$x" "$y"
  done
}

teardown() {
  local n pids
  for n in a b c r k p; do
    ip netns list 2>/dev/null | grep -qw "^$(ns "$n")" || continue
    pids=$(ip netns pids "$(ns "$n")" 2>/dev/null || true)
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    ip netns del "$(ns "$n")" 2>/dev/null || true
  done
}

reset() { # every link up and every route direct again (between cases)
  local l
  for l in $LINKS; do heal "${l%-*}" "${l#*-}"; done
}

cut() { # both ends down: IPv4 drops the routes over a downed link
  ip -n "$(ns "$1")" link set "to-$2" down
  ip -n "$(ns "$2")" link set "to-$1" down
}

heal() { # both ends up, and the routes back
  ip -n "$(ns "$1")" link set "to-$2" up
  ip -n "$(ns "$2")" link set "to-$1" up
  link_routes "$1" "$2"
}

wait_redis() { # wait_redis PORT: until it answers PING, 5 s at most
  local i
  for i in $(seq 100); do
    [ "$(in_ns r redis-cli -h "${ADDR[r]}" -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "net.sh: redis on port $1 did not start" >&2
  return 1
}

redis_start() {
  mkdir -p "$FAULTS_DIR/redis"
  in_ns r redis-server --port "$REDIS_PORT" --bind "${ADDR[r]}" --save '' --appendonly no \
    --protected-mode no --maxmemory-policy noeviction --dir "$FAULTS_DIR/redis" --daemonize yes \
    --logfile "$FAULTS_DIR/redis/redis.log" --pidfile "$FAULTS_DIR/redis/redis.pid"
  wait_redis "$REDIS_PORT"
  echo "redis://${ADDR[r]}:$REDIS_PORT/" >"$FAULTS_DIR/redis.url"
}

rc_start() { # rc_start [NODE_TIMEOUT_MS]: 6 servers, 3 masters + 3 replicas
  local p urls=() timeout=${1:-1000}
  for p in $RC_PORTS; do
    mkdir -p "$FAULTS_DIR/rc-$p"
    in_ns r redis-server --port "$p" --bind "${ADDR[r]}" --cluster-enabled yes \
      --cluster-node-timeout "$timeout" --cluster-config-file "$FAULTS_DIR/rc-$p/nodes.conf" \
      --save '' --appendonly no --protected-mode no --maxmemory-policy noeviction --dir "$FAULTS_DIR/rc-$p" \
      --daemonize yes --logfile "$FAULTS_DIR/rc-$p/redis.log" --pidfile "$FAULTS_DIR/rc-$p/redis.pid"
  done
  for p in $RC_PORTS; do wait_redis "$p"; done
  # shellcheck disable=SC2086 # the port list
  in_ns r redis-cli --cluster create $(printf "${ADDR[r]}:%s " $RC_PORTS) \
    --cluster-replicas 1 --cluster-yes >"$FAULTS_DIR/rc-create.log" 2>&1
  local i ok
  for i in $(seq 300); do
    ok=1
    for p in $RC_PORTS; do
      in_ns r redis-cli -h "${ADDR[r]}" -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
      if in_ns r redis-cli -h "${ADDR[r]}" -p "$p" role 2>/dev/null | head -1 | grep -q slave; then
        in_ns r redis-cli -h "${ADDR[r]}" -p "$p" info replication | grep -q 'master_link_status:up' || ok=0
      fi
    done
    [ "$ok" = 1 ] && break
    sleep 0.05
  done
  [ "$ok" = 1 ] || { echo "net.sh: the Redis Cluster did not become ok" >&2; return 1; }
  for p in $RC_PORTS; do
    if in_ns r redis-cli -h "${ADDR[r]}" -p "$p" role | head -1 | grep -q master; then
      urls+=("redis://${ADDR[r]}:$p/")
    fi
  done
  (IFS=,; echo "${urls[*]}") >"$FAULTS_DIR/redis.url"
}

rc_stop() {
  local p
  for p in $RC_PORTS; do
    [ -s "$FAULTS_DIR/rc-$p/redis.pid" ] && kill -KILL "$(cat "$FAULTS_DIR/rc-$p/redis.pid")" 2>/dev/null || true
    rm -rf "$FAULTS_DIR/rc-$p"
  done
  echo "redis://${ADDR[r]}:$REDIS_PORT/" >"$FAULTS_DIR/redis.url"
}

node_pid() { [ -s "$FAULTS_DIR/node-$1.pid" ] && cat "$FAULTS_DIR/node-$1.pid"; }

node_start() { # node_start ID [FLAGS...]: waits for its ready line (20 s)
  local id=$1; shift
  local out="$FAULTS_DIR/node-$id.out" log="$FAULTS_DIR/node-$id.log"
  : >"$out"
  echo "== start $(date +%T.%N)" >>"$log"
  # Bus on every address (the node address and, for p, the alternate one);
  # client ports on the node address only. The shell's pid is the node's.
  # The bus's link events at debug: a case quotes why a link stays down.
  RUST_LOG=${RUST_LOG:-info,gateway::shard::bus=debug} \
    ip netns exec "$(ns "$id")" "$FAULTS_GW" --config "$FAULTS_DIR/gateway.toml" --node-id "$id" \
    --redis "$(cat "$FAULTS_DIR/redis.url")" --bus-listen 0.0.0.0:0 --bus-advertise "${ADDR[$id]}" \
    --ws-listen "${ADDR[$id]}:0" --tcp-listen "${ADDR[$id]}:0" --admin-listen "${ADDR[$id]}:0" \
    --shards 2 --registry-ttl-ms "${FAULTS_TTL_MS:-3000}" "$@" </dev/null >"$out" 2>>"$log" &
  echo $! >"$FAULTS_DIR/node-$id.pid"
  local i
  for i in $(seq 1000); do
    if grep -q '^ready ' "$out"; then
      grep '^ready ' "$out" | head -1 >"$FAULTS_DIR/node-$id.ready"
      return 0
    fi
    alive "$(node_pid "$id")" || break
    sleep 0.02
  done
  echo "net.sh: node $id did not start; tail of $log:" >&2
  tail -5 "$log" >&2
  return 1
}

alive() { # alive PID: running, not a zombie waiting for its reaper
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}

node_kill() { # node_kill ID [SIGNAL]: and wait until it is gone (30 s)
  local pid i
  pid=$(node_pid "$1") || return 0
  kill "-${2:-KILL}" "$pid" 2>/dev/null || true
  for i in $(seq 3000); do
    alive "$pid" || break
    sleep 0.01
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$FAULTS_DIR/node-$1.pid" "$FAULTS_DIR/node-$1.ready"
}

proxy_stop() {
  [ -s "$FAULTS_DIR/proxy.pid" ] && kill -TERM "$(cat "$FAULTS_DIR/proxy.pid")" 2>/dev/null || true
  rm -f "$FAULTS_DIR/proxy.pid"
}

case "${1:-}" in
  setup) setup ;;
  teardown) teardown ;;
  cut) cut "$2" "$3" ;;
  heal) heal "$2" "$3" ;;
  reset) reset ;;
  route) route "$2" "$3" "${4:-$3}" ;;
  redis-start) redis_start ;;
  redis-flush) in_ns r redis-cli -h "${ADDR[r]}" -p "$REDIS_PORT" flushall >/dev/null ;;
  rc-start) rc_start "${2:-1000}" ;;
  rc-stop) rc_stop ;;
  rc-cli) shift; p=$1; shift; in_ns r redis-cli -h "${ADDR[r]}" -p "$p" "$@" ;;
  rc-kill) kill -KILL "$(cat "$FAULTS_DIR/rc-$2/redis.pid")" ;;
  node-start) shift; node_start "$@" ;;
  node-kill) node_kill "$2" "${3:-KILL}" ;;
  nodes-stop) proxy_stop; for n in a b c; do node_kill "$n"; done ;;
  proxy-start)
    shift
    ip netns exec "$(ns p)" /usr/bin/python3 "$LIB/proxy.py" --src "${ADDR[p]}" --mode-file "$FAULTS_DIR/proxy.mode" \
      --stats "$FAULTS_DIR/proxy.stats" "$@" </dev/null >>"$FAULTS_DIR/proxy.log" 2>&1 &
    echo $! >"$FAULTS_DIR/proxy.pid"
    ;;
  proxy-stop) proxy_stop ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
