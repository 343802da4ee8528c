#!/bin/sh
# Guest kiln-agent tests: the default image without a command runs kiln-agent as PID 1, which
# prints READY on the console, sets the hostname, reaps orphaned zombies and serves `kiln exec`
# over vsock (exit status, stderr); kiln.shell=1 brings back the interactive shell. The agent's
# protocol itself is covered as a host process by tests/unit/test_agent_*.c. POSIX sh: runs under
# busybox in the test bed. See docs/agent-protocol.md and docs/guest-image.md.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=guest_agent
. tests/integration/lib.sh

# No command: the agent is PID 1 and announces itself; the VM runs until the timeout.
check agent_ready 124 'kiln-agent: READY' "$KILN" run --timeout 8
expect agent_ready 'kiln-agent: PID 1' && pass agent_is_pid1
refute agent_ready 'Kernel panic|Attempted to kill init' && pass agent_no_panic

# Through the agent (as `kiln exec` starts it): the hostname, no zombie left behind, stderr and
# the exit status.
G='echo pid1=$(cat /proc/1/comm) host=$(hostname); sh -c "sleep 0.2 &"; sleep 1;'
G="$G"' echo zombies=$(grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null | wc -l);'
G="$G"' echo to-stderr >&2; exit 3'
if run agent_exec 3 "$KILN" exec --timeout 60 -- sh -c "$G"; then
    expect agent_exec 'pid1=[a-z-]+ host=kiln' && pass agent_hostname
    expect agent_exec 'zombies=0' && pass agent_reaps_orphans
    expect agent_exec 'to-stderr' && pass agent_exec_status_stderr
fi

# The same image booted without a command and reached by name: the agent is PID 1 and serves.
"$KILN" run --name kiln-agent-it --timeout 120 >"$OUT/agent_named_vm.log" 2>&1 </dev/null &
vm=$!
i=0
while [ $i -lt 60 ]; do
    "$KILN" exec kiln-agent-it -- cat /proc/1/comm >"$OUT/agent_pid1_exec.log" 2>&1 </dev/null &&
        break
    i=$((i + 1))
    sleep 0.5
done
expect agent_pid1_exec '^kiln-agent$' && pass agent_pid1_exec
run agent_pid1_status 9 "$KILN" exec kiln-agent-it -- sh -c 'exit 9' && pass agent_pid1_status
kill "$vm" 2>/dev/null
wait "$vm" 2>/dev/null

# kiln.shell=1: the interactive shell instead (on the console; it waits there until the timeout).
check agent_shell_param 124 'kiln:/# ' "$KILN" run --timeout 8 --append 'kiln.shell=1'
refute agent_shell_param 'kiln-agent: READY' && pass agent_shell_no_agent

summary
