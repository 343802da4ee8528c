/* server.c: the file service's Unix-socket server (docs/file-service.md). One epoll fd, watched by
 * the VMM's event loop, holds the listener and every connection: non-blocking, no thread per
 * request, a fixed pair of buffers per connection and a connection limit. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fileservice.h"
#include "lib/lib.h"
#include "vmm/vmm.h"

#define LOG_WINDOW_NS      (5ULL * 1000 * 1000 * 1000)
#define LOG_PER_WINDOW     20
#define RESPONSES_PER_TURN 32 /* then other connections get a turn */

struct conn {
    struct fsvc *s;
    struct conn *next, *prev;
    int fd;
    uint32_t events; /* EPOLLIN, or EPOLLOUT while a response waits or the turn ended */
    enum fsvc_state state;
    size_t in_len, out_len, out_off;
    uint8_t *out; /* KILN_FS_MAX_RESPONSE */
    uint8_t in[KILN_FS_MAX_REQUEST];
};

struct fsvc {
    struct fsvc_backing *backings;
    int epfd, listen_fd;
    char listen_tag; /* epoll data.ptr marker of the listener */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    unsigned nconns, max_conns;
    struct conn *conns, *dead; /* dead: closed this batch, freed after it */
    struct evloop *loop;
    uint64_t log_window_ns;
    unsigned log_count;
};

/* Guests can repeat anything that is logged here, so at most LOG_PER_WINDOW lines per window. */
static void __attribute__((format(printf, 2, 3))) slog(struct fsvc *s, const char *fmt, ...)
{
    uint64_t now = time_now_ns();
    char msg[256];
    va_list ap;

    if (now - s->log_window_ns > LOG_WINDOW_NS) {
        s->log_window_ns = now;
        s->log_count = 0;
    }
    if (s->log_count++ >= LOG_PER_WINDOW)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_warn("fsvc: %s", msg);
}

static void conn_close(struct conn *c)
{
    struct fsvc *s = c->s;

    if (c->fd < 0)
        return;
    (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = s->dead;
    s->dead = c;
    s->nconns--;
}

static void reap(struct fsvc *s)
{
    while (s->dead) {
        struct conn *c = s->dead;
        s->dead = c->next;
        free(c->out);
        free(c);
    }
}

static int set_events(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};

    if (c->events == events)
        return 0;
    if (epoll_ctl(c->s->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -errno;
    c->events = events;
    return 0;
}

/* Writes what is pending. Returns 1 when all is written, 0 on EAGAIN, -errno on failure. */
static int flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 0 : -errno;
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 1;
}

/* Answers buffered requests and reads more until the socket has nothing or the peer must read
 * first; a connection is never read while a response is unsent. */
static void conn_run(struct conn *c)
{
    struct fsvc_request req;
    const char *why;
    unsigned answered = 0;

    for (;;) {
        int ret = flush(c);
        if (ret < 0) {
            log_debug("fsvc: connection %d: write failed: %s", c->fd, strerror(-ret));
            conn_close(c);
            return;
        }
        if (ret == 0 || answered == RESPONSES_PER_TURN) {
            /* EPOLLOUT resumes it: when the peer made room, or at once after others' turns. */
            if (set_events(c, EPOLLOUT) < 0)
                conn_close(c);
            return;
        }
        ret = fsvc_decode_request(c->in, c->in_len, &req, &why);
        if (ret > 0) {
            int n = fsvc_session_handle(&c->state, c->s->backings, &req, c->out, &why);
            if (n < 0) {
                slog(c->s, "closing a connection: %s (message type %u)", why, req.type);
                conn_close(c);
                return;
            }
            memmove(c->in, c->in + ret, c->in_len - (size_t)ret);
            c->in_len -= (size_t)ret;
            c->out_len = (size_t)n;
            answered++;
            continue;
        }
        if (ret < 0) {
            slog(c->s, "closing a connection: %s", why);
            conn_close(c);
            return;
        }
        /* A partial message: read more (decode bounds sizes, so there is always room). */
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (set_events(c, EPOLLIN) < 0)
                conn_close(c);
            return;
        }
        if (n <= 0) {
            if (n == 0 && c->in_len)
                slog(c->s, "closing a connection: it ended inside a message (%zu bytes of it)",
                     c->in_len);
            else if (n < 0)
                log_debug("fsvc: connection %d: read failed: %s", c->fd, strerror(errno));
            conn_close(c);
            return;
        }
        c->in_len += (size_t)n;
    }
}

int fsvc_add_conn(struct fsvc *s, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN};
    struct conn *c;
    int flags = fcntl(fd, F_GETFL);

    if (s->nconns >= s->max_conns) {
        slog(s, "refusing a connection: %u open, the most the service takes", s->nconns);
        close(fd);
        return -EMFILE;
    }
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        goto fail_fd;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto fail_fd;
    c->out = malloc(KILN_FS_MAX_RESPONSE);
    if (!c->out)
        goto fail_conn;
    c->s = s;
    c->fd = fd;
    c->events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        goto fail_conn;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    return 0;

fail_conn:
    free(c->out);
    free(c);
fail_fd:
    flags = -errno;
    close(fd);
    return flags ? flags : -ENOMEM;
}

static void on_accept(struct fsvc *s)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                slog(s, "accept on %s failed: %s", s->path, strerror(errno));
            if (errno != EINTR)
                return;
            continue;
        }
        (void)fsvc_add_conn(s, fd);
    }
}

void fsvc_poll(struct fsvc *s)
{
    struct epoll_event evs[16];
    int n = epoll_wait(s->epfd, evs, (int)ARRAY_SIZE(evs), 0);

    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == &s->listen_tag) {
            on_accept(s);
            continue;
        }
        struct conn *c = evs[i].data.ptr;
        if (c->fd >= 0) /* not closed earlier in this batch */
            conn_run(c);
    }
    reap(s);
}

static void on_event(void *opaque, uint32_t events)
{
    (void)events;
    fsvc_poll(opaque);
}

int fsvc_attach(struct fsvc *s, struct evloop *loop)
{
    int ret = evloop_add(loop, s->epfd, EPOLLIN, on_event, s);

    if (ret == 0)
        s->loop = loop;
    return ret;
}

unsigned fsvc_nconns(const struct fsvc *s)
{
    return s->nconns;
}

int fsvc_listen(struct fsvc *s, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->listen_tag};
    struct stat st;
    int fd, ret;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "file service socket path %s is longer than %zu bytes", path,
                 sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "file service socket %s exists and is not a socket", path);
            return -EEXIST;
        }
        (void)unlink(path); /* a stale socket from an earlier run */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        ret = errno;
        close(fd);
        errno = ret;
        goto fail;
    }
    s->listen_fd = fd;
    strcpy(s->path, path);
    return 0;

fail:
    ret = -errno;
    snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(-ret));
    return ret;
}

struct fsvc *fsvc_create(const struct fsvc_config *cfg, char *err, size_t errlen)
{
    struct fsvc *s = calloc(1, sizeof(*s));
    struct fsvc_backing **tail;
    int saved = ENOMEM;

    if (!s) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->listen_fd = -1;
    s->max_conns = cfg->max_conns ? cfg->max_conns : FSVC_MAX_CONNS;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        saved = errno;
        snprintf(err, errlen, "epoll_create1: %s", strerror(saved));
        goto fail;
    }
    /* Single files first: they answer for their own paths, the directory for the rest. */
    tail = &s->backings;
    for (unsigned i = 0; i < cfg->nfiles; i++) {
        char name[KILN_FS_MAX_PATH + 1];
        size_t name_len;
        if (fsvc_file_spec_check(cfg->files[i], &name_len, err, errlen) < 0 ||
            name_len >= sizeof(name)) {
            saved = EINVAL;
            goto fail;
        }
        memcpy(name, cfg->files[i], name_len);
        name[name_len] = '\0';
        *tail = fsvc_backing_file_create(name, cfg->files[i] + name_len + 1, err, errlen);
        if (!*tail) {
            saved = errno;
            goto fail;
        }
        tail = &(*tail)->next;
    }
    if (cfg->dir) {
        *tail = fsvc_backing_dir_create(cfg->dir, false, err, errlen);
        if (!*tail) {
            saved = errno;
            goto fail;
        }
    }
    return s;

fail:
    fsvc_destroy(s);
    errno = saved;
    return NULL;
}

void fsvc_destroy(struct fsvc *s)
{
    if (!s)
        return;
    if (s->loop)
        (void)evloop_del(s->loop, s->epfd);
    while (s->conns)
        conn_close(s->conns);
    reap(s);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        (void)unlink(s->path);
    }
    while (s->backings) {
        struct fsvc_backing *b = s->backings;
        s->backings = b->next;
        b->ops->destroy(b);
    }
    if (s->epfd >= 0)
        close(s->epfd);
    free(s);
}
