/* eventloop.c: the VMM's one epoll loop; other threads stop it through an eventfd. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/lib.h"
#include "vmm.h"

#define EVLOOP_MAX_WATCHES 64

struct watch {
    int fd;
    evloop_fn fn;
    void *opaque;
};

struct evloop {
    int epfd;
    int stopfd;
    _Atomic bool stop;
    pthread_mutex_t lock; /* guards watches[]: callbacks may add or remove watches */
    struct watch watches[EVLOOP_MAX_WATCHES];
};

struct evloop *evloop_create(void)
{
    struct evloop *loop = calloc(1, sizeof(*loop));
    struct epoll_event ev = {.events = EPOLLIN};

    if (!loop)
        return NULL;
    for (unsigned i = 0; i < EVLOOP_MAX_WATCHES; i++)
        loop->watches[i].fd = -1;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        goto fail_free;
    loop->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->stopfd < 0)
        goto fail_epoll;
    ev.data.ptr = NULL; /* NULL marks the stop eventfd */
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->stopfd, &ev) < 0)
        goto fail_stopfd;
    pthread_mutex_init(&loop->lock, NULL);
    return loop;

fail_stopfd:
    close(loop->stopfd);
fail_epoll:
    close(loop->epfd);
fail_free:
    free(loop);
    return NULL;
}

void evloop_destroy(struct evloop *loop)
{
    if (!loop)
        return;
    close(loop->stopfd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->lock);
    free(loop);
}

int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_fn fn, void *opaque)
{
    struct epoll_event ev = {.events = events};
    struct watch *w = NULL;
    int ret = 0;

    pthread_mutex_lock(&loop->lock);
    for (unsigned i = 0; i < EVLOOP_MAX_WATCHES && !w; i++)
        if (loop->watches[i].fd < 0)
            w = &loop->watches[i];
    if (!w) {
        ret = -ENOSPC;
        goto out;
    }
    *w = (struct watch){.fd = fd, .fn = fn, .opaque = opaque};
    ev.data.ptr = w;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        ret = -errno;
        w->fd = -1;
    }
out:
    pthread_mutex_unlock(&loop->lock);
    return ret;
}

int evloop_del(struct evloop *loop, int fd)
{
    int ret = -ENOENT;

    pthread_mutex_lock(&loop->lock);
    for (unsigned i = 0; i < EVLOOP_MAX_WATCHES; i++) {
        if (loop->watches[i].fd == fd) {
            loop->watches[i].fd = -1;
            ret = epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
            break;
        }
    }
    pthread_mutex_unlock(&loop->lock);
    return ret;
}

int evloop_run(struct evloop *loop)
{
    struct epoll_event evs[16];

    while (!loop->stop) {
        int n = epoll_wait(loop->epfd, evs, (int)ARRAY_SIZE(evs), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n && !loop->stop; i++) {
            struct watch *w = evs[i].data.ptr;
            if (!w)
                continue;
            /* A callback earlier in this batch may have removed this watch. */
            if (w->fd < 0)
                continue;
            w->fn(w->opaque, evs[i].events);
        }
    }
    return 0;
}

void evloop_stop(struct evloop *loop)
{
    uint64_t one = 1;

    loop->stop = true;
    (void)!write(loop->stopfd, &one, sizeof(one));
}
