# Sourced by the big benchmarks. `in_netns SCRIPT ARGS...` re-runs SCRIPT
# in a private network namespace (`unshare -n`: its own loopback, port
# range and net.* sysctls, so a run of 100k+ connections neither needs nor
# touches the host's), after raising the host-wide knobs it needs
# (`tune-host.sh`), which are put back when it ends; then exits with its
# status. Inside (BENCH_IN_NETNS=1) it brings loopback up, tunes the
# namespace's knobs and returns, and the script goes on.
in_netns() {
    if [ "${BENCH_IN_NETNS:-}" = 1 ]; then
        ip link set lo up
        scripts/tune-host.sh >/dev/null
        return 0
    fi
    local saved status=0
    saved=$(mktemp)
    TUNE_HOST_SAVE=$saved scripts/tune-host.sh >/dev/null
    unshare -n env BENCH_IN_NETNS=1 "$@" || status=$?
    scripts/tune-host.sh --restore "$saved" >/dev/null
    rm -f "$saved"
    exit "$status"
}
