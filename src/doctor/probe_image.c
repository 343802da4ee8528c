/* probe_image.c: the KVM fitness probe's guest, hand-assembled, and its boot vCPU state. */
#include <errno.h>
#include <string.h>

#include "arch/x86/x86.h"
#include "doctor.h"
#include "lib/lib.h"

/* ---- the guest image (layout and protocol: doctor.h, docs/doctor.md) ------------------------- */

/* GDT access bytes (accessed bit preset, so loading a selector never writes the GDT) and
 * flag nibbles (G, D/B, L). */
#define ACC_KCODE  0x9b /* present, DPL 0, code, execute/read */
#define ACC_KDATA  0x93 /* present, DPL 0, data, read/write */
#define ACC_UCODE  0xfb /* present, DPL 3, code */
#define ACC_UDATA  0xf3 /* present, DPL 3, data */
#define ACC_TSS    0x8b /* present, system, 64-bit TSS (busy: it is loaded in TR) */
#define FLG_CODE64 0xa  /* G, L */
#define FLG_DATA   0xc  /* G, D/B */
#define TSS_LIMIT  0x67
#define GATE_INTR  0x8e /* present, DPL 0, 64-bit interrupt gate */

#define MSR_STAR   0xc0000081
#define MSR_LSTAR  0xc0000082
#define MSR_SFMASK 0xc0000084

#define IMM32(v)                                                                                   \
    (uint8_t)((v)&0xff), (uint8_t)(((v) >> 8) & 0xff), (uint8_t)(((v) >> 16) & 0xff),              \
        (uint8_t)(((v) >> 24) & 0xff)

/* Ring 0, at PROBE_ENTRY: build an interrupt frame for ring 3 and return through it. */
static const uint8_t entry_code[] = {
    0x6a, PROBE_SEL_UDATA | 3,     /* push 0x23         SS: user data, RPL 3 */
    0x68, IMM32(PROBE_USTACK_TOP), /* push 0xa000       RSP: top of the user stack */
    0x6a, 0x02,                    /* push 0x2          RFLAGS: interrupts off */
    0x6a, PROBE_SEL_UCODE | 3,     /* push 0x2b         CS: user 64-bit code, RPL 3 */
    0x68, IMM32(PROBE_UCODE_ADDR), /* push 0x8000       RIP: the user page */
    0x48, 0xcf,                    /* iretq             to ring 3 */
};

/* Ring 3, at PROBE_UCODE_ADDR. */
static const uint8_t user_code[] = {
    0x0f, 0x05, /* syscall            to LSTAR in ring 0 (RCX = PROBE_SYSCALL_RIP) */
    0x0f, 0x0b, /* ud2                SYSCALL came back, which the handler never does */
};

/* Ring 0, at LSTAR on the supervisor-only page: report success and stop. */
static const uint8_t syscall_handler[] = {
    0xb8, IMM32(PROBE_CODE_SUCCESS), /* mov eax, PROBE_CODE_SUCCESS */
    0xe7, PROBE_PORT,                /* out PROBE_PORT, eax */
    0xf4,                            /* hlt */
    0xeb, 0xfd,                      /* jmp back to the hlt */
};

/* One per exception vector, PROBE_STUB_SIZE apart from PROBE_STUBS; bytes 1..4 get the vector. */
static const uint8_t fault_stub[] = {
    0xb8, IMM32(PROBE_CODE_FAULT), /* mov eax, PROBE_CODE_FAULT | vector */
    0xe7, PROBE_PORT,              /* out PROBE_PORT, eax */
    0xf4,                          /* hlt */
    0xeb, 0xfd,                    /* jmp back to the hlt */
};

_Static_assert(sizeof(entry_code) <= PROBE_SYSCALL_HANDLER - PROBE_ENTRY, "entry code too long");
_Static_assert(sizeof(syscall_handler) <= PROBE_STUBS - PROBE_SYSCALL_HANDLER, "handler too long");
_Static_assert(sizeof(fault_stub) <= PROBE_STUB_SIZE, "stub too long");
_Static_assert(PROBE_STUBS + PROBE_NVECTORS * PROBE_STUB_SIZE <= PROBE_UCODE_ADDR,
               "stubs overflow");
_Static_assert(PROBE_GDT_ADDR + PROBE_GDT_SIZE <= PROBE_TSS_ADDR, "GDT overlaps the TSS");
_Static_assert(PROBE_TSS_ADDR + TSS_LIMIT + 1 <= PROBE_IDT_ADDR, "TSS overflows its page");
_Static_assert(PROBE_IMAGE_SIZE <= 2 * MiB, "one page table maps the image");

/* The only mapped pages; the page tables themselves need no mapping. */
static const struct {
    uint64_t addr;
    uint64_t flags;
} probe_pages[] = {
    {PROBE_GDT_ADDR, X86_PTE_P | X86_PTE_RW},
    {PROBE_IDT_ADDR, X86_PTE_P},
    {PROBE_KCODE_ADDR, X86_PTE_P},
    {PROBE_UCODE_ADDR, X86_PTE_P | X86_PTE_US},
    {PROBE_USTACK_ADDR, X86_PTE_P | X86_PTE_RW | X86_PTE_US},
    {PROBE_KSTACK_ADDR, X86_PTE_P | X86_PTE_RW},
};

static void put_u16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof(v));
}

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof(v));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof(v));
}

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
    return (uint64_t)(limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 | (uint64_t)access << 40 |
           (uint64_t)((limit >> 16) & 0xf) << 48 | (uint64_t)(flags & 0xf) << 52 |
           (uint64_t)(base >> 24) << 56;
}

int probe_build_image(uint8_t *mem, size_t len)
{
    uint8_t *gdt = mem + PROBE_GDT_ADDR, *tss = mem + PROBE_TSS_ADDR;
    uint8_t *kcode = mem + PROBE_KCODE_ADDR;

    if (len < PROBE_IMAGE_SIZE)
        return -ENOSPC;
    memset(mem, 0, PROBE_IMAGE_SIZE);

    /* Every level is user-accessible; the last one decides per page. */
    put_u64(mem + PROBE_PML4_ADDR, PROBE_PDPT_ADDR | X86_PTE_P | X86_PTE_RW | X86_PTE_US);
    put_u64(mem + PROBE_PDPT_ADDR, PROBE_PD_ADDR | X86_PTE_P | X86_PTE_RW | X86_PTE_US);
    put_u64(mem + PROBE_PD_ADDR, PROBE_PT_ADDR | X86_PTE_P | X86_PTE_RW | X86_PTE_US);
    for (size_t i = 0; i < ARRAY_SIZE(probe_pages); i++)
        put_u64(mem + PROBE_PT_ADDR + (probe_pages[i].addr >> 12) * 8,
                probe_pages[i].addr | probe_pages[i].flags);

    put_u64(gdt + PROBE_SEL_KCODE, gdt_entry(0, 0xfffff, ACC_KCODE, FLG_CODE64));
    put_u64(gdt + PROBE_SEL_KDATA, gdt_entry(0, 0xfffff, ACC_KDATA, FLG_DATA));
    put_u64(gdt + PROBE_SEL_UCODE32, gdt_entry(0, 0xfffff, ACC_UCODE, FLG_DATA));
    put_u64(gdt + PROBE_SEL_UDATA, gdt_entry(0, 0xfffff, ACC_UDATA, FLG_DATA));
    put_u64(gdt + PROBE_SEL_UCODE, gdt_entry(0, 0xfffff, ACC_UCODE, FLG_CODE64));
    /* The upper half of the 16-byte TSS descriptor holds base[63:32], zero here. */
    put_u64(gdt + PROBE_SEL_TSS, gdt_entry((uint32_t)PROBE_TSS_ADDR, TSS_LIMIT, ACC_TSS, 0));

    /* TSS: RSP0 (offset 4) is the stack for ring 3 -> 0; the I/O map base (offset 0x66) lies past
     * the limit, so ring 3 has no port access. */
    put_u64(tss + 4, PROBE_KSTACK_TOP);
    put_u16(tss + 0x66, TSS_LIMIT + 1);

    for (unsigned v = 0; v < PROBE_NVECTORS; v++) {
        uint8_t *gate = mem + PROBE_IDT_ADDR + v * 16;
        uint64_t handler = PROBE_STUBS + v * PROBE_STUB_SIZE;
        uint8_t *stub = mem + handler;

        put_u16(gate, (uint16_t)handler);
        put_u16(gate + 2, PROBE_SEL_KCODE);
        gate[5] = GATE_INTR;
        put_u16(gate + 6, (uint16_t)(handler >> 16));
        put_u32(gate + 8, (uint32_t)(handler >> 32));
        memcpy(stub, fault_stub, sizeof(fault_stub));
        put_u32(stub + 1, PROBE_CODE_FAULT | v);
    }
    memcpy(kcode + (PROBE_ENTRY - PROBE_KCODE_ADDR), entry_code, sizeof(entry_code));
    memcpy(kcode + (PROBE_SYSCALL_HANDLER - PROBE_KCODE_ADDR), syscall_handler,
           sizeof(syscall_handler));
    memcpy(mem + PROBE_UCODE_ADDR, user_code, sizeof(user_code));
    return 0;
}

void probe_boot_state(struct kvm_regs *regs, struct kvm_sregs *sregs,
                      struct kvm_msr_entry msrs[PROBE_NMSRS])
{
    struct kvm_segment data = x86_flat_segment(PROBE_SEL_KDATA, 0x3, false);

    memset(regs, 0, sizeof(*regs));
    regs->rip = PROBE_ENTRY;
    regs->rsp = PROBE_KSTACK_TOP;
    regs->rflags = 0x2;

    memset(sregs, 0, sizeof(*sregs));
    sregs->cs = x86_flat_segment(PROBE_SEL_KCODE, 0xb, true);
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
    sregs->tr = (struct kvm_segment){.base = PROBE_TSS_ADDR,
                                     .limit = TSS_LIMIT,
                                     .selector = PROBE_SEL_TSS,
                                     .type = 0xb,
                                     .present = 1};
    /* As KVM resets it: no LDT is ever used. */
    sregs->ldt = (struct kvm_segment){.limit = 0xffff, .type = 0x2, .present = 1};
    sregs->gdt = (struct kvm_dtable){.base = PROBE_GDT_ADDR, .limit = PROBE_GDT_SIZE - 1};
    sregs->idt = (struct kvm_dtable){.base = PROBE_IDT_ADDR, .limit = PROBE_NVECTORS * 16 - 1};
    sregs->cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG;
    sregs->cr3 = PROBE_PML4_ADDR;
    sregs->cr4 = X86_CR4_PAE;
    sregs->efer = X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA;

    memset(msrs, 0, PROBE_NMSRS * sizeof(msrs[0]));
    msrs[0] = (struct kvm_msr_entry){.index = MSR_STAR, .data = PROBE_STAR};
    msrs[1] = (struct kvm_msr_entry){.index = MSR_LSTAR, .data = PROBE_SYSCALL_HANDLER};
    msrs[2] = (struct kvm_msr_entry){.index = MSR_SFMASK, .data = PROBE_SFMASK};
}
