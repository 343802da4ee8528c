/* virtio_balloon.c: the memory balloon (virtio 1.2 section 5.5); docs/balloon.md says what it does.
 *
 * Inflated pages and the guest's free-page reports are given back to the host
 * (virtio_balloon_pages.c) by punching holes in guest RAM's memfd. Queue processing runs on the
 * event-loop thread under b->qlock, which reset() also takes so the transport never resets a queue
 * mid-pass. The config space, the target and the statistics are shared with vCPU threads and the
 * control plane under b->lock. Lock order: dev->lock, then b->qlock, then b->lock; processing never
 * takes dev->lock. */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <linux/virtio_ids.h>

#include "balloon.h"
#include "lib/lib.h"
#include "virtio.h"

/* From <linux/virtio_balloon.h>, which cannot be included: its struct virtio_balloon_config
 * (the config space) has the name of kiln's device configuration in virtio.h. */
#define VIRTIO_BALLOON_F_STATS_VQ       1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_REPORTING      5
#define VIRTIO_BALLOON_S_MEMFREE        4
#define VIRTIO_BALLOON_S_MEMTOT         5
#define VIRTIO_BALLOON_S_AVAIL          6

struct balloon_config_space {
    uint32_t num_pages; /* OUT: the target, in 4 KiB pages (little-endian) */
    uint32_t actual;    /* IN: pages the driver holds */
    uint32_t free_page_hint_cmd_id, poison_val; /* features kiln does not offer */
};

struct virtio_balloon_stat {
    uint16_t tag;
    uint64_t val;
} __attribute__((packed));

#define BALLOON_QUEUE_MAX 256
#define STATS_MAX         64 /* entries parsed per stats buffer (Linux 6.1 sends at most 10) */
#define STATS_PERIOD_MAX  86400U
#define STAT_ENTRY_SIZE   sizeof(struct virtio_balloon_stat)

_Static_assert(STAT_ENTRY_SIZE == 10, "the stats entry is packed: u16 tag, u64 value");
_Static_assert(sizeof(struct balloon_config_space) == 16, "config space layout");

/* What a queue index means: virtqueues are numbered by presence (virtio 1.2 5.5.2; Linux's
 * init_vqs skips absent ones), so the index of the reporting queue depends on STATS_VQ. */
enum role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORTING };

static enum role role_of(const struct virtio_dev *dev, unsigned index)
{
    enum role order[VIRTIO_MAX_QUEUES];
    unsigned n = 0;

    order[n++] = ROLE_INFLATE;
    order[n++] = ROLE_DEFLATE;
    if (dev->acked & (1ULL << VIRTIO_BALLOON_F_STATS_VQ))
        order[n++] = ROLE_STATS;
    /* FREE_PAGE_HINT is never offered, so its queue never takes an index. */
    if (dev->acked & (1ULL << VIRTIO_BALLOON_F_REPORTING))
        order[n++] = ROLE_REPORTING;
    return index < n && index < dev->nqueues ? order[index] : ROLE_NONE;
}

static int queue_of(const struct virtio_dev *dev, enum role role)
{
    for (unsigned i = 0; i < dev->nqueues; i++)
        if (role_of(dev, i) == role)
            return (int)i;
    return -1;
}

/* Stats: the driver lends one buffer of (u16 tag, u64 value) entries. We keep the values and
 * the buffer; giving the buffer back (stats_request) asks for a fresh one. Returns 1: held. */
static int handle_stats(struct balloon *b, const struct virtq_chain *c)
{
    struct virtio_balloon_stat st[STATS_MAX];
    size_t n;
    int q = queue_of(b->dev, ROLE_STATS);
    bool old_held;
    uint16_t old_head;

    if (c->rd_len % STAT_ENTRY_SIZE) {
        virtio_dev_fail(b->dev,
                        "stats: a %llu-byte buffer is not a whole number of %zu-byte "
                        "entries",
                        (unsigned long long)c->rd_len, STAT_ENTRY_SIZE);
        return -EINVAL;
    }
    n = iov_copy_from(c->rd, c->nrd, 0, st, sizeof(st)) / STAT_ENTRY_SIZE;

    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < n; i++) {
        uint64_t val = le64toh(st[i].val);
        switch (le16toh(st[i].tag)) {
        case VIRTIO_BALLOON_S_MEMFREE:
            b->mem_free = val;
            break;
        case VIRTIO_BALLOON_S_MEMTOT:
            b->mem_total = val;
            break;
        case VIRTIO_BALLOON_S_AVAIL:
            b->mem_available = val;
            break;
        default:
            break; /* swap, faults, caches: not reported yet */
        }
    }
    /* The first sample only (a guest could send buffers in a loop): enough to check by eye. */
    if (!b->stats_ns)
        log_debug("virtio-balloon: guest memory: %llu MiB total, %llu MiB free, %llu MiB "
                  "available",
                  (unsigned long long)(b->mem_total / MiB), (unsigned long long)(b->mem_free / MiB),
                  (unsigned long long)(b->mem_available / MiB));
    b->stats_ns = time_now_ns();
    old_held = b->stats_held;
    old_head = b->stats_head;
    b->stats_held = true;
    b->stats_head = c->head;
    /* A second buffer while we hold one breaks the protocol mildly: return the older one (as
     * QEMU does) so the driver does not leak it. */
    if (old_held && q >= 0)
        virtq_push(&b->dev->queues[q], old_head, 0);
    pthread_mutex_unlock(&b->lock);
    if (old_held && q >= 0)
        virtio_dev_notify_used(b->dev, (unsigned)q);
    return 1;
}

/* Takes every available chain of queue `index` and hands it to its role's handler. */
static void process(struct balloon *b, unsigned index)
{
    struct virtio_dev *dev = b->dev;
    struct virtq *q = &dev->queues[index];
    enum role role = role_of(dev, index);
    char why[128];
    bool pushed = false;

    if (role == ROLE_NONE)
        return;
    pthread_mutex_lock(&b->qlock);
    while (q->ready && virtio_dev_running(dev)) {
        int ret = virtq_pop(q, &b->chain, why, sizeof(why));
        if (ret < 0) {
            virtio_dev_fail(dev, "queue %u: %s", index, why);
            break;
        }
        if (ret == 0)
            break;
        switch (role) {
        case ROLE_INFLATE:
            ret = balloon_inflate(b, &b->chain);
            break;
        case ROLE_DEFLATE:
            ret = balloon_deflate(b, &b->chain);
            break;
        case ROLE_REPORTING:
            ret = balloon_report(b, &b->chain);
            break;
        case ROLE_STATS:
            ret = handle_stats(b, &b->chain);
            break;
        default:
            ret = -EINVAL;
            break;
        }
        if (ret < 0)
            break; /* the device failed */
        if (ret == 0) {
            virtq_push(q, b->chain.head, 0);
            pushed = true;
        }
    }
    if (pushed)
        virtio_dev_notify_used(dev, index);
    pthread_mutex_unlock(&b->qlock);
}

static void process_all(struct balloon *b)
{
    for (unsigned i = 0; i < b->dev->nqueues; i++)
        process(b, i);
}

static void notify(struct virtio_dev *dev, unsigned index)
{
    if (index < dev->nqueues)
        process(dev->priv, index);
}

/* The period elapsed: hand the stats buffer back, which makes the driver refill and resend it. */
static void on_stats_timer(void *opaque, uint32_t events)
{
    struct balloon *b = opaque;
    uint64_t ticks;
    int q = queue_of(b->dev, ROLE_STATS);
    bool pushed = false;

    (void)events;
    if (read(b->timer_fd, &ticks, sizeof(ticks)) < 0)
        return;
    pthread_mutex_lock(&b->qlock);
    pthread_mutex_lock(&b->lock);
    if (b->stats_held && q >= 0 && virtio_dev_running(b->dev)) {
        virtq_push(&b->dev->queues[q], b->stats_head, 0);
        b->stats_held = false;
        pushed = true;
    }
    pthread_mutex_unlock(&b->lock);
    if (pushed)
        virtio_dev_notify_used(b->dev, (unsigned)q);
    pthread_mutex_unlock(&b->qlock);
}

static void on_kick(void *opaque, uint32_t events)
{
    struct balloon *b = opaque;
    uint64_t n;

    (void)events;
    if (read(b->kick_fd, &n, sizeof(n)) < 0)
        return;
    process_all(b);
}

static void config_read(struct virtio_dev *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct balloon *b = dev->priv;
    struct balloon_config_space cfg = {0};

    pthread_mutex_lock(&b->lock);
    cfg.num_pages = htole32(b->target);
    cfg.actual = htole32(b->actual);
    pthread_mutex_unlock(&b->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t at = (uint64_t)offset + i;
        data[i] = at < sizeof(cfg) ? ((const uint8_t *)&cfg)[at] : 0;
    }
}

/* Only `actual` is the driver's to write; everything else is read-only. */
static void config_write(struct virtio_dev *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
    struct balloon *b = dev->priv;
    const uint64_t lo = offsetof(struct balloon_config_space, actual), hi = lo + sizeof(uint32_t);
    uint32_t actual;
    uint8_t *bytes = (uint8_t *)&actual;

    pthread_mutex_lock(&b->lock);
    actual = htole32(b->actual);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t at = (uint64_t)offset + i;
        if (at >= lo && at < hi)
            bytes[at - lo] = data[i];
    }
    b->actual = le32toh(actual);
    /* Once per target the host sets (the guest cannot make this repeat): say it is reached. */
    if (b->actual == b->target && b->announced != b->target) {
        b->announced = b->target;
        log_info("virtio-balloon: the guest's balloon holds %llu MiB, the target",
                 (unsigned long long)(b->target * BALLOON_PAGE / MiB));
    }
    pthread_mutex_unlock(&b->lock);
}

static int activate(struct virtio_dev *dev)
{
    struct balloon *b = dev->priv;
    uint64_t one = 1;

    /* The driver kicks the stats queue before DRIVER_OK (Linux primes it in init_vqs); that
     * notification found the device not running. Look at every queue once, from the loop. */
    if (b->kick_fd >= 0) {
        if (write(b->kick_fd, &one, sizeof(one)) < 0)
            log_once(LOG_WARN, "virtio-balloon: cannot wake the event loop");
    } else {
        process_all(b);
    }
    return 0;
}

static void reset(struct virtio_dev *dev)
{
    struct balloon *b = dev->priv;

    /* Status already reads 0: once any pass in progress ends, none starts until DRIVER_OK. */
    pthread_mutex_lock(&b->qlock);
    pthread_mutex_lock(&b->lock);
    b->stats_held = false; /* the buffer belonged to the old session's rings */
    b->actual = 0;
    pthread_mutex_unlock(&b->lock);
    pthread_mutex_unlock(&b->qlock);
}

static void destroy(struct virtio_dev *dev)
{
    struct balloon *b = dev->priv;

    if (!b)
        return;
    log_debug("virtio-balloon: %llu pages inflated, %llu deflated, %llu MiB reported free, %llu "
              "bad pages skipped",
              (unsigned long long)b->inflated, (unsigned long long)b->deflated,
              (unsigned long long)(b->reported_bytes / MiB), (unsigned long long)b->skipped);
    if (b->timer_fd >= 0) {
        evloop_del(b->loop, b->timer_fd);
        close(b->timer_fd);
    }
    if (b->kick_fd >= 0) {
        evloop_del(b->loop, b->kick_fd);
        close(b->kick_fd);
    }
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->qlock);
    free(b);
    dev->priv = NULL;
}

static const struct virtio_dev_ops balloon_ops = {
    .config_read = config_read,
    .config_write = config_write,
    .activate = activate,
    .reset = reset,
    .notify = notify,
    .destroy = destroy,
};

static int start_timer(struct balloon *b)
{
    struct itimerspec its = {
        .it_interval = {.tv_sec = (time_t)b->stats_period_s},
        .it_value = {.tv_sec = (time_t)b->stats_period_s},
    };

    b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (b->timer_fd < 0)
        return -errno;
    if (timerfd_settime(b->timer_fd, 0, &its, NULL) < 0)
        return -errno;
    return evloop_add(b->loop, b->timer_fd, EPOLLIN, on_stats_timer, b);
}

struct virtio_dev *virtio_balloon_create(const struct virtio_env *env,
                                         const struct virtio_balloon_config *cfg, char *err,
                                         size_t errlen)
{
    uint64_t ram_pages = env->mem->size / BALLOON_PAGE;
    struct virtio_dev *dev;
    struct balloon *b;
    int ret;

    if (cfg->target_pages > ram_pages) {
        snprintf(err, errlen,
                 "balloon size %llu MiB is larger than guest RAM (%llu MiB); give at most the "
                 "RAM size",
                 (unsigned long long)(cfg->target_pages * BALLOON_PAGE / MiB),
                 (unsigned long long)(env->mem->size / MiB));
        errno = EINVAL;
        return NULL;
    }
    if (cfg->stats_period_s > STATS_PERIOD_MAX) {
        snprintf(err, errlen, "balloon statistics period %u s is out of range (0..%u)",
                 cfg->stats_period_s, STATS_PERIOD_MAX);
        errno = EINVAL;
        return NULL;
    }
    dev = virtio_dev_alloc();
    b = calloc(1, sizeof(*b));
    if (!dev || !b) {
        ret = -ENOMEM;
        goto fail_alloc;
    }
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->qlock, NULL);
    b->dev = dev;
    b->mem = env->mem;
    b->loop = env->loop;
    b->stats_period_s = cfg->stats_period_s;
    b->target = (uint32_t)cfg->target_pages;
    b->timer_fd = -1;
    b->kick_fd = -1;
    b->announced = 0; /* an empty balloon needs no announcement */

    dev->ops = &balloon_ops;
    dev->name = "balloon";
    dev->device_id = VIRTIO_ID_BALLOON;
    dev->features = (1ULL << VIRTIO_BALLOON_F_STATS_VQ) | (1ULL << VIRTIO_BALLOON_F_REPORTING);
    if (cfg->deflate_on_oom)
        dev->features |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
    dev->nqueues = 4; /* inflate, deflate, stats, reporting */
    for (unsigned i = 0; i < dev->nqueues; i++)
        dev->queue_max[i] = BALLOON_QUEUE_MAX;
    dev->priv = b;

    if (b->loop) {
        b->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (b->kick_fd < 0) {
            ret = -errno;
            goto fail_setup;
        }
        ret = evloop_add(b->loop, b->kick_fd, EPOLLIN, on_kick, b);
        if (ret < 0) {
            close(b->kick_fd);
            b->kick_fd = -1;
            goto fail_setup;
        }
        if (b->stats_period_s) {
            ret = start_timer(b);
            if (ret < 0) {
                if (b->timer_fd >= 0)
                    close(b->timer_fd);
                b->timer_fd = -1;
                goto fail_setup;
            }
        }
    }
    return dev;

fail_setup:
    virtio_dev_destroy(dev); /* calls destroy(), which frees b */
    snprintf(err, errlen, "balloon: cannot set up its event-loop sources: %s", strerror(-ret));
    errno = -ret;
    return NULL;
fail_alloc:
    free(b);
    virtio_dev_destroy(dev);
    snprintf(err, errlen, "balloon: out of memory");
    errno = ENOMEM;
    return NULL;
}

int virtio_balloon_set_target(struct virtio_dev *dev, uint64_t pages)
{
    struct balloon *b = dev->priv;

    if (pages > b->mem->size / BALLOON_PAGE)
        return -EINVAL;
    pthread_mutex_lock(&b->lock);
    b->target = (uint32_t)pages;
    pthread_mutex_unlock(&b->lock);
    virtio_dev_config_changed(dev);
    return 0;
}

void virtio_balloon_get_stats(struct virtio_dev *dev, struct virtio_balloon_stats *out)
{
    struct balloon *b = dev->priv;

    pthread_mutex_lock(&b->lock);
    *out = (struct virtio_balloon_stats){
        .target_pages = b->target,
        .actual_pages = b->actual,
        .mem_free = b->mem_free,
        .mem_total = b->mem_total,
        .mem_available = b->mem_available,
        .stats_ns = b->stats_ns,
    };
    pthread_mutex_unlock(&b->lock);
}
