/* memory.c: guest RAM as one memfd, split around the 32-bit MMIO hole, and the checked accessor. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/lib.h"
#include "vmm.h"

int guest_mem_init(struct guest_mem *mem, uint64_t size, uint64_t hole_start)
{
    uint64_t low;
    int ret;

    memset(mem, 0, sizeof(*mem));
    mem->fd = -1;
    if (size < GUEST_MEM_MIN_SIZE || size > GUEST_MEM_MAX_SIZE)
        return -EINVAL;
    size = ALIGN_UP(size, 4096ULL);

    mem->fd = memfd_create("kiln-guest-ram", MFD_CLOEXEC);
    if (mem->fd < 0)
        return -errno;
    if (ftruncate(mem->fd, (off_t)size) < 0) {
        ret = -errno;
        goto fail_close;
    }
    mem->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mem->fd, 0);
    if (mem->map == MAP_FAILED) {
        ret = -errno;
        mem->map = NULL;
        goto fail_close;
    }
    /* Guest RAM is never worth dumping with a VMM core, and is often huge. */
    (void)madvise(mem->map, size, MADV_DONTDUMP);
    mem->size = size;

    low = size < hole_start ? size : hole_start;
    mem->regions[0] = (struct guest_region){.gpa = 0, .size = low, .fd_offset = 0, .hva = mem->map};
    mem->nregions = 1;
    if (size > low) {
        mem->regions[1] = (struct guest_region){
            .gpa = 1ULL << 32, .size = size - low, .fd_offset = low, .hva = mem->map + low};
        mem->nregions = 2;
    }
    return 0;

fail_close:
    close(mem->fd);
    mem->fd = -1;
    return ret;
}

bool guest_mem_use_hugepages(struct guest_mem *mem, char *policy, size_t len)
{
    if (thp_shmem_policy("", policy, len) < 0)
        snprintf(policy, len, "unknown");
    mem->huge =
        thp_policy_grants_advised(policy) && madvise(mem->map, mem->size, MADV_HUGEPAGE) == 0;
    return mem->huge;
}

void guest_mem_destroy(struct guest_mem *mem)
{
    if (mem->map)
        munmap(mem->map, mem->size);
    if (mem->fd >= 0)
        close(mem->fd);
    memset(mem, 0, sizeof(*mem));
    mem->fd = -1;
}

void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < mem->nregions; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (gpa < r->gpa)
            continue;
        if (range_within(gpa - r->gpa, len, r->size))
            return r->hva + (gpa - r->gpa);
    }
    return NULL;
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
    const uint8_t *from = src;
    uint8_t *dst = guest_mem_ptr(mem, gpa, len);
    uint64_t off;

    if (!dst)
        return -EFAULT;
    if (mem->fd < 0 || len < 64 * 1024) {
        memcpy(dst, src, len);
        return 0;
    }
    off = (uint64_t)(dst - mem->map);
    while (len) {
        ssize_t n = pwrite(mem->fd, from, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        from += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

int guest_mem_discard(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    uint8_t *host = guest_mem_ptr(mem, gpa, len);

    if (!host || (gpa | len) & 4095)
        return -EINVAL;
    if (mem->fd < 0) { /* a test arena without a memfd: zeroing is all "discard" can mean */
        memset(host, 0, len);
        return 0;
    }
    /* The mapping is MAP_SHARED, so MADV_DONTNEED would only drop our page-table entries and
     * leave the memfd's pages allocated: punching the hole is what frees them. */
    if (fallocate(mem->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(host - mem->map),
                  (off_t)len) < 0)
        return -errno;
    return 0;
}

uint64_t guest_mem_low_end(const struct guest_mem *mem)
{
    return mem->nregions ? mem->regions[0].size : 0;
}
