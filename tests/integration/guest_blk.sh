#!/bin/sh
# Guest block-device tests: the guest's virtio_blk driver on kiln's disks. Data written by the
# guest reaches the image byte for byte, a filesystem survives a second boot, read-only disks
# refuse writes, several disks appear in order with their sizes, and bw= slows reads. POSIX sh:
# runs under busybox in the test bed. See docs/block.md.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=guest_blk
. tests/integration/lib.sh

T="--timeout 180"
sha() { sha256sum "$1" | cut -d' ' -f1; }
mkimg() { dd if=/dev/zero of="$1" bs=1048576 count=0 seek="$2" 2>/dev/null; }

# 64 MiB of pseudo-random data, made here: the guest copies it with dd from a read-only disk
# (vdb) to a blank one (vda) through its page cache, syncs (writeback and flush), drops its cache
# and copies vda with O_DIRECT reads to a third disk (vdc). The host compares both copies with
# the source byte for byte, so writes and reads are checked without the guest hashing anything
# (hashing 64 MiB twice in the nested guest cost most of this test's time in the test bed).
# (Guest commands cannot contain double quotes: docs/guest-image.md.)
head -c 67108864 /dev/urandom >"$OUT/src.img"
mkimg "$OUT/data.img" 64
mkimg "$OUT/back.img" 64
RW='dd if=/dev/vdb of=/dev/vda bs=1048576 2>/dev/null && sync && echo 3 >/proc/sys/vm/drop_caches && dd if=/dev/vda of=/dev/vdc bs=1048576 iflag=direct oflag=direct 2>/dev/null && sync && echo copied'
if check data_64m 0 'copied' "$KILN" run $T --mem 256M --disk "$OUT/data.img" \
    --disk "$OUT/src.img,ro" --disk "$OUT/back.img" --append "-- \"$RW\""; then
    if cmp -s "$OUT/src.img" "$OUT/data.img"; then pass data_64m_written
    else fail data_64m_written "the guest's writes differ from the source: $(cmp "$OUT/src.img" "$OUT/data.img" 2>&1 | head -n1)"; fi
    if cmp -s "$OUT/src.img" "$OUT/back.img"; then pass data_64m_read_back
    else fail data_64m_read_back "what the guest read back differs: $(cmp "$OUT/src.img" "$OUT/back.img" 2>&1 | head -n1)"; fi
fi
rm -f "$OUT/src.img" "$OUT/data.img" "$OUT/back.img"

# A filesystem (busybox mke2fs; the kernel's ext4 driver mounts ext2) with files written in one
# boot and read in the next; the second boot also writes, and the host sees the image change.
mkimg "$OUT/fs.img" 32
MKFS='mke2fs -q /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo kiln-persist-1 >/mnt/hello && dd if=/dev/urandom of=/mnt/blob bs=65536 count=16 2>/dev/null && sha256sum /mnt/blob >/mnt/blob.sum && umount /mnt && echo mkfs-done'
CHECK='mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && cat /mnt/hello && cd /mnt && sha256sum -c blob.sum && cd / && umount /mnt && echo check-done'
check fs_create 0 'mkfs-done' "$KILN" run $T --disk "$OUT/fs.img" --append "-- \"$MKFS\""
check fs_after_reboot 0 'kiln-persist-1' "$KILN" run $T --disk "$OUT/fs.img" \
    --append "-- \"$CHECK\""
expect fs_after_reboot '/mnt/blob: OK|blob: OK' >/dev/null && expect fs_after_reboot 'check-done' \
    >/dev/null && pass fs_blob_intact

# Read-only: the guest sees it (ro=1), dd fails, and the image is unchanged.
before=$(sha "$OUT/fs.img")
RO='echo ro=$(cat /sys/block/vda/ro); dd if=/dev/zero of=/dev/vda bs=4096 count=1 oflag=direct 2>/dev/null; echo dd_rc=$?; mkdir -p /mnt; mount -t ext4 -o ro /dev/vda /mnt && cat /mnt/hello'
check ro_disk 0 'ro=1' "$KILN" run $T --disk "$OUT/fs.img,ro" --append "-- \"$RO\""
expect ro_disk 'dd_rc=[1-9]' >/dev/null && expect ro_disk 'kiln-persist-1' >/dev/null &&
    pass ro_write_refused
if [ "$(sha "$OUT/fs.img")" = "$before" ]; then pass ro_image_unchanged
else fail ro_image_unchanged "the read-only image changed"; fi

# Two disks: vda and vdb in command-line order with their sizes (512-byte sectors), serials,
# discard offered on a writable image.
mkimg "$OUT/a.img" 8
mkimg "$OUT/b.img" 16
TWO='echo vda=$(cat /sys/block/vda/size) vdb=$(cat /sys/block/vdb/size) serial=$(cat /sys/block/vda/serial) discard=$(cat /sys/block/vdb/queue/discard_max_bytes) end'
check two_disks 0 'vda=16384 vdb=32768 serial=kiln[0-9a-f]{16} discard=[1-9][0-9]* end' \
    "$KILN" run $T --disk "$OUT/a.img" --disk "$OUT/b.img" --append "-- \"$TWO\""

# Discard reaches the image: blocks written by the guest are given back to the host.
DISCARD='dd if=/dev/urandom of=/dev/vda bs=1048576 count=8 oflag=direct 2>/dev/null; sync; blkdiscard /dev/vda && echo discard-done'
if run discard 0 "$KILN" run $T --disk "$OUT/a.img" --append "-- \"$DISCARD\"" &&
    expect discard 'discard-done'; then
    used=$(du -k "$OUT/a.img" | cut -f1)
    if [ "$used" -lt 1024 ]; then pass discard_frees_space
    else fail discard_frees_space "the image still uses $used KiB after blkdiscard"; fi
fi

# bw=1M: reading 4 MiB past the page cache takes about 3 s (the bucket starts with 1 MiB). Only
# a loose lower bound: the test bed is slow, never fast.
# /proc/uptime reads S.CC: seconds and centiseconds are combined as numbers ("1CC" - "1CC"), so a
# guest that boots in under a second ("0.85") or a "0.08" fraction is never read as octal.
THROTTLE='read a _ </proc/uptime; dd if=/dev/vda of=/dev/null bs=1048576 count=4 iflag=direct 2>/dev/null; read b _ </proc/uptime; echo elapsed_cs=$(((${b%.*} - ${a%.*}) * 100 + 1${b#*.} - 1${a#*.}))'
if run throttled 0 "$KILN" run $T --disk "$OUT/b.img,bw=1M" --append "-- \"$THROTTLE\"" &&
    expect throttled 'elapsed_cs=[0-9]+'; then
    cs=$(sed -n 's/.*elapsed_cs=\([0-9]*\).*/\1/p' "$OUT/throttled.log" | head -n 1)
    echo "info: 4 MiB at bw=1M read in ${cs}0 ms"
    if [ "$cs" -ge 200 ]; then pass throttled_read_slow
    else fail throttled_read_slow "4 MiB at 1 MiB/s took only ${cs}0 ms"; fi
fi

# User mistakes are refused before the guest starts, naming the bad value.
check missing_image 2 'nonexistent\.img' "$KILN" run $T --disk "$OUT/nonexistent.img" \
    --append "-- true"

summary
