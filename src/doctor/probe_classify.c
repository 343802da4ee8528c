/* probe_classify.c: turns the probe vCPU's exits into a verdict and a reason a person can act on.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "doctor.h"
#include "lib/lib.h"

static const char *const status_names[PROBE_NSTATUS] = {
    [PROBE_OK] = "ok",
    [PROBE_FAULT] = "fault",
    [PROBE_SHUTDOWN] = "triple-fault",
    [PROBE_KVM_ERROR] = "kvm-error",
    [PROBE_TIMEOUT] = "timeout",
    [PROBE_UNEXPECTED] = "unexpected",
    [PROBE_NO_KVM] = "no-kvm",
};

const char *probe_status_name(enum probe_status status)
{
    if ((unsigned)status >= PROBE_NSTATUS)
        return "invalid";
    return status_names[status];
}

int probe_status_parse(const char *name, enum probe_status *out)
{
    for (unsigned i = 0; i < PROBE_NSTATUS; i++) {
        if (!strcmp(name, status_names[i])) {
            *out = (enum probe_status)i;
            return 0;
        }
    }
    return -EINVAL;
}

static const char *const vector_names[PROBE_NVECTORS] = {
    "divide error (#DE)",
    "debug exception (#DB)",
    "NMI",
    "breakpoint (#BP)",
    "overflow (#OF)",
    "bound range exceeded (#BR)",
    "invalid opcode (#UD)",
    "device not available (#NM)",
    "double fault (#DF)",
    "coprocessor segment overrun",
    "invalid TSS (#TS)",
    "segment not present (#NP)",
    "stack fault (#SS)",
    "general protection fault (#GP)",
    "page fault (#PF)",
    "reserved exception 15",
    "x87 floating-point error (#MF)",
    "alignment check (#AC)",
    "machine check (#MC)",
    "SIMD floating-point exception (#XM)",
    "virtualization exception (#VE)",
    "control protection exception (#CP)",
    "reserved exception 22",
    "reserved exception 23",
    "reserved exception 24",
    "reserved exception 25",
    "reserved exception 26",
    "reserved exception 27",
    "hypervisor injection exception (#HV)",
    "VMM communication exception (#VC)",
    "security exception (#SX)",
    "reserved exception 31",
};

/* The vectors for which the CPU pushes an error code below the return frame. */
static bool has_error_code(unsigned vector)
{
    return vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 ||
           vector == 29 || vector == 30;
}

#define PF_PRESENT (1U << 0)
#define PF_WRITE   (1U << 1)
#define PF_USER    (1U << 2)
#define PF_FETCH   (1U << 4)

static void set(struct probe_result *out, enum probe_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set(struct probe_result *out, enum probe_status status, const char *fmt, ...)
{
    va_list ap;

    out->status = status;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
    va_end(ap);
}

/* An exception stub ran: its frame on the stack says where and in which ring the fault was. */
static void classify_fault(unsigned vector, const struct kvm_regs *regs,
                           const struct kvm_sregs *sregs, const struct guest_mem *mem,
                           struct probe_result *out)
{
    unsigned nwords = has_error_code(vector) ? 6 : 5;
    const uint8_t *frame = guest_mem_ptr(mem, regs->rsp, nwords * 8ULL);
    uint64_t w[6], err = 0, rip, cs;
    unsigned ring;
    char detail[128] = "";

    if (!frame) {
        set(out, PROBE_FAULT, "%s; its frame at rsp %#llx lies outside guest memory",
            vector_names[vector], (unsigned long long)regs->rsp);
        return;
    }
    memcpy(w, frame, nwords * 8);
    if (has_error_code(vector))
        err = w[0];
    rip = w[nwords - 5];
    cs = w[nwords - 4];
    ring = (unsigned)(cs & 3);

    if (vector == 14) {
        snprintf(detail, sizeof(detail), ", address %#llx, error code %#llx (%s-mode %s, %s)",
                 (unsigned long long)sregs->cr2, (unsigned long long)err,
                 err & PF_USER ? "user" : "supervisor",
                 /* Without EFER.NXE the fetch bit stays clear; a fault at rip is a fetch. */
                 (err & PF_FETCH) || sregs->cr2 == rip ? "instruction fetch"
                 : err & PF_WRITE                      ? "write"
                                                       : "read",
                 err & PF_PRESENT ? "protection violation" : "page not present");
    } else if (has_error_code(vector)) {
        snprintf(detail, sizeof(detail), ", error code %#llx", (unsigned long long)err);
    }
    set(out, PROBE_FAULT, "%s in ring %u at rip %#llx%s%s", vector_names[vector], ring,
        (unsigned long long)rip, detail,
        rip == PROBE_SYSCALL_HANDLER && ring == 3 ? ": SYSCALL entered its handler still in ring 3"
        : rip == PROBE_UCODE_ADDR && vector == 6  ? ": SYSCALL is not enabled in ring 3"
                                                  : "");
}

static void classify_io(const struct kvm_run *run, size_t run_size, const struct kvm_regs *regs,
                        const struct kvm_sregs *sregs, const struct guest_mem *mem,
                        struct probe_result *out)
{
    uint64_t bytes = (uint64_t)run->io.size * run->io.count;
    uint32_t value;

    if (run->io.port != PROBE_PORT || run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 ||
        run->io.count != 1) {
        set(out, PROBE_UNEXPECTED, "the guest %s port %#x (%u x %u bytes) at rip %#llx",
            run->io.direction == KVM_EXIT_IO_OUT ? "wrote" : "read", run->io.port, run->io.count,
            run->io.size, (unsigned long long)regs->rip);
        return;
    }
    if (!range_within(run->io.data_offset, bytes, run_size)) {
        set(out, PROBE_KVM_ERROR,
            "KVM placed I/O data at offset %#llx, outside the %zu-byte run area",
            (unsigned long long)run->io.data_offset, run_size);
        return;
    }
    memcpy(&value, (const uint8_t *)run + run->io.data_offset, sizeof(value));

    if (value == PROBE_CODE_SUCCESS) {
        /* Arriving is not enough: SYSCALL must have switched to the kernel CS and saved the
         * return address, as on hardware. */
        if (sregs->cs.selector != PROBE_SEL_KCODE || sregs->cs.dpl != 0 ||
            regs->rcx != PROBE_SYSCALL_RIP) {
            set(out, PROBE_UNEXPECTED,
                "SYSCALL reached its handler with cs %#x (DPL %u) and rcx %#llx; expected cs %#x "
                "(DPL 0) and rcx %#llx",
                sregs->cs.selector, sregs->cs.dpl, (unsigned long long)regs->rcx, PROBE_SEL_KCODE,
                (unsigned long long)PROBE_SYSCALL_RIP);
            return;
        }
        set(out, PROBE_OK, "SYSCALL from ring 3 reached the supervisor handler");
        return;
    }
    if ((value & ~0xffU) == PROBE_CODE_FAULT && (value & 0xff) < PROBE_NVECTORS) {
        classify_fault(value & 0xff, regs, sregs, mem, out);
        return;
    }
    set(out, PROBE_UNEXPECTED, "the guest wrote the unknown answer %#x at rip %#llx", value,
        (unsigned long long)regs->rip);
}

static const char *internal_error_name(uint32_t suberror)
{
    switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION:
        return " (instruction emulation failed)";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
        return " (exception during exception delivery)";
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
        return " (event delivery failed)";
    default:
        return "";
    }
}

bool probe_classify(const struct kvm_run *run, size_t run_size, const struct kvm_regs *regs,
                    const struct kvm_sregs *sregs, const struct guest_mem *mem,
                    struct probe_result *out)
{
    unsigned long long rip = regs->rip;
    unsigned ring = sregs->cs.selector & 3;

    switch (run->exit_reason) {
    case KVM_EXIT_INTR:
        return false;
    case KVM_EXIT_IO:
        classify_io(run, run_size, regs, sregs, mem, out);
        break;
    case KVM_EXIT_SHUTDOWN:
        set(out, PROBE_SHUTDOWN, "triple fault (KVM_EXIT_SHUTDOWN) at rip %#llx in ring %u", rip,
            ring);
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        set(out, PROBE_KVM_ERROR, "KVM internal error, suberror %u%s, at rip %#llx in ring %u",
            run->internal.suberror, internal_error_name(run->internal.suberror), rip, ring);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        set(out, PROBE_KVM_ERROR, "VM entry failed (hardware reason %#llx)",
            (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        break;
    case KVM_EXIT_HLT:
        set(out, PROBE_UNEXPECTED, "the guest halted at rip %#llx in ring %u without answering",
            rip, ring);
        break;
    case KVM_EXIT_MMIO:
        set(out, PROBE_UNEXPECTED,
            "the guest accessed guest-physical address %#llx, which has no memory, at rip %#llx",
            (unsigned long long)run->mmio.phys_addr, rip);
        break;
    default:
        set(out, PROBE_UNEXPECTED, "unexpected KVM exit reason %u at rip %#llx", run->exit_reason,
            rip);
        break;
    }
    return true;
}
