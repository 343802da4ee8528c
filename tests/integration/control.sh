#!/bin/sh
# Host-side integration tests of the control socket (docs/control-protocol.md) against a real
# `kiln run` on this host's /dev/kvm (PVM included): the guest is a tiny freestanding loop that
# prints a dot to COM1 every few thousand instructions, so its console file is a counter that
# pause must stop and resume restart. No Linux guest needed.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$PWD/$BUILD/kiln
SUITE=control
. tests/integration/lib.sh

export KILN_NO_PROBE=1
export XDG_RUNTIME_DIR="$OUT/xdg"
mkdir -p "$XDG_RUNTIME_DIR"
NAME=kiln-it-ctl-$$
SOCK=$XDG_RUNTIME_DIR/kiln/$NAME/control.sock

check ctl_help 0 'register-memory FILE SIZE' "$KILN" ctl --help
check ctl_no_args 2 'usage: kiln ctl' "$KILN" ctl
check ctl_bad_name 2 "invalid VM name 'no such'" "$KILN" ctl 'no such' state
check ctl_no_vm 1 'cannot reach VM nothing-here: No such file' "$KILN" ctl nothing-here state

# The spinning guest: a PVH ELF whose 32-bit entry loops writing '.' to port 0x3f8.
cat >"$OUT/spin.S" <<'EOF'
    .section .note.Xen, "a", @note
    .balign 4
    .long 4, 4, 18
    .asciz "Xen"
    .long _start
    .balign 4
    .text
    .code32
    .globl _start
_start:
1:  mov $0x3f8, %dx
    mov $'.', %al
    out %al, %dx
    mov $1000, %ecx
2:  nop
    dec %ecx
    jnz 2b
    jmp 1b
EOF
if ! cc -nostdlib -static -no-pie -Wl,-Ttext=0x200000 -Wl,--build-id=none -o "$OUT/spin" \
    "$OUT/spin.S" >"$OUT/cc.log" 2>&1; then
    fail spin_guest "cannot build the spinning guest: $(cat "$OUT/cc.log")"
    summary
    exit 1
fi
: >"$OUT/initrd"
"$KILN" run --name "$NAME" --kernel "$OUT/spin" --initrd "$OUT/initrd" --balloon 0 \
    --timeout 60 --console "$OUT/con" >"$OUT/vm.log" 2>&1 &
VM=$!
i=0
while [ ! -S "$SOCK" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -S "$SOCK" ] && pass control_socket_created || fail control_socket_created "no $SOCK"

check state_running 0 '^running$' "$KILN" ctl "$NAME" state
check state_by_path 0 '^running$' "$KILN" ctl "$SOCK" state
check metrics 0 '"exits":\{"io":[1-9][0-9]*,' "$KILN" ctl "$NAME" metrics
expect metrics '"rss_kib":\{"anon":[0-9]+' && expect metrics '"balloon":\{"target_pages":0'

ok() { _n=$1; shift; run "$_n" 0 "$@" && pass "$_n"; }
size() { wc -c <"$OUT/con" | tr -d ' '; }
# Pause: the console counter stops (and pausing twice is fine); resume: it moves again.
if run pause 0 "$KILN" ctl "$NAME" pause && run pause_again 0 "$KILN" ctl "$NAME" pause; then
    check state_paused 0 '^paused$' "$KILN" ctl "$NAME" state
    a=$(size)
    sleep 0.5
    b=$(size)
    [ "$a" = "$b" ] && pass pause_stops_guest || fail pause_stops_guest "console grew $a -> $b"
    ok resume "$KILN" ctl "$NAME" resume
    ok resume_again "$KILN" ctl "$NAME" resume
    sleep 0.5
    c=$(size)
    [ "$c" -gt "$b" ] && pass resume_restarts_guest || fail resume_restarts_guest "$b -> $c"
    check state_resumed 0 '^running$' "$KILN" ctl "$NAME" state
fi

# Registered memory: above RAM (256 MiB: the window starts at 4 GiB), 2 MiB granules, freed
# ranges reused.
head -c 4194304 /dev/zero >"$OUT/mem"
check register_a 0 '^gpa 0x100000000 pfn 0x100000 slot 2$' \
    "$KILN" ctl "$NAME" register-memory "$OUT/mem" 2M
check register_b 0 '^gpa 0x100200000 pfn 0x100200 slot 3$' \
    "$KILN" ctl "$NAME" register-memory "$OUT/mem" 4M
ok unregister_a "$KILN" ctl "$NAME" unregister-memory 2
check register_reuses 0 '^gpa 0x100000000 pfn 0x100000 slot 2$' \
    "$KILN" ctl "$NAME" register-memory "$OUT/mem" 1M
check metrics_regions 0 '"registered_regions":2,"registered_bytes":5242880' \
    "$KILN" ctl "$NAME" metrics
check unregister_unknown 1 'unregister-memory: No such file or directory' \
    "$KILN" ctl "$NAME" unregister-memory 9
check register_too_big 1 'register-memory: Invalid argument' \
    "$KILN" ctl "$NAME" register-memory "$OUT/mem" 8M
check register_bad_size 2 "invalid SIZE '1000'" "$KILN" ctl "$NAME" register-memory "$OUT/mem" 1000

# The balloon: relative adjustments, clamped at empty.
check balloon_grow 0 '^balloon target 100 pages$' "$KILN" ctl "$NAME" balloon +100
check balloon_shrink 0 '^balloon target 70 pages$' "$KILN" ctl "$NAME" balloon -30
check balloon_clamp 0 '^balloon target 0 pages$' "$KILN" ctl "$NAME" balloon -500
check balloon_bad 2 "invalid PAGES 'lots'" "$KILN" ctl "$NAME" balloon lots

# Malformed messages on the real socket: each answered with its errno, the connection usable.
if command -v python3 >/dev/null 2>&1; then
    cat >"$OUT/raw.py" <<'EOF'
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
def ask(data):
    s.send(data)
    t, err, pfn, slot, pad = struct.unpack("<IIQII", s.recv(64))
    return "type=%d errno=%d slot=%d" % (t, err, slot)
print("short", ask(b"\x07" * 7))
print("junk", ask(b"\x0c" * 24))
print("nofd", ask(struct.pack("<IIQII", 2, 0, 4096, 0, 0)))
print("state", ask(struct.pack("<IIQII", 7, 0, 0, 0, 0)))
# Eventfds handed to KVM: an irqfd on GSI 5, an ioeventfd, and a bad access length.
def ask_fd(data):
    efd = os.eventfd(0)
    socket.send_fds(s, [data], [efd])
    os.close(efd)
    t, err, pfn, slot, pad = struct.unpack("<IIQII", s.recv(64))
    return "type=%d errno=%d" % (t, err)
print("irqfd", ask_fd(struct.pack("<IIQII", 9, 5, 0, 0, 0)))
print("ioevent", ask_fd(struct.pack("<IIQII", 8, 4, 0xdf000000, 7, 0)))
print("ioevent_len3", ask_fd(struct.pack("<IIQII", 8, 3, 0xdf000010, 0, 0)))
EOF
    run raw_malformed 0 python3 "$OUT/raw.py" "$SOCK" &&
        expect raw_malformed '^short type=2 errno=90 ' && expect raw_malformed '^junk type=2 errno=95 ' &&
        expect raw_malformed '^nofd type=2 errno=9 ' && expect raw_malformed '^state type=4 errno=0 slot=1$' &&
        expect raw_malformed '^irqfd type=1 errno=0$' && expect raw_malformed '^ioevent type=1 errno=0$' &&
        expect raw_malformed '^ioevent_len3 type=2 errno=22$' &&
        pass raw_malformed
fi

# Another uid is refused by the server's SO_PEERCRED check (the directory is opened up so that
# the socket is reachable at all; it is 0700 normally).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
    chmod 755 "$OUT" "$XDG_RUNTIME_DIR" "$XDG_RUNTIME_DIR/kiln" "$XDG_RUNTIME_DIR/kiln/$NAME"
    chmod 777 "$SOCK"
    check other_uid_refused 1 'Permission denied \(only root and the VM.s owner' \
        setpriv --reuid=65534 --regid=65534 --clear-groups "$KILN" ctl "$SOCK" state
    chmod 700 "$XDG_RUNTIME_DIR/kiln/$NAME"
fi

# Exit: answered, then the VMM ends with code 0 and removes its runtime directory.
ok exit "$KILN" ctl "$NAME" exit
i=0
while kill -0 $VM 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
wait $VM
code=$?
[ $code = 0 ] && pass exit_code_0 || fail exit_code_0 "kiln run exited $code: $(tail -3 "$OUT/vm.log")"
[ ! -e "$XDG_RUNTIME_DIR/kiln/$NAME" ] && pass rundir_removed || fail rundir_removed "still there"
check gone 1 'cannot reach VM' "$KILN" ctl "$NAME" state

summary
