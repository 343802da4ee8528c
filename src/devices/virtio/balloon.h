/* balloon.h: what the balloon device's two files share (virtio_balloon.c: queues, config, stats;
 * virtio_balloon_pages.c: giving pages back). Private to the device; the contract is virtio.h. */
#ifndef KILN_BALLOON_H
#define KILN_BALLOON_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio.h"

#define BALLOON_PAGE 4096ULL /* the balloon's unit, whatever the guest's page size */

struct balloon {
    struct virtio_dev *dev;
    const struct guest_mem *mem;
    struct evloop *loop;
    unsigned stats_period_s;
    int timer_fd; /* stats polling, -1 without a loop or a period */
    int kick_fd;  /* activate() asks the loop thread to look at the queues, -1 without a loop */

    pthread_mutex_t qlock; /* one processing pass at a time; the fields up to `lock` */
    struct virtq_chain chain;
    uint64_t skipped, skipped_unlogged, last_skip_log_ns;
    bool skip_logged;
    uint64_t inflated, deflated, reported_bytes;

    pthread_mutex_t lock; /* everything below */
    uint32_t target;      /* config num_pages: pages the host wants */
    uint32_t actual;      /* config actual: pages the driver says it holds */
    uint32_t announced;   /* the target last reported reached: one message per target */
    bool stats_held;      /* the driver's stats buffer is ours until we ask for fresh values */
    uint16_t stats_head;
    uint64_t mem_free, mem_total, mem_available, stats_ns;
};

/* Queue handlers, called under b->qlock for one popped chain. They return 0 when the chain is
 * to be returned, or -EINVAL after failing the device (virtio_dev_fail) for a malformed chain. */
int balloon_inflate(struct balloon *b, const struct virtq_chain *c);
int balloon_deflate(struct balloon *b, const struct virtq_chain *c);
int balloon_report(struct balloon *b, const struct virtq_chain *c);

#endif
