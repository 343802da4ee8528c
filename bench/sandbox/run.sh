#!/usr/bin/env bash
# run.sh: the sandbox benchmark (docs/sandbox.md): cold start, exec round trip and file transfer,
# each beside its baseline measured in the same place in the same run (a bare `kiln run` boot, a
# bare vsock ping-pong, bare vsock streams). On this host's KVM when `kiln doctor` says it runs
# Linux guests, else inside the test bed. Prints the table and the JSON; saves the JSON to
# $BUILD/bench/sandbox.json.
# Environment: SANDBOXBENCH_N (cold starts, default 30), SANDBOXBENCH_M (round trips, default
# 200), SANDBOXBENCH_SIZE_MIB (transfer size, default 64), KILN_TESTBED=always|never|auto, BUILD.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
N=${SANDBOXBENCH_N:-30}
M=${SANDBOXBENCH_M:-200}
SIZE=${SANDBOXBENCH_SIZE_MIB:-64}
mode=${KILN_TESTBED:-auto}
out=$BUILD/bench

die() {
    echo "bench/sandbox: $*" >&2
    exit 1
}
[ -x "$BUILD/kiln" ] || die "$BUILD/kiln is missing: run 'make kiln'"
[ -r "$BUILD/guest/initramfs.cpio.gz" ] || die "the guest image is missing: run 'make guest'"
for t in vsock-test nop; do
    [ -x "$BUILD/guest-tests/$t" ] || die "$BUILD/guest-tests/$t is missing: run 'make guest-tests'"
done
make -s BUILD="$BUILD" "$BUILD/bench/sandboxbench" || die "building the harness failed"
mkdir -p "$out/sandbox-assets/root/usr/bin"
# The default initramfs plus vsock-test (the guest end of the bare vsock baselines) and nop.
cp "$BUILD/guest-tests/vsock-test" "$BUILD/guest-tests/nop" "$out/sandbox-assets/root/usr/bin/"
(cd "$out/sandbox-assets/root" && find . -mindepth 1 | cpio --quiet -o -H newc --owner 0:0 | gzip -1) \
    >"$out/sandbox-assets/tools.cpio.gz"
cat "$BUILD/guest/initramfs.cpio.gz" "$out/sandbox-assets/tools.cpio.gz" \
    >"$out/sandbox-assets/initrd-tools.cpio.gz"

if [ "$mode" = auto ]; then
    if "$BUILD/kiln" doctor --quiet; then mode=never; else mode=always; fi
fi
args="-n $N -m $M --size-mib $SIZE"
if [ "$mode" = never ]; then
    "$out/sandboxbench" --kiln "$BUILD/kiln" --tools-initrd "$out/sandbox-assets/initrd-tools.cpio.gz" \
        --place "host $(hostname), $(nproc) CPUs, its own /dev/kvm" $args | tee "$out/sandbox.log"
else
    echo "bench/sandbox: this host's KVM cannot run Linux guests; running inside the test bed"
    tests/testbed/run.sh --timeout $((600 + 20 * N)) \
        --payload "$BUILD/kiln:kiln/build/kiln" --payload "$BUILD/guest:kiln/build/guest" \
        --payload "$out/sandboxbench:kiln/build/sandboxbench" \
        --payload "$out/sandbox-assets/initrd-tools.cpio.gz:kiln/build/initrd-tools.cpio.gz" \
        -- sh -c "cd /payload/kiln && build/kiln doctor --quiet; build/sandboxbench \
            --kiln build/kiln --tools-initrd build/initrd-tools.cpio.gz $args \
            --place 'test bed (QEMU TCG + nested KVM) on $(hostname), $(nproc) host CPUs'" \
        | tee "$out/sandbox.log"
fi
sed -n 's/^JSON //p' "$out/sandbox.log" | tail -n 1 >"$out/sandbox.json"
[ -s "$out/sandbox.json" ] || die "no result (see $out/sandbox.log)"
echo "bench/sandbox: JSON saved to $out/sandbox.json"
