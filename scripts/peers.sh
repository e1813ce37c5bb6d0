#!/usr/bin/env bash
# The servers users pick today, as an operator would run them from Debian's
# packages, on loopback, for side-by-side benchmarks:
#   - nginx + nchan: 2 workers (worker_rlimit_nofile 19999, worker_connections
#     19000), WebSocket subscribers on /sub/<channel>, HTTP publisher on
#     /pub/<channel>;
#   - nats-server: client port and a WebSocket listener (no_tls).
#
# Usage: scripts/peers.sh [start|stop|status]
#   NCHAN_PORT (default 8090), NATS_PORT (4222), NATS_WS_PORT (8091),
#   NGINX_WORKERS (2), PEERS_DIR (default /tmp/loadgen-peers).
# `start` installs missing packages (apt-get), writes configs under
# PEERS_DIR, starts both, and prints their ports and pids in the form
#   nchan port=8090 master=PID workers=PID,PID
#   nats port=4222 ws=8091 pid=PID
set -euo pipefail

cmd=${1:-start}
dir=${PEERS_DIR:-/tmp/loadgen-peers}
nchan_port=${NCHAN_PORT:-8090}
nats_port=${NATS_PORT:-4222}
nats_ws_port=${NATS_WS_PORT:-8091}
workers=${NGINX_WORKERS:-2}

install() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
    command -v nats-server >/dev/null || missing+=(nats-server)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "peers: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

write_configs() {
    mkdir -p "$dir/nginx/logs" "$dir/nginx/tmp"
    cat >"$dir/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes $workers;
worker_rlimit_nofile 19999;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/logs/error.log warn;
events {
    worker_connections 19000;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $dir/nginx/tmp/body;
    proxy_temp_path $dir/nginx/tmp/proxy;
    fastcgi_temp_path $dir/nginx/tmp/fastcgi;
    uwsgi_temp_path $dir/nginx/tmp/uwsgi;
    scgi_temp_path $dir/nginx/tmp/scgi;
    keepalive_requests 1000000;
    server {
        listen ${PEERS_LISTEN:-127.0.0.1}:$nchan_port reuseport;
        location ~ ^/sub/(.+)\$ {
            nchan_subscriber websocket;
            nchan_channel_id \$1;
        }
        location ~ ^/pub/(.+)\$ {
            nchan_publisher http;
            nchan_channel_id \$1;
            nchan_message_buffer_length 1000;
        }
    }
}
CONF
    cat >"$dir/nats.conf" <<CONF
listen: 127.0.0.1:$nats_port
max_payload: 1MB
websocket {
    listen: "${PEERS_LISTEN:-127.0.0.1}:$nats_ws_port"
    no_tls: true
    compression: false
}
CONF
}

stop() {
    if [ -s "$dir/nginx/nginx.pid" ]; then
        kill "$(cat "$dir/nginx/nginx.pid")" 2>/dev/null || true
    fi
    if [ -s "$dir/nats.pid" ]; then
        kill "$(cat "$dir/nats.pid")" 2>/dev/null || true
    fi
    for _ in $(seq 50); do
        local alive=0
        [ -s "$dir/nginx/nginx.pid" ] && kill -0 "$(cat "$dir/nginx/nginx.pid")" 2>/dev/null && alive=1
        [ -s "$dir/nats.pid" ] && kill -0 "$(cat "$dir/nats.pid")" 2>/dev/null && alive=1
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    rm -f "$dir/nginx/nginx.pid" "$dir/nats.pid"
    echo "peers: stopped"
}

status() {
    local master nats_pid
    master=$(cat "$dir/nginx/nginx.pid" 2>/dev/null || true)
    nats_pid=$(cat "$dir/nats.pid" 2>/dev/null || true)
    if [ -n "$master" ]; then
        local kids
        kids=$(pgrep -P "$master" | paste -sd, -)
        echo "nchan port=$nchan_port master=$master workers=$kids"
    fi
    if [ -n "$nats_pid" ]; then
        echo "nats port=$nats_port ws=$nats_ws_port pid=$nats_pid"
    fi
}

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "peers: nothing listens on port $1" >&2
    return 1
}

case "$cmd" in
    start)
        install
        stop >/dev/null
        write_configs
        nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" -g "daemon on;"
        ulimit -n 19999 2>/dev/null || true
        nohup nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
        echo $! >"$dir/nats.pid"
        wait_port "$nchan_port"
        wait_port "$nats_port"
        wait_port "$nats_ws_port"
        status
        ;;
    stop) stop ;;
    status) status ;;
    *)
        sed -n '2,14p' "$0"
        exit 2
        ;;
esac
