/* loop.c: kiln-agent's single-threaded event loop (level-triggered epoll): descriptors, exec
 * deadlines and the pump that moves data between processes, files and connections. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

bool agent_quit;
static int epfd = -1;

void agent_log(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    dprintf(2, "kiln-agent: %.*s", n, buf);
}

uint64_t agent_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int loop_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    return epfd < 0 ? -errno : 0;
}

int loop_add(struct watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0)
        return -errno;
    w->events = events;
    w->added = true;
    return 0;
}

void loop_set(struct watch *w, uint32_t events)
{
    if (!w->added || w->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev) == 0)
        w->events = events;
}

void loop_close(struct watch *w)
{
    if (w->fd < 0)
        return;
    if (w->added)
        epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->fd = -1;
    w->added = false;
    w->events = 0;
}

static void deadline_cb(struct req *r, void *arg)
{
    uint64_t *next = arg;
    exec_check_deadline(r, agent_now_ns(), next);
}

void loop_run(void)
{
    struct epoll_event evs[64];
    bool busy = false;
    while (!agent_quit) {
        uint64_t next = 0;
        conns_each_req(deadline_cb, &next);
        int timeout = -1;
        if (busy) {
            timeout = 0;
        } else if (next) {
            uint64_t now = agent_now_ns();
            timeout = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
        }
        int n = epoll_wait(epfd, evs, 64, timeout);
        if (n < 0 && errno != EINTR) {
            agent_log("epoll_wait: %m");
            return;
        }
        /* A callback may close another watch of this batch (a connection closing its requests),
         * so pumping, which frees, happens only after the whole batch. */
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            if (w->fd >= 0)
                w->fn(w, evs[i].events);
        }
        busy = conns_pump();
    }
}
