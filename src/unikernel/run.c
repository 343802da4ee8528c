/* run.c: `kiln unikernel`'s VM: a light single-vCPU VM (no irqchip), the ELF and boot state,
 * then KVM_RUN on the calling thread, serving hypercalls and the UART until the guest exits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lib/lib.h"
#include "uk.h"

#define ELF_MAX_SIZE (256 * MiB)
#define UART_BUF     256

struct uk_uart {
    int fd;
    size_t len;
    uint8_t buf[UART_BUF];
};

struct uk_times {
    uint64_t start, elf_checked, vm_created, loaded, first_run, end;
};

static struct kvm_run *volatile sig_run;
static volatile sig_atomic_t sig_caught;

static void on_signal(int sig)
{
    sig_caught = sig;
    if (sig_run)
        sig_run->immediate_exit = 1;
}

const char *uk_exit_name(int code)
{
    switch (code) {
    case UK_EXIT_BAD_POINTER:
        return "bad-pointer";
    case UK_EXIT_BAD_HYPERCALL:
        return "bad-hypercall";
    case UK_EXIT_UNKNOWN_PORT:
        return "unknown-port";
    case UK_EXIT_TRIPLE_FAULT:
        return "triple-fault";
    case UK_EXIT_VCPU_ERROR:
        return "vcpu-error";
    case VM_EXIT_ERROR:
    case VM_EXIT_USAGE:
    case VM_EXIT_TIMEOUT:
    case VM_EXIT_SIGINT:
    case VM_EXIT_SIGTERM:
        return vm_exit_reason_name((enum vm_exit_reason)code);
    default:
        return code >= 0 && code <= (int)KILN_HVC_EXIT_MAX ? "guest-exit" : "unknown";
    }
}

static void uart_flush(struct uk_uart *u)
{
    if (u->len)
        (void)write_all(u->fd, u->buf, u->len);
    u->len = 0;
}

/* COM1 as a write-only 16550: THR bytes out (line-buffered), LSR always "transmitter empty". */
static void uart_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct uk_uart *u = opaque;

    if (!is_write) {
        memset(data, 0, len);
        if (offset == 5)
            data[0] = 0x60;
        return;
    }
    if (offset != 0)
        return; /* divisor, FIFO and line control: nothing to configure */
    u->buf[u->len++] = data[0];
    if (data[0] == '\n' || u->len == UART_BUF)
        uart_flush(u);
}

static int fault(struct vcpu *vcpu, int code, const char *what)
{
    log_error("unikernel: %s; stopping the guest", what);
    vcpu_dump(vcpu);
    return code;
}

/* Handles one exit: -1 to resume, else the stop code. */
static int handle_exit(struct vm *vm, struct vcpu *vcpu, struct uk_hvc *h)
{
    struct kvm_run *run = vcpu->run;
    char what[128];

    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        const struct bus_range *r = bus_find(&vm->bus, BUS_PIO, run->io.port);
        if (!r) {
            snprintf(what, sizeof(what),
                     "%s of port %#x, which is neither a hypercall nor the UART",
                     run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read", run->io.port);
            return fault(vcpu, UK_EXIT_UNKNOWN_PORT, what);
        }
        for (uint32_t i = 0; i < run->io.count && h->exit_code < 0; i++)
            r->fn(r->opaque, run->io.port - r->base, data + i * run->io.size, run->io.size,
                  run->io.direction == KVM_EXIT_IO_OUT);
        return h->exit_code;
    }
    case KVM_EXIT_HLT:
        return fault(vcpu, UK_EXIT_VCPU_ERROR, "the guest halted without calling exit");
    case KVM_EXIT_MMIO:
        snprintf(what, sizeof(what), "%s of %u bytes at %#llx, outside guest memory",
                 run->mmio.is_write ? "write" : "read", run->mmio.len,
                 (unsigned long long)run->mmio.phys_addr);
        return fault(vcpu, UK_EXIT_VCPU_ERROR, what);
    case KVM_EXIT_SHUTDOWN:
        return fault(vcpu, UK_EXIT_TRIPLE_FAULT, "the guest triple-faulted (KVM_EXIT_SHUTDOWN)");
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(what, sizeof(what), "VM entry failed (hardware reason %#llx)",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return fault(vcpu, UK_EXIT_VCPU_ERROR, what);
    case KVM_EXIT_INTERNAL_ERROR:
        snprintf(what, sizeof(what), "KVM internal error, suberror %u", run->internal.suberror);
        return fault(vcpu, UK_EXIT_VCPU_ERROR, what);
    case KVM_EXIT_INTR:
        return -1;
    default:
        snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
        return fault(vcpu, UK_EXIT_VCPU_ERROR, what);
    }
}

static int run_loop(struct vm *vm, struct uk_hvc *h, struct uk_times *t)
{
    struct vcpu *vcpu = &vm->vcpus[0];
    int code = -1;

    t->first_run = time_now_ns();
    while (code < 0) {
        if (sig_caught)
            break;
        if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            log_error("unikernel: KVM_RUN failed: %s", strerror(errno));
            return VM_EXIT_VCPU_ERROR;
        }
        code = handle_exit(vm, vcpu, h);
    }
    if (code >= 0)
        return code;
    if (sig_caught == SIGALRM) {
        log_warn("unikernel: --timeout expired; stopping the guest");
        return VM_EXIT_TIMEOUT;
    }
    return sig_caught == SIGINT ? VM_EXIT_SIGINT : VM_EXIT_SIGTERM;
}

/* The arguments joined by spaces, for the boot info's command line. */
static int write_cmdline(struct guest_mem *mem, const struct uk_config *cfg)
{
    char *dst = guest_mem_ptr(mem, KILN_HVC_CMDLINE, KILN_HVC_CMDLINE_MAX);
    size_t pos = 0;

    if (!dst)
        return -ENOMEM;
    for (unsigned i = 0; i < cfg->argc; i++) {
        size_t len = strlen(cfg->argv[i]);
        if (pos + len + 1 > KILN_HVC_CMDLINE_MAX)
            return -E2BIG;
        memcpy(dst + pos, cfg->argv[i], len);
        pos += len;
        dst[pos++] = i + 1 < cfg->argc ? ' ' : '\0';
    }
    if (pos == 0)
        dst[0] = '\0';
    return 0;
}

static int load(struct vm *vm, const struct uk_config *cfg, const uint8_t *elf, size_t len,
                struct uk_image *img)
{
    struct timespec now;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    char err[256];
    int khz, ret;

    ret = uk_elf_load(&vm->mem, cfg->mem_size, elf, len, img, err, sizeof(err));
    if (ret < 0) {
        log_error("unikernel: %s: %s", cfg->elf_path, err);
        return VM_EXIT_USAGE;
    }
    ret = write_cmdline(&vm->mem, cfg);
    if (ret < 0) {
        log_error("unikernel: the arguments take more than %u bytes", KILN_HVC_CMDLINE_MAX - 1);
        return VM_EXIT_USAGE;
    }
    khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
    clock_gettime(CLOCK_REALTIME, &now);
    struct kiln_hvc_boot_info info = {
        .version = KILN_HVC_VERSION,
        .size = sizeof(info),
        .mem_size = vm->mem.size,
        .tsc_khz = khz > 0 ? (uint64_t)khz : 0,
        .boot_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec,
        .cmdline = KILN_HVC_CMDLINE,
        .image_end = img->image_end,
        .argc = cfg->argc,
        .envc = cfg->envc,
        .flags = cfg->mount ? KILN_HVC_BOOT_MOUNT : 0,
    };
    ret = uk_boot_setup(&vm->mem, img, &info, &regs, &sregs);
    if (ret == 0)
        ret = vcpu_set_boot_state(&vm->vcpus[0], &regs, &sregs);
    if (ret < 0) {
        log_error("unikernel: cannot set up the boot vCPU: %s", strerror(-ret));
        return VM_EXIT_ERROR;
    }
    return 0;
}

static void write_stats(const struct uk_config *cfg, int code, const struct uk_times *t,
                        const struct uk_hvc *h)
{
    FILE *f;

    if (!cfg->stats_path)
        return;
    f = fopen(cfg->stats_path, "we");
    if (!f) {
        log_error("unikernel: cannot write --stats file %s: %s", cfg->stats_path, strerror(errno));
        return;
    }
#define US(a, b) ((a) && (b) ? (double)((b) - (a)) / 1e3 : -1.0)
    fprintf(f,
            "{\"exit\":\"%s\",\"exit_code\":%d,\"setup_us\":%.1f,\"elf_check_us\":%.1f,"
            "\"vm_create_us\":%.1f,\"load_us\":%.1f,\"guest_us\":%.1f,\"runtime_us\":%.1f,"
            "\"hypercalls\":%llu}\n",
            uk_exit_name(code), code, US(t->start, t->first_run), US(t->start, t->elf_checked),
            US(t->elf_checked, t->vm_created), US(t->vm_created, t->loaded),
            US(t->first_run, t->end), US(t->start, t->end), (unsigned long long)h->ncalls);
#undef US
    fclose(f);
}

#define NSIGS 5
static const int sigs[NSIGS] = {SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGPIPE};

static int install_signals(const struct uk_config *cfg, struct sigaction old[NSIGS])
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: host reads see EINTR */
    struct sigaction ign = {.sa_handler = SIG_IGN};  /* a closed stdout is the guest's -EPIPE */

    sigemptyset(&sa.sa_mask);
    sigemptyset(&ign.sa_mask);
    sig_caught = 0;
    for (unsigned i = 0; i < NSIGS; i++)
        if (sigaction(sigs[i], sigs[i] == SIGPIPE ? &ign : &sa, &old[i]) < 0)
            return -errno;
    if (cfg->timeout_s)
        alarm(cfg->timeout_s);
    return 0;
}

static void restore_signals(struct sigaction old[NSIGS])
{
    alarm(0);
    sig_run = NULL;
    for (unsigned i = 0; i < NSIGS; i++)
        sigaction(sigs[i], &old[i], NULL);
}

static int setup_io(struct vm *vm, struct uk_hvc *h, struct uk_uart *uart)
{
    int ret = bus_register(&vm->bus, BUS_PIO, KILN_HVC_PORT_BASE, KILN_HVC_NCALLS, uk_hvc_io, h,
                           "hypercalls");

    if (ret == 0)
        ret = bus_register(&vm->bus, BUS_PIO, KILN_HVC_UART_PORT, 8, uart_io, uart, "uart");
    return ret;
}

int uk_run(const struct uk_config *cfg, uint64_t start_ns, int kept_fds[UK_KEPT_FDS])
{
    struct uk_times t = {.start = start_ns};
    struct uk_hvc h = {.argv = cfg->argv,
                       .argc = cfg->argc,
                       .envp = cfg->envp,
                       .envc = cfg->envc,
                       .out_fd = STDOUT_FILENO,
                       .err_fd = STDERR_FILENO,
                       .in_fd = STDIN_FILENO,
                       .trace = cfg->trace,
                       .exit_code = -1};
    struct uk_uart uart = {.fd = STDOUT_FILENO};
    struct vm_config vcfg = {.mem_size = cfg->mem_size,
                             .ncpus = 1,
                             .kvm_path = cfg->kvm_path,
                             .no_irqchip = true,
                             .cpuid_hook = uk_cpuid_brand};
    struct sigaction old[NSIGS];
    struct uk_image img;
    const uint8_t *elf = NULL;
    size_t len = 0;
    struct vm *vm = NULL;
    char err[256];
    int code = VM_EXIT_ERROR, ret;

    ret = uk_files_init(&h.files, cfg->mount);
    if (ret < 0) {
        log_error("unikernel: cannot open --mount %s: %s", cfg->mount, strerror(-ret));
        code = VM_EXIT_USAGE;
        goto out;
    }
    ret = file_map(cfg->elf_path, ELF_MAX_SIZE, &elf, &len);
    if (ret < 0) {
        log_error("unikernel: cannot read %s: %s", cfg->elf_path,
                  ret == -EINVAL ? "not a regular file" : strerror(-ret));
        code = VM_EXIT_USAGE;
        goto out;
    }
    /* Refuse a bad image before paying for a VM. */
    ret = uk_elf_load(NULL, cfg->mem_size, elf, len, &img, err, sizeof(err));
    if (ret < 0) {
        log_error("unikernel: %s: %s", cfg->elf_path, err);
        code = VM_EXIT_USAGE;
        goto out;
    }
    t.elf_checked = time_now_ns();
    vm = vm_create(&vcfg, start_ns, err, sizeof(err));
    if (!vm) {
        log_error("unikernel: %s", err);
        goto out;
    }
    t.vm_created = time_now_ns();
    h.mem = &vm->mem;
    h.start_ns = t.vm_created;
    if ((ret = setup_io(vm, &h, &uart)) < 0) {
        log_error("unikernel: cannot register the hypercall ports: %s", strerror(-ret));
        goto out;
    }
    code = load(vm, cfg, elf, len, &img);
    if (code)
        goto out;
    t.loaded = time_now_ns();
    log_info("unikernel: %s: entry %#llx, %u segments, image end %#llx, set-up %.3f ms",
             cfg->elf_path, (unsigned long long)img.entry, img.nsegments,
             (unsigned long long)img.image_end, (double)(t.loaded - start_ns) / 1e6);
    sig_run = vm->vcpus[0].run;
    if (install_signals(cfg, old) < 0) {
        log_error("unikernel: cannot install signal handlers: %s", strerror(errno));
        code = VM_EXIT_ERROR;
        goto out;
    }
    code = run_loop(vm, &h, &t);
    restore_signals(old);
    uart_flush(&uart);
    log_info("unikernel: guest ended: %s (exit code %d) after %llu hypercalls", uk_exit_name(code),
             code, (unsigned long long)h.ncalls);
out:
    t.end = time_now_ns();
    write_stats(cfg, code, &t, &h);
    uk_files_close_all(&h.files);
    for (unsigned i = 0; i < UK_KEPT_FDS; i++)
        kept_fds[i] = -1;
    if (cfg->keep_vm && vm) {
        kept_fds[0] = vm->kvm_fd;
        kept_fds[1] = vm->vm_fd;
        kept_fds[2] = vm->vcpus ? vm->vcpus[0].fd : -1;
        kept_fds[3] = vm->mem.fd;
    } else {
        vm_destroy(vm);
    }
    file_unmap(elf, len);
    return code;
}
