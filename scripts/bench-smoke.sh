#!/usr/bin/env bash
# Correctness smoke of every loadgen scenario against a fresh gateway on
# ephemeral loopback ports (200 connections each): every connection ready,
# every message delivered exactly once. Counts, not speed; bounded (~15 s,
# hard limit 120 s). Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
# PROFILE=debug reuses the binaries `cargo test` built (scripts/test.sh).
profile=${PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release -q -p gateway -p loadgen
else
    cargo build -q -p gateway -p loadgen
fi
exec timeout 120 "target/$profile/loadgen" smoke --gateway-bin "target/$profile/gateway" --conns "${SMOKE_CONNS:-200}"
