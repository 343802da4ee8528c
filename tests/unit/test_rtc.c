/* test_rtc.c: RTC/CMOS: the host's UTC time in BCD and binary, status registers, CMOS RAM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "devices/legacy/legacy.h"

static int setup(void **state)
{
    *state = rtc_create();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    rtc_destroy(*state);
    return 0;
}

static uint8_t rd(struct rtc *rtc, uint8_t index)
{
    uint8_t v = 0x5a;

    rtc_io(rtc, 0, &index, 1, true);
    rtc_io(rtc, 1, &v, 1, false);
    return v;
}

static void wr(struct rtc *rtc, uint8_t index, uint8_t v)
{
    rtc_io(rtc, 0, &index, 1, true);
    rtc_io(rtc, 1, &v, 1, true);
}

static uint8_t bcd(unsigned v)
{
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

struct reading {
    uint8_t sec, min, hour, wday, mday, mon, year, century;
};

static void read_all(struct rtc *rtc, struct reading *r)
{
    r->sec = rd(rtc, 0x00);
    r->min = rd(rtc, 0x02);
    r->hour = rd(rtc, 0x04);
    r->wday = rd(rtc, 0x06);
    r->mday = rd(rtc, 0x07);
    r->mon = rd(rtc, 0x08);
    r->year = rd(rtc, 0x09);
    r->century = rd(rtc, 0x32);
}

/* Reads every field between two time() calls that agree, so no second boundary falls inside
 * the reads; returns the time the registers must show. */
static time_t stable_read(struct rtc *rtc, struct reading *r)
{
    for (int tries = 0; tries < 100; tries++) {
        time_t before = time(NULL), after;

        read_all(rtc, r);
        after = time(NULL);
        if (before == after)
            return before;
    }
    fail_msg("the clock never held still for one second");
    return 0;
}

static void test_time_in_bcd(void **state)
{
    struct rtc *rtc = *state;
    struct reading r;
    time_t now = stable_read(rtc, &r);
    struct tm tm;

    assert_non_null(gmtime_r(&now, &tm));
    assert_int_equal(r.sec, bcd((unsigned)tm.tm_sec % 60));
    assert_int_equal(r.min, bcd((unsigned)tm.tm_min));
    assert_int_equal(r.hour, bcd((unsigned)tm.tm_hour));
    assert_int_equal(r.wday, bcd((unsigned)tm.tm_wday + 1));
    assert_int_equal(r.mday, bcd((unsigned)tm.tm_mday));
    assert_int_equal(r.mon, bcd((unsigned)tm.tm_mon + 1));
    assert_int_equal(r.year, bcd((unsigned)(tm.tm_year + 1900) % 100));
    assert_int_equal(r.century, bcd((unsigned)(tm.tm_year + 1900) / 100));
    /* Every nibble is a decimal digit. */
    for (const uint8_t *p = &r.sec; p <= &r.century; p++) {
        assert_true((*p & 0x0f) <= 9);
        assert_true((*p >> 4) <= 9);
    }
}

static void test_time_in_binary_and_12h(void **state)
{
    struct rtc *rtc = *state;
    struct reading r;
    time_t now;
    struct tm tm;
    unsigned h12;

    wr(rtc, 0x0b, 0x02 | 0x04); /* 24-hour, binary */
    now = stable_read(rtc, &r);
    assert_non_null(gmtime_r(&now, &tm));
    assert_int_equal(r.sec, tm.tm_sec % 60);
    assert_int_equal(r.hour, tm.tm_hour);
    assert_int_equal(r.mon, tm.tm_mon + 1);
    assert_int_equal(r.year, (tm.tm_year + 1900) % 100);
    assert_int_equal(r.century, (tm.tm_year + 1900) / 100);

    wr(rtc, 0x0b, 0x00); /* 12-hour, BCD: hours 1..12 with bit 7 for PM */
    now = stable_read(rtc, &r);
    assert_non_null(gmtime_r(&now, &tm));
    h12 = tm.tm_hour % 12 ? (unsigned)tm.tm_hour % 12 : 12;
    assert_int_equal(r.hour, bcd(h12) | (tm.tm_hour >= 12 ? 0x80 : 0));
    assert_int_equal(r.min, bcd((unsigned)tm.tm_min));
}

static void test_status_registers(void **state)
{
    struct rtc *rtc = *state;

    assert_int_equal(rd(rtc, 0x0a), 0x26);
    assert_int_equal(rd(rtc, 0x0b), 0x02);
    assert_int_equal(rd(rtc, 0x0c), 0x00);
    assert_int_equal(rd(rtc, 0x0d), 0x80);
    /* UIP cannot be set; C and D are read-only. */
    wr(rtc, 0x0a, 0xa6);
    assert_int_equal(rd(rtc, 0x0a), 0x26);
    wr(rtc, 0x0c, 0xff);
    wr(rtc, 0x0d, 0x00);
    assert_int_equal(rd(rtc, 0x0c), 0x00);
    assert_int_equal(rd(rtc, 0x0d), 0x80);
}

static void test_nmi_bit_masked(void **state)
{
    struct rtc *rtc = *state;

    /* Linux sets bit 7 of the index to keep NMIs masked: it must not change the register. */
    assert_int_equal(rd(rtc, 0x80 | 0x0d), 0x80);
    assert_int_equal(rd(rtc, 0x80 | 0x0a), 0x26);
    wr(rtc, 0x80 | 0x40, 0x99);
    assert_int_equal(rd(rtc, 0x40), 0x99);
}

static void test_cmos_ram_stored(void **state)
{
    struct rtc *rtc = *state;

    for (unsigned i = 0x0e; i < 0x80; i++) {
        if (i != 0x32)
            wr(rtc, (uint8_t)i, (uint8_t)(i ^ 0xa5));
    }
    for (unsigned i = 0x0e; i < 0x80; i++) {
        if (i != 0x32)
            assert_int_equal(rd(rtc, (uint8_t)i), i ^ 0xa5);
    }
    /* Alarm bytes between the clock fields are RAM too. */
    wr(rtc, 0x01, 0x12);
    wr(rtc, 0x03, 0x34);
    wr(rtc, 0x05, 0x56);
    assert_int_equal(rd(rtc, 0x01), 0x12);
    assert_int_equal(rd(rtc, 0x03), 0x34);
    assert_int_equal(rd(rtc, 0x05), 0x56);
}

static void test_time_writes_ignored(void **state)
{
    struct rtc *rtc = *state;
    time_t now = time(NULL);
    struct tm tm;
    uint8_t century;

    assert_non_null(gmtime_r(&now, &tm));
    wr(rtc, 0x32, 0x19);
    wr(rtc, 0x09, 0x99);
    wr(rtc, 0x08, 0x13);
    century = rd(rtc, 0x32);
    assert_int_equal(century, bcd((unsigned)(tm.tm_year + 1900) / 100));
    assert_int_not_equal(rd(rtc, 0x08), 0x13);
}

static void test_odd_lengths_and_offsets(void **state)
{
    struct rtc *rtc = *state;
    uint8_t buf[16];

    /* A 2-byte write sets the index and writes the data port. */
    buf[0] = 0x50;
    buf[1] = 0x77;
    rtc_io(rtc, 0, buf, 2, true);
    assert_int_equal(rd(rtc, 0x50), 0x77);
    /* A 2-byte read: the write-only index port reads all-ones, then the data. */
    memset(buf, 0, sizeof(buf));
    rtc_io(rtc, 0, buf, 2, false);
    assert_int_equal(buf[0], 0xff);
    assert_int_equal(buf[1], 0x77);
    /* Past the two ports: all-ones, nothing past data[len) touched, writes ignored. */
    memset(buf, 0xcc, sizeof(buf));
    rtc_io(rtc, 1, buf, 8, false);
    assert_int_equal(buf[0], 0x77);
    for (int i = 1; i < 8; i++)
        assert_int_equal(buf[i], 0xff);
    assert_int_equal(buf[8], 0xcc);
    rtc_io(rtc, UINT64_MAX, buf, 4, false);
    assert_int_equal(buf[0], 0xff);
    memset(buf, 0x11, sizeof(buf));
    rtc_io(rtc, 2, buf, 8, true);
    rtc_io(rtc, UINT64_MAX - 1, buf, 8, true);
    assert_int_equal(rd(rtc, 0x50), 0x77);
    rtc_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_time_in_bcd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_in_binary_and_12h, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nmi_bit_masked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmos_ram_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_writes_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_lengths_and_offsets, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
