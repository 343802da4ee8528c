/* test_bus.c: the PIO/MMIO registry: ordering, overlaps, lookups and unhandled accesses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/vmm.h"

struct hit {
    uint64_t offset;
    uint32_t len;
    bool is_write;
    int calls;
};

static void record(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct hit *h = opaque;

    h->offset = offset;
    h->len = len;
    h->is_write = is_write;
    h->calls++;
    if (!is_write)
        memset(data, 0x5a, len);
}

static void test_register_and_dispatch(void **state)
{
    struct bus bus;
    struct hit a = {0}, b = {0};
    uint8_t data[4] = {0};

    (void)state;
    bus_init(&bus);
    assert_int_equal(bus_register(&bus, BUS_PIO, 0x3f8, 8, record, &a, "a"), 0);
    assert_int_equal(bus_register(&bus, BUS_PIO, 0x60, 5, record, &b, "b"), 0);
    assert_true(bus_dispatch(&bus, BUS_PIO, 0x3fd, data, 1, false));
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.offset, 5);
    assert_int_equal(data[0], 0x5a);
    assert_true(bus_dispatch(&bus, BUS_PIO, 0x64, data, 1, true));
    assert_int_equal(b.offset, 4);
    assert_true(b.is_write);
    /* The same address in the other space is a different thing. */
    assert_null(bus_find(&bus, BUS_MMIO, 0x3f8));
    bus_destroy(&bus);
}

static void test_overlap_and_bounds(void **state)
{
    struct bus bus;
    struct hit h = {0};

    (void)state;
    bus_init(&bus);
    assert_int_equal(bus_register(&bus, BUS_MMIO, 0x1000, 0x1000, record, &h, "x"), 0);
    assert_int_equal(bus_register(&bus, BUS_MMIO, 0x1fff, 1, record, &h, "y"), -EEXIST);
    assert_int_equal(bus_register(&bus, BUS_MMIO, 0x0fff, 2, record, &h, "y"), -EEXIST);
    assert_int_equal(bus_register(&bus, BUS_MMIO, 0x0800, 0x2000, record, &h, "y"), -EEXIST);
    assert_int_equal(bus_register(&bus, BUS_MMIO, 0x2000, 1, record, &h, "y"), 0);
    assert_int_equal(bus_register(&bus, BUS_MMIO, 0x0fff, 1, record, &h, "z"), 0);
    assert_int_equal(bus_register(&bus, BUS_MMIO, 0x5000, 0, record, &h, "zero"), -EINVAL);
    assert_int_equal(bus_register(&bus, BUS_MMIO, UINT64_MAX, 2, record, &h, "wrap"), -EINVAL);
    assert_non_null(bus_find(&bus, BUS_MMIO, 0x1fff));
    assert_non_null(bus_find(&bus, BUS_MMIO, 0x0fff));
    assert_null(bus_find(&bus, BUS_MMIO, 0x2001));
    assert_null(bus_find(&bus, BUS_MMIO, 0));
    bus_destroy(&bus);
}

static void test_full_registry(void **state)
{
    struct bus bus;
    struct hit h = {0};

    (void)state;
    bus_init(&bus);
    for (unsigned i = 0; i < BUS_MAX_RANGES; i++)
        assert_int_equal(bus_register(&bus, BUS_PIO, 0x100 + 2 * i, 1, record, &h, "n"), 0);
    assert_int_equal(bus_register(&bus, BUS_PIO, 0x1000, 1, record, &h, "n"), -ENOSPC);
    for (unsigned i = 0; i < BUS_MAX_RANGES; i++) {
        assert_non_null(bus_find(&bus, BUS_PIO, 0x100 + 2 * i));
        assert_null(bus_find(&bus, BUS_PIO, 0x101 + 2 * i));
    }
    bus_destroy(&bus);
}

static void test_unhandled_reads_all_ones(void **state)
{
    struct bus bus;
    uint8_t data[8] = {0};

    (void)state;
    bus_init(&bus);
    for (int i = 0; i < 3 * BUS_MAX_UNHANDLED; i++)
        assert_false(bus_dispatch(&bus, BUS_PIO, (uint64_t)i, data, 4, false));
    assert_memory_equal(data, "\xff\xff\xff\xff\0\0\0\0", 8);
    /* The logged-once set is bounded however many addresses a guest probes. */
    assert_int_equal(bus.nunhandled, BUS_MAX_UNHANDLED);
    bus_destroy(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_dispatch),
        cmocka_unit_test(test_overlap_and_bounds),
        cmocka_unit_test(test_full_registry),
        cmocka_unit_test(test_unhandled_reads_all_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
