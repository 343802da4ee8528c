/* vsock_rx.c: the vsock device's rx path: RSTs and control packets owed to the guest, and host
 * data read straight into the guest's rx buffers (docs/vsock.md). */
#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vsock.h"

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
    /* A short read on a stream socket means drained, and the next write will raise a new edge;
     * but once the peer hung up no edge will come for the EOF behind the data: read on. */
    if ((uint32_t)n < total && !c->host_hup)
        c->readable = false;
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
    while (vsock_running(vs)) {
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
