/* probe.c: runs the fitness probe guest on a VM of its own, its vCPU on a thread with a watchdog.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/x86.h"
#include "doctor.h"
#include "lib/lib.h"

/* The kick that ends a KVM_RUN that never answers. Its handler only sets immediate_exit, so a
 * kick landing just before KVM_RUN is not lost; the previous handler is restored afterwards. */
#define PROBE_KICK_SIGNAL SIGUSR2

static __thread struct kvm_run *probe_current_run;

static void kick_handler(int sig)
{
    (void)sig;
    if (probe_current_run)
        probe_current_run->immediate_exit = 1;
}

struct probe_ctx {
    int kvm_fd;
    int vm_fd;
    struct vcpu vcpu; /* only fd, run and run_size are used */
    struct guest_mem mem;
    unsigned timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;              /* guarded by lock */
    _Atomic bool timed_out; /* the waiter gave up; the thread stops at its next return */
    struct probe_result *out;
};

static void timeout_reason(struct probe_ctx *ctx)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    int n = snprintf(ctx->out->reason, sizeof(ctx->out->reason), "no answer within %u ms",
                     ctx->timeout_ms);

    if (ioctl(ctx->vcpu.fd, KVM_GET_REGS, &regs) == 0 &&
        ioctl(ctx->vcpu.fd, KVM_GET_SREGS, &sregs) == 0)
        snprintf(ctx->out->reason + n, sizeof(ctx->out->reason) - (size_t)n,
                 " (the guest was at rip %#llx in ring %u)", (unsigned long long)regs.rip,
                 sregs.cs.selector & 3);
}

static void *probe_thread(void *arg)
{
    struct probe_ctx *ctx = arg;
    struct kvm_run *run = ctx->vcpu.run;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint64_t start;
    sigset_t set;

    probe_current_run = run;
    sigemptyset(&set);
    sigaddset(&set, PROBE_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    start = time_now_ns();
    for (;;) {
        if (ctx->timed_out) {
            ctx->out->status = PROBE_TIMEOUT;
            timeout_reason(ctx);
            break;
        }
        if (ioctl(ctx->vcpu.fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                run->immediate_exit = 0;
                continue;
            }
            ctx->out->status = PROBE_KVM_ERROR;
            snprintf(ctx->out->reason, sizeof(ctx->out->reason),
                     "KVM_RUN refused the probe vCPU: %s", strerror(errno));
            break;
        }
        if (run->exit_reason == KVM_EXIT_INTR)
            continue;
        if (ioctl(ctx->vcpu.fd, KVM_GET_REGS, &regs) < 0)
            memset(&regs, 0, sizeof(regs));
        if (ioctl(ctx->vcpu.fd, KVM_GET_SREGS, &sregs) < 0)
            memset(&sregs, 0, sizeof(sregs));
        if (probe_classify(run, ctx->vcpu.run_size, &regs, &sregs, &ctx->mem, ctx->out))
            break;
    }
    ctx->out->elapsed_ns = time_now_ns() - start;
    probe_current_run = NULL;

    pthread_mutex_lock(&ctx->lock);
    ctx->done = true;
    pthread_cond_signal(&ctx->cond);
    pthread_mutex_unlock(&ctx->lock);
    return NULL;
}

static void deadline_after(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits for the thread's answer; when time is up, kicks it until it gives one. */
static void wait_for_answer(struct probe_ctx *ctx, pthread_t thread)
{
    struct timespec deadline;

    deadline_after(&deadline, ctx->timeout_ms);
    pthread_mutex_lock(&ctx->lock);
    while (!ctx->done) {
        if (pthread_cond_timedwait(&ctx->cond, &ctx->lock, &deadline) == ETIMEDOUT && !ctx->done) {
            ctx->timed_out = true;
            pthread_kill(thread, PROBE_KICK_SIGNAL);
            deadline_after(&deadline, 10);
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

static int setup_fail(struct probe_ctx *ctx, const char *what)
{
    int ret = -errno;

    snprintf(ctx->out->reason, sizeof(ctx->out->reason), "%s failed: %s", what, strerror(errno));
    return ret ? ret : -EIO;
}

static int setup_cpuid(struct probe_ctx *ctx)
{
    struct kvm_cpuid2 *cpuid = NULL;
    int ret = -1;

    /* Grow the table until KVM stops answering E2BIG. */
    for (uint32_t nent = 64; nent <= 4096; nent *= 2) {
        free(cpuid);
        cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
        if (!cpuid)
            return -ENOMEM;
        cpuid->nent = nent;
        ret = ioctl(ctx->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid);
        if (ret == 0 || errno != E2BIG)
            break;
    }
    if (ret < 0) {
        ret = setup_fail(ctx, "KVM_GET_SUPPORTED_CPUID");
    } else if (ioctl(ctx->vcpu.fd, KVM_SET_CPUID2, cpuid) < 0) {
        ret = setup_fail(ctx, "KVM_SET_CPUID2");
    }
    free(cpuid);
    return ret;
}

/* A VM of its own rather than vm_create(): the probe asks what the host's KVM can do, so it sets
 * up only what the guest needs (no irqchip, PIT or kiln CPUID policy that could fail first). */
static int setup(struct probe_ctx *ctx, const char *kvm_path)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry entries[PROBE_NMSRS];
    } msrs = {.hdr.nmsrs = PROBE_NMSRS};
    struct kvm_userspace_memory_region slot;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint64_t identity = X86_IDENTITY_MAP_ADDR;
    uint8_t *image;
    long run_size;
    int ret;

    ret = kvm_open(kvm_path, &ctx->kvm_fd, ctx->out->reason, sizeof(ctx->out->reason));
    if (ret < 0)
        return ret;
    ctx->vm_fd = ioctl(ctx->kvm_fd, KVM_CREATE_VM, 0);
    if (ctx->vm_fd < 0)
        return setup_fail(ctx, "KVM_CREATE_VM");
    /* Only VMX without unrestricted guest uses these, but they must precede the vCPU. */
    if (ioctl(ctx->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_TSS_ADDR) < 0)
        return setup_fail(ctx, "KVM_SET_TSS_ADDR");
    if (ioctl(ctx->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        return setup_fail(ctx, "KVM_SET_IDENTITY_MAP_ADDR");

    ret = guest_mem_init(&ctx->mem, GUEST_MEM_MIN_SIZE, X86_MMIO_HOLE_START);
    if (ret < 0) {
        errno = -ret;
        return setup_fail(ctx, "allocating probe memory");
    }
    image = guest_mem_ptr(&ctx->mem, 0, PROBE_IMAGE_SIZE);
    if (!image || probe_build_image(image, PROBE_IMAGE_SIZE) < 0) {
        errno = ENOSPC;
        return setup_fail(ctx, "building the probe image");
    }
    slot = (struct kvm_userspace_memory_region){
        .slot = 0,
        .guest_phys_addr = ctx->mem.regions[0].gpa,
        .memory_size = ctx->mem.regions[0].size,
        .userspace_addr = (uint64_t)(uintptr_t)ctx->mem.regions[0].hva,
    };
    if (ioctl(ctx->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
        return setup_fail(ctx, "KVM_SET_USER_MEMORY_REGION");

    ctx->vcpu.fd = ioctl(ctx->vm_fd, KVM_CREATE_VCPU, 0UL);
    if (ctx->vcpu.fd < 0)
        return setup_fail(ctx, "KVM_CREATE_VCPU");
    run_size = ioctl(ctx->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (long)sizeof(struct kvm_run))
        return setup_fail(ctx, "KVM_GET_VCPU_MMAP_SIZE");
    ctx->vcpu.run =
        mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, ctx->vcpu.fd, 0);
    if (ctx->vcpu.run == MAP_FAILED) {
        ctx->vcpu.run = NULL;
        return setup_fail(ctx, "mmap of the vCPU run area");
    }
    ctx->vcpu.run_size = (size_t)run_size;
    ret = setup_cpuid(ctx);
    if (ret < 0)
        return ret;

    probe_boot_state(&regs, &sregs, msrs.entries);
    ret = vcpu_set_boot_state(&ctx->vcpu, &regs, &sregs);
    if (ret < 0) {
        errno = -ret;
        return setup_fail(ctx, "setting the probe vCPU's registers");
    }
    ret = ioctl(ctx->vcpu.fd, KVM_SET_MSRS, &msrs.hdr);
    if (ret < 0)
        return setup_fail(ctx, "KVM_SET_MSRS");
    if ((unsigned)ret != PROBE_NMSRS) {
        snprintf(ctx->out->reason, sizeof(ctx->out->reason), "KVM refused MSR %#x",
                 msrs.entries[ret].index);
        return -ENOTSUP;
    }
    return 0;
}

static void teardown(struct probe_ctx *ctx)
{
    if (ctx->vcpu.run)
        munmap(ctx->vcpu.run, ctx->vcpu.run_size);
    if (ctx->vcpu.fd >= 0)
        close(ctx->vcpu.fd);
    if (ctx->vm_fd >= 0)
        close(ctx->vm_fd);
    if (ctx->kvm_fd >= 0)
        close(ctx->kvm_fd);
    guest_mem_destroy(&ctx->mem);
}

static int run_thread(struct probe_ctx *ctx)
{
    struct sigaction sa = {.sa_handler = kick_handler}, old_sa;
    pthread_condattr_t attr;
    pthread_t thread;
    int ret;

    sigemptyset(&sa.sa_mask);
    if (sigaction(PROBE_KICK_SIGNAL, &sa, &old_sa) < 0)
        return setup_fail(ctx, "installing the probe's signal handler");
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ctx->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&ctx->lock, NULL);

    ret = -pthread_create(&thread, NULL, probe_thread, ctx);
    if (ret < 0) {
        errno = -ret;
        ret = setup_fail(ctx, "starting the probe thread");
    } else {
        wait_for_answer(ctx, thread);
        pthread_join(thread, NULL);
    }
    pthread_mutex_destroy(&ctx->lock);
    pthread_cond_destroy(&ctx->cond);
    sigaction(PROBE_KICK_SIGNAL, &old_sa, NULL);
    return ret;
}

int probe_run(const char *kvm_path, unsigned timeout_ms, struct probe_result *out)
{
    struct probe_ctx ctx = {
        .kvm_fd = -1, .vm_fd = -1, .vcpu.fd = -1, .timeout_ms = timeout_ms, .out = out};
    int ret;

    memset(out, 0, sizeof(*out));
    ctx.mem.fd = -1;
    ret = setup(&ctx, kvm_path);
    if (ret == 0)
        ret = run_thread(&ctx);
    teardown(&ctx);
    if (ret < 0) {
        out->status = PROBE_NO_KVM;
        out->elapsed_ns = 0;
    }
    return ret;
}
