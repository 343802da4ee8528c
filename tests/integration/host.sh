#!/bin/sh
# Host-side integration tests: the CLI, input validation, and VM set-up up to KVM_RUN on this
# host's own /dev/kvm (PVM included). No Linux guest needs to run to completion here.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
GUEST=$BUILD/guest
SUITE=host
. tests/integration/lib.sh

check version 0 '^kiln [0-9]+\.[0-9]+' "$KILN" version
check help 0 'Commands:' "$KILN" --help
check run_help 0 '--timeout SECONDS' "$KILN" run --help
check unknown_command 2 "unknown command 'frobnicate'" "$KILN" frobnicate
check bad_cpus 2 "invalid --cpus '0'" "$KILN" run --cpus 0
check bad_mem 2 "invalid --mem '1M'" "$KILN" run --mem 1M
check bad_flag 2 "unknown option '--frob'" "$KILN" run --frob
check missing_kernel 2 'cannot read kernel /nonexistent/vmlinux' \
    "$KILN" run --kernel /nonexistent/vmlinux --initrd "$GUEST/initramfs.cpio.gz"
check missing_image_dir 2 'default guest image has no vmlinux' \
    env KILN_IMAGE_DIR=/nonexistent "$KILN" run

head -c 65536 /dev/urandom >"$OUT/garbage"
check garbage_kernel 2 'garbage' "$KILN" run --kernel "$OUT/garbage" --console /dev/null
head -c 200000 "$GUEST/bzImage" >"$OUT/truncated-bzImage"
check truncated_bzimage 2 'truncated-bzImage' \
    "$KILN" run --kernel "$OUT/truncated-bzImage" --console /dev/null
head -c 1000000 "$GUEST/vmlinux" >"$OUT/truncated-vmlinux"
check truncated_elf 2 'truncated-vmlinux' \
    "$KILN" run --kernel "$OUT/truncated-vmlinux" --console /dev/null
head -c 20000000 /dev/zero >"$OUT/big-initrd"
check initrd_too_big 2 'initrd' \
    "$KILN" run --mem 16M --initrd "$OUT/big-initrd" --console /dev/null
long=$(head -c 3000 /dev/zero | tr '\0' 'x')
check cmdline_too_long 2 'command line' \
    "$KILN" run --kernel "$GUEST/bzImage" --cmdline "$long" --console /dev/null

# The probe: this host either can run Linux guests (0) or has a KVM that cannot (2).
run doctor_verdict 0 sh -c "'$KILN' doctor; c=\$?; [ \$c = 0 ] || [ \$c = 2 ]" &&
    expect doctor_verdict '^verdict: ' && pass doctor_verdict

# Set-up up to the first KVM_RUN on this host's own /dev/kvm: on PVM the guest crawls, so it is
# stopped by --timeout (124); on a real KVM host it boots and powers off (0).
"$KILN" run --timeout 2 --stats "$OUT/stats.json" --console "$OUT/con" \
    --append "-- true" >"$OUT/host_setup_timeout.log" 2>&1
code=$?
if grep -q '"setup_us":[0-9]' "$OUT/stats.json" 2>/dev/null; then
    case $(sed -n 's/.*"exit_code":\([0-9]*\).*/\1/p' "$OUT/stats.json") in
    0 | 124) pass host_setup_timeout ;;
    *) fail host_setup_timeout "unexpected exit: $(cat "$OUT/stats.json")" ;;
    esac
else
    fail host_setup_timeout "no set-up time in --stats (exit $code)"
fi

# SIGTERM ends the VM with 143 and leaves no process behind.
"$KILN" run --console /dev/null --append "-- sleep 1000" >"$OUT/sigterm.log" 2>&1 &
pid=$!
sleep 1
kill -TERM $pid
wait $pid
code=$?
if [ $code = 143 ] || [ $code = 0 ]; then pass sigterm; else fail sigterm "exit $code, expected 143"; fi

# virtio device options (docs/virtio.md): bad values are refused before a VM exists; a device
# that cannot open its backend is a usage error too.
check bad_disk_option 2 "invalid --disk option 'bogus'" "$KILN" run --disk x.img,bogus
check bad_net_mac 2 "invalid --net mac 'zz'" "$KILN" run --net tap=t0,mac=zz
check bad_cid 2 "invalid --cid '2'" "$KILN" run --cid 2
check missing_disk 2 '/nonexistent/disk.img' \
    "$KILN" run --no-vsock --disk /nonexistent/disk.img --console /dev/null

summary
