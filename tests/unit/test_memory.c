/* test_memory.c: guest RAM layout around the MMIO hole, the checked accessor and discard. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "lib/lib.h"
#include "vmm/vmm.h"

#define HOLE (3 * GiB)

static void test_small_ram_one_region(void **state)
{
    struct guest_mem mem;

    (void)state;
    assert_int_equal(guest_mem_init(&mem, 64 * MiB, HOLE), 0);
    assert_int_equal(mem.nregions, 1);
    assert_int_equal(guest_mem_low_end(&mem), 64 * MiB);
    assert_non_null(guest_mem_ptr(&mem, 0, 64 * MiB));
    assert_non_null(guest_mem_ptr(&mem, 64 * MiB - 1, 1));
    assert_non_null(guest_mem_ptr(&mem, 64 * MiB, 0));
    assert_null(guest_mem_ptr(&mem, 64 * MiB - 1, 2));
    assert_null(guest_mem_ptr(&mem, 64 * MiB, 1));
    assert_null(guest_mem_ptr(&mem, UINT64_MAX, 2));
    assert_null(guest_mem_ptr(&mem, 4096, UINT64_MAX));
    /* Writes through the accessor land in the memfd. */
    *(uint8_t *)guest_mem_ptr(&mem, 4096, 1) = 0xab;
    assert_int_equal(mem.map[4096], 0xab);
    guest_mem_destroy(&mem);
}

static void test_large_ram_splits_around_hole(void **state)
{
    struct guest_mem mem;
    uint8_t *above;

    (void)state;
    /* MAP_NORESERVE: 6 GiB costs nothing until touched. */
    assert_int_equal(guest_mem_init(&mem, 6 * GiB, HOLE), 0);
    assert_int_equal(mem.nregions, 2);
    assert_int_equal(mem.regions[0].size, HOLE);
    assert_int_equal(mem.regions[1].gpa, 4 * GiB);
    assert_int_equal(mem.regions[1].size, 3 * GiB);
    assert_null(guest_mem_ptr(&mem, HOLE, 1)); /* the hole is not RAM */
    assert_null(guest_mem_ptr(&mem, 4 * GiB - 1, 1));
    assert_null(guest_mem_ptr(&mem, HOLE - 4096, 8192)); /* no straddling into the hole */
    above = guest_mem_ptr(&mem, 4 * GiB, 4096);
    assert_non_null(above);
    assert_ptr_equal(above, mem.map + HOLE);
    assert_non_null(guest_mem_ptr(&mem, 7 * GiB - 1, 1));
    assert_null(guest_mem_ptr(&mem, 7 * GiB, 1));
    guest_mem_destroy(&mem);
}

static void test_size_limits(void **state)
{
    struct guest_mem mem;

    (void)state;
    assert_int_equal(guest_mem_init(&mem, 16 * MiB - 1, HOLE), -EINVAL);
    assert_int_equal(guest_mem_init(&mem, 0, HOLE), -EINVAL);
    assert_int_equal(guest_mem_init(&mem, GUEST_MEM_MAX_SIZE + 1, HOLE), -EINVAL);
    assert_int_equal(guest_mem_init(&mem, 64 * GiB, HOLE), 0);
    assert_int_equal(mem.regions[1].size, 61 * GiB);
    guest_mem_destroy(&mem);
    /* Odd sizes round up to a page. */
    assert_int_equal(guest_mem_init(&mem, 16 * MiB + 1, HOLE), 0);
    assert_int_equal(mem.size, 16 * MiB + 4096);
    guest_mem_destroy(&mem);
}

static void test_write(void **state)
{
    struct guest_mem mem;
    static uint8_t big[256 * 1024];

    (void)state;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    assert_int_equal(guest_mem_init(&mem, 6 * GiB, HOLE), 0);
    /* Small copies and pwrite()-sized ones land at the right place, in both regions. */
    assert_int_equal(guest_mem_write(&mem, 0x1000, "abc", 3), 0);
    assert_memory_equal(guest_mem_ptr(&mem, 0x1000, 3), "abc", 3);
    assert_int_equal(guest_mem_write(&mem, 0x100000, big, sizeof(big)), 0);
    assert_memory_equal(guest_mem_ptr(&mem, 0x100000, sizeof(big)), big, sizeof(big));
    assert_int_equal(guest_mem_write(&mem, 5 * GiB, big, sizeof(big)), 0);
    assert_memory_equal(guest_mem_ptr(&mem, 5 * GiB, sizeof(big)), big, sizeof(big));
    /* Out of RAM, into the hole, or wrapping: refused before anything is written. */
    assert_int_equal(guest_mem_write(&mem, HOLE - 4096, big, sizeof(big)), -EFAULT);
    assert_int_equal(guest_mem_write(&mem, 7 * GiB - 1, big, 2), -EFAULT);
    assert_int_equal(guest_mem_write(&mem, UINT64_MAX, big, 2), -EFAULT);
    guest_mem_destroy(&mem);
}

/* The balloon's primitive: a punched hole reads back as zeros and frees the memfd's blocks. */
static void test_discard(void **state)
{
    struct guest_mem mem;
    struct stat st;
    uint8_t zero[8192] = {0};
    uint8_t *p;
    blkcnt_t before;

    (void)state;
    /* A small hole so there are two regions: [0, 8M) and [4G, 4G + 8M). */
    assert_int_equal(guest_mem_init(&mem, 16 * MiB, 8 * MiB), 0);
    assert_int_equal(mem.nregions, 2);
    p = guest_mem_ptr(&mem, 0x10000, 4 * 4096);
    memset(p, 0x5a, 4 * 4096);
    memset(guest_mem_ptr(&mem, 4 * GiB, 4096), 0x77, 4096);
    assert_int_equal(fstat(mem.fd, &st), 0);
    before = st.st_blocks;
    assert_true(before >= (blkcnt_t)(5 * 4096 / 512));

    /* The middle two pages go; their neighbours keep their contents. */
    assert_int_equal(guest_mem_discard(&mem, 0x11000, 8192), 0);
    /* Checked before reading: a read fault on a shmem hole allocates the page again. */
    assert_int_equal(fstat(mem.fd, &st), 0);
    assert_true(st.st_blocks <= before - (blkcnt_t)(8192 / 512));
    assert_memory_equal(p + 4096, zero, 8192);
    assert_int_equal(p[0], 0x5a);
    assert_int_equal(p[4095], 0x5a);
    assert_int_equal(p[3 * 4096], 0x5a);
    /* The region above the hole is addressed by its guest-physical address. */
    assert_int_equal(guest_mem_discard(&mem, 4 * GiB, 4096), 0);
    assert_memory_equal(guest_mem_ptr(&mem, 4 * GiB, 4096), zero, 4096);
    /* Discarded pages are ordinary RAM again when the guest touches them. */
    p[4096] = 1;
    assert_int_equal(p[4096], 1);

    /* Unaligned address or length. */
    assert_int_equal(guest_mem_discard(&mem, 0x11001, 4096), -EINVAL);
    assert_int_equal(guest_mem_discard(&mem, 0x11000, 4095), -EINVAL);
    assert_int_equal(guest_mem_discard(&mem, 0x11000, 100), -EINVAL);
    /* Outside RAM: past the end, in the hole, straddling into the hole, wrapping. */
    assert_int_equal(guest_mem_discard(&mem, 4 * GiB + 8 * MiB, 4096), -EINVAL);
    assert_int_equal(guest_mem_discard(&mem, 8 * MiB, 4096), -EINVAL);
    assert_int_equal(guest_mem_discard(&mem, 8 * MiB - 4096, 8192), -EINVAL);
    assert_int_equal(guest_mem_discard(&mem, UINT64_MAX - 4095, 8192), -EINVAL);
    assert_int_equal(p[0], 0x5a); /* nothing refused touched memory */
    guest_mem_destroy(&mem);
}

/* The bracketed word of shmem_enabled, and nothing that is not one clean word. */
static void test_thp_policy_select(void **state)
{
    char w[16];

    (void)state;
    assert_int_equal(thp_policy_select("always within_size [advise] never deny force\n", w, 16), 0);
    assert_string_equal(w, "advise");
    assert_true(thp_policy_grants_advised(w));
    assert_int_equal(thp_policy_select("[never] always\n", w, 16), 0);
    assert_string_equal(w, "never");
    assert_false(thp_policy_grants_advised(w));
    assert_false(thp_policy_grants_advised("deny"));
    assert_true(thp_policy_grants_advised("within_size"));
    assert_true(thp_policy_grants_advised("force"));
    assert_false(thp_policy_grants_advised(""));
    assert_int_equal(thp_policy_select("always never\n", w, 16), -EINVAL);    /* none chosen */
    assert_int_equal(thp_policy_select("[always] [never]", w, 16), -EINVAL);  /* two */
    assert_int_equal(thp_policy_select("[] never", w, 16), -EINVAL);          /* empty */
    assert_int_equal(thp_policy_select("[al ways] never", w, 16), -EINVAL);   /* two words */
    assert_int_equal(thp_policy_select("[always never", w, 16), -EINVAL);     /* unclosed */
    assert_int_equal(thp_policy_select("x [within_size] y", w, 11), -EINVAL); /* too long */
    assert_int_equal(thp_policy_select("x [within_size] y", w, 12), 0);
    assert_int_equal(thp_shmem_policy("/nonexistent", w, 16), -ENOENT);
}

/* Asking for huge pages follows the live host policy and never fails the VM. */
static void test_use_hugepages(void **state)
{
    struct guest_mem mem;
    char policy[16], live[16];

    (void)state;
    assert_int_equal(guest_mem_init(&mem, 16 * MiB, HOLE), 0);
    bool granted = guest_mem_use_hugepages(&mem, policy, sizeof(policy));
    assert_int_equal(granted, mem.huge);
    if (thp_shmem_policy("", live, sizeof(live)) == 0) {
        assert_string_equal(policy, live);
        assert_int_equal(granted, thp_policy_grants_advised(live));
    } else {
        assert_string_equal(policy, "unknown");
        assert_false(granted);
    }
    /* RAM works the same either way */
    *(uint8_t *)guest_mem_ptr(&mem, 2 * MiB, 1) = 1;
    assert_int_equal(guest_mem_discard(&mem, 2 * MiB, 4096), 0);
    assert_int_equal(mem.map[2 * MiB], 0);
    guest_mem_destroy(&mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_ram_one_region),
        cmocka_unit_test(test_large_ram_splits_around_hole),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_discard),
        cmocka_unit_test(test_thp_policy_select),
        cmocka_unit_test(test_use_hugepages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
