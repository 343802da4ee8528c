/* i8042.c: a PS/2 keyboard controller with nothing attached, there for probing and for reset. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "devices/legacy/legacy.h"
#include "lib/lib.h"

#define I8042_NPORTS  5 /* 0x60..0x64 */
#define PORT_DATA     0
#define PORT_CMD      4
#define I8042_KBD_GSI 1
#define I8042_AUX_GSI 12

#define STR_OBF     0x01
#define STR_SYS     0x04
#define STR_CMD     0x08 /* the last write went to the command port */
#define STR_UNLOCK  0x10 /* keyboard not inhibited: Linux warns "Keylock active" otherwise */
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS    0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE  0x40
/* What a BIOS typically leaves on a machine without a PS/2 mouse. */
#define CTR_INITIAL (CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE)

#define OUTPORT_RESET 0x01 /* active low: clearing it resets the CPU */
#define OUTPORT_A20   0x02

#define CMD_READ_RAM    0x20 /* 0x20..0x3f: RAM byte (0 is the CTR) */
#define CMD_WRITE_RAM   0x60 /* 0x60..0x7f */
#define CMD_AUX_DISABLE 0xa7
#define CMD_AUX_ENABLE  0xa8
#define CMD_AUX_TEST    0xa9
#define CMD_SELF_TEST   0xaa
#define CMD_KBD_TEST    0xab
#define CMD_KBD_DISABLE 0xad
#define CMD_KBD_ENABLE  0xae
#define CMD_READ_OUTP   0xd0
#define CMD_WRITE_OUTP  0xd1
#define CMD_WRITE_KBD   0xd2 /* next data byte comes back as keyboard input */
#define CMD_WRITE_AUX   0xd3 /* next data byte comes back as AUX input */
#define CMD_TO_AUX      0xd4 /* next data byte goes to the AUX device */
#define CMD_A20_OFF     0xdd
#define CMD_A20_ON      0xdf
#define CMD_PULSE       0xf0 /* 0xf0..0xff: pulse output-port bits whose command bit is 0 */

#define RET_SELF_TEST_OK 0x55
#define RET_IFACE_OK     0x00
#define RET_CLOCK_HIGH   0x02 /* interface test: clock line stuck high, i.e. nothing there */
#define RET_KBD_NAK      0xfe

struct i8042 {
    pthread_mutex_t lock; /* guards the fields below; vCPUs may race on the ports */
    struct dev_host host;
    uint8_t ram[32]; /* ram[0] is the controller configuration byte (CTR) */
    uint8_t outport;
    uint8_t out;      /* output buffer */
    bool obf;         /* output buffer full */
    bool out_aux;     /* the output byte came from the AUX side */
    bool out_timeout; /* the output byte reports a transmit time-out */
    bool last_was_cmd;
    uint8_t pending; /* command waiting for its data byte, 0 if none */
    bool kbd_irq, aux_irq;
    bool reset_logged;
};

static void respond(struct i8042 *dev, uint8_t byte, bool aux, bool timeout)
{
    /* One-byte output buffer: a new answer replaces an unread one, as on the real part. */
    dev->out = byte;
    dev->obf = true;
    dev->out_aux = aux;
    dev->out_timeout = timeout;
}

static void update_irqs(struct i8042 *dev)
{
    uint8_t ctr = dev->ram[0];
    bool kbd = dev->obf && !dev->out_aux && (ctr & CTR_KBDINT);
    bool aux = dev->obf && dev->out_aux && (ctr & CTR_AUXINT);

    if (kbd != dev->kbd_irq) {
        dev->kbd_irq = kbd;
        dev->host.set_irq(dev->host.opaque, I8042_KBD_GSI, kbd);
    }
    if (aux != dev->aux_irq) {
        dev->aux_irq = aux;
        dev->host.set_irq(dev->host.opaque, I8042_AUX_GSI, aux);
    }
}

static uint8_t read_status(const struct i8042 *dev)
{
    uint8_t str = STR_UNLOCK;

    if (dev->obf)
        str |= STR_OBF;
    if (dev->obf && dev->out_aux)
        str |= STR_AUXDATA;
    if (dev->obf && dev->out_timeout)
        str |= STR_TIMEOUT;
    if (dev->ram[0] & CTR_SYS)
        str |= STR_SYS;
    if (dev->last_was_cmd)
        str |= STR_CMD;
    return str; /* IBF never: the controller takes every byte at once */
}

/* Returns true when the command asks for a CPU reset. */
static bool run_command(struct i8042 *dev, uint8_t cmd)
{
    dev->last_was_cmd = true;
    dev->pending = 0; /* a new command abandons one still waiting for its data byte */
    if (cmd >= CMD_READ_RAM && cmd < CMD_READ_RAM + 0x20) {
        respond(dev, dev->ram[cmd - CMD_READ_RAM], false, false);
        return false;
    }
    if (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + 0x20) {
        dev->pending = cmd;
        return false;
    }
    if (cmd >= CMD_PULSE)
        return !(cmd & OUTPORT_RESET);
    switch (cmd) {
    case CMD_AUX_DISABLE:
        dev->ram[0] |= CTR_AUXDIS;
        break;
    case CMD_AUX_ENABLE:
        dev->ram[0] &= ~CTR_AUXDIS;
        break;
    case CMD_AUX_TEST:
        /* Nothing is attached to the AUX port. Any other answer sends Linux's
         * i8042_check_aux() on to an AUX IRQ test that only ends after a 250 ms timeout. */
        respond(dev, RET_CLOCK_HIGH, false, false);
        break;
    case CMD_SELF_TEST:
        dev->ram[0] |= CTR_SYS;
        respond(dev, RET_SELF_TEST_OK, false, false);
        break;
    case CMD_KBD_TEST:
        respond(dev, RET_IFACE_OK, false, false);
        break;
    case CMD_KBD_DISABLE:
        dev->ram[0] |= CTR_KBDDIS;
        break;
    case CMD_KBD_ENABLE:
        dev->ram[0] &= ~CTR_KBDDIS;
        break;
    case CMD_READ_OUTP:
        respond(dev, dev->outport, false, false);
        break;
    case CMD_WRITE_OUTP:
    case CMD_WRITE_KBD:
    case CMD_WRITE_AUX:
    case CMD_TO_AUX:
        dev->pending = cmd;
        break;
    case CMD_A20_OFF:
        dev->outport &= ~OUTPORT_A20;
        break;
    case CMD_A20_ON:
        dev->outport |= OUTPORT_A20;
        break;
    default:
        log_once(LOG_INFO,
                 "i8042: ignoring controller command 0x%02x (and any later unknown "
                 "ones)",
                 cmd);
        break;
    }
    return false;
}

/* Returns true when the byte asks for a CPU reset. */
static bool write_data(struct i8042 *dev, uint8_t val)
{
    uint8_t cmd = dev->pending;

    dev->last_was_cmd = false;
    dev->pending = 0;
    if (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + 0x20) {
        dev->ram[cmd - CMD_WRITE_RAM] = val;
        return false;
    }
    switch (cmd) {
    case CMD_WRITE_OUTP:
        dev->outport = val;
        return !(val & OUTPORT_RESET);
    case CMD_WRITE_KBD:
        respond(dev, val, false, false);
        return false;
    case CMD_WRITE_AUX:
        /* There is no AUX port: the byte comes back without the AUX flag, which makes Linux's
         * AUX loop test fail at once instead of after its 500 ms read timeout. */
        respond(dev, val, false, false);
        return false;
    case CMD_TO_AUX:
        return false; /* no AUX device to receive it */
    default:
        /* A byte for the keyboard, which is absent: the controller times out and answers NAK.
         * atkbd's GETID and SETLEDS then fail at once and it gives up on the port. */
        respond(dev, RET_KBD_NAK, false, true);
        return false;
    }
}

struct i8042 *i8042_create(const struct dev_host *host)
{
    struct i8042 *dev;
    int ret;

    if (!host || !host->set_irq || !host->request_exit) {
        errno = EINVAL;
        return NULL;
    }
    dev = calloc(1, sizeof(*dev));
    if (!dev)
        return NULL;
    ret = pthread_mutex_init(&dev->lock, NULL);
    if (ret) {
        free(dev);
        errno = ret;
        return NULL;
    }
    dev->host = *host;
    dev->ram[0] = CTR_INITIAL;
    dev->outport = OUTPORT_RESET | OUTPORT_A20;
    return dev;
}

void i8042_destroy(struct i8042 *dev)
{
    if (!dev)
        return;
    pthread_mutex_destroy(&dev->lock);
    free(dev);
}

void i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct i8042 *dev = opaque;
    bool reset = false;

    pthread_mutex_lock(&dev->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t port = offset < I8042_NPORTS && i < I8042_NPORTS - offset ? offset + i : ~0ULL;

        if (!is_write) {
            if (port == PORT_DATA) {
                data[i] = dev->out;
                dev->obf = false;
            } else {
                /* 0x61 belongs to KVM's in-kernel PIT; 0x62 and 0x63 are nothing. */
                data[i] = port == PORT_CMD ? read_status(dev) : 0xff;
            }
        } else if (port == PORT_DATA) {
            reset |= write_data(dev, data[i]);
        } else if (port == PORT_CMD) {
            reset |= run_command(dev, data[i]);
        }
    }
    update_irqs(dev);
    if (reset && !dev->reset_logged) {
        dev->reset_logged = true;
        log_info("i8042: guest pulsed the reset line");
    }
    pthread_mutex_unlock(&dev->lock);
    if (reset)
        dev->host.request_exit(dev->host.opaque, VM_EXIT_REBOOT);
}
