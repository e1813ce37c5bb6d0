#!/usr/bin/env bash
# The JavaScript SDK's tests (clients/js): node's test runner against the
# real gateway binary on loopback. Installs the npm dependencies when
# node_modules is missing and builds the debug gateway when it is missing
# (GATEWAY_BIN=path uses another binary). The drain test needs redis-server
# and is skipped without it.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v node >/dev/null 2>&1 || { echo "test-js.sh: node (>= 20) is needed" >&2; exit 1; }
if [ -z "${GATEWAY_BIN:-}" ] && [ ! -x target/debug/gateway ]; then
  echo "test-js.sh: building the debug gateway"
  cargo build -q -p gateway
fi
cd clients/js
if [ ! -d node_modules ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
exec node --test test/*.test.js
