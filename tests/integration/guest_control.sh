#!/bin/sh
# Guest control-socket tests (docs/control-protocol.md): one Linux guest, started with --name so
# its socket is known, prints a tick line every 100 ms with its clock and what it reads through
# /dev/mem at the first registered address; the host drives it with `kiln ctl`: registered memory
# read back by the guest, the range reused after unregistering, pause stopping the ticks (and
# guest time), resume restarting them, the balloon following an adjust, exit ending the VMM.
# POSIX sh: runs under busybox in the test bed.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=guest_control
. tests/integration/lib.sh

export XDG_RUNTIME_DIR="$OUT/xdg"
mkdir -p "$XDG_RUNTIME_DIR"
NAME=guest-ctl-$$
CON=$OUT/con
GPA=0x100000000 # the first registered range of a 256 MiB guest (docs/control-protocol.md)

TICK="i=0; while [ \$i -lt 900 ]; do echo tick \$i \$(read u r </proc/uptime; echo \$u) \$(devmem $GPA 32); i=\$((i + 1)); sleep 0.1; done"
"$KILN" run --name "$NAME" --mem 256M --balloon 0 --timeout 120 --console "$CON" \
    --append "-- \"$TICK\"" >"$OUT/vm.log" 2>&1 &
VM=$!

# wait_for REGEX TENTHS: until the console matches.
wait_for() {
    _i=0
    while ! grep -Eq -- "$1" "$CON" 2>/dev/null; do
        _i=$((_i + 1))
        [ $_i -gt "$2" ] && return 1
        sleep 0.1
    done
}
last_tick() { sed -n 's/^tick \([0-9]*\) .*/\1/p' "$CON" | tail -n 1; }
# The guest's uptime in centiseconds printed with tick N.
tick_time() { sed -n "s/^tick $1 \([0-9]*\)\.\([0-9]*\) .*/\1\2/p" "$CON" | head -n 1; }
ok() { _n=$1; shift; run "$_n" 0 "$@" && pass "$_n"; }

if ! wait_for '^tick 3 ' 600; then
    fail guest_ticks "the guest never ticked: $(tail -5 "$CON" 2>/dev/null)"
    kill $VM 2>/dev/null
    summary
    exit 1
fi
pass guest_ticks
check state 0 '^running$' "$KILN" ctl "$NAME" state

# Registered memory with a known pattern, read back by the guest at the returned address.
dd if=/dev/zero of="$OUT/mem" bs=1048576 count=2 2>/dev/null
printf 'KILN' | dd of="$OUT/mem" conv=notrunc 2>/dev/null
check register 0 "^gpa $GPA pfn 0x100000 slot 2\$" \
    "$KILN" ctl "$NAME" register-memory "$OUT/mem" 2M
# "KILN" as a little-endian 32-bit word.
if wait_for ' 0x4E4C494B' 50; then pass guest_reads_pattern
else fail guest_reads_pattern "guest saw: $(tail -n 2 "$CON")"; fi

# Unregister, then re-register a different pattern: the same range comes back.
ok unregister "$KILN" ctl "$NAME" unregister-memory 2
printf 'K2K2' | dd of="$OUT/mem" conv=notrunc 2>/dev/null
check reregister_reuses 0 "^gpa $GPA pfn 0x100000 slot 2\$" \
    "$KILN" ctl "$NAME" register-memory "$OUT/mem" 2M
if wait_for ' 0x324B324B' 50; then pass guest_reads_new_pattern
else fail guest_reads_new_pattern "guest saw: $(tail -n 2 "$CON")"; fi

# Pause: the ticks stop; guest time does not run on; resume restarts them.
ok pause "$KILN" ctl "$NAME" pause
sleep 0.3
a=$(last_tick)
sleep 1.5
b=$(last_tick)
[ -n "$a" ] && [ "$a" = "$b" ] && pass pause_stops_ticks || fail pause_stops_ticks "tick $a -> $b"
check state_paused 0 '^paused$' "$KILN" ctl "$NAME" state
ok resume "$KILN" ctl "$NAME" resume
if wait_for "^tick $((b + 3)) " 50; then pass resume_restarts_ticks
else fail resume_restarts_ticks "no tick after $b: $(tail -n 2 "$CON")"; fi
# Across the 1.8 s pause the guest clock advanced by about one tick period, not by the pause.
t0=$(tick_time "$b")
t1=$(tick_time $((b + 1)))
if [ -n "$t0" ] && [ -n "$t1" ]; then
    gap=$(((t1 - t0) * 10))
    echo "guest_control: guest clock advanced $gap ms across a 1.8 s pause"
    [ "$gap" -lt 1000 ] && pass pause_freezes_guest_time ||
        fail pause_freezes_guest_time "guest time ran on by $gap ms"
else
    fail pause_freezes_guest_time "no guest clock in ticks $b, $((b + 1)): $(grep "^tick $b " "$CON")"
fi

# The balloon follows a relative adjust: 4096 pages (16 MiB) inflate in the guest.
check balloon_adjust 0 '^balloon target 4096 pages$' "$KILN" ctl "$NAME" balloon +4096
i=0
while [ $i -lt 50 ]; do
    "$KILN" ctl "$NAME" metrics >"$OUT/metrics.log" 2>&1
    grep -q '"actual_pages":4096' "$OUT/metrics.log" && break
    i=$((i + 1))
    sleep 0.2
done
if grep -q '"actual_pages":4096' "$OUT/metrics.log"; then pass balloon_inflates
else fail balloon_inflates "metrics: $(cat "$OUT/metrics.log")"; fi
check balloon_deflate 0 '^balloon target 0 pages$' "$KILN" ctl "$NAME" balloon -99999

# Exit: the VMM ends with code 0.
ok exit "$KILN" ctl "$NAME" exit
wait $VM
code=$?
[ $code = 0 ] && pass exit_code_0 || fail exit_code_0 "kiln run exited $code: $(tail -3 "$OUT/vm.log")"
summary
