/* devices.c: the builder's device and service wiring: legacy devices, virtio-mmio slots and
 * their command-line announcement, the control socket and the file service. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/virtio_ids.h>

#include "control/control.h"
#include "fileservice/fileservice.h"
#include "lib/lib.h"
#include "machine_internal.h"

/* GSIs of virtio-mmio slots in order: the free ISA lines first (not 0 timer, 1 i8042, 2
 * cascade, 4 COM1, 8 RTC, 12 PS/2 mouse, 13 FPU), then the IOAPIC's pins 16..23. */
static const uint8_t virtio_gsis[X86_MAX_VIRTIO] = {5,  6,  7,  9,  10, 11, 14, 15,
                                                    16, 17, 18, 19, 20, 21, 22, 23};

static int register_pio(struct machine *m, uint64_t port, uint64_t len, bus_io_fn fn, void *opaque,
                        const char *name)
{
    int ret = bus_register(&m->vm->bus, BUS_PIO, port, len, fn, opaque, name);

    if (ret < 0)
        log_error("machine: cannot register %s at port %#llx: %s", name, (unsigned long long)port,
                  strerror(-ret));
    return ret;
}

int machine_setup_devices(struct machine *m)
{
    struct vm *vm = m->vm;
    int out_fd = m->console_fd >= 0 ? m->console_fd : STDOUT_FILENO;
    int ret;

    m->console = console_create(vm, out_fd, m->console_fd >= 0 ? -1 : STDIN_FILENO);
    m->uart = uart_create(&vm->host, X86_IRQ_COM1, console_output, m->console);
    m->i8042 = i8042_create(&vm->host);
    m->rtc = rtc_create();
    m->acpi_pm = m->cfg->acpi ? acpi_pm_create(&vm->host) : NULL;
    if (!m->console || !m->uart || !m->i8042 || !m->rtc || (m->cfg->acpi && !m->acpi_pm)) {
        log_error("machine: out of memory creating devices");
        return -ENOMEM;
    }
    boot_timer_init(&m->boot_timer, m->vm->start_ns);

    if ((ret = register_pio(m, X86_PORT_COM1, 8, uart_io, m->uart, "uart")) < 0 ||
        (ret = register_pio(m, X86_PORT_I8042_DATA, 5, i8042_io, m->i8042, "i8042")) < 0 ||
        (ret = register_pio(m, X86_PORT_RTC, 2, rtc_io, m->rtc, "rtc")) < 0 ||
        (ret = register_pio(m, X86_PORT_PCI_CONFIG, 8, pci_stub_io, NULL, "pci")) < 0 ||
        (ret = register_pio(m, X86_PORT_BOOT_TIMER, 1, boot_timer_io, &m->boot_timer,
                            "boot-timer")) < 0)
        return ret;
    if (m->acpi_pm &&
        (ret = register_pio(m, X86_PORT_ACPI_SLEEP, 3, acpi_pm_io, m->acpi_pm, "acpi-pm")) < 0)
        return ret;
    ret = bus_register(&vm->bus, BUS_MMIO, X86_BOOT_TIMER_MMIO, 0x1000, boot_timer_io,
                       &m->boot_timer, "boot-timer");
    if (ret < 0)
        return ret;
    return console_attach(m->console, m->uart, m->loop);
}

/* Puts `virtio_mmio.device=4K@BASE:GSI` on the kernel command line for each device, for kernels
 * without ACPI; a kernel with ACPI finds them in the DSDT too (docs/virtio.md says what then). */
static int announce_virtio(struct machine *m)
{
    const char *cmdline = m->cfg->cmdline ? m->cfg->cmdline : "";
    char words[X86_MAX_VIRTIO * 48] = "";
    size_t len = 0, outlen;

    if (!m->plat.nvirtio)
        return 0;
    for (unsigned i = 0; i < m->plat.nvirtio; i++)
        len += (size_t)snprintf(words + len, sizeof(words) - len,
                                "%svirtio_mmio.device=4K@%#llx:%u", i ? " " : "",
                                (unsigned long long)m->plat.virtio[i].base, m->plat.virtio[i].gsi);
    outlen = strlen(cmdline) + len + 2;
    m->cmdline = malloc(outlen);
    if (!m->cmdline)
        return -ENOMEM;
    return machine_cmdline_insert(cmdline, words, m->cmdline, outlen);
}

/* Takes a constructed device (NULL: the constructor failed with err) into the next slot.
 * Returns 0, -EINVAL for a user mistake (logged) or -errno from the transport. */
static int add_virtio(struct machine *m, const struct virtio_env *env, struct virtio_dev *dev,
                      const char *err)
{
    unsigned i = m->nvirtio;
    uint64_t base = X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_SIZE;
    int ret;

    if (!dev) {
        log_error("%s", err);
        return -EINVAL;
    }
    if (i >= X86_MAX_VIRTIO) {
        log_error("machine: too many virtio devices; kiln places at most %d", X86_MAX_VIRTIO);
        virtio_dev_destroy(dev);
        return -EINVAL;
    }
    m->virtio[m->nvirtio++] = dev; /* from here on teardown destroys it */
    ret = virtio_mmio_attach(dev, env, i, base, virtio_gsis[i]);
    if (ret < 0)
        return ret == -EINVAL ? -EIO : ret;
    m->plat.virtio[i] =
        (struct x86_virtio_dev){.base = base, .size = X86_VIRTIO_MMIO_SIZE, .gsi = virtio_gsis[i]};
    m->plat.nvirtio = i + 1;
    return 0;
}

/* Creates the configured virtio devices in the documented order (docs/virtio.md): disks, net,
 * vsock, rng, balloon; slot i sits at X86_VIRTIO_MMIO_BASE + i pages on virtio_gsis[i]. */
int machine_setup_virtio(struct machine *m)
{
    const struct machine_config *cfg = m->cfg;
    struct virtio_env env = {
        .bus = &m->vm->bus, .loop = m->loop, .mem = &m->vm->mem, .host = &m->vm->host};
    char err[256] = "";
    int ret = 0;

    for (unsigned i = 0; ret == 0 && i < cfg->ndisks; i++)
        ret = add_virtio(m, &env, virtio_blk_create(&env, &cfg->disks[i], err, sizeof(err)), err);
    if (ret == 0 && cfg->net)
        ret = add_virtio(m, &env, virtio_net_create(&env, &cfg->net_cfg, err, sizeof(err)), err);
    if (ret == 0 && cfg->vsock) {
        struct virtio_vsock_config vc = {.guest_cid = cfg->vsock_cid ? cfg->vsock_cid
                                                                     : VSOCK_DEFAULT_GUEST_CID,
                                         .uds_path = m->vsock_path};
        ret = add_virtio(m, &env, virtio_vsock_create(&env, &vc, err, sizeof(err)), err);
    }
    if (ret == 0 && cfg->rng)
        ret = add_virtio(m, &env, virtio_rng_create(&env, err, sizeof(err)), err);
    if (ret == 0 && cfg->balloon)
        ret = add_virtio(m, &env, virtio_balloon_create(&env, &cfg->balloon_cfg, err, sizeof(err)),
                         err);
    if (ret < 0)
        return ret;
    return announce_virtio(m);
}

/* New clients are refused at once when the VM stops, while teardown carries on. */
static void control_stopped(void *opaque, enum vm_exit_reason reason)
{
    (void)reason;
    ctl_server_close_listener(opaque);
}

/* The control socket (docs/control-protocol.md): control.sock in the runtime directory, served
 * on the event loop to root and this process's user. */
int machine_setup_control(struct machine *m)
{
    struct ctl_server_config cc = {.loop = m->loop, .ops = &vmctl_ops, .owner = geteuid()};
    char path[PATH_MAX + 16], err[PATH_MAX + 64];

    for (unsigned i = 0; i < m->nvirtio; i++)
        if (m->virtio[i]->device_id == VIRTIO_ID_BALLOON)
            m->balloon = m->virtio[i];
    m->vmctl = vmctl_create(m->vm, m->balloon);
    if (!m->vmctl)
        return -ENOMEM;
    cc.opaque = m->vmctl;
    snprintf(path, sizeof(path), "%s/" KILN_CTL_SOCKET, m->rundir);
    m->ctl = ctl_server_create(path, &cc, err, sizeof(err));
    if (!m->ctl) {
        log_error("machine: %s", err);
        return -EIO;
    }
    return vm_on_exit(m->vm, control_stopped, m->ctl);
}

/* The read-only file service (docs/file-service.md): a Unix socket where a guest's vsock
 * connection to KILN_FS_PORT arrives, served on the event loop; only with vsock and --files or
 * --file. Returns 0, -EINVAL for a user mistake (logged) or -errno. */
int machine_setup_files(struct machine *m)
{
    const struct machine_config *cfg = m->cfg;
    struct fsvc_config fc = {.dir = cfg->files_dir, .files = cfg->files, .nfiles = cfg->nfiles};
    char path[PATH_MAX + 16], err[PATH_MAX + 128];
    int ret;

    if (!cfg->vsock || (!cfg->files_dir && !cfg->nfiles))
        return 0;
    m->fsvc = fsvc_create(&fc, err, sizeof(err));
    if (!m->fsvc) {
        log_error("machine: %s", err);
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "%s_%u", m->vsock_path, KILN_FS_PORT);
    ret = fsvc_listen(m->fsvc, path, err, sizeof(err));
    if (ret < 0) {
        log_error("machine: file service: %s", err);
        /* A --vsock path too long for its _PORT suffix, or a file in the way: the user's. */
        return ret == -ENAMETOOLONG || ret == -EEXIST ? -EINVAL : ret == -EINVAL ? -EIO : ret;
    }
    ret = fsvc_attach(m->fsvc, m->loop);
    if (ret < 0) {
        log_error("machine: file service: cannot watch it: %s", strerror(-ret));
        return ret == -EINVAL ? -EIO : ret;
    }
    /* Tells the default /init that the service is there, so a VM without it never tries. */
    const char *old = m->cmdline ? m->cmdline : cfg->cmdline ? cfg->cmdline : "";
    size_t len = strlen(old) + sizeof(" " KILN_FS_CMDLINE_HINT) + 1;
    char *cmdline = malloc(len);
    if (!cmdline)
        return -ENOMEM;
    ret = machine_cmdline_insert(old, KILN_FS_CMDLINE_HINT, cmdline, len);
    free(m->cmdline);
    m->cmdline = cmdline;
    return ret;
}
