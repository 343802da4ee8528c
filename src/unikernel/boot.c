/* boot.c: a unikernel's boot state: GDT, TSS, identity page tables, boot info, and the BSP already
 * in 64-bit mode at the ELF entry (docs/unikernel.md). No real mode, no firmware. */
#include <errno.h>
#include <string.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"
#include "uk.h"

/* Low-memory layout, all below KILN_HVC_BOOT_INFO. */
#define UK_GDT_ADDR  0x1000ULL /* null, code64 0x08, data 0x10, tss 0x18 (two slots) */
#define UK_TSS_ADDR  0x1080ULL /* 104 zero bytes: no stack switches before the guest's own TSS */
#define UK_PML4_ADDR 0x2000ULL
#define UK_PDPT_ADDR 0x3000ULL
#define UK_PD_ADDR   0x4000ULL /* three page directories: 3 GiB of 2 MiB pages */
#define UK_PT0_ADDR  0x7000ULL /* 4 KiB pages for the first 2 MiB, page 0 absent */
#define UK_NPD       3

#define SEL_CODE 0x08
#define SEL_DATA 0x10
#define SEL_TSS  0x18

/* CR4 bits only the unikernel sets: SSE state saved and SIMD exceptions reported, so a runtime
 * built with SSE works. */
#define CR4_OSFXSR     (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)

#define TSS_LIMIT 0x67

static const char brand[48] = "kiln unikernel virtual CPU";

/* Writes the GDT; the segment registers below mirror its descriptors. */
static int write_gdt(struct guest_mem *mem)
{
    uint64_t gdt[5] = {
        0,
        0x00af9b000000ffffULL, /* code: G, L, present, DPL 0, execute/read, accessed */
        0x00cf93000000ffffULL, /* data: G, D/B, present, DPL 0, read/write, accessed */
        /* 64-bit busy TSS: base UK_TSS_ADDR, limit TSS_LIMIT; upper half holds base[63:32] 0 */
        ((UK_TSS_ADDR & 0xffffffULL) << 16) | TSS_LIMIT | (0x8bULL << 40) |
            ((UK_TSS_ADDR >> 24) << 56),
        0,
    };
    void *dst = guest_mem_ptr(mem, UK_GDT_ADDR, sizeof(gdt));
    void *tss = guest_mem_ptr(mem, UK_TSS_ADDR, TSS_LIMIT + 1);

    if (!dst || !tss)
        return -ENOMEM;
    memcpy(dst, gdt, sizeof(gdt));
    memset(tss, 0, TSS_LIMIT + 1);
    return 0;
}

/* Identity map of [0, mem->size rounded up to 2 MiB): 2 MiB pages, except the first 2 MiB in
 * 4 KiB pages with page 0 left out, so a NULL dereference faults instead of reading the GDT. */
static int write_page_tables(struct guest_mem *mem)
{
    uint64_t *pml4 = guest_mem_ptr(mem, UK_PML4_ADDR, 4096);
    uint64_t *pdpt = guest_mem_ptr(mem, UK_PDPT_ADDR, 4096);
    uint64_t *pd = guest_mem_ptr(mem, UK_PD_ADDR, UK_NPD * 4096);
    uint64_t *pt = guest_mem_ptr(mem, UK_PT0_ADDR, 4096);
    uint64_t npages = ALIGN_UP(mem->size, 2 * MiB) >> 21;

    if (!pml4 || !pdpt || !pd || !pt || npages > UK_NPD * 512ULL)
        return -ENOMEM;
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    memset(pd, 0, UK_NPD * 4096);
    pml4[0] = UK_PDPT_ADDR | X86_PTE_P | X86_PTE_RW;
    for (uint64_t i = 0; i < UK_NPD; i++)
        pdpt[i] = (UK_PD_ADDR + i * 4096) | X86_PTE_P | X86_PTE_RW;
    pd[0] = UK_PT0_ADDR | X86_PTE_P | X86_PTE_RW;
    for (uint64_t i = 1; i < npages; i++)
        pd[i] = (i << 21) | X86_PTE_P | X86_PTE_RW | X86_PTE_PS;
    pt[0] = 0;
    for (uint64_t i = 1; i < 512; i++)
        pt[i] = (i << 12) | X86_PTE_P | X86_PTE_RW;
    return 0;
}

int uk_boot_setup(struct guest_mem *mem, const struct uk_image *img,
                  const struct kiln_hvc_boot_info *info, struct kvm_regs *regs,
                  struct kvm_sregs *sregs)
{
    int ret;

    if ((ret = write_gdt(mem)) < 0 || (ret = write_page_tables(mem)) < 0)
        return ret;
    ret = guest_mem_write(mem, KILN_HVC_BOOT_INFO, info, sizeof(*info));
    if (ret < 0)
        return -ENOMEM;

    memset(regs, 0, sizeof(*regs));
    memset(sregs, 0, sizeof(*sregs));
    sregs->cs = x86_flat_segment(SEL_CODE, 0xb, true);
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss =
        x86_flat_segment(SEL_DATA, 0x3, false);
    sregs->tr = (struct kvm_segment){
        .base = UK_TSS_ADDR, .limit = TSS_LIMIT, .selector = SEL_TSS, .type = 0xb, .present = 1};
    sregs->ldt = (struct kvm_segment){.limit = 0xffff, .type = 2, .present = 1};
    sregs->gdt.base = UK_GDT_ADDR;
    sregs->gdt.limit = 5 * 8 - 1;
    sregs->idt.base = 0;
    sregs->idt.limit = 0; /* any exception before the guest installs an IDT triple-faults */
    sregs->cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG;
    sregs->cr3 = UK_PML4_ADDR;
    sregs->cr4 = X86_CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs->efer = X86_EFER_LME | X86_EFER_LMA;

    regs->rflags = 2;
    regs->rip = img->entry;
    regs->rdi = KILN_HVC_BOOT_INFO;
    regs->rsp = ALIGN_DOWN(mem->size, 16ULL);
    return 0;
}

void uk_cpuid_brand(struct kvm_cpuid2 *cpuid, unsigned index)
{
    (void)index;
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

        if (e->function >= 0x80000002 && e->function <= 0x80000004) {
            const char *part = brand + (e->function - 0x80000002) * 16;
            memcpy(&e->eax, part, 4);
            memcpy(&e->ebx, part + 4, 4);
            memcpy(&e->ecx, part + 8, 4);
            memcpy(&e->edx, part + 12, 4);
        }
    }
}
