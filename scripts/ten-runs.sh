#!/usr/bin/env bash
# Runs the README's test command RUNS times (10 by default) while a release build of the
# whole workspace runs beside it, from scratch each time, in a target directory of its own:
# the load a developer's machine or a shared CI runner puts on the tests. Prints one line per
# run and exits non-zero if any run failed; each failed run's output is kept in
# target/ten-runs/run-N.log.
#
#   scripts/ten-runs.sh          # ten runs
#   RUNS=3 scripts/ten-runs.sh   # three
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-10}
out=target/ten-runs
mkdir -p "$out"
# Built once first, so that each run measures the tests, not the first compilation.
cargo test --workspace --all-features --no-run -q >/dev/null 2>&1
failed=0
beside=
# The build beside is in a session of its own: stopped here whatever ends the script.
stop_beside() {
    if [ -n "$beside" ] && kill -0 "$beside" 2>/dev/null; then
        kill -- "-$beside" 2>/dev/null
        wait "$beside" 2>/dev/null
    fi
    beside=
}
trap stop_beside EXIT
trap 'exit 130' INT TERM
for i in $(seq 1 "$runs"); do
    rm -rf target/beside
    # In a session of its own, so that the whole build (cargo and its rustc) can be stopped.
    CARGO_TARGET_DIR=target/beside setsid cargo build --release --workspace -q >/dev/null 2>&1 &
    beside=$!
    start=$(date +%s)
    # Every test binary runs, so that a run reports all its failures, not the first.
    if cargo test --workspace --all-features --no-fail-fast >"$out/run-$i.log" 2>&1; then
        result=passed
        rm -f "$out/run-$i.log"
    else
        result=FAILED
        failed=$((failed + 1))
        grep -E '^test .* FAILED$' "$out/run-$i.log" | sed 's/^/    /'
    fi
    # The build goes on no longer than the tests did.
    stop_beside
    echo "run $i of $runs: $result in $(( $(date +%s) - start )) s (beside a release build)"
done
rm -rf target/beside
echo "$((runs - failed)) of $runs runs passed"
[ "$failed" -eq 0 ]
