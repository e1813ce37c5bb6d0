#!/usr/bin/env bash
# The chat example (examples/chat-backend) in headless Chromium: installs
# what it needs when missing (redis-server and chromium from Debian, the
# Python `redis` package, playwright-core from npm), builds the debug
# gateway if it is not there, and runs the browser test, then the operator
# console's test (gateway/console on a two-node cluster). Exit status: the
# tests'. Screenshots: target/chat-backend-test/, target/console-test/
# (UPDATE_SCREENSHOT=1 copies the console's to docs/console.png).
# KEEP_LOGS=1 keeps the processes' logs.
set -euo pipefail
cd "$(dirname "$0")/.."
EX=examples/chat-backend

deb_install() { # deb_install <debian package>, unless installed
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  echo "test-browser.sh: installing $1"
  if [ "$(id -u)" -ne 0 ]; then echo "test-browser.sh: not root: install $1" >&2; exit 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}
apt_install() { # apt_install <command> <debian package>: the package unless the command is there
  command -v "$1" >/dev/null 2>&1 || deb_install "$2"
}
apt_install redis-server redis-server
apt_install chromium chromium
apt_install node nodejs
apt_install npm npm
apt_install python3 python3

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import redis' 2>/dev/null; then
  echo "test-browser.sh: installing the Python redis package"
  "$PYTHON" -m pip install -q redis 2>/dev/null \
    || "$PYTHON" -m pip install -q --break-system-packages redis 2>/dev/null \
    || { # no usable pip for this interpreter: a venv under target/
      deb_install python3-venv
      "$PYTHON" -m venv target/chat-backend-venv
      target/chat-backend-venv/bin/pip install -q redis
      PYTHON=$PWD/target/chat-backend-venv/bin/python
    }
fi
export PYTHON

if [ ! -d "$EX/node_modules/playwright-core" ]; then
  echo "test-browser.sh: npm install in $EX"
  (cd "$EX" && npm install --no-audit --no-fund --loglevel=error)
fi

GATEWAY_BIN=${GATEWAY_BIN:-$PWD/target/debug/gateway}
if [ ! -x "$GATEWAY_BIN" ]; then
  echo "test-browser.sh: building the debug gateway"
  cargo build -q -p gateway
fi
export GATEWAY_BIN
export CHROMIUM=${CHROMIUM:-$(command -v chromium)}

echo "== the example's push decision (examples/chat-backend/notify.py)"
"$PYTHON" -m unittest discover -s "$EX/test" -p 'test_*.py'

echo "== browser test (examples/chat-backend)"
node --test "$EX/test/browser.test.mjs"

echo "== operator console test (gateway/console on a two-node cluster)"
node --test "$EX/test/console.test.mjs"
