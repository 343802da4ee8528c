/* vmctl.c: what control requests do to a real VM: pause, registered memory in the device-memory
 * window, the balloon, eventfds, state and metrics (docs/control-protocol.md). Runs on the event
 * loop thread only, so its tables need no lock. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"
#include "devices/virtio/virtio.h"
#include "lib/lib.h"

#define PAGE_SIZE 4096ULL

struct region {
    bool used;
    uint64_t gpa, size;
    void *hva;
};

struct vmctl {
    struct vm *vm;
    struct virtio_dev *balloon;
    struct ctl_alloc alloc;
    struct region regions[CTL_MEM_MAX_SLOTS];
    uint64_t total;
    unsigned nregions;
    int eventfds[CTL_MAX_EVENTFDS];
    unsigned neventfds;
};

uint64_t vmctl_window_base(const struct vm *vm)
{
    uint64_t high = 0;

    for (unsigned i = 0; i < vm->mem.nregions; i++)
        if (vm->mem.regions[i].gpa >= (4ULL << 30))
            high += vm->mem.regions[i].size;
    /* 1 GiB alignment: the window never shares a large guest page with RAM. */
    return ALIGN_UP((4ULL << 30) + high, 1ULL << 30);
}

struct vmctl *vmctl_create(struct vm *vm, struct virtio_dev *balloon)
{
    struct vmctl *vc = calloc(1, sizeof(*vc));

    if (!vc)
        return NULL;
    vc->vm = vm;
    vc->balloon = balloon;
    ctl_alloc_init(&vc->alloc, vmctl_window_base(vm), CTL_MEM_WINDOW_SIZE, CTL_MEM_ALIGN);
    return vc;
}

static uint32_t kvm_slot(unsigned index)
{
    /* After the RAM slots (guest_mem uses 0..GUEST_MEM_MAX_REGIONS-1). */
    return GUEST_MEM_MAX_REGIONS + index;
}

static int set_slot(struct vmctl *vc, unsigned index, const struct region *r, uint32_t flags)
{
    struct kvm_userspace_memory_region slot = {
        .slot = kvm_slot(index),
        .flags = flags,
        .guest_phys_addr = r->gpa,
        .memory_size = r->hva ? r->size : 0, /* 0 deletes the slot */
        .userspace_addr = (uint64_t)(uintptr_t)r->hva,
    };

    return ioctl(vc->vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0 ? -errno : 0;
}

static int register_memory(void *opaque, int *fd, uint64_t size, uint64_t *pfn, uint32_t *slot)
{
    struct vmctl *vc = opaque;
    struct region *r = NULL;
    struct stat st;
    uint32_t flags = 0;
    unsigned index;
    void *hva;
    int ret;

    if (size == 0 || size % PAGE_SIZE || size > CTL_MEM_WINDOW_SIZE) {
        log_warn("control: register-memory: size %llu is not a non-zero multiple of 4096 up to "
                 "%llu GiB",
                 (unsigned long long)size, CTL_MEM_WINDOW_SIZE >> 30);
        return -EINVAL;
    }
    if (fstat(*fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < size) {
        log_warn("control: register-memory: the file holds %lld bytes, fewer than %llu",
                 (long long)st.st_size, (unsigned long long)size);
        return -EINVAL;
    }
    for (index = 0; index < CTL_MEM_MAX_SLOTS && vc->regions[index].used; index++)
        ;
    if (index == CTL_MEM_MAX_SLOTS) {
        log_warn("control: register-memory: all %d slots are in use", CTL_MEM_MAX_SLOTS);
        return -ENOSPC;
    }
    if (vc->total + size > CTL_MEM_MAX_TOTAL) {
        log_warn("control: register-memory: %llu more bytes would pass the limit of %llu GiB",
                 (unsigned long long)size, CTL_MEM_MAX_TOTAL >> 30);
        return -ENOSPC;
    }
    hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (hva == MAP_FAILED && errno == EACCES) {
        /* A descriptor opened read-only: the guest gets a read-only slot. */
        hva = mmap(NULL, size, PROT_READ, MAP_SHARED, *fd, 0);
        flags = KVM_MEM_READONLY;
    }
    if (hva == MAP_FAILED)
        return -errno;
    r = &vc->regions[index];
    ret = ctl_alloc_take(&vc->alloc, size, &r->gpa);
    if (ret < 0) {
        log_warn("control: register-memory: no free range of %llu bytes in the device-memory "
                 "window",
                 (unsigned long long)size);
        goto fail_unmap;
    }
    r->size = size;
    r->hva = hva;
    ret = set_slot(vc, index, r, flags);
    if (ret < 0) {
        log_warn("control: register-memory: KVM_SET_USER_MEMORY_REGION failed: %s", strerror(-ret));
        goto fail_free;
    }
    r->used = true;
    vc->total += size;
    vc->nregions++;
    *pfn = r->gpa / PAGE_SIZE;
    *slot = kvm_slot(index);
    log_info("control: registered %llu bytes at %#llx (slot %u)", (unsigned long long)size,
             (unsigned long long)r->gpa, *slot);
    return 0; /* the mapping keeps the memory; the descriptor itself is not needed */

fail_free:
    (void)ctl_alloc_give(&vc->alloc, r->gpa, size);
fail_unmap:
    munmap(hva, size);
    memset(r, 0, sizeof(*r));
    return ret;
}

static int remove_region(struct vmctl *vc, unsigned index)
{
    struct region *r = &vc->regions[index];
    struct region gone = {.gpa = r->gpa};
    int ret = set_slot(vc, index, &gone, 0);

    if (ret < 0)
        return ret;
    munmap(r->hva, r->size);
    (void)ctl_alloc_give(&vc->alloc, r->gpa, r->size);
    vc->total -= r->size;
    vc->nregions--;
    memset(r, 0, sizeof(*r));
    return 0;
}

static int unregister_memory(void *opaque, uint32_t slot)
{
    struct vmctl *vc = opaque;
    uint32_t index = slot - GUEST_MEM_MAX_REGIONS;

    if (slot < GUEST_MEM_MAX_REGIONS || index >= CTL_MEM_MAX_SLOTS || !vc->regions[index].used) {
        log_warn("control: unregister-memory: slot %u is not a registered region", slot);
        return -ENOENT;
    }
    return remove_region(vc, index);
}

static int balloon_adjust(void *opaque, int32_t pages, uint64_t *target)
{
    struct vmctl *vc = opaque;
    struct virtio_balloon_stats st;
    uint64_t max = vc->vm->mem.size / PAGE_SIZE, next;

    if (!vc->balloon)
        return -ENODEV;
    virtio_balloon_get_stats(vc->balloon, &st);
    /* Relative: clamp at an empty balloon and at all of guest RAM. */
    if (pages < 0)
        next = (uint64_t) - (int64_t)pages > st.target_pages
                   ? 0
                   : st.target_pages - (uint64_t) - (int64_t)pages;
    else
        next = st.target_pages + (uint64_t)pages > max ? max : st.target_pages + (uint64_t)pages;
    *target = next;
    return virtio_balloon_set_target(vc->balloon, next);
}

static int do_exit(void *opaque)
{
    struct vmctl *vc = opaque;

    log_info("control: exit requested through the control socket");
    vm_request_exit(vc->vm, VM_EXIT_POWEROFF);
    return 0;
}

static int do_pause(void *opaque)
{
    struct vmctl *vc = opaque;
    uint64_t t0 = time_now_ns();
    int ret = vcpus_pause(vc->vm);

    log_debug("control: pause took %.1f us", (double)(time_now_ns() - t0) / 1e3);
    return ret;
}

static int do_resume(void *opaque)
{
    struct vmctl *vc = opaque;

    return vcpus_resume(vc->vm);
}

static int get_state(void *opaque, uint32_t *state)
{
    struct vmctl *vc = opaque;

    *state = vc->vm->exit_reason != VM_EXIT_NONE || vc->vm->stopping ? KILN_CTL_STATE_EXITING
             : vcpus_paused(vc->vm)                                  ? KILN_CTL_STATE_PAUSED
                                                                     : KILN_CTL_STATE_RUNNING;
    return 0;
}

static int keep_eventfd(struct vmctl *vc, int *fd, int ret)
{
    if (ret == 0) {
        vc->eventfds[vc->neventfds++] = *fd;
        *fd = -1;
    }
    return ret;
}

static int register_ioevent(void *opaque, int *fd, uint64_t addr, uint32_t len, uint32_t datamatch)
{
    struct vmctl *vc = opaque;
    const struct dev_host *h = &vc->vm->host;

    if (len != 1 && len != 2 && len != 4 && len != 8)
        return -EINVAL;
    if (vc->neventfds >= CTL_MAX_EVENTFDS)
        return -ENOSPC;
    if (!h->add_ioeventfd)
        return -ENOSYS;
    return keep_eventfd(vc, fd, h->add_ioeventfd(h->opaque, *fd, addr, len, datamatch));
}

static int register_irqfd(void *opaque, int *fd, uint32_t gsi)
{
    struct vmctl *vc = opaque;
    const struct dev_host *h = &vc->vm->host;

    if (vc->neventfds >= CTL_MAX_EVENTFDS)
        return -ENOSPC;
    if (!h->add_irqfd)
        return -ENOSYS;
    return keep_eventfd(vc, fd, h->add_irqfd(h->opaque, *fd, gsi));
}

int vmctl_metrics_json(struct vmctl *vc, char *buf, size_t len)
{
    struct vm *vm = vc->vm;
    uint64_t totals[VCPU_EXIT_KINDS] = {0}, rss[3];
    uint32_t state;
    size_t n = 0;

#define EMIT(...)                                                                                  \
    do {                                                                                           \
        int k_ = snprintf(buf + (n < len ? n : len), n < len ? len - n : 0, __VA_ARGS__);          \
        n += k_ > 0 ? (size_t)k_ : 0;                                                              \
    } while (0)

    for (unsigned i = 0; i < vm->ncpus; i++)
        for (unsigned k = 0; k < VCPU_EXIT_KINDS; k++)
            totals[k] += atomic_load_explicit(&vm->vcpus[i].exits[k], memory_order_relaxed);
    proc_rss_kib(rss);
    get_state(vc, &state);
    EMIT("{\"version\":%d,\"state\":\"%s\",\"uptime_ns\":%llu,\"vcpus\":%u,\"exits\":{",
         KILN_CTL_VERSION, ctl_state_name(state),
         (unsigned long long)(time_now_ns() - vm->start_ns), vm->ncpus);
    for (unsigned k = 0; k < VCPU_EXIT_KINDS; k++)
        EMIT("%s\"%s\":%llu", k ? "," : "", vcpu_exit_kind_name(k), (unsigned long long)totals[k]);
    EMIT("},\"memory\":{\"ram_bytes\":%llu,\"registered_regions\":%u,\"registered_bytes\":%llu},",
         (unsigned long long)vm->mem.size, vc->nregions, (unsigned long long)vc->total);
    if (vc->balloon) {
        struct virtio_balloon_stats st;
        virtio_balloon_get_stats(vc->balloon, &st);
        EMIT("\"balloon\":{\"target_pages\":%llu,\"actual_pages\":%llu},",
             (unsigned long long)st.target_pages, (unsigned long long)st.actual_pages);
    }
    EMIT("\"rss_kib\":{\"anon\":%llu,\"file\":%llu,\"shmem\":%llu}}\n", (unsigned long long)rss[0],
         (unsigned long long)rss[1], (unsigned long long)rss[2]);
#undef EMIT
    return (int)n;
}

static int get_metrics(void *opaque, int *memfd, uint64_t *len)
{
    struct vmctl *vc = opaque;
    char buf[4096];
    int n = vmctl_metrics_json(vc, buf, sizeof(buf)), fd, ret;

    if (n < 0 || (size_t)n >= sizeof(buf))
        return -EOVERFLOW;
    fd = memfd_create("kiln-metrics", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    ret = write_all(fd, buf, (size_t)n);
    /* Sealed: the client can trust the document not to change under it. */
    if (ret == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
        ret = -errno;
    if (ret < 0) {
        close(fd);
        return ret;
    }
    *memfd = fd;
    *len = (uint64_t)n;
    return 0;
}

void vmctl_destroy(struct vmctl *vc)
{
    if (!vc)
        return;
    for (unsigned i = 0; i < CTL_MEM_MAX_SLOTS; i++)
        if (vc->regions[i].used && remove_region(vc, i) < 0)
            munmap(vc->regions[i].hva, vc->regions[i].size);
    for (unsigned i = 0; i < vc->neventfds; i++)
        close(vc->eventfds[i]);
    free(vc);
}

const struct ctl_ops vmctl_ops = {
    .exit = do_exit,
    .register_memory = register_memory,
    .unregister_memory = unregister_memory,
    .balloon_adjust = balloon_adjust,
    .pause = do_pause,
    .resume = do_resume,
    .get_state = get_state,
    .register_ioevent = register_ioevent,
    .register_irqfd = register_irqfd,
    .get_metrics = get_metrics,
};
