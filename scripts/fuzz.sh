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
# Each run's libFuzzer output goes to fuzz/logs/<target>.log; the summary
# at the end is one line per target: executions, seconds, coverage (edges),
# features and corpus entries, taken from libFuzzer's last status line.
mkdir -p fuzz/logs
summary=()
status=0
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${FUZZ_SECONDS:-20}s"
    log="fuzz/logs/$target.log"
    if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- \
        -max_total_time="${FUZZ_SECONDS:-20}" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz.sh: $target failed; see $log and fuzz/artifacts/$target/" >&2
        status=1
    fi
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n1)
    secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE 'in [0-9]+' | grep -oE '[0-9]+' | tail -n1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    corp=$(grep -oE 'corp: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    line=$(printf '%-18s %12s runs %6s s  cov %6s  ft %7s  corpus %6s' \
        "$target" "${runs:-?}" "${secs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
    echo "$line"
    summary+=("$line")
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$status"
