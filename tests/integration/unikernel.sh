#!/bin/sh
# Unikernel mode (docs/unikernel.md): every sample guest with its expected output and exit code,
# and every negative guest refused or stopped with its documented code. These guests need no
# Linux kernel, so the suite runs on the host's own /dev/kvm (PVM included) and in the test bed.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=unikernel
. tests/integration/lib.sh

U=$BUILD/unikernel
[ -d "$U" ] || U=$BUILD/it-assets/unikernel
if [ ! -r "$U/hello.elf" ]; then
    echo "unikernel: no guests in $BUILD/unikernel (run make unikernel-guests)"
    fail guests_built "missing $U/hello.elf"
    summary
    exit 1
fi
UK="$KILN unikernel"

# A mount with a file, a subdirectory, symlinks pointing out, and a secret outside it.
M=$OUT/mnt
mkdir -p "$M/sub"
echo "file contents 123" >"$M/hello.txt"
echo inner >"$M/sub/inner.txt"
echo secret >"$OUT/outside.txt"
ln -s /etc "$M/link-dir"
ln -s ../outside.txt "$M/link-file"
ln -s ../created-outside "$M/link-new"

# ---- samples ----------------------------------------------------------------------------------
check hello 0 '^Hello from a kiln unikernel$' $UK "$U/hello.elf"
run echo 0 $UK --env GREETING=hi --env EMPTY= "$U/echo.elf" -- one "two words" &&
    expect echo '^argc=3$' && expect echo '^argv\[2\]=two words$' &&
    expect echo '^env\[0\]=GREETING=hi$' && expect echo '^env\[1\]=EMPTY=$' &&
    expect echo 'cmdline=.*echo.elf one two words$' && expect echo '^mem=64 MiB$' && pass echo
check echo_mem 0 '^mem=32 MiB$' $UK --mem 32M "$U/echo.elf"
check cat 0 '^file contents 123$' $UK --mount "$M" "$U/cat.elf" -- hello.txt
check cat_missing 1 'error -2' $UK --mount "$M" "$U/cat.elf" -- nope.txt
run write 0 $UK --mount "$M" "$U/write.elf" -- sub/out.txt "written by a guest" &&
    expect write 'wrote 19 bytes' &&
    if [ "$(cat "$M/sub/out.txt")" = "written by a guest" ]; then pass write; else
        fail write "the host file has '$(cat "$M/sub/out.txt")'"; fi
run write_unlink 0 $UK --mount "$M" "$U/write.elf" -- tmp.txt x unlink &&
    if [ ! -e "$M/tmp.txt" ]; then pass write_unlink; else fail write_unlink "tmp.txt remains"; fi
run exit_code 7 $UK "$U/exit.elf" -- 7 && pass exit_code
run exit_zero 0 $UK "$U/exit.elf" -- 0 && pass exit_zero
run exit_max 239 $UK "$U/exit.elf" -- 239 && pass exit_max
check compute 0 '^primes below 1000: 168 ' $UK "$U/compute.elf" -- 1000
check trace 0 'trace: write\(0x[0-9a-f]+\) = 27' $UK --trace-hypercalls "$U/hello.elf"
run stats 0 $UK --stats "$OUT/uk-stats.json" "$U/hello.elf" &&
    if grep -q '"exit":"guest-exit","exit_code":0,"setup_us":[0-9]' "$OUT/uk-stats.json"; then
        pass stats; else fail stats "stats: $(cat "$OUT/uk-stats.json")"; fi
check timeout 124 'timeout expired' $UK --timeout 1 "$U/compute.elf" -- 100000000

# ---- exit path: kiln exits before KVM's teardown (a helper finishes it) unless --full-teardown --
check full_teardown 0 '^Hello from a kiln unikernel$' $UK --full-teardown "$U/hello.elf"
run full_teardown_code 7 $UK --full-teardown "$U/exit.elf" -- 7 && pass full_teardown_code
# The last log line and the guest's output are out before the exit; a pipe reader sees EOF.
check exit_log 0 'guest ended: guest-exit \(exit code 0\)' $UK -v "$U/hello.elf"
check exit_pipe 0 '^Hello from a kiln unikernel:0$' sh -c \
    "$UK '$U/hello.elf' | { read -r line; echo \"\$line:\$?\"; cat; }"
# Back-to-back runs while earlier VMs may still be tearing down.
i=0
while [ $i -lt 20 ] && $UK "$U/exit.elf" -- 3 >/dev/null 2>&1 </dev/null; [ $? = 3 ]; do
    i=$((i + 1))
done
if [ $i = 20 ]; then pass exit_repeat; else fail exit_repeat "run $((i + 1)) of 20 failed"; fi

# ---- usage ------------------------------------------------------------------------------------
check help 0 'APP.elf' $UK --help
check no_elf 2 'no APP.elf given' $UK
check bad_mem 2 "invalid --mem '4G'" $UK --mem 4G "$U/hello.elf"
check bad_env 2 "invalid --env 'NOEQUALS'" $UK --env NOEQUALS "$U/hello.elf"
check bad_flag 2 "unknown option '--frob'" $UK --frob "$U/hello.elf"
check stray_arg 2 "put guest arguments after --" $UK "$U/hello.elf" extra
check missing_elf 2 'cannot read /nonexistent.elf' $UK /nonexistent.elf
check missing_mount 2 'cannot open --mount /nonexistent' $UK --mount /nonexistent "$U/hello.elf"

# ---- bad ELFs ---------------------------------------------------------------------------------
head -c 40 "$U/hello.elf" >"$OUT/short.elf"
check elf_truncated_header 2 'shorter than an ELF64 header' $UK "$OUT/short.elf"
head -c 5000 "$U/hello.elf" >"$OUT/truncated.elf"
check elf_truncated 2 'runs past the end' $UK "$OUT/truncated.elf"
cp "$U/hello.elf" "$OUT/arm.elf"
printf '\267\000' | dd of="$OUT/arm.elf" bs=1 seek=18 conv=notrunc 2>/dev/null
check elf_wrong_machine 2 'machine 183 is not x86-64' $UK "$OUT/arm.elf"
cp "$U/hello.elf" "$OUT/dyn.elf"
printf '\003' | dd of="$OUT/dyn.elf" bs=1 seek=16 conv=notrunc 2>/dev/null
check elf_dynamic_type 2 'ET_DYN' $UK "$OUT/dyn.elf"
check elf_dynamic_binary 2 'dynamic|PT_INTERP|ET_DYN' $UK "$KILN"
yes 'not an ELF' | head -c 200 >"$OUT/text.elf"
check elf_not_elf 2 'not an ELF file' $UK "$OUT/text.elf"
check abi_mismatch 2 'ABI version 99; this kiln speaks version 1' $UK "$U/badabi.elf"
check abi_missing 2 'no Kiln ABI note' $UK "$U/noabi.elf"

# ---- guests that break the ABI ----------------------------------------------------------------
for mode in struct buf wrap path cmdval; do
    check "bad_pointer_$mode" 240 'is not in guest memory' $UK "$U/badptr.elf" -- $mode
done
check unknown_port 242 'port 0x1234, which is neither' $UK "$U/badport.elf"
for mode in exit pad width read nr0 pathlen; do
    check "bad_call_$mode" 241 'malformed call' $UK "$U/badcall.elf" -- $mode
done
# The register dump shows the faulting address (cr2) on Intel and PVM; AMD resets the vCPU on a
# shutdown, so there the dump shows the reset state.
# Inside the test bed these two stall QEMU's emulated nested SVM now and then (the whole test
# bed stops; docs/testbed.md), so they run on the host's own KVM only, where they always pass.
if [ "${KILN_TESTBED:-}" = 1 ]; then
    echo "SKIP triple_fault halt: not inside the test bed (docs/testbed.md)"
else
    run triple_fault 243 $UK "$U/fault.elf" && expect triple_fault 'triple-faulted' &&
        expect triple_fault 'rip=0x' && expect triple_fault 'cr2=' && pass triple_fault
    check halt 244 'halted without calling exit' $UK "$U/fault.elf" -- hlt
fi

# ---- confinement ------------------------------------------------------------------------------
run escape 0 $UK --mount "$M" "$U/escape.elf" && expect escape '^SUCCESS$' &&
    refute escape 'FAIL' && pass escape
if [ -e "$OUT/created-outside" ]; then fail escape_created "a file appeared outside the mount"; fi
[ "$(cat "$OUT/outside.txt")" = secret ] || fail escape_outside "outside.txt changed"
check no_mount 0 '^SUCCESS$' $UK "$U/escape.elf" -- nomount

summary
