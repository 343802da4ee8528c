#!/bin/sh
# Guest virtio transport tests: the guest's own virtio-mmio and virtio-rng drivers find kiln's
# devices (command line for the default kernel, ACPI DSDT for Debian's), each device gets its own
# interrupt line. POSIX sh: runs under busybox in the test bed. See docs/virtio.md.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
GUEST=$BUILD/guest
ASSETS=$BUILD/it-assets
DISTRO_KERNEL=${KILN_DISTRO_KERNEL:-}
SUITE=guest_virtio
. tests/integration/lib.sh

T="--timeout 120"

# Entropy: the default image has the rng; the guest's hwrng picks it and reads from it.
check rng_read 0 'rng=virtio_rng\.0 bytes=64 od=0000100 end' "$KILN" run $T --append \
    '-- echo rng=$(cat /sys/class/misc/hw_random/rng_current) bytes=$(head -c 64 /dev/hwrng | wc -c) od=$(head -c 64 /dev/hwrng | od -b | tail -n 1) end'
check no_rng 0 'rng=(none)?,' "$KILN" run $T --no-rng --append \
    '-- echo rng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null),'

# Several devices at once: each is found and has an IRQ line of its own (the slot order is
# disks, net, vsock, rng, balloon: GSIs 5, 6, 7, ...).
dd if=/dev/zero of="$OUT/disk.img" bs=1024 count=1024 2>/dev/null
IRQS="echo devs=\$(ls /sys/bus/virtio/devices | wc -l) irqs=\$(grep -c virtio /proc/interrupts) distinct=\$(grep virtio /proc/interrupts | sed 's/^ *\([0-9]*\):.*/\1/' | sort -u | wc -l) end; grep virtio /proc/interrupts; echo args=\$(cat /proc/cmdline)"
check two_devices 0 'devs=3 irqs=3 distinct=3 end' "$KILN" run $T --disk "$OUT/disk.img" \
    --balloon 0 --no-vsock --append "-- \"$IRQS\""
expect two_devices 'IO-APIC +5-edge +virtio0' >/dev/null &&
    expect two_devices 'IO-APIC +6-edge +virtio1' >/dev/null &&
    expect two_devices 'IO-APIC +7-edge +virtio2' >/dev/null && pass two_devices_gsis
# Announced on the command line in slot order, before init's arguments, which stay intact.
expect two_devices 'args=.*device=4K@0xd0000000:5 virtio_mmio\.device=4K@0xd0001000:6 virtio_mmio\.device=4K@0xd0002000:7 -- "echo devs=' \
    >/dev/null && pass cmdline_order

# A Debian packaged kernel (ACPI) finds the devices in the DSDT: LNRO0005 platform devices with
# their windows (listed twice in /proc/iomem once the driver claims them). With its virtio modules
# (packed by tests/integration/run.sh) it drives them.
if [ -n "$DISTRO_KERNEL" ] && [ -f "$DISTRO_KERNEL" ]; then
    ACPI="echo acpi=\$(ls /sys/bus/acpi/devices | grep -c LNRO0005) iomem=\$(grep -c 'd000[01]000-d000[01]fff : LNRO0005' /proc/iomem) end"
    initrd="" load=""
    if [ -f "$ASSETS/distro-virtio-modules.cpio.gz" ]; then
        cat "$GUEST/initramfs.cpio.gz" "$ASSETS/distro-virtio-modules.cpio.gz" >"$OUT/distro.cpio.gz"
        initrd="--initrd $OUT/distro.cpio.gz"
        load='M=/lib/modules/kiln-virtio; for m in virtio_ring virtio virtio_mmio virtio-rng; do insmod $M/$m.ko || echo insmod-failed; done; echo rng=$(cat /sys/class/misc/hw_random/rng_current) bytes=$(head -c 64 /dev/hwrng | wc -c) end; ls -l /sys/bus/virtio/devices/; '
    fi
    # shellcheck disable=SC2086 # $initrd is two words or none
    check distro_acpi 0 'acpi=2 iomem=[24] ' "$KILN" run $T --kernel "$DISTRO_KERNEL" $initrd \
        --mem 512M --rng --disk "$OUT/disk.img" --append "-- \"$load$ACPI\""
    if [ -n "$initrd" ]; then
        expect distro_acpi 'rng=virtio_rng\.0 bytes=64 ' >/dev/null &&
            expect distro_acpi 'LNRO0005:0[01]/virtio' >/dev/null &&
            refute distro_acpi 'insmod-failed' >/dev/null && pass distro_rng_via_acpi
    else
        echo "SKIP distro_rng_via_acpi (no $ASSETS/distro-virtio-modules.cpio.gz)"
    fi
else
    echo "SKIP distro_acpi (set KILN_DISTRO_KERNEL to a Debian vmlinuz)"
fi

summary
