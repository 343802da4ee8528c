/* net_io.c: the net device's data path: guest chains to tap frames and back, on the event loop
 * (docs/net.md). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/lib.h"
#include "net.h"

#define RX_BUDGET   64 /* frames per run, so one busy direction cannot starve the loop */
#define TX_BUDGET   64 /* chains per run; more work continues through the kick eventfd */
#define LOG_EVERY   (1000000000ULL)
#define THROTTLE_NS (100000ULL) /* shortest rate-limiter retry: below this a timer costs more */

static void fail(struct net *net, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct net *net, const char *fmt, ...)
{
    va_list ap;

    if (!net->fail_pending) {
        va_start(ap, fmt);
        vsnprintf(net->fail_why, sizeof(net->fail_why), fmt, ap);
        va_end(ap);
        net->fail_pending = true;
    }
    net->active = false;
}

/* Guest-triggerable, so at most one line a second, with the running total. */
static void drop_log(struct net *net, const char *what, uint64_t total)
{
    uint64_t now = time_now_ns();

    if (now - net->drop_log_ns < LOG_EVERY && net->drop_log_ns)
        return;
    net->drop_log_ns = now;
    log_warn("virtio-%s: %s (%llu so far)", net->dev->name, what, (unsigned long long)total);
}

/* Registers the tap for the events the device wants now: EPOLLIN while frames can go somewhere,
 * EPOLLOUT while a frame waits for room. */
void net_update_watch(struct net *net)
{
    uint32_t want = 0;
    int ret;

    if (net->active && !net->dev->failed) {
        if (!net->rx_throttled && !net->rx_no_buffers && !net->rx_dead)
            want |= EPOLLIN;
        if (net->tx_blocked)
            want |= EPOLLOUT;
    }
    if (want == net->tap_events)
        return;
    if (net->tap_events)
        evloop_del(net->loop, net->tap_fd);
    net->tap_events = 0;
    if (!want)
        return;
    ret = evloop_add(net->loop, net->tap_fd, want, net_tap_ready, net);
    if (ret < 0)
        fail(net, "cannot watch the tap: %s", strerror(-ret));
    else
        net->tap_events = want;
}

static void arm_timer(int fd, uint64_t ns)
{
    struct itimerspec its = {0};

    if (ns < THROTTLE_NS)
        ns = THROTTLE_NS;
    its.it_value.tv_sec = (time_t)(ns / 1000000000ULL);
    its.it_value.tv_nsec = (long)(ns % 1000000000ULL);
    (void)timerfd_settime(fd, 0, &its, NULL);
}

/* Takes tokens for one frame; when the bucket is empty, stops the direction until the timer. */
static bool charge(struct rate_limiter *rl, int timer, bool *throttled, uint64_t *count,
                   uint64_t bytes)
{
    uint64_t now = time_now_ns();

    if (ratelimit_take(rl, bytes, now))
        return true;
    arm_timer(timer, ratelimit_wait_ns(rl, bytes, now));
    *throttled = true;
    (*count)++;
    return false;
}

/* Ends a processing pass: raises the device failure and the used-ring interrupts the pass asked
 * for (once per pass, not per frame), then drops the lock. Both run under net->lock, so a reset
 * (which takes it) never overlaps them; they take no transport lock. */
void net_finish(struct net *net)
{
    net_update_watch(net);
    if (net->fail_pending)
        virtio_dev_fail(net->dev, "%s", net->fail_why);
    if (net->rx_used_added)
        virtio_dev_notify_used(net->dev, NET_RXQ);
    if (net->tx_used_added)
        virtio_dev_notify_used(net->dev, NET_TXQ);
    net->rx_used_added = net->tx_used_added = net->fail_pending = false;
    pthread_mutex_unlock(&net->lock);
}

static bool can_run(struct net *net)
{
    if (net->active && !virtio_dev_running(net->dev))
        net->active = false; /* reset under way, or failed: stop watching */
    return net->active;
}

/* ---- transmit: guest -> tap ------------------------------------------------------------------ */
void net_tx_process(struct net *net)
{
    struct virtq *q = &net->dev->queues[NET_TXQ];
    struct virtq_chain *c = &net->tx_chain;
    unsigned budget = TX_BUDGET;
    char why[128];
    ssize_t n;
    int r;

    if (!can_run(net) || net->tx_off || net->tx_throttled || net->tx_blocked)
        return;
    virtq_set_notify(q, false); /* draining anyway */
    for (;;) {
        if (!net->tx_pending) {
            if (budget-- == 0) {
                uint64_t one = 1;
                (void)!write(net->kick_fd, &one, sizeof(one)); /* come back after the others */
                return;
            }
            r = virtq_pop(q, c, why, sizeof(why));
            if (r < 0) {
                fail(net, "tx queue: %s", why);
                return;
            }
            if (r == 0) {
                virtq_set_notify(q, true);
                if (virtq_has_work(q))
                    continue;
                return;
            }
            if (c->nwr) {
                fail(net, "tx chain %u has a device-writable buffer", c->head);
                return;
            }
            if (c->rd_len < NET_HDR_LEN) {
                fail(net, "tx chain %u holds %llu bytes, less than the %u-byte header", c->head,
                     (unsigned long long)c->rd_len, NET_HDR_LEN);
                return;
            }
            net->tx_pending = true;
            net->tx_charged = !net->tx_limited;
        }
        if (!net->tx_charged) {
            if (!charge(&net->tx_rl, net->tx_timer, &net->tx_throttled, &net->stats.tx_throttled,
                        c->rd_len - NET_HDR_LEN))
                return;
            net->tx_charged = true;
        }
        /* The header goes to the tap as it is: the tap speaks the same 12-byte layout. */
        n = writev(net->tap_fd, c->rd, (int)c->nrd);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            net->tx_blocked = true; /* the chain stays pending until EPOLLOUT */
            return;
        }
        if (n < 0) {
            net->stats.tx_errors++;
            drop_log(net, "the tap refused a frame from the guest", net->stats.tx_errors);
        } else {
            net->stats.tx_packets++;
            net->stats.tx_bytes += c->rd_len - NET_HDR_LEN;
        }
        virtq_push(q, c->head, 0);
        net->tx_pending = false;
        net->tx_used_added = true;
    }
}

/* ---- receive: tap -> guest ------------------------------------------------------------------- */
/* True if the guest has rx buffers; otherwise asks it to notify when it adds some. */
static bool rx_has_buffers(struct net *net)
{
    struct virtq *q = &net->dev->queues[NET_RXQ];

    if (!virtq_has_work(q)) {
        virtq_set_notify(q, true);
        if (!virtq_has_work(q)) {
            net->rx_no_buffers = true;
            return false;
        }
    }
    net->rx_no_buffers = false;
    return true;
}

/* Reads one frame. Returns 1 with a frame pending, 0 when the tap has none, 2 after dropping a
 * bad one. */
static int rx_read(struct net *net)
{
    ssize_t n;

    do
        n = read(net->tap_fd, net->frame, NET_FRAME_MAX);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n <= 0) {
        log_error("virtio-%s: reading the tap failed (%s); no more frames reach the guest",
                  net->dev->name, n < 0 ? strerror(errno) : "end of file");
        net->rx_dead = true;
        return 0;
    }
    /* The tap reports a frame's full length even when it had to cut it to fit. */
    if ((size_t)n > NET_FRAME_MAX || (size_t)n < NET_HDR_LEN) {
        net->stats.rx_dropped++;
        drop_log(net, "dropped a truncated or headerless frame from the tap",
                 net->stats.rx_dropped);
        return 2;
    }
    net->frame_len = (size_t)n;
    net->frame_off = 0;
    net->frame_pending = true;
    net->frame_charged = !net->rx_limited;
    return 1;
}

static uint8_t *iov_byte(const struct iovec *iov, unsigned niov, size_t off)
{
    for (unsigned i = 0; i < niov; off -= iov[i].iov_len, i++)
        if (off < iov[i].iov_len)
            return (uint8_t *)iov[i].iov_base + off;
    return NULL;
}

static void rx_complete(struct net *net, bool dropped)
{
    struct virtq *q = &net->dev->queues[NET_RXQ];

    if (dropped) {
        /* Returned empty: Linux counts a length error and reposts the buffers. */
        for (unsigned i = 0; i < net->nused; i++)
            net->used[i].len = 0;
        net->stats.rx_dropped++;
        drop_log(net, "dropped a frame larger than the receive buffers the guest offered",
                 net->stats.rx_dropped);
    } else {
        *net->num_buffers[0] = (uint8_t)net->nused; /* little-endian u16 */
        *net->num_buffers[1] = (uint8_t)(net->nused >> 8);
        net->stats.rx_packets++;
        net->stats.rx_bytes += net->frame_len - NET_HDR_LEN;
    }
    for (unsigned i = 0; i < net->nused; i++)
        virtq_push(q, net->used[i].head, net->used[i].len);
    net->nused = 0;
    net->frame_pending = false;
    net->rx_used_added = true;
}

/* Copies the pending frame into guest chains. Returns 1 when it is done with the frame, 0 when
 * it waits for buffers, -1 after failing the device. */
static int rx_deliver(struct net *net)
{
    struct virtq *q = &net->dev->queues[NET_RXQ];
    struct virtq_chain *c = &net->rx_chain;
    char why[128];
    size_t len;
    int r;

    while (net->frame_off < net->frame_len) {
        r = virtq_pop(q, c, why, sizeof(why));
        if (r < 0) {
            fail(net, "rx queue: %s", why);
            return -1;
        }
        if (r == 0) {
            if (rx_has_buffers(net))
                continue;
            return 0;
        }
        if (c->nrd) {
            fail(net, "rx chain %u has a device-readable buffer", c->head);
            return -1;
        }
        if (c->wr_len < NET_HDR_LEN) {
            fail(net, "rx chain %u holds %llu bytes, less than the %u-byte header", c->head,
                 (unsigned long long)c->wr_len, NET_HDR_LEN);
            return -1;
        }
        if (net->nused == 0) {
            net->num_buffers[0] =
                iov_byte(c->wr, c->nwr, offsetof(struct virtio_net_hdr_v1, num_buffers));
            net->num_buffers[1] =
                iov_byte(c->wr, c->nwr, offsetof(struct virtio_net_hdr_v1, num_buffers) + 1);
        }
        len = net->frame_len - net->frame_off;
        if (len > c->wr_len)
            len = (size_t)c->wr_len;
        iov_copy_to(c->wr, c->nwr, 0, net->frame + net->frame_off, len);
        net->used[net->nused].head = c->head;
        net->used[net->nused].len = (uint32_t)len;
        net->nused++;
        net->frame_off += len;
        /* Without MRG_RXBUF a frame gets one chain; with it, never more than the ring holds. */
        if (net->frame_off < net->frame_len && (!net->mrg || net->nused >= q->size)) {
            rx_complete(net, true);
            return 1;
        }
    }
    rx_complete(net, false);
    return 1;
}

void net_rx_process(struct net *net)
{
    if (!can_run(net) || net->rx_throttled || net->rx_dead)
        return;
    for (unsigned budget = RX_BUDGET; budget; budget--) {
        if (!net->frame_pending) {
            int r;
            /* Frames stay in the tap's queue until the guest has somewhere to put them. */
            if (!rx_has_buffers(net))
                return;
            r = rx_read(net);
            if (r == 0)
                return;
            if (r == 2)
                continue;
        }
        if (!net->frame_charged) {
            if (!charge(&net->rx_rl, net->rx_timer, &net->rx_throttled, &net->stats.rx_throttled,
                        net->frame_len - NET_HDR_LEN))
                return;
            net->frame_charged = true;
        }
        if (rx_deliver(net) <= 0)
            return;
    }
}
