/* conn.c: kiln-agent's connections: framing, the handshake, dispatch of frames to requests, the
 * bounded output queue and the end of a connection (docs/agent-protocol.md). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "agent.h"

struct conn {
    struct conn *next;
    struct watch w;
    bool hello, closing, broken, exit_on_close;
    uint32_t peer_max; /* the host's max_payload */
    uint8_t *in;       /* AGENT_FRAME_MAX bytes */
    size_t in_len;
    uint8_t *out; /* queued frames: [out_off, out_len) unsent */
    size_t out_off, out_len, out_cap;
    struct req *reqs;
    unsigned nreqs;
};

static struct conn *conns;

static size_t pending(const struct conn *c)
{
    return c->out_len - c->out_off;
}

size_t conn_room(const struct conn *c)
{
    size_t p = pending(c);
    if (c->broken || c->closing || p >= AGENT_OUT_HIGH)
        return 0;
    size_t room = AGENT_OUT_HIGH - p;
    return room < c->peer_max ? room : c->peer_max;
}

static bool reserve(struct conn *c, size_t need)
{
    if (c->broken)
        return false;
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len >= need)
        return true;
    if (c->out_off) { /* compact before growing */
        memmove(c->out, c->out + c->out_off, pending(c));
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_cap - c->out_len >= need)
            return true;
    }
    size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
    while (cap - c->out_len < need)
        cap *= 2;
    uint8_t *n = realloc(c->out, cap);
    if (!n) {
        c->broken = true;
        return false;
    }
    c->out = n;
    c->out_cap = cap;
    return true;
}

int conn_send(struct conn *c, uint16_t type, uint16_t flags, uint32_t id, const void *a,
              size_t alen, const void *b, size_t blen)
{
    if (!reserve(c, AGENT_HDR_SIZE + alen + blen))
        return -ENOMEM;
    ssize_t n = agent_frame_build(c->out + c->out_len, c->out_cap - c->out_len, type, flags, id, a,
                                  alen, b, blen);
    if (n < 0) { /* only our own bug can get here: a payload over the limit */
        agent_log("frame %s of %zu bytes not sent: %s", agent_type_name(type), alen + blen,
                  strerror((int)-n));
        return (int)n;
    }
    c->out_len += (size_t)n;
    return 0;
}

uint8_t *conn_frame_begin(struct conn *c, size_t max)
{
    if (!reserve(c, AGENT_HDR_SIZE + max))
        return NULL;
    return c->out + c->out_len + AGENT_HDR_SIZE;
}

void conn_frame_commit(struct conn *c, uint16_t type, uint16_t flags, uint32_t id, size_t len)
{
    agent_hdr_encode(c->out + c->out_len, type, flags, id, (uint32_t)len);
    c->out_len += AGENT_HDR_SIZE + len;
}

static void vfail(struct conn *c, uint32_t id, uint32_t status, int err, const char *fmt,
                  va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    struct kiln_agent_error e = {.status = status, .err = (uint32_t)err};
    conn_send(c, KILN_AGENT_ERROR, 0, id, &e, sizeof(e), msg, strlen(msg));
}

void conn_fatal(struct conn *c, uint32_t id, uint32_t status, const char *fmt, ...)
{
    if (c->closing)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfail(c, id, status, 0, fmt, ap);
    va_end(ap);
    c->closing = true;
}

void req_fail(struct req *r, uint32_t status, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(r->conn, r->id, status, err, fmt, ap);
    va_end(ap);
    r->done = true;
}

void req_fail_errno(struct req *r, int err, const char *what)
{
    req_fail(r, agent_status_from_errno(err), err, "%s: %s", what, strerror(err));
}

void req_grant(struct req *r, uint32_t stream, uint64_t bytes)
{
    while (bytes) {
        uint32_t n = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
        struct kiln_agent_window w = {.stream = stream, .bytes = n};
        conn_send(r->conn, KILN_AGENT_WINDOW, 0, r->id, &w, sizeof(w), NULL, 0);
        r->in_credit += n;
        bytes -= n;
    }
}

static struct req *find(struct conn *c, uint32_t id)
{
    for (struct req *r = c->reqs; r; r = r->next)
        if (r->id == id && !r->done)
            return r;
    return NULL;
}

static void release(struct req *r)
{
    if (r->type == KILN_AGENT_EXEC)
        exec_release(r);
    else
        file_release(r);
}

/* A new request: checks the id and the per-connection limit, then runs its handler. */
static void request(struct conn *c, const struct kiln_agent_hdr *h, const uint8_t *p)
{
    if (h->id == 0) {
        conn_fatal(c, 0, KILN_AGENT_E_PROTOCOL, "%s with request id 0", agent_type_name(h->type));
        return;
    }
    if (find(c, h->id)) {
        conn_fatal(c, h->id, KILN_AGENT_E_BUSY_ID, "request id %u is in use", h->id);
        return;
    }
    struct req *r = calloc(1, sizeof(*r));
    if (!r || c->nreqs >= AGENT_MAX_REQUESTS) {
        free(r);
        struct kiln_agent_error e = {.status = KILN_AGENT_E_RESOURCES};
        const char *m = "too many open requests on this connection";
        conn_send(c, KILN_AGENT_ERROR, 0, h->id, &e, sizeof(e), m, strlen(m));
        return;
    }
    r->conn = c;
    r->id = h->id;
    r->type = h->type;
    r->fd = -1;
    r->out[0].fd = r->out[1].fd = r->in.fd = -1;
    r->next = c->reqs;
    c->reqs = r;
    c->nreqs++;
    int (*handler)(struct req *, const uint8_t *, uint32_t) = NULL;
    switch (h->type) {
    case KILN_AGENT_EXEC:
        handler = exec_start;
        break;
    case KILN_AGENT_FILE_WRITE:
        handler = file_write_start;
        break;
    case KILN_AGENT_FILE_READ:
        handler = file_read_start;
        break;
    case KILN_AGENT_STAT:
        handler = file_stat;
        break;
    case KILN_AGENT_LIST:
        handler = file_list;
        break;
    case KILN_AGENT_MKDIR:
        handler = file_mkdir;
        break;
    default:
        handler = file_remove;
        break;
    }
    int st = handler(r, p, h->len);
    if (st) {
        r->done = true;
        conn_fatal(c, h->id, (uint32_t)st, "malformed %s payload", agent_type_name(h->type));
    }
}

static void hello(struct conn *c, const struct kiln_agent_hdr *h, const uint8_t *p)
{
    struct kiln_agent_hello peer, mine = {.max_payload = KILN_AGENT_MAX_PAYLOAD};
    if (h->type != KILN_AGENT_HELLO) {
        conn_fatal(c, 0, KILN_AGENT_E_PROTOCOL, "the first frame must be HELLO, not %s",
                   agent_type_name(h->type));
        return;
    }
    if (agent_parse_hello(p, h->len, &peer) != KILN_AGENT_E_OK) {
        conn_fatal(c, 0, KILN_AGENT_E_PROTOCOL, "malformed HELLO");
        return;
    }
    uint32_t v = agent_version_choose(&peer);
    if (!v) {
        conn_fatal(c, 0, KILN_AGENT_E_VERSION, "host speaks versions %u..%u, agent speaks 1..%u",
                   peer.version_min, peer.version_max, KILN_AGENT_VERSION);
        return;
    }
    mine.version_min = mine.version_max = v;
    c->peer_max =
        peer.max_payload < KILN_AGENT_MAX_PAYLOAD ? peer.max_payload : KILN_AGENT_MAX_PAYLOAD;
    c->hello = true;
    conn_send(c, KILN_AGENT_HELLO, 0, 0, &mine, sizeof(mine), NULL, 0);
}

static void dispatch(struct conn *c, const struct kiln_agent_hdr *h, const uint8_t *p)
{
    if (!c->hello) {
        hello(c, h, p);
        return;
    }
    struct req *r = NULL;
    int st = 0;
    switch (h->type) {
    case KILN_AGENT_PING:
        if (h->len > AGENT_PING_MAX)
            conn_fatal(c, h->id, KILN_AGENT_E_TOO_LARGE, "PING of %u bytes (at most %u)", h->len,
                       AGENT_PING_MAX);
        else
            conn_send(c, KILN_AGENT_PONG, 0, h->id, p, h->len, NULL, 0);
        return;
    case KILN_AGENT_EXEC:
    case KILN_AGENT_FILE_WRITE:
    case KILN_AGENT_FILE_READ:
    case KILN_AGENT_STAT:
    case KILN_AGENT_LIST:
    case KILN_AGENT_MKDIR:
    case KILN_AGENT_REMOVE:
        request(c, h, p);
        return;
    case KILN_AGENT_WINDOW: {
        struct kiln_agent_window w;
        if ((st = agent_parse_window(p, h->len, &w)))
            break;
        if (!(r = find(c, h->id)))
            return;
        if (r->type == KILN_AGENT_EXEC &&
            (w.stream == KILN_AGENT_STDOUT || w.stream == KILN_AGENT_STDERR))
            exec_window(r, w.stream == KILN_AGENT_STDERR, w.bytes);
        else if (r->type == KILN_AGENT_FILE_READ && w.stream == KILN_AGENT_FILE_DATA)
            r->out_credit[0] += w.bytes;
        else
            st = KILN_AGENT_E_PROTOCOL;
        break;
    }
    case KILN_AGENT_STDIN:
    case KILN_AGENT_FILE_DATA:
        if (!(r = find(c, h->id)))
            return; /* the request ended while this was in flight */
        if (r->type == KILN_AGENT_EXEC && h->type == KILN_AGENT_STDIN)
            st = exec_stdin(r, h->flags, p, h->len);
        else if (r->type == KILN_AGENT_FILE_WRITE && h->type == KILN_AGENT_FILE_DATA)
            st = file_data(r, h->flags, p, h->len);
        else
            st = KILN_AGENT_E_PROTOCOL;
        break;
    case KILN_AGENT_SIGNAL:
    case KILN_AGENT_RESIZE: {
        struct kiln_agent_signal s;
        struct kiln_agent_resize z;
        st = h->type == KILN_AGENT_SIGNAL ? agent_parse_signal(p, h->len, &s)
                                          : agent_parse_resize(p, h->len, &z);
        if (st)
            break;
        if (!(r = find(c, h->id))) {
            struct kiln_agent_error e = {.status = KILN_AGENT_E_NO_REQUEST};
            const char *m = "no open request with this id";
            conn_send(c, KILN_AGENT_ERROR, 0, h->id, &e, sizeof(e), m, strlen(m));
        } else if (r->type == KILN_AGENT_EXEC) {
            if (h->type == KILN_AGENT_SIGNAL)
                exec_signal(r, (int)s.signo);
            else
                exec_resize(r, z.rows, z.cols);
        } else if (h->type == KILN_AGENT_SIGNAL) {
            req_fail(r, KILN_AGENT_E_CANCELLED, 0, "cancelled by the host");
        }
        return;
    }
    default:
        st = KILN_AGENT_E_PROTOCOL;
        conn_fatal(c, h->id, st, "%s is not sent by a host", agent_type_name(h->type));
        return;
    }
    if (st)
        conn_fatal(c, h->id, (uint32_t)st, "bad %s frame", agent_type_name(h->type));
}

/* Handles the whole frames in the input buffer while there is room for their answers. */
static void parse_input(struct conn *c)
{
    size_t off = 0;
    while (!c->closing && !c->broken && pending(c) < AGENT_OUT_HIGH) {
        struct kiln_agent_hdr h;
        const uint8_t *p = NULL;
        ssize_t n = agent_frame_next(c->in + off, c->in_len - off, KILN_AGENT_MAX_PAYLOAD, &h, &p);
        if (n == 0)
            break;
        if (n < 0) {
            conn_fatal(c, h.id, (uint32_t)-n, "bad frame header (type %u, flags %#x, %u bytes)",
                       h.type, h.flags, h.len);
            break;
        }
        dispatch(c, &h, p);
        off += (size_t)n;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

/* Reads and handles frames until the socket is empty, the answers fill the output queue, or
 * AGENT_READ_BUDGET bytes went by: one loop turn per frame cost an epoll_wait and a WINDOW write
 * per 256 KiB, which bounded uploads in the guest at a sixth of the bare vsock rate. */
static void on_conn(struct watch *w, uint32_t events)
{
    struct conn *c = w->ctx;
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    size_t total = 0;
    while (!c->closing && !c->broken && c->in_len < AGENT_FRAME_MAX && total < AGENT_READ_BUDGET) {
        ssize_t n = read(w->fd, c->in + c->in_len, AGENT_FRAME_MAX - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            total += (size_t)n;
            parse_input(c);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN)
            c->broken = true;
        return;
    }
    /* Nothing could be read (input full, or closing: the pump carries on) and the peer is gone. */
    if (total == 0 && (c->in_len >= AGENT_FRAME_MAX || c->closing) &&
        (events & (EPOLLHUP | EPOLLERR)))
        c->broken = true;
}

int conn_new(int fd, bool exit_on_close)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->in = malloc(AGENT_FRAME_MAX))) {
        free(c);
        close(fd);
        return -ENOMEM;
    }
    c->w = (struct watch){.fd = fd, .fn = on_conn, .ctx = c};
    c->peer_max = KILN_AGENT_MAX_PAYLOAD;
    c->exit_on_close = exit_on_close;
    int err = loop_add(&c->w, EPOLLIN);
    if (err) {
        free(c->in);
        free(c);
        close(fd);
        return err;
    }
    c->next = conns;
    conns = c;
    return 0;
}

void conns_each_req(void (*fn)(struct req *r, void *arg), void *arg)
{
    for (struct conn *c = conns; c; c = c->next)
        for (struct req *r = c->reqs; r; r = r->next)
            if (!r->done)
                fn(r, arg);
}

static void flush(struct conn *c)
{
    while (!c->broken && pending(c)) {
        ssize_t n = write(c->w.fd, c->out + c->out_off, pending(c));
        if (n > 0)
            c->out_off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && errno == EAGAIN)
            break;
        else
            c->broken = true;
    }
}

static void free_reqs(struct conn *c, bool all)
{
    for (struct req **pp = &c->reqs; *pp;) {
        struct req *r = *pp;
        if (all || r->done) {
            *pp = r->next;
            release(r);
            c->nreqs--;
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

/* One connection's pump; returns true if a producer could continue at once. */
static bool pump(struct conn *c)
{
    bool more = false;
    for (int round = 0; round < 16; round++) {
        size_t before = c->out_len - c->out_off;
        if (c->in_len && pending(c) < AGENT_OUT_HIGH)
            parse_input(c);
        for (struct req *r = c->reqs; r; r = r->next) {
            if (r->done || c->broken)
                continue;
            if (r->type == KILN_AGENT_EXEC)
                exec_pump(r);
            else
                file_pump(r);
        }
        size_t queued = pending(c);
        flush(c);
        more = queued != before || pending(c) < queued;
        if (!more || c->broken || pending(c))
            break;
    }
    free_reqs(c, false);
    return more && !c->broken && !pending(c);
}

static void destroy(struct conn *c)
{
    free_reqs(c, true); /* kills the connection's processes (docs: Disconnects) */
    loop_close(&c->w);
    free(c->in);
    free(c->out);
    if (c->exit_on_close)
        agent_quit = true;
    free(c);
}

bool conns_pump(void)
{
    bool busy = false;
    for (struct conn **pp = &conns; *pp;) {
        struct conn *c = *pp;
        busy |= pump(c);
        if (c->broken || (c->closing && !pending(c))) {
            *pp = c->next;
            destroy(c);
            continue;
        }
        uint32_t ev = 0;
        if (!c->closing && pending(c) < AGENT_OUT_HIGH && c->in_len < AGENT_FRAME_MAX)
            ev |= EPOLLIN;
        if (pending(c))
            ev |= EPOLLOUT;
        loop_set(&c->w, ev);
        pp = &c->next;
    }
    return busy;
}
