#!/bin/sh
# Guest integration tests: boot the real default image (and a Debian kernel when one is given)
# and assert on what the guest prints and on kiln's exit code. Needs a KVM that runs Linux guests:
# a real one, or the test bed's (tests/integration/run.sh decides). POSIX sh: runs under busybox.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
GUEST=$BUILD/guest
ASSETS=$BUILD/it-assets          # made on the host by run.sh: blob, initrd-with-blob.cpio.gz
DISTRO_KERNEL=${KILN_DISTRO_KERNEL:-}
SUITE=guest
. tests/integration/lib.sh

T="--timeout 120"

# Userspace is reached, the command runs, and the boot timer fires.
check boot_default 0 'hello-from-guest' \
    "$KILN" run $T --stats "$OUT/boot.json" --append "-- echo hello-from-guest"
if grep -Eq '"boot_timer_us":[1-9]' "$OUT/boot.json" 2>/dev/null; then pass boot_timer
else fail boot_timer "boot timer not written: $(cat "$OUT/boot.json" 2>/dev/null)"; fi

# Guest RAM on 2 MiB pages exactly where the host's shmem policy grants them (the test bed sets
# 'advise'), and on 4 KiB pages when told (docs/vmm.md).
policy=$(sed -n 's/.*\[\([a-z_]*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/shmem_enabled \
    2>/dev/null)
case $policy in always | within_size | advise | force) want=2048 ;; *) want=4 ;; esac
if grep -q "\"guest_page_kib\":$want[,}]" "$OUT/boot.json" 2>/dev/null; then pass hugepages_policy
else fail hugepages_policy "shmem_enabled '$policy', want $want: $(cat "$OUT/boot.json")"; fi
check no_hugepages 0 'small-pages' "$KILN" run $T --no-hugepages --stats "$OUT/small.json" \
    --append "-- echo small-pages"
grep -q '"guest_page_kib":4[,}]' "$OUT/small.json" 2>/dev/null ||
    fail no_hugepages_stats "--no-hugepages: $(cat "$OUT/small.json" 2>/dev/null)"

# The guest sees the CPUs (MP table: the default kernel has no ACPI) and the memory we gave it.
# As many vCPUs as this place has host CPUs (2 to 4): more vCPUs than host CPUs inside the test
# bed's emulated nested SVM has been seen to stall the whole test bed.
n=$(nproc)
[ "$n" -ge 2 ] || n=2
[ "$n" -le 4 ] || n=4
check cpus_n 0 "cpus=$n[^0-9]" "$KILN" run $T --cpus "$n" \
    --append '-- echo cpus=$(grep -c ^processor /proc/cpuinfo)'
check cpus_1 0 'cpus=1[^0-9]' "$KILN" run $T --cpus 1 \
    --append '-- echo cpus=$(grep -c ^processor /proc/cpuinfo)'
check mem_512 0 'memtotal=(4[6-9][0-9]|50[0-9]|51[0-9])[0-9]{3}[^0-9]' "$KILN" run $T --mem 512M \
    --append '-- echo memtotal=$(sed -n "s/^MemTotal: *\([0-9]*\) kB/\1/p" /proc/meminfo)'
check mem_above_4g 0 'memtotal=(5[0-9]|6[0-3])[0-9]{5}[^0-9]' "$KILN" run $T --mem 6G \
    --append '-- echo memtotal=$(sed -n "s/^MemTotal: *\([0-9]*\) kB/\1/p" /proc/meminfo)'

# The command line and the initrd arrive intact.
check cmdline_intact 0 'kiln\.marker=7f3a9c-intact' "$KILN" run $T \
    --append "kiln.marker=7f3a9c-intact -- cat /proc/cmdline"
if [ -f "$ASSETS/initrd-with-blob.cpio.gz" ]; then
    want=$(sha256sum "$ASSETS/blob" | cut -d' ' -f1)
    check initrd_intact 0 "blob=$want" "$KILN" run $T --initrd "$ASSETS/initrd-with-blob.cpio.gz" \
        --append '-- echo blob=$(sha256sum /blob | cut -d" " -f1)'
else
    fail initrd_intact "missing $ASSETS/initrd-with-blob.cpio.gz (made by tests/integration/run.sh)"
fi

# Both loaders: bzImage through the 64-bit boot protocol, vmlinux through PVH (the default).
check bzimage_boot 0 'bz-ok' "$KILN" run $T --kernel "$GUEST/bzImage" --cpus 2 \
    --append '-- echo bz-ok cpus=$(grep -c ^processor /proc/cpuinfo)'
expect bzimage_boot 'cpus=2' >/dev/null

# How the guest ends decides kiln's exit code.
check exit_poweroff 0 'kiln-init' "$KILN" run $T --append "kiln.exit=poweroff -- true"
check exit_reboot 3 'kiln-init' "$KILN" run $T --append "kiln.exit=reboot -- true"
check exit_panic 4 'Kernel panic' "$KILN" run $T --append "kiln.exit=panic -- true"
check exit_timeout 124 'timeout' "$KILN" run --timeout 3 --append "-- sleep 1000"

# Console to a file: the guest output lands there, not on stdout.
run console_file 0 "$KILN" run $T --console "$OUT/console.txt" --append "-- echo to-the-file" &&
    if grep -q to-the-file "$OUT/console.txt" && ! grep -q to-the-file "$OUT/console_file.log"; then
        pass console_file
    else fail console_file "console output not in the --console file"; fi

# A Debian packaged kernel (ACPI only: CPUs from the MADT, poweroff through ACPI S5).
if [ -n "$DISTRO_KERNEL" ] && [ -f "$DISTRO_KERNEL" ]; then
    check distro_kernel 0 'distro cpus=2 ' "$KILN" run $T --kernel "$DISTRO_KERNEL" --cpus 2 \
        --mem 512M --append '-- echo distro cpus=$(grep -c ^processor /proc/cpuinfo) end'
else
    echo "SKIP distro_kernel (set KILN_DISTRO_KERNEL to a Debian vmlinuz)"
fi

summary
