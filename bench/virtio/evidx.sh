#!/usr/bin/env bash
# evidx.sh: does VIRTIO_F_RING_EVENT_IDX pay? Block (blk-bench) and vsock (throughput both ways,
# 64-byte round trips) with EVENT_IDX offered and withheld (KILN_VIRTIO_NO_EVENT_IDX=1), in one
# run, alternating, with the guest's virtio interrupts and kiln's notification counters
# (docs/virtio.md, "EVENT_IDX"). Runs on this host's KVM when `kiln doctor` says it can, else in
# the test bed. Prints a table of medians and saves the JSON (every sample) to
# $BUILD/bench/evidx.json.
# Environment: EVIDX_ROUNDS (5), EVIDX_BLK_MIB (32), EVIDX_BLK_SECONDS (2), EVIDX_VSOCK_BYTES
# (32 MiB), EVIDX_RR (1000), EVIDX_WORK (blk vtput vrr), EVIDX_BASE (another kiln binary to run
# beside, as variant "base"), BUILD, KILN_TESTBED=always|never|auto.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
ROUNDS=${EVIDX_ROUNDS:-5}
MIB=${EVIDX_BLK_MIB:-32}
SECS=${EVIDX_BLK_SECONDS:-2}
BYTES=${EVIDX_VSOCK_BYTES:-33554432}
RR=${EVIDX_RR:-1000}
mode=${KILN_TESTBED:-auto}
out=$BUILD/bench

die() {
    echo "bench/evidx: $*" >&2
    exit 1
}
for v in "$ROUNDS" "$MIB" "$SECS" "$BYTES" "$RR"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "EVIDX_* values must be positive numbers, not '$v'"
done
[ -x "$BUILD/kiln" ] || die "$BUILD/kiln is missing: run 'make kiln'"
[ -r "$BUILD/guest/vmlinux" ] || die "the guest image is missing: run 'make guest'"
command -v python3 >/dev/null || die "python3 is needed for the report"
make -s BUILD="$BUILD" "$BUILD/guest-tests/blk-bench" "$BUILD/guest-tests/vsock-test" ||
    die "building the guest test programs failed"
mkdir -p "$out"

work=$(mktemp -d "${TMPDIR:-/tmp}/evidx.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/p" "$work/root/usr/bin"
cp "$BUILD/kiln" "$BUILD/guest/vmlinux" bench/virtio/evidx_runs.sh "$BUILD/guest-tests/vsock-test" \
    "$work/p/"
# EVIDX_BASE=PATH: another kiln binary, run as variant "base" (EVENT_IDX offered) beside on/off.
variants="on off"
if [ -n "${EVIDX_BASE:-}" ]; then
    cp "$EVIDX_BASE" "$work/p/kiln.base" || die "EVIDX_BASE '$EVIDX_BASE' cannot be copied"
    variants="on off base"
fi
cp "$BUILD/guest-tests/blk-bench" "$BUILD/guest-tests/vsock-test" "$work/root/usr/bin/"
(cd "$work/root" && find . -mindepth 1 | cpio --quiet -o -H newc --owner 0:0 | gzip -1) \
    >"$work/tools.cpio.gz"
cat "$BUILD/guest/initramfs.cpio.gz" "$work/tools.cpio.gz" >"$work/p/initrd"

if [ "$mode" = auto ]; then
    if "$BUILD/kiln" doctor --quiet; then mode=never; else mode=always; fi
fi
log=$work/log
args="$ROUNDS $MIB $SECS $BYTES $RR"
if [ "$mode" = never ]; then
    place="host $(hostname), $(nproc) CPUs, its own /dev/kvm"
    # shellcheck disable=SC2086 # args is five numbers
    EVIDX_WORK=${EVIDX_WORK:-} EVIDX_VARIANTS=$variants sh "$work/p/evidx_runs.sh" "$work/p" $args |
        tee "$log"
else
    place="test bed on host $(hostname): QEMU TCG + emulated SVM, nested kvm-amd"
    tests/testbed/run.sh --timeout "${EVIDX_TIMEOUT:-3000}" --payload "$work/p:evidx" \
        -- sh -c "cd /payload/evidx && EVIDX_WORK='${EVIDX_WORK:-blk vtput vrr}' \
            EVIDX_VARIANTS='$variants' EVIDX_VM_TIMEOUT=${EVIDX_VM_TIMEOUT:-300} \
            sh ./evidx_runs.sh /payload/evidx $args" | tee "$log"
fi

python3 - "$log" "$out/evidx.json" "$place" "$args" <<'EOF'
import json, re, statistics, sys
log, dest, place, args = sys.argv[1:]
samples, stats, failed = {}, {}, 0
for line in open(log, errors="replace"):
    line = line.strip()
    if line.startswith("FAILED"):
        failed += 1
    m = re.match(r"RESULT evidx=(\w+) round=\d+ work=(\w+) (.*)", line)
    if m:
        d = samples.setdefault(m.group(2), {}).setdefault(m.group(1), {})
        for kv in m.group(3).split():
            k, v = kv.split("=", 1)
            d.setdefault(k, []).append(float(v))
        continue
    m = re.match(r"STATS evidx=(\w+) round=\d+ work=(\w+) .*virtio-(\w+): stats .*?kicks/wakeups"
                 r"((?: q\d+=\d+/\d+)*) irqs=(\d+) suppressed=(\d+)", line)
    if m:
        d = stats.setdefault(m.group(2), {}).setdefault(m.group(1), {})
        dev = m.group(3)
        kicks = sum(int(k) for k, _ in re.findall(r"q\d+=(\d+)/(\d+)", m.group(4)))
        wakes = sum(int(w) for _, w in re.findall(r"q\d+=(\d+)/(\d+)", m.group(4)))
        for k, v in ((f"{dev}_kicks", kicks), (f"{dev}_wakeups", wakes),
                     (f"{dev}_irqs", int(m.group(5))), (f"{dev}_irqs_suppressed", int(m.group(6)))):
            d.setdefault(k, []).append(v)
med = lambda xs: statistics.median(xs) if xs else None
report = {"benchmark": "virtio EVENT_IDX on/off", "place": place,
          "args": dict(zip(["rounds", "blk_mib", "blk_seconds", "vsock_bytes", "rr_count"],
                           map(int, args.split()))),
          "failed_runs": failed, "samples": samples, "transport_counters": stats, "median": {}}
print(f"\nEVENT_IDX offered (on) vs withheld (off), {place}; medians; spread = (max-min)/median")
print(f"{'work':6} {'figure':28} {'on':>10} {'off':>10} {'on/off':>7} {'spread on/off':>14}"
      f" {'base':>10} {'on/base':>7}")
for work in sorted(set(samples) | set(stats)):
    merged = {}
    for src in (samples.get(work, {}), stats.get(work, {})):
        for ev, d in src.items():
            for k, v in d.items():
                merged.setdefault(k, {})[ev] = v
    report["median"][work] = {k: {ev: med(v) for ev, v in d.items()} for k, d in merged.items()}
    for k in sorted(merged):
        on, off = merged[k].get("on", []), merged[k].get("off", [])
        mo, mf = med(on), med(off)
        r = f"{mo / mf:.2f}" if mo and mf else "-"
        sp = lambda xs: f"{(max(xs) - min(xs)) / med(xs):.2f}" if xs and med(xs) else "-"
        f = lambda x: "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"
        mb = med(merged[k].get("base", []))
        rb = f"{mo / mb:.2f}" if mo and mb else "-"
        print(f"{work:6} {k:28} {f(mo):>10} {f(mf):>10} {r:>7} {sp(on) + '/' + sp(off):>14}"
              f" {f(mb):>10} {rb:>7}")
json.dump(report, open(dest, "w"), indent=1)
print(f"\n== JSON saved to {dest}")
sys.exit(1 if failed else 0)
EOF
