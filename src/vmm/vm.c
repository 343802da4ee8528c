/* vm.c: creating a KVM virtual machine with its RAM, interrupt controllers and vCPUs. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"
#include "vmm.h"

#define CPUID_MAX_ENTRIES 256

const char *vm_exit_reason_name(enum vm_exit_reason reason)
{
    switch (reason) {
    case VM_EXIT_NONE:
        return "running";
    case VM_EXIT_POWEROFF:
        return "poweroff";
    case VM_EXIT_ERROR:
        return "error";
    case VM_EXIT_USAGE:
        return "usage";
    case VM_EXIT_REBOOT:
        return "reboot";
    case VM_EXIT_PANIC:
        return "panic";
    case VM_EXIT_TRIPLE_FAULT:
        return "triple-fault";
    case VM_EXIT_VCPU_ERROR:
        return "vcpu-error";
    case VM_EXIT_TIMEOUT:
        return "timeout";
    case VM_EXIT_SIGINT:
        return "interrupted";
    case VM_EXIT_SIGTERM:
        return "terminated";
    }
    return "unknown";
}

static void host_set_irq(void *opaque, uint32_t gsi, bool level)
{
    (void)vm_set_irq(opaque, gsi, level);
}

static void host_request_exit(void *opaque, enum vm_exit_reason reason)
{
    struct vm *vm = opaque;

    /* A reset that follows a kernel panic banner is the panic's doing, not a reboot request. */
    if ((reason == VM_EXIT_REBOOT || reason == VM_EXIT_TRIPLE_FAULT) && vm->panic_seen)
        reason = VM_EXIT_PANIC;
    vm_request_exit(vm, reason);
}

static int host_add_ioeventfd(void *opaque, int fd, uint64_t addr, uint32_t len, uint64_t datamatch)
{
    struct vm *vm = opaque;
    struct kvm_ioeventfd io = {
        .datamatch = datamatch,
        .addr = addr,
        .len = len,
        .fd = fd,
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
    };

    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int host_add_irqfd(void *opaque, int fd, uint32_t gsi)
{
    struct vm *vm = opaque;
    struct kvm_irqfd irq = {.fd = (uint32_t)fd, .gsi = gsi};

    return ioctl(vm->vm_fd, KVM_IRQFD, &irq) < 0 ? -errno : 0;
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason reason)
{
    int expected = VM_EXIT_NONE;

    if (atomic_compare_exchange_strong(&vm->exit_reason, &expected, (int)reason)) {
        log_debug("vm: exit requested: %s", vm_exit_reason_name(reason));
        if (vm->loop)
            evloop_stop(vm->loop);
    }
}

int vm_set_irq(struct vm *vm, uint32_t gsi, bool level)
{
    struct kvm_irq_level irq = {.irq = gsi, .level = level};

    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0) {
        log_once(LOG_ERROR, "vm: KVM_IRQ_LINE for GSI %u failed: %s", gsi, strerror(errno));
        return -errno;
    }
    return 0;
}

static int fail(char *err, size_t errlen, const char *what)
{
    int ret = -errno;

    snprintf(err, errlen, "%s failed: %s", what, strerror(errno));
    return ret;
}

static int setup_memory(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen)
{
    int ret = guest_mem_init(&vm->mem, cfg->mem_size, X86_MMIO_HOLE_START);
    char policy[16];

    if (ret < 0) {
        snprintf(err, errlen, "cannot allocate %llu MiB of guest memory: %s",
                 (unsigned long long)(cfg->mem_size >> 20), strerror(-ret));
        return ret;
    }
    /* Before the memory slots, so KVM maps whole 2 MiB pages from the first fault. */
    if (cfg->hugepages && !guest_mem_use_hugepages(&vm->mem, policy, sizeof(policy)))
        log_once(LOG_INFO,
                 "guest RAM on 4 KiB pages: the host's shmem_enabled is '%s' (set 'advise' in "
                 "/sys/kernel/mm/transparent_hugepage/shmem_enabled for 2 MiB pages)",
                 policy);
    for (unsigned i = 0; i < vm->mem.nregions; i++) {
        const struct guest_region *r = &vm->mem.regions[i];
        struct kvm_userspace_memory_region slot = {
            .slot = i,
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)r->hva,
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
            return fail(err, errlen, "KVM_SET_USER_MEMORY_REGION");
    }
    return 0;
}

static int setup_vcpu(struct vm *vm, struct vcpu *vcpu, unsigned index, char *err, size_t errlen)
{
    struct kvm_cpuid2 *cpuid;
    struct kvm_lapic_state lapic;
    struct kvm_fpu fpu;
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry entries[32];
    } msrs;
    size_t cpuid_size = sizeof(*cpuid) + vm->cpuid->nent * sizeof(cpuid->entries[0]);
    int ret;

    vcpu->vm = vm;
    vcpu->index = index;
    vcpu->stopped = -1;
    vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (vcpu->fd < 0)
        return fail(err, errlen, "KVM_CREATE_VCPU");
    vcpu->run_size = (size_t)ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    vcpu->run = mmap(NULL, vcpu->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
    if (vcpu->run == MAP_FAILED) {
        vcpu->run = NULL;
        return fail(err, errlen, "mmap of the vCPU run area");
    }

    cpuid = malloc(cpuid_size);
    if (!cpuid)
        return fail(err, errlen, "allocating CPUID");
    memcpy(cpuid, vm->cpuid, cpuid_size);
    x86_cpuid_fixup(cpuid, index, vm->ncpus);
    if (vm->cpuid_hook)
        vm->cpuid_hook(cpuid, index);
    ret = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid);
    free(cpuid);
    if (ret < 0)
        return fail(err, errlen, "KVM_SET_CPUID2");

    memset(&msrs, 0, sizeof(msrs));
    x86_boot_msrs(&msrs.hdr, ARRAY_SIZE(msrs.entries));
    ret = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs.hdr);
    if (ret < 0)
        return fail(err, errlen, "KVM_SET_MSRS");
    if ((unsigned)ret != msrs.hdr.nmsrs) {
        snprintf(err, errlen, "KVM_SET_MSRS: KVM refused MSR %#x", msrs.entries[ret].index);
        return -ENOTSUP;
    }

    x86_fpu_init(&fpu);
    if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
        return fail(err, errlen, "KVM_SET_FPU");
    if (vm->no_irqchip)
        return 0; /* no in-kernel LAPIC */
    if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
        return fail(err, errlen, "KVM_GET_LAPIC");
    x86_lapic_init(&lapic);
    if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
        return fail(err, errlen, "KVM_SET_LAPIC");
    return 0;
}

static int setup_vm(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen)
{
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    uint64_t identity = X86_IDENTITY_MAP_ADDR;
    int ret;

    ret = kvm_open(cfg->kvm_path, &vm->kvm_fd, err, errlen);
    if (ret < 0)
        return ret;
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0)
        return fail(err, errlen, "KVM_CREATE_VM");
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_TSS_ADDR) < 0)
        return fail(err, errlen, "KVM_SET_TSS_ADDR");
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        return fail(err, errlen, "KVM_SET_IDENTITY_MAP_ADDR");
    vm->no_irqchip = cfg->no_irqchip;
    vm->cpuid_hook = cfg->cpuid_hook;
    if (!cfg->no_irqchip && ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return fail(err, errlen, "KVM_CREATE_IRQCHIP");
    if (!cfg->no_irqchip && ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return fail(err, errlen, "KVM_CREATE_PIT2");
    ret = setup_memory(vm, cfg, err, errlen);
    if (ret < 0)
        return ret;

    vm->cpuid = calloc(1, sizeof(*vm->cpuid) + CPUID_MAX_ENTRIES * sizeof(vm->cpuid->entries[0]));
    if (!vm->cpuid)
        return fail(err, errlen, "allocating CPUID");
    vm->cpuid->nent = CPUID_MAX_ENTRIES;
    if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid) < 0)
        return fail(err, errlen, "KVM_GET_SUPPORTED_CPUID");

    vm->vcpus = calloc(cfg->ncpus, sizeof(*vm->vcpus));
    if (!vm->vcpus)
        return fail(err, errlen, "allocating vCPUs");
    for (unsigned i = 0; i < cfg->ncpus; i++)
        vm->vcpus[i].fd = -1;
    vm->ncpus = cfg->ncpus;
    for (unsigned i = 0; i < cfg->ncpus; i++) {
        ret = setup_vcpu(vm, &vm->vcpus[i], i, err, errlen);
        if (ret < 0)
            return ret;
    }
    return 0;
}

struct vm *vm_create(const struct vm_config *cfg, uint64_t start_ns, char *err, size_t errlen)
{
    struct vm *vm;
    int ret;

    if (cfg->ncpus < 1 || cfg->ncpus > X86_MAX_CPUS) {
        snprintf(err, errlen, "%u vCPUs requested; kiln supports 1 to %u", cfg->ncpus,
                 X86_MAX_CPUS);
        errno = EINVAL;
        return NULL;
    }
    vm = calloc(1, sizeof(*vm));
    if (!vm) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    vm->kvm_fd = vm->vm_fd = -1;
    vm->mem.fd = -1;
    vm->exit_reason = VM_EXIT_NONE;
    vm->start_ns = start_ns;
    vm->host = (struct dev_host){.set_irq = host_set_irq,
                                 .request_exit = host_request_exit,
                                 .add_ioeventfd = host_add_ioeventfd,
                                 .add_irqfd = host_add_irqfd,
                                 .opaque = vm};
    bus_init(&vm->bus);
    ret = setup_vm(vm, cfg, err, errlen);
    if (ret < 0) {
        vm_destroy(vm);
        errno = -ret;
        return NULL;
    }
    return vm;
}

void vm_destroy(struct vm *vm)
{
    if (!vm)
        return;
    vcpus_stop(vm);
    for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++) {
        if (vm->vcpus[i].run)
            munmap(vm->vcpus[i].run, vm->vcpus[i].run_size);
        if (vm->vcpus[i].fd >= 0)
            close(vm->vcpus[i].fd);
    }
    free(vm->vcpus);
    free(vm->cpuid);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    guest_mem_destroy(&vm->mem);
    bus_destroy(&vm->bus);
    free(vm);
}
