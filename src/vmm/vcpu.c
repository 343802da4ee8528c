/* vcpu.c: one thread per vCPU running KVM_RUN and dispatching its exits to the bus. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lib/lib.h"
#include "vmm.h"

/* The signal that kicks a vCPU thread out of KVM_RUN. Its handler only sets immediate_exit, so a
 * kick that lands just before KVM_RUN is not lost: KVM returns at once with EINTR. */
#define VCPU_KICK_SIGNAL SIGUSR1
#define X86_RFLAGS_IF    (1ULL << 9)
#define PAUSE_RETRY_NS   1000000 /* re-kick period while waiting for vCPUs to park */

static __thread struct kvm_run *current_run;

const char *vcpu_exit_kind_name(unsigned kind)
{
    static const char *const names[VCPU_EXIT_KINDS] = {
        "io",           "mmio",       "intr",           "hlt",   "shutdown",
        "system_event", "fail_entry", "internal_error", "other",
    };

    return kind < VCPU_EXIT_KINDS ? names[kind] : "unknown";
}

static void count_exit(struct vcpu *vcpu, enum vcpu_exit_kind kind)
{
    atomic_fetch_add_explicit(&vcpu->exits[kind], 1, memory_order_relaxed);
}

static enum vcpu_exit_kind exit_kind(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_IO:
        return VCPU_EXIT_IO;
    case KVM_EXIT_MMIO:
        return VCPU_EXIT_MMIO;
    case KVM_EXIT_INTR:
        return VCPU_EXIT_INTR;
    case KVM_EXIT_HLT:
        return VCPU_EXIT_HLT;
    case KVM_EXIT_SHUTDOWN:
        return VCPU_EXIT_SHUTDOWN;
    case KVM_EXIT_SYSTEM_EVENT:
        return VCPU_EXIT_SYSTEM_EVENT;
    case KVM_EXIT_FAIL_ENTRY:
        return VCPU_EXIT_FAIL_ENTRY;
    case KVM_EXIT_INTERNAL_ERROR:
        return VCPU_EXIT_INTERNAL_ERROR;
    }
    return VCPU_EXIT_OTHER;
}

static void kick_handler(int sig)
{
    (void)sig;
    if (current_run)
        current_run->immediate_exit = 1;
}

int vcpu_set_boot_state(struct vcpu *vcpu, const struct kvm_regs *regs,
                        const struct kvm_sregs *sregs)
{
    struct kvm_sregs cur;

    /* Start from KVM's reset state so fields kiln does not set (APIC base, ...) stay sane. */
    if (ioctl(vcpu->fd, KVM_GET_SREGS, &cur) < 0)
        return -errno;
    cur.cs = sregs->cs;
    cur.ds = sregs->ds;
    cur.es = sregs->es;
    cur.fs = sregs->fs;
    cur.gs = sregs->gs;
    cur.ss = sregs->ss;
    cur.tr = sregs->tr;
    cur.ldt = sregs->ldt;
    cur.gdt = sregs->gdt;
    cur.idt = sregs->idt;
    cur.cr0 = sregs->cr0;
    cur.cr3 = sregs->cr3;
    cur.cr4 = sregs->cr4;
    cur.efer = sregs->efer;
    if (ioctl(vcpu->fd, KVM_SET_SREGS, &cur) < 0)
        return -errno;
    if (ioctl(vcpu->fd, KVM_SET_REGS, regs) < 0)
        return -errno;
    return 0;
}

static void seg_dump(const char *name, const struct kvm_segment *s)
{
    log_error("vcpu:   %-4s sel=%#06x base=%#018llx limit=%#010x type=%u dpl=%u db=%u l=%u p=%u",
              name, s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl, s->db,
              s->l, s->present);
}

void vcpu_dump(struct vcpu *vcpu)
{
    struct kvm_regs r;
    struct kvm_sregs s;

    if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
        log_error("vcpu %u: cannot read registers: %s", vcpu->index, strerror(errno));
        return;
    }
    log_error("vcpu %u: rip=%#llx rsp=%#llx rflags=%#llx", vcpu->index, (unsigned long long)r.rip,
              (unsigned long long)r.rsp, (unsigned long long)r.rflags);
    log_error("vcpu:   rax=%#llx rbx=%#llx rcx=%#llx rdx=%#llx rsi=%#llx rdi=%#llx rbp=%#llx",
              (unsigned long long)r.rax, (unsigned long long)r.rbx, (unsigned long long)r.rcx,
              (unsigned long long)r.rdx, (unsigned long long)r.rsi, (unsigned long long)r.rdi,
              (unsigned long long)r.rbp);
    log_error("vcpu:   cr0=%#llx cr2=%#llx cr3=%#llx cr4=%#llx efer=%#llx",
              (unsigned long long)s.cr0, (unsigned long long)s.cr2, (unsigned long long)s.cr3,
              (unsigned long long)s.cr4, (unsigned long long)s.efer);
    seg_dump("cs", &s.cs);
    seg_dump("ss", &s.ss);
    seg_dump("ds", &s.ds);
    seg_dump("tr", &s.tr);
    log_error("vcpu:   gdt base=%#llx limit=%#x idt base=%#llx limit=%#x",
              (unsigned long long)s.gdt.base, s.gdt.limit, (unsigned long long)s.idt.base,
              s.idt.limit);
    /* AMD's KVM reinitialises the VMCB on a shutdown exit: what reads back is the reset state. */
    if (r.rip == 0xfff0 && s.cs.base == 0xffff0000 && !(s.cr0 & 1))
        log_error(
            "vcpu %u: these are the registers of a CPU just reset (KVM on AMD resets the vCPU "
            "when the guest triple-faults): the faulting state is lost; the guest's console "
            "may say more",
            vcpu->index);
}

/* Answers the stop poller: is this vCPU parked for good (HLT with interrupts off, or an
 * application processor the guest never started)? */
static void report_state(struct vcpu *vcpu)
{
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    int stopped = 0;

    if (ioctl(vcpu->fd, KVM_GET_MP_STATE, &mp) == 0) {
        if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED || mp.mp_state == KVM_MP_STATE_INIT_RECEIVED)
            stopped = 1;
        else if (mp.mp_state == KVM_MP_STATE_HALTED && ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0 &&
                 !(regs.rflags & X86_RFLAGS_IF))
            stopped = 1;
    }
    vcpu->stopped = stopped;
}

static void handle_io(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

    /* KVM guarantees data_offset + size * count lies in the run area (string I/O is split). */
    for (uint32_t i = 0; i < run->io.count; i++)
        bus_dispatch(&vcpu->vm->bus, BUS_PIO, run->io.port, data + i * run->io.size, run->io.size,
                     is_write);
}

static void fatal_exit(struct vcpu *vcpu, enum vm_exit_reason reason, const char *what)
{
    log_error("vcpu %u: %s", vcpu->index, what);
    vcpu_dump(vcpu);
    vcpu->vm->host.request_exit(vcpu->vm, reason);
}

/* Handles one exit; returns false when the thread should stop running the vCPU. */
static bool handle_exit(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    struct vm *vm = vcpu->vm;
    char what[96];

    count_exit(vcpu, exit_kind(run->exit_reason));
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(vcpu);
        return true;
    case KVM_EXIT_MMIO:
        bus_dispatch(&vm->bus, BUS_MMIO, run->mmio.phys_addr, run->mmio.data,
                     run->mmio.len > 8 ? 8 : run->mmio.len, run->mmio.is_write);
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        vm->host.request_exit(vm, VM_EXIT_POWEROFF);
        return false;
    case KVM_EXIT_SHUTDOWN:
        log_info("vcpu %u: the guest triple-faulted (KVM_EXIT_SHUTDOWN)", vcpu->index);
        if (!vm->panic_seen)
            vcpu_dump(vcpu);
        vm->host.request_exit(vm, VM_EXIT_TRIPLE_FAULT);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            vm->host.request_exit(vm, VM_EXIT_POWEROFF);
            break;
        case KVM_SYSTEM_EVENT_RESET:
            vm->host.request_exit(vm, VM_EXIT_REBOOT);
            break;
        case KVM_SYSTEM_EVENT_CRASH:
            vm->host.request_exit(vm, VM_EXIT_PANIC);
            break;
        default:
            snprintf(what, sizeof(what), "unknown system event %u", run->system_event.type);
            fatal_exit(vcpu, VM_EXIT_VCPU_ERROR, what);
        }
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(what, sizeof(what), "VM entry failed (hardware reason %#llx)",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        fatal_exit(vcpu, VM_EXIT_VCPU_ERROR, what);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        snprintf(what, sizeof(what), "KVM internal error, suberror %u%s", run->internal.suberror,
                 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                     ? " (instruction emulation failed)"
                     : "");
        fatal_exit(vcpu, VM_EXIT_VCPU_ERROR, what);
        return false;
    default:
        snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
        fatal_exit(vcpu, VM_EXIT_VCPU_ERROR, what);
        return false;
    }
}

/* Holds this vCPU outside KVM_RUN until vcpus_resume() or vcpus_stop(). A kick that arrives
 * while parked only sets immediate_exit, which makes the next KVM_RUN return at once: harmless. */
static void park(struct vcpu *vcpu)
{
    struct vm *vm = vcpu->vm;

    pthread_mutex_lock(&vm->pause_lock);
    vcpu->paused = true;
    pthread_cond_broadcast(&vm->pause_cond);
    while (vm->pause_wanted && !vm->stopping)
        pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
    vcpu->paused = false;
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *vcpu = arg;
    struct vm *vm = vcpu->vm;
    char name[16];
    sigset_t set;

    snprintf(name, sizeof(name), "kiln-vcpu%u", vcpu->index);
    pthread_setname_np(pthread_self(), name);
    current_run = vcpu->run;
    vcpu->tid = (int)gettid();
    sigemptyset(&set);
    sigaddset(&set, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    while (!vm->stopping) {
        int ret;

        if (vm->pause_wanted) {
            park(vcpu);
            continue;
        }
        if (vcpu->index == 0 && !vm->first_run_ns)
            vm->first_run_ns = time_now_ns();
        ret = ioctl(vcpu->fd, KVM_RUN, 0);
        if (ret < 0) {
            int e = errno;
            if (e == EINTR || e == EAGAIN) {
                vcpu->run->immediate_exit = 0;
                count_exit(vcpu, VCPU_EXIT_INTR);
                if (vcpu->state_wanted) {
                    vcpu->state_wanted = false;
                    report_state(vcpu);
                }
                continue;
            }
            log_error("vcpu %u: KVM_RUN failed: %s", vcpu->index, strerror(e));
            vm->host.request_exit(vm, VM_EXIT_VCPU_ERROR);
            break;
        }
        if (!handle_exit(vcpu))
            break;
    }
    current_run = NULL;
    vcpu->exited = true;
    if (vm->pause_ready) {
        pthread_mutex_lock(&vm->pause_lock);
        pthread_cond_broadcast(&vm->pause_cond);
        pthread_mutex_unlock(&vm->pause_lock);
    }
    return NULL;
}

int vcpus_start(struct vm *vm)
{
    struct sigaction sa = {.sa_handler = kick_handler};
    sigset_t set, old;
    int ret = 0;

    sigemptyset(&sa.sa_mask);
    if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
        return -errno;
    if (!vm->pause_ready) {
        pthread_condattr_t attr;

        pthread_mutex_init(&vm->pause_lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&vm->pause_cond, &attr);
        pthread_condattr_destroy(&attr);
        vm->pause_ready = true;
    }
    /* Threads start with the kick signal blocked and unblock it once current_run is set. */
    sigemptyset(&set);
    sigaddset(&set, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    for (unsigned i = 0; i < vm->ncpus; i++) {
        ret = -pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
        if (ret < 0)
            break;
        vm->vcpus[i].thread_started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret < 0)
        vcpus_stop(vm);
    return ret;
}

static void kick_all(struct vm *vm)
{
    for (unsigned i = 0; i < vm->ncpus; i++)
        if (vm->vcpus[i].thread_started)
            pthread_kill(vm->vcpus[i].thread, VCPU_KICK_SIGNAL);
}

void vcpus_stop(struct vm *vm)
{
    vm->stopping = true;
    if (vm->pause_ready) { /* wake parked vCPUs so they see `stopping` */
        pthread_mutex_lock(&vm->pause_lock);
        pthread_cond_broadcast(&vm->pause_cond);
        pthread_mutex_unlock(&vm->pause_lock);
    }
    kick_all(vm);
    for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++) {
        if (!vm->vcpus[i].thread_started)
            continue;
        /* A thread blocked in KVM_RUN may have missed a kick sent before it unblocked the
         * signal; keep kicking until it is gone. */
        while (pthread_tryjoin_np(vm->vcpus[i].thread, NULL) == EBUSY) {
            pthread_kill(vm->vcpus[i].thread, VCPU_KICK_SIGNAL);
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        vm->vcpus[i].thread_started = false;
    }
}

/* CPU time a thread has consumed, in ns (first field of /proc/self/task/TID/schedstat), or
 * UINT64_MAX when unknown. */
static uint64_t thread_cpu_ns(int tid)
{
    char path[64], buf[64];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return UINT64_MAX;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return UINT64_MAX;
    buf[n] = '\0';
    return strtoull(buf, NULL, 10);
}

bool vcpus_poll_stopped(struct vm *vm, uint64_t period_ns)
{
    bool all = true;

    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct vcpu *vcpu = &vm->vcpus[i];
        uint64_t cpu = vcpu->tid ? thread_cpu_ns(vcpu->tid) : UINT64_MAX;
        bool busy =
            cpu != UINT64_MAX && vcpu->poll_cpu_ns && cpu - vcpu->poll_cpu_ns > period_ns / 8;

        vcpu->poll_cpu_ns = cpu != UINT64_MAX ? cpu : 0;
        all = all && vcpu->stopped == 1 && !busy;
        /* A vCPU that spent more than an eighth of the period running guest code is not parked
         * for good: leave it in the guest. Kicking it anyway would cost it an exit every period
         * (50 a second), which shows in latency-sensitive work. Quiet vCPUs are asked. */
        if (busy) {
            vcpu->stopped = 0;
            continue;
        }
        vcpu->stopped = -1;
        vcpu->state_wanted = true;
        if (vcpu->thread_started)
            pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
    }
    return all;
}

/* Waits on pause_cond (lock held) until every started vCPU is `held` (paused or gone) or, when
 * held is false, none is paused; re-kicks meanwhile, since a kick can land just before a thread
 * unblocks the signal. */
static void wait_vcpus(struct vm *vm, bool held)
{
    for (;;) {
        bool done = true;
        struct timespec ts;

        for (unsigned i = 0; i < vm->ncpus && done; i++) {
            struct vcpu *v = &vm->vcpus[i];
            if (v->thread_started && !v->exited)
                done = held ? v->paused : !v->paused;
        }
        if (done || (held && vm->stopping))
            return;
        if (held)
            kick_all(vm);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += PAUSE_RETRY_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &ts);
    }
}

int vcpus_pause(struct vm *vm)
{
    int ret = 0;

    if (!vm->pause_ready)
        return vm->stopping ? -ESHUTDOWN : -EAGAIN;
    pthread_mutex_lock(&vm->pause_lock);
    if (vm->paused)
        goto out;
    vm->pause_wanted = true;
    kick_all(vm);
    wait_vcpus(vm, true);
    if (vm->stopping) {
        ret = -ESHUTDOWN;
        goto out;
    }
    /* Guest time stands still while paused: kvmclock is put back to this value at resume. */
    vm->pause_clock_saved = ioctl(vm->vm_fd, KVM_GET_CLOCK, &vm->pause_clock) == 0;
    if (!vm->pause_clock_saved)
        log_once(LOG_WARN, "vcpu: KVM_GET_CLOCK failed (%s): guest time runs on while paused",
                 strerror(errno));
    vm->paused = true;
out:
    pthread_mutex_unlock(&vm->pause_lock);
    return ret;
}

int vcpus_resume(struct vm *vm)
{
    if (!vm->pause_ready)
        return 0;
    pthread_mutex_lock(&vm->pause_lock);
    if (vm->paused) {
        if (vm->pause_clock_saved) {
            struct kvm_clock_data clock = {.clock = vm->pause_clock.clock};
            if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
                log_once(LOG_WARN, "vcpu: KVM_SET_CLOCK failed: %s", strerror(errno));
        }
        vm->paused = false;
    }
    vm->pause_wanted = false;
    pthread_cond_broadcast(&vm->pause_cond);
    wait_vcpus(vm, false);
    pthread_mutex_unlock(&vm->pause_lock);
    return 0;
}

bool vcpus_paused(struct vm *vm)
{
    return vm->paused;
}
