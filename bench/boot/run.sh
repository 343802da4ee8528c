#!/usr/bin/env bash
# run.sh: the boot benchmark (docs/benchmarks.md). Host mode (kiln's set-up time and RSS on this
# host's /dev/kvm) runs here; guest mode (kiln against QEMU microvm, N boots each, alternating)
# runs here when `kiln doctor` says this KVM runs Linux guests, else inside the test bed.
# Prints both tables and the JSON; saves the JSON to $BUILD/bench/boot.json.
# Environment: BOOTBENCH_N (default 20), KILN_TESTBED=always|never|auto (as for the integration
# tests), BOOTBENCH_TIMEOUT (test bed limit in seconds, default 300 + 30 per run), BUILD.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
N=${BOOTBENCH_N:-20}
mode=${KILN_TESTBED:-auto}
out=$BUILD/bench
kernel=$BUILD/guest/vmlinux
initrd=$BUILD/guest/initramfs.cpio.gz
qemu=$(command -v qemu-system-x86_64 || true)

die() {
    echo "bench/boot: $*" >&2
    exit 1
}
case "$mode" in always | never | auto) ;; *) die "KILN_TESTBED must be always, never or auto, not '$mode'" ;; esac
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "BOOTBENCH_N must be a positive number, not '$N'"
[ -x "$BUILD/kiln" ] || die "$BUILD/kiln is missing: run 'make kiln'"
{ [ -r "$kernel" ] && [ -r "$initrd" ]; } || die "the guest image is missing: run 'make guest'"
[ -n "$qemu" ] || die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
mkdir -p "$out"
make -s "$BUILD/bench/bootbench" || die "building $BUILD/bench/bootbench failed"
rm -f "$out/boot-host.json" "$out/boot-guest.json" "$out/boot.json"

# A JSON line from a console capture, checked to be whole (a kernel message could cut into it).
extract_json() {
    sed -n 's/^JSON \({.*}\)[[:space:]]*$/\1/p' "$1" | tail -n 1 >"$2"
    [ -s "$2" ] || return 1
    if command -v python3 >/dev/null; then
        python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$2" 2>/dev/null || return 1
    fi
}

# The probe's verdict is cached per boot; `doctor` fills that cache before the first timed run,
# so no run pays for the probe. Its exit code decides where guest mode runs.
"$BUILD/kiln" doctor --quiet
fit=$?
kvm_kind="a KVM that runs Linux guests"
[ $fit = 0 ] || kvm_kind="a KVM that cannot run Linux guests (e.g. PVM; the guest never boots)"

echo "== host mode: kiln set-up and RSS on this host's /dev/kvm ($kvm_kind), N=$N"
"$out/bootbench" host -n "$N" --kiln "$BUILD/kiln" --kernel "$kernel" --initrd "$initrd" \
    --place "host $(hostname), $(nproc) CPUs, $kvm_kind" --json "$out/boot-host.json" |
    grep --line-buffered -v '^JSON '
host_status=${PIPESTATUS[0]}

if [ "$mode" = auto ]; then
    if [ $fit = 0 ]; then mode=never; else mode=always; fi
fi
echo
if [ "$mode" = never ]; then
    echo "== guest mode: kiln vs QEMU microvm on this host's KVM, N=$N"
    "$out/bootbench" guest -n "$N" --kiln "$BUILD/kiln" --kernel "$kernel" --initrd "$initrd" \
        --qemu "$qemu" --place "host $(hostname), $(nproc) CPUs, its own /dev/kvm" \
        --json "$out/boot-guest.json" | grep --line-buffered -v '^JSON '
    guest_status=${PIPESTATUS[0]}
else
    echo "== guest mode: kiln vs QEMU microvm inside the test bed (nested kvm-amd), N=$N"
    # QEMU travels with its microvm firmware only (qboot, bios-microvm.bin: -L points at it);
    # tests/testbed/run.sh adds the shared libraries of every executable in the payload.
    fw=$(dirname "$(readlink -f "$qemu")")/../share/qemu/bios-microvm.bin
    [ -r "$fw" ] || fw=/usr/share/qemu/bios-microvm.bin
    [ -r "$fw" ] || die "QEMU's microvm firmware bios-microvm.bin is missing"
    log=$(mktemp "${TMPDIR:-/tmp}/bootbench.XXXXXX")
    trap 'rm -f "$log"' EXIT
    place="test bed on host $(hostname): QEMU TCG + emulated SVM, nested kvm-amd"
    # Under load the emulated test bed has been seen to stall for minutes (its own clock stops,
    # so no per-run timeout inside fires); a session that brings back no result is run once more.
    for attempt in 1 2; do
        tests/testbed/run.sh --timeout "${BOOTBENCH_TIMEOUT:-$((300 + 30 * N))}" \
            --payload "$out/bootbench:bench/bootbench" \
            --payload "$BUILD/kiln:bench/kiln" \
            --payload "$kernel:bench/guest/vmlinux" \
            --payload "$initrd:bench/guest/initramfs.cpio.gz" \
            --payload "$qemu:bench/qemu/qemu-system-x86_64" \
            --payload "$fw:bench/qemu/share/bios-microvm.bin" \
            -- sh -c "cd /payload/bench && ./kiln doctor --quiet; ./bootbench guest -n $N \
                --kiln ./kiln --qemu ./qemu/qemu-system-x86_64 --qemu-data ./qemu/share \
                --kernel guest/vmlinux --initrd guest/initramfs.cpio.gz --place '$place'" |
            tee "$log" | grep --line-buffered -v '^JSON '
        guest_status=${PIPESTATUS[0]}
        extract_json "$log" "$out/boot-guest.json" && break
        echo "bench/boot: no whole JSON line came back from the test bed (status $guest_status)" >&2
        [ "$attempt" = 1 ] && echo "bench/boot: running the test bed session once more" >&2
    done
    echo "note: in the test bed kiln's binary and libraries live in tmpfs, counted as shmem: the"
    echo "      RSS-beyond-guest-memory figure above omits them; quote the host-mode figure."
fi

{
    printf '{"host":'
    if [ -s "$out/boot-host.json" ]; then tr -d '\n' <"$out/boot-host.json"; else printf null; fi
    printf ',"guest":'
    if [ -s "$out/boot-guest.json" ]; then tr -d '\n' <"$out/boot-guest.json"; else printf null; fi
    printf '}\n'
} >"$out/boot.json"
echo
echo "== JSON (saved to $out/boot.json)"
cat "$out/boot.json"
# Non-zero only when runs failed (no measurement), never because a figure missed its target.
[ "$host_status" = 0 ] && [ "$guest_status" = 0 ]
