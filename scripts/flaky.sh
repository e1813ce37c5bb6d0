#!/usr/bin/env bash
# Hunts flaky tests: runs the Rust integration tests (gateway/tests and
# relay/tests), the JS SDK's tests (scripts/test-js.sh) and the browser test
# (scripts/test-browser.sh) many times, goes on after failures, and ends with
# a table per suite: runs, failed runs, and each failing test with how often.
#
#   scripts/flaky.sh [N]    N runs of the JS and browser tests (default 10),
#                           N/4 (at least 1) of the slower Rust integration tests
#   RUST_RUNS, JS_RUNS, BROWSER_RUNS override the counts; 0 skips that suite.
#   GATEWAY_BIN: the gateway the JS and browser tests run (default: built here).
#
# Builds once up front (the integration test binaries; the gateway, copied to
# target/flaky/gateway), then runs those binaries, so a source edit or a
# rebuild during the runs changes nothing. Each run's log: target/flaky/
# <suite>-<run>.log (the directory is emptied first). Exit status 1 if any
# run failed, 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10}
[[ $N =~ ^[0-9]+$ ]] || { echo "usage: $0 [N]  (env: RUST_RUNS JS_RUNS BROWSER_RUNS GATEWAY_BIN)" >&2; exit 2; }
RUST_RUNS=${RUST_RUNS:-$((N / 4 > 0 ? N / 4 : 1))}
JS_RUNS=${JS_RUNS:-$N}
BROWSER_RUNS=${BROWSER_RUNS:-$N}
for v in RUST_RUNS JS_RUNS BROWSER_RUNS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "flaky.sh: $v must be a number, not '${!v}'" >&2; exit 2; }
done
OUT=target/flaky
rm -rf "$OUT"
mkdir -p "$OUT"
FAILS=$OUT/failures.tsv # suite <TAB> failing test, one line per failure
: >"$FAILS"

# ---- build once
RUST_BINS=() # "<package dir> <TAB> <target name> <TAB> <executable>"
if ((RUST_RUNS > 0)); then
  echo "== building the integration tests (gateway, relay)"
  cargo test -q -p gateway -p relay --test '*' --no-run --message-format=json-render-diagnostics >"$OUT/build.json"
  mapfile -t RUST_BINS < <(python3 - "$OUT/build.json" <<'PY'
import json, os, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(os.path.dirname(m["manifest_path"]), m["target"]["name"], m["executable"], sep="\t")
PY
  )
  ((${#RUST_BINS[@]} > 0)) || { echo "flaky.sh: no integration test binaries found" >&2; exit 1; }
fi
if ((JS_RUNS + BROWSER_RUNS > 0)) && [ -z "${GATEWAY_BIN:-}" ]; then
  echo "== building the gateway"
  cargo build -q -p gateway
  cp target/debug/gateway "$OUT/gateway"
  GATEWAY_BIN=$PWD/$OUT/gateway
fi
export GATEWAY_BIN=${GATEWAY_BIN:-}

# ---- one run of each suite: status 0 if it passed; failing names go to $FAILS
run_rust() { # run_rust <log>: every integration test binary, from its package's directory
  local log=$1 dir name exe rc=0 bin_rc
  for entry in "${RUST_BINS[@]}"; do
    IFS=$'\t' read -r dir name exe <<<"$entry"
    echo "== $name" >>"$log"
    bin_rc=0
    (cd "$dir" && CARGO_MANIFEST_DIR=$dir "$exe") >>"$log" 2>&1 || bin_rc=$?
    echo "== $name exit $bin_rc" >>"$log"
    ((bin_rc == 0)) || rc=1
  done
  # `test a::b ... FAILED` under `== target`; a binary that failed without
  # naming a test (a crash, a panic outside the tests) counts by its exit.
  awk '/^== [^ ]+$/ { t = $2; named = 0 }
       /^test .* \.\.\. FAILED$/ { print "rust\t" t "::" $2; named = 1 }
       /^== [^ ]+ exit [0-9]+$/ && $4 != 0 && !named { print "rust\t" $2 " (exit " $4 ")" }' "$log" >>"$FAILS"
  return $rc
}
run_node() { # run_node <suite> <log> <script>: node's test runner, TAP or spec output
  local suite=$1 log=$2 rc=0 names
  "$3" >"$log" 2>&1 || rc=$?
  ((rc != 0)) || return 0
  names=$(sed -nE 's/^ *not ok [0-9]+ - (.*)$/\1/p; s/^ *✖ (.*) \([0-9.]+m?s\)$/\1/p' "$log" | sed -E 's/ # (TODO|SKIP).*$//' | sort -u)
  [ -n "$names" ] || names="(exit $rc, no failing test named)"
  printf '%s\n' "$names" | sed "s/^/$suite\t/" >>"$FAILS"
  return $rc
}

declare -A RUNS=([rust]=$RUST_RUNS [js]=$JS_RUNS [browser]=$BROWSER_RUNS) FAILED=([rust]=0 [js]=0 [browser]=0)
MAX=$(printf '%s\n' "$RUST_RUNS" "$JS_RUNS" "$BROWSER_RUNS" | sort -n | tail -1)
for ((i = 1; i <= MAX; i++)); do
  for suite in rust js browser; do
    ((i <= RUNS[$suite])) || continue
    log=$OUT/$suite-$i.log
    case $suite in
      rust) run_rust "$log" && st=ok || st=FAILED ;;
      js) run_node js "$log" scripts/test-js.sh && st=ok || st=FAILED ;;
      browser) run_node browser "$log" scripts/test-browser.sh && st=ok || st=FAILED ;;
    esac
    [ "$st" = ok ] || FAILED[$suite]=$((FAILED[$suite] + 1))
    echo "$suite run $i/${RUNS[$suite]}: $st ($log)"
  done
done

# ---- summary
echo
printf '%-8s %5s %7s  %s\n' suite runs failed 'failing tests (times)'
for suite in rust js browser; do
  ((RUNS[$suite] > 0)) || continue
  names=$(awk -F'\t' -v s="$suite" '$1 == s { print $2 }' "$FAILS" | sort | uniq -c | sort -rn |
    awk '{ n = $1; sub(/^ *[0-9]+ /, ""); printf "%s%s (%d)", sep, $0, n; sep = "; " }')
  printf '%-8s %5d %7d  %s\n' "$suite" "${RUNS[$suite]}" "${FAILED[$suite]}" "${names:--}"
done
echo "logs: $OUT/"
((FAILED[rust] + FAILED[js] + FAILED[browser] == 0)) || exit 1
