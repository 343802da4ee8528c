/* req.c: libkiln's agent requests on a connection (conn.c): ids, waiting for their frames,
 * sending within the agent's credit and granting ours back as frames are consumed, PING. The
 * reader thread in conn.c fills the queues; callers on any thread drain them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "lib/lib.h"

static struct agent_req *req_alloc(struct agent_conn *c, uint32_t id)
{
    struct agent_req *r = calloc(1, sizeof(*r));
    pthread_condattr_t attr;

    if (!r)
        return NULL;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &attr);
    pthread_condattr_destroy(&attr);
    r->c = c;
    r->id = id;
    for (int s = 0; s < AGENT_STREAMS; s++) {
        r->recv_credit[s] = KILN_AGENT_INITIAL_WINDOW;
        r->send_credit[s] = KILN_AGENT_INITIAL_WINDOW;
    }
    return r;
}

static void req_free(struct agent_req *r)
{
    struct agent_msg *m = r->head;

    while (m) {
        struct agent_msg *next = m->next;
        free(m);
        m = next;
    }
    pthread_cond_destroy(&r->cond);
    free(r);
}

int agent_req_open(struct agent_conn *c, struct agent_req **out)
{
    struct agent_req *r = req_alloc(c, 0);

    if (!r)
        return -ENOMEM;
    pthread_mutex_lock(&c->lock);
    /* Ids are never reused on a connection: a late frame cannot reach the wrong request. */
    if (c->next_id == UINT32_MAX) {
        pthread_mutex_unlock(&c->lock);
        req_free(r);
        return -EMFILE;
    }
    r->id = c->next_id++;
    r->next = c->reqs;
    c->reqs = r;
    pthread_mutex_unlock(&c->lock);
    *out = r;
    return 0;
}

void agent_req_close(struct agent_req *r)
{
    struct agent_conn *c;

    if (!r)
        return;
    c = r->c;
    pthread_mutex_lock(&c->lock);
    for (struct agent_req **p = &c->reqs; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    req_free(r);
}

void agent_req_cancel(struct agent_req *r)
{
    pthread_mutex_lock(&r->c->lock);
    r->cancelled = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->c->lock);
}

uint32_t agent_req_id(const struct agent_req *r)
{
    return r->id;
}

struct agent_conn *agent_req_conn(const struct agent_req *r)
{
    return r->c;
}

int agent_req_send(struct agent_req *r, uint16_t type, uint16_t flags, const void *a, size_t alen,
                   const void *b, size_t blen)
{
    return conn_send_frame(r->c, type, flags, r->id, a, alen, b, blen);
}

/* Waits on r->cond until deadline_ns (0: forever). Returns 0 or -ETIMEDOUT. */
static int wait_until(struct agent_req *r, uint64_t deadline_ns)
{
    struct timespec ts;

    if (!deadline_ns)
        return -pthread_cond_wait(&r->cond, &r->c->lock);
    ts.tv_sec = (time_t)(deadline_ns / 1000000000ULL);
    ts.tv_nsec = (long)(deadline_ns % 1000000000ULL);
    return -pthread_cond_timedwait(&r->cond, &r->c->lock, &ts);
}

int agent_req_write(struct agent_req *r, uint16_t type, const void *buf, size_t len, bool end,
                    uint64_t deadline_ns)
{
    struct agent_conn *c = r->c;
    const uint8_t *p = buf;
    int s = conn_stream_index(type), ret = 0;

    if (s != 0 && s != 3)
        return -EINVAL;
    do {
        size_t chunk = len < c->max_payload ? len : c->max_payload;

        pthread_mutex_lock(&c->lock);
        while (chunk && !r->send_credit[s] && !c->dead && !r->cancelled && !r->answered && ret == 0)
            ret = wait_until(r, deadline_ns);
        if (ret == 0 && c->dead)
            ret = c->dead;
        else if (ret == 0 && (r->cancelled || r->answered))
            ret = -EPIPE;
        if (ret == 0 && chunk > r->send_credit[s])
            chunk = (size_t)r->send_credit[s];
        if (ret == 0)
            r->send_credit[s] -= chunk;
        pthread_mutex_unlock(&c->lock);
        if (ret < 0)
            return ret;
        ret = conn_send_frame(c, type, end && chunk == len ? KILN_AGENT_F_END : 0, r->id, p, chunk,
                              NULL, 0);
        p += chunk;
        len -= chunk;
    } while (ret == 0 && len > 0);
    return ret;
}

int agent_req_next(struct agent_req *r, uint64_t deadline_ns, struct agent_msg **out, char *err,
                   size_t errlen)
{
    struct agent_conn *c = r->c;
    struct agent_msg *m;
    int ret = 0;

    pthread_mutex_lock(&c->lock);
    while (!r->head && !c->dead && ret == 0)
        ret = wait_until(r, deadline_ns);
    m = r->head;
    if (m) {
        r->head = m->next;
        if (!r->head)
            r->tail = NULL;
        if (conn_stream_index(m->type) < 0)
            r->queued -= sizeof(*m) + m->len;
        ret = 0;
    } else if (c->dead) {
        ret = c->dead;
        snprintf(err, errlen, "%s", c->msg);
    } else {
        snprintf(err, errlen, "timed out waiting for the agent");
    }
    pthread_mutex_unlock(&c->lock);
    *out = m;
    return ret;
}

void agent_req_release(struct agent_req *r, struct agent_msg *m)
{
    struct agent_conn *c = r->c;
    struct kiln_agent_window w = {.stream = m->type};
    int s = conn_stream_index(m->type);

    if (s > 0 && m->len) {
        pthread_mutex_lock(&c->lock);
        r->consumed[s] += m->len;
        if (r->consumed[s] >= AGENT_CREDIT_BATCH && !r->recv_end[s] && !c->dead) {
            w.bytes = r->consumed[s];
            r->recv_credit[s] += w.bytes;
            r->consumed[s] = 0;
        }
        pthread_mutex_unlock(&c->lock);
        if (w.bytes)
            conn_send_frame(c, KILN_AGENT_WINDOW, 0, r->id, &w, sizeof(w), NULL, 0);
    }
    free(m);
}

int agent_msg_error(const struct agent_msg *m, const char *what, char *err, size_t errlen)
{
    struct kiln_agent_error e;
    const char *text = "";
    size_t tlen = 0;

    if (agent_parse_error(m->data, m->len, &e, &text, &tlen) != 0) {
        snprintf(err, errlen, "%s: malformed ERROR from the agent", what);
        return -EPROTO;
    }
    if (tlen)
        snprintf(err, errlen, "%s: %.*s", what, (int)(tlen > 400 ? 400 : tlen), text);
    else
        snprintf(err, errlen, "%s: %s", what, agent_status_name(e.status));
    return -agent_errno_from_status(e.status);
}

int agent_conn_ping(struct agent_conn *c, const void *data, size_t len, unsigned timeout_ms,
                    char *err, size_t errlen)
{
    uint64_t deadline = agent_deadline(timeout_ms);
    struct agent_req *r;
    struct agent_msg *m = NULL;
    int ret;

    if (len > AGENT_PING_MAX)
        return -EMSGSIZE;
    r = req_alloc(c, 0);
    if (!r)
        return -ENOMEM;
    /* One PING in flight: PONGs carry no request id to tell them apart. */
    pthread_mutex_lock(&c->ping_lock);
    pthread_mutex_lock(&c->lock);
    c->ping = r;
    pthread_mutex_unlock(&c->lock);
    ret = conn_send_frame(c, KILN_AGENT_PING, 0, 0, data, len, NULL, 0);
    if (ret == 0)
        ret = agent_req_next(r, deadline, &m, err, errlen);
    if (ret == 0 && (m->len != len || memcmp(m->data, data, len) != 0)) {
        snprintf(err, errlen, "agent protocol violation: PONG does not echo the PING");
        ret = -EPROTO;
    }
    free(m);
    pthread_mutex_lock(&c->lock);
    c->ping = NULL;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&c->ping_lock);
    req_free(r);
    return ret;
}
