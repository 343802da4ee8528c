/* vsock_conn.c: the vsock connection table, its state machine for guest packets, credit
 * accounting and the guest -> host data path (docs/vsock.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vsock.h"

static unsigned bucket(uint32_t host_port, uint32_t guest_port)
{
    return ((host_port * 0x9E3779B1u) ^ (guest_port * 0x85EBCA6Bu)) & (VSOCK_HASH_SIZE - 1);
}

struct vsock_conn *vsock_conn_new(struct vsock_dev *vs, int fd)
{
    struct vsock_conn *c = calloc(1, sizeof(*c));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};

    if (!c)
        return NULL;
    c->vs = vs;
    c->fd = fd;
    c->writable = true;
    ev.data.ptr = c;
    if (epoll_ctl(vs->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(c);
        return NULL;
    }
    vs->nconns++;
    return c;
}

struct vsock_conn *vsock_conn_find(struct vsock_dev *vs, uint32_t host_port, uint32_t guest_port)
{
    for (struct vsock_conn *c = vs->table[bucket(host_port, guest_port)]; c; c = c->hnext)
        if (c->host_port == host_port && c->guest_port == guest_port)
            return c;
    return NULL;
}

void vsock_conn_hash(struct vsock_conn *c)
{
    struct vsock_conn **head = &c->vs->table[bucket(c->host_port, c->guest_port)];

    c->hnext = *head;
    *head = c;
    c->hashed = true;
}

static void unqueue(struct vsock_conn *c)
{
    struct vsock_dev *vs = c->vs;

    if (!c->queued)
        return;
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        vs->rxq_head = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        vs->rxq_tail = c->qprev;
    c->qnext = c->qprev = NULL;
    c->queued = false;
}

void vsock_conn_close(struct vsock_conn *c)
{
    struct vsock_dev *vs = c->vs;

    if (c->state == VSOCK_CLOSED)
        return;
    if (c->hashed) {
        struct vsock_conn **p = &vs->table[bucket(c->host_port, c->guest_port)];
        while (*p != c)
            p = &(*p)->hnext;
        *p = c->hnext;
        c->hashed = false;
    }
    unqueue(c);
    epoll_ctl(vs->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = VSOCK_CLOSED;
    vs->nconns--;
    /* Freed after the current epoll batch, which may still hold events for c. */
    c->qnext = vs->dead;
    vs->dead = c;
}

void vsock_owe_rst(struct vsock_dev *vs, uint32_t host_port, uint32_t guest_port)
{
    if (vs->rst_count == VSOCK_RST_RING) {
        vsock_log(vs, "vsock: too many RSTs owed to the guest; dropping one for port %u",
                  guest_port);
        return;
    }
    vs->rst[(vs->rst_head + vs->rst_count) % VSOCK_RST_RING] =
        (struct vsock_rst){.host_port = host_port, .guest_port = guest_port};
    vs->rst_count++;
}

void vsock_conn_reset(struct vsock_conn *c)
{
    if (c->hashed)
        vsock_owe_rst(c->vs, c->host_port, c->guest_port);
    vsock_conn_close(c);
}

void vsock_conn_reap(struct vsock_dev *vs)
{
    while (vs->dead) {
        struct vsock_conn *c = vs->dead;
        vs->dead = c->qnext;
        free(c->buf);
        free(c);
    }
}

void vsock_conn_close_all(struct vsock_dev *vs)
{
    for (unsigned i = 0; i < VSOCK_HASH_SIZE; i++)
        while (vs->table[i])
            vsock_conn_close(vs->table[i]);
    /* Host clients still sending their CONNECT line are not in the table. */
    while (vs->rxq_head)
        vsock_conn_close(vs->rxq_head);
    vs->rst_count = 0;
}

uint32_t vsock_conn_peer_credit(const struct vsock_conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

bool vsock_conn_can_send(const struct vsock_conn *c)
{
    return c->state == VSOCK_ESTABLISHED && c->readable && !c->host_eof &&
           !(c->guest_shut & VSOCK_SHUTDOWN_RCV) && vsock_conn_peer_credit(c) > 0;
}

void vsock_conn_kick(struct vsock_conn *c)
{
    struct vsock_dev *vs = c->vs;

    if (c->state == VSOCK_CLOSED || c->queued)
        return;
    if (c->state == VSOCK_ESTABLISHED && c->readable && !c->host_eof &&
        !(c->guest_shut & VSOCK_SHUTDOWN_RCV) && vsock_conn_peer_credit(c) == 0 &&
        !c->credit_requested) {
        c->pending |= VSOCK_PEND_CREDIT_REQUEST;
        c->credit_requested = true;
    }
    if (!c->pending && !vsock_conn_can_send(c))
        return;
    c->qprev = vs->rxq_tail;
    c->qnext = NULL;
    if (vs->rxq_tail)
        vs->rxq_tail->qnext = c;
    else
        vs->rxq_head = c;
    vs->rxq_tail = c;
    c->queued = true;
}

void vsock_hdr_fill(struct vsock_dev *vs, struct vsock_conn *c, struct vsock_hdr *h, uint16_t op,
                    uint32_t host_port, uint32_t guest_port)
{
    memset(h, 0, sizeof(*h));
    h->src_cid = VSOCK_HOST_CID;
    h->dst_cid = vs->guest_cid;
    h->src_port = host_port;
    h->dst_port = guest_port;
    h->type = VSOCK_TYPE_STREAM;
    h->op = op;
    if (c) {
        h->buf_alloc = VSOCK_CONN_BUF;
        h->fwd_cnt = c->fwd_cnt;
        c->last_fwd_cnt = c->fwd_cnt;
    }
}

/* Owes the guest a CREDIT_UPDATE once its view of our free space has gone stale enough. */
static void maybe_credit_update(struct vsock_conn *c)
{
    if (c->fwd_cnt - c->last_fwd_cnt >= VSOCK_CREDIT_THRESHOLD) {
        c->pending |= VSOCK_PEND_CREDIT_UPDATE;
        vsock_conn_kick(c);
    }
}

/* Both directions are done on the guest's side: the guest waits for our RST to free its socket
 * (it sent SHUTDOWN with both bits); give it once the host socket took every buffered byte. */
static void check_finished(struct vsock_conn *c)
{
    if ((c->guest_shut & VSOCK_SHUTDOWN_SEND) && c->buf_len == 0 && !c->host_wr_shut) {
        shutdown(c->fd, SHUT_WR);
        c->host_wr_shut = true;
    }
    if (c->guest_shut == (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND) && c->buf_len == 0)
        vsock_conn_reset(c);
}

static ssize_t send_iov(int fd, const struct iovec *iov, unsigned niov)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = niov};
    ssize_t n;

    do
        n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n;
}

/* Writes buffered guest bytes to the host socket. Returns 0, or -1 after resetting c. */
static int flush(struct vsock_conn *c)
{
    while (c->buf_len && c->writable) {
        uint32_t first = VSOCK_CONN_BUF - c->buf_head;
        struct iovec iov[2] = {{c->buf + c->buf_head, c->buf_len < first ? c->buf_len : first},
                               {c->buf, c->buf_len < first ? 0 : c->buf_len - first}};
        ssize_t n = send_iov(c->fd, iov, iov[1].iov_len ? 2 : 1);

        if (n < 0 && errno == EAGAIN) {
            c->writable = false;
            break;
        }
        if (n <= 0) {
            vsock_conn_reset(c); /* EPIPE: the host peer is gone */
            return -1;
        }
        if ((size_t)n < iov[0].iov_len + iov[1].iov_len)
            c->writable = false; /* a short write on a stream socket: it is full */
        c->buf_head = (uint32_t)((c->buf_head + (uint32_t)n) % VSOCK_CONN_BUF);
        c->buf_len -= (uint32_t)n;
        c->fwd_cnt += (uint32_t)n;
    }
    if (c->buf_len == 0)
        c->buf_head = 0;
    maybe_credit_update(c);
    check_finished(c);
    return 0;
}

/* Appends the part of a guest payload the host socket did not take. */
static void buffer(struct vsock_conn *c, const struct iovec *iov, unsigned niov, size_t off,
                   uint32_t len)
{
    while (len) {
        uint32_t tail = (c->buf_head + c->buf_len) % VSOCK_CONN_BUF;
        uint32_t room = VSOCK_CONN_BUF - tail;
        uint32_t n = len < room ? len : room;

        iov_copy_from(iov, niov, off, c->buf + tail, n);
        c->buf_len += n;
        off += n;
        len -= n;
    }
}

/* RW from the guest: straight from the guest's buffers into the host socket (one sendmsg over
 * the chain's iovecs); only what the socket does not take is copied into c->buf. */
static void guest_data(struct vsock_conn *c, const struct iovec *iov, unsigned niov, size_t off,
                       uint32_t len)
{
    struct iovec slice[VIRTQ_MAX_SIZE];
    unsigned ns = 0;
    size_t skip = off, left = len;
    ssize_t n = 0;

    if (c->buf_len + (uint64_t)len > VSOCK_CONN_BUF) {
        vsock_log(c->vs, "vsock: guest port %u sent %u bytes beyond the credit we gave (%u free)",
                  c->guest_port, len, VSOCK_CONN_BUF - c->buf_len);
        vsock_conn_reset(c);
        return;
    }
    c->rx_cnt += len;
    if (c->buf_len == 0 && c->writable) {
        for (unsigned i = 0; i < niov && left; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            size_t take = iov[i].iov_len - skip;
            if (take > left)
                take = left;
            slice[ns++] = (struct iovec){(uint8_t *)iov[i].iov_base + skip, take};
            left -= take;
            skip = 0;
        }
        n = send_iov(c->fd, slice, ns);
        if (n < 0 && errno != EAGAIN) {
            vsock_conn_reset(c);
            return;
        }
        if (n < 0)
            n = 0;
        if ((uint32_t)n < len)
            c->writable = false;
        c->fwd_cnt += (uint32_t)n;
    }
    if ((uint32_t)n < len) {
        if (!c->buf && !(c->buf = malloc(VSOCK_CONN_BUF))) {
            vsock_log(c->vs, "vsock: out of memory buffering guest port %u", c->guest_port);
            vsock_conn_reset(c);
            return;
        }
        buffer(c, iov, niov, off + (size_t)n, len - (uint32_t)n);
    }
    maybe_credit_update(c);
}

static void guest_shutdown(struct vsock_conn *c, uint32_t flags)
{
    c->guest_shut |= flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
    if (c->buf_len && c->writable && flush(c) < 0)
        return;
    check_finished(c);
}

/* The guest answered our REQUEST: tell the host client which port it got. */
static void guest_response(struct vsock_conn *c)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "OK %u\n", c->host_port);

    if (send(c->fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) != len) {
        vsock_conn_reset(c); /* the client left, or cannot take 14 bytes on a new socket */
        return;
    }
    c->state = VSOCK_ESTABLISHED;
    c->readable = true; /* bytes the client sent after its CONNECT line are waiting */
}

void vsock_conn_packet(struct vsock_dev *vs, const struct vsock_hdr *hdr, const struct iovec *iov,
                       unsigned niov, size_t off)
{
    struct vsock_conn *c = vsock_conn_find(vs, hdr->dst_port, hdr->src_port);

    if (!c) {
        if (hdr->op == VSOCK_OP_REQUEST)
            vsock_host_connect(vs, hdr);
        else if (hdr->op != VSOCK_OP_RST)
            vsock_owe_rst(vs, hdr->dst_port, hdr->src_port);
        return;
    }
    c->peer_buf_alloc = hdr->buf_alloc;
    c->peer_fwd_cnt = hdr->fwd_cnt;
    c->credit_requested = false;
    switch (hdr->op) {
    case VSOCK_OP_RESPONSE:
        if (c->state != VSOCK_REQUESTED) {
            vsock_log(vs, "vsock: RESPONSE from guest port %u on a connection not connecting",
                      hdr->src_port);
            vsock_conn_reset(c);
            return;
        }
        guest_response(c);
        break;
    case VSOCK_OP_RST:
        vsock_conn_close(c); /* a refused host-initiated connection ends here too */
        return;
    case VSOCK_OP_SHUTDOWN:
        guest_shutdown(c, hdr->flags);
        break;
    case VSOCK_OP_RW:
        if (c->state != VSOCK_ESTABLISHED || (c->guest_shut & VSOCK_SHUTDOWN_SEND)) {
            vsock_log(vs, "vsock: data from guest port %u on a connection not open for it",
                      hdr->src_port);
            vsock_conn_reset(c);
            return;
        }
        if (hdr->len)
            guest_data(c, iov, niov, off, hdr->len);
        break;
    case VSOCK_OP_CREDIT_UPDATE:
        break;
    case VSOCK_OP_CREDIT_REQUEST:
        c->pending |= VSOCK_PEND_CREDIT_UPDATE;
        break;
    default: /* REQUEST on an open connection, or an unknown op */
        vsock_log(vs, "vsock: op %u from guest port %u to host port %u: resetting", hdr->op,
                  hdr->src_port, hdr->dst_port);
        vsock_conn_reset(c);
        return;
    }
    if (c->state != VSOCK_CLOSED)
        vsock_conn_kick(c);
}

void vsock_conn_event(struct vsock_conn *c, uint32_t events)
{
    if (c->state == VSOCK_CLOSED)
        return;
    if (c->state == VSOCK_LINE) {
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            vsock_host_read_line(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->host_hup = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        c->writable = true;
        if (c->buf_len && flush(c) < 0)
            return;
    }
    vsock_conn_kick(c);
}
