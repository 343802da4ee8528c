/* test_e820.c: the e820 map for RAM below and above the MMIO hole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <asm/e820.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"

static void assert_entry(const struct boot_e820_entry *e, uint64_t addr, uint64_t size,
                         uint32_t type)
{
    assert_int_equal(e->addr, addr);
    assert_int_equal(e->size, size);
    assert_int_equal(e->type, type);
}

static void test_ram_below_hole(void **state)
{
    struct guest_mem mem;
    struct boot_e820_entry e[8];

    (void)state;
    assert_int_equal(guest_mem_init(&mem, 256 * MiB, X86_MMIO_HOLE_START), 0);
    assert_int_equal(x86_e820_build(&mem, e, 8), 3);
    assert_entry(&e[0], 0, X86_EBDA_START, E820_RAM);
    assert_entry(&e[1], X86_EBDA_START, X86_HIMEM_START - X86_EBDA_START, E820_RESERVED);
    assert_entry(&e[2], X86_HIMEM_START, 255 * MiB, E820_RAM);
    guest_mem_destroy(&mem);
}

static void test_ram_above_hole(void **state)
{
    struct guest_mem mem;
    struct boot_e820_entry e[8];

    (void)state;
    /* 4 GiB of RAM: 3 GiB below the hole, 1 GiB moved above 4 GiB (MAP_NORESERVE: free). */
    assert_int_equal(guest_mem_init(&mem, 4 * GiB, X86_MMIO_HOLE_START), 0);
    assert_int_equal(x86_e820_build(&mem, e, 8), 4);
    assert_entry(&e[0], 0, X86_EBDA_START, E820_RAM);
    assert_entry(&e[1], X86_EBDA_START, X86_HIMEM_START - X86_EBDA_START, E820_RESERVED);
    assert_entry(&e[2], X86_HIMEM_START, X86_MMIO_HOLE_START - X86_HIMEM_START, E820_RAM);
    assert_entry(&e[3], 4 * GiB, 1 * GiB, E820_RAM);
    /* Nothing in the map covers the hole. */
    for (unsigned i = 0; i < 4; i++)
        assert_true(e[i].addr + e[i].size <= X86_MMIO_HOLE_START || e[i].addr >= 4 * GiB);
    guest_mem_destroy(&mem);
}

static void test_capacity_respected(void **state)
{
    struct guest_mem mem;
    struct boot_e820_entry e[3] = {{0}};

    (void)state;
    assert_int_equal(guest_mem_init(&mem, 4 * GiB, X86_MMIO_HOLE_START), 0);
    assert_int_equal(x86_e820_build(&mem, e, 2), 2);
    assert_int_equal(e[2].size, 0); /* untouched */
    assert_int_equal(x86_e820_build(&mem, e, 0), 0);
    guest_mem_destroy(&mem);
}

static void test_tiny_low_region(void **state)
{
    /* A region ending below the EBDA (not creatable by guest_mem_init) yields one RAM entry. */
    struct guest_mem mem = {.nregions = 1, .regions = {{.gpa = 0, .size = 0x50000}}};
    struct boot_e820_entry e[4];

    (void)state;
    assert_int_equal(x86_e820_build(&mem, e, 4), 1);
    assert_entry(&e[0], 0, 0x50000, E820_RAM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ram_below_hole),
        cmocka_unit_test(test_ram_above_hole),
        cmocka_unit_test(test_capacity_respected),
        cmocka_unit_test(test_tiny_low_region),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
