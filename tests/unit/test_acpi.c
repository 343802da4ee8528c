/* test_acpi.c: the AML emitter's encodings, and the ACPI tables read back from real guest memory
 * as a guest finds them (legacy RSDP scan, XSDT, checksums); iasl cross-checks when installed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/aml.h"
#include "arch/x86/x86.h"
#include "lib/lib.h"
#include "vmm/vmm.h"

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

/* ---- AML encodings ----------------------------------------------------------------------------
 */

static void expect_pkglen(size_t body, unsigned n, const uint8_t *want)
{
    uint8_t out[4];

    assert_int_equal(aml_pkglen_encode(body, out), n);
    assert_memory_equal(out, want, n);
}

static void test_pkglen(void **state)
{
    uint8_t out[4];

    (void)state;
    expect_pkglen(0, 1, (const uint8_t[]){0x01});
    expect_pkglen(0x3e, 1, (const uint8_t[]){0x3f});
    expect_pkglen(0x3f, 2, (const uint8_t[]){0x41, 0x04}); /* 0x41 total */
    expect_pkglen(0xffd, 2, (const uint8_t[]){0x4f, 0xff});
    expect_pkglen(0xffe, 3, (const uint8_t[]){0x81, 0x00, 0x01}); /* 0x1001 total */
    expect_pkglen(0xffffc, 3, (const uint8_t[]){0x8f, 0xff, 0xff});
    expect_pkglen(0xffffd, 4, (const uint8_t[]){0xc1, 0x00, 0x00, 0x01});
    expect_pkglen(0xffffffb, 4, (const uint8_t[]){0xcf, 0xff, 0xff, 0xff});
    assert_int_equal(aml_pkglen_encode(0xffffffc, out), 0); /* past 2^28 */
}

static void test_aml_objects(void **state)
{
    static const uint8_t want[] = {
        0x00, 0x01, 0x0a, 0x02, 0x0a, 0xff, 0x0b, 0x00, 0x01, 0x0c, 0x00, 0x00,
        0x01, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* integers */
        0x0d, 'a',  'b',  0x00,                                           /* "ab" */
        0x0c, 0x41, 0xd0, 0x05, 0x01,                                     /* EisaId PNP0501 */
        0x08, '\\', '_',  'S',  'B',  '_',  0x12, 0x04, 0x02, 0x00, 0x01, /* Name, Package */
        0x11, 0x05, 0x0a, 0x02, 0x79, 0x00,                               /* Buffer */
        0x10, 0x05, 'A',  'B',  'C',  'D',                                /* Scope */
        0x5b, 0x82, 0x05, 'V',  'I',  'O',  '0',                          /* Device */
    };
    uint8_t buf[128], end[2] = {0x79, 0x00};
    struct aml a;
    size_t mark;

    (void)state;
    aml_init(&a, buf, sizeof(buf));
    aml_integer(&a, 0);
    aml_integer(&a, 1);
    aml_integer(&a, 2);
    aml_integer(&a, 0xff);
    aml_integer(&a, 0x100);
    aml_integer(&a, 0x10000);
    aml_integer(&a, 0x100000000ULL);
    aml_string(&a, "ab");
    aml_eisaid(&a, "PNP0501");
    aml_name(&a, "\\_SB_");
    mark = aml_package(&a, 2);
    aml_integer(&a, 0);
    aml_integer(&a, 1);
    aml_close(&a, mark);
    aml_buffer(&a, end, sizeof(end));
    aml_close(&a, aml_scope(&a, "ABCD"));
    aml_close(&a, aml_device(&a, "VIO0"));
    assert_false(a.bad);
    assert_int_equal(a.len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

/* A package whose body crosses the one-byte PkgLength limit gets a two-byte one. */
static void test_aml_long_package(void **state)
{
    uint8_t buf[256];
    struct aml a;
    size_t mark;

    (void)state;
    aml_init(&a, buf, sizeof(buf));
    mark = aml_package(&a, 40);
    for (int i = 0; i < 40; i++)
        aml_integer(&a, 0x80); /* two bytes each: body 81 bytes */
    aml_close(&a, mark);
    assert_false(a.bad);
    assert_int_equal(a.len, 1 + 2 + 81);
    assert_int_equal(buf[0], 0x12);
    assert_int_equal(buf[1], 0x40 | (83 & 0xf));
    assert_int_equal(buf[2], 83 >> 4);
    assert_int_equal(buf[3], 40);
    assert_int_equal(buf[4], 0x0a);
}

static void test_aml_rejects(void **state)
{
    uint8_t buf[8];
    struct aml a;
    static const char *bad_names[] = {"_S5", "1ABC", "abcd", "\\AB", "ABCDE"};
    static const char *bad_ids[] = {"PNP050", "pnp0501", "PNP05G1", "PNP05011"};

    (void)state;
    aml_init(&a, buf, sizeof(buf));
    aml_string(&a, "12345678"); /* 10 bytes into 8 */
    assert_true(a.bad);
    for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
        aml_init(&a, buf, sizeof(buf));
        aml_namestring(&a, bad_names[i]);
        assert_true(a.bad);
    }
    for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
        aml_init(&a, buf, sizeof(buf));
        aml_eisaid(&a, bad_ids[i]);
        assert_true(a.bad);
    }
    /* No room left for the PkgLength that closing must insert. */
    aml_init(&a, buf, 3);
    size_t mark = aml_package(&a, 1);
    aml_integer(&a, 0);
    assert_false(a.bad);
    aml_close(&a, mark);
    assert_true(a.bad);
}

/* ---- tables -----------------------------------------------------------------------------------
 */

static const uint8_t *at(uint64_t gpa, uint64_t len)
{
    const uint8_t *p = guest_mem_ptr(&mem, gpa, len);
    assert_non_null(p);
    return p;
}

static uint64_t rd(const uint8_t *p, unsigned off, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)p[off + i] << (8 * i);
    return v;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
    uint8_t s = 0;
    while (len--)
        s += *p++;
    return s;
}

/* Checks a table's header and checksum and that it lies in the ACPI area; returns it. */
static const uint8_t *table(uint64_t gpa, const char *sig, uint32_t *len)
{
    const uint8_t *h = at(gpa, 36);

    assert_true(gpa >= X86_ACPI_ADDR);
    assert_memory_equal(h, sig, 4);
    *len = (uint32_t)rd(h, 4, 4);
    assert_true(*len >= 36);
    assert_true(range_within(gpa, *len, X86_ACPI_END));
    h = at(gpa, *len);
    assert_int_equal(sum(h, *len), 0);
    assert_memory_equal(h + 10, "KILN  ", 6);
    return h;
}

/* The guest's legacy scan: "RSD PTR " on a 16-byte boundary with a valid checksum. */
static uint64_t scan_rsdp(void)
{
    const uint8_t *p = at(0xe0000, 0x20000);

    for (uint64_t off = 0; off < 0x20000; off += 16) {
        if (!memcmp(p + off, "RSD PTR ", 8) && sum(p + off, 20) == 0)
            return 0xe0000 + off;
    }
    fail_msg("no RSDP in 0xe0000..0xfffff");
    return 0;
}

struct tables {
    const uint8_t *fadt, *madt, *dsdt;
    uint32_t fadt_len, madt_len, dsdt_len;
};

static void find_tables(struct tables *t)
{
    uint64_t rsdp_gpa = scan_rsdp();
    const uint8_t *rsdp = at(rsdp_gpa, 36), *xsdt;
    uint32_t xsdt_len;

    assert_int_equal(rsdp[15], 2);
    assert_int_equal(rd(rsdp, 20, 4), 36);
    assert_int_equal(sum(rsdp, 36), 0);
    assert_memory_equal(rsdp + 9, "KILN  ", 6);
    xsdt = table(rd(rsdp, 24, 8), "XSDT", &xsdt_len);
    assert_int_equal(xsdt_len, 36 + 2 * 8);
    t->fadt = table(rd(xsdt, 36, 8), "FACP", &t->fadt_len);
    t->madt = table(rd(xsdt, 44, 8), "APIC", &t->madt_len);
    t->dsdt = table(rd(t->fadt, 140, 8), "DSDT", &t->dsdt_len);
    assert_int_equal(rd(t->fadt, 40, 4), rd(t->fadt, 140, 8)); /* DSDT == X_DSDT */
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

static size_t count_seq(const uint8_t *hay, size_t len, const void *needle, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i + n <= len; i++)
        count += !memcmp(hay + i, needle, n);
    return count;
}

static void check_gas(const uint8_t *g, uint16_t port)
{
    assert_int_equal(g[0], 1); /* system I/O */
    assert_int_equal(g[1], 8);
    assert_int_equal(g[2], 0);
    assert_int_equal(g[3], 1); /* byte access */
    assert_int_equal(rd(g, 4, 8), port);
}

static void check_platform(const struct x86_platform *plat)
{
    struct tables t;
    uint64_t rsdp = 0;

    assert_int_equal(x86_acpi_write(&mem, plat, &rsdp), 0);
    assert_int_equal(rsdp, scan_rsdp());
    find_tables(&t);

    /* FADT: hardware-reduced with the three power ports. */
    assert_int_equal(t.fadt_len, 276);
    assert_int_equal(t.fadt[8], 6);
    assert_int_equal(rd(t.fadt, 112, 4), (1u << 20) | (1u << 10) | (1u << 4) | (1u << 5));
    assert_int_equal(rd(t.fadt, 109, 2), (1u << 2) | (1u << 3)); /* no VGA, no MSI */
    check_gas(t.fadt + 116, X86_PORT_ACPI_RESET);
    assert_int_equal(t.fadt[128], 1);
    check_gas(t.fadt + 244, X86_PORT_ACPI_SLEEP);
    check_gas(t.fadt + 256, X86_PORT_ACPI_STATUS);
    assert_memory_equal(t.fadt + 268, "KILN\0\0\0\0", 8);

    /* MADT: every CPU enabled, then the IOAPIC. */
    assert_int_equal(rd(t.madt, 36, 4), X86_LAPIC_ADDR);
    assert_int_equal(rd(t.madt, 40, 4), 1); /* PCAT_COMPAT */
    unsigned entries = 0, cpus = 0, ioapics = 0;
    for (uint32_t off = 44; off < t.madt_len; off += t.madt[off + 1], entries++) {
        const uint8_t *e = t.madt + off;
        assert_true(e[1] >= 2 && off + e[1] <= t.madt_len);
        if (e[0] == 0) {
            assert_int_equal(e[1], 8);
            assert_int_equal(e[2], cpus);
            assert_int_equal(e[3], cpus);
            assert_int_equal(rd(e, 4, 4), 1);
            cpus++;
        } else if (e[0] == 1) {
            assert_int_equal(e[1], 12);
            assert_int_equal(e[2], plat->ncpus);
            assert_int_equal(rd(e, 4, 4), X86_IOAPIC_ADDR);
            assert_int_equal(rd(e, 8, 4), 0);
            ioapics++;
        } else {
            fail_msg("unexpected MADT entry type %u", e[0]);
        }
    }
    assert_int_equal(cpus, plat->ncpus);
    assert_int_equal(ioapics, 1);
    /* ncpus + the IOAPIC and no interrupt source overrides: ISA IRQs are identity-mapped. */
    assert_int_equal(entries, plat->ncpus + 1);

    /* DSDT: \_S5 = {5, 0, 0, 0}, COM1, one LNRO0005 per device with its window and GSI. */
    static const uint8_t s5[] = {0x08, '_',  'S',  '5',  '_',  0x12, 0x07,
                                 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00};
    static const uint8_t com1[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
    static const uint8_t com1_io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x89,
                                      0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00};
    assert_int_equal(count_seq(t.dsdt, t.dsdt_len, s5, sizeof(s5)), 1);
    assert_int_equal(count_seq(t.dsdt, t.dsdt_len, com1, sizeof(com1)), 1);
    assert_int_equal(count_seq(t.dsdt, t.dsdt_len, com1_io, sizeof(com1_io)), 1);
    assert_int_equal(count_seq(t.dsdt, t.dsdt_len, "\x0dLNRO0005", 10), plat->nvirtio);
    for (unsigned i = 0; i < plat->nvirtio; i++) {
        const struct x86_virtio_dev *v = &plat->virtio[i];
        uint8_t crs[] = {0x86, 0x09, 0x00, 0x01, 0,    0, 0, 0, 0, 0,    0,   0,
                         0x89, 0x06, 0x00, 0x03, 0x01, 0, 0, 0, 0, 0x79, 0x00};
        for (int b = 0; b < 4; b++) {
            crs[4 + b] = (uint8_t)(v->base >> (8 * b));
            crs[8 + b] = (uint8_t)(v->size >> (8 * b));
            crs[17 + b] = (uint8_t)(v->gsi >> (8 * b));
        }
        assert_int_equal(count_seq(t.dsdt, t.dsdt_len, crs, sizeof(crs)), 1);
        char dev[] = {0x5b, 0x82, 0,   'V', 'I', 'O', "0123456789ABCDEF"[i],
                      0x08, '_',  'H', 'I', 'D'};
        assert_int_equal(count_seq(t.dsdt, t.dsdt_len, dev + 3, sizeof(dev) - 3), 1);
    }
}

static void test_tables_four_cpus(void **state)
{
    struct x86_platform plat = platform(4, 3);

    (void)state;
    check_platform(&plat);
}

static void test_tables_one_cpu_no_devices(void **state)
{
    struct x86_platform plat = platform(1, 0);

    (void)state;
    check_platform(&plat);
}

static void test_tables_largest(void **state)
{
    struct x86_platform plat = platform(X86_MAX_CPUS, X86_MAX_VIRTIO);

    (void)state;
    check_platform(&plat);
}

static void test_tables_rejects(void **state)
{
    struct x86_platform plat;
    struct guest_mem none = {.fd = -1};
    uint64_t rsdp = 0x1234;

    (void)state;
    plat = platform(0, 0);
    assert_int_equal(x86_acpi_write(&mem, &plat, &rsdp), -EINVAL);
    plat = platform(X86_MAX_CPUS + 1, 0);
    assert_int_equal(x86_acpi_write(&mem, &plat, &rsdp), -EINVAL);
    plat = platform(1, 1);
    plat.nvirtio = X86_MAX_VIRTIO + 1;
    assert_int_equal(x86_acpi_write(&mem, &plat, &rsdp), -EINVAL);
    plat = platform(1, 1);
    plat.virtio[0].base = 0xfffff000; /* Memory32Fixed cannot describe a window past 4 GiB */
    plat.virtio[0].size = 0x2000;
    assert_int_equal(x86_acpi_write(&mem, &plat, &rsdp), -EINVAL);
    plat = platform(1, 1);
    plat.virtio[0].size = 0;
    assert_int_equal(x86_acpi_write(&mem, &plat, &rsdp), -EINVAL);
    plat = platform(1, 1);
    plat.virtio[0].gsi = 24;
    assert_int_equal(x86_acpi_write(&mem, &plat, &rsdp), -EINVAL);
    plat = platform(1, 1);
    assert_int_equal(x86_acpi_write(&none, &plat, &rsdp), -ENOMEM);
    assert_int_equal(rsdp, 0x1234); /* untouched on failure */
}

/* ---- iasl cross-check -------------------------------------------------------------------------
 */

static void save(const char *dir, const char *name, const void *data, size_t len)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* For each table: disassemble, find no complaint in the log or the listing, compile again
 * without optimisations, and compare every byte after the header (whose compiler id and
 * checksum iasl rewrites). */
static const char iasl_script[] =
    "set -e\n"
    "for t in dsdt facp apic; do\n"
    "  iasl -d $t.dat >$t.log 2>&1\n"
    "  iasl -oa -p re_$t $t.dsl >>$t.log 2>&1\n"
    "  grep -q ' 0 Errors, 0 Warnings' $t.log\n"
    "  ! grep -v 'Compilation successful' $t.log | grep -qiE 'warning|error'\n"
    "  ! grep -qiE 'incorrect|invalid|unknown|warning|error' $t.dsl\n"
    "  cmp <(tail -c +37 $t.dat) <(tail -c +37 re_$t.aml)\n"
    "done\n";

/* iasl disassembles each table and compiles the result again: no error or warning, and the
 * same bytes. */
static void test_iasl_round_trip(void **state)
{
    struct x86_platform plat = platform(4, X86_MAX_VIRTIO);
    char dir[] = "/tmp/kiln-acpi-XXXXXX", cmd[256];
    struct tables t;
    uint64_t rsdp;

    (void)state;
    if (system("command -v iasl >/dev/null 2>&1") != 0)
        skip();
    assert_int_equal(x86_acpi_write(&mem, &plat, &rsdp), 0);
    find_tables(&t);
    assert_non_null(mkdtemp(dir));
    save(dir, "dsdt.dat", t.dsdt, t.dsdt_len);
    save(dir, "facp.dat", t.fadt, t.fadt_len);
    save(dir, "apic.dat", t.madt, t.madt_len);
    save(dir, "check.sh", iasl_script, sizeof(iasl_script) - 1);
    snprintf(cmd, sizeof(cmd), "cd %s && bash check.sh >check.log 2>&1", dir);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof(cmd), "cat %s/*.log >&2", dir);
        (void)!system(cmd);
        fail_msg("iasl round trip failed (files in %s)", dir);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkglen),           cmocka_unit_test(test_aml_objects),
        cmocka_unit_test(test_aml_long_package), cmocka_unit_test(test_aml_rejects),
        cmocka_unit_test(test_tables_four_cpus), cmocka_unit_test(test_tables_one_cpu_no_devices),
        cmocka_unit_test(test_tables_largest),   cmocka_unit_test(test_tables_rejects),
        cmocka_unit_test(test_iasl_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
