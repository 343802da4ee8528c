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
# kiln-fetch, the file service's client (docs/file-service.md): static, musl when available.
cc=gcc
command -v musl-gcc >/dev/null && cc=musl-gcc
"$cc" -std=gnu11 -Os -static -s -Wall -Wextra -Werror -I"$here/../include" \
    -o "$outdir/kiln-fetch" "$here/fetch/kiln-fetch.c"
# kiln-agent, the image's PID 1 (guest/agent, docs/agent-protocol.md): static, musl when available.
"$cc" -std=gnu11 -O2 -static -s -Wall -Wextra -Werror -D_GNU_SOURCE -I"$here/../include" \
    -I"$here/../src" -o "$outdir/kiln-agent" "$here"/agent/*.c "$here/../src/sandbox/frame.c"
"$here/initramfs/build.sh" "$outdir/initramfs.cpio.gz" "$outdir/kiln-fetch:/usr/bin/kiln-fetch" \
    "$outdir/kiln-agent:/sbin/kiln-agent" "$@"
