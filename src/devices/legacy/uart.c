/* uart.c: a 16550A UART (COM1) with an instant transmitter and a 1 KiB receive FIFO. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/legacy/legacy.h"
#include "lib/lib.h"

/* No real line paces the host's input, so the receive FIFO is far deeper than a 16550A's 16
 * bytes: a paste into the console is absorbed without the guest seeing an overrun. */
#define UART_RX_FIFO_SIZE 1024
#define UART_NREGS        8

enum uart_reg {
    REG_RBR_THR = 0, /* DLL when LCR.DLAB */
    REG_IER = 1,     /* DLM when LCR.DLAB */
    REG_IIR_FCR = 2,
    REG_LCR = 3,
    REG_MCR = 4,
    REG_LSR = 5,
    REG_MSR = 6,
    REG_SCR = 7,
};

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* transmitter holding register empty */
#define IER_ELSI  0x04 /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK  0x0f /* bits 7:4 read as zero on a 16550A; Linux's autoconfig relies on it */

#define IIR_NO_INT 0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_RLSI   0x06
#define IIR_FIFO   0xc0 /* both bits set: FIFOs enabled, "16550A" to the 8250 driver */

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_KEEP     0xc9 /* enable, DMA mode, trigger level: what a read-back would show */

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08 /* on a PC, gates the UART's interrupt onto the ISA line */
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR     0x01
#define LSR_OE     0x02
#define LSR_THRE   0x20
#define LSR_TEMT   0x40
#define LSR_ERRORS 0x1e /* OE, PE, FE, BI: cleared by reading LSR */

#define MSR_DCTS   0x01
#define MSR_DDSR   0x02
#define MSR_TERI   0x04
#define MSR_DDCD   0x08
#define MSR_DELTAS 0x0f
#define MSR_CTS    0x10
#define MSR_DSR    0x20
#define MSR_RI     0x40
#define MSR_DCD    0x80
/* Outside loopback the "modem" is always connected and ready. */
#define MSR_LINES_IDLE (MSR_DCD | MSR_DSR | MSR_CTS)

struct uart {
    /* Guards every field below. It is also held across host.set_irq so that the levels the
     * irqchip sees follow the order of the state changes (two vCPUs, or a vCPU and the event
     * loop, could otherwise deliver a stale level last). set_irq is a non-blocking ioctl. */
    pthread_mutex_t lock;
    /* Taken before `lock` is dropped and held across the output callback, so transmitted bytes
     * reach the callback in THR order while uart_receive() never waits on a slow console. */
    pthread_mutex_t out_lock;
    struct dev_host host;
    uint32_t gsi;
    uart_output_fn out;
    void *out_opaque;

    uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
    uint8_t lsr_errors; /* sticky LSR error bits */
    uint8_t msr;        /* lines (7:4) and deltas (3:0) */
    bool thre_pending;  /* the THR-empty interrupt is armed (cleared by IIR read or THR write) */
    bool irq_level;     /* the level last driven on `gsi` */
    size_t rx_head, rx_count;
    uint8_t rx[UART_RX_FIFO_SIZE];
};

static uint8_t modem_lines(const struct uart *u)
{
    uint8_t lines = 0;

    if (!(u->mcr & MCR_LOOP))
        return MSR_LINES_IDLE;
    /* Loopback wires the outputs to the inputs: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
    if (u->mcr & MCR_RTS)
        lines |= MSR_CTS;
    if (u->mcr & MCR_DTR)
        lines |= MSR_DSR;
    if (u->mcr & MCR_OUT1)
        lines |= MSR_RI;
    if (u->mcr & MCR_OUT2)
        lines |= MSR_DCD;
    return lines;
}

static void set_lines(struct uart *u, uint8_t lines)
{
    uint8_t old = u->msr & ~MSR_DELTAS;
    uint8_t changed = old ^ lines;
    uint8_t deltas = u->msr & MSR_DELTAS;

    if (changed & MSR_CTS)
        deltas |= MSR_DCTS;
    if (changed & MSR_DSR)
        deltas |= MSR_DDSR;
    if ((old & MSR_RI) && !(lines & MSR_RI))
        deltas |= MSR_TERI; /* trailing edge only */
    if (changed & MSR_DCD)
        deltas |= MSR_DDCD;
    u->msr = lines | deltas;
}

/* The highest-priority pending interrupt, as IIR bits 3:0. */
static uint8_t pending_source(const struct uart *u)
{
    if ((u->ier & IER_ELSI) && u->lsr_errors)
        return IIR_RLSI;
    if ((u->ier & IER_ERBFI) && u->rx_count)
        return IIR_RDI;
    if ((u->ier & IER_ETBEI) && u->thre_pending)
        return IIR_THRI;
    if ((u->ier & IER_EDSSI) && (u->msr & MSR_DELTAS))
        return IIR_MSI;
    return IIR_NO_INT;
}

static void update_irq(struct uart *u)
{
    /* In loopback the OUT2 pin is forced inactive, which closes the PC's interrupt gate. */
    bool level = pending_source(u) != IIR_NO_INT && (u->mcr & (MCR_OUT2 | MCR_LOOP)) == MCR_OUT2;

    if (level == u->irq_level)
        return;
    u->irq_level = level;
    u->host.set_irq(u->host.opaque, u->gsi, level);
}

static void rx_clear(struct uart *u)
{
    u->rx_head = 0;
    u->rx_count = 0;
}

static bool rx_push(struct uart *u, uint8_t byte)
{
    if (u->rx_count == UART_RX_FIFO_SIZE)
        return false;
    u->rx[(u->rx_head + u->rx_count) % UART_RX_FIFO_SIZE] = byte;
    u->rx_count++;
    return true;
}

static uint8_t rx_pop(struct uart *u)
{
    uint8_t byte;

    if (!u->rx_count)
        return 0;
    byte = u->rx[u->rx_head];
    u->rx_head = (u->rx_head + 1) % UART_RX_FIFO_SIZE;
    u->rx_count--;
    return byte;
}

static uint8_t read_reg(struct uart *u, unsigned reg)
{
    uint8_t val;

    switch (reg) {
    case REG_RBR_THR:
        return (u->lcr & LCR_DLAB) ? u->dll : rx_pop(u);
    case REG_IER:
        return (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
    case REG_IIR_FCR:
        val = pending_source(u);
        /* Reading IIR acknowledges a THR-empty interrupt only when it is the one reported. */
        if (val == IIR_THRI)
            u->thre_pending = false;
        return val | ((u->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
    case REG_LCR:
        return u->lcr;
    case REG_MCR:
        return u->mcr;
    case REG_LSR:
        /* The transmitter is instant, so THR and the shift register are always empty. */
        val = LSR_THRE | LSR_TEMT | u->lsr_errors | (u->rx_count ? LSR_DR : 0);
        u->lsr_errors = 0;
        return val;
    case REG_MSR:
        val = u->msr;
        u->msr &= ~MSR_DELTAS;
        return val;
    default:
        return u->scr;
    }
}

/* Returns true when `val` was transmitted (the caller hands it to the output callback). */
static bool write_reg(struct uart *u, unsigned reg, uint8_t val)
{
    uint8_t old;

    switch (reg) {
    case REG_RBR_THR:
        if (u->lcr & LCR_DLAB) {
            u->dll = val;
            return false;
        }
        /* The byte leaves at once, so THR is empty again and the interrupt re-arms. */
        u->thre_pending = true;
        if (!(u->mcr & MCR_LOOP))
            return true;
        if (!rx_push(u, val))
            u->lsr_errors |= LSR_OE;
        return false;
    case REG_IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = val;
            return false;
        }
        old = u->ier;
        u->ier = val & IER_MASK;
        /* Enabling ETBEI with THR empty raises the interrupt again even after an IIR read
         * acknowledged it: serial8250_do_startup() tests exactly this (else UART_BUG_THRE). */
        if ((old ^ u->ier) & IER_ETBEI)
            u->thre_pending = u->ier & IER_ETBEI;
        return false;
    case REG_IIR_FCR:
        /* Changing the enable bit clears the FIFOs; other bits only count while enabled. */
        if ((val ^ u->fcr) & FCR_ENABLE)
            rx_clear(u);
        if (!(val & FCR_ENABLE)) {
            u->fcr = 0;
            return false;
        }
        if (val & FCR_CLEAR_RX)
            rx_clear(u);
        u->fcr = val & FCR_KEEP;
        return false;
    case REG_LCR:
        u->lcr = val;
        return false;
    case REG_MCR:
        u->mcr = val & MCR_MASK;
        set_lines(u, modem_lines(u));
        return false;
    case REG_LSR:
    case REG_MSR:
        return false; /* factory-test writes: ignored */
    default:
        u->scr = val;
        return false;
    }
}

struct uart *uart_create(const struct dev_host *host, uint32_t gsi, uart_output_fn out,
                         void *out_opaque)
{
    struct uart *u;
    int ret;

    if (!host || !host->set_irq) {
        errno = EINVAL;
        return NULL;
    }
    u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    ret = pthread_mutex_init(&u->lock, NULL);
    if (ret)
        goto fail_lock;
    ret = pthread_mutex_init(&u->out_lock, NULL);
    if (ret)
        goto fail_out_lock;
    u->host = *host;
    u->gsi = gsi;
    u->out = out;
    u->out_opaque = out_opaque;
    u->dll = 12; /* 9600 baud from the 1.8432 MHz clock, as a BIOS leaves it */
    u->msr = MSR_LINES_IDLE;
    return u;

fail_out_lock:
    pthread_mutex_destroy(&u->lock);
fail_lock:
    free(u);
    errno = ret;
    return NULL;
}

void uart_destroy(struct uart *uart)
{
    if (!uart)
        return;
    pthread_mutex_destroy(&uart->out_lock);
    pthread_mutex_destroy(&uart->lock);
    free(uart);
}

void uart_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct uart *u = opaque;
    bool sent = false;
    uint8_t byte = 0;

    pthread_mutex_lock(&u->lock);
    /* A wide access touches consecutive registers, as the ISA bus splits it into bytes. */
    for (uint32_t i = 0; i < len; i++) {
        bool in_range = offset < UART_NREGS && i < UART_NREGS - offset;
        unsigned reg = in_range ? (unsigned)(offset + i) : 0;

        if (!is_write) {
            data[i] = in_range ? read_reg(u, reg) : 0xff;
        } else if (in_range && write_reg(u, reg, data[i])) {
            /* Only register 0 transmits, so one access sends at most one byte. */
            sent = true;
            byte = data[i];
        }
    }
    update_irq(u);
    if (!sent || !u->out) {
        pthread_mutex_unlock(&u->lock);
        return;
    }
    pthread_mutex_lock(&u->out_lock);
    pthread_mutex_unlock(&u->lock);
    u->out(u->out_opaque, &byte, 1);
    pthread_mutex_unlock(&u->out_lock);
}

size_t uart_receive(struct uart *uart, const uint8_t *buf, size_t len)
{
    size_t took = 0;

    pthread_mutex_lock(&uart->lock);
    /* In loopback the receiver is cut off from the line: host input waits with the caller
     * instead of being lost. */
    if (!(uart->mcr & MCR_LOOP)) {
        while (took < len && rx_push(uart, buf[took]))
            took++;
        update_irq(uart);
    }
    pthread_mutex_unlock(&uart->lock);
    return took;
}

size_t uart_rx_space(struct uart *uart)
{
    size_t space;

    pthread_mutex_lock(&uart->lock);
    space = (uart->mcr & MCR_LOOP) ? 0 : UART_RX_FIFO_SIZE - uart->rx_count;
    pthread_mutex_unlock(&uart->lock);
    return space;
}
