/* cpu.c: the boot vCPU's state for the Linux 64-bit boot protocol and for PVH, and the reset
 * FPU, LAPIC and MSR values every vCPU gets (docs/boot.md). */
#include <errno.h>
#include <string.h>

#include "lib/lib.h"
#include "x86.h"

#define SEL_CODE    0x10 /* __BOOT_CS */
#define SEL_DATA    0x18 /* __BOOT_DS */
#define SEL_TSS     0x20
#define GDT_ENTRIES 6 /* null, null, code, data, TSS (two slots in long mode) */

/* Descriptor access/flag words (bits 40..55 of a descriptor, with the limit's top nibble out). */
#define DESC_CODE64 0xa09b /* G, L, present, code execute/read accessed */
#define DESC_CODE32 0xc09b /* G, D/B, present, code execute/read accessed */
#define DESC_DATA   0xc093 /* G, D/B, present, data read/write accessed */
#define DESC_TSS    0x008b /* present, busy TSS (32-bit busy, or 64-bit busy in long mode) */
#define TSS_LIMIT   0x67

#define APIC_LVT0      0x350
#define APIC_LVT1      0x360
#define APIC_DM_MASK   0x700
#define APIC_DM_NMI    0x400
#define APIC_DM_EXTINT 0x700

#define MSR_IA32_TSC            0x10
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 1ULL
#define MTRR_DEF_ENABLE         (1ULL << 11)
#define MTRR_TYPE_WB            6ULL

static uint64_t desc(uint16_t flags, uint32_t base, uint32_t limit)
{
    return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
           (limit & 0xffffu) | ((uint64_t)(limit & 0xf0000u) << 32) |
           ((uint64_t)(flags & 0xf0ffu) << 40);
}

/* The hidden part of a segment register, decoded from the descriptor it was loaded from, so the
 * registers and the GDT in memory always agree. */
static struct kvm_segment seg_from_desc(uint64_t d, uint16_t selector)
{
    struct kvm_segment s = {
        .base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24),
        .limit = (uint32_t)((d & 0xffff) | (((d >> 48) & 0xf) << 16)),
        .selector = selector,
        .type = (d >> 40) & 0xf,
        .s = (d >> 44) & 1,
        .dpl = (d >> 45) & 3,
        .present = (d >> 47) & 1,
        .avl = (d >> 52) & 1,
        .l = (d >> 53) & 1,
        .db = (d >> 54) & 1,
        .g = (d >> 55) & 1,
    };
    if (s.g)
        s.limit = (s.limit << 12) | 0xfff;
    return s;
}

struct kvm_segment x86_flat_segment(uint16_t selector, uint8_t type, bool code64)
{
    return (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = selector,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = !code64,
        .s = 1,
        .l = code64,
        .g = 1,
    };
}

/* PML4[0] -> PDPT, PDPT[0..3] -> four page directories of 2 MiB pages: [0, 4 GiB) identity. */
static int write_page_tables(struct guest_mem *mem)
{
    uint64_t *pml4 = guest_mem_ptr(mem, X86_PML4_ADDR, 4096);
    uint64_t *pdpt = guest_mem_ptr(mem, X86_PDPT_ADDR, 4096);
    uint64_t *pd = guest_mem_ptr(mem, X86_PD_ADDR, 4 * 4096);

    if (!pml4 || !pdpt || !pd)
        return -ENOMEM;
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = X86_PDPT_ADDR | X86_PTE_P | X86_PTE_RW;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (X86_PD_ADDR + i * 4096) | X86_PTE_P | X86_PTE_RW;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | X86_PTE_P | X86_PTE_RW | X86_PTE_PS;
    return 0;
}

int x86_boot_cpu_state(struct guest_mem *mem, const struct x86_boot_info *info,
                       struct kvm_regs *regs, struct kvm_sregs *sregs)
{
    bool pvh = info->mode == X86_ENTRY_PVH;
    uint64_t gdt[GDT_ENTRIES] = {
        [SEL_CODE / 8] = desc(pvh ? DESC_CODE32 : DESC_CODE64, 0, 0xfffff),
        [SEL_DATA / 8] = desc(DESC_DATA, 0, 0xfffff),
        /* The TSS base is 0: nothing switches stacks before the kernel loads its own TR. */
        [SEL_TSS / 8] = desc(DESC_TSS, 0, TSS_LIMIT),
    };
    void *gdt_dst = guest_mem_ptr(mem, X86_GDT_ADDR, sizeof(gdt));
    struct kvm_segment data = seg_from_desc(gdt[SEL_DATA / 8], SEL_DATA);

    if (!gdt_dst)
        return -ENOMEM;
    memcpy(gdt_dst, gdt, sizeof(gdt));
    memset(regs, 0, sizeof(*regs));
    memset(sregs, 0, sizeof(*sregs));

    sregs->gdt.base = X86_GDT_ADDR;
    sregs->gdt.limit = sizeof(gdt) - 1;
    sregs->idt.base = 0;
    sregs->idt.limit = 0; /* interrupts stay off until the kernel loads its IDT */
    sregs->cs = seg_from_desc(gdt[SEL_CODE / 8], SEL_CODE);
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
    sregs->tr = seg_from_desc(gdt[SEL_TSS / 8], SEL_TSS);
    /* LDTR as after reset: a present, empty LDT (VMX rejects other types). */
    sregs->ldt = (struct kvm_segment){.limit = 0xffff, .type = 2, .present = 1};

    regs->rflags = 2; /* bit 1 is reserved and reads as 1; IF, TF, VM clear */
    regs->rip = info->entry;
    if (pvh) {
        /* PVH: 32-bit protected mode, paging off, CR4 zero, EBX = hvm_start_info. */
        sregs->cr0 = X86_CR0_PE | X86_CR0_ET;
        regs->rbx = info->boot_struct;
        return 0;
    }
    if (write_page_tables(mem) < 0)
        return -ENOMEM;
    sregs->cr3 = X86_PML4_ADDR;
    sregs->cr4 = X86_CR4_PAE;
    sregs->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
    sregs->efer = X86_EFER_LME | X86_EFER_LMA;
    regs->rsi = info->boot_struct;
    regs->rsp = X86_BOOT_STACK_TOP;
    regs->rbp = X86_BOOT_STACK_TOP;
    return 0;
}

void x86_fpu_init(struct kvm_fpu *fpu)
{
    memset(fpu, 0, sizeof(*fpu));
    fpu->fcw = 0x37f; /* FNINIT value: all exceptions masked, 64-bit precision */
    fpu->mxcsr = 0x1f80;
}

static void set_delivery_mode(struct kvm_lapic_state *lapic, unsigned reg, uint32_t mode)
{
    uint32_t v;

    memcpy(&v, &lapic->regs[reg], sizeof(v));
    v = (v & ~(uint32_t)APIC_DM_MASK) | mode;
    memcpy(&lapic->regs[reg], &v, sizeof(v));
}

void x86_lapic_init(struct kvm_lapic_state *lapic)
{
    /* Only the delivery mode changes: mask bits stay as KVM reset them (LINT0 open on the BSP),
     * the virtual-wire set-up kvmtool and Firecracker use. */
    set_delivery_mode(lapic, APIC_LVT0, APIC_DM_EXTINT);
    set_delivery_mode(lapic, APIC_LVT1, APIC_DM_NMI);
}

unsigned x86_boot_msrs(struct kvm_msrs *msrs, unsigned max)
{
    static const struct kvm_msr_entry boot[] = {
        {.index = MSR_IA32_SYSENTER_CS},
        {.index = MSR_IA32_SYSENTER_ESP},
        {.index = MSR_IA32_SYSENTER_EIP},
        {.index = MSR_STAR},
        {.index = MSR_CSTAR},
        {.index = MSR_KERNEL_GS_BASE},
        {.index = MSR_SYSCALL_MASK},
        {.index = MSR_LSTAR},
        {.index = MSR_IA32_TSC},
        {.index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING},
        {.index = MSR_MTRR_DEF_TYPE, .data = MTRR_DEF_ENABLE | MTRR_TYPE_WB},
    };
    unsigned n = max < ARRAY_SIZE(boot) ? max : (unsigned)ARRAY_SIZE(boot);

    for (unsigned i = 0; i < n; i++)
        msrs->entries[i] = boot[i];
    msrs->nmsrs = n;
    return n;
}
