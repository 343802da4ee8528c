/* blk_engines.c: measures the two I/O engines the block device could use (a worker pool doing
 * preadv, or io_uring) on 4 KiB random reads of one host file, shaped like the device: one
 * submitting thread keeps QD requests in flight and learns of completions through an eventfd.
 * Built on demand by bench/virtio/part_blk.sh (needs liburing-dev); the result is in docs/block.md.
 * Usage: blk_engines FILE [seconds] [qd] [direct] */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BS     4096
#define MAX_QD 128

static int fd, efd;
static uint64_t nblocks;
static unsigned qd = 32;
static double seconds = 2;
static uint8_t *bufs;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- worker pool ---- */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned pending[MAX_QD], npending;
static int stopping;

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        unsigned slot;
        uint64_t seed, one = 1;
        struct iovec iov;

        pthread_mutex_lock(&lock);
        while (!npending && !stopping)
            pthread_cond_wait(&cond, &lock);
        if (stopping) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        slot = pending[--npending];
        pthread_mutex_unlock(&lock);
        seed = now_ns() ^ slot;
        iov.iov_base = bufs + (size_t)slot * BS;
        iov.iov_len = BS;
        if (preadv(fd, &iov, 1, (off_t)(rnd(&seed) % nblocks) * BS) != BS)
            abort();
        if (write(efd, &one, sizeof(one)) != sizeof(one))
            abort();
    }
}

/* A request tried inline first with RWF_NOWAIT (served from the page cache without blocking),
 * handed to the pool only on EAGAIN. Returns 1 if it completed inline. */
static uint64_t nowait_seed = 1;
static int try_inline(unsigned slot)
{
    struct iovec iov = {bufs + (size_t)slot * BS, BS};
    ssize_t n = preadv2(fd, &iov, 1, (off_t)(rnd(&nowait_seed) % nblocks) * BS, RWF_NOWAIT);
    if (n == BS)
        return 1;
    if (n < 0 && errno == EAGAIN)
        return 0;
    abort();
}

static double run_pool(unsigned nthreads, int nowait)
{
    pthread_t th[8];
    uint64_t done = 0, t0, end, n;
    unsigned i;

    stopping = 0;
    for (i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    t0 = now_ns();
    end = t0 + (uint64_t)(seconds * 1e9);
    pthread_mutex_lock(&lock);
    for (i = 0; i < qd; i++)
        pending[npending++] = i;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    while (now_ns() < end) {
        if (read(efd, &n, sizeof(n)) != sizeof(n))
            abort();
        done += n;
        pthread_mutex_lock(&lock);
        for (i = 0; i < n && npending < qd; i++) {
            unsigned slot = (unsigned)(done + i) % qd;
            while (nowait && now_ns() < end && try_inline(slot))
                done++; /* served inline: the "guest" submits the next one at once */
            pending[npending++] = slot;
        }
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    fcntl(efd, F_SETFL, O_NONBLOCK);
    while (read(efd, &n, sizeof(n)) == sizeof(n))
        ;
    fcntl(efd, F_SETFL, 0);
    return (double)done / ((double)(now_ns() - t0) / 1e9);
}

/* ---- io_uring ---- */
static double run_uring(void)
{
    struct io_uring ring;
    struct iovec iov[MAX_QD];
    uint64_t seed = 88172645463325252ULL, done = 0, t0, end;
    unsigned i;

    if (io_uring_queue_init(MAX_QD, &ring, 0) < 0)
        return -1;
    for (i = 0; i < qd; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        iov[i].iov_base = bufs + (size_t)i * BS;
        iov[i].iov_len = BS;
        io_uring_prep_readv(sqe, fd, &iov[i], 1, (rnd(&seed) % nblocks) * BS);
        io_uring_sqe_set_data64(sqe, i);
    }
    io_uring_submit(&ring);
    t0 = now_ns();
    end = t0 + (uint64_t)(seconds * 1e9);
    while (now_ns() < end) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        if (io_uring_wait_cqe(&ring, &cqe) < 0)
            abort();
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            unsigned slot = (unsigned)io_uring_cqe_get_data64(cqe);
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            if (cqe->res != BS)
                abort();
            io_uring_prep_readv(sqe, fd, &iov[slot], 1, (rnd(&seed) % nblocks) * BS);
            io_uring_sqe_set_data64(sqe, slot);
            n++;
        }
        io_uring_cq_advance(&ring, n);
        done += n;
        io_uring_submit(&ring);
    }
    io_uring_queue_exit(&ring);
    return (double)done / ((double)(now_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
    struct stat st;
    int direct = argc > 4 && atoi(argv[4]);

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [seconds] [qd] [direct]\n", argv[0]);
        return 2;
    }
    if (argc > 2)
        seconds = atof(argv[2]);
    if (argc > 3)
        qd = (unsigned)atoi(argv[3]);
    if (qd < 1 || qd > MAX_QD)
        qd = 32;
    fd = open(argv[1], O_RDONLY | (direct ? O_DIRECT : 0));
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < BS) {
        fprintf(stderr, "blk_engines: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    nblocks = (uint64_t)st.st_size / BS;
    efd = eventfd(0, 0);
    if (posix_memalign((void **)&bufs, BS, (size_t)MAX_QD * BS))
        return 1;
    printf("{\"file_mib\": %llu, \"qd\": %u, \"direct\": %d, \"pool2_iops\": %.0f, "
           "\"pool4_iops\": %.0f, \"pool4_nowait_iops\": %.0f, \"uring_iops\": %.0f}\n",
           (unsigned long long)(st.st_size >> 20), qd, direct, run_pool(2, 0), run_pool(4, 0),
           run_pool(4, !direct), run_uring());
    return 0;
}
