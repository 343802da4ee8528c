/* machine.h: the builder that turns a machine configuration into a running VM: it creates the VM,
 * wires the devices, loads the kernel, runs until the guest or the user ends it, and tears down. */
#ifndef KILN_MACHINE_H
#define KILN_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/vmm.h"

struct machine_config {
    const char *kernel_path; /* required */
    const char *initrd_path; /* NULL: none */
    const char *cmdline;     /* the whole kernel command line */
    uint64_t mem_size;
    unsigned ncpus;
    bool acpi;                /* build ACPI tables (the MP table is always built) */
    const char *console_path; /* NULL: the guest console is this process's stdin/stdout */
    unsigned timeout_s;       /* 0: no limit */
    const char *stats_path;   /* NULL: none; else a JSON summary written at exit */
    const char *kvm_path;     /* NULL: /dev/kvm */
};

/* Boots and runs the machine; returns the exit code of docs/exit-codes.md (VM_EXIT_*).
 * start_ns is the process start (CLOCK_MONOTONIC) that boot times are measured from.
 * Errors are reported through the logger before returning VM_EXIT_ERROR or VM_EXIT_USAGE. */
int machine_run(const struct machine_config *cfg, uint64_t start_ns);

/* ---- console (console.c) --------------------------------------------------------------------
 * Connects the COM1 UART to the user: guest output to out_fd, and, when in_fd >= 0, input from
 * in_fd (raw mode if it is a terminal; Ctrl-A x ends the VM, Ctrl-A Ctrl-A sends Ctrl-A). Also
 * watches the output for Linux's panic banner so the reset that follows counts as a panic. */
struct uart;
struct console;
struct console *console_create(struct vm *vm, int out_fd, int in_fd);
/* The UART output callback (uart_output_fn); opaque is the console. */
void console_output(void *console, const uint8_t *buf, size_t len);
/* Starts feeding input to `uart` from the event loop. */
int console_attach(struct console *con, struct uart *uart, struct evloop *loop);
/* Retries input that did not fit in the UART's FIFO; called from a periodic timer. */
void console_tick(struct console *con);
/* Restores the terminal, flushes and frees. */
void console_destroy(struct console *con);

#endif
