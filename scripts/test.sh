#!/usr/bin/env bash
# The test command: formatting, lints, unit and integration tests (the real
# binaries on loopback), the JS SDK's tests and a headless-Chromium test of
# the example backend, the loadgen smoke, and a bounded fuzz run.
# Installs what the tests need when it is missing (needs root for apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkg() { # need_pkg <command> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "test.sh: installing $2 (needed for $1)"
  if [ "$(id -u)" -ne 0 ]; then echo "test.sh: $1 missing and not root: install $2" >&2; exit 1; fi
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need_pkg redis-server redis-server
need_pkg redis-cli redis-tools
need_pkg ss iproute2
need_pkg openssl openssl
# The wss test's independent client: Python's `websockets` (Debian's package
# serves /usr/bin/python3; the test also tries $PYTHON and python3).
if ! python3 -c 'import websockets' 2>/dev/null && ! /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
  need_pkg /nonexistent/python3-websockets python3-websockets
fi

rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

echo "== fmt"; cargo fmt --all --check
echo "== layers (gateway/src: no module imports a higher layer; see gateway/src/lib.rs)"; cargo test -q -p gateway --test layers
echo "== clippy"; cargo clippy --workspace --all-targets -- -D warnings
echo "== tests"; cargo test --workspace
echo "== JS client SDK against the real binary"; scripts/test-js.sh
echo "== browser: the example chat backend in headless Chromium"; scripts/test-browser.sh
# Network faults need root and network namespaces; without them the step is
# skipped out loud, and the final line says so.
faults_skipped=""
if [ "$(id -u)" -ne 0 ]; then
  faults_skipped="not root"
elif ! ip netns list >/dev/null 2>&1; then
  faults_skipped="ip netns unavailable"
fi
if [ -n "$faults_skipped" ]; then
  echo "== network faults: SKIPPED ($faults_skipped): scripts/faults.sh needs root and ip netns"
else
  /usr/bin/python3 -c 'import websockets' 2>/dev/null || need_pkg /nonexistent/python3-websockets python3-websockets
  echo "== network faults (namespaces, veth)"; scripts/faults.sh
fi
echo "== loadgen smoke (every scenario, small, exact counts)"; PROFILE=debug scripts/bench-smoke.sh
skipped=""
if [ "${SKIP_FUZZ:-0}" = 1 ]; then
  echo "== fuzz: skipped (SKIP_FUZZ=1)"
  skipped=" (fuzz skipped: SKIP_FUZZ=1)"
elif ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  # cargo-fuzz needs nightly's sanitizer flags. Not fuzzing is a choice the
  # caller makes out loud, never a silent pass.
  echo "test.sh: FAILED: no nightly toolchain, so no fuzzing:" \
    "rustup toolchain install nightly, or SKIP_FUZZ=1 to skip it" >&2
  exit 1
else
  echo "== fuzz (bounded)"; FUZZ_SECONDS="${FUZZ_SECONDS:-12}" scripts/fuzz.sh
fi
[ -z "$faults_skipped" ] || skipped+=" (network faults skipped: $faults_skipped)"
echo "test.sh: all passed${skipped}"
