/* machine_internal.h: what the builder's files (machine.c: lifecycle; devices.c: device and
 * service wiring) share: the machine's state and the set-up steps machine_run calls in order. */
#ifndef KILN_MACHINE_INTERNAL_H
#define KILN_MACHINE_INTERNAL_H

#include <limits.h>

#include "arch/x86/x86.h"
#include "devices/legacy/legacy.h"
#include "machine.h"

struct machine {
    const struct machine_config *cfg;
    struct vm *vm;
    struct evloop *loop;
    struct console *console;
    struct uart *uart;
    struct i8042 *i8042;
    struct rtc *rtc;
    struct acpi_pm *acpi_pm;
    struct boot_timer boot_timer;
    int console_fd; /* --console file, or -1 */
    int signal_fd;
    int timeout_fd;
    int poll_fd;
    unsigned stopped_rounds;
    char rundir[PATH_MAX];      /* this VM's runtime directory, "" until created */
    char vsock_path[PATH_MAX];  /* effective vsock host socket: --vsock or <rundir>/vsock.sock */
    struct virtio_dev *balloon; /* for BalloonAdjust; NULL without --balloon */
    struct vmctl *vmctl;        /* the control socket's view of the VM */
    struct ctl_server *ctl;
    struct fsvc *fsvc;   /* the read-only file service, or NULL */
    struct ready *ready; /* the guest agent's READY listener (with vsock), or NULL */
    struct virtio_dev *virtio[X86_MAX_VIRTIO];
    unsigned nvirtio;
    struct x86_platform plat; /* CPUs and virtio devices, for the MP and ACPI tables */
    char *cmdline;            /* cfg->cmdline with the virtio-mmio announcements */
};

/* ---- set-up steps (devices.c), in the order machine_run calls them -------------------------- */
/* The console and the legacy devices (COM1, i8042, RTC, PCI stub, boot timer, ACPI PM with
 * --acpi) on the bus. Returns 0 or -errno (logged). */
int machine_setup_devices(struct machine *m);
/* Creates the configured virtio devices in the documented order (docs/virtio.md) and announces
 * them on the kernel command line. Returns 0, -EINVAL for a user mistake (logged) or -errno. */
int machine_setup_virtio(struct machine *m);
/* The control socket in the runtime directory (docs/control-protocol.md). Returns 0 or -errno
 * (logged). Call after machine_setup_virtio: it looks for the balloon. */
int machine_setup_control(struct machine *m);
/* The read-only file service, only with vsock and --files/--file (docs/file-service.md).
 * Returns 0, -EINVAL for a user mistake (logged) or -errno. */
int machine_setup_files(struct machine *m);

#endif
