/* test_cpu.c: boot vCPU state (long mode and PVH), GDT, page tables, FPU, LAPIC and MSRs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"

static struct guest_mem mem;

static int setup(void **state)
{
    (void)state;
    return guest_mem_init(&mem, 64 * MiB, X86_MMIO_HOLE_START);
}

static int teardown(void **state)
{
    (void)state;
    guest_mem_destroy(&mem);
    return 0;
}

static uint64_t gdt(unsigned sel)
{
    uint64_t v;

    memcpy(&v, guest_mem_ptr(&mem, X86_GDT_ADDR + sel, 8), 8);
    return v;
}

static uint64_t table(uint64_t addr, unsigned index)
{
    uint64_t v;

    memcpy(&v, guest_mem_ptr(&mem, addr + index * 8ULL, 8), 8);
    return v;
}

static void assert_flat(const struct kvm_segment *s, uint16_t sel, uint8_t type)
{
    assert_int_equal(s->selector, sel);
    assert_int_equal(s->base, 0);
    assert_int_equal(s->limit, 0xffffffff);
    assert_int_equal(s->type, type);
    assert_int_equal(s->present, 1);
    assert_int_equal(s->s, 1);
    assert_int_equal(s->dpl, 0);
    assert_int_equal(s->g, 1);
}

static void test_long_mode(void **state)
{
    struct x86_boot_info info = {
        .mode = X86_ENTRY_LINUX64, .entry = 0x1000200, .boot_struct = X86_ZERO_PAGE_ADDR};
    struct kvm_regs regs;
    struct kvm_sregs sregs;

    (void)state;
    memset(mem.map, 0xcc, 1 * MiB); /* stale bytes must not survive in the tables */
    assert_int_equal(x86_boot_cpu_state(&mem, &info, &regs, &sregs), 0);
    assert_int_equal(sregs.cr0, 0x80000031); /* PG | NE | ET | PE */
    assert_int_equal(sregs.cr4, 0x20);       /* PAE */
    assert_int_equal(sregs.efer, 0x500);     /* LMA | LME */
    assert_int_equal(sregs.cr3, X86_PML4_ADDR);
    assert_flat(&sregs.cs, 0x10, 11);
    assert_int_equal(sregs.cs.l, 1);
    assert_int_equal(sregs.cs.db, 0);
    assert_flat(&sregs.ds, 0x18, 3);
    assert_int_equal(sregs.ds.db, 1);
    assert_int_equal(sregs.ds.l, 0);
    assert_memory_equal(&sregs.ss, &sregs.ds, sizeof(sregs.ds));
    assert_memory_equal(&sregs.es, &sregs.ds, sizeof(sregs.ds));
    assert_int_equal(sregs.tr.selector, 0x20);
    assert_int_equal(sregs.tr.type, 11); /* busy TSS */
    assert_int_equal(sregs.tr.s, 0);
    assert_int_equal(sregs.tr.present, 1);
    assert_int_equal(sregs.tr.limit, 0x67);
    assert_int_equal(sregs.ldt.type, 2);
    assert_int_equal(sregs.gdt.base, X86_GDT_ADDR);
    assert_int_equal(sregs.gdt.limit, 6 * 8 - 1);

    assert_int_equal(regs.rip, 0x1000200);
    assert_int_equal(regs.rsi, X86_ZERO_PAGE_ADDR);
    assert_int_equal(regs.rsp, X86_BOOT_STACK_TOP);
    assert_int_equal(regs.rflags, 2);

    assert_int_equal(gdt(0x00), 0);
    assert_int_equal(gdt(0x08), 0);
    assert_int_equal(gdt(0x10), 0x00af9b000000ffffULL);
    assert_int_equal(gdt(0x18), 0x00cf93000000ffffULL);
    assert_int_equal(gdt(0x20), 0x00008b0000000067ULL);
    assert_int_equal(gdt(0x28), 0); /* upper half of the 16-byte TSS descriptor */

    assert_int_equal(table(X86_PML4_ADDR, 0), X86_PDPT_ADDR | 3);
    assert_int_equal(table(X86_PML4_ADDR, 1), 0);
    assert_int_equal(table(X86_PML4_ADDR, 511), 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(table(X86_PDPT_ADDR, i), (X86_PD_ADDR + i * 0x1000) | 3);
    assert_int_equal(table(X86_PDPT_ADDR, 4), 0);
    assert_int_equal(table(X86_PD_ADDR, 0), 0x83);
    assert_int_equal(table(X86_PD_ADDR, 1), 0x200083);
    assert_int_equal(table(X86_PD_ADDR, 2047), 0xffe00083ULL); /* the 2 MiB page below 4 GiB */
}

static void test_pvh(void **state)
{
    struct x86_boot_info info = {
        .mode = X86_ENTRY_PVH, .entry = 0x1000040, .boot_struct = X86_PVH_INFO_ADDR};
    struct kvm_regs regs;
    struct kvm_sregs sregs;

    (void)state;
    assert_int_equal(x86_boot_cpu_state(&mem, &info, &regs, &sregs), 0);
    assert_int_equal(sregs.cr0, 0x11); /* PE | ET, paging off */
    assert_int_equal(sregs.cr4, 0);
    assert_int_equal(sregs.efer, 0);
    assert_int_equal(sregs.cr3, 0);
    assert_flat(&sregs.cs, 0x10, 11);
    assert_int_equal(sregs.cs.db, 1);
    assert_int_equal(sregs.cs.l, 0);
    assert_flat(&sregs.ds, 0x18, 3);
    assert_int_equal(sregs.ds.db, 1);
    assert_int_equal(sregs.tr.type, 11);
    assert_int_equal(sregs.tr.base, 0);
    assert_int_equal(sregs.tr.limit, 0x67);
    assert_int_equal(regs.rip, 0x1000040);
    assert_int_equal(regs.rbx, X86_PVH_INFO_ADDR);
    assert_int_equal(regs.rflags, 2);
    assert_int_equal(gdt(0x10), 0x00cf9b000000ffffULL);
}

static void test_no_low_memory(void **state)
{
    struct guest_mem none = {.fd = -1};
    struct x86_boot_info info = {.mode = X86_ENTRY_LINUX64};
    struct kvm_regs regs;
    struct kvm_sregs sregs;

    (void)state;
    assert_int_equal(x86_boot_cpu_state(&none, &info, &regs, &sregs), -ENOMEM);
}

static void test_fpu(void **state)
{
    struct kvm_fpu fpu;

    (void)state;
    memset(&fpu, 0xff, sizeof(fpu));
    x86_fpu_init(&fpu);
    assert_int_equal(fpu.fcw, 0x37f);
    assert_int_equal(fpu.mxcsr, 0x1f80);
    assert_int_equal(fpu.fsw, 0);
    assert_int_equal(fpu.ftwx, 0);
}

static uint32_t apic_reg(const struct kvm_lapic_state *l, unsigned off)
{
    uint32_t v;

    memcpy(&v, &l->regs[off], 4);
    return v;
}

static void test_lapic(void **state)
{
    struct kvm_lapic_state lapic;
    uint32_t masked = 0x10000, fixed = 0x000000ef;

    (void)state;
    memset(&lapic, 0x5a, sizeof(lapic));
    memcpy(&lapic.regs[0x350], &fixed, 4);
    memcpy(&lapic.regs[0x360], &masked, 4);
    x86_lapic_init(&lapic);
    assert_int_equal(apic_reg(&lapic, 0x350), 0x7ef);   /* ExtINT, other bits kept */
    assert_int_equal(apic_reg(&lapic, 0x360), 0x10400); /* NMI, mask kept */
    assert_int_equal(apic_reg(&lapic, 0x340), 0x5a5a5a5a);
    assert_int_equal(apic_reg(&lapic, 0x370), 0x5a5a5a5a);
}

static void test_msrs(void **state)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry entries[32];
    } m;
    bool misc = false, mtrr = false, lstar = false;

    (void)state;
    memset(&m, 0, sizeof(m));
    assert_int_equal(x86_boot_msrs(&m.hdr, 32), 11);
    assert_int_equal(m.hdr.nmsrs, 11);
    for (unsigned i = 0; i < m.hdr.nmsrs; i++) {
        const struct kvm_msr_entry *e = &m.entries[i];
        if (e->index == 0x1a0) {
            misc = true;
            assert_int_equal(e->data, 1);
        } else if (e->index == 0x2ff) {
            mtrr = true;
            assert_int_equal(e->data, 0x806);
        } else {
            lstar |= e->index == 0xc0000082;
            assert_int_equal(e->data, 0);
        }
    }
    assert_true(misc && mtrr && lstar);
    memset(&m, 0, sizeof(m));
    assert_int_equal(x86_boot_msrs(&m.hdr, 3), 3);
    assert_int_equal(m.hdr.nmsrs, 3);
    assert_int_equal(m.entries[3].index, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_long_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvh, setup, teardown),
        cmocka_unit_test(test_no_low_memory),
        cmocka_unit_test(test_fpu),
        cmocka_unit_test(test_lapic),
        cmocka_unit_test(test_msrs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
