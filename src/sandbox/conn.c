/* conn.c: libkiln's agent connection: HELLO, request ids, a reader thread routing each frame to
 * its request, and WINDOW credit both ways (docs/agent-protocol.md, docs/sandbox.md). Everything
 * the agent sends is checked here before anyone uses it: a malformed, oversized or unexpected
 * frame fails the connection with a message saying which, never the process. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lib/lib.h"
#include "conn.h"

#define READ_BUF (2 * AGENT_FRAME_MAX)

uint64_t agent_deadline(unsigned timeout_ms)
{
    return timeout_ms ? time_now_ns() + (uint64_t)timeout_ms * 1000000ULL : 0;
}

int agent_wait_readable(int fd, uint64_t deadline_ns)
{
    uint64_t now = time_now_ns();
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    if (now >= deadline_ns)
        return -ETIMEDOUT;
    if (poll(&pfd, 1, (int)((deadline_ns - now) / 1000000 + 1)) < 0 && errno != EINTR)
        return -errno;
    return 0;
}

int conn_stream_index(uint32_t type)
{
    switch (type) {
    case KILN_AGENT_STDIN:
        return 0;
    case KILN_AGENT_STDOUT:
        return 1;
    case KILN_AGENT_STDERR:
        return 2;
    case KILN_AGENT_FILE_DATA:
        return 3;
    default:
        return -1;
    }
}

static void fail_locked(struct agent_conn *c, int err, const char *msg)
{
    if (c->dead)
        return;
    c->dead = err;
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
    for (struct agent_req *r = c->reqs; r; r = r->next)
        pthread_cond_broadcast(&r->cond);
    if (c->ping)
        pthread_cond_broadcast(&c->ping->cond);
    /* Writers blocked on a full socket and the reader return at once. */
    shutdown(c->fd, SHUT_RDWR);
}

void agent_conn_fail(struct agent_conn *c, int err, const char *fmt, ...)
{
    char msg[AGENT_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->lock);
    fail_locked(c, err, msg);
    pthread_mutex_unlock(&c->lock);
}

int agent_conn_status(struct agent_conn *c, char *err, size_t errlen)
{
    int ret;

    pthread_mutex_lock(&c->lock);
    ret = c->dead;
    if (ret && err)
        snprintf(err, errlen, "%s", c->msg);
    pthread_mutex_unlock(&c->lock);
    return ret;
}

uint32_t agent_conn_max_payload(const struct agent_conn *c)
{
    return c->max_payload;
}

int conn_send_frame(struct agent_conn *c, uint16_t type, uint16_t flags, uint32_t id, const void *a,
                    size_t alen, const void *b, size_t blen)
{
    uint8_t hdr[AGENT_HDR_SIZE];
    struct iovec iov[3] = {{hdr, sizeof(hdr)}, {(void *)a, alen}, {(void *)b, blen}};
    struct iovec *v = iov;
    int n = 3, ret = 0;

    if (alen + blen > c->max_payload)
        return -EMSGSIZE;
    agent_hdr_encode(hdr, type, flags, id, (uint32_t)(alen + blen));
    pthread_mutex_lock(&c->wlock);
    while (n > 0) {
        ssize_t w =
            sendmsg(c->fd, &(struct msghdr){.msg_iov = v, .msg_iovlen = (size_t)n}, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            ret = -errno;
            break;
        }
        while (n > 0 && (size_t)w >= v->iov_len) {
            w -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (uint8_t *)v->iov_base + w;
            v->iov_len -= (size_t)w;
        }
    }
    pthread_mutex_unlock(&c->wlock);
    if (ret < 0) {
        int dead = agent_conn_status(c, NULL, 0);
        if (dead < 0)
            return dead; /* the real cause, not the EPIPE it led to */
        agent_conn_fail(c, ret, "agent connection: send failed: %s", strerror(-ret));
    }
    return ret;
}

static struct agent_req *find_req(struct agent_conn *c, uint32_t id)
{
    for (struct agent_req *r = c->reqs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

/* Frames the agent may send about a request, with their payload checks. Returns 0 or a
 * KILN_AGENT_E_* status (the payload is malformed). */
static int check_payload(const struct kiln_agent_hdr *h, const uint8_t *p)
{
    struct kiln_agent_error e;
    struct kiln_agent_started s;
    struct kiln_agent_exit x;
    struct kiln_agent_stat st;
    const char *text;
    size_t tlen;

    switch (h->type) {
    case KILN_AGENT_ERROR:
        return agent_parse_error(p, h->len, &e, &text, &tlen);
    case KILN_AGENT_STARTED:
        return agent_parse_started(p, h->len, &s);
    case KILN_AGENT_EXIT:
        return agent_parse_exit(p, h->len, &x);
    case KILN_AGENT_STAT_RESULT:
        return agent_parse_stat(p, h->len, &st);
    case KILN_AGENT_LIST_ENTRY:
        return agent_parse_list_entry(p, h->len, &st, &text);
    case KILN_AGENT_OK:
        return h->len ? KILN_AGENT_E_PROTOCOL : 0;
    default:
        return 0;
    }
}

static int queue(struct agent_conn *c, struct agent_req *r, const struct kiln_agent_hdr *h,
                 const uint8_t *p)
{
    struct agent_msg *m = malloc(sizeof(*m) + h->len);
    int s = conn_stream_index(h->type);

    if (!m) {
        fail_locked(c, -ENOMEM, "agent connection: out of memory");
        return -ENOMEM;
    }
    if (s < 0) {
        r->queued += sizeof(*m) + h->len;
        if (r->queued > AGENT_QUEUE_MAX) {
            free(m);
            fail_locked(c, -EPROTO,
                        "agent protocol: more than 16 MiB of frames queued for one "
                        "request that is not being read");
            return -EPROTO;
        }
    }
    m->next = NULL;
    m->type = h->type;
    m->flags = h->flags;
    m->len = h->len;
    memcpy(m->data, p, h->len);
    if (h->type == KILN_AGENT_ERROR || h->type == KILN_AGENT_EXIT || h->type == KILN_AGENT_OK)
        r->answered = true;
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    pthread_cond_broadcast(&r->cond);
    return 0;
}

static int protocol(struct agent_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int protocol(struct agent_conn *c, const char *fmt, ...)
{
    char msg[AGENT_ERR_MAX];
    int n = snprintf(msg, sizeof(msg), "agent protocol violation: ");
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    fail_locked(c, -EPROTO, msg);
    return -EPROTO;
}

/* Routes one checked frame; called with c->lock held. Returns 0 or -errno (connection failed). */
static int dispatch(struct agent_conn *c, const struct kiln_agent_hdr *h, const uint8_t *p)
{
    const char *name = agent_type_name(h->type);
    struct kiln_agent_window w;
    struct agent_req *r;
    int s, st;

    switch (h->type) {
    case KILN_AGENT_WINDOW:
        if (agent_parse_window(p, h->len, &w) != 0)
            return protocol(c, "malformed WINDOW for request %u", h->id);
        s = conn_stream_index(w.stream);
        if (s != 0 && s != 3)
            return protocol(c, "WINDOW for stream %u, which the agent does not receive", w.stream);
        r = find_req(c, h->id);
        if (r && r->send_credit[s] < UINT64_MAX / 2) {
            r->send_credit[s] += w.bytes;
            pthread_cond_broadcast(&r->cond);
        }
        return 0;
    case KILN_AGENT_PONG:
        if (h->id != 0 || h->len > AGENT_PING_MAX)
            return protocol(c, "PONG with id %u and %u bytes", h->id, h->len);
        return c->ping ? queue(c, c->ping, h, p) : 0;
    case KILN_AGENT_ERROR:
    case KILN_AGENT_STARTED:
    case KILN_AGENT_EXIT:
    case KILN_AGENT_STDOUT:
    case KILN_AGENT_STDERR:
    case KILN_AGENT_FILE_DATA:
    case KILN_AGENT_STAT_RESULT:
    case KILN_AGENT_LIST_ENTRY:
    case KILN_AGENT_OK:
        break;
    default:
        return protocol(c, "the agent sent a %s frame (type %u)", name, h->type);
    }
    st = check_payload(h, p);
    if (st != 0)
        return protocol(c, "malformed %s frame for request %u (%u bytes): %s", name, h->id, h->len,
                        agent_status_name((uint32_t)st));
    if (h->id == 0 && h->type == KILN_AGENT_ERROR) {
        struct kiln_agent_error e;
        const char *text;
        size_t tlen;
        char msg[AGENT_ERR_MAX];

        agent_parse_error(p, h->len, &e, &text, &tlen);
        snprintf(msg, sizeof(msg), "the agent ended the connection: %s: %.*s",
                 agent_status_name(e.status), (int)(tlen > 300 ? 300 : tlen), text);
        fail_locked(c, -agent_errno_from_status(e.status), msg);
        return -EPROTO;
    }
    if (h->id == 0 || h->id >= c->next_id)
        return protocol(c, "%s frame for request %u, which was never made", name, h->id);
    r = find_req(c, h->id);
    s = conn_stream_index(h->type);
    if (r && s >= 0) {
        if (r->recv_end[s])
            return protocol(c, "%s data for request %u after its end", name, h->id);
        if (h->len > r->recv_credit[s])
            return protocol(c, "%u bytes of %s for request %u beyond the %u bytes of credit",
                            h->len, name, h->id, r->recv_credit[s]);
        r->recv_credit[s] -= h->len;
        r->recv_end[s] = h->flags & KILN_AGENT_F_END;
    }
    /* No request: it was closed, and these are its last frames in flight. */
    return r ? queue(c, r, h, p) : 0;
}

static void *reader_main(void *arg)
{
    struct agent_conn *c = arg;
    uint8_t *buf = malloc(READ_BUF);
    size_t have = 0;

    if (!buf) {
        agent_conn_fail(c, -ENOMEM, "agent connection: out of memory");
        return NULL;
    }
    for (;;) {
        ssize_t n = read(c->fd, buf + have, READ_BUF - have);
        size_t off = 0;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 && have)
                agent_conn_fail(c, -EPROTO,
                                "agent protocol violation: the connection ended "
                                "inside a frame");
            else if (n == 0)
                agent_conn_fail(c, -ECONNRESET, "the agent closed the connection");
            else
                agent_conn_fail(c, -errno, "agent connection: read failed: %s", strerror(errno));
            break;
        }
        have += (size_t)n;
        for (;;) {
            struct kiln_agent_hdr h;
            const uint8_t *payload;
            ssize_t sz =
                agent_frame_next(buf + off, have - off, KILN_AGENT_MAX_PAYLOAD, &h, &payload);
            int ret;

            if (sz == 0)
                break;
            pthread_mutex_lock(&c->lock);
            if (sz < 0)
                ret = protocol(c, "bad frame header (type %u, id %u, %u bytes, flags %#x): %s",
                               h.type, h.id, h.len, h.flags, agent_status_name((uint32_t)-sz));
            else
                ret = dispatch(c, &h, payload);
            pthread_mutex_unlock(&c->lock);
            if (ret < 0)
                goto out;
            off += (size_t)sz;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
out:
    free(buf);
    return NULL;
}

/* Reads exactly len bytes before deadline_ns (the HELLO, before the reader runs). */
static int read_full(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
    size_t got = 0;

    while (got < len) {
        uint64_t now = time_now_ns();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ms = now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
        ssize_t n;

        if (ms == 0)
            return -ETIMEDOUT;
        if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
            return -errno;
        n = read(fd, (uint8_t *)buf + got, len - got);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (n > 0)
            got += (size_t)n;
    }
    return 0;
}

static int hello(struct agent_conn *c, unsigned timeout_ms, char *err, size_t errlen)
{
    struct kiln_agent_hello offer = {.version_min = KILN_AGENT_VERSION,
                                     .version_max = KILN_AGENT_VERSION,
                                     .max_payload = KILN_AGENT_MAX_PAYLOAD};
    uint64_t deadline = agent_deadline(timeout_ms ? timeout_ms : AGENT_HELLO_TIMEOUT_MS);
    uint8_t raw[AGENT_HDR_SIZE], *payload = NULL;
    struct kiln_agent_hello got;
    struct kiln_agent_hdr h;
    int ret, st;

    ret = conn_send_frame(c, KILN_AGENT_HELLO, 0, 0, &offer, sizeof(offer), NULL, 0);
    if (ret == 0)
        ret = read_full(c->fd, raw, sizeof(raw), deadline);
    if (ret < 0) {
        snprintf(err, errlen, "agent HELLO: %s",
                 ret == -ETIMEDOUT    ? "no answer in time"
                 : ret == -ECONNRESET ? "the agent closed the connection"
                                      : strerror(-ret));
        return ret;
    }
    st = agent_hdr_decode(raw, KILN_AGENT_MAX_PAYLOAD, &h);
    if (st != 0) {
        snprintf(err, errlen, "agent HELLO: bad answer header (type %u, %u bytes): %s", h.type,
                 h.len, agent_status_name((uint32_t)st));
        return -EPROTO;
    }
    payload = malloc(h.len ? h.len : 1);
    if (!payload)
        return -ENOMEM;
    ret = read_full(c->fd, payload, h.len, deadline);
    if (ret < 0) {
        snprintf(err, errlen, "agent HELLO: answer cut short: %s", strerror(-ret));
        goto out;
    }
    ret = -EPROTO;
    if (h.type == KILN_AGENT_ERROR) {
        struct kiln_agent_error e;
        const char *text = "";
        size_t tlen = 0;
        if (agent_parse_error(payload, h.len, &e, &text, &tlen) == 0)
            ret = -agent_errno_from_status(e.status);
        snprintf(err, errlen, "agent refused HELLO: %.*s", (int)(tlen > 300 ? 300 : tlen), text);
    } else if (h.type != KILN_AGENT_HELLO || h.id != 0 ||
               agent_parse_hello(payload, h.len, &got) != 0) {
        snprintf(err, errlen, "agent HELLO: expected HELLO, got a %u-byte %s frame (id %u)", h.len,
                 agent_type_name(h.type), h.id);
    } else if (got.version_min > KILN_AGENT_VERSION || got.version_max < KILN_AGENT_VERSION) {
        snprintf(err, errlen, "agent speaks protocol versions %u..%u; this libkiln speaks %d",
                 got.version_min, got.version_max, KILN_AGENT_VERSION);
        ret = -EPROTONOSUPPORT;
    } else if (got.max_payload < 4096) {
        snprintf(err, errlen, "agent HELLO: frame limit of %u bytes is below the minimum 4096",
                 got.max_payload);
    } else {
        c->max_payload =
            got.max_payload < KILN_AGENT_MAX_PAYLOAD ? got.max_payload : KILN_AGENT_MAX_PAYLOAD;
        ret = 0;
    }
out:
    free(payload);
    return ret;
}

int agent_conn_open(int fd, unsigned timeout_ms, struct agent_conn **out, char *err, size_t errlen)
{
    struct agent_conn *c = calloc(1, sizeof(*c));
    sigset_t all, old;
    int ret;

    if (!c) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->fd = fd;
    c->next_id = 1;
    c->max_payload = KILN_AGENT_MAX_PAYLOAD;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->wlock, NULL);
    pthread_mutex_init(&c->ping_lock, NULL);
    ret = hello(c, timeout_ms, err, errlen);
    if (ret < 0)
        goto fail_hello;
    /* The reader takes no signals: they stay with the application's own threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ret = -pthread_create(&c->reader, NULL, reader_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret < 0) {
        snprintf(err, errlen, "cannot start the agent reader thread: %s", strerror(-ret));
        goto fail_hello;
    }
    *out = c;
    return 0;

fail_hello:
    close(fd);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->wlock);
    pthread_mutex_destroy(&c->ping_lock);
    free(c);
    return ret;
}

void agent_conn_close(struct agent_conn *c)
{
    if (!c)
        return;
    agent_conn_fail(c, -ECONNABORTED, "the sandbox handle was closed");
    pthread_join(c->reader, NULL);
    /* Requests still open belong to callers that must close them before the connection. */
    close(c->fd);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->wlock);
    pthread_mutex_destroy(&c->ping_lock);
    free(c);
}
