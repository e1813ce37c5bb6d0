#!/usr/bin/env bash
# Host (or network-namespace) tuning for many loopback connections.
# Idempotent: sets each knob only when it is below the wanted value and
# prints what it changed. Run as root; inside `unshare -n` the net.* knobs
# are the namespace's own.
#
#   net.ipv4.ip_local_port_range  1024 65535  ports per (src, dst, dport) class
#   net.core.somaxconn            65535       accept backlog cap
#   net.ipv4.tcp_max_syn_backlog  65535       SYN queue
#   net.core.netdev_max_backlog   65536       loopback drops under bursts
#   net.ipv4.tcp_mem              6G/8G/12G   TCP memory (pages of 4 KiB)
#   fs.file-max                   4194304     system-wide descriptors
#   fs.nr_open                    1048576     largest per-process limit
#   net.ipv4.tcp_child_ehash_entries 2097152  established-socket hash of
#                                             namespaces made after this
#
# The last one: a benchmark's namespace holds both ends of every
# connection (two million sockets at a million), and by default a new
# namespace shares the host's table of established sockets, sized at boot
# for far fewer (262,144 buckets here): eight sockets a bucket, and the
# lookup of every segment that arrives walking that chain was 13% of the
# gateway's CPU while it served a million idle connections (measured,
# `__inet_lookup_established`). A namespace made while this is set gets
# its own table of that many buckets (16 MiB). An operator holding a
# million connections on a host sizes the host's table the same way, at
# boot: `thash_entries=2097152` on the kernel's command line.
#
# With TUNE_HOST_SAVE=FILE the old value of each knob it changes is appended
# to FILE; `scripts/tune-host.sh --restore FILE` writes them back (the
# benchmark scripts do so on exit, so a host is left as it was found).
set -uo pipefail

if [ "${1:-}" = --restore ]; then
    [ -f "${2:-}" ] || exit 0
    while IFS='=' read -r key value; do
        path=/proc/sys/${key//./\/}
        echo "$value" >"$path" 2>/dev/null && echo "tune-host: $key restored to '$value'"
    done <"$2"
    exit 0
fi
save() { # key old-value
    [ -n "${TUNE_HOST_SAVE:-}" ] && echo "$1=$2" >>"$TUNE_HOST_SAVE"
    return 0
}

changed=0
set_min() { # key wanted-value (single number): raise only
    local key=$1 want=$2 path cur
    path=/proc/sys/${key//./\/}
    [ -e "$path" ] || { echo "tune-host: no $key here (skipped)"; return; }
    [ -w "$path" ] || { echo "tune-host: cannot write $key (skipped)"; return; }
    cur=$(cat "$path")
    if [ "$cur" -lt "$want" ]; then
        save "$key" "$cur"
        echo "$want" >"$path" && echo "tune-host: $key $cur -> $want" && changed=1
    fi
}
set_exact() { # key "value with spaces"
    local key=$1 want=$2 path cur
    path=/proc/sys/${key//./\/}
    [ -e "$path" ] || { echo "tune-host: no $key here (skipped)"; return; }
    [ -w "$path" ] || { echo "tune-host: cannot write $key (skipped)"; return; }
    cur=$(tr -s '[:space:]' ' ' <"$path" | sed 's/ $//')
    if [ "$cur" != "$want" ]; then
        save "$key" "$cur"
        echo "$want" >"$path" && echo "tune-host: $key '$cur' -> '$want'" && changed=1
    fi
}

set_exact net.ipv4.ip_local_port_range "1024 65535"
set_min net.core.somaxconn 65535
set_min net.ipv4.tcp_max_syn_backlog 65535
set_min net.core.netdev_max_backlog 65536
# tcp_mem is in pages: 6 GiB / 8 GiB / 12 GiB.
# (tcp_mem is global: absent inside a network namespace; run this outside too.)
if [ -r /proc/sys/net/ipv4/tcp_mem ]; then
    read -r _ _ hi </proc/sys/net/ipv4/tcp_mem
    if [ "$hi" -lt 3145728 ]; then
        set_exact net.ipv4.tcp_mem "1572864 2097152 3145728"
    fi
fi
set_min fs.file-max 4194304
set_min fs.nr_open 1048576
# Read when a namespace is made: only the host's (outside) matters.
set_min net.ipv4.tcp_child_ehash_entries 2097152
[ "$changed" = 0 ] && echo "tune-host: nothing to change"
exit 0
