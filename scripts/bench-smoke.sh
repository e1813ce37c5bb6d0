#!/usr/bin/env bash
# Correctness smoke of every loadgen scenario against a fresh gateway on
# ephemeral loopback ports (200 connections each): every connection ready,
# every message delivered exactly once. Counts, not speed; bounded (~15 s,
# hard limit 120 s). Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gateway -p loadgen
exec timeout 120 target/release/loadgen smoke --gateway-bin target/release/gateway --conns "${SMOKE_CONNS:-200}"
