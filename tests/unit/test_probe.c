/* test_probe.c: the probe guest's image and boot state, and how its exits become a verdict. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "doctor/doctor.h"
#include "lib/lib.h"

#define PTE_P  1ULL
#define PTE_RW 2ULL
#define PTE_US 4ULL

static uint8_t image[PROBE_IMAGE_SIZE];

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Walks the page tables as the MMU does: the flags in effect for va (R/W and U/S are the AND of
 * every level), or 0 when some level is not present. */
static uint64_t walk(uint64_t cr3, uint64_t va)
{
    static const unsigned shifts[] = {39, 30, 21, 12};
    uint64_t table = cr3, eff = PTE_P | PTE_RW | PTE_US;

    for (unsigned i = 0; i < 4; i++) {
        uint64_t off = table + ((va >> shifts[i]) & 511) * 8, e;

        assert_true(off + 8 <= sizeof(image));
        e = get_u64(image + off);
        if (!(e & PTE_P))
            return 0;
        eff &= e;
        table = e & 0x000ffffffffff000ULL;
    }
    assert_int_equal(table, va & ~0xfffULL); /* identity map */
    return eff;
}

static void test_image_needs_room(void **state)
{
    (void)state;
    assert_int_equal(probe_build_image(image, PROBE_IMAGE_SIZE - 1), -ENOSPC);
    assert_int_equal(probe_build_image(image, 0), -ENOSPC);
}

static void test_page_permissions(void **state)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_msr_entry msrs[PROBE_NMSRS];

    (void)state;
    memset(image, 0xcc, sizeof(image));
    assert_int_equal(probe_build_image(image, sizeof(image)), 0);
    probe_boot_state(&regs, &sregs, msrs);
    /* The point of the probe: the SYSCALL handler is supervisor-only, the user code is not. */
    assert_int_equal(walk(sregs.cr3, PROBE_SYSCALL_HANDLER), PTE_P);
    assert_int_equal(walk(sregs.cr3, PROBE_ENTRY), PTE_P);
    assert_int_equal(walk(sregs.cr3, PROBE_STUBS + 14 * PROBE_STUB_SIZE), PTE_P);
    assert_int_equal(walk(sregs.cr3, PROBE_UCODE_ADDR), PTE_P | PTE_US);
    assert_int_equal(walk(sregs.cr3, PROBE_USTACK_TOP - 8), PTE_P | PTE_RW | PTE_US);
    assert_int_equal(walk(sregs.cr3, PROBE_KSTACK_TOP - 8), PTE_P | PTE_RW);
    assert_int_equal(walk(sregs.cr3, PROBE_GDT_ADDR), PTE_P | PTE_RW);
    assert_int_equal(walk(sregs.cr3, PROBE_IDT_ADDR), PTE_P);
    /* Everything else faults: the null page, the page tables, beyond the image. */
    assert_int_equal(walk(sregs.cr3, 0), 0);
    assert_int_equal(walk(sregs.cr3, PROBE_PML4_ADDR), 0);
    assert_int_equal(walk(sregs.cr3, PROBE_IMAGE_SIZE), 0);
    assert_int_equal(walk(sregs.cr3, 1ULL << 30), 0);
    /* The stacks start where the boot state and the TSS say. */
    assert_int_equal(regs.rsp, PROBE_KSTACK_TOP);
    assert_int_equal(get_u64(image + PROBE_TSS_ADDR + 4), PROBE_KSTACK_TOP);
}

static unsigned dpl(uint64_t d)
{
    return (unsigned)(d >> 45) & 3;
}

static void test_gdt_matches_star(void **state)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_msr_entry msrs[PROBE_NMSRS];
    const uint8_t *gdt = image + PROBE_GDT_ADDR;
    uint64_t star, kcs, ucs, uds, tss;

    (void)state;
    assert_int_equal(probe_build_image(image, sizeof(image)), 0);
    probe_boot_state(&regs, &sregs, msrs);
    assert_int_equal(msrs[0].index, 0xc0000081);
    star = msrs[0].data;
    /* SYSCALL loads CS from STAR[47:32]; SYSRET uses STAR[63:48] + 16 (CS) and + 8 (SS). */
    kcs = get_u64(gdt + ((star >> 32) & 0xffff));
    assert_true(kcs >> 47 & 1);
    assert_int_equal(dpl(kcs), 0);
    assert_int_equal(kcs >> 53 & 1, 1); /* L: 64-bit */
    assert_int_equal(kcs >> 43 & 1, 1); /* code */
    ucs = get_u64(gdt + (star >> 48) + 16);
    assert_int_equal(ucs, get_u64(gdt + PROBE_SEL_UCODE));
    assert_int_equal(dpl(ucs), 3);
    assert_int_equal(ucs >> 53 & 1, 1);
    uds = get_u64(gdt + (star >> 48) + 8);
    assert_int_equal(dpl(uds), 3);
    assert_int_equal(uds >> 43 & 1, 0); /* data */
    /* The TSS descriptor: base, limit 0x67, busy 64-bit TSS, as loaded in TR. */
    tss = get_u64(gdt + PROBE_SEL_TSS);
    assert_int_equal((tss >> 16 & 0xffffff) | (tss >> 56) << 24, PROBE_TSS_ADDR);
    assert_int_equal(tss & 0xffff, 0x67);
    assert_int_equal(tss >> 40 & 0xf, 0xb);
    assert_int_equal(get_u64(gdt + PROBE_SEL_TSS + 8), 0);
    assert_int_equal(sregs.tr.base, PROBE_TSS_ADDR);
    assert_int_equal(sregs.tr.selector, PROBE_SEL_TSS);
    assert_int_equal(sregs.gdt.base, PROBE_GDT_ADDR);
    assert_int_equal(sregs.gdt.limit, PROBE_GDT_SIZE - 1);
    /* LSTAR is the handler; SFMASK clears IF. */
    assert_int_equal(msrs[1].index, 0xc0000082);
    assert_int_equal(msrs[1].data, PROBE_SYSCALL_HANDLER);
    assert_int_equal(msrs[2].index, 0xc0000084);
    assert_true(msrs[2].data & (1 << 9));
}

static void test_boot_state_is_long_mode_ring0(void **state)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_msr_entry msrs[PROBE_NMSRS];

    (void)state;
    probe_boot_state(&regs, &sregs, msrs);
    assert_int_equal(regs.rip, PROBE_ENTRY);
    assert_int_equal(regs.rflags & (1 << 9), 0); /* interrupts off: no IRQ can interfere */
    assert_int_equal(sregs.efer & 0x501, 0x501); /* SCE, LME, LMA */
    assert_true(sregs.cr0 & (1ULL << 31));
    assert_true(sregs.cr0 & 1);
    assert_true(sregs.cr4 & (1 << 5));
    assert_int_equal(sregs.cr3, PROBE_PML4_ADDR);
    assert_int_equal(sregs.cs.selector, PROBE_SEL_KCODE);
    assert_int_equal(sregs.cs.l, 1);
    assert_int_equal(sregs.cs.db, 0);
    assert_int_equal(sregs.cs.dpl, 0);
    assert_int_equal(sregs.ss.selector, PROBE_SEL_KDATA);
    assert_int_equal(sregs.idt.base, PROBE_IDT_ADDR);
    assert_int_equal(sregs.idt.limit, PROBE_NVECTORS * 16 - 1);
}

static void test_code_and_gates(void **state)
{
    static const uint8_t iretq[] = {0x48, 0xcf}, syscall[] = {0x0f, 0x05};
    const uint8_t *h = image + PROBE_SYSCALL_HANDLER;
    uint32_t v32;

    (void)state;
    assert_int_equal(probe_build_image(image, sizeof(image)), 0);
    /* Ring 3 starts with SYSCALL; the handler loads the success code and writes it out. */
    assert_memory_equal(image + PROBE_UCODE_ADDR, syscall, 2);
    assert_int_equal(h[0], 0xb8);
    memcpy(&v32, h + 1, 4);
    assert_int_equal(v32, PROBE_CODE_SUCCESS);
    assert_int_equal(h[5], 0xe7);
    assert_int_equal(h[6], PROBE_PORT);
    /* The entry pushes SS first and ends with IRETQ. */
    assert_int_equal(image[PROBE_ENTRY], 0x6a);
    assert_int_equal(image[PROBE_ENTRY + 1], PROBE_SEL_UDATA | 3);
    assert_non_null(memmem(image + PROBE_ENTRY, 0x80, iretq, 2));
    for (unsigned v = 0; v < PROBE_NVECTORS; v++) {
        const uint8_t *gate = image + PROBE_IDT_ADDR + v * 16;
        uint64_t target = (uint64_t)(gate[0] | gate[1] << 8) | (uint64_t)(gate[6] | gate[7] << 8)
                                                                   << 16;
        const uint8_t *stub;

        assert_int_equal(gate[2] | gate[3] << 8, PROBE_SEL_KCODE);
        assert_int_equal(gate[5], 0x8e);
        assert_int_equal(get_u64(gate + 8), 0);
        assert_int_equal(target, PROBE_STUBS + v * PROBE_STUB_SIZE);
        stub = image + target;
        memcpy(&v32, stub + 1, 4);
        assert_int_equal(v32, PROBE_CODE_FAULT | v);
        assert_int_equal(stub[5], 0xe7);
        assert_int_equal(stub[6], PROBE_PORT);
    }
}

/* ---- classification ---------------------------------------------------------------------- */

static union {
    struct kvm_run run;
    uint8_t bytes[4096];
} area;
static struct kvm_regs regs;
static struct kvm_sregs sregs;
static struct guest_mem mem;
static struct probe_result res;

static int setup_exit(void **state)
{
    (void)state;
    memset(&area, 0, sizeof(area));
    memset(&regs, 0, sizeof(regs));
    memset(&sregs, 0, sizeof(sregs));
    memset(&res, 0, sizeof(res));
    return guest_mem_init(&mem, GUEST_MEM_MIN_SIZE, 3 * GiB);
}

static int teardown_exit(void **state)
{
    (void)state;
    guest_mem_destroy(&mem);
    return 0;
}

/* The exit of `out PROBE_PORT, eax` with eax = value. */
static void io_exit(uint32_t value)
{
    area.run.exit_reason = KVM_EXIT_IO;
    area.run.io.direction = KVM_EXIT_IO_OUT;
    area.run.io.size = 4;
    area.run.io.port = PROBE_PORT;
    area.run.io.count = 1;
    area.run.io.data_offset = 2048;
    memcpy(area.bytes + 2048, &value, 4);
}

static bool classify(void)
{
    return probe_classify(&area.run, sizeof(area), &regs, &sregs, &mem, &res);
}

static void test_success_needs_ring0_and_rcx(void **state)
{
    (void)state;
    io_exit(PROBE_CODE_SUCCESS);
    sregs.cs.selector = PROBE_SEL_KCODE;
    regs.rcx = PROBE_SYSCALL_RIP;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_OK);
    assert_string_equal(res.reason, "SYSCALL from ring 3 reached the supervisor handler");

    sregs.cs.selector = PROBE_SEL_UCODE | 3; /* arrived, but not in ring 0 */
    sregs.cs.dpl = 3;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);
    assert_non_null(strstr(res.reason, "cs 0x2b (DPL 3)"));

    sregs.cs.selector = PROBE_SEL_KCODE;
    sregs.cs.dpl = 0;
    regs.rcx = 0x1234; /* SYSCALL did not save the return address */
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);
    assert_non_null(strstr(res.reason, "rcx 0x1234"));
}

/* Puts an exception frame at rsp: [error code], rip, cs, rflags, rsp, ss. */
static void push_frame(uint64_t rsp, bool with_err, uint64_t err, uint64_t rip, uint64_t cs)
{
    uint64_t f[6], n = 0;
    uint8_t *p;

    if (with_err)
        f[n++] = err;
    f[n++] = rip;
    f[n++] = cs;
    f[n++] = 0x2;
    f[n++] = PROBE_USTACK_TOP;
    f[n++] = PROBE_SEL_UDATA | 3;
    p = guest_mem_ptr(&mem, rsp, n * 8);
    assert_non_null(p);
    memcpy(p, f, n * 8);
    regs.rsp = rsp;
}

static void test_page_fault_in_ring3_names_syscall(void **state)
{
    (void)state;
    /* What PVM does: SYSCALL lands at LSTAR still in ring 3 and the fetch faults. */
    io_exit(PROBE_CODE_FAULT | 14);
    push_frame(PROBE_KSTACK_TOP - 48, true, 0x5, PROBE_SYSCALL_HANDLER, PROBE_SEL_UCODE | 3);
    sregs.cr2 = PROBE_SYSCALL_HANDLER;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_FAULT);
    assert_string_equal(res.reason,
                        "page fault (#PF) in ring 3 at rip 0x7080, address 0x7080, error code 0x5 "
                        "(user-mode instruction fetch, protection violation): SYSCALL entered its "
                        "handler still in ring 3");

    /* A supervisor write to a missing page. */
    push_frame(PROBE_KSTACK_TOP - 48, true, 0x2, PROBE_ENTRY, PROBE_SEL_KCODE);
    sregs.cr2 = 0x123000;
    assert_true(classify());
    assert_non_null(strstr(res.reason, "in ring 0 at rip 0x7000, address 0x123000"));
    assert_non_null(strstr(res.reason, "(supervisor-mode write, page not present)"));
}

static void test_faults_without_error_code(void **state)
{
    (void)state;
    io_exit(PROBE_CODE_FAULT | 6);
    push_frame(PROBE_KSTACK_TOP - 40, false, 0, PROBE_UCODE_ADDR, PROBE_SEL_UCODE | 3);
    assert_true(classify());
    assert_int_equal(res.status, PROBE_FAULT);
    assert_string_equal(res.reason, "invalid opcode (#UD) in ring 3 at rip 0x8000: SYSCALL is not "
                                    "enabled in ring 3");

    io_exit(PROBE_CODE_FAULT | 13);
    push_frame(PROBE_KSTACK_TOP - 48, true, 0x28, PROBE_ENTRY + 0x10, PROBE_SEL_KCODE);
    assert_true(classify());
    assert_string_equal(res.reason,
                        "general protection fault (#GP) in ring 0 at rip 0x7010, error code 0x28");
}

static void test_fault_frame_outside_memory(void **state)
{
    (void)state;
    io_exit(PROBE_CODE_FAULT | 14);
    regs.rsp = GUEST_MEM_MIN_SIZE - 8; /* the frame would run past the end of RAM */
    assert_true(classify());
    assert_int_equal(res.status, PROBE_FAULT);
    assert_string_equal(res.reason, "page fault (#PF); its frame at rsp 0xfffff8 lies outside "
                                    "guest memory");
    regs.rsp = UINT64_MAX - 8;
    assert_true(classify());
    assert_non_null(strstr(res.reason, "outside guest memory"));
}

static void test_bad_io_is_unexpected(void **state)
{
    (void)state;
    io_exit(PROBE_CODE_FAULT | PROBE_NVECTORS); /* no such stub */
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);
    assert_non_null(strstr(res.reason, "unknown answer 0xfa017020"));

    io_exit(0);
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);

    io_exit(PROBE_CODE_SUCCESS);
    area.run.io.port = 0x3f8;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);
    assert_non_null(strstr(res.reason, "wrote port 0x3f8"));

    io_exit(PROBE_CODE_SUCCESS);
    area.run.io.direction = KVM_EXIT_IO_IN;
    assert_true(classify());
    assert_non_null(strstr(res.reason, "read port 0xf4"));

    io_exit(PROBE_CODE_SUCCESS);
    area.run.io.size = 1;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);

    io_exit(PROBE_CODE_SUCCESS);
    area.run.io.count = 2;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);

    /* Data said to lie outside the run area is never read. */
    io_exit(PROBE_CODE_SUCCESS);
    area.run.io.data_offset = sizeof(area) - 2;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_KVM_ERROR);
    io_exit(PROBE_CODE_SUCCESS);
    area.run.io.data_offset = UINT64_MAX - 1;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_KVM_ERROR);
}

static void test_other_exits(void **state)
{
    (void)state;
    regs.rip = 0x7abc;
    sregs.cs.selector = PROBE_SEL_UCODE | 3;

    area.run.exit_reason = KVM_EXIT_INTR;
    assert_false(classify());

    area.run.exit_reason = KVM_EXIT_SHUTDOWN;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_SHUTDOWN);
    assert_string_equal(res.reason, "triple fault (KVM_EXIT_SHUTDOWN) at rip 0x7abc in ring 3");

    area.run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
    area.run.internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_KVM_ERROR);
    assert_non_null(strstr(res.reason, "suberror 1 (instruction emulation failed)"));

    area.run.exit_reason = KVM_EXIT_FAIL_ENTRY;
    area.run.fail_entry.hardware_entry_failure_reason = 0x21;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_KVM_ERROR);
    assert_string_equal(res.reason, "VM entry failed (hardware reason 0x21)");

    area.run.exit_reason = KVM_EXIT_HLT;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);

    area.run.exit_reason = KVM_EXIT_MMIO;
    area.run.mmio.phys_addr = 0xfee00000;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);
    assert_non_null(strstr(res.reason, "0xfee00000"));

    area.run.exit_reason = 9999;
    assert_true(classify());
    assert_int_equal(res.status, PROBE_UNEXPECTED);
    assert_non_null(strstr(res.reason, "exit reason 9999"));
}

static void test_status_names(void **state)
{
    enum probe_status s;

    (void)state;
    for (unsigned i = 0; i < PROBE_NSTATUS; i++) {
        assert_int_equal(probe_status_parse(probe_status_name((enum probe_status)i), &s), 0);
        assert_int_equal(s, i);
    }
    assert_string_equal(probe_status_name(PROBE_SHUTDOWN), "triple-fault");
    assert_string_equal(probe_status_name((enum probe_status)99), "invalid");
    assert_int_equal(probe_status_parse("invalid", &s), -EINVAL);
    assert_int_equal(probe_status_parse("", &s), -EINVAL);
    assert_int_equal(probe_status_parse("OK", &s), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_needs_room),
        cmocka_unit_test(test_page_permissions),
        cmocka_unit_test(test_gdt_matches_star),
        cmocka_unit_test(test_boot_state_is_long_mode_ring0),
        cmocka_unit_test(test_code_and_gates),
        cmocka_unit_test_setup_teardown(test_success_needs_ring0_and_rcx, setup_exit,
                                        teardown_exit),
        cmocka_unit_test_setup_teardown(test_page_fault_in_ring3_names_syscall, setup_exit,
                                        teardown_exit),
        cmocka_unit_test_setup_teardown(test_faults_without_error_code, setup_exit, teardown_exit),
        cmocka_unit_test_setup_teardown(test_fault_frame_outside_memory, setup_exit, teardown_exit),
        cmocka_unit_test_setup_teardown(test_bad_io_is_unexpected, setup_exit, teardown_exit),
        cmocka_unit_test_setup_teardown(test_other_exits, setup_exit, teardown_exit),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
