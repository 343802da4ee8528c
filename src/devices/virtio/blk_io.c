/* blk_io.c: the block device's I/O engine: requests run against the image with preadv/pwritev
 * straight into guest memory, on a small worker pool so a slow disk never stalls the event loop.
 * Why a pool (and not io_uring), with the measurements: docs/block.md. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/falloc.h>

#include "blk.h"
#include "lib/lib.h"
#include "virtio.h"

/* Skips `done` bytes of an iovec list in place; returns the new start. */
static struct iovec *iov_advance(struct iovec *iov, unsigned *niov, size_t done)
{
    while (*niov && done >= iov->iov_len) {
        done -= iov->iov_len;
        iov++;
        (*niov)--;
    }
    if (*niov && done) {
        iov->iov_base = (uint8_t *)iov->iov_base + done;
        iov->iov_len -= done;
    }
    return iov;
}

static uint8_t rw(const struct blk_disk *d, struct blk_req *r, bool nowait)
{
    bool write = r->type == VIRTIO_BLK_T_OUT;
    struct iovec *iov = r->iov;
    unsigned niov = r->niov;
    uint64_t off = r->sector * BLK_SECTOR, left = r->len;
    ssize_t n;

    if (nowait) {
        /* One try from the page cache; anything short goes to a worker, which starts over. */
        if (write || !r->len || !d->can_nowait)
            return BLK_STATUS_AGAIN;
        n = preadv2(d->fd, iov, (int)niov, (off_t)off, RWF_NOWAIT);
        return n >= 0 && (uint64_t)n == r->len ? VIRTIO_BLK_S_OK : BLK_STATUS_AGAIN;
    }
    while (left) {
        n = write ? pwritev(d->fd, iov, (int)niov, (off_t)off)
                  : preadv(d->fd, iov, (int)niov, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* 0: the image shrank under us (someone truncated it). */
            log_once(LOG_WARN, "virtio-blk: %s at byte %llu failed: %s", write ? "write" : "read",
                     (unsigned long long)off, n < 0 ? strerror(errno) : "end of file");
            return VIRTIO_BLK_S_IOERR;
        }
        off += (uint64_t)n;
        left -= (uint64_t)n;
        iov = iov_advance(iov, &niov, (size_t)n);
    }
    return VIRTIO_BLK_S_OK;
}

/* DISCARD and WRITE_ZEROES: the data is an array of ranges (virtio 1.2 section 5.2.6). Both
 * punch a hole: the range then reads as zeros, which WRITE_ZEROES promises and DISCARD allows. */
static uint8_t punch(const struct blk_disk *d, struct blk_req *r)
{
    struct virtio_blk_discard_write_zeroes seg[BLK_DISCARD_MAX_SEG];
    bool zeroes = r->type == VIRTIO_BLK_T_WRITE_ZEROES;
    uint64_t nseg = r->len / sizeof(seg[0]);

    if (!d->can_punch || d->read_only)
        return VIRTIO_BLK_S_UNSUPP;
    if (r->len % sizeof(seg[0]) || nseg == 0 || nseg > BLK_DISCARD_MAX_SEG)
        return VIRTIO_BLK_S_IOERR;
    iov_copy_from(r->iov, r->niov, 0, seg, r->len);
    for (uint64_t i = 0; i < nseg; i++) {
        uint32_t flags = le32toh(seg[i].flags), num = le32toh(seg[i].num_sectors);
        uint64_t sector = le64toh(seg[i].sector);

        /* Unmap is meaningless for DISCARD; reserved bits are unknown commands. */
        if ((flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ||
            (!zeroes && (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)))
            return VIRTIO_BLK_S_UNSUPP;
        if (num > BLK_DISCARD_MAX_SECTORS || !range_within(sector, num, d->capacity))
            return VIRTIO_BLK_S_IOERR;
    }
    for (uint64_t i = 0; i < nseg; i++) {
        uint64_t off = le64toh(seg[i].sector) * BLK_SECTOR;
        uint64_t len = (uint64_t)le32toh(seg[i].num_sectors) * BLK_SECTOR;

        if (len && fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                             (off_t)len) < 0) {
            log_once(LOG_WARN, "virtio-blk: punching %llu bytes at %llu failed: %s",
                     (unsigned long long)len, (unsigned long long)off, strerror(errno));
            return VIRTIO_BLK_S_IOERR;
        }
    }
    return VIRTIO_BLK_S_OK;
}

uint8_t blk_execute(const struct blk_disk *d, struct blk_req *r, bool nowait)
{
    size_t n;

    switch (r->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        if (r->type == VIRTIO_BLK_T_OUT && d->read_only)
            return VIRTIO_BLK_S_IOERR;
        return rw(d, r, nowait);
    case VIRTIO_BLK_T_GET_ID:
        n = r->len < sizeof(d->serial) ? r->len : sizeof(d->serial);
        r->written = (uint32_t)iov_copy_to(r->iov, r->niov, 0, d->serial, n) + 1;
        return VIRTIO_BLK_S_OK;
    default:
        break;
    }
    if (nowait)
        return BLK_STATUS_AGAIN;
    switch (r->type) {
    case VIRTIO_BLK_T_FLUSH:
        /* The guest sees completion only once its writes are on stable storage. */
        if (!d->read_only && fdatasync(d->fd) < 0) {
            log_once(LOG_WARN, "virtio-blk: fdatasync failed: %s", strerror(errno));
            return VIRTIO_BLK_S_IOERR;
        }
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return punch(d, r);
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}

/* ---- the worker pool ---------------------------------------------------------------------- */

static void *worker(void *opaque)
{
    struct blk_pool *p = opaque;

    pthread_mutex_lock(p->lock);
    for (;;) {
        struct blk_req *r;
        uint8_t status;

        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->work, p->lock);
        if (p->stopping)
            break;
        r = p->head;
        p->head = r->next;
        if (!p->head)
            p->tail = NULL;
        p->running++;
        pthread_mutex_unlock(p->lock);

        status = blk_execute(p->disk, r, false);

        pthread_mutex_lock(p->lock);
        p->complete(p->opaque, r, status);
        if (--p->running == 0)
            pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(p->lock);
    return NULL;
}

int blk_pool_start(struct blk_pool *p, pthread_mutex_t *lock, const struct blk_disk *disk,
                   blk_complete_fn complete, void *opaque)
{
    int ret;

    memset(p, 0, sizeof(*p));
    p->lock = lock;
    p->disk = disk;
    p->complete = complete;
    p->opaque = opaque;
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);
    for (unsigned i = 0; i < BLK_WORKERS; i++) {
        ret = pthread_create(&p->threads[i], NULL, worker, p);
        if (ret) {
            blk_pool_stop(p);
            return -ret;
        }
        p->nthreads++;
    }
    return 0;
}

void blk_pool_submit(struct blk_pool *p, struct blk_req *r)
{
    r->next = NULL;
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
    pthread_cond_signal(&p->work);
}

void blk_pool_drain(struct blk_pool *p)
{
    while (p->head) {
        struct blk_req *r = p->head;
        p->head = r->next;
        free(r);
    }
    p->tail = NULL;
    while (p->running)
        pthread_cond_wait(&p->idle, p->lock);
}

void blk_pool_stop(struct blk_pool *p)
{
    pthread_mutex_lock(p->lock);
    blk_pool_drain(p);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->idle);
}
