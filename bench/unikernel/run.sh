#!/usr/bin/env bash
# run.sh: the unikernel benchmark (docs/benchmarks.md): process start -> exit of `kiln unikernel
# hello.elf` (median of N >= 30 runs, kiln's own set-up time before the first KVM_RUN from
# --stats) with the static kiln, and beside it the dynamic kiln and --full-teardown (A/B of this
# build's two start and exit paths) and QEMU booting the same ELF through its PVH entry, on this
# host's /dev/kvm; then the same in the test bed with `kiln run` of the default Linux image to init
# beside it (this host's PVM cannot run Linux). Prints the tables and saves the JSON to $BUILD/bench/unikernel.json.
# Environment: UKBENCH_N (default 30), UKBENCH_LINUX_N (default 10), UKBENCH_TESTBED=0 to skip
# the test bed, BUILD.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
N=${UKBENCH_N:-30}
LN=${UKBENCH_LINUX_N:-10}
out=$BUILD/bench
qemu=$(command -v qemu-system-x86_64 || true)
die() { echo "bench/unikernel: $*" >&2; exit 1; }
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "UKBENCH_N must be a positive number, not '$N'"
[ -x "$BUILD/kiln" ] && [ -x "$BUILD/kiln-static" ] && [ -r "$BUILD/unikernel/hello.elf" ] ||
    die "run 'make BUILD=$BUILD kiln kiln-static unikernel-guests' first"
mkdir -p "$out"
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -o "$out/ukbench" bench/unikernel/ukbench.c -lm ||
    die "building the harness failed"
QEMU_ARGS="-M microvm,x-option-roms=off,rtc=off,pit=off,pic=off -m 64M -nodefaults -no-user-config
 -nographic -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -no-reboot"
log=$(mktemp "${TMPDIR:-/tmp}/ukbench.XXXXXX")
trap 'rm -f "$log"' EXIT

echo "== this host ($(hostname), $(nproc) CPUs, its own /dev/kvm: PVM), N=$N"
{
    "$out/ukbench" -n "$N" --name "kiln unikernel hello (host KVM)" --stats "$out/uk-stats.json" \
        -- "$BUILD/kiln-static" unikernel --stats "$out/uk-stats.json" "$BUILD/unikernel/hello.elf"
    "$out/ukbench" -n "$N" --name "  same, dynamic kiln (host KVM)" --stats "$out/uk-stats.json" \
        -- "$BUILD/kiln" unikernel --stats "$out/uk-stats.json" "$BUILD/unikernel/hello.elf"
    "$out/ukbench" -n "$N" --name "  same, --full-teardown (host KVM)" \
        --stats "$out/uk-stats.json" -- "$BUILD/kiln-static" unikernel --full-teardown \
        --stats "$out/uk-stats.json" "$BUILD/unikernel/hello.elf"
    # QEMU's firmware cannot run on PVM: QEMU's PVH path is measured with TCG here (a peer of a
    # different kind: emulation), and with KVM in the test bed.
    # isa-debug-exit turns the guest's exit(0) into QEMU's exit code 1.
    [ -n "$qemu" ] && "$out/ukbench" -n "$N" --name "QEMU microvm PVH hello (host TCG)" \
        --marker "Hello from a kiln unikernel" --expect 1 -- "$qemu" $QEMU_ARGS -accel tcg \
        -kernel "$BUILD/unikernel/hello.elf"
} | tee "$log" | grep -v '^JSON '

if [ "${UKBENCH_TESTBED:-1}" != 0 ]; then
    echo
    echo "== test bed (QEMU TCG + emulated SVM, nested kvm-amd), N=$N, Linux N=$LN"
    fw=$(dirname "$(readlink -f "$qemu")")/../share/qemu/bios-microvm.bin
    [ -r "$fw" ] || fw=/usr/share/qemu/bios-microvm.bin
    tests/testbed/run.sh --timeout "${UKBENCH_TIMEOUT:-900}" \
        --payload "$out/ukbench:bench/ukbench" \
        --payload "$BUILD/kiln-static:bench/kiln" \
        --payload "$BUILD/kiln:bench/kiln-dynamic" \
        --payload "$BUILD/unikernel/hello.elf:bench/hello.elf" \
        --payload "$BUILD/guest/vmlinux:bench/guest/vmlinux" \
        --payload "$BUILD/guest/initramfs.cpio.gz:bench/guest/initramfs.cpio.gz" \
        --payload "$qemu:bench/qemu/qemu-system-x86_64" \
        --payload "$fw:bench/qemu/share/bios-microvm.bin" \
        -- sh -c "cd /payload/bench && ./kiln doctor --quiet;
            ./ukbench -n $N --name 'kiln unikernel hello (test bed)' --stats /tmp/s.json \
                -- ./kiln unikernel --stats /tmp/s.json hello.elf;
            ./ukbench -n $N --name '  same, dynamic kiln (test bed)' --stats /tmp/s.json \
                -- ./kiln-dynamic unikernel --stats /tmp/s.json hello.elf;
            ./ukbench -n $N --name '  same, --full-teardown (test bed)' --stats /tmp/s.json \
                -- ./kiln unikernel --full-teardown --stats /tmp/s.json hello.elf;
            ./ukbench -n $LN --name 'kiln run Linux to init (test bed)' --stats /tmp/r.json \
                --marker KILN-BENCH-42 --expect 3 --timeout 60 -- ./kiln run --stats /tmp/r.json \
                --kernel guest/vmlinux --initrd guest/initramfs.cpio.gz \
                --cmdline 'console=ttyS0 reboot=k panic=-1 io_delay=none quiet kiln.exit=reboot -- echo KILN-BENCH-\$((6*7))';
            ./ukbench -n $N --name 'QEMU microvm PVH hello (test bed KVM)' \
                --marker 'Hello from a kiln unikernel' --expect 1 -- ./qemu/qemu-system-x86_64 \
                -L ./qemu/share $(echo $QEMU_ARGS) -accel kvm -cpu host -kernel hello.elf" |
        tee -a "$log" | grep -E '^(kiln|  same|QEMU|ukbench|testbed)' 
fi

{
    printf '['
    sed -n 's/^JSON //p' "$log" | tr -d '\r' | paste -sd, -
    printf ']\n'
} >"$out/unikernel.json"
echo
echo "== ratios of medians (process start -> exit; Linux: start -> init's marker)"
python3 - "$out/unikernel.json" <<'PY' || true
import json, sys
rows = {r["name"]: r for r in json.load(open(sys.argv[1]))}
def med(name, key="exit_ms"):
    r = rows.get(name)
    return r[key]["median"] if r and r.get(key) else None
uk_h, q_h = med("kiln unikernel hello (host KVM)"), med("QEMU microvm PVH hello (host TCG)")
uk_t = med("kiln unikernel hello (test bed)")
lin_t = med("kiln run Linux to init (test bed)", "marker_ms")
q_t = med("QEMU microvm PVH hello (test bed KVM)")
if uk_h and q_h: print(f"host: QEMU PVH (TCG) / kiln unikernel = {q_h / uk_h:.1f}x")
if uk_t and lin_t: print(f"test bed: kiln run Linux to init / kiln unikernel = {lin_t / uk_t:.1f}x (target >= 20x)")
if uk_t and q_t: print(f"test bed: QEMU PVH (KVM) / kiln unikernel = {q_t / uk_t:.1f}x")
for place, tag in (("host", "host KVM"), ("test bed", "test bed")):
    base = med(f"kiln unikernel hello ({tag})")
    for what in ("dynamic kiln", "--full-teardown"):
        other = med(f"  same, {what} ({tag})")
        if base and other:
            print(f"{place}: {what} costs {other - base:+.2f} ms ({other / base:.2f}x)")
PY
echo "JSON saved to $out/unikernel.json"
