/* virtio_mmio.c: the virtio-mmio version 2 transport: registers, feature negotiation, the status
 * machine, queue set-up, notifications (ioeventfd) and interrupts (irqfd). docs/virtio.md. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"
#include "virtio.h"

#define MMIO_MAGIC   0x74726976U /* "virt" */
#define MMIO_VERSION 2

/* Status bits the driver may set; NEEDS_RESET is the device's own. */
#define DRIVER_STATUS_BITS                                                                         \
    (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |          \
     VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FAILED)

static uint64_t offered(const struct virtio_dev *dev)
{
    return (dev->features | VIRTIO_TRANSPORT_FEATURES) &
           ~((1ULL << VIRTIO_F_ACCESS_PLATFORM) | dev->withheld);
}

/* KILN_VIRTIO_NO_EVENT_IDX=1 (any value but "" or "0"): offer no EVENT_IDX, so benchmarks can
 * compare both in one build. Read at attach, on the thread that builds the VM. */
static uint64_t withheld_features(void)
{
    const char *v = getenv("KILN_VIRTIO_NO_EVENT_IDX");

    return v && v[0] && strcmp(v, "0") ? 1ULL << VIRTIO_RING_F_EVENT_IDX : 0;
}

/* The driver-set fields of a queue back to their reset values. */
static void queue_clear(struct virtio_dev *dev, unsigned i)
{
    struct virtq *q = &dev->queues[i];

    virtq_reset(q);
    q->ready = false;
    q->size = dev->queue_max[i];
    q->desc_gpa = q->avail_gpa = q->used_gpa = 0;
    q->event_idx = q->indirect = false;
    q->mem = dev->mem;
}

static void device_reset(struct virtio_dev *dev)
{
    /* Status first, so the device's processing sees !virtio_dev_running() from here on. */
    atomic_store(&dev->status, 0);
    if (dev->ops->reset)
        dev->ops->reset(dev);
    for (unsigned i = 0; i < dev->nqueues; i++)
        queue_clear(dev, i);
    dev->acked = 0;
    dev->device_features_sel = dev->driver_features_sel = dev->queue_sel = 0;
    atomic_store(&dev->isr, 0);
    atomic_store(&dev->failed, false);
}

static void negotiate_features(struct virtio_dev *dev, uint32_t *status)
{
    uint64_t extra = dev->acked & ~offered(dev);

    if (!(dev->acked & (1ULL << VIRTIO_F_VERSION_1))) {
        log_warn("virtio-%s: the driver did not accept VIRTIO_F_VERSION_1 (a legacy driver?); "
                 "FEATURES_OK refused",
                 dev->name);
        *status &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
        return;
    }
    if (extra) {
        log_warn("virtio-%s: the driver accepted features %#llx that were not offered; "
                 "FEATURES_OK refused",
                 dev->name, (unsigned long long)extra);
        *status &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
        return;
    }
    if (dev->acked & (1ULL << VIRTIO_RING_F_EVENT_IDX))
        dev->stat_event_idx = true;
    for (unsigned i = 0; i < dev->nqueues; i++) {
        dev->queues[i].event_idx = dev->acked & (1ULL << VIRTIO_RING_F_EVENT_IDX);
        dev->queues[i].indirect = dev->acked & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
    }
}

static void write_status(struct virtio_dev *dev, uint32_t value)
{
    uint32_t old = atomic_load(&dev->status), now = old & DRIVER_STATUS_BITS;
    uint32_t want = value & DRIVER_STATUS_BITS, add = want & ~now;

    if (value == 0) {
        device_reset(dev);
        return;
    }
    if ((want & now) != now) {
        log_once(LOG_WARN, "virtio-%s: the driver cleared status bits %#x without a reset; ignored",
                 dev->name, now & ~want);
        return;
    }
    if (add & VIRTIO_CONFIG_S_FAILED) {
        log_info("virtio-%s: the driver gave up on the device (FAILED)", dev->name);
        atomic_fetch_or(&dev->status, VIRTIO_CONFIG_S_FAILED);
        return;
    }
    if (atomic_load(&dev->failed) || (now & VIRTIO_CONFIG_S_FAILED))
        return; /* only a reset gets out of these */
    if (((add & VIRTIO_CONFIG_S_DRIVER) && !(want & VIRTIO_CONFIG_S_ACKNOWLEDGE)) ||
        ((add & VIRTIO_CONFIG_S_FEATURES_OK) && !(want & VIRTIO_CONFIG_S_DRIVER)) ||
        ((add & VIRTIO_CONFIG_S_DRIVER_OK) && !(want & VIRTIO_CONFIG_S_FEATURES_OK))) {
        log_once(LOG_WARN, "virtio-%s: status %#x sets bits out of order (from %#x); ignored",
                 dev->name, value, now);
        return;
    }
    if (add & VIRTIO_CONFIG_S_FEATURES_OK) {
        negotiate_features(dev, &want);
        if (!(want & VIRTIO_CONFIG_S_FEATURES_OK))
            want &= ~(uint32_t)VIRTIO_CONFIG_S_DRIVER_OK;
    }
    atomic_fetch_or(&dev->status, want);
    if ((add & VIRTIO_CONFIG_S_DRIVER_OK) && (want & VIRTIO_CONFIG_S_DRIVER_OK) &&
        dev->ops->activate) {
        int ret = dev->ops->activate(dev);
        if (ret < 0)
            virtio_dev_fail(dev, "activation failed: %s", strerror(-ret));
    }
}

static void write_queue_ready(struct virtio_dev *dev, struct virtq *q, uint32_t value)
{
    unsigned i = dev->queue_sel;
    char why[160];

    if (!value) {
        if (virtio_dev_running(dev)) {
            log_once(LOG_WARN, "virtio-%s: queue disabled while the device runs; reset first",
                     dev->name);
            return;
        }
        virtq_reset(q);
        q->ready = false;
        return;
    }
    if (q->ready || atomic_load(&dev->failed))
        return;
    q->mem = dev->mem;
    q->event_idx = dev->acked & (1ULL << VIRTIO_RING_F_EVENT_IDX);
    q->indirect = dev->acked & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
    if (virtq_validate(q, dev->queue_max[i], why, sizeof(why)) < 0) {
        virtio_dev_fail(dev, "queue %u refused: %s", i, why);
        return;
    }
    virtq_reset(q);
    q->ready = true;
}

/* Sets the low or high half of a 64-bit queue address. */
static void set_half(uint64_t *addr, uint32_t value, bool high)
{
    *addr =
        high ? (*addr & 0xffffffffULL) | ((uint64_t)value << 32) : (*addr & ~0xffffffffULL) | value;
}

static void write_queue_reg(struct virtio_dev *dev, uint64_t offset, uint32_t value)
{
    struct virtq *q;

    if (dev->queue_sel >= dev->nqueues) {
        log_once(LOG_WARN, "virtio-%s: queue register %#llx written for absent queue %u", dev->name,
                 (unsigned long long)offset, dev->queue_sel);
        return;
    }
    q = &dev->queues[dev->queue_sel];
    if (offset == VIRTIO_MMIO_QUEUE_READY) {
        write_queue_ready(dev, q, value);
        return;
    }
    if (q->ready) {
        log_once(LOG_WARN, "virtio-%s: queue register %#llx written while the queue is ready",
                 dev->name, (unsigned long long)offset);
        return;
    }
    switch (offset) {
    case VIRTIO_MMIO_QUEUE_NUM:
        if (value > UINT16_MAX) {
            virtio_dev_fail(dev, "queue %u: QueueNum %u is larger than QueueNumMax %u",
                            dev->queue_sel, value, dev->queue_max[dev->queue_sel]);
            return;
        }
        q->size = (uint16_t)value;
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        set_half(&q->desc_gpa, value, offset == VIRTIO_MMIO_QUEUE_DESC_HIGH);
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        set_half(&q->avail_gpa, value, offset == VIRTIO_MMIO_QUEUE_AVAIL_HIGH);
        break;
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        set_half(&q->used_gpa, value, offset == VIRTIO_MMIO_QUEUE_USED_HIGH);
        break;
    }
}

static void notify_write(struct virtio_dev *dev, uint32_t value)
{
    uint64_t one = 1;

    /* With an ioeventfd KVM consumes matching writes itself; those that arrive here name no
     * queue of this device, unless there is no ioeventfd (a host without it, unit tests). */
    if (value >= dev->nqueues || !dev->notify_by_write || dev->notify_fd[value] < 0) {
        if (value >= dev->nqueues)
            log_once(LOG_WARN, "virtio-%s: notification for absent queue %u", dev->name, value);
        return;
    }
    if (write(dev->notify_fd[value], &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_once(LOG_ERROR, "virtio-%s: cannot signal queue %u", dev->name, value);
}

static void reg_write(struct virtio_dev *dev, uint64_t offset, uint32_t value)
{
    switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        dev->device_features_sel = value;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        dev->driver_features_sel = value;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES: {
        uint32_t status = atomic_load(&dev->status);
        unsigned shift = dev->driver_features_sel * 32;
        if (!(status & VIRTIO_CONFIG_S_DRIVER) || (status & VIRTIO_CONFIG_S_FEATURES_OK)) {
            log_once(LOG_WARN, "virtio-%s: DriverFeatures written in status %#x; ignored",
                     dev->name, status);
            break;
        }
        if (dev->driver_features_sel > 1)
            break; /* no features up there: nothing to accept */
        dev->acked = (dev->acked & ~(0xffffffffULL << shift)) | ((uint64_t)value << shift);
        break;
    }
    case VIRTIO_MMIO_QUEUE_SEL:
        dev->queue_sel = value;
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
    case VIRTIO_MMIO_QUEUE_READY:
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        write_queue_reg(dev, offset, value);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        notify_write(dev, value);
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        atomic_fetch_and(&dev->isr, ~value);
        break;
    case VIRTIO_MMIO_STATUS:
        write_status(dev, value);
        break;
    default:
        log_once(LOG_INFO, "virtio-%s: write to register %#llx ignored", dev->name,
                 (unsigned long long)offset);
        break;
    }
}

static uint32_t reg_read(struct virtio_dev *dev, uint64_t offset)
{
    switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        return MMIO_MAGIC;
    case VIRTIO_MMIO_VERSION:
        return MMIO_VERSION;
    case VIRTIO_MMIO_DEVICE_ID:
        return dev->device_id;
    case VIRTIO_MMIO_VENDOR_ID:
        return VIRTIO_KILN_VENDOR_ID;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        return dev->device_features_sel > 1
                   ? 0
                   : (uint32_t)(offered(dev) >> (32 * dev->device_features_sel));
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return dev->queue_sel < dev->nqueues ? dev->queue_max[dev->queue_sel] : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return dev->queue_sel < dev->nqueues && dev->queues[dev->queue_sel].ready;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return atomic_load(&dev->isr);
    case VIRTIO_MMIO_STATUS:
        return atomic_load(&dev->status);
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
    case VIRTIO_MMIO_SHM_BASE_LOW:
    case VIRTIO_MMIO_SHM_BASE_HIGH:
        return 0xffffffffU; /* no shared memory regions */
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return atomic_load(&dev->config_generation);
    default:
        return 0;
    }
}

void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct virtio_dev *dev = opaque;
    uint32_t value;

    if (!is_write)
        memset(data, 0, len);
    if (offset >= VIRTIO_MMIO_CONFIG) {
        uint32_t off = (uint32_t)(offset - VIRTIO_MMIO_CONFIG);
        if (!range_within(offset, len, X86_VIRTIO_MMIO_SIZE))
            return;
        pthread_mutex_lock(&dev->lock);
        if (is_write && dev->ops->config_write)
            dev->ops->config_write(dev, off, data, len);
        else if (!is_write && dev->ops->config_read)
            dev->ops->config_read(dev, off, data, len);
        pthread_mutex_unlock(&dev->lock);
        return;
    }
    if (len != 4 || (offset & 3)) {
        log_once(LOG_WARN, "virtio-%s: %u-byte %s at register %#llx ignored (registers are 32-bit)",
                 dev->name, len, is_write ? "write" : "read", (unsigned long long)offset);
        return;
    }
    pthread_mutex_lock(&dev->lock);
    if (is_write) {
        memcpy(&value, data, 4);
        reg_write(dev, offset, value);
    } else {
        value = reg_read(dev, offset);
        memcpy(data, &value, 4);
    }
    pthread_mutex_unlock(&dev->lock);
}

static void on_notify(void *opaque, uint32_t events)
{
    struct virtio_qctx *ctx = opaque;
    struct virtio_dev *dev = ctx->dev;
    uint64_t count;

    (void)events;
    if (read(dev->notify_fd[ctx->index], &count, sizeof(count)) != sizeof(count))
        return;
    atomic_fetch_add_explicit(&dev->stat_kicks[ctx->index], count, memory_order_relaxed);
    atomic_fetch_add_explicit(&dev->stat_wakeups[ctx->index], 1, memory_order_relaxed);
    if (virtio_dev_running(dev) && dev->ops->notify)
        dev->ops->notify(dev, ctx->index);
}

static int setup_irq(struct virtio_dev *dev)
{
    int ret;

    dev->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (dev->irq_fd < 0)
        return -errno;
    ret = dev->host->add_irqfd ? dev->host->add_irqfd(dev->host->opaque, dev->irq_fd, dev->gsi)
                               : -ENOSYS;
    if (ret < 0) {
        /* Interrupts then go through host->set_irq from whichever thread completes work. */
        log_info("virtio-%s: no irqfd (%s); interrupts through the VMM", dev->name, strerror(-ret));
        close(dev->irq_fd);
        dev->irq_fd = -1;
    }
    return 0;
}

static int setup_notify(struct virtio_dev *dev, unsigned i)
{
    const struct dev_host *host = dev->host;
    int ret;

    dev->notify_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (dev->notify_fd[i] < 0)
        return -errno;
    ret = host->add_ioeventfd ? host->add_ioeventfd(host->opaque, dev->notify_fd[i],
                                                    dev->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, i)
                              : -ENOSYS;
    if (ret < 0) {
        if (!dev->notify_by_write)
            log_info("virtio-%s: no ioeventfd (%s); notifications through the VMM", dev->name,
                     strerror(-ret));
        dev->notify_by_write = true;
    }
    dev->qctx[i] = (struct virtio_qctx){.dev = dev, .index = i};
    return 0;
}

int virtio_mmio_attach(struct virtio_dev *dev, const struct virtio_env *env, unsigned index,
                       uint64_t base, uint32_t gsi)
{
    int ret;

    if (!dev->ops || dev->nqueues < 1 || dev->nqueues > VIRTIO_MAX_QUEUES)
        return -EINVAL;
    dev->mem = env->mem;
    dev->loop = env->loop;
    dev->host = env->host;
    dev->index = index;
    dev->base = base;
    dev->gsi = gsi;
    dev->withheld = withheld_features();
    if (dev->withheld)
        log_info("virtio-%s: VIRTIO_F_RING_EVENT_IDX not offered (KILN_VIRTIO_NO_EVENT_IDX)",
                 dev->name);
    for (unsigned i = 0; i < dev->nqueues; i++)
        queue_clear(dev, i);
    ret = setup_irq(dev);
    for (unsigned i = 0; ret == 0 && i < dev->nqueues; i++)
        ret = setup_notify(dev, i);
    for (unsigned i = 0; ret == 0 && env->loop && i < dev->nqueues; i++) {
        ret = evloop_add(env->loop, dev->notify_fd[i], EPOLLIN, on_notify, &dev->qctx[i]);
        dev->watching = true;
    }
    if (ret == 0)
        ret = bus_register(env->bus, BUS_MMIO, base, X86_VIRTIO_MMIO_SIZE, virtio_mmio_io, dev,
                           dev->name);
    if (ret < 0)
        log_error("virtio-%s: cannot attach at %#llx (GSI %u): %s", dev->name,
                  (unsigned long long)base, gsi, strerror(-ret));
    else
        log_debug("virtio-%s: slot %u at %#llx, GSI %u", dev->name, index, (unsigned long long)base,
                  gsi);
    return ret;
}
