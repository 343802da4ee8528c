/* test_legacy_misc.c: the PCI configuration stub, the ACPI power ports and the boot timer. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/legacy/legacy.h"
#include "lib/lib.h"

struct fake {
    int nexit;
    enum vm_exit_reason reason;
};

static void fake_set_irq(void *opaque, uint32_t gsi, bool level)
{
    (void)opaque;
    (void)gsi;
    (void)level;
    fail_msg("no interrupt expected");
}

static void fake_exit(void *opaque, enum vm_exit_reason reason)
{
    struct fake *f = opaque;

    f->nexit++;
    f->reason = reason;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- PCI stub ---- */

static void test_pci_address_latch(void **state)
{
    uint8_t buf[4];

    (void)state;
    /* Linux's pci_check_type1(): write 0x80000000, read it back. */
    put_le32(buf, 0x80000000);
    pci_stub_io(NULL, 0, buf, 4, true);
    memset(buf, 0, sizeof(buf));
    pci_stub_io(NULL, 0, buf, 4, false);
    assert_int_equal(le32(buf), 0x80000000);
    put_le32(buf, 0x8000f808);
    pci_stub_io(NULL, 0, buf, 4, true);
    pci_stub_io(NULL, 0, buf, 4, false);
    assert_int_equal(le32(buf), 0x8000f808);
    /* Reserved bits read as zero. */
    put_le32(buf, 0xffffffff);
    pci_stub_io(NULL, 0, buf, 4, true);
    pci_stub_io(NULL, 0, buf, 4, false);
    assert_int_equal(le32(buf), 0x80fffffc);
    /* Byte writes are not mechanism #1 and leave the latch alone; byte reads find nothing. */
    buf[0] = 0;
    pci_stub_io(NULL, 0, buf, 1, true);
    pci_stub_io(NULL, 3, buf, 1, true);
    pci_stub_io(NULL, 0, buf, 1, false);
    assert_int_equal(buf[0], 0xff);
    pci_stub_io(NULL, 0, buf, 4, false);
    assert_int_equal(le32(buf), 0x80fffffc);
}

static void test_pci_data_reads_all_ones(void **state)
{
    uint8_t buf[16];

    (void)state;
    put_le32(buf, 0x80000000);
    pci_stub_io(NULL, 0, buf, 4, true);
    for (uint64_t off = 4; off < 8; off++) {
        for (uint32_t len = 1; len <= 4; len *= 2) {
            memset(buf, 0, sizeof(buf));
            pci_stub_io(NULL, off, buf, len, false);
            for (uint32_t i = 0; i < len; i++)
                assert_int_equal(buf[i], 0xff);
            assert_int_equal(buf[len], 0);
        }
    }
    /* Data writes are ignored: the vendor ID still reads as "no device". */
    memset(buf, 0, sizeof(buf));
    pci_stub_io(NULL, 4, buf, 4, true);
    pci_stub_io(NULL, 4, buf, 4, false);
    assert_int_equal(le32(buf), 0xffffffff);
    /* Odd offsets and lengths stay inside data[len). */
    memset(buf, 0xcc, sizeof(buf));
    pci_stub_io(NULL, 2, buf, 8, false);
    assert_int_equal(buf[7], 0xff);
    assert_int_equal(buf[8], 0xcc);
    pci_stub_io(NULL, UINT64_MAX, buf, 2, false);
    pci_stub_io(NULL, UINT64_MAX, buf, 4, true);
    pci_stub_io(NULL, 0, buf, 8, true); /* not a dword: ignored */
    pci_stub_io(NULL, 0, buf, 4, false);
    assert_int_equal(le32(buf), 0x80000000);
}

/* ---- ACPI power ports ---- */

struct acpi_ctx {
    struct fake fake;
    struct dev_host host;
    struct acpi_pm *pm;
};

static int acpi_setup(void **state)
{
    struct acpi_ctx *c = calloc(1, sizeof(*c));

    if (!c)
        return -1;
    c->host =
        (struct dev_host){.set_irq = fake_set_irq, .request_exit = fake_exit, .opaque = &c->fake};
    c->pm = acpi_pm_create(&c->host);
    if (!c->pm) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int acpi_teardown(void **state)
{
    struct acpi_ctx *c = *state;

    acpi_pm_destroy(c->pm);
    free(c);
    return 0;
}

static void acpi_wr(struct acpi_ctx *c, uint64_t off, uint8_t v)
{
    acpi_pm_io(c->pm, off, &v, 1, true);
}

static void test_acpi_s5_powers_off(void **state)
{
    struct acpi_ctx *c = *state;

    /* Linux's acpi_hw_extended_sleep(): SLP_TYP 5 << 2 | SLP_EN. */
    acpi_wr(c, 0, 0x34);
    assert_int_equal(c->fake.nexit, 1);
    assert_int_equal(c->fake.reason, VM_EXIT_POWEROFF);
}

static void test_acpi_other_sleep_values_ignored(void **state)
{
    struct acpi_ctx *c = *state;

    acpi_wr(c, 0, 0x14); /* S5 type without SLP_EN */
    acpi_wr(c, 0, 0x00); /* back to S0, as on wake */
    for (uint8_t typ = 0; typ < 8; typ++) {
        if (typ != 5)
            acpi_wr(c, 0, (uint8_t)(typ << 2 | 0x20));
    }
    acpi_wr(c, 1, 0x80); /* clear WAK_STS */
    assert_int_equal(c->fake.nexit, 0);
}

static void test_acpi_reset_register(void **state)
{
    struct acpi_ctx *c = *state;

    acpi_wr(c, 2, 0x02);
    acpi_wr(c, 2, 0x00);
    assert_int_equal(c->fake.nexit, 0);
    acpi_wr(c, 2, 0x01);
    assert_int_equal(c->fake.nexit, 1);
    assert_int_equal(c->fake.reason, VM_EXIT_REBOOT);
}

static void test_acpi_reads(void **state)
{
    struct acpi_ctx *c = *state;
    uint8_t buf[16];

    memset(buf, 0xcc, sizeof(buf));
    acpi_pm_io(c->pm, 0, buf, 4, false);
    assert_int_equal(buf[0], 0); /* control */
    assert_int_equal(buf[1], 0); /* status: no wake event */
    assert_int_equal(buf[2], 0); /* reset */
    assert_int_equal(buf[3], 0xff);
    assert_int_equal(buf[4], 0xcc);
    acpi_pm_io(c->pm, UINT64_MAX, buf, 8, false);
    assert_int_equal(buf[7], 0xff);
    assert_int_equal(buf[8], 0xcc);
}

static void test_acpi_odd_lengths_and_offsets(void **state)
{
    struct acpi_ctx *c = *state;
    uint8_t buf[8] = {0x00, 0x80, 0x01, 0x34, 0x34, 0x34, 0x34, 0x34};

    /* A wide write from offset 0 reaches control, status and reset in turn. */
    acpi_pm_io(c->pm, 0, buf, 4, true);
    assert_int_equal(c->fake.nexit, 1);
    assert_int_equal(c->fake.reason, VM_EXIT_REBOOT);
    /* Out of range: nothing happens, even with S5 bytes. */
    acpi_pm_io(c->pm, 3, buf + 3, 4, true);
    acpi_pm_io(c->pm, UINT64_MAX - 1, buf + 3, 4, true);
    assert_int_equal(c->fake.nexit, 1);
}

static void test_acpi_create_rejects_bad_host(void **state)
{
    struct dev_host no_exit = {fake_set_irq, NULL, NULL};

    (void)state;
    errno = 0;
    assert_null(acpi_pm_create(NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(acpi_pm_create(&no_exit));
    assert_int_equal(errno, EINVAL);
    acpi_pm_destroy(NULL);
}

/* ---- boot timer ---- */

static void test_boot_timer(void **state)
{
    struct boot_timer timer;
    uint64_t start = time_now_ns() - 5000000; /* "process started" 5 ms ago */
    uint64_t first, bound;
    uint8_t buf[8] = {123, 1, 2, 3, 4, 5, 6, 7};
    char logbuf[512];
    int fds[2];
    ssize_t n;

    (void)state;
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    log_set_fd(fds[1]);
    log_set_level(LOG_INFO);

    boot_timer_init(&timer, start);
    assert_int_equal(timer.first_ns, 0);
    assert_int_equal(timer.writes, 0);
    /* Reads return 0 and are not marks. */
    boot_timer_io(&timer, 0, buf, 8, false);
    for (int i = 0; i < 8; i++)
        assert_int_equal(buf[i], 0);
    /* Writes elsewhere in the MMIO page are not marks either. */
    boot_timer_io(&timer, 4, buf, 1, true);
    boot_timer_io(&timer, UINT64_MAX, buf, 4, true);
    assert_int_equal(timer.first_ns, 0);
    assert_int_equal(timer.writes, 0);

    buf[0] = 123;
    boot_timer_io(&timer, 0, buf, 1, true);
    bound = time_now_ns() - start;
    first = timer.first_ns;
    assert_true(first >= 5000000);
    assert_true(first <= bound);
    assert_int_equal(timer.writes, 1);

    /* Later writes (any width) are counted but do not move the mark. */
    boot_timer_io(&timer, 0, buf, 4, true);
    boot_timer_io(&timer, 0, buf, 8, true);
    assert_int_equal(timer.first_ns, first);
    assert_int_equal(timer.writes, 3);

    n = read(fds[0], logbuf, sizeof(logbuf) - 1);
    log_set_fd(STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    assert_true(n > 0);
    logbuf[n] = '\0';
    assert_non_null(strstr(logbuf, "boot-timer: userspace reached after "));
    assert_non_null(strstr(logbuf, " ms"));
    /* Logged once, not per write. */
    assert_null(strstr(strstr(logbuf, "reached after") + 1, "reached after"));
}

static void test_boot_timer_start_in_future(void **state)
{
    struct boot_timer timer;
    uint8_t b = 1;

    (void)state;
    /* A start time after "now" (clock misuse) still records a non-zero mark. */
    boot_timer_init(&timer, time_now_ns() + 1000000000ULL);
    boot_timer_io(&timer, 0, &b, 1, true);
    assert_int_equal(timer.first_ns, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pci_address_latch),
        cmocka_unit_test(test_pci_data_reads_all_ones),
        cmocka_unit_test_setup_teardown(test_acpi_s5_powers_off, acpi_setup, acpi_teardown),
        cmocka_unit_test_setup_teardown(test_acpi_other_sleep_values_ignored, acpi_setup,
                                        acpi_teardown),
        cmocka_unit_test_setup_teardown(test_acpi_reset_register, acpi_setup, acpi_teardown),
        cmocka_unit_test_setup_teardown(test_acpi_reads, acpi_setup, acpi_teardown),
        cmocka_unit_test_setup_teardown(test_acpi_odd_lengths_and_offsets, acpi_setup,
                                        acpi_teardown),
        cmocka_unit_test(test_acpi_create_rejects_bad_host),
        cmocka_unit_test(test_boot_timer),
        cmocka_unit_test(test_boot_timer_start_in_future),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
