/* test_virtio_mmio.c: the virtio-mmio transport against a fake device, host and memory arena. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "arch/x86/x86.h"
#include "devices/virtio/virtio.h"
#include "lib/lib.h"

#define ARENA_SIZE (1 * MiB)
#define BASE       0xd0000000ULL
#define GSI        5
#define DESC       0x1000
#define AVAIL      0x2000
#define USED       0x3000

/* ---- fakes ---------------------------------------------------------------------------------- */
struct fake_host {
    bool ioeventfd_ok, irqfd_ok;
    unsigned irq_raises, irq_lowers;
    unsigned ioeventfds, irqfds;
    uint64_t ioeventfd_addr[VIRTIO_MAX_QUEUES], ioeventfd_match[VIRTIO_MAX_QUEUES];
};

static void host_set_irq(void *opaque, uint32_t gsi, bool level)
{
    struct fake_host *h = opaque;

    assert_int_equal(gsi, GSI);
    if (level)
        h->irq_raises++;
    else
        h->irq_lowers++;
}

static int host_add_ioeventfd(void *opaque, int fd, uint64_t addr, uint32_t len, uint64_t match)
{
    struct fake_host *h = opaque;

    assert_true(fd >= 0);
    assert_int_equal(len, 4);
    if (!h->ioeventfd_ok)
        return -ENOSYS;
    h->ioeventfd_addr[h->ioeventfds] = addr;
    h->ioeventfd_match[h->ioeventfds++] = match;
    return 0;
}

static int host_add_irqfd(void *opaque, int fd, uint32_t gsi)
{
    struct fake_host *h = opaque;

    assert_true(fd >= 0);
    assert_int_equal(gsi, GSI);
    if (!h->irqfd_ok)
        return -ENOSYS;
    h->irqfds++;
    return 0;
}

struct fake_dev {
    unsigned activates, resets, notifies, destroys;
    int activate_ret;
    uint32_t cfg_off, cfg_len;
    uint8_t cfg_written[8];
    struct evloop *stop_on_notify;
};

static void fd_config_read(struct virtio_dev *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
    (void)dev;
    for (uint32_t i = 0; i < len; i++)
        data[i] = (uint8_t)(0xa0 + offset + i);
}

static void fd_config_write(struct virtio_dev *dev, uint32_t offset, const uint8_t *data,
                            uint32_t len)
{
    struct fake_dev *f = dev->priv;

    f->cfg_off = offset;
    f->cfg_len = len;
    memcpy(f->cfg_written, data, len < 8 ? len : 8);
}

static int fd_activate(struct virtio_dev *dev)
{
    struct fake_dev *f = dev->priv;

    f->activates++;
    return f->activate_ret;
}

static void fd_reset(struct virtio_dev *dev)
{
    struct fake_dev *f = dev->priv;

    /* The contract: Status already reads 0 when the device is told. */
    assert_int_equal(dev->status, 0);
    f->resets++;
}

static void fd_notify(struct virtio_dev *dev, unsigned index)
{
    struct fake_dev *f = dev->priv;

    assert_int_equal(index, 1);
    f->notifies++;
}

static void fd_destroy(struct virtio_dev *dev)
{
    struct fake_dev *f = dev->priv;

    f->destroys++;
}

static const struct virtio_dev_ops fake_ops = {
    .config_read = fd_config_read,
    .config_write = fd_config_write,
    .activate = fd_activate,
    .reset = fd_reset,
    .notify = fd_notify,
    .destroy = fd_destroy,
};

/* ---- fixture -------------------------------------------------------------------------------- */
struct fx {
    struct guest_mem mem;
    struct bus bus;
    struct evloop *loop;
    struct fake_host fh;
    struct dev_host host;
    struct fake_dev fd;
    struct virtio_dev *dev;
};

static struct fx *make(bool ioeventfd_ok, bool irqfd_ok)
{
    struct fx *x = calloc(1, sizeof(*x));
    struct virtio_env env;

    assert_non_null(x);
    x->mem.fd = -1;
    x->mem.size = ARENA_SIZE;
    x->mem.nregions = 1;
    x->mem.map = aligned_alloc(4096, ARENA_SIZE);
    assert_non_null(x->mem.map);
    memset(x->mem.map, 0, ARENA_SIZE);
    x->mem.regions[0] = (struct guest_region){.gpa = 0, .size = ARENA_SIZE, .hva = x->mem.map};
    bus_init(&x->bus);
    x->loop = evloop_create();
    assert_non_null(x->loop);
    x->fh.ioeventfd_ok = ioeventfd_ok;
    x->fh.irqfd_ok = irqfd_ok;
    x->host = (struct dev_host){.set_irq = host_set_irq,
                                .add_ioeventfd = host_add_ioeventfd,
                                .add_irqfd = host_add_irqfd,
                                .opaque = &x->fh};
    x->dev = virtio_dev_alloc();
    assert_non_null(x->dev);
    x->dev->ops = &fake_ops;
    x->dev->name = "fake";
    x->dev->device_id = 42;
    x->dev->features = 1ULL << 5 | 1ULL << VIRTIO_F_ACCESS_PLATFORM;
    x->dev->nqueues = 2;
    x->dev->queue_max[0] = 8;
    x->dev->queue_max[1] = 16;
    x->dev->priv = &x->fd;
    env = (struct virtio_env){.bus = &x->bus, .loop = x->loop, .mem = &x->mem, .host = &x->host};
    assert_int_equal(virtio_mmio_attach(x->dev, &env, 0, BASE, GSI), 0);
    return x;
}

static void unmake(struct fx *x)
{
    virtio_dev_destroy(x->dev);
    assert_int_equal(x->fd.destroys, 1);
    evloop_destroy(x->loop);
    bus_destroy(&x->bus);
    free(x->mem.map);
    free(x);
}

static uint32_t rd(struct fx *x, uint64_t off)
{
    uint8_t b[4];
    uint32_t v;

    virtio_mmio_io(x->dev, off, b, 4, false);
    memcpy(&v, b, 4);
    return v;
}

static void wr(struct fx *x, uint64_t off, uint32_t v)
{
    uint8_t b[4];

    memcpy(b, &v, 4);
    virtio_mmio_io(x->dev, off, b, 4, true);
}

static void set_features(struct fx *x, uint64_t f)
{
    wr(x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(x, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
    wr(x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(x, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
}

/* ACKNOWLEDGE, DRIVER, features, FEATURES_OK. Returns the status read back. */
static uint32_t negotiate(struct fx *x, uint64_t features)
{
    wr(x, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(x, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    set_features(x, features);
    wr(x, VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    return rd(x, VIRTIO_MMIO_STATUS);
}

static void setup_queue(struct fx *x, unsigned q, uint32_t num, uint64_t desc, uint64_t avail,
                        uint64_t used)
{
    wr(x, VIRTIO_MMIO_QUEUE_SEL, q);
    wr(x, VIRTIO_MMIO_QUEUE_NUM, num);
    wr(x, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    wr(x, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    wr(x, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
    wr(x, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
    wr(x, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
    wr(x, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
    wr(x, VIRTIO_MMIO_QUEUE_READY, 1);
}

#define V1 (1ULL << VIRTIO_F_VERSION_1)
#define ALLOK                                                                                      \
    (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |          \
     VIRTIO_CONFIG_S_DRIVER_OK)

/* A device brought up to DRIVER_OK with queue 1 ready. */
static void bring_up(struct fx *x, uint64_t features)
{
    assert_true(negotiate(x, features) & VIRTIO_CONFIG_S_FEATURES_OK);
    setup_queue(x, 1, 16, DESC, AVAIL, USED);
    wr(x, VIRTIO_MMIO_STATUS, ALLOK);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), ALLOK);
    assert_true(virtio_dev_running(x->dev));
}

/* ---- tests ---------------------------------------------------------------------------------- */
static void test_identity(void **state)
{
    struct fx *x = make(true, true);

    (void)state;
    assert_int_equal(rd(x, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976); /* "virt" */
    assert_int_equal(rd(x, VIRTIO_MMIO_VERSION), 2);
    assert_int_equal(rd(x, VIRTIO_MMIO_DEVICE_ID), 42);
    assert_int_equal(rd(x, VIRTIO_MMIO_VENDOR_ID), VIRTIO_KILN_VENDOR_ID);
    wr(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_int_equal(rd(x, VIRTIO_MMIO_DEVICE_FEATURES),
                     1U << 5 | 1U << VIRTIO_RING_F_EVENT_IDX | 1U << VIRTIO_RING_F_INDIRECT_DESC);
    wr(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    /* VERSION_1 (bit 32) offered; ACCESS_PLATFORM (bit 33) never, even if the device asks. */
    assert_int_equal(rd(x, VIRTIO_MMIO_DEVICE_FEATURES), 1);
    wr(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    assert_int_equal(rd(x, VIRTIO_MMIO_DEVICE_FEATURES), 0);
    wr(x, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_int_equal(rd(x, VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
    wr(x, VIRTIO_MMIO_QUEUE_SEL, 2);
    assert_int_equal(rd(x, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    assert_int_equal(rd(x, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffffU);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), 0);
    assert_int_equal(rd(x, 0x0f0), 0); /* reserved */
    /* Registered on the bus, one ioeventfd per queue at QueueNotify matching its index. */
    assert_non_null(bus_find(&x->bus, BUS_MMIO, BASE + 0xfff));
    assert_int_equal(x->fh.ioeventfds, 2);
    assert_int_equal(x->fh.ioeventfd_addr[1], BASE + VIRTIO_MMIO_QUEUE_NOTIFY);
    assert_int_equal(x->fh.ioeventfd_match[1], 1);
    assert_int_equal(x->fh.irqfds, 1);
    unmake(x);
}

static void test_negotiation(void **state)
{
    struct fx *x = make(true, true);

    (void)state;
    /* A driver that does not take VERSION_1 (legacy) gets FEATURES_OK refused. */
    assert_false(negotiate(x, 1ULL << 5) & VIRTIO_CONFIG_S_FEATURES_OK);
    wr(x, VIRTIO_MMIO_STATUS, 0);
    /* Features that were never offered: refused too. */
    assert_false(negotiate(x, V1 | 1ULL << 7) & VIRTIO_CONFIG_S_FEATURES_OK);
    assert_false(negotiate(x, V1 | 1ULL << VIRTIO_F_ACCESS_PLATFORM) & VIRTIO_CONFIG_S_FEATURES_OK);
    wr(x, VIRTIO_MMIO_STATUS, 0);
    assert_true(negotiate(x, V1 | 1ULL << 5 | 1ULL << VIRTIO_RING_F_EVENT_IDX) &
                VIRTIO_CONFIG_S_FEATURES_OK);
    assert_int_equal(x->dev->acked, V1 | 1ULL << 5 | 1ULL << VIRTIO_RING_F_EVENT_IDX);
    assert_true(x->dev->queues[0].event_idx);
    assert_false(x->dev->queues[0].indirect);
    /* Final once FEATURES_OK is set. */
    set_features(x, V1);
    assert_int_equal(x->dev->acked, V1 | 1ULL << 5 | 1ULL << VIRTIO_RING_F_EVENT_IDX);
    unmake(x);
}

static void test_status_order(void **state)
{
    struct fx *x = make(true, true);

    (void)state;
    wr(x, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_DRIVER); /* without ACKNOWLEDGE */
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), 0);
    wr(x, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(x, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_FEATURES_OK);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(x, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    set_features(x, V1);
    /* DRIVER_OK before FEATURES_OK. */
    wr(x, VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS),
                     VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    assert_int_equal(x->fd.activates, 0);
    wr(x, VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    wr(x, VIRTIO_MMIO_STATUS, ALLOK);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), ALLOK);
    assert_int_equal(x->fd.activates, 1);
    assert_true(virtio_dev_running(x->dev));
    /* Clearing bits without a reset is ignored. */
    wr(x, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), ALLOK);
    /* The driver gives up: FAILED stops the device. */
    wr(x, VIRTIO_MMIO_STATUS, ALLOK | VIRTIO_CONFIG_S_FAILED);
    assert_false(virtio_dev_running(x->dev));
    wr(x, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), 0);
    /* An activation failure puts the device into NEEDS_RESET. */
    x->fd.activate_ret = -ENOMEM;
    negotiate(x, V1);
    wr(x, VIRTIO_MMIO_STATUS, ALLOK);
    assert_true(rd(x, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_false(virtio_dev_running(x->dev));
    unmake(x);
}

static void test_queue_setup(void **state)
{
    struct fx *x = make(true, true);
    struct virtq *q = &x->dev->queues[1];

    (void)state;
    negotiate(x, V1 | 1ULL << VIRTIO_RING_F_INDIRECT_DESC);
    setup_queue(x, 1, 16, DESC, AVAIL, USED);
    assert_int_equal(rd(x, VIRTIO_MMIO_QUEUE_READY), 1);
    assert_true(q->ready);
    assert_true(q->indirect);
    assert_int_equal(q->size, 16);
    assert_int_equal(q->desc_gpa, DESC);
    assert_int_equal(q->avail_gpa, AVAIL);
    assert_int_equal(q->used_gpa, USED);
    /* Read-only while ready. */
    wr(x, VIRTIO_MMIO_QUEUE_NUM, 4);
    wr(x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    assert_int_equal(q->size, 16);
    assert_int_equal(q->desc_gpa, DESC);
    /* The other queue is untouched; an absent queue's registers are ignored. */
    wr(x, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(rd(x, VIRTIO_MMIO_QUEUE_READY), 0);
    wr(x, VIRTIO_MMIO_QUEUE_SEL, 3);
    wr(x, VIRTIO_MMIO_QUEUE_READY, 1);
    assert_int_equal(rd(x, VIRTIO_MMIO_QUEUE_READY), 0);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    unmake(x);
}

/* Each bad queue puts the device into NEEDS_RESET with a config interrupt; a reset recovers. */
static void expect_refused(struct fx *x, uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
    unsigned lowers = x->fh.irq_lowers;

    wr(x, VIRTIO_MMIO_STATUS, 0);
    negotiate(x, V1);
    setup_queue(x, 1, num, desc, avail, used);
    assert_int_equal(rd(x, VIRTIO_MMIO_QUEUE_READY), 0);
    assert_true(rd(x, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_true(rd(x, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
    assert_int_equal(x->fh.irq_lowers, lowers + 1); /* one interrupt pulse (no irqfd here) */
    /* DRIVER_OK does not revive it. */
    wr(x, VIRTIO_MMIO_STATUS, ALLOK);
    assert_false(virtio_dev_running(x->dev));
}

static void test_queue_refused(void **state)
{
    struct fx *x = make(true, false);
    unsigned before = x->fd.activates;

    (void)state;
    expect_refused(x, 3, DESC, AVAIL, USED);                   /* not a power of two */
    expect_refused(x, 0, DESC, AVAIL, USED);                   /* empty */
    expect_refused(x, 32, DESC, AVAIL, USED);                  /* above QueueNumMax 16 */
    expect_refused(x, 0x10010, DESC, AVAIL, USED);             /* 16 once truncated to 16 bits */
    expect_refused(x, 16, DESC + 8, AVAIL, USED);              /* descriptors need 16 */
    expect_refused(x, 16, DESC, AVAIL + 1, USED);              /* available ring needs 2 */
    expect_refused(x, 16, DESC, AVAIL, USED + 2);              /* used ring needs 4 */
    expect_refused(x, 16, ARENA_SIZE - 64, AVAIL, USED);       /* past the end of RAM */
    expect_refused(x, 16, DESC, AVAIL, 0xfffffffffffff000ULL); /* far outside, overflowing */
    assert_int_equal(x->fd.activates, before);
    /* And a good queue after a reset works again. */
    wr(x, VIRTIO_MMIO_STATUS, 0);
    bring_up(x, V1);
    unmake(x);
}

static void test_reset(void **state)
{
    struct fx *x = make(true, true);

    (void)state;
    bring_up(x, V1 | 1ULL << VIRTIO_RING_F_EVENT_IDX);
    virtio_dev_config_changed(x->dev);
    assert_int_equal(rd(x, VIRTIO_MMIO_CONFIG_GENERATION), 1);
    virtio_dev_fail(x->dev, "test failure %d", 1);
    assert_true(rd(x, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(rd(x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    /* NEEDS_RESET survives the driver writing status back with more bits. */
    wr(x, VIRTIO_MMIO_STATUS, ALLOK | VIRTIO_CONFIG_S_FAILED);
    assert_true(rd(x, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    wr(x, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(x->fd.resets, 1);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), 0);
    assert_int_equal(rd(x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_false(x->dev->failed);
    assert_int_equal(x->dev->acked, 0);
    for (unsigned i = 0; i < 2; i++) {
        assert_false(x->dev->queues[i].ready);
        assert_false(x->dev->queues[i].event_idx);
        assert_int_equal(x->dev->queues[i].desc_gpa, 0);
        assert_int_equal(x->dev->queues[i].last_avail, 0);
    }
    bring_up(x, V1);
    unmake(x);
}

static void test_config_space(void **state)
{
    struct fx *x = make(true, true);
    uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    (void)state;
    virtio_mmio_io(x->dev, VIRTIO_MMIO_CONFIG + 3, b, 1, false);
    assert_int_equal(b[0], 0xa3);
    virtio_mmio_io(x->dev, VIRTIO_MMIO_CONFIG + 4, b, 2, false);
    assert_int_equal(b[0], 0xa4);
    assert_int_equal(b[1], 0xa5);
    virtio_mmio_io(x->dev, VIRTIO_MMIO_CONFIG + 8, b, 8, false);
    assert_int_equal(b[7], 0xaf);
    virtio_mmio_io(x->dev, VIRTIO_MMIO_CONFIG + 6, (uint8_t[]){0x11, 0x22}, 2, true);
    assert_int_equal(x->fd.cfg_off, 6);
    assert_int_equal(x->fd.cfg_len, 2);
    assert_int_equal(x->fd.cfg_written[1], 0x22);
    /* Past the window: zeros, and the device is not asked. */
    memset(b, 0x55, sizeof(b));
    virtio_mmio_io(x->dev, X86_VIRTIO_MMIO_SIZE - 4, b, 8, false);
    assert_int_equal(b[0], 0);
    unmake(x);
}

static void test_wrong_width(void **state)
{
    struct fx *x = make(true, true);
    uint8_t b[8];

    (void)state;
    memset(b, 0x55, sizeof(b));
    virtio_mmio_io(x->dev, VIRTIO_MMIO_MAGIC_VALUE, b, 2, false);
    assert_int_equal(b[0], 0);
    assert_int_equal(b[1], 0);
    virtio_mmio_io(x->dev, VIRTIO_MMIO_MAGIC_VALUE, b, 8, false);
    assert_int_equal(b[0], 0);
    virtio_mmio_io(x->dev, VIRTIO_MMIO_MAGIC_VALUE + 1, b, 4, false); /* unaligned */
    assert_int_equal(b[0], 0);
    virtio_mmio_io(x->dev, VIRTIO_MMIO_STATUS, (uint8_t[]){VIRTIO_CONFIG_S_ACKNOWLEDGE}, 1, true);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), 0);
    virtio_mmio_io(x->dev, VIRTIO_MMIO_STATUS, (uint8_t[]){1, 0, 0, 0, 0, 0, 0, 0}, 8, true);
    assert_int_equal(rd(x, VIRTIO_MMIO_STATUS), 0);
    unmake(x);
}

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) == 1;
}

static void *loop_thread(void *loop)
{
    evloop_run(loop);
    return NULL;
}

static void wait_for(bool (*cond)(struct fx *), struct fx *x)
{
    for (int i = 0; i < 2000 && !cond(x); i++)
        usleep(1000);
    assert_true(cond(x));
}

static bool notify_drained(struct fx *x)
{
    return !readable(x->dev->notify_fd[1]);
}

static bool notified(struct fx *x)
{
    return x->fd.notifies == 1;
}

static void test_notify(void **state)
{
    struct fx *x = make(false, true);
    pthread_t t;

    (void)state;
    /* Without ioeventfd a QueueNotify write signals the queue's eventfd itself. */
    assert_true(x->dev->notify_by_write);
    assert_false(readable(x->dev->notify_fd[1]));
    wr(x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    assert_true(readable(x->dev->notify_fd[1]));
    wr(x, VIRTIO_MMIO_QUEUE_NOTIFY, 9); /* no such queue: ignored */
    /* The event loop drains it and, the device not running, does not pass it on. */
    assert_int_equal(pthread_create(&t, NULL, loop_thread, x->loop), 0);
    wait_for(notify_drained, x);
    assert_int_equal(x->fd.notifies, 0);
    bring_up(x, V1);
    wr(x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    wait_for(notified, x);
    evloop_stop(x->loop);
    pthread_join(t, NULL);
    unmake(x);

    /* With ioeventfd, KVM signals the eventfd; a write that reaches the VMM is not doubled. */
    x = make(true, true);
    assert_false(x->dev->notify_by_write);
    wr(x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    assert_false(readable(x->dev->notify_fd[1]));
    unmake(x);
}

/* Makes one used entry so virtq_should_interrupt() has something to signal. */
static void push_one(struct fx *x)
{
    virtq_push(&x->dev->queues[1], 0, 0);
}

static void test_interrupts(void **state)
{
    struct fx *x = make(true, false);
    uint64_t count;

    (void)state;
    assert_int_equal(x->dev->irq_fd, -1);
    bring_up(x, V1);
    push_one(x);
    virtio_dev_notify_used(x->dev, 1);
    /* Without irqfd: a pulse on the GSI, and the used-ring bit in InterruptStatus. */
    assert_int_equal(x->fh.irq_raises, 1);
    assert_int_equal(x->fh.irq_lowers, 1);
    assert_int_equal(rd(x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
    wr(x, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_int_equal(rd(x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    /* Nothing new pushed: no interrupt. */
    virtio_dev_notify_used(x->dev, 1);
    assert_int_equal(x->fh.irq_raises, 1);
    /* The driver asked for none. */
    ((struct vring_avail *)(x->mem.map + AVAIL))->flags = VRING_AVAIL_F_NO_INTERRUPT;
    push_one(x);
    virtio_dev_notify_used(x->dev, 1);
    assert_int_equal(x->fh.irq_raises, 1);
    unmake(x);

    /* With irqfd: the eventfd is written, set_irq never called. */
    x = make(true, true);
    bring_up(x, V1);
    push_one(x);
    virtio_dev_notify_used(x->dev, 1);
    assert_int_equal(read(x->dev->irq_fd, &count, sizeof(count)), sizeof(count));
    assert_int_equal(count, 1);
    assert_int_equal(x->fh.irq_raises, 0);
    virtio_dev_config_changed(x->dev);
    assert_int_equal(rd(x, VIRTIO_MMIO_INTERRUPT_STATUS),
                     VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
    unmake(x);
}

/* The benchmarking knob: KILN_VIRTIO_NO_EVENT_IDX=1 at attach withholds EVENT_IDX, and a driver
 * that accepts it anyway has FEATURES_OK refused; "0" or "" leave it offered. */
static void test_no_event_idx_knob(void **state)
{
    struct fx *x;

    (void)state;
    setenv("KILN_VIRTIO_NO_EVENT_IDX", "1", 1);
    x = make(true, true);
    unsetenv("KILN_VIRTIO_NO_EVENT_IDX");
    wr(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_int_equal(rd(x, VIRTIO_MMIO_DEVICE_FEATURES),
                     1U << 5 | 1U << VIRTIO_RING_F_INDIRECT_DESC);
    assert_false(negotiate(x, V1 | 1ULL << VIRTIO_RING_F_EVENT_IDX) & VIRTIO_CONFIG_S_FEATURES_OK);
    wr(x, VIRTIO_MMIO_STATUS, 0);
    assert_true(negotiate(x, V1 | 1ULL << VIRTIO_RING_F_INDIRECT_DESC) &
                VIRTIO_CONFIG_S_FEATURES_OK);
    assert_false(x->dev->queues[0].event_idx);
    unmake(x);

    setenv("KILN_VIRTIO_NO_EVENT_IDX", "0", 1);
    x = make(true, true);
    unsetenv("KILN_VIRTIO_NO_EVENT_IDX");
    wr(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_true(rd(x, VIRTIO_MMIO_DEVICE_FEATURES) & 1U << VIRTIO_RING_F_EVENT_IDX);
    unmake(x);
}

/* The counters the transport logs at -v: kicks through the event loop, interrupts raised and
 * those the driver's suppression made unnecessary. */
static void test_counters(void **state)
{
    struct fx *x = make(true, true);
    uint64_t two = 2; /* two kicks KVM folded into one eventfd count */
    pthread_t t;

    (void)state;
    bring_up(x, V1);
    assert_int_equal(write(x->dev->notify_fd[1], &two, sizeof(two)), sizeof(two));
    assert_int_equal(pthread_create(&t, NULL, loop_thread, x->loop), 0);
    wait_for(notified, x);
    evloop_stop(x->loop);
    pthread_join(t, NULL);
    assert_int_equal(x->dev->stat_kicks[1], 2);
    assert_int_equal(x->dev->stat_wakeups[1], 1);
    push_one(x);
    virtio_dev_notify_used(x->dev, 1);
    ((struct vring_avail *)(x->mem.map + AVAIL))->flags = VRING_AVAIL_F_NO_INTERRUPT;
    push_one(x);
    virtio_dev_notify_used(x->dev, 1);
    virtio_dev_notify_used(x->dev, 1); /* nothing new: not counted as suppressed */
    assert_int_equal(x->dev->stat_irqs, 1);
    assert_int_equal(x->dev->stat_irqs_suppressed, 1);
    unmake(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_status_order),
        cmocka_unit_test(test_queue_setup),
        cmocka_unit_test(test_queue_refused),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_config_space),
        cmocka_unit_test(test_wrong_width),
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_interrupts),
        cmocka_unit_test(test_no_event_idx_knob),
        cmocka_unit_test(test_counters),
    };

    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
