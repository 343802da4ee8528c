#!/usr/bin/env bash
# part_blk.sh: the block benchmark (docs/block.md): sequential write/read MiB/s and 4 KiB random
# read IOPS (queue depth 1 and 8) inside the guest, kiln's virtio-blk beside QEMU microvm's on the
# same guest kernel, initramfs and host image file, in one run. Runs the guests on this host's KVM
# when `kiln doctor` says it can, else in the test bed. Prints a table and the JSON (saved to
# $BUILD/bench/blk.json) with every sample, the medians and the kiln/QEMU ratios of medians.
# Environment: BLKBENCH_ROUNDS (default 3), BLKBENCH_MIB (64), BLKBENCH_SECONDS (3), BUILD,
# KILN_TESTBED=always|never|auto.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
ROUNDS=${BLKBENCH_ROUNDS:-3}
MIB=${BLKBENCH_MIB:-64}
SECS=${BLKBENCH_SECONDS:-3}
mode=${KILN_TESTBED:-auto}
out=$BUILD/bench
qemu=$(command -v qemu-system-x86_64 || true)

die() {
    echo "bench/blk: $*" >&2
    exit 1
}
for v in "$ROUNDS" "$MIB" "$SECS"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "BLKBENCH_ROUNDS, _MIB and _SECONDS must be positive numbers"
done
[ -x "$BUILD/kiln" ] || die "$BUILD/kiln is missing: run 'make kiln'"
[ -r "$BUILD/guest/vmlinux" ] || die "the guest image is missing: run 'make guest'"
[ -n "$qemu" ] || die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
command -v python3 >/dev/null || die "python3 is needed for the report"
make -s BUILD="$BUILD" "$BUILD/guest-tests/blk-bench" || die "building blk-bench failed"
mkdir -p "$out"

# The payload: kiln, the guest kernel, the default initramfs plus blk-bench, QEMU and its firmware.
work=$(mktemp -d "${TMPDIR:-/tmp}/blkbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/p/qemu/share" "$work/root/usr/bin"
cp "$BUILD/kiln" "$BUILD/guest/vmlinux" bench/virtio/blk_runs.sh "$work/p/"
cp "$BUILD/guest-tests/blk-bench" "$work/root/usr/bin/"
(cd "$work/root" && find . -mindepth 1 | cpio --quiet -o -H newc --owner 0:0 | gzip -1) \
    >"$work/tools.cpio.gz"
cat "$BUILD/guest/initramfs.cpio.gz" "$work/tools.cpio.gz" >"$work/p/initrd"
cp "$qemu" "$work/p/qemu/qemu-system-x86_64"
fw=$(dirname "$(readlink -f "$qemu")")/../share/qemu/bios-microvm.bin
[ -r "$fw" ] || fw=/usr/share/qemu/bios-microvm.bin
[ -r "$fw" ] || die "QEMU's microvm firmware bios-microvm.bin is missing"
# QEMU 7.2's microvm asks for qboot.rom; Debian links bios-microvm.bin to it.
cp "$fw" "$work/p/qemu/share/bios-microvm.bin"
cp "$fw" "$work/p/qemu/share/qboot.rom"

"$BUILD/kiln" doctor --quiet
fit=$?
if [ "$mode" = auto ]; then
    if [ $fit = 0 ]; then mode=never; else mode=always; fi
fi
log=$work/log
if [ "$mode" = never ]; then
    place="host $(hostname), $(nproc) CPUs, its own /dev/kvm"
    sh "$work/p/blk_runs.sh" "$work/p" "$ROUNDS" "$MIB" "$SECS" | tee "$log"
else
    place="test bed on host $(hostname): QEMU TCG + emulated SVM, nested kvm-amd"
    echo "bench/blk: this host's KVM cannot run Linux guests; running in the test bed"
    tests/testbed/run.sh --timeout $((300 + ROUNDS * 2 * (60 + 4 * SECS))) \
        --payload "$work/p:blk" -- sh -c "cd /payload/blk && sh ./blk_runs.sh /payload/blk \
            $ROUNDS $MIB $SECS" | tee "$log"
fi

python3 - "$log" "$out/blk.json" "$place" "$MIB" "$SECS" <<'EOF'
import json, re, statistics, sys
log, dest, place, mib, secs = sys.argv[1:]
keys = ["seq_write_mibs", "seq_read_mibs", "rand_qd1_iops", "rand_qd8_iops"]
samples = {"kiln": {k: [] for k in keys}, "qemu": {k: [] for k in keys}}
failed = 0
for line in open(log, errors="replace"):
    m = re.search(r"RESULT vmm=(\w+) round=\d+ (.*)", line)
    if line.startswith("FAILED"):
        failed += 1
    if not m:
        continue
    kv = dict(p.split("=", 1) for p in m.group(2).split())
    for k in keys:
        samples[m.group(1)][k].append(float(kv[k]))
med = {v: {k: (statistics.median(s) if s else None) for k, s in d.items()}
       for v, d in samples.items()}
ratio = {k: (med["kiln"][k] / med["qemu"][k] if med["kiln"][k] and med["qemu"][k] else None)
         for k in keys}
report = {"benchmark": "virtio-blk", "place": place, "mib": int(mib), "random_seconds": int(secs),
          "guest": "1 vCPU, 256 MiB, O_DIRECT in the guest; host image in the page cache",
          "peer": "QEMU microvm virtio-blk-device, cache=writeback, aio=threads",
          "target": "kiln >= QEMU (ratio >= 1.0)", "failed_runs": failed,
          "samples": samples, "median": med, "ratio_kiln_over_qemu": ratio}
json.dump(report, open(dest, "w"), indent=1)
names = {"seq_write_mibs": "sequential write, MiB/s", "seq_read_mibs": "sequential read, MiB/s",
         "rand_qd1_iops": "4 KiB random read QD1, IOPS", "rand_qd8_iops": "4 KiB random read QD8, IOPS"}
print(f"\nvirtio-blk, {place}; medians of {len(samples['kiln'][keys[0]])} kiln and "
      f"{len(samples['qemu'][keys[0]])} QEMU runs")
print(f"{'figure':32} {'kiln':>10} {'QEMU':>10} {'kiln/QEMU':>10}   target")
fmt = lambda x: "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"
for k in keys:
    r = "-" if ratio[k] is None else f"{ratio[k]:.2f}"
    print(f"{names[k]:32} {fmt(med['kiln'][k]):>10} {fmt(med['qemu'][k]):>10} {r:>10}   >= 1.00")
print(f"\n== JSON (saved to {dest})")
print(json.dumps(report))
sys.exit(1 if failed or not samples["kiln"][keys[0]] else 0)
EOF
