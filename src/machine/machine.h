/* machine.h: the builder that turns a machine configuration into a running VM: it creates the VM,
 * wires the devices, loads the kernel, runs until the guest or the user ends it, and tears down. */
#ifndef KILN_MACHINE_H
#define KILN_MACHINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "devices/virtio/virtio.h"
#include "vmm/vmm.h"

#define MACHINE_MAX_DISKS 8
#define MACHINE_MAX_FILES 32 /* --file */

struct machine_config {
    const char *kernel_path; /* required */
    const char *initrd_path; /* NULL: none */
    const char *cmdline;     /* the whole kernel command line */
    uint64_t mem_size;
    unsigned ncpus;
    bool acpi;                /* build ACPI tables (the MP table is always built) */
    bool hugepages;           /* 2 MiB guest pages where allowed (never with a balloon) */
    const char *console_path; /* NULL: the guest console is this process's stdin/stdout */
    unsigned timeout_s;       /* 0: no limit */
    const char *stats_path;   /* NULL: none; else a JSON summary written at exit */
    const char *kvm_path;     /* NULL: /dev/kvm */
    const char *name;         /* --name; NULL: "kiln-<pid>". Names the runtime directory. */
    int ready_fd;             /* > 0: READY is reported there (ready.c); 0: nowhere */

    /* virtio-mmio devices, placed in this order (docs/virtio.md): disks (/dev/vda, vdb, ...),
     * net, vsock, rng, balloon. */
    struct virtio_blk_config disks[MACHINE_MAX_DISKS];
    unsigned ndisks;
    bool net;
    struct virtio_net_config net_cfg;
    bool vsock;
    const char *vsock_path; /* host side of vsock; NULL: vsock.sock in the runtime directory */
    uint64_t vsock_cid;     /* 0: VSOCK_DEFAULT_GUEST_CID */
    bool rng;
    bool balloon;
    struct virtio_balloon_config balloon_cfg;
    /* The read-only file service (docs/file-service.md), served at <vsock path>_1026 when the VM
     * has vsock and one of these is given. */
    const char *files_dir;                /* --files DIR, or NULL */
    const char *files[MACHINE_MAX_FILES]; /* --file NAME=HOSTPATH values */
    unsigned nfiles;
};

/* Boots and runs the machine; returns the exit code of docs/exit-codes.md (VM_EXIT_*).
 * start_ns is the process start (CLOCK_MONOTONIC) that boot times are measured from.
 * Errors are reported through the logger before returning VM_EXIT_ERROR or VM_EXIT_USAGE. */
int machine_run(const struct machine_config *cfg, uint64_t start_ns);

/* Inserts `words` into a kernel command line before the `--` that starts init's arguments
 * (outside double quotes), or at the end when there is none, with single spaces around it.
 * Returns 0, or -E2BIG when out (outlen bytes) is too small. (cmdline.c) */
int machine_cmdline_insert(const char *cmdline, const char *words, char *out, size_t outlen);

/* ---- runtime directory (rundir.c) -----------------------------------------------------------
 * Each VM owns a directory holding control.sock, vsock.sock (and the vsock.sock_PORT listeners
 * of guest-initiated connections) and a pid file: $XDG_RUNTIME_DIR/kiln/<name>, or
 * /run/kiln/<name> when XDG_RUNTIME_DIR is unset. Two live VMs never share one; a directory left
 * by a dead process is detected by its pid file and taken over. */
#define RUNDIR_NAME_MAX 64
/* Names are 1..RUNDIR_NAME_MAX characters of [A-Za-z0-9._-], not starting with '.'. */
bool rundir_name_valid(const char *name);
/* The directory path VM `name` would use (no side effects). Returns 0 or -ENAMETOOLONG. */
int rundir_path(const char *name, char *out, size_t outlen);
/* Creates the directory for `name` (mode 0700, parents as needed) and writes the pid file.
 * Returns 0 with the path in out; -EEXIST when a live process owns it, -EINVAL for a bad name,
 * or -errno; err then names the problem. */
int rundir_create(const char *name, char *out, size_t outlen, char *err, size_t errlen);
/* Removes the directory and everything kiln put in it (files and sockets, not subdirectories). */
void rundir_remove(const char *path);

/* ---- READY (ready.c) -------------------------------------------------------------------------
 * Listens on "<vsock_path>_1025" for the guest agent's READY frame (docs/sandbox.md): logs where
 * the boot time went and, once, writes "READY <kernel_us> <agent_us> <vmm_us>\n" to notify_fd
 * (> 0; then closed): kernel_us/agent_us are the guest's clock, vmm_us the time since start_ns.
 * Returns NULL with errno (logged) on failure. */
struct ready;
struct ready *ready_create(struct evloop *loop, const char *vsock_path, int notify_fd,
                           uint64_t start_ns);
void ready_destroy(struct ready *r);
/* Appends the READY figures (,"ready_us":N,...) to the JSON object being written to f, if any. */
void ready_write_stats(const struct ready *r, FILE *f);

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
