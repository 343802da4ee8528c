/* server.c: the control socket inside the VMM: accepts SOCK_SEQPACKET clients on the event loop,
 * checks their credentials, and answers their requests one at a time (docs/control-protocol.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "lib/lib.h"

struct conn {
    struct ctl_server *srv;
    int fd; /* -1: free */
};

struct ctl_server {
    struct ctl_server_config cfg;
    int listen_fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct conn conns[CTL_MAX_CLIENTS];
};

int ctl_peer_check(int sock, uid_t owner)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    return cred.uid == 0 || cred.uid == owner ? 0 : -EACCES;
}

static void send_err(int sock, int err)
{
    struct kiln_ctl_response resp = {.type = KILN_CTL_RESP_ERR, .err = (uint32_t)err};
    uint8_t msg[KILN_CTL_MSG_SIZE];

    ctl_encode_response(&resp, msg);
    (void)ctl_send(sock, msg, -1, MSG_DONTWAIT);
}

static void drop(struct conn *c)
{
    (void)evloop_del(c->srv->cfg.loop, c->fd);
    close(c->fd);
    c->fd = -1;
}

/* Runs one decoded request; fills resp and possibly *out_fd (a descriptor to send back). */
static int dispatch(struct ctl_server *srv, const struct kiln_ctl_request *req, int *fd,
                    struct kiln_ctl_response *resp, int *out_fd)
{
    const struct ctl_ops *ops = srv->cfg.ops;
    void *o = srv->cfg.opaque;
    int ret;

    resp->type = KILN_CTL_RESP_OK;
    switch (req->type) {
    case KILN_CTL_REQ_EXIT:
        return ops->exit(o);
    case KILN_CTL_REQ_REGISTER_MEMORY:
        resp->type = KILN_CTL_RESP_REGISTER_MEMORY;
        return ops->register_memory(o, fd, req->size, &resp->pfn, &resp->slot);
    case KILN_CTL_REQ_UNREGISTER_MEMORY:
        return ops->unregister_memory(o, req->slot);
    case KILN_CTL_REQ_BALLOON_ADJUST:
        return ops->balloon_adjust(o, (int32_t)req->num_pages, &resp->pfn);
    case KILN_CTL_REQ_PAUSE:
        return ops->pause(o);
    case KILN_CTL_REQ_RESUME:
        return ops->resume(o);
    case KILN_CTL_REQ_GET_STATE:
        resp->type = KILN_CTL_RESP_STATE;
        return ops->get_state(o, &resp->slot);
    case KILN_CTL_REQ_REGISTER_IOEVENT:
        return ops->register_ioevent(o, fd, req->size, req->slot, req->num_pages);
    case KILN_CTL_REQ_REGISTER_IRQFD:
        return ops->register_irqfd(o, fd, req->slot);
    case KILN_CTL_REQ_GET_METRICS:
        resp->type = KILN_CTL_RESP_METRICS;
        ret = ops->get_metrics(o, out_fd, &resp->pfn);
        return ret;
    }
    return -EOPNOTSUPP; /* the decoder already refused it */
}

static void on_conn(void *opaque, uint32_t events)
{
    struct conn *c = opaque;
    struct ctl_server *srv = c->srv;
    struct kiln_ctl_request req;
    struct kiln_ctl_response resp = {0};
    uint8_t buf[KILN_CTL_MSG_SIZE * 2], msg[KILN_CTL_MSG_SIZE];
    int fd = -1, out_fd = -1, ret;
    unsigned nfds;
    ssize_t n;

    (void)events;
    n = ctl_recv(c->fd, buf, sizeof(buf), &fd, &nfds, MSG_DONTWAIT);
    if (n == -EAGAIN)
        return;
    if (n < 0) {
        log_debug("control: client %d gone%s%s", c->fd, n < 0 ? ": " : "",
                  n < 0 ? strerror((int)-n) : "");
        drop(c);
        goto out;
    }
    ret = ctl_decode_request(buf, (size_t)n, nfds, &req);
    if (ret == -ENOTCONN) {
        /* A zero-length datagram is indistinguishable from the peer closing: treat it so. */
        drop(c);
        goto out;
    }
    if (ret < 0) {
        if (ret == -EMSGSIZE)
            log_once(LOG_WARN, "control: a %zd-byte message (requests are %d bytes) refused", n,
                     KILN_CTL_MSG_SIZE);
        else
            log_once(LOG_WARN, "control: malformed request (type %u) refused: %s", req.type,
                     strerror(-ret));
    } else {
        log_debug("control: %s", ctl_request_name(req.type));
        ret = dispatch(srv, &req, &fd, &resp, &out_fd);
    }
    if (ret < 0)
        resp = (struct kiln_ctl_response){.type = KILN_CTL_RESP_ERR, .err = (uint32_t)-ret};
    /* Closed before answering, so a client that sees the answer sees the descriptor gone. */
    if (fd >= 0)
        close(fd);
    fd = -1;
    ctl_encode_response(&resp, msg);
    /* A client that does not read its answers loses the connection instead of blocking the
     * loop. */
    if (ctl_send(c->fd, msg, ret < 0 ? -1 : out_fd, MSG_DONTWAIT) < 0)
        drop(c);
out:
    if (fd >= 0)
        close(fd);
    if (out_fd >= 0)
        close(out_fd);
}

int ctl_server_adopt(struct ctl_server *srv, int sock)
{
    struct conn *c = NULL;
    int ret;

    ret = (srv->cfg.peer_check ? srv->cfg.peer_check : ctl_peer_check)(sock, srv->cfg.owner);
    if (ret < 0) {
        log_warn("control: a client was refused: %s (only root and uid %u may control this VM)",
                 strerror(-ret), (unsigned)srv->cfg.owner);
        send_err(sock, EACCES);
        close(sock);
        return -EACCES;
    }
    for (unsigned i = 0; i < CTL_MAX_CLIENTS && !c; i++)
        if (srv->conns[i].fd < 0)
            c = &srv->conns[i];
    if (!c) {
        log_once(LOG_WARN, "control: more than %d clients; refusing more", CTL_MAX_CLIENTS);
        send_err(sock, EMFILE);
        close(sock);
        return -EMFILE;
    }
    c->fd = sock;
    ret = evloop_add(srv->cfg.loop, sock, EPOLLIN | EPOLLRDHUP, on_conn, c);
    if (ret < 0) {
        close(sock);
        c->fd = -1;
    }
    return ret;
}

static void on_accept(void *opaque, uint32_t events)
{
    struct ctl_server *srv = opaque;
    int sock;

    (void)events;
    sock = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (sock < 0) {
        if (errno != EAGAIN && errno != EINTR)
            log_once(LOG_WARN, "control: accept failed: %s", strerror(errno));
        return;
    }
    (void)ctl_server_adopt(srv, sock);
}

static int listen_on(struct ctl_server *srv, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int ret;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "control socket path %s is longer than %zu bytes", path,
                 sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);
    srv->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (srv->listen_fd < 0)
        goto fail;
    /* The runtime directory is ours (rundir_create locked it), so a socket file there is stale. */
    (void)unlink(path);
    if (bind(srv->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        goto fail;
    strcpy(srv->path, path);
    if (listen(srv->listen_fd, CTL_MAX_CLIENTS) < 0)
        goto fail;
    ret = evloop_add(srv->cfg.loop, srv->listen_fd, EPOLLIN, on_accept, srv);
    if (ret < 0) {
        errno = -ret;
        goto fail;
    }
    return 0;
fail:
    ret = -errno;
    snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
    return ret;
}

struct ctl_server *ctl_server_create(const char *path, const struct ctl_server_config *cfg,
                                     char *err, size_t errlen)
{
    struct ctl_server *srv = calloc(1, sizeof(*srv));
    int ret;

    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->cfg = *cfg;
    srv->listen_fd = -1;
    for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
        srv->conns[i] = (struct conn){.srv = srv, .fd = -1};
    if (path) {
        ret = listen_on(srv, path, err, errlen);
        if (ret < 0) {
            ctl_server_destroy(srv);
            errno = -ret;
            return NULL;
        }
    }
    return srv;
}

void ctl_server_close_listener(struct ctl_server *srv)
{
    if (!srv || srv->listen_fd < 0)
        return;
    (void)evloop_del(srv->cfg.loop, srv->listen_fd);
    close(srv->listen_fd);
    srv->listen_fd = -1;
    if (srv->path[0])
        (void)unlink(srv->path);
    srv->path[0] = '\0';
}

unsigned ctl_server_clients(const struct ctl_server *srv)
{
    unsigned n = 0;

    for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
        n += srv->conns[i].fd >= 0;
    return n;
}

void ctl_server_destroy(struct ctl_server *srv)
{
    if (!srv)
        return;
    ctl_server_close_listener(srv);
    for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
        if (srv->conns[i].fd >= 0)
            drop(&srv->conns[i]);
    free(srv);
}
