/* blk-bench.c: the guest side of bench/virtio/part_blk.sh: sequential write and read (1 MiB
 * blocks) and 4 KiB random reads at queue depth 1 and 8 on a block device, all with O_DIRECT so
 * the guest's page cache stays out of it. Prints one line:
 *   BLKBENCH seq_write_mibs=.. seq_read_mibs=.. rand_qd1_iops=.. rand_qd8_iops=..
 * Usage: blk-bench DEVICE [MiB to write and read, default 64] [seconds per random test, 3] */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEQ_BS  (1 << 20)
#define RAND_BS 4096
#define MAX_QD  8

static const char *dev;
static uint64_t span; /* bytes the tests cover */
static double seconds;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_dev(int flags)
{
    int fd = open(dev, flags | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "blk-bench: %s: %s\n", dev, strerror(errno));
        exit(1);
    }
    return fd;
}

static double seq(int write)
{
    int fd = open_dev(write ? O_WRONLY : O_RDONLY);
    void *buf;
    double t0;

    if (posix_memalign(&buf, 4096, SEQ_BS))
        exit(1);
    memset(buf, 0x5a, SEQ_BS);
    t0 = now();
    for (uint64_t off = 0; off < span; off += SEQ_BS) {
        ssize_t n =
            write ? pwrite(fd, buf, SEQ_BS, (off_t)off) : pread(fd, buf, SEQ_BS, (off_t)off);
        if (n != SEQ_BS) {
            fprintf(stderr, "blk-bench: %s at %llu: %s\n", write ? "write" : "read",
                    (unsigned long long)off, n < 0 ? strerror(errno) : "short");
            exit(1);
        }
    }
    if (write)
        fdatasync(fd);
    t0 = now() - t0;
    close(fd);
    free(buf);
    return (double)span / (1 << 20) / t0;
}

struct worker {
    pthread_t th;
    uint64_t seed, done;
    double end;
};

static void *rand_reader(void *opaque)
{
    struct worker *w = opaque;
    int fd = open_dev(O_RDONLY);
    uint64_t blocks = span / RAND_BS;
    void *buf;

    if (posix_memalign(&buf, 4096, RAND_BS))
        exit(1);
    while (now() < w->end) {
        for (int i = 0; i < 64; i++) {
            w->seed ^= w->seed << 13;
            w->seed ^= w->seed >> 7;
            w->seed ^= w->seed << 17;
            if (pread(fd, buf, RAND_BS, (off_t)((w->seed % blocks) * RAND_BS)) != RAND_BS) {
                fprintf(stderr, "blk-bench: random read: %s\n", strerror(errno));
                exit(1);
            }
            w->done++;
        }
    }
    close(fd);
    free(buf);
    return NULL;
}

static double rand_read(int qd)
{
    struct worker w[MAX_QD];
    uint64_t total = 0;
    double t0 = now();

    for (int i = 0; i < qd; i++) {
        w[i] =
            (struct worker){.seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1), .end = t0 + seconds};
        pthread_create(&w[i].th, NULL, rand_reader, &w[i]);
    }
    for (int i = 0; i < qd; i++) {
        pthread_join(w[i].th, NULL);
        total += w[i].done;
    }
    return (double)total / (now() - t0);
}

int main(int argc, char **argv)
{
    double wr, rd, q1, q8;

    if (argc < 2) {
        fprintf(stderr, "usage: blk-bench DEVICE [MiB] [seconds]\n");
        return 2;
    }
    dev = argv[1];
    span = (uint64_t)(argc > 2 ? atoi(argv[2]) : 64) << 20;
    seconds = argc > 3 ? atof(argv[3]) : 3;
    if (span < SEQ_BS || seconds <= 0) {
        fprintf(stderr, "blk-bench: give at least 1 MiB and a positive time\n");
        return 2;
    }
    wr = seq(1);
    rd = seq(0);
    q1 = rand_read(1);
    q8 = rand_read(MAX_QD);
    printf(
        "BLKBENCH seq_write_mibs=%.1f seq_read_mibs=%.1f rand_qd1_iops=%.0f rand_qd8_iops=%.0f\n",
        wr, rd, q1, q8);
    return 0;
}
