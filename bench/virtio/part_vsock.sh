#!/usr/bin/env bash
# part_vsock.sh: vsock stream throughput both ways and 64-byte round-trip latency through kiln's
# userspace vsock, beside a plain Unix-socket copy between two processes in the same place (the
# ceiling), as ratios (docs/benchmarks.md, docs/vsock.md). Runs on this host's KVM when
# `kiln doctor` says it runs Linux guests, else inside the test bed (as bench/boot/run.sh).
# Environment: VSOCKBENCH_BYTES (default 64 MiB), VSOCKBENCH_RR (default 2000),
# KILN_TESTBED=always|never|auto, BUILD. Saves the JSON to $BUILD/bench/vsock.json.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
BYTES=${VSOCKBENCH_BYTES:-67108864}
RR=${VSOCKBENCH_RR:-2000}
mode=${KILN_TESTBED:-auto}
out=$BUILD/bench
vt=$BUILD/guest-tests/vsock-test

die() {
    echo "bench/virtio/part_vsock: $*" >&2
    exit 1
}
case "$mode" in always | never | auto) ;; *) die "KILN_TESTBED must be always, never or auto, not '$mode'" ;; esac
[[ "$BYTES" =~ ^[1-9][0-9]*$ ]] || die "VSOCKBENCH_BYTES must be a positive number, not '$BYTES'"
[[ "$RR" =~ ^[1-9][0-9]*$ ]] || die "VSOCKBENCH_RR must be a positive number, not '$RR'"
[ -x "$BUILD/kiln" ] || die "$BUILD/kiln is missing: run 'make kiln'"
[ -r "$BUILD/guest/vmlinux" ] || die "the guest image is missing: run 'make guest'"
[ -x "$vt" ] || die "$vt is missing: run 'make guest-tests'"
mkdir -p "$out"
# The guest needs vsock-test in its initramfs: the default one plus /usr/bin/vsock-test.
initrd=$out/initrd-vsock.cpio.gz
rm -rf "$out/vsock-root" && mkdir -p "$out/vsock-root/usr/bin" && cp "$vt" "$out/vsock-root/usr/bin/"
(cd "$out/vsock-root" && find . -mindepth 1 | cpio --quiet -o -H newc --owner 0:0 | gzip -1) \
    >"$out/vsock-tools.cpio.gz" || die "packing vsock-test failed"
cat "$BUILD/guest/initramfs.cpio.gz" "$out/vsock-tools.cpio.gz" >"$initrd"
log=$(mktemp "${TMPDIR:-/tmp}/vsockbench.XXXXXX")
trap 'rm -f "$log"' EXIT

if [ "$mode" = auto ]; then
    if "$BUILD/kiln" doctor --quiet; then mode=never; else mode=always; fi
fi
if [ "$mode" = never ]; then
    place="host $(hostname), $(nproc) CPUs, its own /dev/kvm"
    bench/virtio/vsock_run.sh "$BUILD/kiln" "$BUILD/guest/vmlinux" "$initrd" "$vt" "$BYTES" "$RR" \
        "$place" | tee "$log" | grep -v '^JSON '
    status=${PIPESTATUS[0]}
else
    place="test bed on host $(hostname): QEMU TCG + emulated SVM, nested kvm-amd"
    tests/testbed/run.sh --timeout "${VSOCKBENCH_TIMEOUT:-900}" \
        --payload "$BUILD/kiln:bench/kiln" \
        --payload "$BUILD/guest/vmlinux:bench/vmlinux" \
        --payload "$initrd:bench/initrd-tools.cpio.gz" \
        --payload "$vt:bench/vsock-test" \
        --payload "bench/virtio/vsock_run.sh:bench/vsock_run.sh" \
        -- sh -c "cd /payload/bench && sh ./vsock_run.sh ./kiln ./vmlinux ./initrd-tools.cpio.gz \
            ./vsock-test $BYTES $RR '$place'" | tee "$log" | grep --line-buffered -v '^JSON '
    status=${PIPESTATUS[0]}
fi
sed -n 's/^JSON \({.*}\)[[:space:]]*$/\1/p' "$log" | tail -n 1 >"$out/vsock.json"
[ -s "$out/vsock.json" ] || die "no JSON line came back (status $status)"
echo "== JSON (saved to $out/vsock.json)"
cat "$out/vsock.json"
exit "$status"
