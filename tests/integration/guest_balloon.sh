#!/bin/sh
# Guest balloon tests: the Linux virtio_balloon driver against kiln's device. An inflated balloon
# takes memory from the guest; free page reporting gives memory the guest freed back to the host,
# which shows as the VMM's resident guest RAM (rss_shmem_kib of --stats) falling. POSIX sh: runs
# under busybox in the test bed. See docs/balloon.md.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=guest_balloon
. tests/integration/lib.sh

T="--timeout 120 --mem 256M"

# Numbers printed by the guest as "key=value" (first match in a log).
val() { sed -n "s/.*$2=\([0-9][0-9]*\).*/\1/p" "$OUT/$1.log" | head -n 1; }

# The guest waits until its MemFree has settled (the driver inflates from a workqueue after
# probe), then prints it with the features the driver negotiated.
MEMINFO="i=0; prev=0; while [ \$i -lt 20 ]; do f=\$(sed -n 's/^MemFree: *\([0-9]*\) kB/\1/p' /proc/meminfo); d=\$((prev - f)); [ \$d -lt 0 ] && d=\$((-d)); [ \$i -gt 0 ] && [ \$d -lt 1024 ] && break; prev=\$f; i=\$((i + 1)); sleep 0.5; done; echo memfree=\$f features=\$(cat /sys/bus/virtio/drivers/virtio_balloon/*/features)"

# (1) --balloon 64M takes about 64 MiB from the guest. kiln offers DEFLATE_ON_OOM with --balloon,
# so Linux leaves MemTotal alone and the pages leave MemFree. The reference run has the device
# with an empty balloon, so both boots are otherwise identical.
check balloon_empty 0 'memfree=[0-9]+ ' "$KILN" run $T --balloon 0 --append "-- \"$MEMINFO\""
check balloon_64m 0 'memfree=[0-9]+ ' "$KILN" run -v -v $T --balloon 64M --append "-- \"$MEMINFO\""
free0=$(val balloon_empty memfree)
free64=$(val balloon_64m memfree)
if [ -n "$free0" ] && [ -n "$free64" ]; then
    taken=$((free0 - free64))
    echo "balloon: MemFree $free0 kB with an empty balloon, $free64 kB with 64 MiB: $taken kB taken"
    if [ "$taken" -ge 57344 ] && [ "$taken" -le 73728 ]; then pass balloon_memfree
    else fail balloon_memfree "MemFree fell by $taken kB, expected about 65536"; fi
fi
# Features, bit 0 first: STATS_VQ (1), DEFLATE_ON_OOM (2) and REPORTING (5) negotiated.
expect balloon_64m 'features=0110010' >/dev/null && pass balloon_features
# The device saw the driver's `actual` reach the target.
expect balloon_64m "virtio-balloon: the guest's balloon holds 64 MiB, the target" >/dev/null &&
    pass balloon_actual
# The stats queue: the driver's first sample arrived and parsed (MemTotal of a 256 MiB guest).
expect balloon_64m 'virtio-balloon: guest memory: 2[0-5][0-9] MiB total, [0-9]+ MiB free' \
    >/dev/null && pass balloon_stats

# (2) The guest touches ~100 MiB (a tmpfs file), frees it and idles: with free page reporting
# (the balloon device present, even empty) the freed blocks go back to the host; without the
# device they stay resident. Linux reports free blocks of pageblock order after ~2 s.
TOUCH='dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>/dev/null; rm /tmp/fill; sleep 8; echo touched-and-freed'
check rss_no_balloon 0 'touched-and-freed' "$KILN" run $T --stats "$OUT/rss0.json" \
    --append "-- $TOUCH"
check rss_reporting 0 'touched-and-freed' "$KILN" run $T --balloon 0 --stats "$OUT/rss1.json" \
    --append "-- $TOUCH"
rss0=$(sed -n 's/.*"rss_shmem_kib":\([0-9]*\).*/\1/p' "$OUT/rss0.json" 2>/dev/null)
rss1=$(sed -n 's/.*"rss_shmem_kib":\([0-9]*\).*/\1/p' "$OUT/rss1.json" 2>/dev/null)
if [ -n "$rss0" ] && [ -n "$rss1" ]; then
    echo "balloon: guest RAM resident at exit: $rss0 KiB without the balloon, $rss1 KiB with" \
        "free page reporting"
    if [ "$rss0" -ge 102400 ] && [ "$rss1" -le $((rss0 - 61440)) ]; then pass rss_falls
    else fail rss_falls "resident guest RAM $rss1 KiB with reporting vs $rss0 KiB without"; fi
else
    fail rss_falls "no rss_shmem_kib in the --stats files"
fi
# With a balloon, RAM stays on 4 KiB pages whatever the host allows (docs/vmm.md).
if grep -q '"guest_page_kib":4[,}]' "$OUT/rss1.json" 2>/dev/null; then pass balloon_small_pages
else fail balloon_small_pages "--balloon: $(cat "$OUT/rss1.json" 2>/dev/null)"; fi

summary
