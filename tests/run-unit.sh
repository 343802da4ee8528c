#!/usr/bin/env bash
# Runs every cmocka unit-test binary in DIR and prints one summary line: "N passed, N failed".
set -u
dir=${1:?usage: run-unit.sh DIR}
passed=0 failed=0 failed_names=()
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    if out=$("$t" 2>&1); then
        n=$(grep -c '^\[       OK \]' <<<"$out")
        passed=$((passed + n))
        echo "PASS $(basename "$t") ($n tests)"
    else
        printf '%s\n' "$out"
        n_ok=$(grep -c '^\[       OK \]' <<<"$out")
        n_bad=$(grep -c '^\[  FAILED  \] [a-z_]' <<<"$out")
        [ "$n_bad" -gt 0 ] || n_bad=1
        passed=$((passed + n_ok))
        failed=$((failed + n_bad))
        failed_names+=("$(basename "$t")")
        echo "FAIL $(basename "$t")"
    fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "failing: ${failed_names[*]}"; exit 1; }
