#!/usr/bin/env bash
# Real network faults between cluster nodes: three gateway nodes (a, b, c),
# Redis and the test clients, each in a private network namespace, joined by
# veth pairs (topology: scripts/lib/faults/net.sh). Each case cuts, slows
# or kills something and checks what the README promises:
#
#   partition  a and b cut from each other, both still reaching Redis:
#              QoS 1 across the cut waits and all arrives after the heal,
#              once, in order; QoS 0 losses counted; time to heal
#   rediscut   a cut from Redis, not from its peers, then healed: it leaves
#              the peers' registry; what its clients see; nothing accepted lost
#   failover   Redis Cluster (3 masters + 3 replicas): the master holding the
#              registry and the users' inboxes killed, its replica promoted
#   slowlink   the a-b bus through a TCP proxy that delays, stalls and resets:
#              no stuck link, the bus queue bound holds (refusals counted), no
#              QoS 1 duplicates
#   restart    node b killed (-9) and started again with the same id while
#              a's links to it drain: nothing twice, b's client resumes
#
# Usage: scripts/faults.sh [--long] [CASE...]   (default: every case, quick:
# about 2 minutes; --long: more messages, longer cuts). One summary line per
# case (sent, received, lost, duplicated, reordered, time to heal) and
# PASS/FAIL; exit status 1 if any case failed. Needs root and `ip netns`.
# Everything it starts and creates is removed on exit, whatever happens
# (processes, namespaces and their veths); it changes no sysctl. Logs are kept
# in the printed directory when a case fails (FAULTS_KEEP=1: always).
# GATEWAY_BIN: the gateway binary (default target/debug/gateway), copied
# first so that a rebuild during the run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL="partition rediscut failover slowlink restart"
long=0 cases=()
for arg in "$@"; do
  case "$arg" in
    --long) long=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *)
      [[ " $ALL " == *" $arg "* ]] || { echo "faults.sh: unknown case '$arg' (cases: $ALL)" >&2; exit 2; }
      cases+=("$arg") ;;
  esac
done
[ "${#cases[@]}" -gt 0 ] || read -r -a cases <<<"$ALL"

[ "$(id -u)" -eq 0 ] || { echo "faults.sh: needs root (network namespaces)" >&2; exit 1; }
for cmd in ip redis-server redis-cli; do
  command -v "$cmd" >/dev/null || { echo "faults.sh: $cmd is missing" >&2; exit 1; }
done
/usr/bin/python3 -c 'import websockets' 2>/dev/null ||
  { echo "faults.sh: /usr/bin/python3 lacks websockets (apt-get install python3-websockets)" >&2; exit 1; }

gw_src=${GATEWAY_BIN:-target/debug/gateway}
if [ ! -x "$gw_src" ]; then
  echo "faults.sh: building the debug gateway"
  cargo build -q -p gateway
fi

export FAULTS_DIR FAULTS_NS FAULTS_GW FAULTS_LONG=$long
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ left in scripts/lib/faults
FAULTS_DIR=$(mktemp -d /tmp/faults.XXXXXX)
FAULTS_NS=flt$$
FAULTS_GW=$FAULTS_DIR/gateway
NET=scripts/lib/faults/net.sh
failed=()

case_pid=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [ -z "$case_pid" ] || kill "$case_pid" 2>/dev/null || true
  $NET teardown >/dev/null 2>&1 || true
  rm -f "$FAULTS_GW"
  if [ "${#failed[@]}" -eq 0 ] && [ "$status" -eq 0 ] && [ "${FAULTS_KEEP:-0}" != 1 ]; then
    rm -rf "$FAULTS_DIR"
  else
    echo "faults.sh: logs in $FAULTS_DIR"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cp "$gw_src" "$FAULTS_GW"
head -c 32 /dev/urandom | base64 >"$FAULTS_DIR/cluster.secret"
export FAULTS_JWT_SECRET=faults-jwt-$RANDOM$RANDOM-0123456789abcdef
export FAULTS_ADMIN_TOKEN=faults-admin-$RANDOM$RANDOM-0123456789
cat >"$FAULTS_DIR/gateway.toml" <<EOF
[auth]
jwt_secret = "$FAULTS_JWT_SECRET"
[cluster]
secret_file = "$FAULTS_DIR/cluster.secret"
[admin]
token = "$FAULTS_ADMIN_TOKEN"
EOF

# Namespaces left by a run that could not clean up (killed with SIGKILL:
# its pid is gone) go first, with what runs in them.
for n in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E '^flt[0-9]+-[abcrkp]$' | sort -u); do
  old=${n#flt} && old=${old%-*}
  kill -0 "$old" 2>/dev/null || FAULTS_NS=flt$old $NET teardown
done
$NET setup
$NET redis-start
start=$(date +%s)
for c in "${cases[@]}"; do
  mkdir -p "$FAULTS_DIR/$c"
  rc=0
  # Each case runs within a bound (a hang is a FAIL, not a stuck CI job), in
  # the background so that an interrupt reaches the trap at once.
  timeout -k 5 "$([ "$long" = 1 ] && echo 600 || echo 120)" \
    ip netns exec "$FAULTS_NS-k" /usr/bin/python3 scripts/lib/faults/cases.py "$c" &
  case_pid=$!
  wait "$case_pid" || rc=$?
  case_pid=
  [ "$rc" -eq 124 ] && echo "faults: $c FAIL  timed out"
  [ "$rc" -eq 0 ] || failed+=("$c")
  # What the case started goes; its logs stay with the case.
  $NET nodes-stop
  $NET rc-stop
  $NET reset
  mv "$FAULTS_DIR"/node-*.log "$FAULTS_DIR"/proxy.* "$FAULTS_DIR/$c/" 2>/dev/null || true
  $NET redis-flush
done
echo "faults.sh: ${#cases[@]} case(s) in $(( $(date +%s) - start )) s;" \
  "$([ "${#failed[@]}" -eq 0 ] && echo "all passed" || echo "FAILED: ${failed[*]}")"
[ "${#failed[@]}" -eq 0 ]
