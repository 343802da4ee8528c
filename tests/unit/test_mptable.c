/* test_mptable.c: the MP table read back from real guest memory as a guest would parse it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"
#include "vmm/vmm.h"

#define EBDA_END 0xa0000ULL

static struct guest_mem mem;

static int setup(void **state)
{
    (void)state;
    return guest_mem_init(&mem, 16 * MiB, X86_MMIO_HOLE_START);
}

static int teardown(void **state)
{
    (void)state;
    guest_mem_destroy(&mem);
    return 0;
}

static const uint8_t *at(uint64_t gpa, uint64_t len)
{
    const uint8_t *p = guest_mem_ptr(&mem, gpa, len);
    assert_non_null(p);
    return p;
}

static uint32_t rd(const uint8_t *p, unsigned off, unsigned size)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)p[off + i] << (8 * i);
    return v;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
    uint8_t s = 0;
    while (len--)
        s += *p++;
    return s;
}

/* What the guest sees, entry counts by type. */
struct parsed {
    unsigned cpus, buses, ioapics, ioints, lints;
    uint8_t ioapic_id;
    uint32_t pins; /* bitmap of IOAPIC pins with an I/O interrupt entry */
    const uint8_t *cpu[X86_MAX_CPUS];
    const uint8_t *ioint[32];
    const uint8_t *lint[2];
};

static void parse(struct parsed *out)
{
    const uint8_t *mpf, *cfg, *e;
    uint32_t cfg_gpa, len, count;

    memset(out, 0, sizeof(*out));
    /* The floating pointer: found by the guest's scan of the EBDA's first KiB. */
    mpf = at(X86_MPTABLE_ADDR, 16);
    assert_memory_equal(mpf, "_MP_", 4);
    assert_int_equal(X86_MPTABLE_ADDR % 16, 0);
    assert_int_equal(mpf[8], 1); /* length in paragraphs */
    assert_int_equal(mpf[9], 4); /* spec 1.4 */
    assert_int_equal(sum(mpf, 16), 0);
    assert_int_equal(mpf[11] | mpf[12] | mpf[13] | mpf[14] | mpf[15], 0);
    cfg_gpa = rd(mpf, 4, 4);

    cfg = at(cfg_gpa, 44);
    assert_memory_equal(cfg, "PCMP", 4);
    len = rd(cfg, 4, 2);
    assert_int_equal(cfg[6], 4);
    assert_memory_equal(cfg + 8, "KILN    ", 8);
    assert_memory_equal(cfg + 16, "KILN        ", 12);
    assert_int_equal(rd(cfg, 36, 4), X86_LAPIC_ADDR);
    assert_true(cfg_gpa + len <= EBDA_END);
    cfg = at(cfg_gpa, len);
    assert_int_equal(sum(cfg, len), 0);
    count = rd(cfg, 34, 2);

    e = cfg + 44;
    for (uint32_t i = 0; i < count; i++) {
        assert_true(e < cfg + len);
        switch (e[0]) {
        case 0:
            assert_true(out->cpus < X86_MAX_CPUS);
            out->cpu[out->cpus++] = e;
            e += 20;
            break;
        case 1:
            assert_memory_equal(e + 2, "ISA   ", 6);
            assert_int_equal(e[1], 0);
            out->buses++;
            e += 8;
            break;
        case 2:
            out->ioapic_id = e[1];
            assert_int_equal(e[2], 0x11);
            assert_int_equal(e[3], 1);
            assert_int_equal(rd(e, 4, 4), X86_IOAPIC_ADDR);
            out->ioapics++;
            e += 8;
            break;
        case 3:
            assert_true(out->ioints < 32);
            out->ioint[out->ioints++] = e;
            assert_false(out->pins & (1u << e[7])); /* one entry per pin */
            out->pins |= 1u << e[7];
            e += 8;
            break;
        case 4:
            assert_true(out->lints < 2);
            out->lint[out->lints++] = e;
            e += 8;
            break;
        default:
            fail_msg("unknown MP entry type %u", e[0]);
        }
    }
    assert_ptr_equal(e, cfg + len); /* the length covers exactly the entries */
}

static void check(const struct x86_platform *plat, unsigned ioints)
{
    struct parsed p;

    assert_int_equal(x86_mptable_write(&mem, plat), 0);
    parse(&p);
    assert_int_equal(p.cpus, plat->ncpus);
    for (unsigned i = 0; i < p.cpus; i++) {
        const uint8_t *c = p.cpu[i];
        assert_int_equal(c[1], i);              /* local APIC id */
        assert_int_equal(c[2], 0x14);           /* local APIC version */
        assert_int_equal(c[3], i == 0 ? 3 : 1); /* enabled, BSP on CPU 0 only */
        assert_int_equal(rd(c, 4, 4), 0x600);   /* signature */
        assert_int_equal(rd(c, 8, 4), 0x201);   /* FPU and APIC */
    }
    assert_int_equal(p.buses, 1);
    assert_int_equal(p.ioapics, 1);
    assert_int_equal(p.ioapic_id, plat->ncpus);
    assert_int_equal(p.ioints, ioints);
    for (unsigned i = 0; i < p.ioints; i++) {
        const uint8_t *e = p.ioint[i];
        assert_int_equal(e[1], 0);           /* INT */
        assert_int_equal(rd(e, 2, 2), 0x5);  /* edge, active high */
        assert_int_equal(e[4], 0);           /* ISA bus */
        assert_int_equal(e[5], e[7]);        /* IRQ n on pin n */
        assert_int_equal(e[6], plat->ncpus); /* to the IOAPIC */
    }
    assert_int_equal(p.pins & 0xffff, 0xffff); /* every ISA IRQ */
    for (unsigned i = 0; i < plat->nvirtio; i++)
        assert_true(p.pins & (1u << plat->virtio[i].gsi));
    assert_int_equal(p.lints, 2);
    assert_int_equal(p.lint[0][1], 3); /* ExtINT */
    assert_int_equal(p.lint[0][6], 0xff);
    assert_int_equal(p.lint[0][7], 0); /* LINT0 */
    assert_int_equal(p.lint[1][1], 1); /* NMI */
    assert_int_equal(p.lint[1][6], 0xff);
    assert_int_equal(p.lint[1][7], 1); /* LINT1 */
}

static struct x86_platform platform(unsigned ncpus, unsigned nvirtio)
{
    struct x86_platform plat = {.ncpus = ncpus, .nvirtio = nvirtio};

    for (unsigned i = 0; i < nvirtio; i++)
        plat.virtio[i] =
            (struct x86_virtio_dev){.base = X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_SIZE,
                                    .size = X86_VIRTIO_MMIO_SIZE,
                                    .gsi = X86_VIRTIO_FIRST_GSI + i};
    return plat;
}

static void test_one_cpu(void **state)
{
    struct x86_platform plat = platform(1, 0);

    (void)state;
    check(&plat, 16);
}

static void test_four_cpus_three_devices(void **state)
{
    struct x86_platform plat = platform(4, 3);

    (void)state;
    check(&plat, 16); /* GSIs 5..7 are ISA IRQs already listed */
}

static void test_largest_fits(void **state)
{
    struct x86_platform plat = platform(X86_MAX_CPUS, X86_MAX_VIRTIO);

    (void)state;
    check(&plat, 16 + 5); /* GSIs 16..20 beyond the ISA IRQs */
}

static void test_high_gsis_listed_once(void **state)
{
    struct x86_platform plat = platform(2, 3);

    (void)state;
    plat.virtio[0].gsi = 23;
    plat.virtio[1].gsi = 16;
    plat.virtio[2].gsi = 23;
    check(&plat, 18);
}

static void test_rewrite_clears_old_entries(void **state)
{
    struct x86_platform big = platform(X86_MAX_CPUS, X86_MAX_VIRTIO), small = platform(1, 0);
    struct parsed p;

    (void)state;
    assert_int_equal(x86_mptable_write(&mem, &big), 0);
    assert_int_equal(x86_mptable_write(&mem, &small), 0);
    parse(&p);
    assert_int_equal(p.cpus, 1);
    /* Nothing of the larger table is left behind after the smaller one. */
    const uint8_t *cfg = at(X86_MPTABLE_ADDR + 16, 44);
    uint32_t len = rd(cfg, 4, 2);
    const uint8_t *rest = at(X86_MPTABLE_ADDR + 16 + len, EBDA_END - X86_MPTABLE_ADDR - 16 - len);
    for (uint64_t i = 0; i < EBDA_END - X86_MPTABLE_ADDR - 16 - len; i++)
        assert_int_equal(rest[i], 0);
}

static void test_rejects(void **state)
{
    struct x86_platform plat = platform(0, 0);
    struct guest_mem none = {.fd = -1};

    (void)state;
    assert_int_equal(x86_mptable_write(&mem, &plat), -EINVAL);
    plat.ncpus = X86_MAX_CPUS + 1;
    assert_int_equal(x86_mptable_write(&mem, &plat), -EINVAL);
    plat = platform(1, 1);
    plat.nvirtio = X86_MAX_VIRTIO + 1;
    assert_int_equal(x86_mptable_write(&mem, &plat), -EINVAL);
    plat = platform(1, 1);
    plat.virtio[0].gsi = 24; /* past the IOAPIC's pins */
    assert_int_equal(x86_mptable_write(&mem, &plat), -EINVAL);
    plat = platform(1, 1);
    assert_int_equal(x86_mptable_write(&none, &plat), -ENOMEM); /* no RAM under the EBDA */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_cpu),
        cmocka_unit_test(test_four_cpus_three_devices),
        cmocka_unit_test(test_largest_fits),
        cmocka_unit_test(test_high_gsis_listed_once),
        cmocka_unit_test(test_rewrite_clears_old_entries),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
