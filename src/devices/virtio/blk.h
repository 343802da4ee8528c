/* blk.h: inside the block device: the backing image, one request, and the I/O engine (blk_io.c)
 * that virtio_blk.c hands requests to. docs/block.md describes the design and its measurements. */
#ifndef KILN_VIRTIO_BLK_INTERNAL_H
#define KILN_VIRTIO_BLK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* The UAPI's config-space struct shares its name with kiln's disk configuration (virtio.h):
 * rename it here, so the device code sees it as struct virtio_blk_config_space. */
#define virtio_blk_config virtio_blk_config_space
#include <linux/virtio_blk.h>
#undef virtio_blk_config

#define BLK_SECTOR              512ULL
#define BLK_WORKERS             4 /* threads per disk (docs/block.md: measured on 2 and 4) */
#define BLK_DISCARD_MAX_SEG     32
#define BLK_DISCARD_MAX_SECTORS (1U << 22) /* 2 GiB per range */
#define BLK_STATUS_AGAIN        0xff /* blk_execute(nowait): would block, run it on a worker */

/* The host side of one disk; fixed after create. */
struct blk_disk {
    int fd;
    bool read_only;
    bool can_punch;    /* fallocate(PUNCH_HOLE) works: DISCARD and WRITE_ZEROES offered */
    bool can_nowait;   /* preadv2(RWF_NOWAIT) works: cached reads complete inline */
    uint64_t capacity; /* 512-byte sectors */
    char serial[VIRTIO_BLK_ID_BYTES]; /* GET_ID answer, not NUL-terminated when full */
};

/* One request, parsed and range-checked by virtio_blk.c. */
struct blk_req {
    struct blk_req *next;
    uint64_t session; /* the device session it belongs to: a reset drops older ones */
    uint32_t type;    /* VIRTIO_BLK_T_* */
    uint64_t sector;
    uint64_t len;     /* bytes in iov[] */
    uint8_t *status;  /* the status byte in guest memory */
    uint16_t head;    /* chain to push back */
    uint32_t written; /* used length on success (data bytes written to the guest + 1) */
    unsigned niov;
    struct iovec iov[]; /* data: guest buffers to read into or write from */
};

/* Performs r on d and returns the VIRTIO_BLK_S_* status (the caller stores it). With nowait,
 * only a read may run, with RWF_NOWAIT: BLK_STATUS_AGAIN unless the page cache held it all.
 * Safe on any thread; touches guest memory only through r->iov. */
uint8_t blk_execute(const struct blk_disk *d, struct blk_req *r, bool nowait);

/* A pool of BLK_WORKERS threads running blk_execute(). Shares the device's lock: submit and
 * drain are called with it held, and `complete` is called with it held, on a worker thread. */
typedef void (*blk_complete_fn)(void *opaque, struct blk_req *r, uint8_t status);

struct blk_pool {
    pthread_mutex_t *lock;
    pthread_cond_t work, idle;
    struct blk_req *head, *tail; /* queued, not yet started */
    unsigned running;            /* started, not yet completed */
    bool stopping;
    unsigned nthreads;
    pthread_t threads[BLK_WORKERS];
    const struct blk_disk *disk;
    blk_complete_fn complete;
    void *opaque;
};

/* Starts the workers. Returns 0 or -errno (nothing left running). */
int blk_pool_start(struct blk_pool *p, pthread_mutex_t *lock, const struct blk_disk *disk,
                   blk_complete_fn complete, void *opaque);
/* Queues r (lock held). */
void blk_pool_submit(struct blk_pool *p, struct blk_req *r);
/* Frees queued requests without running them and waits until the running ones completed (lock
 * held; released while waiting). Afterwards no worker touches guest memory until the next
 * submit. */
void blk_pool_drain(struct blk_pool *p);
/* Drains, stops and joins the workers (lock NOT held). */
void blk_pool_stop(struct blk_pool *p);

#endif
