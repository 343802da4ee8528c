/* virtio_rng.c: the entropy device: fills each buffer the guest offers from getrandom(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <linux/virtio_ids.h>

#include "lib/lib.h"
#include "virtio.h"

#define RNG_QUEUE_SIZE 64
/* Bytes given per request at most: Linux asks for 64 at a time; a guest offering a huge buffer
 * does not get to keep the event loop busy filling it. */
#define RNG_MAX_REQUEST (64 * KiB)

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004
#endif

struct rng {
    pthread_mutex_t lock; /* one processing pass at a time; reset waits for it */
    struct virtq_chain chain;
};

/* Fills buf from the host's random pool without ever blocking the event loop: the pool is
 * ready on any host that has been up for a moment; if not, the kernel's best effort. */
static size_t fill(void *buf, size_t len)
{
    ssize_t n = getrandom(buf, len, GRND_NONBLOCK);

    if (n < 0 && errno == EAGAIN)
        n = getrandom(buf, len, GRND_INSECURE);
    if (n < 0) {
        log_once(LOG_WARN, "virtio-rng: getrandom failed: %s", strerror(errno));
        return 0;
    }
    return (size_t)n;
}

static uint32_t serve(struct virtq_chain *c)
{
    size_t total = 0;

    for (unsigned i = 0; i < c->nwr && total < RNG_MAX_REQUEST; i++) {
        size_t want = c->wr[i].iov_len, got;
        if (want > RNG_MAX_REQUEST - total)
            want = RNG_MAX_REQUEST - total;
        got = fill(c->wr[i].iov_base, want);
        total += got;
        if (got < want)
            break;
    }
    return (uint32_t)total;
}

static void rng_notify(struct virtio_dev *dev, unsigned index)
{
    struct rng *rng = dev->priv;
    struct virtq *q = &dev->queues[0];
    char why[160];
    bool pushed = false;
    int ret;

    if (index != 0)
        return;
    pthread_mutex_lock(&rng->lock);
    while (virtio_dev_running(dev) && q->ready) {
        ret = virtq_pop(q, &rng->chain, why, sizeof(why));
        if (ret < 0)
            virtio_dev_fail(dev, "%s", why);
        if (ret <= 0)
            break;
        virtq_push(q, rng->chain.head, serve(&rng->chain));
        pushed = true;
    }
    if (pushed)
        virtio_dev_notify_used(dev, 0);
    pthread_mutex_unlock(&rng->lock);
}

static int rng_activate(struct virtio_dev *dev)
{
    (void)dev;
    return 0;
}

static void rng_reset(struct virtio_dev *dev)
{
    struct rng *rng = dev->priv;

    /* Waits out a pass in progress; the next one sees the device stopped. */
    pthread_mutex_lock(&rng->lock);
    pthread_mutex_unlock(&rng->lock);
}

static void rng_destroy(struct virtio_dev *dev)
{
    struct rng *rng = dev->priv;

    pthread_mutex_destroy(&rng->lock);
    free(rng);
}

static const struct virtio_dev_ops rng_ops = {
    .activate = rng_activate,
    .reset = rng_reset,
    .notify = rng_notify,
    .destroy = rng_destroy,
};

struct virtio_dev *virtio_rng_create(const struct virtio_env *env, char *err, size_t errlen)
{
    struct virtio_dev *dev = virtio_dev_alloc();
    struct rng *rng = calloc(1, sizeof(*rng));

    (void)env;
    if (!dev || !rng) {
        snprintf(err, errlen, "virtio-rng: out of memory");
        free(rng);
        virtio_dev_destroy(dev);
        return NULL;
    }
    pthread_mutex_init(&rng->lock, NULL);
    dev->ops = &rng_ops;
    dev->name = "rng";
    dev->device_id = VIRTIO_ID_RNG;
    dev->nqueues = 1;
    dev->queue_max[0] = RNG_QUEUE_SIZE;
    dev->priv = rng;
    return dev;
}
