/* acpi_pm.c: the hardware-reduced ACPI sleep control, sleep status and reset registers. */
#include <errno.h>
#include <stdlib.h>

#include "devices/legacy/legacy.h"
#include "lib/lib.h"

#define ACPI_PM_NPORTS 3
#define REG_SLEEP_CTL  0 /* X86_PORT_ACPI_SLEEP */
#define REG_SLEEP_STS  1 /* X86_PORT_ACPI_STATUS */
#define REG_RESET      2 /* X86_PORT_ACPI_RESET */

/* ACPI 6.x, 4.8.3.7: sleep control register. */
#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK  0x07
#define SLP_EN        0x20
#define SLP_TYP_S5    5 /* must match \_S5 in the DSDT */
#define RESET_VALUE   1 /* must match the FADT's RESET_VALUE */

struct acpi_pm {
    struct dev_host host; /* immutable after create: no lock needed */
};

struct acpi_pm *acpi_pm_create(const struct dev_host *host)
{
    struct acpi_pm *dev;

    if (!host || !host->request_exit) {
        errno = EINVAL;
        return NULL;
    }
    dev = calloc(1, sizeof(*dev));
    if (!dev)
        return NULL;
    dev->host = *host;
    return dev;
}

void acpi_pm_destroy(struct acpi_pm *dev)
{
    free(dev);
}

static void write_sleep_ctl(struct acpi_pm *dev, uint8_t val)
{
    unsigned typ = (val >> SLP_TYP_SHIFT) & SLP_TYP_MASK;

    if (!(val & SLP_EN))
        return; /* Linux writes the type alone when it wakes; nothing to do */
    if (typ == SLP_TYP_S5) {
        log_info("acpi-pm: guest entered S5 (soft off)");
        dev->host.request_exit(dev->host.opaque, VM_EXIT_POWEROFF);
        return;
    }
    log_once(LOG_WARN,
             "acpi-pm: ignoring sleep control 0x%02x: sleep type %u is not supported, "
             "only %u (S5) is",
             val, typ, SLP_TYP_S5);
}

static void write_reset(struct acpi_pm *dev, uint8_t val)
{
    if (val != RESET_VALUE) {
        log_once(LOG_WARN, "acpi-pm: ignoring reset register value 0x%02x (the reset value is %u)",
                 val, RESET_VALUE);
        return;
    }
    log_info("acpi-pm: guest wrote the ACPI reset register");
    dev->host.request_exit(dev->host.opaque, VM_EXIT_REBOOT);
}

void acpi_pm_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct acpi_pm *dev = opaque;

    for (uint32_t i = 0; i < len; i++) {
        uint64_t reg = offset < ACPI_PM_NPORTS && i < ACPI_PM_NPORTS - offset ? offset + i : ~0ULL;

        if (!is_write) {
            /* Sleep status never shows a wake event; the other two registers are write-only. */
            data[i] = reg == ~0ULL ? 0xff : 0;
        } else if (reg == REG_SLEEP_CTL) {
            write_sleep_ctl(dev, data[i]);
        } else if (reg == REG_RESET) {
            write_reset(dev, data[i]);
        }
        /* REG_SLEEP_STS writes clear WAK_STS, which is never set. */
    }
}
