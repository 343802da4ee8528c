/* virtio_vsock.c: the virtio-vsock device: its tx and event queues, config space and event-loop
 * entry points; the rx path is vsock_rx.c, connections vsock_conn.c, host sockets vsock_host.c
 * (docs/vsock.md). */
#include <errno.h>
#include <linux/virtio_ids.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vsock.h"

#define LOG_WINDOW_NS (5ULL * 1000 * 1000 * 1000)
#define LOG_BURST     20

void vsock_log(struct vsock_dev *vs, const char *fmt, ...)
{
    uint64_t now = time_now_ns();
    char msg[256];
    va_list ap;

    if (now - vs->log_window_ns > LOG_WINDOW_NS) {
        if (vs->log_dropped)
            log_warn("vsock: %u similar messages suppressed", vs->log_dropped);
        vs->log_window_ns = now;
        vs->log_count = vs->log_dropped = 0;
    }
    if (vs->log_count >= LOG_BURST) {
        vs->log_dropped++;
        return;
    }
    vs->log_count++;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_warn("%s", msg);
}

void vsock_fail(struct vsock_dev *vs, const char *fmt, ...)
{
    va_list ap;

    if (vs->fail_why[0])
        return;
    va_start(ap, fmt);
    vsnprintf(vs->fail_why, sizeof(vs->fail_why), fmt, ap);
    va_end(ap);
}

static void enter(struct vsock_dev *vs)
{
    pthread_mutex_lock(&vs->lock);
}

/* Tx completions only let the driver free its buffers: nothing in the guest waits for them, so
 * their interrupt rides on the next rx one (the driver's handler walks every queue), saving the
 * guest an interrupt and its two register exits per message. Signalled at once when half the
 * tx ring is waiting, or after VSOCK_TX_IRQ_DELAY_NS without rx traffic. Under vs->lock;
 * returns true when the tx interrupt should go out now. */
static bool tx_irq_now(struct vsock_dev *vs, bool rx_irq)
{
    const struct virtq *q = &vs->dev->queues[VSOCK_QUEUE_TX];
    struct itimerspec its = {.it_value = {.tv_nsec = VSOCK_TX_IRQ_DELAY_NS}};

    if (vs->tx_used)
        vs->tx_irq_owed = true;
    if (!vs->tx_irq_owed)
        return false;
    if (rx_irq || vs->tx_irq_due || (uint16_t)(q->used_idx - q->signalled_used) >= q->size / 2) {
        vs->tx_irq_owed = vs->tx_irq_due = false;
        if (vs->txirq_armed) {
            struct itimerspec off = {0};
            timerfd_settime(vs->txirq_fd, 0, &off, NULL);
            vs->txirq_armed = false;
        }
        return true;
    }
    if (!vs->txirq_armed && timerfd_settime(vs->txirq_fd, 0, &its, NULL) == 0)
        vs->txirq_armed = true;
    else if (!vs->txirq_armed) {
        vs->tx_irq_owed = false; /* no timer: do not hold it back */
        return true;
    }
    return false;
}

/* Unlocks, then does what must not run under vs->lock: fail the device, interrupt the guest
 * (once per batch, for every queue that has news). */
static void leave(struct vsock_dev *vs)
{
    char why[sizeof(vs->fail_why)];
    unsigned mask =
        (vs->rx_used ? 1u << VSOCK_QUEUE_RX : 0) | (vs->evt_used ? 1u << VSOCK_QUEUE_EVT : 0);

    if (tx_irq_now(vs, mask != 0))
        mask |= 1u << VSOCK_QUEUE_TX;
    vsock_conn_reap(vs);
    memcpy(why, vs->fail_why, sizeof(why));
    vs->fail_why[0] = '\0';
    vs->rx_used = vs->tx_used = vs->evt_used = false;
    pthread_mutex_unlock(&vs->lock);
    if (why[0])
        virtio_dev_fail(vs->dev, "%s", why);
    if (mask)
        virtio_dev_notify_used_mask(vs->dev, mask);
}

bool vsock_running(struct vsock_dev *vs)
{
    return !vs->fail_why[0] && virtio_dev_running(vs->dev);
}

/* A wrong address, type or length: drop it, and reset the connection it names if any. */
static void bad_packet(struct vsock_dev *vs, const struct vsock_hdr *h, bool reset)
{
    struct vsock_conn *c;

    if (!reset)
        return;
    c = vsock_conn_find(vs, h->dst_port, h->src_port);
    if (c)
        vsock_conn_reset(c);
    else if (h->op != VSOCK_OP_RST)
        vsock_owe_rst(vs, h->dst_port, h->src_port);
}

static void tx_chain(struct vsock_dev *vs, const struct virtq_chain *ch)
{
    struct vsock_hdr h;

    if (ch->nwr) {
        vsock_fail(vs, "vsock: tx chain %u has device-writable buffers", ch->head);
        return;
    }
    if (ch->rd_len < VSOCK_HDR_SIZE) {
        vsock_fail(vs, "vsock: tx chain %u holds %llu bytes, less than a %u-byte header", ch->head,
                   (unsigned long long)ch->rd_len, VSOCK_HDR_SIZE);
        return;
    }
    iov_copy_from(ch->rd, ch->nrd, 0, &h, VSOCK_HDR_SIZE);
    vs->stat_tx_pkts++;
    vs->stat_tx_ops[h.op < ARRAY_SIZE(vs->stat_tx_ops) ? h.op : 0]++;
    if (h.src_cid != vs->guest_cid || h.dst_cid != VSOCK_HOST_CID) {
        vsock_log(vs, "vsock: dropping a packet from cid %llu to cid %llu (guest is %llu, host 2)",
                  (unsigned long long)h.src_cid, (unsigned long long)h.dst_cid,
                  (unsigned long long)vs->guest_cid);
        return;
    }
    if (h.type != VSOCK_TYPE_STREAM) {
        vsock_log(vs, "vsock: packet of type %u from guest port %u: only streams (1)", h.type,
                  h.src_port);
        bad_packet(vs, &h, true);
        return;
    }
    if (h.len > ch->rd_len - VSOCK_HDR_SIZE || h.len > VSOCK_MAX_PKT ||
        (h.len && h.op != VSOCK_OP_RW)) {
        vsock_log(vs,
                  "vsock: packet op %u from guest port %u claims %u bytes; the chain holds "
                  "%llu, the limit is %u",
                  h.op, h.src_port, h.len, (unsigned long long)(ch->rd_len - VSOCK_HDR_SIZE),
                  VSOCK_MAX_PKT);
        bad_packet(vs, &h, true);
        return;
    }
    vsock_conn_packet(vs, &h, ch->rd, ch->nrd, VSOCK_HDR_SIZE);
}

static void tx_process(struct vsock_dev *vs)
{
    struct virtq *q = &vs->dev->queues[VSOCK_QUEUE_TX];
    char why[128];
    int r;

    while (vsock_running(vs) && (r = virtq_pop(q, vs->txc, why, sizeof(why))) != 0) {
        if (r < 0) {
            vsock_fail(vs, "vsock: tx queue: %s", why);
            return;
        }
        tx_chain(vs, vs->txc);
        virtq_push(q, vs->txc->head, 0);
        vs->tx_used = true;
    }
}

static void txirq_fired(struct vsock_dev *vs)
{
    uint64_t ticks;

    (void)!read(vs->txirq_fd, &ticks, sizeof(ticks));
    vs->txirq_armed = false;
    vs->tx_irq_due = vs->tx_irq_owed;
}

void vsock_poll(struct virtio_dev *dev)
{
    struct vsock_dev *vs = dev->priv;
    struct epoll_event evs[64];
    int n;

    enter(vs);
    do {
        n = epoll_wait(vs->epfd, evs, (int)ARRAY_SIZE(evs), 0);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &vs->listen_tag)
                vsock_host_accept(vs);
            else if (p == &vs->timer_tag)
                vsock_host_timer(vs);
            else if (p == &vs->txirq_tag)
                txirq_fired(vs);
            else
                vsock_conn_event(p, evs[i].events);
        }
    } while (n == (int)ARRAY_SIZE(evs));
    vsock_rx_pump(vs);
    leave(vs);
}

static void poll_cb(void *opaque, uint32_t events)
{
    (void)events;
    vsock_poll(opaque);
}

static void notify(struct virtio_dev *dev, unsigned index)
{
    struct vsock_dev *vs = dev->priv;

    enter(vs);
    if (index == VSOCK_QUEUE_TX)
        tx_process(vs);
    vsock_rx_pump(vs); /* new rx buffers, or packets the tx queue owes the guest */
    leave(vs);
}

int vsock_send_transport_reset(struct virtio_dev *dev)
{
    struct vsock_dev *vs = dev->priv;
    uint32_t ev = VSOCK_EVENT_TRANSPORT_RESET;
    char why[128];
    int r, ret = -EAGAIN;

    enter(vs);
    r = vsock_running(vs) ? virtq_pop(&dev->queues[VSOCK_QUEUE_EVT], vs->txc, why, sizeof(why)) : 0;
    if (r < 0)
        vsock_fail(vs, "vsock: event queue: %s", why);
    if (r > 0 && vs->txc->wr_len < sizeof(ev))
        vsock_fail(vs, "vsock: event buffer of %llu bytes", (unsigned long long)vs->txc->wr_len);
    else if (r > 0) {
        iov_copy_to(vs->txc->wr, vs->txc->nwr, 0, &ev, sizeof(ev));
        virtq_push(&dev->queues[VSOCK_QUEUE_EVT], vs->txc->head, sizeof(ev));
        vs->evt_used = true;
        ret = 0;
    }
    leave(vs);
    return ret;
}

static void config_read(struct virtio_dev *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct vsock_dev *vs = dev->priv;
    uint64_t cfg = vs->guest_cid; /* le64 guest_cid; x86 is little-endian */

    for (uint32_t i = 0; i < len; i++)
        data[i] = (uint64_t)offset + i < sizeof(cfg) ? ((uint8_t *)&cfg)[offset + i] : 0;
}

static int activate(struct virtio_dev *dev)
{
    (void)dev; /* the driver's rx notify starts the pump */
    return 0;
}

/* Driver reset (vCPU thread): every connection ends; host clients see EOF. */
static void reset(struct virtio_dev *dev)
{
    struct vsock_dev *vs = dev->priv;

    pthread_mutex_lock(&vs->lock);
    vsock_conn_close_all(vs);
    vsock_conn_reap(vs);
    vs->nstash = 0; /* those chains belong to the driver's previous session */
    vs->tx_irq_owed = vs->tx_irq_due = false;
    vs->fail_why[0] = '\0';
    pthread_mutex_unlock(&vs->lock);
}

static void destroy(struct virtio_dev *dev)
{
    struct vsock_dev *vs = dev->priv;

    if (!vs)
        return;
    if (vs->stat_tx_pkts || vs->stat_rx_pkts)
        log_info("vsock: stats tx_pkts=%llu (request %llu response %llu rst %llu shutdown %llu "
                 "rw %llu credit_update %llu credit_request %llu) rx_pkts=%llu rx_reads=%llu",
                 (unsigned long long)vs->stat_tx_pkts, (unsigned long long)vs->stat_tx_ops[1],
                 (unsigned long long)vs->stat_tx_ops[2], (unsigned long long)vs->stat_tx_ops[3],
                 (unsigned long long)vs->stat_tx_ops[4], (unsigned long long)vs->stat_tx_ops[5],
                 (unsigned long long)vs->stat_tx_ops[6], (unsigned long long)vs->stat_tx_ops[7],
                 (unsigned long long)vs->stat_rx_pkts, (unsigned long long)vs->stat_rx_reads);
    evloop_del(vs->loop, vs->epfd);
    vsock_conn_close_all(vs);
    vsock_conn_reap(vs);
    if (vs->listen_fd >= 0) {
        close(vs->listen_fd);
        unlink(vs->uds_path);
    }
    close(vs->timer_fd);
    close(vs->txirq_fd);
    close(vs->epfd);
    pthread_mutex_destroy(&vs->lock);
    free(vs->stash);
    free(vs->txc);
    free(vs);
    dev->priv = NULL;
}

static const struct virtio_dev_ops vsock_ops = {
    .config_read = config_read,
    .activate = activate,
    .reset = reset,
    .notify = notify,
    .destroy = destroy,
};

struct virtio_dev *virtio_vsock_create(const struct virtio_env *env,
                                       const struct virtio_vsock_config *cfg, char *err,
                                       size_t errlen)
{
    struct epoll_event ev = {.events = EPOLLIN};
    struct virtio_dev *dev;
    struct vsock_dev *vs;
    size_t plen = cfg->uds_path ? strlen(cfg->uds_path) : 0;

    if (cfg->guest_cid < 3 || cfg->guest_cid >= UINT32_MAX) {
        snprintf(err, errlen, "vsock: guest CID %llu is reserved; use 3..4294967294",
                 (unsigned long long)cfg->guest_cid);
        errno = EINVAL;
        return NULL;
    }
    /* Room for the longest "<uds_path>_<port>" of a guest-initiated connection. */
    if (plen == 0 || plen + sizeof("_4294967295") > sizeof(((struct vsock_dev *)0)->uds_path)) {
        snprintf(err, errlen, "vsock: socket path '%s' must be 1..%zu characters",
                 cfg->uds_path ? cfg->uds_path : "",
                 sizeof(((struct vsock_dev *)0)->uds_path) - sizeof("_4294967295"));
        errno = EINVAL;
        return NULL;
    }
    dev = virtio_dev_alloc();
    vs = calloc(1, sizeof(*vs));
    if (!dev || !vs)
        goto fail_alloc;
    vs->stash = calloc(VSOCK_RX_BATCH, sizeof(*vs->stash));
    vs->txc = calloc(1, sizeof(*vs->txc));
    if (!vs->stash || !vs->txc)
        goto fail_alloc;
    vs->dev = dev;
    vs->loop = env->loop;
    vs->guest_cid = cfg->guest_cid;
    vs->next_port = VSOCK_PORT_MIN;
    vs->listen_fd = -1;
    memcpy(vs->uds_path, cfg->uds_path, plen + 1);
    pthread_mutex_init(&vs->lock, NULL);
    vs->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (vs->epfd < 0)
        goto fail_sys;
    vs->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (vs->timer_fd < 0)
        goto fail_epoll;
    ev.data.ptr = &vs->timer_tag;
    if (epoll_ctl(vs->epfd, EPOLL_CTL_ADD, vs->timer_fd, &ev) < 0)
        goto fail_timer;
    vs->txirq_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (vs->txirq_fd < 0)
        goto fail_timer;
    ev.data.ptr = &vs->txirq_tag;
    if (epoll_ctl(vs->epfd, EPOLL_CTL_ADD, vs->txirq_fd, &ev) < 0)
        goto fail_txirq;
    if (vsock_host_listen(vs, err, errlen) < 0)
        goto fail_timer_quiet;
    /* The connections' sockets sit in the device's own epoll set (any number of them, edge
     * triggered); the event loop watches that one fd. */
    if (evloop_add(env->loop, vs->epfd, EPOLLIN, poll_cb, dev) < 0)
        goto fail_listen;

    dev->ops = &vsock_ops;
    dev->name = "vsock";
    dev->device_id = VIRTIO_ID_VSOCK;
    dev->features = 0; /* streams only (no VSOCK_F_SEQPACKET) */
    dev->nqueues = 3;
    for (unsigned i = 0; i < 3; i++)
        dev->queue_max[i] = VIRTQ_MAX_SIZE;
    dev->priv = vs;
    return dev;

fail_listen:
    snprintf(err, errlen, "vsock: cannot watch the device's sockets: %s", strerror(errno));
    close(vs->listen_fd);
    unlink(vs->uds_path);
fail_timer_quiet:
    close(vs->txirq_fd);
    close(vs->timer_fd);
    close(vs->epfd);
    goto fail_alloc_quiet;
fail_txirq:
    close(vs->txirq_fd);
fail_timer:
    close(vs->timer_fd);
fail_epoll:
    close(vs->epfd);
fail_sys:
    snprintf(err, errlen, "vsock: %s", strerror(errno));
    goto fail_alloc_quiet;
fail_alloc:
    snprintf(err, errlen, "vsock: out of memory");
fail_alloc_quiet:
    if (vs) {
        free(vs->stash);
        free(vs->txc);
        free(vs);
    }
    virtio_dev_destroy(dev);
    errno = errno ? errno : ENOMEM;
    return NULL;
}
