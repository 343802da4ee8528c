#!/usr/bin/env bash
# Runs every virtio benchmark part (bench/virtio/part_*.sh: vsock, block, ...) and prints each
# part's JSON and table. Each part measures kiln beside its peer (QEMU microvm, or a plain Unix
# socket copy for vsock) in the same place, in the test bed when this host's KVM cannot run Linux
# guests. Method and figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILD=${BUILD:-build}
status=0
for part in bench/virtio/part_*.sh; do
    [ -f "$part" ] || continue
    echo "== $part"
    "$part" "$@" || status=1
done
exit $status
