#!/bin/sh
# Guest sandbox tests: kiln exec / cp / run --detach / ls / stop against kiln-agent in the default
# image: exit status and signal propagation, stdout/stderr apart, stdin piping, timeouts, 16
# concurrent execs in one sandbox, 4 sandboxes at once, a 64 MiB round trip checked by sha256,
# path and permission errors, and 64 MiB of output with bounded memory. Needs a KVM that runs
# Linux guests (tests/integration/run.sh decides). POSIX sh: runs under busybox. docs/sandbox.md.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=guest_sandbox
. tests/integration/lib.sh

export KILN_BIN=$KILN
N=it-sbx-$$

# ---- one-shot sandboxes: boot, run, exit with the command's code ----
check exec_echo 0 '^hi$' "$KILN" exec -- echo hi
run exec_status 7 "$KILN" exec -- sh -c 'exit 7' && pass exec_status
run exec_signal 137 "$KILN" exec -- sh -c 'kill -9 $$' && pass exec_signal
check exec_not_found 127 'No such file' "$KILN" exec -- /no/such/program
run exec_timeout 124 "$KILN" exec --cmd-timeout 1 -- sleep 30 && pass exec_timeout
run exec_usage 2 "$KILN" exec --bogus-vm-option -- true && expect exec_usage 'unknown option' &&
    pass exec_usage
# stdout and stderr stay apart.
"$KILN" exec -- sh -c 'echo to-out; echo to-err >&2' >"$OUT/sep.out" 2>"$OUT/sep.err" </dev/null
if [ "$(cat "$OUT/sep.out")" = to-out ] && [ "$(cat "$OUT/sep.err")" = to-err ]; then
    pass exec_stdout_stderr_apart
else
    fail exec_stdout_stderr_apart "out='$(cat "$OUT/sep.out")' err='$(cat "$OUT/sep.err")'"
fi
check exec_stdin 0 '^3:abc$' sh -c "printf abc | '$KILN' exec -- sh -c 'x=\$(cat); echo \${#x}:\$x'"

# ---- 4 sandboxes at once ----
for i in 1 2 3 4; do
    "$KILN" exec -- sh -c "echo sandbox-$i \$(hostname)" >"$OUT/four.$i" 2>&1 </dev/null &
done
wait
ok=0
for i in 1 2 3 4; do grep -q "^sandbox-$i" "$OUT/four.$i" && ok=$((ok + 1)); done
if [ $ok = 4 ]; then pass four_sandboxes; else fail four_sandboxes "$ok of 4: $(cat "$OUT"/four.*)"; fi

# ---- a named sandbox ----
# kiln-agent is PID 1 (no `--` command) and still gets /init's /config/init.env variables.
printf 'KILN_SBX_VAR=from-init-env\n' >"$OUT/init.env"
check run_detach 0 "^$N\$" "$KILN" run --name "$N" --detach --mem 512M \
    --file "config/init.env=$OUT/init.env"
check agent_pid1_env 0 '^kiln-agent from-init-env$' \
    "$KILN" exec "$N" -- sh -c 'echo $(cat /proc/1/comm) $KILN_SBX_VAR'
check ls_running 0 "^$N +[0-9]+ +running" "$KILN" ls
check exec_named 0 '^named$' "$KILN" exec "$N" -- echo named
check exec_tty 0 '^/dev/pts/[0-9]+' "$KILN" exec -t "$N" -- tty

# 16 concurrent execs in one sandbox.
i=0
while [ $i -lt 16 ]; do
    "$KILN" exec "$N" -- sh -c "sleep 0.2; echo job-$i" >"$OUT/job.$i" 2>&1 </dev/null &
    i=$((i + 1))
done
wait
ok=0
i=0
while [ $i -lt 16 ]; do
    [ "$(cat "$OUT/job.$i")" = "job-$i" ] && ok=$((ok + 1))
    i=$((i + 1))
done
if [ $ok = 16 ]; then pass exec_16_concurrent; else fail exec_16_concurrent "$ok of 16 right"; fi

# A 64 MiB file in and out, checked by sha256 here and in the guest.
head -c 67108864 /dev/urandom >"$OUT/big"
want=$(sha256sum "$OUT/big" | cut -d' ' -f1)
run cp_in 0 "$KILN" cp "$OUT/big" "$N:/tmp/big" &&
    check cp_in_sha256 0 "^$want " "$KILN" exec "$N" -- sha256sum /tmp/big &&
    run cp_out 0 "$KILN" cp "$N:/tmp/big" "$OUT/big.back" &&
    if [ "$(sha256sum "$OUT/big.back" | cut -d' ' -f1)" = "$want" ]; then pass cp_64m_round_trip
    else fail cp_64m_round_trip "sha256 differs"; fi
rm -f "$OUT/big" "$OUT/big.back"

# Path and permission errors are named.
check cp_missing 1 'No such file' "$KILN" cp "$N:/no/such/file" "$OUT/x"
[ -e "$OUT/x" ] && fail cp_missing_leaves_nothing "an empty $OUT/x was created"
check cp_not_dir 1 'Not a directory|File exists' sh -c "echo x | '$KILN' cp - '$N:/etc/passwd/x'"
check cp_usage 2 'exactly one' "$KILN" cp "$OUT/x" "$OUT/y"
check cp_no_sandbox 1 'is the sandbox running' "$KILN" cp "$OUT/x" "no-such-sbx:/tmp/x"
check exec_permission 1 'Permission denied' \
    "$KILN" exec -u 1000 "$N" -- sh -c 'echo x >/root/forbidden'
check exec_bad_cwd 127 'chdir /nope' "$KILN" exec -w /nope "$N" -- true

# 64 MiB of output through the VM; the client's peak memory stays far below it.
"$KILN" exec "$N" -- head -c 67108864 /dev/zero >"$OUT/zeros.count.fifo" 2>&1 &
pid=$!
peak=0
while kill -0 $pid 2>/dev/null; do
    hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$pid/status 2>/dev/null)
    [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ] && peak=$hwm
    sleep 0.1
done
wait $pid
size=$(wc -c <"$OUT/zeros.count.fifo")
rm -f "$OUT/zeros.count.fifo"
if [ "$size" = 67108864 ] && [ "$peak" -gt 0 ] && [ "$peak" -lt 32768 ]; then
    pass output_64m_bounded
    echo "    64 MiB of output: kiln exec peak RSS ${peak} KiB"
else
    fail output_64m_bounded "got $size bytes, client peak RSS $peak KiB (limit 32768)"
fi

run stop_named 0 "$KILN" stop "$N" && pass stop_named
run ls_after_stop 0 "$KILN" ls && refute ls_after_stop "^$N " && pass ls_after_stop
check stop_missing 1 'no such sandbox' "$KILN" stop "$N"
summary
