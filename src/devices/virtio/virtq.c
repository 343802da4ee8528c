/* virtq.c: the split-virtqueue walker: validates rings, pops descriptor chains into iovecs and
 * pushes used elements, with the memory ordering and EVENT_IDX rules of docs/virtqueue.md. */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <string.h>

#include "devices/virtio/virtio.h"
#include "lib/lib.h"

/* The ring layout of virtio 1.2 section 2.7; the event-index fields always count. */
#define DESC_BYTES(n)  (16ULL * (n))
#define AVAIL_BYTES(n) (6ULL + 2ULL * (n)) /* flags, idx, ring[n], used_event */
#define USED_BYTES(n)  (6ULL + 8ULL * (n)) /* flags, idx, ring[n], avail_event */

_Static_assert(sizeof(struct vring_desc) == 16, "descriptor layout");
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element layout");

/* The driver runs on another CPU and may rewrite any ring word at any time: shared words are
 * read and written exactly once, through atomics the compiler may neither split nor repeat. */
static inline uint16_t load16(const void *p)
{
    return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED));
}

static inline void store16(void *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)p, htole16(v), __ATOMIC_RELAXED);
}

static inline uint16_t *used_event(const struct virtq *q)
{
    return &q->avail->ring[q->size];
}

static inline uint16_t *avail_event(const struct virtq *q)
{
    return (uint16_t *)&q->used->ring[q->size];
}

static bool ring_ok(const struct virtq *q, const char *name, uint64_t gpa, uint64_t bytes,
                    uint64_t align, void **hva, char *why, size_t whylen)
{
    if (gpa & (align - 1)) {
        snprintf(why, whylen, "%s ring at 0x%llx is not %llu-byte aligned", name,
                 (unsigned long long)gpa, (unsigned long long)align);
        return false;
    }
    *hva = guest_mem_ptr(q->mem, gpa, bytes);
    if (!*hva) {
        snprintf(why, whylen, "%s ring 0x%llx..0x%llx (%llu bytes) outside guest RAM", name,
                 (unsigned long long)gpa, (unsigned long long)(gpa + bytes),
                 (unsigned long long)bytes);
        return false;
    }
    return true;
}

int virtq_validate(struct virtq *q, uint16_t max_size, char *why, size_t whylen)
{
    void *desc, *avail, *used;

    q->desc = NULL;
    q->avail = NULL;
    q->used = NULL;
    if (max_size > VIRTQ_MAX_SIZE)
        max_size = VIRTQ_MAX_SIZE;
    if (q->size == 0 || (q->size & (q->size - 1)) || q->size > max_size) {
        snprintf(why, whylen, "queue size %u is not a power of two in 1..%u", q->size, max_size);
        return -EINVAL;
    }
    if (!q->mem) {
        snprintf(why, whylen, "queue has no guest memory");
        return -EINVAL;
    }
    if (!ring_ok(q, "descriptor", q->desc_gpa, DESC_BYTES(q->size), VRING_DESC_ALIGN_SIZE, &desc,
                 why, whylen) ||
        !ring_ok(q, "available", q->avail_gpa, AVAIL_BYTES(q->size), VRING_AVAIL_ALIGN_SIZE, &avail,
                 why, whylen) ||
        !ring_ok(q, "used", q->used_gpa, USED_BYTES(q->size), VRING_USED_ALIGN_SIZE, &used, why,
                 whylen))
        return -EINVAL;
    q->desc = desc;
    q->avail = avail;
    q->used = used;
    return 0;
}

void virtq_reset(struct virtq *q)
{
    q->last_avail = 0;
    q->used_idx = 0;
    q->signalled_used = 0;
    q->signalled_valid = false;
    q->no_notify = false;
}

/* Where a walk is: the table it reads (the ring's, or one indirect table) and its bounds. */
struct walk {
    const uint8_t *table; /* byte pointer: indirect tables need not be aligned */
    uint32_t entries;     /* descriptors in table */
    bool indirect;        /* table is an indirect table */
    bool seen_wr;         /* a writable buffer came already: no readable one may follow */
    unsigned count;       /* buffer descriptors in the whole chain, for the overall bound */
};

/* Copies one descriptor out of guest memory; the compiler barrier makes the copy the only read
 * (the fields are then used from the local only, so a guest rewriting it cannot race a check). */
static inline void read_desc(const uint8_t *src, struct vring_desc *d)
{
    memcpy(d, src, sizeof(*d));
    __asm__ volatile("" : : : "memory");
}

/* Adds one buffer descriptor to the chain. Returns 0 or -EINVAL with why filled. */
static int add_buffer(const struct virtq *q, struct walk *w, struct virtq_chain *c, uint16_t idx,
                      uint64_t addr, uint32_t len, uint16_t flags, char *why, size_t whylen)
{
    const char *where = w->indirect ? "indirect descriptor" : "descriptor";
    void *hva;

    if (++w->count > VIRTQ_MAX_SIZE) {
        snprintf(why, whylen, "chain from head %u has more than %d descriptors", c->head,
                 VIRTQ_MAX_SIZE);
        return -EINVAL;
    }
    if (len == 0)
        return 0; /* allowed, and nothing to transfer */
    hva = guest_mem_ptr(q->mem, addr, len);
    if (!hva) {
        snprintf(why, whylen, "%s %u: buffer 0x%llx len %u outside guest RAM", where, idx,
                 (unsigned long long)addr, len);
        return -EINVAL;
    }
    if (c->rd_len + c->wr_len + len > UINT32_MAX) {
        snprintf(why, whylen, "chain from head %u: total length exceeds 4 GiB", c->head);
        return -EINVAL;
    }
    if (flags & VRING_DESC_F_WRITE) {
        w->seen_wr = true;
        c->wr[c->nwr].iov_base = hva;
        c->wr[c->nwr++].iov_len = len;
        c->wr_len += len;
    } else if (w->seen_wr) {
        snprintf(why, whylen, "%s %u: readable buffer after a writable one", where, idx);
        return -EINVAL;
    } else {
        c->rd[c->nrd].iov_base = hva;
        c->rd[c->nrd++].iov_len = len;
        c->rd_len += len;
    }
    return 0;
}

/* Switches the walk to the indirect table a descriptor points to. */
static int enter_indirect(const struct virtq *q, struct walk *w, uint16_t idx, uint64_t addr,
                          uint32_t len, uint16_t flags, char *why, size_t whylen)
{
    if (!q->indirect) {
        snprintf(why, whylen,
                 "descriptor %u: INDIRECT flag without VIRTIO_F_INDIRECT_DESC negotiated", idx);
        return -EINVAL;
    }
    if (w->indirect) {
        snprintf(why, whylen, "indirect table inside an indirect table (indirect descriptor %u)",
                 idx);
        return -EINVAL;
    }
    if (flags & VRING_DESC_F_NEXT) {
        snprintf(why, whylen, "descriptor %u: INDIRECT together with NEXT", idx);
        return -EINVAL;
    }
    if (len == 0) {
        snprintf(why, whylen, "descriptor %u: zero-length indirect table", idx);
        return -EINVAL;
    }
    if (len % sizeof(struct vring_desc)) {
        snprintf(why, whylen, "descriptor %u: indirect table length %u not a multiple of 16", idx,
                 len);
        return -EINVAL;
    }
    if (len / sizeof(struct vring_desc) > VIRTQ_MAX_SIZE) {
        snprintf(why, whylen, "descriptor %u: indirect table of %zu descriptors (at most %d)", idx,
                 len / sizeof(struct vring_desc), VIRTQ_MAX_SIZE);
        return -EINVAL;
    }
    w->table = guest_mem_ptr(q->mem, addr, len);
    if (!w->table) {
        snprintf(why, whylen, "descriptor %u: indirect table 0x%llx len %u outside guest RAM", idx,
                 (unsigned long long)addr, len);
        return -EINVAL;
    }
    w->entries = len / sizeof(struct vring_desc);
    w->indirect = true;
    return 0;
}

/* Walks the chain starting at c->head. Each table is walked at most `entries` steps: a longer
 * walk must revisit a descriptor, so that bound is the loop check too. */
static int walk_chain(const struct virtq *q, struct virtq_chain *c, char *why, size_t whylen)
{
    struct walk w = {.table = (const uint8_t *)q->desc, .entries = q->size};
    uint32_t steps = 0;
    uint16_t idx = c->head;
    struct vring_desc d;
    int ret;

    for (;;) {
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;

        if (++steps > w.entries) {
            if (w.indirect)
                snprintf(why, whylen,
                         "chain from head %u loops in its indirect table (%u descriptors)", c->head,
                         steps);
            else
                snprintf(why, whylen,
                         "chain from head %u loops or is longer than the queue (%u descriptors)",
                         c->head, steps);
            return -EINVAL;
        }
        read_desc(w.table + (size_t)idx * sizeof(d), &d);
        addr = le64toh(d.addr);
        len = le32toh(d.len);
        flags = le16toh(d.flags);
        next = le16toh(d.next);

        if (flags & VRING_DESC_F_INDIRECT) {
            ret = enter_indirect(q, &w, idx, addr, len, flags, why, whylen);
            if (ret < 0)
                return ret;
            idx = 0;
            steps = 0;
            continue;
        }
        ret = add_buffer(q, &w, c, idx, addr, len, flags, why, whylen);
        if (ret < 0)
            return ret;
        if (!(flags & VRING_DESC_F_NEXT))
            return 0;
        if (next >= w.entries) {
            snprintf(why, whylen, "%s %u: next index %u out of range (%u descriptors)",
                     w.indirect ? "indirect descriptor" : "descriptor", idx, next, w.entries);
            return -EINVAL;
        }
        idx = next;
    }
}

int virtq_pop(struct virtq *q, struct virtq_chain *chain, char *why, size_t whylen)
{
    uint16_t avail_idx, pending, head;
    int ret;

    if (!q->desc) {
        snprintf(why, whylen, "queue used before it was validated");
        return -EINVAL;
    }
    /* Acquire: the ring entries the driver published before idx are read after it. */
    avail_idx = le16toh(__atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE));
    if (avail_idx == q->last_avail && q->event_idx && !q->no_notify) {
        /* Our last avail_event store must be visible before we conclude the ring is empty,
         * or the driver may skip its kick while we go idle (store-load: a full fence). */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        avail_idx = le16toh(__atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE));
    }
    pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0)
        return 0;
    if (pending > q->size) {
        snprintf(why, whylen, "avail index jumped from %u to %u (queue size %u)", q->last_avail,
                 avail_idx, q->size);
        return -EINVAL;
    }
    head = load16(&q->avail->ring[q->last_avail & (q->size - 1)]);
    if (head >= q->size) {
        snprintf(why, whylen, "avail ring entry %u: head index %u out of range (queue size %u)",
                 q->last_avail, head, q->size);
        return -EINVAL;
    }
    chain->head = head;
    chain->nrd = chain->nwr = 0;
    chain->rd_len = chain->wr_len = 0;
    ret = walk_chain(q, chain, why, whylen);
    if (ret < 0)
        return ret;
    q->last_avail++;
    /* With EVENT_IDX, "kick me when you publish the entry after the ones I took". */
    if (q->event_idx && !q->no_notify)
        store16(avail_event(q), q->last_avail);
    return 1;
}

bool virtq_has_work(const struct virtq *q)
{
    if (!q->avail)
        return false;
    return le16toh(__atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE)) != q->last_avail;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    struct vring_used_elem *e;

    assert(q->used && head < q->size); /* a device bug, not the guest's */
    e = &q->used->ring[q->used_idx & (q->size - 1)];
    __atomic_store_n(&e->id, htole32(head), __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, htole32(written), __ATOMIC_RELAXED);
    q->used_idx++;
    /* Release: the element is visible before the index that publishes it. */
    __atomic_store_n(&q->used->idx, htole16(q->used_idx), __ATOMIC_RELEASE);
    /* Half the index space pushed without asking whether to interrupt: old/new comparisons in
     * vring_need_event() become ambiguous, so the next check interrupts unconditionally. */
    if ((int16_t)(q->used_idx - q->signalled_used) < 0)
        q->signalled_valid = false;
}

bool virtq_should_interrupt(struct virtq *q)
{
    uint16_t old = q->signalled_used, now = q->used_idx;
    bool valid = q->signalled_valid;

    if (!q->avail)
        return false;
    /* The used index store must be visible before the driver's suppression fields are read,
     * else the driver could re-enable interrupts, see no new entries, and sleep forever. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    q->signalled_used = now;
    q->signalled_valid = true;
    if (now == old && (valid || !q->event_idx))
        return false; /* nothing pushed since the previous call (or since the reset) */
    if (!q->event_idx)
        return !(load16(&q->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
    if (!valid)
        return true; /* no reference point: an extra interrupt is harmless, a lost one not */
    return vring_need_event(load16(used_event(q)), now, old);
}

void virtq_describe(const struct virtq *q, char *buf, size_t len)
{
    char sig[16] = "none";

    if (!q->avail || !q->used) {
        snprintf(buf, len, "not set up");
        return;
    }
    /* "taken - used" chains are with the device; "avail - taken" wait for it. */
    if (q->signalled_valid)
        snprintf(sig, sizeof(sig), "%u", q->signalled_used);
    snprintf(buf, len, "avail=%u taken=%u used=%u signalled=%s avail_flags=%#x used_event=%u",
             load16(&q->avail->idx), q->last_avail, q->used_idx, sig, load16(&q->avail->flags),
             q->event_idx ? (unsigned)load16(used_event(q)) : 0U);
}

void virtq_set_notify(struct virtq *q, bool enable)
{
    if (!q->used)
        return;
    q->no_notify = !enable;
    if (q->event_idx) {
        /* Disabling leaves avail_event behind the driver, which then stops kicking. */
        if (enable)
            store16(avail_event(q), q->last_avail);
    } else {
        store16(&q->used->flags, enable ? 0 : VRING_USED_F_NO_NOTIFY);
    }
    /* The caller checks virtq_has_work() next: that load must not pass the store above. */
    if (enable)
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Copies between a flat buffer and the bytes of an iovec that start `offset` bytes in;
 * to_iov picks the direction. Returns how many bytes were copied. */
static size_t iov_copy(const struct iovec *iov, unsigned niov, size_t offset, uint8_t *buf,
                       size_t len, bool to_iov)
{
    size_t done = 0;

    for (unsigned i = 0; i < niov && done < len; i++) {
        uint8_t *part;
        size_t n;

        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        n = iov[i].iov_len - offset;
        if (n > len - done)
            n = len - done;
        part = (uint8_t *)iov[i].iov_base + offset;
        if (to_iov)
            memcpy(part, buf + done, n);
        else
            memcpy(buf + done, part, n);
        done += n;
        offset = 0;
    }
    return done;
}

size_t iov_copy_from(const struct iovec *iov, unsigned niov, size_t offset, void *buf, size_t len)
{
    return iov_copy(iov, niov, offset, buf, len, false);
}

size_t iov_copy_to(const struct iovec *iov, unsigned niov, size_t offset, const void *buf,
                   size_t len)
{
    /* buf is only read when to_iov is set. */
    return iov_copy(iov, niov, offset, (uint8_t *)buf, len, true);
}
