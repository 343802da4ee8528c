/* test_uart.c: the 16550A as Linux's 8250 driver probes and drives it, and hostile accesses. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/legacy/legacy.h"

#define GSI 4

struct fake {
    int nirq;
    bool level;       /* last level driven */
    bool repeated;    /* set_irq was called twice in a row with the same level */
    uint32_t bad_gsi; /* a GSI other than GSI, if one was driven */
    uint8_t out[8192];
    size_t nout;
};

static void fake_set_irq(void *opaque, uint32_t gsi, bool level)
{
    struct fake *f = opaque;

    if (gsi != GSI)
        f->bad_gsi = gsi;
    if (f->level == level)
        f->repeated = true; /* the line starts low, and only changes may be driven */
    f->level = level;
    f->nirq++;
}

static void fake_exit(void *opaque, enum vm_exit_reason reason)
{
    (void)opaque;
    (void)reason;
    fail_msg("the UART must never end the VM");
}

static void fake_out(void *opaque, const uint8_t *buf, size_t len)
{
    struct fake *f = opaque;

    assert_true(f->nout + len <= sizeof(f->out));
    memcpy(f->out + f->nout, buf, len);
    f->nout += len;
}

struct ctx {
    struct fake fake;
    struct dev_host host;
    struct uart *uart;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));

    if (!c)
        return -1;
    c->host =
        (struct dev_host){.set_irq = fake_set_irq, .request_exit = fake_exit, .opaque = &c->fake};
    c->uart = uart_create(&c->host, GSI, fake_out, &c->fake);
    if (!c->uart) {
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
    assert_int_equal(c->fake.bad_gsi, 0);
    uart_destroy(c->uart);
    free(c);
    return 0;
}

static uint8_t rd(struct ctx *c, unsigned reg)
{
    uint8_t v = 0x5a;

    uart_io(c->uart, reg, &v, 1, false);
    return v;
}

static void wr(struct ctx *c, unsigned reg, uint8_t v)
{
    uart_io(c->uart, reg, &v, 1, true);
}

enum { RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

/* One access of a scripted sequence: a write, or a read whose value under `mask` must be `val`. */
struct step {
    bool write;
    uint8_t reg, val, mask;
};
// clang-format off
#define W(reg, val)       {true, reg, val, 0}
#define R(reg, mask, val) {false, reg, val, mask}
// clang-format on

/* The register dance of Linux's autoconfig() and autoconfig_16550a(), then the start of
 * serial8250_do_startup() with its THRE test: every branch must conclude "16550A, no bugs". */
static const struct step linux_probe[] = {
    // clang-format off
    W(IER, 0), R(IER, 0x0f, 0), W(IER, 0x0f), R(IER, 0x0f, 0x0f), W(IER, 0), /* IER is 4 bits */
    W(MCR, 0x1a), R(MSR, 0xf0, 0x90), W(MCR, 0),        /* loopback: RTS->CTS, OUT2->DCD */
    W(LCR, 0xbf), W(2, 0), W(LCR, 0), W(FCR, 0x01), R(IIR, 0xc0, 0xc0), /* FIFOs: 16550A */
    W(LCR, 0x80), R(2, 0xff, 0xc1), W(LCR, 0xbf), R(2, 0xff, 0xc1), /* no EFR: IIR != 0 */
    W(LCR, 0), R(MCR, 0xff, 0), W(LCR, 0xe0), R(2, 0x10, 0),  /* not a National SuperIO: */
    W(LCR, 0), W(MCR, 0x10), W(LCR, 0xe0), R(2, 0x10, 0),     /* EXCR1 ignores MCR.LOOP */
    W(LCR, 0), W(MCR, 0),
    W(FCR, 0x21), R(IIR, 0xe0, 0xc0), W(FCR, 0x01),           /* not a 16750: IIR bit 5 */
    W(LCR, 0x80), W(FCR, 0x21), R(IIR, 0xe0, 0xc0), W(FCR, 0x01), W(LCR, 0),
    W(IER, 0x40), R(IER, 0x40, 0), W(IER, 0),                 /* not an XScale: no UUE */
    W(FCR, 0x01), W(FCR, 0x07), W(FCR, 0),                    /* startup: clear FIFOs */
    R(LSR, 0, 0), R(RBR, 0, 0), R(IIR, 0, 0), R(MSR, 0, 0), R(LSR, 0xff, 0x60),
    W(IER, 0x02), R(IIR, 0x0f, 0x02), W(IER, 0), W(IER, 0x02), R(IIR, 0x0f, 0x02), /* THRE */
    W(IER, 0),
    // clang-format on
};

static void test_linux_probe_finds_16550a(void **state)
{
    struct ctx *c = *state;

    for (size_t i = 0; i < sizeof(linux_probe) / sizeof(linux_probe[0]); i++) {
        const struct step *s = &linux_probe[i];

        if (s->write)
            wr(c, s->reg, s->val);
        else if ((rd(c, s->reg) & s->mask) != s->val)
            fail_msg("probe step %zu: register %u & 0x%02x != 0x%02x", i, s->reg, s->mask, s->val);
    }
    /* No interrupt reached the line: OUT2 was never set outside loopback. */
    assert_int_equal(c->fake.nirq, 0);
}

static void test_output(void **state)
{
    struct ctx *c = *state;
    const char *msg = "hello\n";

    wr(c, LCR, 0x03);
    for (size_t i = 0; i < strlen(msg); i++) {
        assert_true(rd(c, LSR) & 0x60); /* THRE and TEMT: always ready */
        wr(c, RBR, (uint8_t)msg[i]);
    }
    assert_int_equal(c->fake.nout, strlen(msg));
    assert_memory_equal(c->fake.out, msg, strlen(msg));
    /* With DLAB set, register 0 is the divisor latch, not THR. */
    wr(c, LCR, 0x83);
    wr(c, 0, 'x');
    assert_int_equal(c->fake.nout, strlen(msg));
}

static void test_rx_data_and_interrupt(void **state)
{
    struct ctx *c = *state;

    assert_int_equal(rd(c, LSR) & 0x01, 0);
    wr(c, FCR, 0x01);
    wr(c, IER, 0x01);
    assert_int_equal(c->fake.nirq, 0);
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"abc", 3), 3);
    /* Without OUT2 the interrupt is pending but the line stays low. */
    assert_int_equal(rd(c, IIR), 0xc4);
    assert_int_equal(c->fake.nirq, 0);
    wr(c, MCR, 0x08);
    assert_int_equal(c->fake.nirq, 1);
    assert_true(c->fake.level);

    assert_true(rd(c, LSR) & 0x01);
    assert_int_equal(rd(c, RBR), 'a');
    assert_int_equal(rd(c, RBR), 'b');
    assert_true(c->fake.level);
    assert_int_equal(rd(c, RBR), 'c');
    assert_false(c->fake.level);
    assert_int_equal(c->fake.nirq, 2);
    assert_int_equal(rd(c, LSR) & 0x01, 0);
    assert_int_equal(rd(c, IIR), 0xc1);

    /* Data arriving with the interrupt enabled raises the line at once. */
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"z", 1), 1);
    assert_true(c->fake.level);
    /* Clearing OUT2 drops it without the data going anywhere. */
    wr(c, MCR, 0x00);
    assert_false(c->fake.level);
    assert_int_equal(rd(c, RBR), 'z');
}

static void test_iir_priority(void **state)
{
    struct ctx *c = *state;
    uint8_t fill[1024];

    memset(fill, 'f', sizeof(fill));
    wr(c, FCR, 0x01);
    assert_int_equal(uart_receive(c->uart, fill, sizeof(fill)), sizeof(fill));
    wr(c, IER, 0x0f);
    /* Loopback with a full FIFO: the looped byte overruns. Entering loopback with only OUT2
     * set drops CTS and DSR, which leaves modem-status deltas. */
    wr(c, MCR, 0x10 | 0x08);
    wr(c, RBR, 'x');
    assert_int_equal(rd(c, IIR), 0xc6);        /* line status first */
    assert_int_equal(rd(c, LSR) & 0x03, 0x03); /* OE and DR; the read clears OE */
    assert_int_equal(rd(c, LSR) & 0x02, 0);
    assert_int_equal(rd(c, IIR), 0xc4); /* then received data */
    for (size_t i = 0; i < sizeof(fill); i++)
        assert_int_equal(rd(c, RBR), 'f'); /* the overrun byte was lost */
    assert_int_equal(rd(c, IIR), 0xc2);    /* then THR empty; this read acks it */
    assert_int_equal(rd(c, IIR), 0xc0);    /* then modem status */
    assert_int_not_equal(rd(c, MSR) & 0x0f, 0);
    assert_int_equal(rd(c, IIR), 0xc1);
    /* Loopback keeps the interrupt off the line (OUT2 pin forced inactive). */
    assert_int_equal(c->fake.nirq, 0);
}

static void test_thre_interrupt(void **state)
{
    struct ctx *c = *state;

    wr(c, MCR, 0x08);
    wr(c, IER, 0x02);
    assert_true(c->fake.level);                /* THR is empty: enabling ETBEI raises it */
    assert_int_equal(rd(c, IIR) & 0x0f, 0x02); /* the IIR read acknowledges it ... */
    assert_false(c->fake.level);
    assert_int_equal(rd(c, IIR) & 0x0f, 0x01); /* ... and it stays quiet */
    wr(c, IER, 0x02);                          /* rewriting the same IER does not re-arm */
    assert_false(c->fake.level);
    wr(c, RBR, 'a'); /* a transmitted byte empties THR again */
    assert_true(c->fake.level);
    wr(c, RBR, 'b'); /* still pending: no second edge */
    assert_true(c->fake.level);
    wr(c, IER, 0); /* disabling ETBEI lowers the line */
    assert_false(c->fake.level);
    assert_int_equal(rd(c, IIR) & 0x0f, 0x01);
    assert_int_equal(c->fake.nirq, 4);
    assert_int_equal(c->fake.nout, 2);

    /* THRE is acknowledged by IIR only when it is the source reported: RX data outranks it. */
    wr(c, IER, 0x03);
    assert_true(c->fake.level);
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"q", 1), 1);
    assert_int_equal(rd(c, IIR) & 0x0f, 0x04);
    assert_int_equal(rd(c, RBR), 'q');
    assert_int_equal(rd(c, IIR) & 0x0f, 0x02);
    assert_false(c->fake.level);
}

static void test_fifo_full_and_clear(void **state)
{
    struct ctx *c = *state;
    uint8_t big[2000];

    memset(big, 'b', sizeof(big));
    wr(c, FCR, 0x01);
    assert_int_equal(uart_rx_space(c->uart), 1024);
    assert_int_equal(uart_receive(c->uart, big, sizeof(big)), 1024);
    assert_int_equal(uart_rx_space(c->uart), 0);
    assert_int_equal(uart_receive(c->uart, big, 5), 0);
    assert_int_equal(rd(c, RBR), 'b');
    assert_int_equal(uart_rx_space(c->uart), 1);
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"xy", 2), 1);
    /* Host input never overruns: it is refused instead. */
    assert_int_equal(rd(c, LSR) & 0x02, 0);
    /* Rewriting the same enable bit keeps the data; "clear receive FIFO" empties it. */
    wr(c, FCR, 0x01);
    assert_int_equal(uart_rx_space(c->uart), 0);
    wr(c, FCR, 0x03);
    assert_int_equal(uart_rx_space(c->uart), 1024);
    assert_int_equal(rd(c, LSR) & 0x01, 0);
    wr(c, FCR, 0x01);
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"ab", 2), 2);
    wr(c, FCR, 0x00); /* changing the enable bit clears the FIFO */
    assert_int_equal(rd(c, IIR) & 0xc0, 0);
    assert_int_equal(rd(c, LSR) & 0x01, 0);
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"cd", 2), 2);
    wr(c, FCR, 0x06); /* reset bits without enable do nothing */
    assert_int_equal(rd(c, RBR), 'c');
}

static void test_loopback(void **state)
{
    struct ctx *c = *state;

    wr(c, MCR, 0x10);
    assert_int_equal(rd(c, MSR) & 0xf0, 0);
    /* Every output maps to its input, with a delta bit. */
    wr(c, MCR, 0x10 | 0x01);
    assert_int_equal(rd(c, MSR), 0x20 | 0x02); /* DSR, with its delta */
    wr(c, MCR, 0x10 | 0x02);
    assert_int_equal(rd(c, MSR), 0x10 | 0x01 | 0x02); /* CTS */
    wr(c, MCR, 0x10 | 0x04);
    assert_int_equal(rd(c, MSR), 0x40 | 0x01); /* RI; TERI only on its fall */
    wr(c, MCR, 0x10 | 0x08);
    assert_int_equal(rd(c, MSR), 0x80 | 0x04 | 0x08); /* DCD, and RI fell */
    assert_int_equal(rd(c, MSR), 0x80);               /* deltas clear on read */

    /* Transmitted bytes come back in RBR instead of leaving. */
    wr(c, RBR, 'L');
    wr(c, RBR, 'B');
    assert_int_equal(c->fake.nout, 0);
    assert_true(rd(c, LSR) & 0x01);
    assert_int_equal(rd(c, RBR), 'L');
    assert_int_equal(rd(c, RBR), 'B');
    /* The line is cut: host input waits with the caller. */
    assert_int_equal(uart_rx_space(c->uart), 0);
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"h", 1), 0);

    wr(c, MCR, 0x00);
    assert_int_equal(rd(c, MSR) & 0xf0, 0xb0);
    assert_int_equal(uart_receive(c->uart, (const uint8_t *)"h", 1), 1);
    wr(c, RBR, 'o');
    assert_int_equal(c->fake.nout, 1);
    assert_int_equal(c->fake.out[0], 'o');
}

static void test_dlab_and_scratch(void **state)
{
    struct ctx *c = *state;

    wr(c, IER, 0x05);
    wr(c, LCR, 0x83);
    assert_int_equal(rd(c, 0), 12); /* 9600 baud by default */
    wr(c, 0, 0x01);
    wr(c, 1, 0x02);
    assert_int_equal(rd(c, 0), 0x01);
    assert_int_equal(rd(c, 1), 0x02);
    wr(c, LCR, 0x03);
    assert_int_equal(rd(c, LCR), 0x03);
    assert_int_equal(rd(c, IER), 0x05); /* the divisor did not touch IER */
    wr(c, LCR, 0x83);
    assert_int_equal(rd(c, 1), 0x02);
    wr(c, LCR, 0x03);

    wr(c, SCR, 0xa5);
    assert_int_equal(rd(c, SCR), 0xa5);
    /* MCR keeps bits 4:0 only; LSR and MSR ignore writes. */
    wr(c, MCR, 0xe3);
    assert_int_equal(rd(c, MCR), 0x03);
    wr(c, LSR, 0x00);
    assert_int_equal(rd(c, LSR) & 0x60, 0x60);
    wr(c, MSR, 0x00);
    assert_int_equal(rd(c, MSR) & 0xf0, 0xb0);
}

static void test_odd_lengths_and_offsets(void **state)
{
    struct ctx *c = *state;
    uint8_t buf[16];

    /* A 4-byte read at offset 4: MCR, LSR, MSR, SCR. */
    wr(c, SCR, 0x77);
    memset(buf, 0, sizeof(buf));
    uart_io(c->uart, 4, buf, 4, false);
    assert_int_equal(buf[0], 0);
    assert_int_equal(buf[1] & 0x60, 0x60);
    assert_int_equal(buf[2] & 0xf0, 0xb0);
    assert_int_equal(buf[3], 0x77);

    /* Past the last register: all-ones, and nothing past data[len) is touched. */
    memset(buf, 0xcc, sizeof(buf));
    uart_io(c->uart, 6, buf, 8, false);
    assert_int_equal(buf[1], 0x77);
    for (int i = 2; i < 8; i++)
        assert_int_equal(buf[i], 0xff);
    for (int i = 8; i < 16; i++)
        assert_int_equal(buf[i], 0xcc);
    uart_io(c->uart, 8, buf, 1, false);
    assert_int_equal(buf[0], 0xff);
    uart_io(c->uart, UINT64_MAX, buf, 4, false);
    assert_int_equal(buf[3], 0xff);
    uart_io(c->uart, UINT64_MAX - 1, buf, 8, true); /* ignored, no wrap-around */
    assert_int_equal(rd(c, SCR), 0x77);

    /* A wide write reaches consecutive registers: THR, IER, FCR, LCR. */
    memcpy(buf, "\x41\x00\x01\x03", 4);
    uart_io(c->uart, 0, buf, 4, true);
    assert_int_equal(c->fake.nout, 1);
    assert_int_equal(c->fake.out[0], 'A');
    assert_int_equal(rd(c, LCR), 0x03);
    assert_int_equal(rd(c, IIR) & 0xc0, 0xc0);
    /* A 2-byte write at the last register writes SCR and drops the rest. */
    memcpy(buf, "\x11\x22", 2);
    uart_io(c->uart, 7, buf, 2, true);
    assert_int_equal(rd(c, SCR), 0x11);
    /* A zero-length access does nothing. */
    uart_io(c->uart, 0, buf, 0, true);
    assert_int_equal(c->fake.nout, 1);
}

struct writer {
    struct ctx *c;
    uint8_t base;
};

static void *write_thread(void *opaque)
{
    struct writer *w = opaque;

    for (int i = 0; i < 2000; i++)
        wr(w->c, RBR, (uint8_t)(w->base + i % 26));
    return NULL;
}

static void *receive_thread(void *opaque)
{
    struct ctx *c = opaque;
    uint8_t byte = 'r';

    for (int i = 0; i < 1000; i++)
        assert_int_equal(uart_receive(c->uart, &byte, 1), 1);
    return NULL;
}

/* Two vCPUs transmitting while the event loop feeds input: each vCPU's bytes reach the output
 * callback whole and in order, calls never overlap, and no interrupt level is driven twice. */
static void test_concurrent_access(void **state)
{
    struct ctx *c = *state;
    struct writer a = {c, 'a'}, b = {c, 'A'};
    pthread_t ta, tb, tr;
    int next_a = 0, next_b = 0;

    wr(c, MCR, 0x08);
    wr(c, IER, 0x03);
    assert_int_equal(pthread_create(&ta, NULL, write_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, write_thread, &b), 0);
    assert_int_equal(pthread_create(&tr, NULL, receive_thread, c), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tr, NULL);
    assert_int_equal(c->fake.nout, 4000);
    for (size_t i = 0; i < c->fake.nout; i++) {
        uint8_t ch = c->fake.out[i];

        if (ch >= 'a' && ch <= 'z')
            assert_int_equal(ch, 'a' + next_a++ % 26);
        else
            assert_int_equal(ch, 'A' + next_b++ % 26);
    }
    assert_int_equal(uart_rx_space(c->uart), 24);
    assert_true(c->fake.level);
}

static void test_create(void **state)
{
    struct dev_host no_irq = {.request_exit = fake_exit};
    struct fake f = {0};
    struct dev_host host = {.set_irq = fake_set_irq, .request_exit = fake_exit, .opaque = &f};
    struct uart *u = uart_create(&host, GSI, NULL, NULL);
    uint8_t v = 'a';

    (void)state;
    /* Without an output callback, transmitted bytes are dropped. */
    assert_non_null(u);
    uart_io(u, 0, &v, 1, true);
    uart_io(u, 5, &v, 1, false);
    assert_int_equal(v & 0x60, 0x60);
    uart_destroy(u);

    errno = 0;
    assert_null(uart_create(NULL, GSI, fake_out, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(uart_create(&no_irq, GSI, fake_out, NULL));
    assert_int_equal(errno, EINVAL);
    uart_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_linux_probe_finds_16550a, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_data_and_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iir_priority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_full_and_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlab_and_scratch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_lengths_and_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_access, setup, teardown),
        cmocka_unit_test(test_create),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
