/* test_virtio_blk.c: the block device driven through its queue in a fake guest-memory arena, over
 * a temporary image file: round trips, every header check, read-only disks, the rate limiter. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/virtio.h"
#include "lib/lib.h"

#define ARENA    (8 * MiB)
#define DESC     0x0000ULL
#define AVAIL    0x1000ULL
#define USED     0x2000ULL
#define HDR      0x4000ULL /* request headers and status bytes */
#define DATA     0x10000ULL
#define DATA2    (4 * MiB)
#define IMG_SIZE (1 * MiB)
#define SECTORS  (IMG_SIZE / 512)

struct fx {
    struct guest_mem mem;
    struct evloop *loop;
    pthread_t loop_thread;
    struct virtio_dev *dev;
    char path[64];
    uint16_t avail_idx;
};

static struct fx *F; /* the fixture of the running test */

static void *gp(uint64_t gpa)
{
    return guest_mem_ptr(&F->mem, gpa, 1);
}

static void *run_loop(void *loop)
{
    evloop_run(loop);
    return NULL;
}

static void make_image(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static struct virtio_dev *create(const char *path, bool ro, const struct rate_limit_config *lim,
                                 char *err, size_t errlen)
{
    struct virtio_blk_config cfg = {.path = path, .read_only = ro};
    struct virtio_env env = {.mem = &F->mem, .loop = F->loop};

    if (lim)
        cfg.limit = *lim;
    return virtio_blk_create(&env, &cfg, err, errlen);
}

/* Makes the device live as the transport would after DRIVER_OK. */
static void go_live(struct virtio_dev *dev)
{
    struct virtq *q = &dev->queues[0];
    char why[128];

    dev->mem = &F->mem;
    dev->irq_fd = eventfd(0, EFD_NONBLOCK);
    q->size = dev->queue_max[0];
    q->mem = &F->mem;
    q->desc_gpa = DESC;
    q->avail_gpa = AVAIL;
    q->used_gpa = USED;
    assert_int_equal(virtq_validate(q, dev->queue_max[0], why, sizeof(why)), 0);
    q->ready = true;
    dev->acked = dev->features;
    dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                  VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    if (dev->ops->activate)
        assert_int_equal(dev->ops->activate(dev), 0);
}

static int setup_rl(void **state, const struct rate_limit_config *lim)
{
    char err[256];

    F = calloc(1, sizeof(*F));
    F->mem.fd = -1;
    F->mem.size = ARENA;
    F->mem.map = aligned_alloc(4096, ARENA);
    memset(F->mem.map, 0, ARENA);
    F->mem.nregions = 1;
    F->mem.regions[0] = (struct guest_region){.gpa = 0, .size = ARENA, .hva = F->mem.map};
    F->loop = evloop_create();
    assert_non_null(F->loop);
    snprintf(F->path, sizeof(F->path), "/tmp/kiln-test-blk-XXXXXX");
    close(mkstemp(F->path));
    make_image(F->path, IMG_SIZE);
    F->dev = create(F->path, false, lim, err, sizeof(err));
    if (!F->dev)
        fail_msg("%s", err);
    go_live(F->dev);
    pthread_create(&F->loop_thread, NULL, run_loop, F->loop);
    *state = F;
    return 0;
}

static int setup(void **state)
{
    return setup_rl(state, NULL);
}

static int teardown(void **state)
{
    (void)state;
    evloop_stop(F->loop);
    pthread_join(F->loop_thread, NULL);
    virtio_dev_destroy(F->dev);
    evloop_destroy(F->loop);
    unlink(F->path);
    free(F->mem.map);
    free(F);
    return 0;
}

/* ---- a tiny driver ---- */

struct seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

/* Publishes a chain of descriptors 0..n-1 and kicks the device. */
static void publish(const struct seg *s, unsigned n)
{
    struct vring_desc *d = gp(DESC);
    struct vring_avail *a = gp(AVAIL);

    for (unsigned i = 0; i < n; i++) {
        d[i].addr = s[i].gpa;
        d[i].len = s[i].len;
        d[i].flags = (uint16_t)((i + 1 < n ? VRING_DESC_F_NEXT : 0) |
                                (s[i].writable ? VRING_DESC_F_WRITE : 0));
        d[i].next = (uint16_t)(i + 1);
    }
    a->ring[F->avail_idx % F->dev->queues[0].size] = 0;
    __atomic_store_n(&a->idx, ++F->avail_idx, __ATOMIC_RELEASE);
    F->dev->ops->notify(F->dev, 0);
}

/* Waits for the used ring to catch up with everything published; returns its last length. */
static uint32_t wait_used(void)
{
    struct vring_used *u = gp(USED);

    for (int i = 0; i < 10000; i++) {
        if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == F->avail_idx)
            return u->ring[(uint16_t)(F->avail_idx - 1) % F->dev->queues[0].size].len;
        usleep(500);
    }
    fail_msg("the device did not complete request %u", F->avail_idx);
    return 0;
}

static void put_hdr(uint32_t type, uint64_t sector)
{
    struct virtio_blk_outhdr h = {.type = type, .sector = sector};

    memcpy(gp(HDR), &h, sizeof(h));
    *(uint8_t *)gp(HDR + 32) = 0xaa; /* not a status the device writes */
}

/* One request the usual Linux way: header, data, status. Returns the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, uint64_t data, uint32_t len, uint32_t *used)
{
    bool wr = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
    struct seg s[3] = {{HDR, 16, false}, {data, len, wr}, {HDR + 32, 1, true}};
    uint32_t u;

    put_hdr(type, sector);
    if (len)
        publish(s, 3);
    else
        publish((struct seg[]){s[0], s[2]}, 2);
    u = wait_used();
    if (used)
        *used = u;
    return *(uint8_t *)gp(HDR + 32);
}

static void fill(uint64_t gpa, uint32_t len, uint32_t seed)
{
    uint8_t *p = gp(gpa);
    for (uint32_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 2654435761U + seed) >> 13);
}

/* ---- tests ---- */

static void test_config_and_features(void **state)
{
    struct virtio_dev *dev = F->dev;
    uint8_t cfg[64];
    uint64_t cap;
    uint32_t seg_max, blk_size;

    (void)state;
    dev->ops->config_read(dev, 0, cfg, sizeof(cfg));
    memcpy(&cap, cfg, 8);
    memcpy(&seg_max, cfg + 12, 4);
    memcpy(&blk_size, cfg + 20, 4);
    assert_int_equal(cap, SECTORS);
    assert_int_equal(seg_max, VIRTQ_MAX_SIZE - 2);
    assert_int_equal(blk_size, 512);
    assert_true(dev->features & (1ULL << VIRTIO_BLK_F_FLUSH));
    assert_true(dev->features & (1ULL << VIRTIO_BLK_F_SEG_MAX));
    assert_false(dev->features & (1ULL << VIRTIO_BLK_F_RO));
    assert_int_equal(dev->device_id, 2);
    /* Reads past the config space are zeros; odd offsets and lengths work. */
    memset(cfg, 0xff, sizeof(cfg));
    dev->ops->config_read(dev, 1, cfg, 3);
    assert_int_equal(cfg[0], (SECTORS >> 8) & 0xff);
    dev->ops->config_read(dev, 4000, cfg, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(cfg[i], 0);
}

static void test_write_read_round_trip(void **state)
{
    uint8_t host[16384];
    uint32_t used;
    uint64_t irqs;
    int fd;

    (void)state;
    fill(DATA, 16384, 1);
    assert_int_equal(request(VIRTIO_BLK_T_OUT, 10, DATA, 16384, &used), VIRTIO_BLK_S_OK);
    assert_int_equal(used, 1);
    /* The data is in the host file. */
    fd = open(F->path, O_RDONLY);
    assert_int_equal(pread(fd, host, sizeof(host), 10 * 512), (ssize_t)sizeof(host));
    assert_memory_equal(host, gp(DATA), sizeof(host));
    assert_int_equal(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, &used), VIRTIO_BLK_S_OK);
    /* Read back from the page cache (inline) and, with the cache dropped, on a worker. */
    assert_int_equal(request(VIRTIO_BLK_T_IN, 10, DATA2, 16384, &used), VIRTIO_BLK_S_OK);
    assert_int_equal(used, 16385);
    assert_memory_equal(gp(DATA2), host, sizeof(host));
    memset(gp(DATA2), 0, 16384);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    assert_int_equal(request(VIRTIO_BLK_T_IN, 10, DATA2, 16384, &used), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(DATA2), host, sizeof(host));
    /* The last sector is in range; zero-length reads are fine. */
    assert_int_equal(request(VIRTIO_BLK_T_IN, SECTORS - 1, DATA2, 512, NULL), VIRTIO_BLK_S_OK);
    assert_int_equal(request(VIRTIO_BLK_T_IN, SECTORS, DATA2, 0, NULL), VIRTIO_BLK_S_OK);
    assert_true(read(F->dev->irq_fd, &irqs, sizeof(irqs)) == sizeof(irqs) && irqs > 0);
}

/* Buffers split anywhere: the header over two descriptors, header and data in one. */
static void test_odd_layouts(void **state)
{
    struct seg split[4] = {
        {HDR, 8, false}, {HDR + 8, 8, false}, {DATA, 512, true}, {HDR + 32, 1, true}};
    uint8_t *one = gp(DATA2);

    (void)state;
    fill(DATA2 + 16, 1024, 7);
    put_hdr(VIRTIO_BLK_T_OUT, 4);
    memcpy(one, gp(HDR), 16);
    publish((struct seg[]){{DATA2, 16 + 1024, false}, {HDR + 32, 1, true}}, 2);
    wait_used();
    assert_int_equal(*(uint8_t *)gp(HDR + 32), VIRTIO_BLK_S_OK);
    /* Data and status in one writable buffer. */
    put_hdr(VIRTIO_BLK_T_IN, 4);
    publish((struct seg[]){{HDR, 16, false}, {DATA, 1025, true}}, 2);
    assert_int_equal(wait_used(), 1025);
    assert_int_equal(*(uint8_t *)gp(DATA + 1024), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(DATA), one + 16, 1024);
    put_hdr(VIRTIO_BLK_T_IN, 5);
    publish(split, 4);
    wait_used();
    assert_int_equal(*(uint8_t *)gp(HDR + 32), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(DATA), one + 16 + 512, 512);
}

static void test_get_id(void **state)
{
    uint32_t used;
    char id[21] = {0};

    (void)state;
    memset(gp(DATA), 0, 64);
    assert_int_equal(request(VIRTIO_BLK_T_GET_ID, 0, DATA, 20, &used), VIRTIO_BLK_S_OK);
    assert_int_equal(used, 21);
    memcpy(id, gp(DATA), 20);
    assert_int_equal(strlen(id), 20);
    assert_memory_equal(id, "kiln", 4);
    /* A shorter buffer gets what fits. */
    memset(gp(DATA), 0, 64);
    assert_int_equal(request(VIRTIO_BLK_T_GET_ID, 0, DATA, 8, &used), VIRTIO_BLK_S_OK);
    assert_int_equal(used, 9);
    assert_memory_equal(gp(DATA), id, 8);
    assert_int_equal(*(uint8_t *)gp(DATA + 8), 0);
}

static void put_ranges(uint64_t gpa, const struct virtio_blk_discard_write_zeroes *r, unsigned n)
{
    memcpy(gp(gpa), r, n * sizeof(*r));
}

static void test_discard_and_write_zeroes(void **state)
{
    struct virtio_blk_discard_write_zeroes r[2] = {{.sector = 16, .num_sectors = 16},
                                                   {.sector = 64, .num_sectors = 8}};
    static uint8_t zero[8192];

    (void)state;
    assert_true(F->dev->features & (1ULL << VIRTIO_BLK_F_DISCARD));
    assert_true(F->dev->features & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES));
    fill(DATA, 65536, 3);
    assert_int_equal(request(VIRTIO_BLK_T_OUT, 0, DATA, 65536, NULL), VIRTIO_BLK_S_OK);
    put_ranges(DATA2, r, 2);
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA2, 32, NULL), VIRTIO_BLK_S_OK);
    assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 65536, NULL), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(DATA + 16 * 512), zero, 8192);
    assert_memory_equal(gp(DATA + 64 * 512), zero, 4096);
    assert_memory_not_equal(gp(DATA + 32 * 512), zero, 4096);
    /* WRITE_ZEROES, with and without the unmap flag. */
    r[0] = (struct virtio_blk_discard_write_zeroes){.sector = 40, .num_sectors = 1};
    r[1] = (struct virtio_blk_discard_write_zeroes){
        .sector = 100, .num_sectors = 2, .flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    put_ranges(DATA2, r, 2);
    assert_int_equal(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA2, 32, NULL), VIRTIO_BLK_S_OK);
    assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 65536, NULL), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(DATA + 40 * 512), zero, 512);
    assert_memory_equal(gp(DATA + 100 * 512), zero, 1024);
    assert_memory_not_equal(gp(DATA + 41 * 512), zero, 512);
}

static void test_discard_checks(void **state)
{
    struct virtio_blk_discard_write_zeroes r[BLK_DISCARD_MAX_SEG + 1] = {{.num_sectors = 1}};

    (void)state;
    for (unsigned i = 0; i < ARRAY_SIZE(r); i++)
        r[i] = (struct virtio_blk_discard_write_zeroes){.sector = i, .num_sectors = 1};
    put_ranges(DATA2, r, ARRAY_SIZE(r));
    /* Not a whole number of ranges, none at all, too many. */
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA2, 24, NULL), VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA2, 0, NULL), VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA2, 16 * ARRAY_SIZE(r), NULL),
                     VIRTIO_BLK_S_IOERR);
    /* Past the end, or overflowing. */
    r[0] = (struct virtio_blk_discard_write_zeroes){.sector = SECTORS - 1, .num_sectors = 2};
    put_ranges(DATA2, r, 1);
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA2, 16, NULL), VIRTIO_BLK_S_IOERR);
    r[0] = (struct virtio_blk_discard_write_zeroes){.sector = UINT64_MAX, .num_sectors = 2};
    put_ranges(DATA2, r, 1);
    assert_int_equal(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA2, 16, NULL), VIRTIO_BLK_S_IOERR);
    r[0] = (struct virtio_blk_discard_write_zeroes){.num_sectors = BLK_DISCARD_MAX_SECTORS + 1};
    put_ranges(DATA2, r, 1);
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA2, 16, NULL), VIRTIO_BLK_S_IOERR);
    /* Unmap on a discard, reserved flag bits. */
    r[0] = (struct virtio_blk_discard_write_zeroes){.num_sectors = 1,
                                                    .flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    put_ranges(DATA2, r, 1);
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA2, 16, NULL), VIRTIO_BLK_S_UNSUPP);
    r[0].flags = 4;
    put_ranges(DATA2, r, 1);
    assert_int_equal(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA2, 16, NULL), VIRTIO_BLK_S_UNSUPP);
    assert_false(F->dev->failed);
}

static void test_header_checks(void **state)
{
    (void)state;
    /* Past the end, straddling the end, overflowing the byte offset. */
    assert_int_equal(request(VIRTIO_BLK_T_IN, SECTORS, DATA, 512, NULL), VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(VIRTIO_BLK_T_OUT, SECTORS - 1, DATA, 1024, NULL), VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(VIRTIO_BLK_T_IN, UINT64_MAX / 256, DATA, 512, NULL),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(VIRTIO_BLK_T_IN, UINT64_MAX, DATA, 512, NULL), VIRTIO_BLK_S_IOERR);
    /* Not whole sectors. */
    assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 511, NULL), VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(VIRTIO_BLK_T_OUT, 0, DATA, 1000, NULL), VIRTIO_BLK_S_IOERR);
    /* Unknown types, including the ones kiln does not implement. */
    assert_int_equal(request(99, 0, DATA, 512, NULL), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(request(VIRTIO_BLK_T_SECURE_ERASE, 0, DATA, 16, NULL), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(request(10 /* GET_LIFETIME */, 0, DATA, 16, NULL), VIRTIO_BLK_S_UNSUPP);
    /* None of these is a protocol violation: the device carries on. */
    assert_false(F->dev->failed);
    assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 512, NULL), VIRTIO_BLK_S_OK);
}

static void assert_failed_after(const struct seg *s, unsigned n)
{
    struct vring_used *u = gp(USED);
    uint16_t before = u->idx;

    publish(s, n);
    usleep(20000);
    assert_true(F->dev->failed);
    assert_true(F->dev->status & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(u->idx, before); /* nothing completed */
}

static void test_short_header_fails(void **state)
{
    (void)state;
    put_hdr(VIRTIO_BLK_T_IN, 0);
    assert_failed_after((struct seg[]){{HDR, 15, false}, {DATA, 512, true}, {HDR + 32, 1, true}},
                        3);
}

static void test_missing_status_fails(void **state)
{
    (void)state;
    put_hdr(VIRTIO_BLK_T_OUT, 0);
    assert_failed_after((struct seg[]){{HDR, 16, false}, {DATA, 512, false}}, 2);
}

/* A device that failed takes no more requests until the driver resets it. */
static void test_failed_device_stops(void **state)
{
    struct vring_used *u = gp(USED);

    (void)state;
    virtio_dev_fail(F->dev, "test");
    put_hdr(VIRTIO_BLK_T_IN, 0);
    publish((struct seg[]){{HDR, 16, false}, {DATA, 512, true}, {HDR + 32, 1, true}}, 3);
    usleep(20000);
    assert_int_equal(u->idx, 0);
}

static void test_read_only(void **state)
{
    struct virtio_dev *ro;
    char err[256];
    uint32_t used;

    (void)state;
    /* The read-write device holds an exclusive lock: a second user is refused. */
    assert_null(create(F->path, true, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "in use"));
    virtio_dev_destroy(F->dev);
    F->dev = ro = create(F->path, true, NULL, err, sizeof(err));
    assert_non_null(ro);
    go_live(ro);
    F->avail_idx = 0;
    memset(gp(USED), 0, 4096);
    memset(gp(AVAIL), 0, 4096);
    assert_true(ro->features & (1ULL << VIRTIO_BLK_F_RO));
    assert_false(ro->features & (1ULL << VIRTIO_BLK_F_DISCARD));
    assert_false(ro->features & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES));
    assert_int_equal(request(VIRTIO_BLK_T_OUT, 0, DATA, 512, &used), VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA, 16, NULL), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA, 16, NULL), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 512, NULL), VIRTIO_BLK_S_OK);
    assert_int_equal(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
    /* Two read-only users may share an image. */
    struct virtio_dev *ro2 = create(F->path, true, NULL, err, sizeof(err));
    assert_non_null(ro2);
    virtio_dev_destroy(ro2);
}

static void test_open_errors(void **state)
{
    char err[256], path[80];

    (void)state;
    assert_null(create("/nonexistent/kiln.img", false, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/kiln.img"));
    assert_non_null(strstr(err, "No such file"));
    assert_null(create("/tmp", true, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "directory"));
    assert_null(create("/tmp", false, NULL, err, sizeof(err)));
    assert_null(create("/dev/null", true, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "not a regular file"));
    assert_null(create("", false, NULL, err, sizeof(err)));
    snprintf(path, sizeof(path), "%s.small", F->path);
    make_image(path, 100);
    assert_null(create(path, false, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "100 bytes"));
    if (geteuid() != 0) { /* root opens anything */
        chmod(path, 0400);
        assert_null(create(path, false, NULL, err, sizeof(err)));
        assert_non_null(strstr(err, ",ro"));
    }
    unlink(path);
    /* A size that is not a whole number of sectors is rounded down. */
    make_image(path, 4096 + 100);
    struct virtio_dev *d = create(path, false, NULL, err, sizeof(err));
    uint64_t cap;
    assert_non_null(d);
    d->ops->config_read(d, 0, (uint8_t *)&cap, 8);
    assert_int_equal(cap, 8);
    virtio_dev_destroy(d);
    unlink(path);
}

/* Reset with requests queued and running: it returns only when no worker can still write into
 * guest memory, and nothing completes afterwards. */
static void test_reset_drops_requests(void **state)
{
    struct vring_used *u = gp(USED);
    struct vring_desc *d = gp(DESC);
    struct vring_avail *a = gp(AVAIL);
    uint16_t after;

    (void)state;
    /* 64 one-sector writes (writes always go to the workers). */
    for (unsigned i = 0; i < 64; i++) {
        struct virtio_blk_outhdr h = {.type = VIRTIO_BLK_T_OUT, .sector = i};
        memcpy(gp(HDR + 64 * i), &h, sizeof(h));
        d[3 * i] = (struct vring_desc){HDR + 64 * i, 16, VRING_DESC_F_NEXT, (uint16_t)(3 * i + 1)};
        d[3 * i + 1] =
            (struct vring_desc){DATA + 512 * i, 512, VRING_DESC_F_NEXT, (uint16_t)(3 * i + 2)};
        d[3 * i + 2] = (struct vring_desc){HDR + 64 * i + 32, 1, VRING_DESC_F_WRITE, 0};
        a->ring[i] = (uint16_t)(3 * i);
    }
    __atomic_store_n(&a->idx, 64, __ATOMIC_RELEASE);
    F->dev->ops->notify(F->dev, 0);
    F->dev->status = 0; /* the transport's order: status first, then ops->reset */
    F->dev->ops->reset(F->dev);
    after = u->idx;
    assert_true(after <= 64);
    usleep(20000);
    assert_int_equal(u->idx, after);
    /* A notify after reset does nothing. */
    F->dev->ops->notify(F->dev, 0);
    assert_int_equal(u->idx, after);
}

static int setup_limited(void **state)
{
    struct rate_limit_config lim = {.bytes_per_s = 1 * MiB};
    return setup_rl(state, &lim);
}

/* 1 MiB/s with a 1 MiB bucket: the first 1 MiB goes at once, the next 512 KiB waits ~0.5 s
 * (parked, resumed by the timer on the event loop). */
static void test_rate_limited(void **state)
{
    uint64_t t0, dt;

    (void)state;
    t0 = time_now_ns();
    for (int i = 0; i < 4; i++)
        assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 256 * 1024, NULL), VIRTIO_BLK_S_OK);
    assert_true(time_now_ns() - t0 < 300000000ULL);
    t0 = time_now_ns();
    assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 512 * 1024, NULL), VIRTIO_BLK_S_OK);
    dt = time_now_ns() - t0;
    assert_true(dt >= 450000000ULL);
    /* Flushes cost no bytes (only the unlimited ops bucket): not held up by byte debt. */
    assert_int_equal(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
}

/* Reset while a request is parked by the rate limiter frees it and disarms the timer. */
static void test_reset_while_throttled(void **state)
{
    struct vring_used *u = gp(USED);

    (void)state;
    assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 1024 * 1024, NULL), VIRTIO_BLK_S_OK);
    put_hdr(VIRTIO_BLK_T_IN, 0);
    publish((struct seg[]){{HDR, 16, false}, {DATA, 512 * 1024, true}, {HDR + 32, 1, true}}, 3);
    usleep(10000);
    assert_int_equal(u->idx, 1); /* parked */
    F->dev->status = 0;
    F->dev->ops->reset(F->dev);
    usleep(600000);
    assert_int_equal(u->idx, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_and_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_read_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_layouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_and_write_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_header_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_status_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_device_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_drops_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited, setup_limited, teardown),
        cmocka_unit_test_setup_teardown(test_reset_while_throttled, setup_limited, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
