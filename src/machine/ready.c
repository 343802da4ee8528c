/* ready.c: the VMM's end of the guest agent's READY announcement: a Unix socket at
 * "<vsock path>_1025" (the hybrid vsock model: a guest connection to host port 1025 lands there),
 * one READY frame per connection (docs/agent-protocol.md). It logs where the boot time went,
 * keeps the figures for --stats, and tells a waiting parent (--ready-fd) that the sandbox is up
 * (docs/sandbox.md). Everything the guest sends is checked; a bad frame is logged and dropped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/lib.h"
#include "machine.h"
#include "sandbox/frame.h"

#define READY_FRAME   (AGENT_HDR_SIZE + sizeof(struct kiln_agent_ready))
#define READY_CLIENTS 4 /* connections read at once; more wait in the backlog */

struct ready_client {
    struct ready *r;
    int fd;
    size_t have;
    uint8_t buf[READY_FRAME];
};

struct ready {
    struct evloop *loop;
    int listen_fd;
    int notify_fd; /* --ready-fd, or -1 once written */
    uint64_t start_ns;
    char path[128];
    struct ready_client clients[READY_CLIENTS];
    bool seen;
    struct kiln_agent_ready info;
    uint64_t vmm_us; /* VMM start -> READY */
};

static void client_close(struct ready_client *c)
{
    evloop_del(c->r->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    c->have = 0;
}

static void got_ready(struct ready *r, const struct kiln_agent_ready *info)
{
    char line[96];

    if (r->seen) {
        log_info("ready: another READY from the guest agent (it restarted?); ignored");
        return;
    }
    r->seen = true;
    r->info = *info;
    r->vmm_us = (time_now_ns() - r->start_ns) / 1000;
    log_info("ready: guest agent READY at %.1f ms after VMM start (guest: kernel %.1f ms, agent "
             "ready at %.1f ms of guest time)",
             (double)r->vmm_us / 1e3, (double)info->kernel_us / 1e3, (double)info->agent_us / 1e3);
    if (r->notify_fd > 0) {
        snprintf(line, sizeof(line), "READY %llu %llu %llu\n", (unsigned long long)info->kernel_us,
                 (unsigned long long)info->agent_us, (unsigned long long)r->vmm_us);
        if (write_all(r->notify_fd, line, strlen(line)) < 0)
            log_warn("ready: cannot tell the parent process: %s", strerror(errno));
        close(r->notify_fd);
        r->notify_fd = -1;
    }
}

static void on_client(void *opaque, uint32_t events)
{
    struct ready_client *c = opaque;
    struct kiln_agent_hdr h;
    struct kiln_agent_ready info;
    const uint8_t *payload;
    ssize_t n;

    (void)events;
    n = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (c->have)
            log_once(LOG_WARN,
                     "ready: the guest closed its READY connection after %zu of %zu "
                     "bytes",
                     c->have, (size_t)READY_FRAME);
        client_close(c);
        return;
    }
    c->have += (size_t)n;
    n = agent_frame_next(c->buf, c->have, sizeof(struct kiln_agent_ready), &h, &payload);
    if (n == 0 && c->have < sizeof(c->buf))
        return;
    if (n <= 0 || h.type != KILN_AGENT_READY || h.id != 0 ||
        agent_parse_ready(payload, h.len, &info) != 0)
        log_once(LOG_WARN, "ready: malformed READY from the guest (type %u, %u bytes); ignored",
                 h.type, h.len);
    else
        got_ready(c->r, &info);
    client_close(c);
}

static void on_accept(void *opaque, uint32_t events)
{
    struct ready *r = opaque;
    struct ready_client *c = NULL;
    int fd;

    (void)events;
    fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (unsigned i = 0; i < READY_CLIENTS && !c; i++)
        if (r->clients[i].fd < 0)
            c = &r->clients[i];
    if (!c || evloop_add(r->loop, fd, EPOLLIN, on_client, c) < 0) {
        log_once(LOG_WARN, "ready: too many READY connections at once; dropping one");
        close(fd);
        return;
    }
    c->fd = fd;
    c->have = 0;
}

struct ready *ready_create(struct evloop *loop, const char *vsock_path, int notify_fd,
                           uint64_t start_ns)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct ready *r = calloc(1, sizeof(*r));
    int ret;

    if (!r)
        return NULL;
    r->loop = loop;
    r->notify_fd = notify_fd > 0 ? notify_fd : -1;
    r->start_ns = start_ns;
    for (unsigned i = 0; i < READY_CLIENTS; i++)
        r->clients[i] = (struct ready_client){.r = r, .fd = -1};
    if (snprintf(r->path, sizeof(r->path), "%s_%d", vsock_path, KILN_AGENT_READY_PORT) >=
            (int)sizeof(sa.sun_path) ||
        strlen(r->path) >= sizeof(r->path)) {
        log_error("ready: socket path %s_%d is too long", vsock_path, KILN_AGENT_READY_PORT);
        ret = -ENAMETOOLONG;
        goto fail;
    }
    strcpy(sa.sun_path, r->path);
    (void)unlink(r->path); /* a stale socket of a dead VMM */
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->listen_fd < 0 || bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(r->listen_fd, 4) < 0) {
        ret = -errno;
        log_error("ready: cannot listen on %s: %s", r->path, strerror(errno));
        goto fail;
    }
    ret = evloop_add(loop, r->listen_fd, EPOLLIN, on_accept, r);
    if (ret < 0)
        goto fail;
    return r;

fail:
    if (r->listen_fd > 0)
        close(r->listen_fd);
    free(r);
    errno = -ret;
    return NULL;
}

void ready_destroy(struct ready *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < READY_CLIENTS; i++)
        if (r->clients[i].fd >= 0)
            client_close(&r->clients[i]);
    evloop_del(r->loop, r->listen_fd);
    close(r->listen_fd);
    unlink(r->path);
    if (r->notify_fd > 0)
        close(r->notify_fd);
    free(r);
}

void ready_write_stats(const struct ready *r, FILE *f)
{
    if (!r || !r->seen)
        return;
    fprintf(f, ",\"ready_us\":%llu,\"guest_kernel_us\":%llu,\"guest_agent_us\":%llu",
            (unsigned long long)r->vmm_us, (unsigned long long)r->info.kernel_us,
            (unsigned long long)r->info.agent_us);
}
