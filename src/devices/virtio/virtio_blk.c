/* virtio_blk.c: the block device (virtio 1.2 section 5.2) over a raw image file or block device.
 *
 * The event loop pops chains, checks every header field and either completes a request at once
 * (errors, GET_ID, reads the page cache holds) or hands it to the worker pool of blk_io.c, whose
 * threads complete it into the used ring under the same lock. The rate limiter parks the queue
 * and resumes it from a timerfd. Design, choices and measurements: docs/block.md. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/virtio_ids.h>

#include "blk.h"
#include "lib/lib.h"
#include "virtio.h"

#define BLK_QUEUE_SIZE VIRTQ_MAX_SIZE
#define BLK_SEG_MAX    (BLK_QUEUE_SIZE - 2) /* a chain is header + data + status */
#define BLK_SIZE_MAX   (1U << 20)           /* bytes in one data segment */
#define BLK_HDR_LEN    16

struct blk {
    struct virtio_dev *dev;
    pthread_mutex_t lock; /* the queue (pop and push), the pool, the parked request */
    struct blk_disk disk;
    struct blk_pool pool;
    bool pool_started;
    struct virtq_chain chain; /* scratch for virtq_pop, under lock */
    bool limited;
    struct rate_limiter rl;
    struct blk_req *parked; /* popped but throttled: goes first when the timer fires */
    int timer_fd;
    struct evloop *loop;
    struct virtio_blk_config_space config; /* little-endian, as the guest reads it */
};

/* ---- completion ----------------------------------------------------------------------------- */

/* Lock held. Stores the status and hands the chain back, unless the session ended meanwhile (a
 * reset or a failure): then the guest's memory is no longer ours to write. */
static void finish(struct blk *b, struct blk_req *r, uint8_t status)
{
    if (virtio_dev_running(b->dev)) {
        *r->status = status;
        virtq_push(&b->dev->queues[0], r->head, status == VIRTIO_BLK_S_OK ? r->written : 1);
    }
    free(r);
}

static void on_complete(void *opaque, struct blk_req *r, uint8_t status)
{
    struct blk *b = opaque;

    finish(b, r, status);
    virtio_dev_notify_used(b->dev, 0);
}

/* Completes a chain that never became a request (a refused header) with `status`. */
static void finish_chain(struct blk *b, const struct virtq_chain *c, uint8_t *status_byte,
                         uint8_t status)
{
    *status_byte = status;
    virtq_push(&b->dev->queues[0], c->head, 1);
}

/* ---- parsing ------------------------------------------------------------------------------- */

/* Copies the iovecs covering [off, off+len) of src into dst; returns how many. */
static unsigned iov_slice(const struct iovec *src, unsigned n, uint64_t off, uint64_t len,
                          struct iovec *dst)
{
    unsigned k = 0;

    for (unsigned i = 0; i < n && len; i++) {
        uint64_t l = src[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        l -= off;
        if (l > len)
            l = len;
        dst[k].iov_base = (uint8_t *)src[i].iov_base + off;
        dst[k].iov_len = l;
        k++;
        len -= l;
        off = 0;
    }
    return k;
}

/* Turns the chain in b->chain into a request. Returns 1 with *out set, 0 when the chain was
 * completed at once with an error status, or -EINVAL after failing the device (a chain a
 * request cannot be made of: no header, no status byte). Lock held. */
static int parse(struct blk *b, struct blk_req **out)
{
    const struct virtq_chain *c = &b->chain;
    const struct iovec *last;
    struct virtio_blk_outhdr hdr;
    const struct iovec *src;
    unsigned nsrc;
    uint64_t off, len, end;
    uint8_t *status;
    struct blk_req *r;

    if (c->rd_len < BLK_HDR_LEN) {
        virtio_dev_fail(b->dev, "request %u: header of %llu bytes (16 needed)", c->head,
                        (unsigned long long)c->rd_len);
        return -EINVAL;
    }
    if (c->wr_len < 1) {
        virtio_dev_fail(b->dev, "request %u: no writable status byte", c->head);
        return -EINVAL;
    }
    last = &c->wr[c->nwr - 1]; /* the walker skips empty buffers: this one holds the status */
    status = (uint8_t *)last->iov_base + last->iov_len - 1;
    iov_copy_from(c->rd, c->nrd, 0, &hdr, sizeof(hdr));

    r = NULL;
    switch (le32toh(hdr.type)) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_GET_ID:
        src = c->wr, nsrc = c->nwr, off = 0, len = c->wr_len - 1;
        break;
    case VIRTIO_BLK_T_OUT:
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        src = c->rd, nsrc = c->nrd, off = BLK_HDR_LEN, len = c->rd_len - BLK_HDR_LEN;
        break;
    case VIRTIO_BLK_T_FLUSH:
        src = NULL, nsrc = 0, off = 0, len = 0;
        break;
    default:
        finish_chain(b, c, status, VIRTIO_BLK_S_UNSUPP);
        return 0;
    }
    switch (le32toh(hdr.type)) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        /* Whole sectors inside the disk; writes only to a writable one. */
        if (len % BLK_SECTOR || ck_mul_u64(le64toh(hdr.sector), BLK_SECTOR, &end) ||
            !range_within(end, len, b->disk.capacity * BLK_SECTOR) ||
            (le32toh(hdr.type) == VIRTIO_BLK_T_OUT && b->disk.read_only)) {
            finish_chain(b, c, status, VIRTIO_BLK_S_IOERR);
            return 0;
        }
        break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        if (!b->disk.can_punch || b->disk.read_only) {
            finish_chain(b, c, status, VIRTIO_BLK_S_UNSUPP);
            return 0;
        }
        break;
    default:
        break;
    }
    r = malloc(sizeof(*r) + (size_t)(nsrc ? nsrc : 1) * sizeof(struct iovec));
    if (!r) {
        log_once(LOG_WARN, "virtio-blk: out of memory for a request");
        finish_chain(b, c, status, VIRTIO_BLK_S_IOERR);
        return 0;
    }
    r->type = le32toh(hdr.type);
    r->sector = le64toh(hdr.sector);
    r->len = len;
    r->status = status;
    r->head = c->head;
    r->written = r->type == VIRTIO_BLK_T_IN ? (uint32_t)len + 1 : 1;
    r->niov = src ? iov_slice(src, nsrc, off, len, r->iov) : 0;
    *out = r;
    return 1;
}

/* ---- the queue ------------------------------------------------------------------------------ */

static void arm_timer(struct blk *b, uint64_t ns)
{
    struct itimerspec its = {0};

    if (ns == 0)
        ns = 1; /* 0 would disarm */
    its.it_value.tv_sec = (time_t)(ns / 1000000000ULL);
    its.it_value.tv_nsec = (long)(ns % 1000000000ULL);
    if (timerfd_settime(b->timer_fd, 0, &its, NULL) < 0)
        log_once(LOG_ERROR, "virtio-blk: cannot arm the rate-limit timer: %s", strerror(errno));
}

/* Starts r, or parks it when the rate limiter says wait. Returns true if it completed at once.
 * Lock held. */
static bool dispatch(struct blk *b, struct blk_req *r)
{
    uint64_t bytes = r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT ? r->len : 0;
    uint64_t now;
    uint8_t status;

    if (b->limited) {
        now = time_now_ns();
        if (!ratelimit_take(&b->rl, bytes, now)) {
            b->parked = r;
            arm_timer(b, ratelimit_wait_ns(&b->rl, bytes, now));
            return false;
        }
    }
    status = blk_execute(&b->disk, r, true);
    if (status != BLK_STATUS_AGAIN) {
        finish(b, r, status);
        return true;
    }
    blk_pool_submit(&b->pool, r);
    return false;
}

/* Takes every available chain (until throttled). Lock held. */
static void drain(struct blk *b)
{
    struct virtio_dev *dev = b->dev;
    struct virtq *q = &dev->queues[0];
    bool pushed = false;
    char why[160];
    int ret;

    if (b->parked && virtio_dev_running(dev)) {
        struct blk_req *r = b->parked;
        b->parked = NULL;
        pushed |= dispatch(b, r);
    }
    while (!b->parked && virtio_dev_running(dev) && q->ready) {
        struct blk_req *r = NULL;

        ret = virtq_pop(q, &b->chain, why, sizeof(why));
        if (ret < 0)
            virtio_dev_fail(dev, "%s", why);
        if (ret <= 0)
            break;
        ret = parse(b, &r);
        if (ret < 0)
            break;
        pushed |= ret == 0 || dispatch(b, r);
    }
    if (pushed)
        virtio_dev_notify_used(dev, 0);
}

static void blk_notify(struct virtio_dev *dev, unsigned index)
{
    struct blk *b = dev->priv;

    if (index != 0)
        return;
    pthread_mutex_lock(&b->lock);
    if (!b->parked) /* while parked, the timer decides when to go on */
        drain(b);
    pthread_mutex_unlock(&b->lock);
}

static void on_timer(void *opaque, uint32_t events)
{
    struct blk *b = opaque;
    uint64_t expirations;

    (void)events;
    if (read(b->timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        log_once(LOG_WARN, "virtio-blk: reading the rate-limit timer: %s", strerror(errno));
    pthread_mutex_lock(&b->lock);
    drain(b);
    pthread_mutex_unlock(&b->lock);
}

/* ---- the device contract -------------------------------------------------------------------- */

static void blk_config_read(struct virtio_dev *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct blk *b = dev->priv;

    memset(data, 0, len);
    if (offset < sizeof(b->config))
        memcpy(data, (const uint8_t *)&b->config + offset,
               len < sizeof(b->config) - offset ? len : sizeof(b->config) - offset);
}

static void blk_reset(struct virtio_dev *dev)
{
    struct blk *b = dev->priv;
    struct itimerspec off = {0};

    /* Status already reads 0, so nothing new starts. Queued requests are dropped, running ones
     * waited for: after this no thread writes into guest memory for the old session. */
    pthread_mutex_lock(&b->lock);
    free(b->parked);
    b->parked = NULL;
    timerfd_settime(b->timer_fd, 0, &off, NULL);
    blk_pool_drain(&b->pool);
    pthread_mutex_unlock(&b->lock);
}

static void blk_destroy(struct virtio_dev *dev)
{
    struct blk *b = dev->priv;

    if (!b)
        return;
    if (b->pool_started)
        blk_pool_stop(&b->pool);
    free(b->parked);
    if (b->timer_fd >= 0) {
        if (b->loop)
            evloop_del(b->loop, b->timer_fd);
        close(b->timer_fd);
    }
    if (b->disk.fd >= 0)
        close(b->disk.fd);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static const struct virtio_dev_ops blk_ops = {
    .config_read = blk_config_read,
    .reset = blk_reset,
    .notify = blk_notify,
    .destroy = blk_destroy,
};

/* ---- construction --------------------------------------------------------------------------- */

/* Opens and checks the image: a regular file or block device, at least one sector, not in use
 * by another VM. A size that is not a whole number of sectors is rounded down with a warning
 * (the tail is invisible to the guest), as QEMU does. */
static int open_image(struct blk_disk *d, const char *path, char *err, size_t errlen)
{
    char serial[VIRTIO_BLK_ID_BYTES + 1];
    uint64_t ids[2], h = 0xcbf29ce484222325ULL; /* FNV-1a */
    struct stat st;
    uint64_t size;
    int fd;

    fd = open(path, (d->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "virtio-blk: cannot open disk image '%s' %s: %s%s", path,
                 d->read_only ? "read-only" : "read-write", strerror(e),
                 !d->read_only && (e == EACCES || e == EROFS) ? " (add ,ro for a read-only disk)"
                                                              : "");
        return -e;
    }
    if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
        snprintf(err, errlen, "virtio-blk: disk image '%s' is %s", path,
                 S_ISDIR(st.st_mode) ? "a directory (a raw image file or block device is needed)"
                                     : "not a regular file or block device");
        close(fd);
        return -EINVAL;
    }
    size = (uint64_t)st.st_size;
    if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) < 0)
        size = 0;
    if (size < BLK_SECTOR) {
        snprintf(err, errlen,
                 "virtio-blk: disk image '%s' has %llu bytes (at least one 512-byte "
                 "sector is needed)",
                 path, (unsigned long long)size);
        close(fd);
        return -EINVAL;
    }
    if (flock(fd, (d->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
        snprintf(err, errlen, "virtio-blk: disk image '%s' is in use by another process (%s)", path,
                 d->read_only ? "open read-write" : "open");
        close(fd);
        return -EBUSY;
    }
    if (size % BLK_SECTOR)
        log_warn("virtio-blk: disk image '%s' is %llu bytes, not a multiple of 512: the last %llu "
                 "bytes are not visible to the guest",
                 path, (unsigned long long)size, (unsigned long long)(size % BLK_SECTOR));
    d->fd = fd;
    d->capacity = size / BLK_SECTOR;
    /* Punching a hole past the end changes nothing, and fails where holes are unsupported. */
    d->can_punch = !d->read_only && S_ISREG(st.st_mode) &&
                   fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             (off_t)ALIGN_UP(size, 4096), 4096) == 0;
    /* Some filesystems refuse RWF_NOWAIT outright: then every read goes to a worker. */
    d->can_nowait =
        preadv2(fd, &(struct iovec){serial, 1}, 1, 0, RWF_NOWAIT) >= 0 || errno == EAGAIN;
    /* The serial names the file, not the path: the same image always gets the same one. */
    ids[0] = (uint64_t)st.st_dev;
    ids[1] = (uint64_t)st.st_ino;
    for (size_t i = 0; i < sizeof(ids); i++)
        h = (h ^ ((const uint8_t *)ids)[i]) * 0x100000001b3ULL;
    snprintf(serial, sizeof(serial), "kiln%016llx", (unsigned long long)h);
    memcpy(d->serial, serial, VIRTIO_BLK_ID_BYTES);
    return 0;
}

static void fill_config(struct blk *b)
{
    struct virtio_blk_config_space *c = &b->config;

    memset(c, 0, sizeof(*c));
    c->capacity = htole64(b->disk.capacity);
    c->size_max = htole32(BLK_SIZE_MAX);
    c->seg_max = htole32(BLK_SEG_MAX);
    c->blk_size = htole32(BLK_SECTOR);
    if (b->disk.can_punch) {
        c->max_discard_sectors = htole32(BLK_DISCARD_MAX_SECTORS);
        c->max_discard_seg = htole32(BLK_DISCARD_MAX_SEG);
        c->discard_sector_alignment = htole32(4096 / BLK_SECTOR);
        c->max_write_zeroes_sectors = htole32(BLK_DISCARD_MAX_SECTORS);
        c->max_write_zeroes_seg = htole32(BLK_DISCARD_MAX_SEG);
        c->write_zeroes_may_unmap = 1;
    }
}

struct virtio_dev *virtio_blk_create(const struct virtio_env *env,
                                     const struct virtio_blk_config *cfg, char *err, size_t errlen)
{
    struct virtio_dev *dev;
    struct blk *b;
    int ret;

    if (!cfg->path || !*cfg->path) {
        snprintf(err, errlen, "virtio-blk: no disk image path given");
        errno = EINVAL;
        return NULL;
    }
    dev = virtio_dev_alloc();
    b = calloc(1, sizeof(*b));
    if (!dev || !b) {
        snprintf(err, errlen, "virtio-blk: out of memory");
        ret = -ENOMEM;
        goto fail_alloc;
    }
    b->dev = dev;
    b->disk.fd = b->timer_fd = -1;
    b->disk.read_only = cfg->read_only;
    pthread_mutex_init(&b->lock, NULL);
    dev->priv = b;
    dev->ops = &blk_ops;
    ret = open_image(&b->disk, cfg->path, err, errlen);
    if (ret < 0)
        goto fail_dev;
    b->limited = ratelimit_enabled(&cfg->limit);
    ratelimit_init(&b->rl, &cfg->limit, time_now_ns());
    b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (b->timer_fd < 0) {
        ret = -errno;
        snprintf(err, errlen, "virtio-blk: timerfd: %s", strerror(-ret));
        goto fail_dev;
    }
    if (b->limited && env->loop) {
        ret = evloop_add(env->loop, b->timer_fd, EPOLLIN, on_timer, b);
        if (ret < 0) {
            snprintf(err, errlen, "virtio-blk: cannot watch the rate-limit timer: %s",
                     strerror(-ret));
            goto fail_dev;
        }
        b->loop = env->loop;
    }
    ret = blk_pool_start(&b->pool, &b->lock, &b->disk, on_complete, b);
    if (ret < 0) {
        snprintf(err, errlen, "virtio-blk: cannot start I/O threads: %s", strerror(-ret));
        goto fail_dev;
    }
    b->pool_started = true;
    fill_config(b);
    dev->name = "blk";
    dev->device_id = VIRTIO_ID_BLOCK;
    dev->features = (1ULL << VIRTIO_BLK_F_SIZE_MAX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
                    (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH);
    if (b->disk.read_only)
        dev->features |= 1ULL << VIRTIO_BLK_F_RO;
    if (b->disk.can_punch)
        dev->features |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
    dev->nqueues = 1;
    dev->queue_max[0] = BLK_QUEUE_SIZE;
    return dev;

fail_dev:
    /* blk_destroy (through virtio_dev_destroy) copes with a half-built device. */
fail_alloc:
    if (!dev)
        free(b);
    virtio_dev_destroy(dev);
    errno = -ret;
    return NULL;
}
