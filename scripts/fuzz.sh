#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (the parsers of network bytes in
# `proto`) for FUZZ_SECONDS each (default 20), starting from the committed
# seed corpus in fuzz/corpus/<target>/seed-*. Crashes land in
# fuzz/artifacts/<target>/; add a minimised one to the corpus as
# seed-regress-<name> once it is fixed.
#
# Usage: scripts/fuzz.sh [--build-only] [TARGET...]
# Needs a nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz if missing.
set -euo pipefail

cd "$(dirname "$0")/.."

build_only=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --build-only) build_only=1 ;;
        -h | --help)
            sed -n '2,10p' "$0"
            exit 0
            ;;
        *) targets+=("$arg") ;;
    esac
done

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain; run: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$build_only" = 1 ]; then
    cargo +nightly fuzz build --fuzz-dir fuzz "${targets[@]}"
    exit 0
fi

if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${FUZZ_SECONDS:-20}s"
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- \
        -max_total_time="${FUZZ_SECONDS:-20}"
done
