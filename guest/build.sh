#!/bin/bash
# build.sh: builds kiln's default guest image into OUTDIR: bzImage and vmlinux (cached kernel,
# guest/kernel/build.sh) and initramfs.cpio.gz (guest/initramfs/build.sh). `make guest` calls it
# with OUTDIR=build/guest. Extra SRC:DEST arguments go into the initramfs.
set -euo pipefail
[ $# -ge 1 ] && [ -n "$1" ] || {
    echo "usage: $0 OUTDIR [SRC:DEST ...]" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
outdir=$1
shift
mkdir -p "$outdir"
"$here/kernel/build.sh" "$outdir"
"$here/initramfs/build.sh" "$outdir/initramfs.cpio.gz" "$@"
