/* vsock_host.c: the host side of vsock: the listening Unix socket with its "CONNECT <port>\n"
 * handshake, guest-initiated connections to "<uds_path>_<port>", and connect timeouts
 * (docs/vsock.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "vsock.h"

int vsock_host_listen(struct vsock_dev *vs, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &vs->listen_tag};
    struct stat st;
    int ret;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vs->uds_path);
    /* A socket file left by a VM that died is replaced (as Firecracker does); anything else at
     * that path is the user's and stays. */
    if (lstat(vs->uds_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "vsock: %s exists and is not a socket", vs->uds_path);
            return -EEXIST;
        }
        unlink(vs->uds_path);
    }
    vs->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (vs->listen_fd < 0) {
        ret = -errno;
        snprintf(err, errlen, "vsock: socket: %s", strerror(errno));
        return ret;
    }
    if (bind(vs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(vs->listen_fd, 128) < 0) {
        ret = -errno;
        snprintf(err, errlen, "vsock: cannot listen on %s: %s", vs->uds_path, strerror(errno));
        goto fail_close;
    }
    if (epoll_ctl(vs->epfd, EPOLL_CTL_ADD, vs->listen_fd, &ev) < 0) {
        ret = -errno;
        snprintf(err, errlen, "vsock: epoll_ctl: %s", strerror(errno));
        goto fail_unlink;
    }
    return 0;

fail_unlink:
    unlink(vs->uds_path);
fail_close:
    close(vs->listen_fd);
    vs->listen_fd = -1;
    return ret;
}

void vsock_host_accept(struct vsock_dev *vs)
{
    for (;;) {
        int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct vsock_conn *c;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                vsock_log(vs, "vsock: accept on %s: %s", vs->uds_path, strerror(errno));
            return;
        }
        if (vs->nconns >= VSOCK_MAX_CONNS) {
            vsock_log(vs,
                      "vsock: %u connections open, the most a VM may have; refusing a host "
                      "client",
                      vs->nconns);
            close(fd);
            continue;
        }
        c = vsock_conn_new(vs, fd);
        if (!c) {
            vsock_log(vs, "vsock: no memory for a host client");
            close(fd);
            continue;
        }
        c->state = VSOCK_LINE;
        /* The CONNECT line may already be there; epoll reports it for a new watch. */
    }
}

int vsock_parse_connect(const char *line, size_t len, uint32_t *port)
{
    char digits[16];
    uint64_t v;
    size_t n;

    if (len < 10 || memcmp(line, "CONNECT ", 8) != 0 || line[len - 1] != '\n')
        return -EINVAL;
    n = len - 9;
    if (n && line[8 + n - 1] == '\r')
        n--;
    if (n == 0 || n >= sizeof(digits))
        return -EINVAL;
    memcpy(digits, line + 8, n);
    digits[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (digits[i] < '0' || digits[i] > '9')
            return -EINVAL;
    if (parse_uint(digits, 0, UINT32_MAX, &v) < 0)
        return -EINVAL;
    *port = (uint32_t)v;
    return 0;
}

/* A local port >= VSOCK_PORT_MIN that no connection uses on the host side. */
static int alloc_port(struct vsock_dev *vs, uint32_t *out)
{
    for (unsigned tries = 0; tries < 4 * VSOCK_MAX_CONNS; tries++) {
        uint32_t p = vs->next_port;
        bool used = false;

        vs->next_port = p == UINT32_MAX ? VSOCK_PORT_MIN : p + 1;
        for (unsigned i = 0; i < VSOCK_HASH_SIZE && !used; i++)
            for (struct vsock_conn *c = vs->table[i]; c && !used; c = c->hnext)
                used = c->host_port == p;
        if (!used) {
            *out = p;
            return 0;
        }
    }
    return -EADDRINUSE;
}

void vsock_host_read_line(struct vsock_conn *c)
{
    struct vsock_dev *vs = c->vs;
    char line[VSOCK_LINE_MAX];
    ssize_t n;
    char *nl;
    uint32_t port;

    /* Peek, then take exactly the line: bytes after it belong to the stream. */
    n = recv(c->fd, line, sizeof(line), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        vsock_conn_close(c); /* the client left before saying where to */
        return;
    }
    nl = memchr(line, '\n', (size_t)n);
    if (!nl) {
        if ((size_t)n < sizeof(line))
            return; /* wait for the rest */
        vsock_log(vs, "vsock: host client sent no \"CONNECT <port>\\n\" line in %zu bytes",
                  sizeof(line));
        vsock_conn_close(c);
        return;
    }
    n = nl - line + 1;
    if (vsock_parse_connect(line, (size_t)n, &port) < 0) {
        vsock_log(vs, "vsock: bad line from host client: \"%.*s\" (expected \"CONNECT <port>\")",
                  (int)(n - 1), line);
        vsock_conn_close(c);
        return;
    }
    if (recv(c->fd, line, (size_t)n, MSG_DONTWAIT) != n) {
        vsock_conn_close(c);
        return;
    }
    if (alloc_port(vs, &c->host_port) < 0) {
        vsock_log(vs, "vsock: no free local port for a host client");
        vsock_conn_close(c);
        return;
    }
    c->guest_port = port;
    c->state = VSOCK_REQUESTED;
    c->readable = false;
    vsock_conn_hash(c);
    c->pending |= VSOCK_PEND_REQUEST;
    vsock_conn_kick(c);
}

void vsock_host_connect(struct vsock_dev *vs, const struct vsock_hdr *hdr)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct vsock_conn *c;
    int fd;

    if (vs->nconns >= VSOCK_MAX_CONNS) {
        vsock_log(vs, "vsock: %u connections open, the most a VM may have; refusing guest port %u",
                  vs->nconns, hdr->src_port);
        goto refuse;
    }
    /* vsock_create checked that every port fits in sun_path. */
    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", vs->uds_path, hdr->dst_port) >=
        (int)sizeof(sa.sun_path))
        goto refuse;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto refuse;
    /* A Unix stream connect completes at once or fails (EAGAIN: the listener's backlog is
     * full, which we treat as a refusal too). */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        log_debug("vsock: guest port %u -> %s: %s", hdr->src_port, sa.sun_path, strerror(errno));
        close(fd);
        goto refuse;
    }
    c = vsock_conn_new(vs, fd);
    if (!c) {
        close(fd);
        goto refuse;
    }
    c->host_port = hdr->dst_port;
    c->guest_port = hdr->src_port;
    c->peer_buf_alloc = hdr->buf_alloc;
    c->peer_fwd_cnt = hdr->fwd_cnt;
    c->state = VSOCK_ESTABLISHED;
    vsock_conn_hash(c);
    c->pending |= VSOCK_PEND_RESPONSE;
    vsock_conn_kick(c);
    return;

refuse:
    vsock_owe_rst(vs, hdr->dst_port, hdr->src_port);
}

void vsock_host_arm_timer(struct vsock_dev *vs)
{
    struct itimerspec its = {.it_interval = {.tv_nsec = 500 * 1000 * 1000},
                             .it_value = {.tv_nsec = 500 * 1000 * 1000}};

    if (vs->timer_armed)
        return;
    if (timerfd_settime(vs->timer_fd, 0, &its, NULL) == 0)
        vs->timer_armed = true;
}

void vsock_host_timer(struct vsock_dev *vs)
{
    struct itimerspec off = {0};
    uint64_t ticks, now = time_now_ns();
    bool waiting = false;

    (void)!read(vs->timer_fd, &ticks, sizeof(ticks));
    for (unsigned i = 0; i < VSOCK_HASH_SIZE; i++) {
        struct vsock_conn *next;
        for (struct vsock_conn *c = vs->table[i]; c; c = next) {
            next = c->hnext;
            if (c->state != VSOCK_REQUESTED || !c->deadline_ns)
                continue;
            if (now < c->deadline_ns) {
                waiting = true;
                continue;
            }
            log_info("vsock: guest port %u did not answer within 2 s; closing the host client",
                     c->guest_port);
            vsock_conn_reset(c);
        }
    }
    if (!waiting) {
        timerfd_settime(vs->timer_fd, 0, &off, NULL);
        vs->timer_armed = false;
    }
}
