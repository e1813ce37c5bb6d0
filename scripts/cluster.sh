#!/usr/bin/env bash
# A cluster on this machine's loopback: one Redis (or, with --redis-cluster,
# a 3-master Redis Cluster) and N gateway nodes joined by the bus.
#
# Usage:
#   scripts/cluster.sh up N [--redis-cluster] [-- GATEWAY FLAGS...]
#   scripts/cluster.sh down
#
# `up` prints one line per node:
#   node ID pid=PID ws=ADDR tcp=ADDR admin=ADDR bus=ADDR[,ADDR...]
# and leaves everything running; `down` stops it all (SIGTERM: the nodes
# drain). Ports are free ones the kernel picks. State (pids, logs, Redis
# data) lives in $CLUSTER_DIR (default /tmp/gateway-cluster); node logs are
# $CLUSTER_DIR/<id>.log. Uses target/release/gateway (built if missing;
# GATEWAY=path to use another binary).
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${CLUSTER_DIR:-/tmp/gateway-cluster}"
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_redis() { # wait_redis PORT
  for _ in $(seq 1 100); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "cluster.sh: redis on port $1 did not start" >&2
  exit 1
}

start_redis() {
  local port; port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --daemonize yes --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log"
  wait_redis "$port"
  echo "redis://127.0.0.1:$port/"
}

start_redis_cluster() {
  local ports=() urls=()
  for _ in 1 2 3; do
    local port; port=$(free_port)
    mkdir -p "$dir/rc-$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/rc-$port/nodes.conf" --save '' --appendonly no \
      --dir "$dir/rc-$port" --daemonize yes --pidfile "$dir/redis-$port.pid" \
      --logfile "$dir/redis-$port.log"
    wait_redis "$port"
    ports+=("$port"); urls+=("redis://127.0.0.1:$port/")
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log"
  for _ in $(seq 1 200); do
    redis-cli -p "${ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
    sleep 0.05
  done
  local IFS=,
  echo "${urls[*]}"
}

up() {
  local n="$1"; shift
  local redis_cluster=0 extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --redis-cluster) redis_cluster=1 ;;
      --) shift; extra=("$@"); break ;;
      *) usage ;;
    esac
    shift
  done
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage
  if [ -e "$dir/nodes" ]; then
    echo "cluster.sh: a cluster is already up in $dir (scripts/cluster.sh down first)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  local gw="${GATEWAY:-target/release/gateway}"
  [ -x "$gw" ] || cargo build --release -q -p gateway
  local redis
  if [ "$redis_cluster" = 1 ]; then redis=$(start_redis_cluster); else redis=$(start_redis); fi
  echo "$redis" >"$dir/redis"
  for i in $(seq 1 "$n"); do
    local id="node-$i" fifo="$dir/node-$i.ready"
    rm -f "$fifo"; mkfifo "$fifo"
    "$gw" --node-id "$id" --redis "$redis" --bus-listen 127.0.0.1:0 \
      --ws-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
      "${extra[@]}" >"$fifo" 2>"$dir/$id.log" &
    local pid=$!
    local line
    if ! read -r -t 30 line <"$fifo"; then
      echo "cluster.sh: $id did not start; see $dir/$id.log" >&2
      exit 1
    fi
    rm -f "$fifo"
    echo "$pid" >>"$dir/nodes"
    local ws tcp admin bus
    for word in $line; do
      case "$word" in
        ws=*) ws="${word#ws=}" ;; tcp=*) tcp="${word#tcp=}" ;;
        admin=*) admin="${word#admin=}" ;; bus=*) bus="${word#bus=}" ;;
      esac
    done
    echo "node $id pid=$pid ws=$ws tcp=$tcp admin=$admin bus=$bus"
  done
}

down() {
  if [ -e "$dir/nodes" ]; then
    while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$dir/nodes"
    for _ in $(seq 1 200); do
      alive=0
      while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/nodes"
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$dir/nodes"
  fi
  for f in "$dir"/redis-*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "cluster.sh: down"
}

case "${1:-}" in
  up) shift; [ $# -ge 1 ] || usage; up "$@" ;;
  down) down ;;
  *) usage ;;
esac
