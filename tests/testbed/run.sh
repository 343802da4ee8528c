#!/usr/bin/env bash
# Runs a command inside the kiln test bed (QEMU TCG with emulated AMD SVM, Debian's cloud kernel
# and a real nested /dev/kvm), streams its console output and exits with the command's status.
set -uo pipefail

usage() {
    cat <<'EOF'
usage: tests/testbed/run.sh [OPTIONS] -- CMD [ARGS...]
  --timeout SECONDS   kill the test bed after SECONDS (default 1200); exit 124
  --mem SIZE          guest RAM as QEMU -m takes it (default 4G)
  --cpus N            vCPUs (default 1: see docs/testbed.md for why not more)
  --payload SRC[:DEST]  copy file or directory SRC to /payload/DEST (default DEST: SRC's
                      basename; a directory's contents land in DEST, so DIR:. fills /payload)
  --file SRC:DEST     copy file SRC to DEST in the guest (absolute, or relative to /payload)
  --append ARGS       extra kernel command-line arguments
CMD runs in /payload under busybox sh with stdin from /dev/null; the shared libraries of every
ELF executable given are copied in too. Exit status: CMD's, 124 on timeout, 125 when the test bed
itself failed (no exit report from the guest), 2 on bad usage.
Environment: KILN_TESTBED_VERBOSE=1 shows the kernel log and timings; KILN_TESTBED_MACHINE
overrides the QEMU machine (default microvm, or pc when the host's TSC rate is unknown);
KILN_CACHE is where build.sh keeps the base image; KILN_TESTBED_STALL_SECONDS (default 30, 0:
off): how long an idle, silent test bed waits before it is checked for a stall (docs/testbed.md).
EOF
}

die_usage() {
    echo "testbed: $*" >&2
    usage >&2
    exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout=1200
mem=4G
# One vCPU: with two, the nested guests of kiln died under interrupt-heavy load (docs/testbed.md).
cpus=1
append=
payloads=()
files=()
while [ $# -gt 0 ]; do
    case "$1" in
    --timeout | --mem | --cpus | --payload | --file | --append)
        [ $# -ge 2 ] || die_usage "$1 needs a value"
        opt=$1 val=$2
        shift 2
        case "$opt" in
        --timeout) timeout=$val ;;
        --mem) mem=$val ;;
        --cpus) cpus=$val ;;
        --payload) payloads+=("$val") ;;
        --file) files+=("$val") ;;
        --append) append="$append $val" ;;
        esac
        ;;
    --)
        shift
        break
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die_usage "unknown option '$1'" ;;
    esac
done
[ $# -gt 0 ] || die_usage "no command given after --"
[[ "$timeout" =~ ^[1-9][0-9]{0,6}$ ]] ||
    die_usage "--timeout must be a positive number of seconds, not '$timeout'"
if ! [[ "$cpus" =~ ^[1-9][0-9]?$ ]] || [ "$cpus" -gt 64 ]; then
    die_usage "--cpus must be 1..64, not '$cpus'"
fi
[[ "$mem" =~ ^[1-9][0-9]{0,6}[MGmg]?$ ]] ||
    die_usage "--mem must be a size like 4G or 2048M, not '$mem'"
verbose=${KILN_TESTBED_VERBOSE:-0}

t_start=$(date +%s.%N)
base=$("$here/build.sh") || {
    echo "testbed: building the base image failed" >&2
    exit 125
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-testbed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
stage="$tmp/stage"
mkdir -p "$stage/payload" "$stage/etc/testbed"

# Copies SRC (file or directory) to guest path DEST (absolute, or relative to /payload).
stage_copy() {
    local src=$1 dest=$2
    [ -e "$src" ] || {
        echo "testbed: payload source '$src' does not exist" >&2
        exit 2
    }
    case "$dest" in
    /*) ;;
    *) dest="/payload/$dest" ;;
    esac
    case "$dest" in
    */../* | */.. | /etc/testbed/* | /init)
        echo "testbed: invalid guest path '$dest' (no '..', not /init or /etc/testbed)" >&2
        exit 2
        ;;
    esac
    if [ -d "$src" ]; then
        # A directory's contents go to DEST, so DEST "." merges it into /payload itself.
        mkdir -p "$stage$dest"
        cp -a -H "$src/." "$stage$dest/" || exit 125
    else
        mkdir -p "$stage$(dirname "$dest")"
        cp -a -H "$src" "$stage$dest" || exit 125
    fi
}

for p in "${payloads[@]}"; do
    case "$p" in
    *:*) stage_copy "${p%%:*}" "${p#*:}" ;;
    *) stage_copy "$p" "$(basename "$p")" ;;
    esac
done
for f in "${files[@]}"; do
    case "$f" in
    *:?*) stage_copy "${f%%:*}" "${f#*:}" ;;
    *) die_usage "--file needs SRC:DEST, not '$f'" ;;
    esac
done

# The guest has no glibc: give every dynamically linked executable its libraries and loader at
# the paths ldd resolved them to on this host. libgcc_s is loaded by glibc at run time (thread
# cancellation and exit), so it comes along with libc.
declare -A libs=()
while IFS= read -r -d '' f; do
    [ "$(head -c 4 "$f" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    while read -r lib; do
        libs[$lib]=1
    done < <(ldd "$f" 2>/dev/null |
        sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p')
done < <(find "$stage" -type f -perm /111 -print0)
if [ ${#libs[@]} -gt 0 ]; then
    for lib in "${!libs[@]}"; do
        case "$lib" in */libc.so.6)
            gcc_s=$(ldconfig -p | sed -n 's/.*libgcc_s.so.1 (libc6,x86-64) => //p' | head -n1)
            [ -n "$gcc_s" ] && libs[$gcc_s]=1
            ;;
        esac
    done
    for lib in "${!libs[@]}"; do
        [ -e "$stage$lib" ] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib" || exit 125
    done
fi

# The command, quoted for sh: each argument in single quotes.
{
    printf 'exec'
    for a in "$@"; do
        printf " '%s'" "${a//\'/\'\\\'\'}"
    done
    printf '\n'
} >"$stage/etc/testbed/cmd"
token=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
echo "$token" >"$stage/etc/testbed/token"

# The kernel unpacks concatenated cpio archives in order; later entries add to the base.
cp "$base/base.cpio" "$tmp/initrd"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
    >>"$tmp/initrd" || exit 125

# The host's TSC rate in kHz, or nothing. Under TCG the guest's TSC is the host's TSC.
host_tsc_khz() {
    local log mhz
    log=$(dmesg 2>/dev/null)
    mhz=$(echo "$log" | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz/\1/p')
    [ -n "$mhz" ] ||
        mhz=$(echo "$log" | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz processor.*/\1/p')
    mhz=$(echo "$mhz" | tail -n1)
    [[ "$mhz" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk "BEGIN{printf \"%d\", $mhz * 1000}"
}

# microvm (no PCI, no firmware to speak of) boots about a second faster than pc or q35, but has
# no timer the kernel can calibrate the TSC against (no PIT gate, HPET or ACPI PM timer): it needs
# the rate on the command line. When the host's rate is unknown, use pc, where the kernel
# measures it against the ACPI PM timer. The cloud kernel finds ttyS0 at the legacy port either way.
# Debian's kernel boots uncompressed through PVH (build.sh extracts vmlinux) to skip decompression.
# tsc=reliable: the vCPUs' TSCs are all the host's TSC, but the kernel's synchronisation check
# fails under the emulator's timing and would leave it on the 4 ms jiffies clock.
# The self-tests of the crypto API (and kdf108's own) cost ~0.3 s and test nothing of ours.
cmdline="console=ttyS0 panic=-1 mitigations=off tsc=reliable cryptomgr.notests"
cmdline="$cmdline initcall_blacklist=crypto_kdf108_init"
tsc_khz=$(host_tsc_khz)
machine=${KILN_TESTBED_MACHINE:-}
if [ -z "$machine" ]; then
    if [ -n "$tsc_khz" ]; then machine=microvm,rtc=on; else machine=pc; fi
fi
# With the TSC rate known, lpj= also skips the delay-loop calibration (~0.5 s under TCG).
hz=$(sed -n 's/^kernel_hz=//p' "$base/info")
if [ -n "$tsc_khz" ]; then
    cmdline="$cmdline tsc_early_khz=$tsc_khz"
    [[ "$hz" =~ ^[1-9][0-9]*$ ]] && cmdline="$cmdline lpj=$((tsc_khz * 1000 / hz))"
fi
kernel="$base/vmlinux"
[ -s "$kernel" ] || kernel="$base/vmlinuz"
if [ "$verbose" = 1 ]; then
    cmdline="$cmdline testbed.verbose=1"
else
    cmdline="$cmdline quiet loglevel=3"
fi
cmdline="$cmdline$append"

# shellcheck disable=SC2054 # the commas belong to QEMU's option values
qemu=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
    -M "$machine" -accel tcg,thread=multi -cpu EPYC,+svm,+npt -smp "$cpus" -m "$mem"
    -kernel "$kernel" -initrd "$tmp/initrd" -append "$cmdline" -serial stdio)
[ "$verbose" = 1 ] && echo "testbed: ${qemu[*]}" >&2

# Streams the console, strips CRs, hides the start/exit markers and records what they say.
# After the exit marker only the kernel's power-off messages follow: shown when verbose.
filter() {
    local line status prefix done=0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        if [ $done = 1 ]; then
            [ "$verbose" = 1 ] && printf '%s\n' "$line"
            continue
        fi
        case "$line" in
        *"KILN-TESTBED-START $token"*)
            prefix=${line%%KILN-TESTBED-START*}
            [ -n "$prefix" ] && printf '%s\n' "$prefix"
            date +%s.%N >"$tmp/started"
            ;;
        *"KILN-TESTBED-EXIT $token "*)
            prefix=${line%%KILN-TESTBED-EXIT*}
            [ -n "$prefix" ] && printf '%s\n' "$prefix"
            status=${line##*"KILN-TESTBED-EXIT $token "}
            echo "${status%%[!0-9]*}" >"$tmp/status"
            done=1
            ;;
        *) printf '%s\n' "$line" ;;
        esac
        : >"$tmp/alive"
    done
}

# Stall detector (docs/testbed.md, "Stalls"): QEMU 7.2's emulated nested SVM has been caught
# leaving the test bed's CPU halted for good with its timer interrupt pending in the local APIC
# (IF set, an NMI not taken either). Such a test bed never wakes, so waiting for --timeout only
# wastes minutes. When QEMU has used (almost) no CPU and the console has said nothing for
# $stall_s seconds, the monitor is asked for the CPU's state; halted with an interrupt pending is
# that stall: the runner says so and ends QEMU (exit 125, which the integration runner retries).
stall_s=${KILN_TESTBED_STALL_SECONDS:-30}
[[ "$stall_s" =~ ^[0-9]+$ ]] || die_usage "KILN_TESTBED_STALL_SECONDS must be a number, not '$stall_s'"
monitor() { # the monitor's answer to one command
    : >"$tmp/mon.log"
    echo "$1" >"$tmp/mon.in"
    sleep 1
    tr -d '\r' <"$tmp/mon.log"
}
# One line on the CPU: where it is, whether halted, which interrupts wait in its local APIC.
cpu_state() {
    local regs irr
    regs=$(monitor "info registers" | grep -ao 'RIP=[0-9a-f]* RFL=[0-9a-f]*\|HLT=[01]' | tr '\n' ' ')
    irr=$(monitor "info lapic" | sed -n 's/^IRR[[:space:]]*//p' | tr -d '\n')
    echo "${regs}IRR ${irr:-?}"
}
watchdog() {
    local pid ticks last=-1 idle=0 elapsed=0 state
    while sleep 5; do
        elapsed=$((elapsed + 5))
        pid=$(cat "$tmp/qemu.pid" 2>/dev/null) || continue
        ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || return 0
        # Just before --timeout ends it, say what the test bed was doing: busy or idle, and where.
        if [ "$elapsed" -eq $(((timeout - 10) / 5 * 5)) ]; then
            echo "testbed: about to time out: QEMU used $((ticks - last)) ticks of CPU in the" \
                "last 5 s; CPU: $(cpu_state)" >&2
        fi
        # under 0.1 s of CPU in 5 s, and no console line in that time
        if [ "$last" -ge 0 ] && [ $((ticks - last)) -lt 10 ] &&
            [ "$(($(date +%s) - $(stat -c %Y "$tmp/alive" 2>/dev/null || echo 0)))" -ge 5 ]; then
            idle=$((idle + 5))
        else
            idle=0
        fi
        last=$ticks
        [ "$idle" -ge "$stall_s" ] || continue
        state=$(cpu_state)
        if [[ "$state" == *HLT=1* ]] && [[ "$state" =~ IRR\ [0-9] ]]; then
            echo "testbed: stalled: its CPU has been halted for $idle s with an interrupt" \
                "pending ($state; QEMU's nested SVM emulation, docs/testbed.md); stopping it" >&2
            : >"$tmp/stalled"
            kill "$pid"
            return 0
        fi
        [ "$verbose" = 1 ] && echo "testbed: idle for $idle s but not stalled ($state)" >&2
        idle=0 # idle but healthy (a payload sleeping): look again later
    done
}
if [ "$stall_s" -gt 0 ]; then
    mkfifo "$tmp/mon.in" "$tmp/mon.out"
    qemu+=(-monitor "pipe:$tmp/mon" -pidfile "$tmp/qemu.pid")
    cat "$tmp/mon.out" >>"$tmp/mon.log" & # QEMU opens it for writing, which needs a reader
    monitor_reader=$!
    : >"$tmp/alive"
    watchdog &
    watchdog_pid=$!
fi

timeout --foreground -k 10 "$timeout" "${qemu[@]}" </dev/null 2>"$tmp/qemu.err" | filter
qemu_rc=${PIPESTATUS[0]}
t_end=$(date +%s.%N)
if [ "$stall_s" -gt 0 ]; then
    kill "$watchdog_pid" "$monitor_reader" 2>/dev/null
    wait "$watchdog_pid" "$monitor_reader" 2>/dev/null
fi

if [ "$verbose" = 1 ]; then
    grep -v "TCG doesn't support requested feature" "$tmp/qemu.err" >&2
    if [ -f "$tmp/started" ]; then
        awk -v s="$t_start" -v p="$(cat "$tmp/started")" -v e="$t_end" 'BEGIN {
            printf "testbed: payload started %.2f s after run.sh started; ", p - s
            printf "total %.2f s\n", e - s
        }' >&2
    fi
fi
status=$(cat "$tmp/status" 2>/dev/null)
if [[ "$status" =~ ^[0-9]+$ ]] && [ "$status" -le 255 ]; then
    exit "$status"
fi
if [ -f "$tmp/stalled" ]; then
    echo "testbed: the test bed stalled (see above); the payload's status is unknown" >&2
    exit 125
fi
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    echo "testbed: payload timed out after $timeout s" >&2
    exit 124
fi
echo "testbed: the guest ended without reporting the payload's exit status (QEMU exit" \
    "status $qemu_rc; kernel panic or QEMU failure; rerun with KILN_TESTBED_VERBOSE=1)" >&2
grep -v "TCG doesn't support requested feature" "$tmp/qemu.err" | tail -n 20 |
    sed 's/^/    qemu: /' >&2
exit 125
