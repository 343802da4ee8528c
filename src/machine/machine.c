/* machine.c: the builder: configuration in, a wired and running VM out, an exit code back. This
 * file holds the lifecycle (create, loop, run, teardown, stats); devices.c the wiring. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "arch/x86/x86.h"
#include "control/control.h"
#include "devices/legacy/legacy.h"
#include "fileservice/fileservice.h"
#include "lib/lib.h"
#include "machine_internal.h"

#define KERNEL_MAX_SIZE (512 * MiB)
#define POLL_PERIOD_NS  (20 * 1000 * 1000ULL) /* halt detection and console retries */

static void on_signal(void *opaque, uint32_t events)
{
    struct machine *m = opaque;
    struct signalfd_siginfo si;

    (void)events;
    if (read(m->signal_fd, &si, sizeof(si)) != sizeof(si))
        return;
    log_info("machine: received signal %u, stopping the VM", si.ssi_signo);
    vm_request_exit(m->vm, si.ssi_signo == SIGINT ? VM_EXIT_SIGINT : VM_EXIT_SIGTERM);
}

static void on_timeout(void *opaque, uint32_t events)
{
    struct machine *m = opaque;
    uint64_t ticks;

    (void)events;
    if (read(m->timeout_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
        return;
    log_warn("machine: --timeout of %u s expired; stopping the VM", m->cfg->timeout_s);
    /* A guest that hangs is often waiting for a device: say where each queue stood. */
    for (unsigned i = 0; i < m->nvirtio; i++)
        virtio_dev_log_state(m->virtio[i]);
    vm_request_exit(m->vm, VM_EXIT_TIMEOUT);
}

static void on_poll(void *opaque, uint32_t events)
{
    struct machine *m = opaque;
    uint64_t ticks;

    (void)events;
    if (read(m->poll_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
        return;
    if (m->console)
        console_tick(m->console);
    /* Two rounds in a row, so that no vCPU could have been woken between two observations. */
    m->stopped_rounds = vcpus_poll_stopped(m->vm, POLL_PERIOD_NS) ? m->stopped_rounds + 1 : 0;
    if (m->stopped_rounds >= 2) {
        log_info("machine: every vCPU halted with interrupts off: the guest has stopped");
        vm_request_exit(m->vm, VM_EXIT_POWEROFF);
    }
}

static int add_timer(struct machine *m, int *fd, uint64_t first_ns, uint64_t period_ns,
                     evloop_fn fn)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(first_ns / 1000000000ULL),
                     .tv_nsec = (long)(first_ns % 1000000000ULL)},
        .it_interval = {.tv_sec = (time_t)(period_ns / 1000000000ULL),
                        .tv_nsec = (long)(period_ns % 1000000000ULL)},
    };

    *fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (*fd < 0)
        return -errno;
    if (timerfd_settime(*fd, 0, &its, NULL) < 0)
        return -errno;
    return evloop_add(m->loop, *fd, EPOLLIN, fn, m);
}

/* Debug trace of where set-up time goes (kiln run -vv). */
static void stage(const struct machine *m, const char *what)
{
    log_debug("machine: %s at %.3f ms", what, (double)(time_now_ns() - m->vm->start_ns) / 1e6);
}

static const char *file_error(int err)
{
    return err == -EINVAL ? "not a regular file" : strerror(-err);
}

static int load_guest(struct machine *m)
{
    const struct machine_config *cfg = m->cfg;
    struct x86_platform *plat = &m->plat;
    struct x86_boot_config boot = {.cmdline = m->cmdline     ? m->cmdline
                                              : cfg->cmdline ? cfg->cmdline
                                                             : ""};
    struct x86_boot_info info;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    const uint8_t *kernel = NULL, *initrd = NULL;
    size_t kernel_len = 0, initrd_len = 0;
    char err[256];
    int ret;

    /* Mapped, not read: the loaders copy straight from the page cache into guest RAM. */
    ret = file_map(cfg->kernel_path, KERNEL_MAX_SIZE, &kernel, &kernel_len);
    if (ret < 0) {
        log_error("machine: cannot read kernel %s: %s", cfg->kernel_path, file_error(ret));
        return ret;
    }
    if (cfg->initrd_path) {
        ret = file_map(cfg->initrd_path, cfg->mem_size, &initrd, &initrd_len);
        if (ret < 0) {
            log_error("machine: cannot read initrd %s: %s%s", cfg->initrd_path, file_error(ret),
                      ret == -EFBIG ? " (it is larger than guest memory)" : "");
            goto out;
        }
    }
    plat->ncpus = cfg->ncpus;
    ret = x86_mptable_write(&m->vm->mem, plat);
    if (ret == 0 && cfg->acpi)
        ret = x86_acpi_write(&m->vm->mem, plat, &boot.rsdp_gpa);
    if (ret < 0) {
        log_error("machine: cannot write the platform tables: %s", strerror(-ret));
        goto out;
    }
    boot.kernel = kernel;
    boot.kernel_len = kernel_len;
    boot.initrd = initrd;
    boot.initrd_len = initrd_len;
    ret = x86_load_kernel(&m->vm->mem, &boot, &info, err, sizeof(err));
    if (ret < 0) {
        log_error("%s: %s", cfg->kernel_path, err);
        goto out;
    }
    log_info("machine: loaded %s as %s, entry %#llx", cfg->kernel_path, info.format,
             (unsigned long long)info.entry);
    ret = x86_boot_cpu_state(&m->vm->mem, &info, &regs, &sregs);
    if (ret == 0)
        ret = vcpu_set_boot_state(&m->vm->vcpus[0], &regs, &sregs);
    if (ret < 0)
        log_error("machine: cannot set the boot vCPU state: %s", strerror(-ret));
out:
    file_unmap(kernel, kernel_len);
    file_unmap(initrd, initrd_len);
    return ret;
}

static void write_stats(struct machine *m, int code)
{
    uint64_t start = m->vm ? m->vm->start_ns : 0, first_run = m->vm ? m->vm->first_run_ns : 0;
    uint64_t boot = m->boot_timer.first_ns, rss[3];
    FILE *f;

    if (!m->cfg->stats_path)
        return;
    proc_rss_kib(rss);
    f = fopen(m->cfg->stats_path, "we");
    if (!f) {
        log_error("machine: cannot write --stats file %s: %s", m->cfg->stats_path, strerror(errno));
        return;
    }
    fprintf(f,
            "{\"exit\":\"%s\",\"exit_code\":%d,\"setup_us\":%.1f,\"boot_timer_us\":%.1f,"
            "\"runtime_us\":%.1f,\"rss_anon_kib\":%llu,\"rss_file_kib\":%llu,"
            "\"rss_shmem_kib\":%llu,\"guest_page_kib\":%u",
            vm_exit_reason_name((enum vm_exit_reason)code), code,
            first_run ? (double)(first_run - start) / 1e3 : -1.0, boot ? (double)boot / 1e3 : -1.0,
            start ? (double)(time_now_ns() - start) / 1e3 : -1.0, (unsigned long long)rss[0],
            (unsigned long long)rss[1], (unsigned long long)rss[2],
            m->vm && m->vm->mem.huge ? 2048u : 4u);
    ready_write_stats(m->ready, f);
    fputs("}\n", f);
    fclose(f);
}

static void teardown(struct machine *m)
{
    if (m->vm)
        vcpus_stop(m->vm);
    vm_run_exit_observers(m->vm);
    ctl_server_destroy(m->ctl);
    fsvc_destroy(m->fsvc);
    vmctl_destroy(m->vmctl); /* before vm_destroy: it removes KVM memory slots */
    /* After the vCPUs: until then one may be inside a register access. */
    for (unsigned i = 0; i < m->nvirtio; i++)
        virtio_dev_destroy(m->virtio[i]);
    free(m->cmdline);
    console_destroy(m->console);
    uart_destroy(m->uart);
    i8042_destroy(m->i8042);
    rtc_destroy(m->rtc);
    acpi_pm_destroy(m->acpi_pm);
    vm_destroy(m->vm);
    ready_destroy(m->ready);
    evloop_destroy(m->loop);
    if (m->signal_fd >= 0)
        close(m->signal_fd);
    if (m->timeout_fd >= 0)
        close(m->timeout_fd);
    if (m->poll_fd >= 0)
        close(m->poll_fd);
    if (m->console_fd >= 0)
        close(m->console_fd);
    if (m->rundir[0])
        rundir_remove(m->rundir);
}

/* The runtime directory (docs/vmm.md): named by --name, else after our pid. */
static int setup_rundir(struct machine *m)
{
    const struct machine_config *cfg = m->cfg;
    char name[RUNDIR_NAME_MAX + 1], err[PATH_MAX + 128];
    int ret;

    snprintf(name, sizeof(name), "kiln-%d", (int)getpid());
    ret =
        rundir_create(cfg->name ? cfg->name : name, m->rundir, sizeof(m->rundir), err, sizeof(err));
    if (ret < 0) {
        m->rundir[0] = '\0';
        log_error("machine: %s", err);
        return ret;
    }
    if (cfg->vsock_path)
        snprintf(m->vsock_path, sizeof(m->vsock_path), "%s", cfg->vsock_path);
    else if (snprintf(m->vsock_path, sizeof(m->vsock_path), "%s/vsock.sock", m->rundir) >=
             (int)sizeof(m->vsock_path))
        return -ENAMETOOLONG;
    log_debug("machine: runtime directory %s", m->rundir);
    return 0;
}

static int setup_loop(struct machine *m, sigset_t *sigs)
{
    int ret;

    m->signal_fd = signalfd(-1, sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->signal_fd < 0)
        return -errno;
    ret = evloop_add(m->loop, m->signal_fd, EPOLLIN, on_signal, m);
    if (ret == 0 && m->cfg->timeout_s)
        ret = add_timer(m, &m->timeout_fd, (uint64_t)m->cfg->timeout_s * 1000000000ULL, 0,
                        on_timeout);
    if (ret == 0)
        ret = add_timer(m, &m->poll_fd, POLL_PERIOD_NS, POLL_PERIOD_NS, on_poll);
    return ret;
}

int machine_run(const struct machine_config *cfg, uint64_t start_ns)
{
    struct machine m = {
        .cfg = cfg, .console_fd = -1, .signal_fd = -1, .timeout_fd = -1, .poll_fd = -1};
    /* The balloon gives RAM back in 4 KiB pieces, which khugepaged would fill again to rebuild
     * the 2 MiB page around them: with a balloon, RAM stays on small pages. */
    struct vm_config vcfg = {.mem_size = cfg->mem_size,
                             .ncpus = cfg->ncpus,
                             .kvm_path = cfg->kvm_path,
                             .hugepages = cfg->hugepages && !cfg->balloon};
    sigset_t sigs, old;
    char err[256];
    int code = VM_EXIT_ERROR, ret;

    /* SIGINT/SIGTERM arrive through a signalfd on the event loop; the vCPU threads inherit the
     * mask, so a signal never interrupts them at a random point. SIGPIPE from a vanished console
     * reader must not kill the VMM. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);

    ret = setup_rundir(&m);
    if (ret < 0) {
        code = ret == -EINVAL || ret == -EEXIST ? VM_EXIT_USAGE : VM_EXIT_ERROR;
        goto out;
    }
    /* After the runtime directory: a sandbox's console log lives in it. */
    if (cfg->console_path) {
        m.console_fd = open(cfg->console_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (m.console_fd < 0) {
            log_error("machine: cannot open --console %s: %s", cfg->console_path, strerror(errno));
            goto out;
        }
    }
    m.vm = vm_create(&vcfg, start_ns, err, sizeof(err));
    if (!m.vm) {
        log_error("%s", err);
        goto out;
    }
    m.loop = evloop_create();
    if (!m.loop) {
        log_error("machine: cannot create the event loop: %s", strerror(errno));
        goto out;
    }
    m.vm->loop = m.loop;
    stage(&m, "VM created");
    ret = setup_loop(&m, &sigs);
    if (ret == 0)
        ret = machine_setup_devices(&m);
    if (ret < 0) {
        log_error("machine: set-up failed: %s", strerror(-ret));
        goto out;
    }
    ret = machine_setup_virtio(&m);
    if (ret < 0) {
        /* -EINVAL: a device refused its configuration and said why (a user mistake). */
        if (ret == -EINVAL)
            code = VM_EXIT_USAGE;
        else
            log_error("machine: virtio set-up failed: %s", strerror(-ret));
        goto out;
    }
    ret = machine_setup_control(&m);
    if (ret < 0)
        goto out;
    if (cfg->vsock && !(m.ready = ready_create(m.loop, m.vsock_path, cfg->ready_fd, start_ns)))
        goto out;
    ret = machine_setup_files(&m);
    if (ret < 0) {
        code = ret == -EINVAL ? VM_EXIT_USAGE : VM_EXIT_ERROR;
        goto out;
    }
    stage(&m, "devices ready");
    ret = load_guest(&m);
    stage(&m, "guest loaded");
    if (ret < 0) {
        code = ret == -EINVAL || ret == -E2BIG || ret == -ENOMEM || ret == -ENOENT ||
                       ret == -EISDIR || ret == -EFBIG
                   ? VM_EXIT_USAGE
                   : VM_EXIT_ERROR;
        goto out;
    }
    ret = vcpus_start(m.vm);
    if (ret < 0) {
        log_error("machine: cannot start vCPU threads: %s", strerror(-ret));
        goto out;
    }
    ret = evloop_run(m.loop);
    if (ret < 0) {
        log_error("machine: event loop failed: %s", strerror(-ret));
        vm_request_exit(m.vm, VM_EXIT_ERROR);
    }
    vcpus_stop(m.vm);
    code = m.vm->exit_reason;
    if (m.boot_timer.first_ns)
        log_info("machine: userspace reached %.3f ms after start",
                 (double)m.boot_timer.first_ns / 1e6);
    log_info("machine: guest ended: %s (exit code %d)", vm_exit_reason_name(code), code);
out:
    write_stats(&m, code);
    teardown(&m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return code;
}
