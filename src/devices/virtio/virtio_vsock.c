/* virtio_vsock.c: the virtio-vsock device: its rx/tx/event queues, config space and event-loop
 * entry points; connections live in vsock_conn.c, host sockets in vsock_host.c (docs/vsock.md). */
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

/* Unlocks, then does what must not run under vs->lock: fail the device, interrupt the guest
 * (once per batch and queue). */
static void leave(struct vsock_dev *vs)
{
    char why[sizeof(vs->fail_why)];
    bool rx = vs->rx_used, tx = vs->tx_used, evt = vs->evt_used;

    vsock_conn_reap(vs);
    memcpy(why, vs->fail_why, sizeof(why));
    vs->fail_why[0] = '\0';
    vs->rx_used = vs->tx_used = vs->evt_used = false;
    pthread_mutex_unlock(&vs->lock);
    if (why[0])
        virtio_dev_fail(vs->dev, "%s", why);
    if (tx)
        virtio_dev_notify_used(vs->dev, VSOCK_QUEUE_TX);
    if (rx)
        virtio_dev_notify_used(vs->dev, VSOCK_QUEUE_RX);
    if (evt)
        virtio_dev_notify_used(vs->dev, VSOCK_QUEUE_EVT);
}

static bool running(struct vsock_dev *vs)
{
    return !vs->fail_why[0] && virtio_dev_running(vs->dev);
}

/* Pops rx chains into the stash until it holds `want` (or the ring is empty). */
static unsigned stash_fill(struct vsock_dev *vs, unsigned want)
{
    struct virtq *q = &vs->dev->queues[VSOCK_QUEUE_RX];
    char why[128];

    while (vs->nstash < want) {
        struct virtq_chain *ch = &vs->stash[vs->nstash];
        int r = virtq_pop(q, ch, why, sizeof(why));
        if (r == 0)
            break;
        if (r < 0) {
            vsock_fail(vs, "vsock: rx queue: %s", why);
            break;
        }
        if (ch->wr_len < VSOCK_HDR_SIZE) {
            vsock_fail(vs, "vsock: rx buffer of %llu bytes cannot hold a %u-byte header",
                       (unsigned long long)ch->wr_len, VSOCK_HDR_SIZE);
            break;
        }
        vs->nstash++;
    }
    return vs->nstash;
}

static void rx_push(struct vsock_dev *vs, struct virtq_chain *ch, const struct vsock_hdr *h)
{
    iov_copy_to(ch->wr, ch->nwr, 0, h, VSOCK_HDR_SIZE);
    virtq_push(&vs->dev->queues[VSOCK_QUEUE_RX], ch->head, VSOCK_HDR_SIZE + h->len);
    vs->rx_used = true;
    vs->stat_rx_pkts++;
}

/* Sends one header-only packet; false when the guest has no rx buffer. */
static bool rx_control(struct vsock_dev *vs, const struct vsock_hdr *h)
{
    if (!stash_fill(vs, 1))
        return false;
    rx_push(vs, &vs->stash[--vs->nstash], h);
    return true;
}

/* Reads host data for c straight into the guest's rx buffers: one readv() over up to
 * VSOCK_RX_BATCH chains, at most the guest's credit and VSOCK_MAX_PKT per turn (fairness).
 * Returns false when the guest has no rx buffer. */
static bool rx_data(struct vsock_dev *vs, struct vsock_conn *c)
{
    static struct iovec iov[1024]; /* event-loop thread only */
    uint32_t plan[VSOCK_RX_BATCH], budget = vsock_conn_peer_credit(c), total = 0;
    unsigned niov = 0, nch = 0, have;
    struct vsock_hdr h;
    ssize_t n;

    if (budget > VSOCK_MAX_PKT)
        budget = VSOCK_MAX_PKT;
    have = stash_fill(vs, VSOCK_RX_BATCH);
    if (!have)
        return false;
    while (nch < have && total < budget) {
        struct virtq_chain *ch = &vs->stash[have - 1 - nch];
        uint64_t cap = ch->wr_len - VSOCK_HDR_SIZE;
        size_t skip = VSOCK_HDR_SIZE;
        uint32_t want = (uint32_t)(cap < budget - total ? cap : budget - total);
        uint32_t left = want;

        if (want == 0 || niov + ch->nwr > ARRAY_SIZE(iov))
            break;
        for (unsigned i = 0; i < ch->nwr && left; i++) {
            size_t len = ch->wr[i].iov_len;
            if (skip >= len) {
                skip -= len;
                continue;
            }
            len -= skip;
            if (len > left)
                len = left;
            iov[niov++] = (struct iovec){(uint8_t *)ch->wr[i].iov_base + skip, len};
            left -= (uint32_t)len;
            skip = 0;
        }
        plan[nch++] = want;
        total += want;
    }
    if (nch == 0) {
        /* Only header-sized buffers: they cannot carry data, so the guest is broken. */
        vsock_fail(vs, "vsock: rx buffers leave no room for data");
        return false;
    }
    do
        n = readv(c->fd, iov, (int)niov);
    while (n < 0 && errno == EINTR);
    vs->stat_rx_reads++;
    if (n < 0) {
        if (errno == EAGAIN)
            c->readable = false;
        else
            vsock_conn_reset(c); /* ECONNRESET: the host peer broke the connection */
        return true;
    }
    if (n == 0) {
        c->host_eof = true; /* the host peer will send no more: SHUTDOWN(SEND) */
        c->pending |= VSOCK_PEND_SHUTDOWN;
        c->shut_send |= VSOCK_SHUTDOWN_SEND;
        return true;
    }
    if ((uint32_t)n < total)
        c->readable = false; /* a short read on a stream socket: drained */
    vsock_hdr_fill(vs, c, &h, VSOCK_OP_RW, c->host_port, c->guest_port);
    for (unsigned k = 0; k < nch && n > 0; k++) {
        h.len = (uint32_t)n < plan[k] ? (uint32_t)n : plan[k];
        rx_push(vs, &vs->stash[have - 1 - k], &h);
        n -= h.len;
        c->tx_cnt += h.len;
        vs->nstash--;
    }
    return true;
}

/* One turn of c on the rx queue: a control packet, or a batch of data. False: no rx buffer. */
static bool rx_turn(struct vsock_dev *vs, struct vsock_conn *c)
{
    struct vsock_hdr h;
    uint32_t bit;
    uint16_t op;

    if ((c->pending & VSOCK_PEND_CREDIT_UPDATE) && vsock_conn_can_send(c))
        c->pending &= ~VSOCK_PEND_CREDIT_UPDATE; /* the data carries fwd_cnt */
    if (c->pending & VSOCK_PEND_REQUEST) {
        bit = VSOCK_PEND_REQUEST, op = VSOCK_OP_REQUEST;
    } else if (c->pending & VSOCK_PEND_RESPONSE) {
        bit = VSOCK_PEND_RESPONSE, op = VSOCK_OP_RESPONSE;
    } else if (c->pending & VSOCK_PEND_CREDIT_UPDATE) {
        bit = VSOCK_PEND_CREDIT_UPDATE, op = VSOCK_OP_CREDIT_UPDATE;
    } else if (c->pending & VSOCK_PEND_CREDIT_REQUEST) {
        bit = VSOCK_PEND_CREDIT_REQUEST, op = VSOCK_OP_CREDIT_REQUEST;
    } else if (vsock_conn_can_send(c)) {
        return rx_data(vs, c);
    } else if (c->pending & VSOCK_PEND_SHUTDOWN) {
        bit = VSOCK_PEND_SHUTDOWN, op = VSOCK_OP_SHUTDOWN;
    } else {
        return true;
    }
    vsock_hdr_fill(vs, c, &h, op, c->host_port, c->guest_port);
    if (op == VSOCK_OP_SHUTDOWN)
        h.flags = c->shut_send;
    if (!rx_control(vs, &h))
        return false;
    c->pending &= ~bit;
    if (op == VSOCK_OP_REQUEST) {
        c->deadline_ns = time_now_ns() + VSOCK_CONNECT_TIMEOUT_NS;
        vsock_host_arm_timer(vs);
    }
    return true;
}

void vsock_rx_pump(struct vsock_dev *vs)
{
    while (running(vs)) {
        struct vsock_conn *c = vs->rxq_head;

        if (vs->rst_count) {
            struct vsock_rst *r = &vs->rst[vs->rst_head];
            struct vsock_hdr h;
            vsock_hdr_fill(vs, NULL, &h, VSOCK_OP_RST, r->host_port, r->guest_port);
            if (!rx_control(vs, &h))
                return;
            vs->rst_head = (vs->rst_head + 1) % VSOCK_RST_RING;
            vs->rst_count--;
            continue;
        }
        if (!c)
            return;
        /* Off the queue for its turn; vsock_conn_kick puts it back at the tail if it still
         * owes something (round robin between connections). */
        vs->rxq_head = c->qnext;
        if (vs->rxq_head)
            vs->rxq_head->qprev = NULL;
        else
            vs->rxq_tail = NULL;
        c->qnext = c->qprev = NULL;
        c->queued = false;
        bool more = rx_turn(vs, c);
        vsock_conn_kick(c);
        if (!more)
            return; /* the guest's rx notify resumes us */
    }
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

    while (running(vs) && (r = virtq_pop(q, vs->txc, why, sizeof(why))) != 0) {
        if (r < 0) {
            vsock_fail(vs, "vsock: tx queue: %s", why);
            return;
        }
        tx_chain(vs, vs->txc);
        virtq_push(q, vs->txc->head, 0);
        vs->tx_used = true;
    }
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
    r = running(vs) ? virtq_pop(&dev->queues[VSOCK_QUEUE_EVT], vs->txc, why, sizeof(why)) : 0;
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
    vs->fail_why[0] = '\0';
    pthread_mutex_unlock(&vs->lock);
}

static void destroy(struct virtio_dev *dev)
{
    struct vsock_dev *vs = dev->priv;

    if (!vs)
        return;
    evloop_del(vs->loop, vs->epfd);
    vsock_conn_close_all(vs);
    vsock_conn_reap(vs);
    if (vs->listen_fd >= 0) {
        close(vs->listen_fd);
        unlink(vs->uds_path);
    }
    close(vs->timer_fd);
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
    close(vs->timer_fd);
    close(vs->epfd);
    goto fail_alloc_quiet;
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
