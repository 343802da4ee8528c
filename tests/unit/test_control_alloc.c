/* test_control_alloc.c: the device-memory window's allocator: first fit, alignment, coalescing of
 * freed ranges, reuse, and its limits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "control/control.h"

#define BASE  (8ULL << 30)
#define ALIGN (2ULL << 20)

static void test_take_aligned(void **state)
{
    struct ctl_alloc a;
    uint64_t x, y;

    (void)state;
    ctl_alloc_init(&a, BASE, 64 * ALIGN, ALIGN);
    assert_int_equal(ctl_alloc_take(&a, 4096, &x), 0);
    assert_int_equal(x, BASE);
    /* 4 KiB took a whole 2 MiB unit: the next range starts one unit later. */
    assert_int_equal(ctl_alloc_take(&a, ALIGN + 1, &y), 0);
    assert_int_equal(y, BASE + ALIGN);
    assert_int_equal(ctl_alloc_free_bytes(&a), 61 * ALIGN);
    assert_int_equal(ctl_alloc_take(&a, 0, &x), -EINVAL);
    assert_int_equal(ctl_alloc_take(&a, UINT64_MAX, &x), -EINVAL);
    assert_int_equal(ctl_alloc_take(&a, 62 * ALIGN, &x), -ENOSPC);
    assert_int_equal(ctl_alloc_take(&a, 61 * ALIGN, &x), 0);
    assert_int_equal(ctl_alloc_take(&a, 1, &x), -ENOSPC);
}

static void test_reuse_and_coalesce(void **state)
{
    struct ctl_alloc a;
    uint64_t r[4], x;

    (void)state;
    ctl_alloc_init(&a, BASE, 4 * ALIGN, ALIGN);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ctl_alloc_take(&a, ALIGN, &r[i]), 0);
        assert_int_equal(r[i], BASE + (uint64_t)i * ALIGN);
    }
    /* Unregister then re-register reuses the very range. */
    assert_int_equal(ctl_alloc_give(&a, r[1], ALIGN), 0);
    assert_int_equal(ctl_alloc_take(&a, ALIGN, &x), 0);
    assert_int_equal(x, r[1]);
    /* Two separate holes do not fit a double-sized region... */
    assert_int_equal(ctl_alloc_give(&a, r[0], ALIGN), 0);
    assert_int_equal(ctl_alloc_give(&a, r[2], ALIGN), 0);
    assert_int_equal(a.nfree, 2);
    assert_int_equal(ctl_alloc_take(&a, 2 * ALIGN, &x), -ENOSPC);
    /* ...until the range between them is freed: all three merge into one. */
    assert_int_equal(ctl_alloc_give(&a, r[1], ALIGN), 0);
    assert_int_equal(a.nfree, 1);
    assert_int_equal(ctl_alloc_take(&a, 3 * ALIGN, &x), 0);
    assert_int_equal(x, BASE);
    /* Freeing everything gives back one range covering the window. */
    assert_int_equal(ctl_alloc_give(&a, BASE, 3 * ALIGN), 0);
    assert_int_equal(ctl_alloc_give(&a, r[3], ALIGN), 0);
    assert_int_equal(a.nfree, 1);
    assert_int_equal(a.free[0].start, BASE);
    assert_int_equal(a.free[0].len, 4 * ALIGN);
}

static void test_merge_with_next(void **state)
{
    struct ctl_alloc a;
    uint64_t r[3];

    (void)state;
    ctl_alloc_init(&a, BASE, 3 * ALIGN, ALIGN);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctl_alloc_take(&a, ALIGN, &r[i]), 0);
    assert_int_equal(ctl_alloc_give(&a, r[2], ALIGN), 0);
    assert_int_equal(ctl_alloc_give(&a, r[1], ALIGN), 0); /* merges with the range after it */
    assert_int_equal(a.nfree, 1);
    assert_int_equal(a.free[0].start, r[1]);
    assert_int_equal(a.free[0].len, 2 * ALIGN);
}

static void test_give_refuses_bad_ranges(void **state)
{
    struct ctl_alloc a;
    uint64_t x;

    (void)state;
    ctl_alloc_init(&a, BASE, 8 * ALIGN, ALIGN);
    assert_int_equal(ctl_alloc_take(&a, 2 * ALIGN, &x), 0);
    assert_int_equal(ctl_alloc_give(&a, BASE - ALIGN, ALIGN), -EINVAL);     /* below the window */
    assert_int_equal(ctl_alloc_give(&a, BASE + 8 * ALIGN, ALIGN), -EINVAL); /* above */
    assert_int_equal(ctl_alloc_give(&a, BASE + 4096, ALIGN), -EINVAL);      /* unaligned */
    assert_int_equal(ctl_alloc_give(&a, BASE + 2 * ALIGN, ALIGN), -EINVAL); /* already free */
    assert_int_equal(ctl_alloc_give(&a, BASE + ALIGN, 2 * ALIGN), -EINVAL); /* overlaps free */
    assert_int_equal(ctl_alloc_give(&a, BASE, 0), -EINVAL);
    assert_int_equal(ctl_alloc_give(&a, UINT64_MAX - ALIGN + 1, ALIGN), -EINVAL);
    assert_int_equal(ctl_alloc_give(&a, BASE, 2 * ALIGN), 0);
    assert_int_equal(ctl_alloc_free_bytes(&a), 8 * ALIGN);
}

/* The most fragmented case: every other unit allocated, then all freed in a scattered order. */
static void test_fragmentation_limit(void **state)
{
    struct ctl_alloc a;
    uint64_t r[CTL_ALLOC_MAX_RANGES], x;

    (void)state;
    ctl_alloc_init(&a, BASE, CTL_ALLOC_MAX_RANGES * ALIGN, ALIGN);
    for (int i = 0; i < CTL_ALLOC_MAX_RANGES; i++)
        assert_int_equal(ctl_alloc_take(&a, ALIGN, &r[i]), 0);
    assert_int_equal(ctl_alloc_take(&a, ALIGN, &x), -ENOSPC);
    for (int i = 0; i < CTL_ALLOC_MAX_RANGES; i += 2)
        assert_int_equal(ctl_alloc_give(&a, r[i], ALIGN), 0);
    assert_int_equal(a.nfree, CTL_ALLOC_MAX_RANGES / 2);
    for (int i = CTL_ALLOC_MAX_RANGES - 1; i > 0; i -= 2)
        assert_int_equal(ctl_alloc_give(&a, r[i], ALIGN), 0);
    assert_int_equal(a.nfree, 1);
    assert_int_equal(ctl_alloc_free_bytes(&a), CTL_ALLOC_MAX_RANGES * ALIGN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_aligned),        cmocka_unit_test(test_reuse_and_coalesce),
        cmocka_unit_test(test_merge_with_next),     cmocka_unit_test(test_give_refuses_bad_ranges),
        cmocka_unit_test(test_fragmentation_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
