/* virtio_dev.c: what every virtio device shares: allocation, interrupts, failure, teardown. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "lib/lib.h"
#include "virtio.h"

/* A guest that fails its device, resets it and fails it again must not flood the log. */
#define FAIL_LOG_MAX 8

struct virtio_dev *virtio_dev_alloc(void)
{
    struct virtio_dev *dev = calloc(1, sizeof(*dev));

    if (!dev)
        return NULL;
    pthread_mutex_init(&dev->lock, NULL);
    dev->irq_fd = -1;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        dev->notify_fd[i] = -1;
    return dev;
}

/* The transport's counters at -v, for benchmarks (docs/virtio.md): a device that never ran
 * (no kicks, no interrupts) says nothing. */
static void log_stats(const struct virtio_dev *dev)
{
    char q[160];
    size_t len = 0;
    uint64_t any = atomic_load(&dev->stat_irqs) + atomic_load(&dev->stat_irqs_suppressed);

    q[0] = '\0';
    for (unsigned i = 0; i < dev->nqueues && i < VIRTIO_MAX_QUEUES; i++) {
        uint64_t k = atomic_load(&dev->stat_kicks[i]), w = atomic_load(&dev->stat_wakeups[i]);
        int n = snprintf(q + len, sizeof(q) - len, " q%u=%llu/%llu", i, (unsigned long long)k,
                         (unsigned long long)w);
        if (n > 0 && (size_t)n < sizeof(q) - len)
            len += (size_t)n;
        any += k;
    }
    if (!any)
        return;
    log_info("virtio-%s: stats event_idx=%d kicks/wakeups%s irqs=%llu suppressed=%llu", dev->name,
             dev->stat_event_idx, q, (unsigned long long)atomic_load(&dev->stat_irqs),
             (unsigned long long)atomic_load(&dev->stat_irqs_suppressed));
}

void virtio_dev_log_state(const struct virtio_dev *dev)
{
    char q[200];

    log_warn("virtio-%s: status=%#x isr=%#x failed=%d irqs=%llu suppressed=%llu", dev->name,
             (unsigned)atomic_load(&dev->status), (unsigned)atomic_load(&dev->isr),
             (int)atomic_load(&dev->failed), (unsigned long long)atomic_load(&dev->stat_irqs),
             (unsigned long long)atomic_load(&dev->stat_irqs_suppressed));
    for (unsigned i = 0; i < dev->nqueues && i < VIRTIO_MAX_QUEUES; i++) {
        if (!dev->queues[i].ready)
            continue;
        virtq_describe(&dev->queues[i], q, sizeof(q));
        log_warn("virtio-%s: q%u %s kicks=%llu", dev->name, i, q,
                 (unsigned long long)atomic_load(&dev->stat_kicks[i]));
    }
}

void virtio_dev_destroy(struct virtio_dev *dev)
{
    if (!dev)
        return;
    log_stats(dev);
    /* The device first: its workers may still signal the irqfd until they are joined. */
    if (dev->ops && dev->ops->destroy)
        dev->ops->destroy(dev);
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        if (dev->notify_fd[i] < 0)
            continue;
        if (dev->watching && dev->loop)
            evloop_del(dev->loop, dev->notify_fd[i]);
        close(dev->notify_fd[i]);
    }
    if (dev->irq_fd >= 0)
        close(dev->irq_fd);
    pthread_mutex_destroy(&dev->lock);
    free(dev);
}

/* Raises the device's interrupt line: through the irqfd (inside KVM, no exit), else a pulse on
 * the edge-triggered GSI. */
static void raise_irq(struct virtio_dev *dev)
{
    uint64_t one = 1;

    atomic_fetch_add_explicit(&dev->stat_irqs, 1, memory_order_relaxed);
    if (dev->irq_fd >= 0) {
        /* EAGAIN means the counter is saturated: an interrupt is pending anyway. */
        if (write(dev->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_once(LOG_ERROR, "virtio-%s: cannot signal the irqfd", dev->name);
        return;
    }
    if (dev->host && dev->host->set_irq) {
        dev->host->set_irq(dev->host->opaque, dev->gsi, true);
        dev->host->set_irq(dev->host->opaque, dev->gsi, false);
    }
}

/* True if queue q's driver wants an interrupt for what was pushed since the last check. */
static bool wants_interrupt(struct virtio_dev *dev, unsigned q)
{
    struct virtq *vq = &dev->queues[q];
    bool pushed = vq->used_idx != vq->signalled_used;

    if (virtq_should_interrupt(vq))
        return true;
    if (pushed)
        atomic_fetch_add_explicit(&dev->stat_irqs_suppressed, 1, memory_order_relaxed);
    return false;
}

void virtio_dev_notify_used_mask(struct virtio_dev *dev, unsigned mask)
{
    bool any = false;

    for (unsigned q = 0; q < dev->nqueues; q++)
        if (mask & (1u << q))
            any |= wants_interrupt(dev, q);
    if (!any)
        return;
    atomic_fetch_or(&dev->isr, VIRTIO_MMIO_INT_VRING);
    raise_irq(dev);
}

void virtio_dev_notify_used(struct virtio_dev *dev, unsigned q)
{
    if (q < dev->nqueues)
        virtio_dev_notify_used_mask(dev, 1u << q);
}

void virtio_dev_config_changed(struct virtio_dev *dev)
{
    atomic_fetch_add(&dev->config_generation, 1);
    atomic_fetch_or(&dev->isr, VIRTIO_MMIO_INT_CONFIG);
    raise_irq(dev);
}

void virtio_dev_fail(struct virtio_dev *dev, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    unsigned n;

    /* Only the first failure of a session counts; the driver must reset to get out of it. */
    if (atomic_exchange(&dev->failed, true))
        return;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    n = atomic_fetch_add(&dev->nfailures, 1);
    if (n < FAIL_LOG_MAX)
        log_warn("virtio-%s: %s; device needs reset", dev->name, reason);
    else if (n == FAIL_LOG_MAX)
        log_warn("virtio-%s: %s; device needs reset (further failures of this device are not "
                 "logged)",
                 dev->name, reason);
    atomic_fetch_or(&dev->status, VIRTIO_CONFIG_S_NEEDS_RESET);
    virtio_dev_config_changed(dev);
}

bool virtio_dev_running(const struct virtio_dev *dev)
{
    uint32_t status = atomic_load(&dev->status);

    return (status & VIRTIO_CONFIG_S_DRIVER_OK) && !(status & VIRTIO_CONFIG_S_FAILED) &&
           !atomic_load(&dev->failed);
}
