/* legacy.h: the PC devices a Linux guest expects on port I/O: a 16550A UART, an i8042 that can
 * reset the machine, RTC/CMOS, PCI configuration ports that find nothing, the ACPI power ports
 * and kiln's boot-timer. Each device is a bus handler plus state; none knows about KVM. */
#ifndef KILN_LEGACY_H
#define KILN_LEGACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../vmm/vmm.h"

/* ---- 16550A UART (uart.c) ------------------------------------------------------------------ */
/* Receives every byte the guest transmits, on the vCPU thread. Must not block for long. */
typedef void (*uart_output_fn)(void *opaque, const uint8_t *buf, size_t len);

struct uart;
/* A UART raising `gsi` through host->set_irq. Returns NULL with errno on allocation failure. */
struct uart *uart_create(const struct dev_host *host, uint32_t gsi, uart_output_fn out,
                         void *out_opaque);
void uart_destroy(struct uart *uart);
/* Bus handler for the 8 registers at the COM port base. */
void uart_io(void *uart, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* Queues host input for the guest (event-loop thread). Returns how many bytes were accepted;
 * fewer than len when the receive FIFO is full (the caller retries when uart_rx_space() > 0). */
size_t uart_receive(struct uart *uart, const uint8_t *buf, size_t len);
size_t uart_rx_space(struct uart *uart);

/* ---- i8042 (i8042.c) --------------------------------------------------------------------------
 * Enough of a keyboard controller for Linux to probe it quickly and find no keyboard; command
 * 0xFE (pulse reset) asks host->request_exit(VM_EXIT_REBOOT). Ports 0x60 and 0x64. */
struct i8042;
struct i8042 *i8042_create(const struct dev_host *host);
void i8042_destroy(struct i8042 *dev);
void i8042_io(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* offset: 0 = port 0x60 (data), 4 = port 0x64 (status/command); register 0x60..0x64 (len 5). */

/* ---- RTC / CMOS (rtc.c) ---------------------------------------------------------------------
 * Index port 0x70, data port 0x71: the host's UTC time in BCD, 24-hour mode, never "update in
 * progress"; other CMOS bytes read as stored (writes are kept in the 128-byte array). */
struct rtc;
struct rtc *rtc_create(void);
void rtc_destroy(struct rtc *rtc);
void rtc_io(void *rtc, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* ---- PCI configuration ports (pci_stub.c) ---------------------------------------------------
 * 0xcf8..0xcff: address writes are latched, data reads return all-ones ("no device"). */
void pci_stub_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* ---- ACPI power ports (acpi_pm.c) -------------------------------------------------------------
 * X86_PORT_ACPI_SLEEP..X86_PORT_ACPI_RESET (3 ports). Sleep control SLP_EN with SLP_TYP 5 (S5)
 * requests VM_EXIT_POWEROFF; the reset register with value 1 requests VM_EXIT_REBOOT. */
struct acpi_pm;
struct acpi_pm *acpi_pm_create(const struct dev_host *host);
void acpi_pm_destroy(struct acpi_pm *dev);
void acpi_pm_io(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* ---- boot timer (boot_timer.c) ----------------------------------------------------------------
 * The guest writes any byte at offset 0 (port X86_PORT_BOOT_TIMER or X86_BOOT_TIMER_MMIO) to mark
 * "userspace reached". The first write records now - start_ns and logs it; later writes are
 * counted. Reads return 0. */
struct boot_timer {
    uint64_t start_ns;         /* process start, CLOCK_MONOTONIC */
    _Atomic uint64_t first_ns; /* 0 until the first write: elapsed ns at that write */
    _Atomic uint64_t writes;
};
void boot_timer_init(struct boot_timer *timer, uint64_t start_ns);
void boot_timer_io(void *timer, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

#endif
