/* virtio_balloon_pages.c: the balloon's inflate, deflate and free-page-reporting queues: pages the
 * guest gives up go back to the host (docs/balloon.md). Runs under the device's processing lock. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "balloon.h"
#include "lib/lib.h"
#include "virtio.h"

#define PFN_BATCH   256           /* PFNs read, sorted and coalesced at a time (Linux sends 256) */
#define SKIP_LOG_NS 1000000000ULL /* at most one "skipped page" message a second */
/* Linux sends 256 PFNs a chain; a chain of millions would hold the event loop for seconds. */
#define PFN_CHAIN_MAX (1024 * 1024 / sizeof(uint32_t))

/* A guest naming pages outside its RAM is misbehaving but harmless: skip, and say so at most
 * once a second. */
static void note_skipped(struct balloon *b, const char *what, uint64_t gpa, uint64_t len)
{
    uint64_t now = time_now_ns();

    b->skipped++;
    if (b->skip_logged && now - b->last_skip_log_ns < SKIP_LOG_NS) {
        b->skipped_unlogged++;
        return;
    }
    log_warn(
        "virtio-balloon: ignoring %s [0x%llx, +0x%llx): outside guest RAM or not 4 KiB-aligned "
        "(%llu similar messages suppressed)",
        what, (unsigned long long)gpa, (unsigned long long)len,
        (unsigned long long)b->skipped_unlogged);
    b->skip_logged = true;
    b->last_skip_log_ns = now;
    b->skipped_unlogged = 0;
}

/* Gives [gpa, gpa+len) back to the host in one call if it can. Returns the pages discarded. */
static uint64_t discard(struct balloon *b, const char *what, uint64_t gpa, uint64_t len)
{
    int ret = guest_mem_discard(b->mem, gpa, len);

    if (ret == -EINVAL && len > BALLOON_PAGE && !((gpa | len) % BALLOON_PAGE)) {
        /* Aligned, so the range is not all RAM in one region: take what is, page by page. */
        uint64_t done = 0;
        for (uint64_t off = 0; off < len; off += BALLOON_PAGE)
            done += discard(b, what, gpa + off, BALLOON_PAGE);
        return done;
    }
    if (ret == -EINVAL) {
        note_skipped(b, what, gpa, len);
        return 0;
    }
    if (ret < 0) {
        /* A host problem (the memfd refuses holes?): the guest did nothing wrong. */
        log_once(LOG_WARN, "virtio-balloon: cannot give pages back to the host: %s",
                 strerror(-ret));
        return 0;
    }
    return len / BALLOON_PAGE;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Inflate: the chain is an array of little-endian u32 PFNs of 4 KiB pages the guest gave up.
 * Each batch is sorted so neighbouring pages become one fallocate() call. */
int balloon_inflate(struct balloon *b, const struct virtq_chain *c)
{
    uint32_t pfns[PFN_BATCH];
    uint64_t run_start = 0, run_len = 0;

    if (c->rd_len % sizeof(uint32_t)) {
        virtio_dev_fail(b->dev, "inflate: a %llu-byte buffer is not a whole number of 4-byte PFNs",
                        (unsigned long long)c->rd_len);
        return -EINVAL;
    }
    if (c->rd_len / sizeof(uint32_t) > PFN_CHAIN_MAX) {
        virtio_dev_fail(b->dev, "inflate: %llu PFNs in one chain, more than the %zu allowed",
                        (unsigned long long)(c->rd_len / sizeof(uint32_t)), PFN_CHAIN_MAX);
        return -EINVAL;
    }
    for (uint64_t off = 0; off < c->rd_len;) {
        size_t n = (size_t)((c->rd_len - off) / sizeof(uint32_t));
        if (n > PFN_BATCH)
            n = PFN_BATCH;
        n = iov_copy_from(c->rd, c->nrd, off, pfns, n * sizeof(uint32_t)) / sizeof(uint32_t);
        if (!n)
            break;
        off += n * sizeof(uint32_t);
        for (size_t i = 0; i < n; i++)
            pfns[i] = le32toh(pfns[i]);
        qsort(pfns, n, sizeof(pfns[0]), cmp_u32);
        for (size_t i = 0; i < n; i++) {
            uint64_t pfn = pfns[i];
            if (!guest_mem_ptr(b->mem, pfn * BALLOON_PAGE, BALLOON_PAGE)) {
                note_skipped(b, "inflated page", pfn * BALLOON_PAGE, BALLOON_PAGE);
                continue;
            }
            if (run_len && pfn >= run_start && pfn < run_start + run_len)
                continue; /* a duplicate */
            if (run_len && pfn == run_start + run_len) {
                run_len++;
                continue;
            }
            if (run_len)
                b->inflated +=
                    discard(b, "inflated pages", run_start * BALLOON_PAGE, run_len * BALLOON_PAGE);
            run_start = pfn;
            run_len = 1;
        }
    }
    if (run_len)
        b->inflated +=
            discard(b, "inflated pages", run_start * BALLOON_PAGE, run_len * BALLOON_PAGE);
    return 0;
}

/* Deflate: the guest takes pages back. Their holes fill with zeros on first touch, so the host
 * has nothing to do (no MUST_TELL_HOST); the PFNs are only counted. */
int balloon_deflate(struct balloon *b, const struct virtq_chain *c)
{
    if (c->rd_len % sizeof(uint32_t)) {
        virtio_dev_fail(b->dev, "deflate: a %llu-byte buffer is not a whole number of 4-byte PFNs",
                        (unsigned long long)c->rd_len);
        return -EINVAL;
    }
    b->deflated += c->rd_len / sizeof(uint32_t);
    return 0;
}

/* Host address of a buffer the walker resolved -> its guest-physical address. */
static bool hva_to_gpa(const struct guest_mem *mem, const void *hva, uint64_t *gpa)
{
    uintptr_t p = (uintptr_t)hva;

    for (unsigned i = 0; i < mem->nregions; i++) {
        uintptr_t base = (uintptr_t)mem->regions[i].hva;
        if (p >= base && p - base < mem->regions[i].size) {
            *gpa = mem->regions[i].gpa + (p - base);
            return true;
        }
    }
    return false;
}

/* Free page reporting: each buffer IS a free block of guest RAM (never read or written). */
int balloon_report(struct balloon *b, const struct virtq_chain *c)
{
    for (unsigned k = 0; k < 2; k++) {
        const struct iovec *iov = k ? c->wr : c->rd;
        for (unsigned i = 0; i < (k ? c->nwr : c->nrd); i++) {
            uint64_t gpa;
            if (!iov[i].iov_len)
                continue;
            if (!hva_to_gpa(b->mem, iov[i].iov_base, &gpa)) {
                note_skipped(b, "reported range", 0, iov[i].iov_len);
                continue;
            }
            b->reported_bytes += discard(b, "reported range", gpa, iov[i].iov_len) * BALLOON_PAGE;
        }
    }
    return 0;
}
