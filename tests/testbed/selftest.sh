#!/usr/bin/env bash
# Proves the test bed runner: exit statuses pass through, timeouts and broken boots are reported,
# payload files, arguments and shared libraries arrive, and /dev/kvm inside really runs a guest.
set -uo pipefail
cd "$(dirname "$0")" || exit 1
run=./run.sh
passed=0
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-testbed-selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT

# case NAME WANT_STATUS WANT_REGEX RUN_ARGS...: runs run.sh, checks its status and output.
case_() {
    local name=$1 want=$2 re=$3 got start secs
    shift 3
    start=$(date +%s)
    "$run" "$@" >"$work/$name.log" 2>&1 </dev/null
    got=$?
    secs=$(($(date +%s) - start))
    if [ "$got" = "$want" ] && grep -Eq -- "$re" "$work/$name.log"; then
        passed=$((passed + 1))
        echo "PASS $name (${secs} s)"
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit $got (want $want), output must match /$re/"
        tail -n 30 "$work/$name.log" | sed 's/^/    | /'
    fi
}

# Bad usage is refused before anything boots, with exit status 2.
usage_case() {
    local name=$1 re=$2 got
    shift 2
    "$run" "$@" >"$work/$name.log" 2>&1 </dev/null
    got=$?
    if [ "$got" = 2 ] && grep -Eq -- "$re" "$work/$name.log"; then
        passed=$((passed + 1))
        echo "PASS $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit $got (want 2), output must match /$re/"
        sed 's/^/    | /' "$work/$name.log"
    fi
}
usage_case usage-timeout "--timeout must be a positive number of seconds, not '0'" \
    --timeout 0 -- true
usage_case usage-no-command 'no command given' --cpus 2
usage_case usage-missing-source "payload source '/nonexistent/x' does not exist" \
    --payload /nonexistent/x -- true
usage_case usage-dotdot "invalid guest path '/payload/\.\./etc/passwd'" \
    --file /etc/hostname:../etc/passwd -- true

# Passing payload: a directory, a single file, and arguments that need quoting.
mkdir -p "$work/dir/sub"
echo "hello from the payload" >"$work/dir/sub/hello.txt"
echo "single file" >"$work/one.txt"
# shellcheck disable=SC2016 # the payload's shell expands these, not ours
case_ pass 0 "^args ok: a b'c \\\$HOME\$" \
    --payload "$work/dir:data" --file "$work/one.txt:/opt/one.txt" --timeout 120 -- \
    sh -c 'grep -q "hello from the payload" data/sub/hello.txt && grep -q single /opt/one.txt &&
           [ "$(pwd)" = /payload ] && echo "args ok: $1"' sh "a b'c \$HOME"

case_ fail 3 '^about to fail$' --timeout 120 -- sh -c 'echo about to fail; exit 3'

case_ timeout 124 'testbed: payload timed out after 20 s' --timeout 20 -- sleep 1000

# A kernel that cannot start /init panics; QEMU exits without an exit report.
case_ broken-boot 125 'without reporting' --timeout 120 --append rdinit=/nonexistent -- true

case_ kvm-device 0 '^kvm ok$' --timeout 120 -- sh -c \
    '[ -c /dev/kvm ] && grep -q "^kvm_amd " /proc/modules && grep -q "^kvm " /proc/modules &&
     grep -q "^tun " /proc/modules && [ -c /dev/net/tun ] && grep -qw svm /proc/cpuinfo &&
     ip addr show lo | grep -q "inet 127.0.0.1" && echo kvm ok'

# A dynamically linked program (so its libraries must be copied in) that runs a real-mode guest
# on the test bed's /dev/kvm: `mov al,0x42; out 0x10,al; hlt`.
if command -v cc >/dev/null; then
    cat >"$work/kvmprobe.c" <<'EOF'
/* Runs three real-mode instructions in a KVM guest and checks the exits they cause. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int main(void)
{
    static const unsigned char code[] = {0xb0, 0x42, 0xe6, 0x10, 0xf4};
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0 || ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        perror("kvmprobe: /dev/kvm");
        return 1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    unsigned char *mem =
        mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (vm < 0 || mem == MAP_FAILED) {
        perror("kvmprobe: create vm");
        return 1;
    }
    memcpy(mem, code, sizeof(code));
    struct kvm_userspace_memory_region region = {.slot = 0,
                                                 .guest_phys_addr = 0x1000,
                                                 .memory_size = 0x1000,
                                                 .userspace_addr = (unsigned long)mem};
    int vcpu = -1;
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0 ||
        (vcpu = ioctl(vm, KVM_CREATE_VCPU, 0)) < 0) {
        perror("kvmprobe: memory/vcpu");
        return 1;
    }
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs sregs;
    if (run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
        perror("kvmprobe: sregs");
        return 1;
    }
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
        perror("kvmprobe: set regs");
        return 1;
    }
    int saw_out = 0;
    for (int i = 0; i < 10; i++) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            perror("kvmprobe: KVM_RUN");
            return 1;
        }
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
            run->io.port == 0x10 && *((unsigned char *)run + run->io.data_offset) == 0x42) {
            saw_out = 1;
        } else if (run->exit_reason == KVM_EXIT_HLT && saw_out) {
            printf("kvmprobe: guest ran: out 0x42 to port 0x10, then hlt\n");
            return 0;
        } else {
            fprintf(stderr, "kvmprobe: unexpected exit reason %u\n", run->exit_reason);
            return 1;
        }
    }
    fprintf(stderr, "kvmprobe: no hlt after 10 runs\n");
    return 1;
}
EOF
    if cc -O1 -o "$work/kvmprobe" "$work/kvmprobe.c" 2>"$work/cc.log"; then
        case_ kvm-guest 0 '^kvmprobe: guest ran' --timeout 120 \
            --file "$work/kvmprobe:/usr/local/bin/kvmprobe" -- kvmprobe
    else
        failed=$((failed + 1))
        echo "FAIL kvm-guest: cannot compile the probe"
        sed 's/^/    | /' "$work/cc.log"
    fi
else
    echo "SKIP kvm-guest: no C compiler (apt-get install build-essential)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
