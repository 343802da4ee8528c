/* test_i8042.c: the keyboard controller as Linux's i8042 and atkbd drivers probe it, and reset. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/legacy/legacy.h"

struct fake {
    int nirq;
    bool level[16];
    bool repeated;
    int nexit;
    enum vm_exit_reason reason;
};

static void fake_set_irq(void *opaque, uint32_t gsi, bool level)
{
    struct fake *f = opaque;

    assert_true(gsi == 1 || gsi == 12);
    if (f->level[gsi] == level)
        f->repeated = true; /* only changes may be driven; lines start low */
    f->level[gsi] = level;
    f->nirq++;
}

static void fake_exit(void *opaque, enum vm_exit_reason reason)
{
    struct fake *f = opaque;

    f->nexit++;
    f->reason = reason;
}

struct ctx {
    struct fake fake;
    struct dev_host host;
    struct i8042 *dev;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));

    if (!c)
        return -1;
    c->host =
        (struct dev_host){.set_irq = fake_set_irq, .request_exit = fake_exit, .opaque = &c->fake};
    c->dev = i8042_create(&c->host);
    if (!c->dev) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;

    assert_false(c->fake.repeated);
    i8042_destroy(c->dev);
    free(c);
    return 0;
}

#define DATA 0
#define CMD  4

#define STR_OBF     0x01
#define STR_IBF     0x02
#define STR_SYS     0x04
#define STR_CMDDAT  0x08
#define STR_KEYLOCK 0x10
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

static uint8_t rd(struct ctx *c, unsigned port)
{
    uint8_t v = 0x5a;

    i8042_io(c->dev, port, &v, 1, false);
    return v;
}

static void wr(struct ctx *c, unsigned port, uint8_t v)
{
    i8042_io(c->dev, port, &v, 1, true);
}

/* Like Linux's __i8042_command(): command, parameter, then one answer when expected. */
static int command(struct ctx *c, uint8_t cmd, const uint8_t *param, uint8_t *answer)
{
    if (rd(c, CMD) & STR_IBF)
        return -1;
    wr(c, CMD, cmd);
    if (param)
        wr(c, DATA, *param);
    if (!answer)
        return 0;
    if (!(rd(c, CMD) & STR_OBF))
        return -1; /* Linux would wait 500 ms here */
    *answer = rd(c, DATA);
    return 0;
}

static void test_initial_status(void **state)
{
    struct ctx *c = *state;
    uint8_t str = rd(c, CMD);

    assert_int_equal(str & (STR_OBF | STR_IBF), 0); /* i8042_flush() finds it empty */
    assert_true(str & STR_SYS);
    assert_true(str & STR_KEYLOCK); /* no "Keylock active" warning */
}

static void test_linux_controller_init(void **state)
{
    struct ctx *c = *state;
    uint8_t ctr0, ctr1, ctr, answer;

    /* i8042_controller_selftest() */
    assert_int_equal(command(c, 0xaa, NULL, &answer), 0);
    assert_int_equal(answer, 0x55);
    /* i8042_controller_init(): two equal CTR reads, then a CTR write that sticks. */
    assert_int_equal(command(c, 0x20, NULL, &ctr0), 0);
    assert_int_equal(command(c, 0x20, NULL, &ctr1), 0);
    assert_int_equal(ctr0, ctr1);
    assert_true(ctr0 & 0x40); /* translated mode, as a BIOS leaves it */
    ctr = (uint8_t)((ctr0 | 0x10) & ~0x01);
    assert_int_equal(command(c, 0x60, &ctr, NULL), 0);
    assert_int_equal(rd(c, CMD) & STR_OBF, 0);
    assert_int_equal(command(c, 0x20, NULL, &answer), 0);
    assert_int_equal(answer, ctr);
    assert_true(rd(c, CMD) & STR_CMDDAT);
    /* Keyboard interface test */
    assert_int_equal(command(c, 0xab, NULL, &answer), 0);
    assert_int_equal(answer, 0x00);
    /* Controller RAM beyond the CTR */
    answer = 0x3c;
    assert_int_equal(command(c, 0x65, &answer, NULL), 0);
    assert_false(rd(c, CMD) & STR_CMDDAT);
    assert_int_equal(command(c, 0x25, NULL, &answer), 0);
    assert_int_equal(answer, 0x3c);
}

/* i8042_check_aux() must give up on the AUX port at once, without its timeouts. */
static void test_linux_finds_no_aux_port(void **state)
{
    struct ctx *c = *state;
    uint8_t param = 0x5a, answer;

    /* AUX loop: the byte comes back at once, but not flagged as AUX data: "auxerr". */
    wr(c, CMD, 0xd3);
    wr(c, DATA, param);
    assert_true(rd(c, CMD) & STR_OBF);
    assert_false(rd(c, CMD) & STR_AUXDATA);
    /* AUX interface test: an error Linux does not excuse (0, 0xfa and 0xff would pass). */
    assert_int_equal(command(c, 0xa9, NULL, &answer), 0);
    assert_int_not_equal(answer, 0x00);
    assert_int_not_equal(answer, 0xfa);
    assert_int_not_equal(answer, 0xff);
    /* Nothing was ever raised on IRQ 12. */
    assert_false(c->fake.level[12]);
}

static void test_keyboard_writes_get_nak(void **state)
{
    struct ctx *c = *state;
    uint8_t str;

    /* The CTR enables the keyboard interrupt: atkbd's GETID (0xf2) is answered at once. */
    wr(c, DATA, 0xf2);
    str = rd(c, CMD);
    assert_true(str & STR_OBF);
    assert_true(str & STR_TIMEOUT);
    assert_false(str & STR_AUXDATA);
    assert_true(c->fake.level[1]);
    assert_int_equal(rd(c, DATA), 0xfe);
    assert_false(c->fake.level[1]);
    assert_int_equal(rd(c, CMD) & (STR_OBF | STR_TIMEOUT), 0);
    assert_int_equal(c->fake.nirq, 2);
    /* With KBDINT clear the answer is there but no interrupt. */
    wr(c, CMD, 0x60);
    wr(c, DATA, 0x44);
    wr(c, DATA, 0xed);
    assert_true(rd(c, CMD) & STR_OBF);
    assert_false(c->fake.level[1]);
    assert_int_equal(rd(c, DATA), 0xfe);
    assert_int_equal(c->fake.nirq, 2);
    assert_int_equal(c->fake.nexit, 0);
}

static void test_write_kbd_buffer_echoes(void **state)
{
    struct ctx *c = *state;

    wr(c, CMD, 0xd2);
    wr(c, DATA, 0x1c);
    assert_int_equal(rd(c, CMD) & (STR_OBF | STR_TIMEOUT), STR_OBF);
    assert_true(c->fake.level[1]);
    assert_int_equal(rd(c, DATA), 0x1c);
    /* A second read finds the buffer empty but returns the last byte. */
    assert_int_equal(rd(c, CMD) & STR_OBF, 0);
    assert_int_equal(rd(c, DATA), 0x1c);
    /* Bytes for the (absent) AUX device vanish. */
    wr(c, CMD, 0xd4);
    wr(c, DATA, 0xf4);
    assert_int_equal(rd(c, CMD) & STR_OBF, 0);
}

static void test_enable_disable_bits(void **state)
{
    struct ctx *c = *state;
    uint8_t ctr;

    wr(c, CMD, 0xa8);
    assert_int_equal(command(c, 0x20, NULL, &ctr), 0);
    assert_int_equal(ctr & 0x20, 0);
    wr(c, CMD, 0xa7);
    assert_int_equal(command(c, 0x20, NULL, &ctr), 0);
    assert_int_equal(ctr & 0x20, 0x20);
    wr(c, CMD, 0xad);
    assert_int_equal(command(c, 0x20, NULL, &ctr), 0);
    assert_int_equal(ctr & 0x10, 0x10);
    wr(c, CMD, 0xae);
    assert_int_equal(command(c, 0x20, NULL, &ctr), 0);
    assert_int_equal(ctr & 0x10, 0);
}

static void test_pulse_reset(void **state)
{
    struct ctx *c = *state;

    /* Linux's reboot=k: wait for IBF clear, then 0xfe, ten times. */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(rd(c, CMD) & STR_IBF, 0);
        wr(c, CMD, 0xfe);
    }
    assert_int_equal(c->fake.nexit, 10);
    assert_int_equal(c->fake.reason, VM_EXIT_REBOOT);
}

static void test_pulse_without_reset_bit(void **state)
{
    struct ctx *c = *state;

    wr(c, CMD, 0xff); /* pulses nothing */
    wr(c, CMD, 0xfd); /* pulses bit 1 only */
    assert_int_equal(c->fake.nexit, 0);
}

static void test_output_port(void **state)
{
    struct ctx *c = *state;
    uint8_t outp;

    assert_int_equal(command(c, 0xd0, NULL, &outp), 0);
    assert_int_equal(outp & 0x03, 0x03); /* not in reset, A20 on */
    wr(c, CMD, 0xdd);
    assert_int_equal(command(c, 0xd0, NULL, &outp), 0);
    assert_int_equal(outp & 0x02, 0);
    outp = 0x03;
    assert_int_equal(command(c, 0xd1, &outp, NULL), 0);
    assert_int_equal(c->fake.nexit, 0);
    outp = 0x02; /* reset line low */
    assert_int_equal(command(c, 0xd1, &outp, NULL), 0);
    assert_int_equal(c->fake.nexit, 1);
    assert_int_equal(c->fake.reason, VM_EXIT_REBOOT);
}

static void test_new_command_cancels_parameter(void **state)
{
    struct ctx *c = *state;
    uint8_t ctr, answer;

    assert_int_equal(command(c, 0x20, NULL, &ctr), 0);
    wr(c, CMD, 0x60);
    assert_int_equal(command(c, 0xaa, NULL, &answer), 0);
    assert_int_equal(answer, 0x55);
    wr(c, DATA, 0x00); /* now a keyboard byte, not the CTR */
    assert_int_equal(rd(c, DATA), 0xfe);
    assert_int_equal(command(c, 0x20, NULL, &answer), 0);
    assert_int_equal(answer, ctr);
}

static void test_unknown_command_ignored(void **state)
{
    struct ctx *c = *state;

    wr(c, CMD, 0xc8);
    assert_int_equal(rd(c, CMD) & STR_OBF, 0);
    assert_int_equal(c->fake.nexit, 0);
}

static void test_odd_lengths_and_offsets(void **state)
{
    struct ctx *c = *state;
    uint8_t buf[16];

    /* A 4-byte read at 0x61: nothing at 0x61..0x63, then the status register. */
    memset(buf, 0, sizeof(buf));
    i8042_io(c->dev, 1, buf, 4, false);
    assert_int_equal(buf[0], 0xff);
    assert_int_equal(buf[2], 0xff);
    assert_true(buf[3] & STR_KEYLOCK);
    /* Beyond the range: all-ones, and nothing past data[len) touched. */
    memset(buf, 0xcc, sizeof(buf));
    i8042_io(c->dev, 3, buf, 8, false);
    assert_true(buf[1] & STR_KEYLOCK);
    for (int i = 2; i < 8; i++)
        assert_int_equal(buf[i], 0xff);
    assert_int_equal(buf[8], 0xcc);
    i8042_io(c->dev, UINT64_MAX, buf, 4, false);
    assert_int_equal(buf[0], 0xff);
    /* Writes that land outside 0x60 and 0x64 do nothing, even a would-be reset. */
    memset(buf, 0xfe, sizeof(buf));
    i8042_io(c->dev, 1, buf, 3, true);
    i8042_io(c->dev, 5, buf, 8, true);
    i8042_io(c->dev, UINT64_MAX - 2, buf, 8, true);
    assert_int_equal(c->fake.nexit, 0);
    assert_int_equal(rd(c, CMD) & STR_OBF, 0);
    /* A 2-byte read at 0x60 reads data then 0x61. */
    wr(c, CMD, 0xaa);
    i8042_io(c->dev, 0, buf, 2, false);
    assert_int_equal(buf[0], 0x55);
    assert_int_equal(buf[1], 0xff);
}

static void test_create_rejects_bad_host(void **state)
{
    struct dev_host no_exit = {fake_set_irq, NULL, NULL};
    struct dev_host no_irq = {NULL, fake_exit, NULL};

    (void)state;
    errno = 0;
    assert_null(i8042_create(NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(i8042_create(&no_exit));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(i8042_create(&no_irq));
    assert_int_equal(errno, EINVAL);
    i8042_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_initial_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linux_controller_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linux_finds_no_aux_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyboard_writes_get_nak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_kbd_buffer_echoes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_disable_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pulse_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pulse_without_reset_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_command_cancels_parameter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_command_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_lengths_and_offsets, setup, teardown),
        cmocka_unit_test(test_create_rejects_bad_host),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
