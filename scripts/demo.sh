#!/usr/bin/env bash
# make demo: boot a sandbox, run a command in it through kiln exec, and say how long start-up took. Goes through
# the test bed when this host's KVM cannot run Linux guests (kiln doctor decides).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
mode=${KILN_TESTBED:-auto}
cmd='echo; echo "hello from a kiln microVM: $(uname -srm), $(grep -c ^processor /proc/cpuinfo) vCPUs, $(sed -n "s/MemTotal: *//p" /proc/meminfo) RAM"; echo'
# kiln exec boots a sandbox (the default image with kiln-agent), runs the command through the agent
# over vsock, streams its output and exits with its code; -v says where the start-up time went.
demo_inner='k=$1; shift; "$k" exec -v --cpus 2 --mem 256M -- sh -c "$*"; code=$?
    echo "demo: kiln exec exited with $code (the command'"'"'s own exit code)"
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
