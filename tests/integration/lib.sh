# lib.sh: a tiny POSIX-sh harness for integration tests (it also runs under busybox in the test
# bed): run a command, check its exit code and output. Sourced by host.sh and guest.sh.
PASSED=0
FAILED=0
FAILED_NAMES=""
OUT=$(mktemp -d /tmp/kiln-it.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

# A test whose command ran for 2 s or more says how long (to find what makes a suite slow).
pass() {
    PASSED=$((PASSED + 1))
    if [ "$1" = "${_last_name:-}" ] && [ "${_last_secs:-0}" -ge 2 ]; then
        echo "PASS $1 (${_last_secs} s)"
    else
        echo "PASS $1"
    fi
}
fail() {
    FAILED=$((FAILED + 1))
    FAILED_NAMES="$FAILED_NAMES $1"
    if [ "$1" = "${_last_name:-}" ]; then echo "FAIL $1: $2 (after ${_last_secs} s)"
    else echo "FAIL $1: $2"; fi
    if [ -f "$OUT/$1.log" ]; then tail -n 30 "$OUT/$1.log" | sed 's/^/    | /'; fi
}

# run NAME EXPECTED_CODE CMD...: runs CMD with stdout+stderr in $OUT/NAME.log, checks the code.
# A command still running after KILN_TEST_TIMEOUT seconds (default 300) is a hang: the threads'
# kernel stacks go into its log (to tell a wedged process from a stalled test bed), then it is
# killed and the test fails with status 137. The watchdog polls once a second and ends by itself
# within a second of the command.
run() {
    _name=$1 _want=$2
    shift 2
    _t0=$(date +%s)
    "$@" >"$OUT/$_name.log" 2>&1 </dev/null &
    _pid=$!
    (
        _n=0
        while [ "$_n" -lt "${KILN_TEST_TIMEOUT:-300}" ]; do
            sleep 1
            kill -0 "$_pid" 2>/dev/null || exit 0
            _n=$((_n + 1))
        done
        echo "lib.sh: still running after ${KILN_TEST_TIMEOUT:-300} s; thread states:"
        for _t in /proc/"$_pid"/task/*; do
            echo "  $(cat "$_t/comm" 2>/dev/null) $(cut -d' ' -f3 "$_t/stat" 2>/dev/null)" \
                "wchan=$(cat "$_t/wchan" 2>/dev/null)"
            sed 's/^/      /' "$_t/stack" 2>/dev/null | head -12
        done
        kill -KILL "$_pid" 2>/dev/null
    ) >>"$OUT/$_name.log" 2>&1 &
    wait "$_pid"
    _got=$?
    _last_name=$_name _last_secs=$(($(date +%s) - _t0))
    [ "$_got" = "$_want" ] && return 0
    fail "$_name" "exit code $_got, expected $_want"
    return 1
}

# expect NAME REGEX: the log of NAME matches the extended regex.
expect() {
    grep -Eq -- "$2" "$OUT/$1.log" && return 0
    fail "$1" "output does not match /$2/"
    return 1
}

# refute NAME REGEX: the log of NAME does not match.
refute() {
    grep -Eq -- "$2" "$OUT/$1.log" || return 0
    fail "$1" "output unexpectedly matches /$2/"
    return 1
}

# check NAME EXPECTED_CODE REGEX CMD...: run, expect, pass.
check() {
    _cname=$1 _cwant=$2 _cre=$3
    shift 3
    run "$_cname" "$_cwant" "$@" && expect "$_cname" "$_cre" && pass "$_cname"
}

summary() {
    echo "$SUITE: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && return 0
    echo "failing:$FAILED_NAMES"
    return 1
}
