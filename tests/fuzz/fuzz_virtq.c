/* fuzz_virtq.c: libFuzzer target: the input becomes a small guest-memory arena and the queue
 * parameters; chains are popped, copied through and pushed. Every accepted chain must describe
 * memory inside the arena. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtio.h"
#include "lib/lib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR       12
#define HIGH_GPA  (4 * GiB)
#define MAX_ARENA (64 * KiB)
#define MAX_POPS  8

static struct virtq_chain chain;
static uint8_t scratch[64 * KiB];

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static bool inside(const struct guest_mem *mem, const struct iovec *iov)
{
    for (unsigned i = 0; i < mem->nregions; i++) {
        const uint8_t *b = iov->iov_base, *r = mem->regions[i].hva;
        if (b >= r && iov->iov_len <= mem->regions[i].size &&
            (size_t)(b - r) <= mem->regions[i].size - iov->iov_len)
            return true;
    }
    return false;
}

static void check_iovs(const struct guest_mem *mem, const struct iovec *iov, unsigned n,
                       uint64_t total)
{
    uint64_t sum = 0;

    if (n > VIRTQ_MAX_SIZE)
        abort();
    for (unsigned i = 0; i < n; i++) {
        if (!iov[i].iov_len || !inside(mem, &iov[i]))
            abort();
        sum += iov[i].iov_len;
    }
    if (sum != total)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct guest_mem mem = {.fd = -1};
    struct virtq q = {0};
    uint8_t *arena;
    size_t n, low;
    uint8_t flags;
    char why[256];

    if (size < HDR + 16)
        return 0;
    flags = data[1];
    n = size - HDR < MAX_ARENA ? size - HDR : MAX_ARENA;
    /* Exact-size heap copy: any access past the arena is an ASan report. */
    arena = malloc(n);
    if (!arena)
        return 0;
    memcpy(arena, data + HDR, n);
    /* Bit 2: the second half of the arena is a region above 4 GiB, as above the MMIO hole. Host
     * and guest addresses keep the same alignment, as with real (page-aligned) regions. */
    low = (flags & 4) ? ALIGN_DOWN(n / 2, 16) : n;
    mem.regions[0] = (struct guest_region){.gpa = 0, .size = low, .hva = arena};
    mem.nregions = 1;
    if (flags & 4) {
        mem.regions[1] =
            (struct guest_region){.gpa = HIGH_GPA, .size = n - low, .hva = arena + low};
        mem.nregions = 2;
    }
    mem.size = n;

    q.size = (uint16_t)(1u << (data[0] % 10)); /* 1..512: 512 must be refused */
    q.event_idx = flags & 1;
    q.indirect = flags & 2;
    q.mem = &mem;
    q.desc_gpa = rd16(data + 2) | ((flags & 0x10) ? HIGH_GPA : 0);
    q.avail_gpa = rd16(data + 4) | ((flags & 0x20) ? HIGH_GPA : 0);
    q.used_gpa = rd16(data + 6) | ((flags & 0x40) ? HIGH_GPA : 0);
    why[0] = 0;
    if (virtq_validate(&q, VIRTQ_MAX_SIZE, why, sizeof(why)) < 0) {
        if (!why[0] || q.desc)
            abort();
        goto out;
    }
    virtq_reset(&q);
    q.last_avail = rd16(data + 8);
    q.used_idx = q.signalled_used = rd16(data + 10);
    if (flags & 8)
        virtq_set_notify(&q, false);

    for (unsigned i = 0; i < MAX_POPS; i++) {
        int ret;
        size_t got, put;

        why[0] = 0;
        ret = virtq_pop(&q, &chain, why, sizeof(why));
        if (ret < 0) {
            if (!why[0])
                abort(); /* every refusal names its reason */
            break;
        }
        if (ret == 0) {
            if (virtq_has_work(&q))
                abort(); /* nothing changed the arena in between */
            break;
        }
        if (chain.head >= q.size || chain.rd_len + chain.wr_len > UINT32_MAX)
            abort();
        check_iovs(&mem, chain.rd, chain.nrd, chain.rd_len);
        check_iovs(&mem, chain.wr, chain.nwr, chain.wr_len);
        /* A device reads its request, writes its answer at an offset, reports what it wrote. */
        got = iov_copy_from(chain.rd, chain.nrd, i, scratch, sizeof(scratch));
        put = iov_copy_to(chain.wr, chain.nwr, i, scratch, got);
        virtq_push(&q, chain.head, (uint32_t)put);
        if (i & 1)
            virtq_set_notify(&q, i & 2);
        (void)virtq_should_interrupt(&q);
    }
out:
    free(arena);
    return 0;
}
