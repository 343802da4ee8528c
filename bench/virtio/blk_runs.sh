#!/bin/sh
# blk_runs.sh: the timed part of bench/virtio/part_blk.sh, run where the guests run (this host,
# or the test bed: POSIX sh under busybox). Boots the same guest ROUNDS times in each VMM,
# alternating which goes first, on the same image file, and prints one line per run:
#   RESULT vmm=kiln round=N seq_write_mibs=.. seq_read_mibs=.. rand_qd1_iops=.. rand_qd8_iops=..
# Usage: blk_runs.sh DIR ROUNDS MIB SECONDS  (DIR holds kiln, vmlinux, initrd, qemu/, and gets
# the image)
dir=$1 rounds=$2 mib=$3 secs=$4
cd "$dir" || exit 1
img=$dir/blk-bench.img
dd if=/dev/zero of="$img" bs=1048576 count="$mib" 2>/dev/null || exit 1
cmd="-- blk-bench /dev/vda $mib $secs"
base="console=ttyS0 reboot=k panic=-1 io_delay=none quiet kiln.exit=reboot"

run_kiln() {
    ./kiln run --timeout 600 --kernel vmlinux --initrd initrd --mem 256M --cpus 1 \
        --disk "$img" --append "kiln.exit=reboot $cmd" </dev/null 2>&1
}

# microvm as bench/boot runs it (docs/benchmarks.md), plus: modern virtio-mmio (not the legacy
# default), the disk with the same caching as kiln (host page cache, flushes honoured) on a thread
# pool, and its virtio-mmio window named on the command line by hand: QEMU's own announcement
# lands after init's `--`, where the kernel never reads it (the disk sits in the last of microvm's
# 512-byte slots, 0xfeb00e00, IRQ 12, in QEMU 7.2).
run_qemu() {
    fw=
    [ -d qemu/share ] && fw="-L qemu/share"
    # shellcheck disable=SC2086
    timeout 600 ./qemu/qemu-system-x86_64 \
        -M microvm,x-option-roms=off,rtc=off,pit=off,pic=off,acpi=off,auto-kernel-cmdline=off \
        -accel kvm -cpu host \
        -smp 1 -m 256M -nodefaults -no-user-config -nographic -serial stdio -device i8042 \
        -no-reboot -global virtio-mmio.force-legacy=false \
        -drive id=d0,file="$img",format=raw,if=none,cache=writeback,aio=threads \
        -device virtio-blk-device,drive=d0 $fw \
        -kernel vmlinux -initrd initrd -append "$base virtio_mmio.device=512@0xfeb00e00:12 $cmd" </dev/null 2>&1
}

one() {
    out=$(run_"$1")
    line=$(echo "$out" | sed -n 's/^BLKBENCH \(.*\)$/\1/p' | tr -d '\r' | tail -n 1)
    if [ -n "$line" ]; then
        echo "RESULT vmm=$1 round=$2 $line"
    else
        echo "FAILED vmm=$1 round=$2"
        echo "$out" | tail -n 15 | sed 's/^/    | /'
    fi
}

r=1
while [ "$r" -le "$rounds" ]; do
    if [ $((r % 2)) = 1 ]; then one kiln $r; one qemu $r; else one qemu $r; one kiln $r; fi
    r=$((r + 1))
done
rm -f "$img"
