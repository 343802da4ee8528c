#!/usr/bin/env bash
# make demo: boot the default image, run a command in it, and say how long boot took. Goes through
# the test bed when this host's KVM cannot run Linux guests (kiln doctor decides).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
mode=${KILN_TESTBED:-auto}
cmd='echo; echo "hello from a kiln microVM: $(uname -srm), $(grep -c ^processor /proc/cpuinfo) vCPUs, $(sed -n "s/MemTotal: *//p" /proc/meminfo) RAM"; echo'
demo_inner='k=$1; shift; "$k" run --cpus 2 --mem 256M --timeout 120 --stats /tmp/demo-stats.json --append "-- $*"; code=$?
    echo "demo: kiln exited with $code ($([ $code = 0 ] && echo poweroff || echo see docs/exit-codes.md))"
    sed -n "s/.*\"setup_us\":\([0-9.]*\).*\"boot_timer_us\":\([0-9.]*\).*\"runtime_us\":\([0-9.]*\).*/demo: VMM set-up \1 us; userspace reached after \2 us; whole run \3 us/p" /tmp/demo-stats.json
    exit $code'

if [ "$mode" = auto ]; then
    if "$BUILD/kiln" doctor --quiet; then mode=never; else mode=always; fi
fi
if [ "$mode" = never ]; then
    exec sh -c "$demo_inner" demo "$BUILD/kiln" "$cmd"
fi
echo "demo: this host's KVM cannot run Linux guests (see: $BUILD/kiln doctor)."
echo "demo: running the demo inside the test bed (QEMU TCG + emulated SVM + nested KVM)."
echo "demo: timings there are ~20x slower than on hardware virtualization."
exec tests/testbed/run.sh --timeout 600 \
    --payload "$BUILD/kiln:kiln/build/kiln" --payload "$BUILD/guest:kiln/build/guest" \
    -- sh -c "$demo_inner" demo /payload/kiln/build/kiln "$cmd"
