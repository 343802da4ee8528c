/* memslots.c: the address-range allocator of the device-memory window: first fit over a sorted
 * free list that merges neighbours on free, so unregistering a region makes its range (and the
 * free space around it) reusable as one piece. */
#include <errno.h>
#include <string.h>

#include "control.h"
#include "lib/lib.h"

void ctl_alloc_init(struct ctl_alloc *a, uint64_t base, uint64_t size, uint64_t align)
{
    memset(a, 0, sizeof(*a));
    a->base = base;
    a->size = size;
    a->align = align;
    if (size) {
        a->free[0].start = base;
        a->free[0].len = size;
        a->nfree = 1;
    }
}

int ctl_alloc_take(struct ctl_alloc *a, uint64_t len, uint64_t *addr)
{
    uint64_t need;

    if (len == 0 || ck_add_u64(len, a->align - 1, &need))
        return -EINVAL;
    need = ALIGN_DOWN(need, a->align);
    for (unsigned i = 0; i < a->nfree; i++) {
        if (a->free[i].len < need)
            continue;
        *addr = a->free[i].start;
        a->free[i].start += need;
        a->free[i].len -= need;
        if (a->free[i].len == 0) {
            memmove(&a->free[i], &a->free[i + 1], (a->nfree - i - 1) * sizeof(a->free[0]));
            a->nfree--;
        }
        return 0;
    }
    return -ENOSPC;
}

int ctl_alloc_give(struct ctl_alloc *a, uint64_t addr, uint64_t len)
{
    uint64_t end;
    unsigned i;

    if (len == 0 || ck_add_u64(len, a->align - 1, &len))
        return -EINVAL;
    len = ALIGN_DOWN(len, a->align);
    if (addr < a->base || (addr - a->base) % a->align || ck_add_u64(addr, len, &end) ||
        end > a->base + a->size)
        return -EINVAL;
    /* i: the first free range after addr. */
    for (i = 0; i < a->nfree && a->free[i].start < addr; i++)
        ;
    if (i > 0 && a->free[i - 1].start + a->free[i - 1].len > addr)
        return -EINVAL;
    if (i < a->nfree && end > a->free[i].start)
        return -EINVAL;
    if (i > 0 && a->free[i - 1].start + a->free[i - 1].len == addr) {
        a->free[i - 1].len += len;
        if (i < a->nfree && end == a->free[i].start) {
            a->free[i - 1].len += a->free[i].len;
            memmove(&a->free[i], &a->free[i + 1], (a->nfree - i - 1) * sizeof(a->free[0]));
            a->nfree--;
        }
        return 0;
    }
    if (i < a->nfree && end == a->free[i].start) {
        a->free[i].start = addr;
        a->free[i].len += len;
        return 0;
    }
    if (a->nfree >= ARRAY_SIZE(a->free))
        return -ENOSPC;
    memmove(&a->free[i + 1], &a->free[i], (a->nfree - i) * sizeof(a->free[0]));
    a->free[i].start = addr;
    a->free[i].len = len;
    a->nfree++;
    return 0;
}

uint64_t ctl_alloc_free_bytes(const struct ctl_alloc *a)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < a->nfree; i++)
        sum += a->free[i].len;
    return sum;
}
