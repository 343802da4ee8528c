/* test_virtio_balloon.c: the balloon device against fake rings in a real memfd-backed guest RAM. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "devices/virtio/virtio.h"
#include "lib/lib.h"

/* 16 MiB split by an 8 MiB "hole": RAM is [0, 8M) and [4G, 4G + 8M). */
#define RAM_SIZE  (16 * MiB)
#define HOLE      (8 * MiB)
#define QSIZE     16
#define RING_BASE 0x1000ULL
#define RING_STEP 0x4000ULL  /* per queue: descriptors, avail at +0x1000, used at +0x2000 */
#define DATA      0x20000ULL /* PFN arrays and stats buffers */
#define PAGE      4096ULL

#define F_STATS     (1ULL << 1)
#define F_OOM       (1ULL << 2)
#define F_REPORTING (1ULL << 5)

struct bed {
    struct guest_mem mem;
    struct virtio_env env;
    struct virtio_dev *dev;
    uint16_t avail_idx[VIRTIO_MAX_QUEUES];
    uint16_t next_desc[VIRTIO_MAX_QUEUES];
    uint64_t data_next;
};

struct buf {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

static void *gp(struct bed *t, uint64_t gpa, uint64_t len)
{
    void *p = guest_mem_ptr(&t->mem, gpa, len);
    assert_non_null(p);
    return p;
}

/* Plays the driver's part up to DRIVER_OK with `acked` features. */
static void bring_up(struct bed *t, uint64_t acked)
{
    struct virtio_dev *dev = t->dev;
    char why[128];

    /* Rings and the data area allocated now, so tests can count the memfd's blocks. */
    memset(gp(t, 0, 2 * DATA), 0, 2 * DATA);
    dev->mem = &t->mem;
    dev->failed = false; /* as the transport's reset does */
    dev->acked = acked | (1ULL << VIRTIO_F_VERSION_1);
    for (unsigned i = 0; i < dev->nqueues; i++) {
        struct virtq *q = &dev->queues[i];
        uint64_t base = RING_BASE + i * RING_STEP;
        memset(q, 0, sizeof(*q));
        q->size = QSIZE;
        q->mem = &t->mem;
        q->desc_gpa = base;
        q->avail_gpa = base + 0x1000;
        q->used_gpa = base + 0x2000;
        assert_int_equal(virtq_validate(q, dev->queue_max[i], why, sizeof(why)), 0);
        q->ready = true;
        t->avail_idx[i] = t->next_desc[i] = 0;
    }
    dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                  VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    assert_int_equal(dev->ops->activate(dev), 0);
}

static struct bed *bed_new(const struct virtio_balloon_config *cfg, struct evloop *loop)
{
    struct bed *t = calloc(1, sizeof(*t));
    char err[256] = "";

    assert_non_null(t);
    assert_int_equal(guest_mem_init(&t->mem, RAM_SIZE, HOLE), 0);
    t->env.mem = &t->mem;
    t->env.loop = loop;
    t->dev = virtio_balloon_create(&t->env, cfg, err, sizeof(err));
    assert_non_null(t->dev);
    assert_int_equal(t->dev->device_id, 5);
    t->data_next = DATA;
    return t;
}

static struct bed *bed_up(uint64_t acked)
{
    struct virtio_balloon_config cfg = {.target_pages = 256};
    struct bed *t = bed_new(&cfg, NULL);

    bring_up(t, acked);
    return t;
}

static void bed_free(struct bed *t)
{
    virtio_dev_destroy(t->dev);
    guest_mem_destroy(&t->mem);
    free(t);
}

/* Makes a chain of `n` buffers available on queue `qi` and kicks the device. */
static void offer(struct bed *t, unsigned qi, const struct buf *bufs, unsigned n, bool kick)
{
    uint64_t base = RING_BASE + qi * RING_STEP;
    struct vring_desc *desc = gp(t, base, QSIZE * sizeof(*desc));
    struct vring_avail *avail = gp(t, base + 0x1000, sizeof(*avail) + QSIZE * 2);
    uint16_t head = t->next_desc[qi] % QSIZE;

    for (unsigned i = 0; i < n; i++) {
        uint16_t d = (uint16_t)((head + i) % QSIZE);
        desc[d].addr = bufs[i].gpa;
        desc[d].len = bufs[i].len;
        desc[d].flags = (uint16_t)((bufs[i].writable ? VRING_DESC_F_WRITE : 0) |
                                   (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        desc[d].next = (uint16_t)((d + 1) % QSIZE);
    }
    t->next_desc[qi] = (uint16_t)(t->next_desc[qi] + n);
    avail->ring[t->avail_idx[qi] % QSIZE] = head;
    __atomic_store_n(&avail->idx, ++t->avail_idx[qi], __ATOMIC_RELEASE);
    if (kick)
        t->dev->ops->notify(t->dev, qi);
}

static uint16_t used_idx(struct bed *t, unsigned qi)
{
    struct vring_used *used = gp(t, RING_BASE + qi * RING_STEP + 0x2000, sizeof(*used));
    return __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE);
}

/* Copies data into the next free spot of the data area and returns its address. */
static uint64_t put(struct bed *t, const void *data, uint32_t len)
{
    uint64_t gpa = t->data_next;

    memcpy(gp(t, gpa, len), data, len);
    t->data_next += ALIGN_UP((uint64_t)len, 64ULL);
    return gpa;
}

static void send_pfns(struct bed *t, unsigned qi, const uint32_t *pfns, unsigned n)
{
    struct buf b = {.gpa = put(t, pfns, n * 4), .len = n * 4};
    offer(t, qi, &b, 1, true);
}

static blkcnt_t ram_blocks(struct bed *t)
{
    struct stat st;
    assert_int_equal(fstat(t->mem.fd, &st), 0);
    return st.st_blocks;
}

static bool page_is(struct bed *t, uint64_t gpa, uint8_t v)
{
    const uint8_t *p = gp(t, gpa, PAGE);
    for (uint64_t i = 0; i < PAGE; i++)
        if (p[i] != v)
            return false;
    return true;
}

static void test_inflate_discards(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    /* Out of order with a duplicate; 0x200..0x20f coalesce into one range, 0x300 is alone. */
    uint32_t pfns[] = {0x205, 0x200, 0x20f, 0x201, 0x202, 0x203, 0x204, 0x206, 0x207,
                       0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x300, 0x203};
    blkcnt_t before;

    (void)state;
    memset(gp(t, 0x1ff000, 18 * PAGE), 0xaa, 18 * PAGE);
    memset(gp(t, 0x300000, PAGE), 0xbb, PAGE);
    before = ram_blocks(t);
    send_pfns(t, 0, pfns, ARRAY_SIZE(pfns));
    assert_int_equal(used_idx(t, 0), 1);
    assert_false(t->dev->failed);
    /* The memfd let go of 17 pages (checked before reading them back, which re-allocates). */
    assert_true(ram_blocks(t) <= before - (blkcnt_t)(17 * PAGE / 512));
    for (uint64_t pfn = 0x200; pfn <= 0x20f; pfn++)
        assert_true(page_is(t, pfn * PAGE, 0));
    assert_true(page_is(t, 0x300 * PAGE, 0));
    assert_true(page_is(t, 0x1ff000, 0xaa)); /* neighbours untouched */
    assert_true(page_is(t, 0x210000, 0xaa));
    bed_free(t);
}

static void test_inflate_skips_bad_pfns(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    /* In the hole, past the end of RAM, far out, and the last page of each region (valid). */
    uint32_t pfns[] = {HOLE / PAGE,     (uint32_t)((4 * GiB + 8 * MiB) / PAGE),     0xffffffffu,
                       HOLE / PAGE - 1, (uint32_t)((4 * GiB + 8 * MiB) / PAGE - 1), 0x400};

    (void)state;
    memset(gp(t, HOLE - PAGE, PAGE), 0xcc, PAGE);
    memset(gp(t, 4 * GiB + 8 * MiB - PAGE, PAGE), 0xcc, PAGE);
    memset(gp(t, 0x400000, PAGE), 0xcc, PAGE);
    send_pfns(t, 0, pfns, ARRAY_SIZE(pfns));
    assert_int_equal(used_idx(t, 0), 1);
    assert_false(t->dev->failed); /* skipped, not fatal */
    assert_true(page_is(t, HOLE - PAGE, 0));
    assert_true(page_is(t, 4 * GiB + 8 * MiB - PAGE, 0));
    assert_true(page_is(t, 0x400000, 0));
    bed_free(t);
}

static void test_inflate_split_pfn_across_buffers(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    uint32_t pfns[2] = {0x500, 0x501};
    uint64_t at = put(t, pfns, sizeof(pfns));
    /* 3 + 5 bytes: a PFN straddles two descriptors, which is legal. */
    struct buf b[2] = {{.gpa = at, .len = 3}, {.gpa = at + 3, .len = 5}};

    (void)state;
    memset(gp(t, 0x500000, 2 * PAGE), 0xdd, 2 * PAGE);
    offer(t, 0, b, 2, true);
    assert_int_equal(used_idx(t, 0), 1);
    assert_false(t->dev->failed);
    assert_true(page_is(t, 0x500000, 0));
    assert_true(page_is(t, 0x501000, 0));
    bed_free(t);
}

static void test_odd_length_fails_device(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    uint32_t pfns[2] = {0x600, 0x601};

    (void)state;
    memset(gp(t, 0x600000, PAGE), 0xee, PAGE);
    offer(t, 0, &(struct buf){.gpa = put(t, pfns, 8), .len = 6}, 1, true);
    assert_true(t->dev->failed);
    assert_int_equal(used_idx(t, 0), 0);
    assert_true(page_is(t, 0x600000, 0xee)); /* nothing was discarded */
    /* Deflate checks the same. */
    t->dev->ops->reset(t->dev);
    bring_up(t, F_STATS | F_REPORTING);
    assert_false(t->dev->failed);
    offer(t, 1, &(struct buf){.gpa = put(t, pfns, 8), .len = 7}, 1, true);
    assert_true(t->dev->failed);
    /* More than 1 MiB of PFNs in one chain (two descriptors): refused before any work. */
    t->dev->ops->reset(t->dev);
    bring_up(t, F_STATS | F_REPORTING);
    memset(gp(t, 0x200000, 2 * MiB), 0, 2 * MiB);
    offer(t, 0, (struct buf[]){{.gpa = 0x200000, .len = 1 * MiB}, {.gpa = 0x300000, .len = 4}}, 2,
          true);
    assert_true(t->dev->failed);
    assert_int_equal(used_idx(t, 0), 0);
    bed_free(t);
}

static void test_deflate_and_malformed_ring(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    uint32_t pfns[3] = {0x200, 0x201, 0x202};
    struct vring_avail *avail;

    (void)state;
    memset(gp(t, 0x200000, PAGE), 0x11, PAGE);
    send_pfns(t, 1, pfns, 3);
    assert_int_equal(used_idx(t, 1), 1);
    assert_true(page_is(t, 0x200000, 0x11)); /* deflate gives nothing back */
    /* A head index past the queue: the walker refuses, the device fails. */
    avail = gp(t, RING_BASE + 1 * RING_STEP + 0x1000, sizeof(*avail) + QSIZE * 2);
    avail->ring[t->avail_idx[1] % QSIZE] = QSIZE + 3;
    avail->idx = ++t->avail_idx[1];
    t->dev->ops->notify(t->dev, 1);
    assert_true(t->dev->failed);
    bed_free(t);
}

static uint32_t cfg_read32(struct virtio_dev *dev, uint32_t off)
{
    uint8_t b[4];
    dev->ops->config_read(dev, off, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void test_config_space(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    struct virtio_dev *dev = t->dev;
    struct virtio_balloon_stats st;
    uint8_t le[4] = {0x34, 0x12, 0, 0}, b[8];
    uint32_t gen;

    (void)state;
    assert_int_equal(cfg_read32(dev, 0), 256);
    assert_int_equal(cfg_read32(dev, 4), 0);
    /* The driver writes actual; num_pages and the rest are read-only. */
    dev->ops->config_write(dev, 4, le, 4);
    dev->ops->config_write(dev, 0, le, 4);
    dev->ops->config_write(dev, 12, le, 4);
    assert_int_equal(cfg_read32(dev, 4), 0x1234);
    assert_int_equal(cfg_read32(dev, 0), 256);
    assert_int_equal(cfg_read32(dev, 12), 0);
    /* Byte-wide accesses, and a write straddling num_pages/actual touches actual only. */
    dev->ops->config_write(dev, 2, (const uint8_t[]){9, 9, 0x78, 0x56}, 4);
    assert_int_equal(cfg_read32(dev, 4), 0x5678);
    dev->ops->config_read(dev, 5, b, 1);
    assert_int_equal(b[0], 0x56);
    /* Past the config space: zeros. */
    memset(b, 0xff, sizeof(b));
    dev->ops->config_read(dev, 14, b, 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(b[i], 0);
    virtio_balloon_get_stats(dev, &st);
    assert_int_equal(st.target_pages, 256);
    assert_int_equal(st.actual_pages, 0x5678);

    /* The host moves the target: config interrupt, new generation, new value. */
    gen = dev->config_generation;
    dev->isr = 0;
    assert_int_equal(virtio_balloon_set_target(dev, 1024), 0);
    assert_int_equal(cfg_read32(dev, 0), 1024);
    assert_true(dev->isr & 2);
    assert_int_not_equal(dev->config_generation, gen);
    assert_int_equal(virtio_balloon_set_target(dev, RAM_SIZE / PAGE), 0);
    assert_int_equal(virtio_balloon_set_target(dev, RAM_SIZE / PAGE + 1), -EINVAL);
    assert_int_equal(virtio_balloon_set_target(dev, UINT64_MAX), -EINVAL);
    assert_int_equal(cfg_read32(dev, 0), RAM_SIZE / PAGE);
    assert_int_equal(virtio_balloon_set_target(dev, 0), 0);
    /* A reset forgets actual but keeps the host's target. */
    dev->ops->reset(dev);
    assert_int_equal(cfg_read32(dev, 4), 0);
    bed_free(t);
}

static void test_create_checks(void **state)
{
    struct guest_mem mem;
    struct virtio_env env = {.mem = &mem};
    struct virtio_balloon_config cfg = {.target_pages = RAM_SIZE / PAGE + 1};
    struct virtio_dev *dev;
    char err[256] = "";

    (void)state;
    assert_int_equal(guest_mem_init(&mem, RAM_SIZE, HOLE), 0);
    assert_null(virtio_balloon_create(&env, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "16 MiB"));
    cfg.target_pages = 0;
    cfg.stats_period_s = 100000;
    assert_null(virtio_balloon_create(&env, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "100000"));
    /* Features: stats and reporting always, deflate-on-OOM when asked. */
    cfg.stats_period_s = 0;
    dev = virtio_balloon_create(&env, &cfg, err, sizeof(err));
    assert_non_null(dev);
    assert_int_equal(dev->features, F_STATS | F_REPORTING);
    assert_int_equal(dev->nqueues, 4);
    virtio_dev_destroy(dev);
    cfg.deflate_on_oom = true;
    dev = virtio_balloon_create(&env, &cfg, err, sizeof(err));
    assert_int_equal(dev->features, F_STATS | F_REPORTING | F_OOM);
    virtio_dev_destroy(dev);
    guest_mem_destroy(&mem);
}

struct stat_entry {
    uint16_t tag;
    uint64_t val;
} __attribute__((packed));

static void test_stats(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    struct stat_entry s[] = {{0, 1}, {4, 100 * MiB}, {5, 250 * MiB}, {6, 120 * MiB}, {77, 5}};
    struct virtio_balloon_stats st;

    (void)state;
    virtio_balloon_get_stats(t->dev, &st);
    assert_int_equal(st.stats_ns, 0);
    offer(t, 2, &(struct buf){.gpa = put(t, s, sizeof(s)), .len = sizeof(s)}, 1, true);
    assert_int_equal(used_idx(t, 2), 0); /* held until the host wants fresh values */
    virtio_balloon_get_stats(t->dev, &st);
    assert_int_equal(st.mem_free, 100 * MiB);
    assert_int_equal(st.mem_total, 250 * MiB);
    assert_int_equal(st.mem_available, 120 * MiB);
    assert_true(st.stats_ns > 0);
    /* A second buffer while one is held: the older goes back, the newer values count. */
    s[1].val = 90 * MiB;
    offer(t, 2, &(struct buf){.gpa = put(t, s, sizeof(s)), .len = sizeof(s)}, 1, true);
    assert_int_equal(used_idx(t, 2), 1);
    virtio_balloon_get_stats(t->dev, &st);
    assert_int_equal(st.mem_free, 90 * MiB);
    /* A buffer that is not whole entries breaks the protocol. */
    offer(t, 2, &(struct buf){.gpa = put(t, s, sizeof(s)), .len = 15}, 1, true);
    assert_true(t->dev->failed);
    bed_free(t);
}

static void test_reporting(void **state)
{
    struct bed *t = bed_up(F_STATS | F_REPORTING);
    struct buf r[3] = {{.gpa = 0x400000, .len = 2 * MiB, .writable = true},
                       {.gpa = 4 * GiB, .len = 4 * MiB, .writable = true},
                       {.gpa = 0x700800, .len = 0x1000, .writable = true}};
    blkcnt_t before;

    (void)state;
    memset(gp(t, 0x3ff000, 2 * MiB + 2 * PAGE), 0x42, 2 * MiB + 2 * PAGE);
    memset(gp(t, 4 * GiB, 4 * MiB), 0x43, 4 * MiB);
    memset(gp(t, 0x700000, 2 * PAGE), 0x44, 2 * PAGE);
    before = ram_blocks(t);
    offer(t, 3, r, 3, true);
    assert_int_equal(used_idx(t, 3), 1);
    assert_false(t->dev->failed); /* the unaligned range is skipped, not fatal */
    assert_true(ram_blocks(t) <= before - (blkcnt_t)(6 * MiB / 512));
    assert_true(page_is(t, 0x400000, 0));
    assert_true(page_is(t, 0x400000 + 2 * MiB - PAGE, 0));
    assert_true(page_is(t, 4 * GiB + 4 * MiB - PAGE, 0));
    assert_true(page_is(t, 0x3ff000, 0x42));
    assert_true(page_is(t, 0x400000 + 2 * MiB, 0x42));
    assert_true(page_is(t, 0x700000, 0x44));
    bed_free(t);
}

/* Queues are numbered by presence: without STATS_VQ the reporting queue is index 2. */
static void test_queue_numbering(void **state)
{
    struct bed *t = bed_up(F_REPORTING);
    struct buf r = {.gpa = 0x400000, .len = 4 * PAGE, .writable = true};

    (void)state;
    memset(gp(t, 0x400000, 4 * PAGE), 0x42, 4 * PAGE);
    offer(t, 2, &r, 1, true);
    assert_int_equal(used_idx(t, 2), 1);
    assert_true(page_is(t, 0x400000, 0));
    offer(t, 3, &r, 1, true); /* no queue 3 in this session: ignored */
    assert_int_equal(used_idx(t, 3), 0);
    assert_false(t->dev->failed);
    bed_free(t);
}

static void *loop_main(void *loop)
{
    evloop_run(loop);
    return NULL;
}

/* With a period, the stats buffer goes back to the driver each period (from the event loop). The
 * buffer is offered before DRIVER_OK, as Linux does: activation must pick it up. */
static void test_stats_timer(void **state)
{
    struct evloop *loop = evloop_create();
    struct virtio_balloon_config cfg = {.stats_period_s = 1};
    struct stat_entry s[] = {{4, 7 * MiB}};
    struct virtio_balloon_stats st;
    pthread_t thread;
    struct bed *t;
    int waited = 0;

    (void)state;
    assert_non_null(loop);
    t = bed_new(&cfg, loop);
    assert_int_equal(pthread_create(&thread, NULL, loop_main, loop), 0);
    bring_up(t, F_STATS | F_REPORTING);
    t->dev->status = 0; /* "before DRIVER_OK" */
    offer(t, 2, &(struct buf){.gpa = put(t, s, sizeof(s)), .len = sizeof(s)}, 1, false);
    t->dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    assert_int_equal(t->dev->ops->activate(t->dev), 0);
    while (used_idx(t, 2) == 0 && waited++ < 300)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    assert_int_equal(used_idx(t, 2), 1);
    virtio_balloon_get_stats(t->dev, &st);
    assert_int_equal(st.mem_free, 7 * MiB);
    evloop_stop(loop);
    pthread_join(thread, NULL);
    bed_free(t);
    evloop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inflate_discards),
        cmocka_unit_test(test_inflate_skips_bad_pfns),
        cmocka_unit_test(test_inflate_split_pfn_across_buffers),
        cmocka_unit_test(test_odd_length_fails_device),
        cmocka_unit_test(test_deflate_and_malformed_ring),
        cmocka_unit_test(test_config_space),
        cmocka_unit_test(test_create_checks),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_reporting),
        cmocka_unit_test(test_queue_numbering),
        cmocka_unit_test(test_stats_timer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
