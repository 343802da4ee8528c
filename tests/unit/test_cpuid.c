/* test_cpuid.c: per-vCPU CPUID fix-ups on a synthetic KVM_GET_SUPPORTED_CPUID answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"

#define IDX KVM_CPUID_FLAG_SIGNIFCANT_INDEX

/* What KVM reports on a 16-thread, two-threads-per-core Intel host (x2APIC id 0x2a where the
 * host's CPU leaks through), with AMD's topology leaves added so both paths are exercised. */
static const struct kvm_cpuid_entry2 host[] = {
    {.function = 0x0, .eax = 0x1f, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69},
    {.function = 0x1,
     .eax = 0x000906ea,
     .ebx = 0x2a100800 | 0x42,
     .ecx = 0x77fafbff,
     .edx = 0x0fabfbff},
    {.function = 0x4, .index = 0, .flags = IDX, .eax = 0x1c004121, .ebx = 0x01c0003f},
    {.function = 0x4, .index = 1, .flags = IDX, .eax = 0x1c004122, .ebx = 0x01c0003f},
    {.function = 0x4, .index = 2, .flags = IDX, .eax = 0x1c004143, .ebx = 0x03c0003f},
    {.function = 0x4, .index = 3, .flags = IDX, .eax = 0x1c03c163, .ebx = 0x03c0003f},
    {.function = 0x4, .index = 4, .flags = IDX},
    {.function = 0x6, .eax = 0x77, .ebx = 0x2, .ecx = 0x9, .edx = 0x1},
    {.function = 0x7,
     .index = 0,
     .flags = IDX,
     .eax = 1,
     .ebx = 0x029c6fbb | 0x4,
     .ecx = 0x40000024 | (1u << 30),
     .edx = 0xbc000400},
    {.function = 0x7, .index = 1, .flags = IDX, .eax = 0x10, .ecx = 0x20},
    {.function = 0xa, .eax = 0x07300404, .ebx = 0x7f, .ecx = 0x1, .edx = 0x603},
    {.function = 0xb, .index = 0, .flags = IDX, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 0x2a},
    {.function = 0xb, .index = 1, .flags = IDX, .eax = 4, .ebx = 16, .ecx = 0x201, .edx = 0x2a},
    {.function = 0xb, .index = 2, .flags = IDX, .ecx = 0x2, .edx = 0x2a},
    {.function = 0x1f, .index = 0, .flags = IDX, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 0x2a},
    {.function = 0x1f, .index = 1, .flags = IDX, .eax = 4, .ebx = 16, .ecx = 0x201, .edx = 0x2a},
    {.function = 0x1f, .index = 2, .flags = IDX, .eax = 6, .ebx = 32, .ecx = 0x502, .edx = 0x2a},
    {.function = 0x1f, .index = 3, .flags = IDX, .ecx = 0x3, .edx = 0x2a},
    {.function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b, .ecx = 0x564b4d56, .edx = 0x4d},
    {.function = 0x40000001, .eax = 0x01007afb},
    {.function = 0x80000000, .eax = 0x8000001f},
    {.function = 0x80000008, .eax = 0x3030, .ecx = 0x0001700f},
    {.function = 0x8000001d, .index = 0, .flags = IDX, .eax = 0x00004121, .ebx = 0x01c0003f},
    {.function = 0x8000001d, .index = 1, .flags = IDX, .eax = 0x00004143, .ebx = 0x01c0003f},
    {.function = 0x8000001d, .index = 2, .flags = IDX, .eax = 0x0001c163, .ebx = 0x03c0003f},
    {.function = 0x8000001d, .index = 3, .flags = IDX},
    {.function = 0x8000001e, .eax = 0x2a, .ebx = 0x0115, .ecx = 0x0301, .edx = 0x7},
};

/* Static so a failed assertion leaks nothing. */
static union {
    struct kvm_cpuid2 c;
    uint8_t bytes[sizeof(struct kvm_cpuid2) + sizeof(host)];
} buf;

static struct kvm_cpuid2 *run(unsigned index, unsigned ncpus)
{
    struct kvm_cpuid2 *c = &buf.c;

    c->nent = ARRAY_SIZE(host);
    c->padding = 0;
    memcpy(c->entries, host, sizeof(host));
    x86_cpuid_fixup(c, index, ncpus);
    return c;
}

static struct kvm_cpuid_entry2 *leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++) {
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    }
    fail_msg("leaf 0x%x.%u missing", fn, idx);
    return NULL;
}

static const struct kvm_cpuid_entry2 *orig(uint32_t fn, uint32_t idx)
{
    for (size_t i = 0; i < ARRAY_SIZE(host); i++) {
        if (host[i].function == fn && host[i].index == idx)
            return &host[i];
    }
    return NULL;
}

static void check_unchanged(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    assert_memory_equal(leaf(c, fn, idx), orig(fn, idx), sizeof(struct kvm_cpuid_entry2));
}

/* Everything that does not depend on the topology. */
static void check_features(struct kvm_cpuid2 *c)
{
    struct kvm_cpuid_entry2 *e;

    check_unchanged(c, 0x0, 0);
    check_unchanged(c, 0x40000001, 0);
    check_unchanged(c, 0x80000000, 0);
    check_unchanged(c, 0x7, 1); /* only subleaf 0 is filtered */

    e = leaf(c, 0x1, 0);
    assert_int_equal(e->eax, 0x000906ea);
    assert_int_equal(e->ebx & 0xffff, 0x0842); /* brand index kept, CLFLUSH 8 x 8 bytes */
    assert_int_equal(e->ecx, (0x77fafbffu & ~(1u << 15)) | (1u << 24) | (1u << 31));

    e = leaf(c, 0x6, 0);
    assert_int_equal(e->eax, 0x4);
    assert_int_equal(e->ebx | e->ecx | e->edx, 0);

    e = leaf(c, 0x7, 0);
    assert_int_equal(e->eax, 1);
    assert_int_equal(e->ebx, 0x029c6fbb);
    assert_int_equal(e->ecx, 0x40000004 & ~(1u << 30));
    assert_int_equal(e->edx, 0xbc000400);

    e = leaf(c, 0xa, 0);
    assert_int_equal(e->eax | e->ebx | e->ecx | e->edx, 0);

    e = leaf(c, 0x40000000, 0);
    assert_int_equal(e->eax, 0x40000001);
    assert_memory_equal(&e->ebx, "KVMK", 4);
    assert_memory_equal(&e->ecx, "VMKV", 4);
    assert_memory_equal(&e->edx, "M\0\0\0", 4);

    /* Cache descriptors keep their type, level and geometry. */
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(leaf(c, 0x4, i)->eax & 0x3fff, orig(0x4, i)->eax & 0x3fff);
        assert_int_equal(leaf(c, 0x4, i)->ebx, orig(0x4, i)->ebx);
        assert_int_equal(leaf(c, 0x8000001d, i)->eax & 0x3fff, orig(0x8000001d, i)->eax & 0x3fff);
    }
    check_unchanged(c, 0x4, 4);
    check_unchanged(c, 0x8000001d, 3);
}

static void check_levels(struct kvm_cpuid2 *c, uint32_t fn, unsigned index, unsigned ncpus,
                         uint32_t shift, unsigned nsub)
{
    struct kvm_cpuid_entry2 *e = leaf(c, fn, 0);

    assert_int_equal(e->eax, 0);
    assert_int_equal(e->ebx, 1);
    assert_int_equal(e->ecx, 0x100);
    assert_int_equal(e->edx, index);
    e = leaf(c, fn, 1);
    assert_int_equal(e->eax, shift);
    assert_int_equal(e->ebx, ncpus);
    assert_int_equal(e->ecx, 0x201);
    assert_int_equal(e->edx, index);
    for (uint32_t i = 2; i < nsub; i++) {
        e = leaf(c, fn, i);
        assert_int_equal(e->eax, 0);
        assert_int_equal(e->ebx, 0);
        assert_int_equal(e->ecx, i);
        assert_int_equal(e->edx, index);
    }
}

static void check_topology(unsigned index, unsigned ncpus, uint32_t shift)
{
    struct kvm_cpuid2 *c = run(index, ncpus);
    struct kvm_cpuid_entry2 *e;
    uint32_t last = ncpus - 1;

    check_features(c);
    e = leaf(c, 0x1, 0);
    assert_int_equal(e->ebx >> 24, index);
    assert_int_equal((e->ebx >> 16) & 0xff, ncpus);
    assert_int_equal(e->edx, ncpus > 1 ? 0x1fabfbffu : 0x0fabfbffu);

    /* L1d, L1i and L2 per core; L3 shared by the socket; cores - 1 in EAX[31:26]. */
    for (uint32_t i = 0; i < 4; i++) {
        e = leaf(c, 0x4, i);
        assert_int_equal((e->eax >> 14) & 0xfff, i == 3 ? last : 0);
        assert_int_equal(e->eax >> 26, last);
    }
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal((leaf(c, 0x8000001d, i)->eax >> 14) & 0xfff, i == 2 ? last : 0);

    check_levels(c, 0xb, index, ncpus, shift, 3);
    check_levels(c, 0x1f, index, ncpus, shift, 4);

    e = leaf(c, 0x80000008, 0);
    assert_int_equal(e->eax, 0x3030);
    assert_int_equal(e->ecx, 0x00010000 | (shift << 12) | last);

    e = leaf(c, 0x8000001e, 0);
    assert_int_equal(e->eax, index);
    assert_int_equal(e->ebx, index); /* core id, one thread per core */
    assert_int_equal(e->ecx, 0);
    assert_int_equal(e->edx, 0);
}

static void test_first_of_four(void **state)
{
    (void)state;
    check_topology(0, 4, 2);
}

static void test_last_of_four(void **state)
{
    (void)state;
    check_topology(3, 4, 2);
}

static void test_single(void **state)
{
    (void)state;
    check_topology(0, 1, 0);
}

static void test_odd_count_rounds_shift(void **state)
{
    (void)state;
    check_topology(2, 3, 2);
    check_topology(31, 32, 5);
}

/* A CPU without the optional leaves: nothing is invented, nothing else is touched. */
static void test_missing_leaves(void **state)
{
    struct kvm_cpuid2 *c = &buf.c;

    (void)state;
    c->nent = 2;
    c->entries[0] = host[0];
    c->entries[1] = (struct kvm_cpuid_entry2){.function = 0x80000000, .eax = 0x80000008};
    x86_cpuid_fixup(c, 1, 2);
    assert_int_equal(c->nent, 2);
    assert_memory_equal(&c->entries[0], &host[0], sizeof(host[0]));
    assert_int_equal(c->entries[1].eax, 0x80000008);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_of_four),  cmocka_unit_test(test_last_of_four),
        cmocka_unit_test(test_single),         cmocka_unit_test(test_odd_count_rounds_shift),
        cmocka_unit_test(test_missing_leaves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
