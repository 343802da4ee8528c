#!/usr/bin/env bash
# Packs the Debian test-bed kernel's virtio modules (virtio_ring, virtio, virtio_mmio, virtio-rng)
# as a cpio.gz to append to the default initramfs, so guest_virtio.sh can show that kernel driving
# kiln's devices found through ACPI. Usage: distro_modules.sh OUTPUT.cpio.gz. Host side (needs
# dpkg-deb and cpio); exits non-zero, writing nothing, when the kernel package is not cached.
set -euo pipefail
out=$1
cache=${KILN_CACHE:-$HOME/.cache/kiln}
dir=$(tests/testbed/build.sh 2>/dev/null)
pkg=$(sed -n 's/^kernel_package=//p' "$dir/info")
ver=$(sed -n 's/^kernel_version=//p' "$dir/info")
deb="$cache/debs/${pkg}_${ver//:/%3a}_amd64.deb"
[ -s "$deb" ] || { echo "distro_modules: $deb not cached" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards \
    './lib/modules/*/kernel/drivers/virtio/virtio.ko' \
    './lib/modules/*/kernel/drivers/virtio/virtio_ring.ko' \
    './lib/modules/*/kernel/drivers/virtio/virtio_mmio.ko' \
    './lib/modules/*/kernel/drivers/char/hw_random/virtio-rng.ko'
mkdir -p "$tmp/root/lib/modules/kiln-virtio"
find "$tmp/lib/modules" -name '*.ko' -exec cp {} "$tmp/root/lib/modules/kiln-virtio/" \;
(cd "$tmp/root" && find . -mindepth 1 | cpio --quiet -o -H newc --owner 0:0 | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
