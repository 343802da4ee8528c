/* vsock-test.c: one static peer for vsock tests and benchmarks, run in the guest (AF_VSOCK) and
 * on the host (AF_UNIX, with kiln's "CONNECT <port>\n" handshake). docs/vsock.md shows its use.
 *
 *   vsock-test serve ADDR MODE [-n COUNT]     ADDR: vsock:PORT | unix:PATH
 *       MODE echo (send everything back), sink (read to EOF, answer "<bytes> <sum>\n"),
 *       count (sink without the checksum: benchmarks), abort:N (read N bytes, then die)
 *   vsock-test client ADDR MODE [-c CONC] [-r RETRY_MS] [-s SEED]
 *       ADDR: vsock:CID:PORT | unix:PATH:PORT (hybrid handshake) | plain:PATH (plain socket)
 *       MODE echo:N (stream N pseudo-random bytes, verify the echo), send:N (and compare the
 *       sink's checksum), blast:N (against count: throughput only), rr:COUNT:SIZE (round trips
 *       against echo: median and p90 in us), abort:N (pass if the transfer breaks before N)
 * Prints "vsock-test: OK ..." or "vsock-test: FAIL ..." and exits 0 or 1. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#define CHUNK (256 * 1024)

static uint8_t bufa[CHUNK], bufb[CHUNK];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, const char *arg)
{
    printf("vsock-test: FAIL ");
    printf(fmt, arg, strerror(errno));
    printf("\n");
    fflush(stdout);
    exit(1);
}

/* A byte-exact pseudo-random stream (xorshift64*), the same for the same seed. */
struct prng {
    uint64_t s, word;
    unsigned left;
};
static void prng_fill(struct prng *p, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!p->left) {
            p->s ^= p->s >> 12, p->s ^= p->s << 25, p->s ^= p->s >> 27;
            p->word = p->s * 0x2545F4914F6CDD1DULL;
            p->left = 8;
        }
        out[i] = (uint8_t)p->word;
        p->word >>= 8;
        p->left--;
    }
}

/* Order-sensitive checksum (Fletcher-like over bytes). */
struct sum {
    uint64_t a, b;
};
static void sum_add(struct sum *s, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s->a += d[i] + 1;
        s->b += s->a;
    }
}

/* ---- addresses ---- */
static int open_addr(const char *addr, int listening)
{
    char path[108];
    unsigned cid = 0, port = 0;
    int fd;

    if (!strncmp(addr, "vsock:", 6)) {
        struct sockaddr_vm sa = {.svm_family = AF_VSOCK};
        fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket(AF_VSOCK) for %s: %s", addr);
        if (listening) {
            sa.svm_cid = VMADDR_CID_ANY;
            sa.svm_port = (unsigned)strtoul(addr + 6, NULL, 10);
            if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128))
                die("listen on %s: %s", addr);
            return fd;
        }
        if (sscanf(addr + 6, "%u:%u", &cid, &port) != 2)
            die("bad address %s (want vsock:CID:PORT)%s", addr);
        sa.svm_cid = cid;
        sa.svm_port = port;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
            close(fd);
            return -1;
        }
        return fd;
    }
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    int hybrid = !strncmp(addr, "unix:", 5) && !listening;
    if (strncmp(addr, "unix:", 5) && strncmp(addr, "plain:", 6))
        die("bad address %s (want vsock:..., unix:... or plain:...)%s", addr);
    snprintf(path, sizeof(path), "%s", strchr(addr, ':') + 1);
    if (hybrid) {
        char *colon = strrchr(path, ':');
        if (!colon)
            die("bad address %s (want unix:PATH:PORT)%s", addr);
        *colon = '\0';
        port = (unsigned)strtoul(colon + 1, NULL, 10);
    }
    memcpy(su.sun_path, path, sizeof(path));
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listening) {
        unlink(path);
        if (bind(fd, (struct sockaddr *)&su, sizeof(su)) || listen(fd, 128))
            die("listen on %s: %s", addr);
        return fd;
    }
    if (connect(fd, (struct sockaddr *)&su, sizeof(su))) {
        close(fd);
        return -1;
    }
    if (hybrid) { /* "CONNECT <port>\n" -> "OK <local>\n", byte by byte to stop at the line */
        char line[64];
        size_t n = 0;
        dprintf(fd, "CONNECT %u\n", port);
        while (n < sizeof(line) - 1 && read(fd, line + n, 1) == 1 && line[n] != '\n')
            n++;
        line[n] = '\0';
        if (strncmp(line, "OK ", 3)) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static int connect_retry(const char *addr, long retry_ms)
{
    double end = now_s() + (double)retry_ms / 1000;
    for (;;) {
        int fd = open_addr(addr, 0);
        if (fd >= 0 || now_s() >= end)
            return fd;
        usleep(50 * 1000);
    }
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- server ---- */
static int serve_one(int fd, const char *mode)
{
    struct sum s = {0, 0};
    unsigned long long total = 0, abort_at = 0;
    int echo = !strcmp(mode, "echo"), sum = !strcmp(mode, "sink");

    if (!strncmp(mode, "abort:", 6))
        abort_at = strtoull(mode + 6, NULL, 0);
    for (;;) {
        ssize_t n = read(fd, bufa, sizeof(bufa));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        total += (size_t)n;
        if (abort_at && total >= abort_at)
            _exit(3); /* a peer that vanishes mid-transfer */
        if (sum)
            sum_add(&s, bufa, (size_t)n);
        if (echo && write_all(fd, bufa, (size_t)n))
            return 1;
    }
    if (!echo)
        dprintf(fd, "%llu %016llx%016llx\n", total, (unsigned long long)s.a,
                (unsigned long long)s.b);
    return 0;
}

static int serve(const char *addr, const char *mode, long count)
{
    int lfd = open_addr(addr, 1), status, bad = 0;
    long served = 0, live = 0;

    signal(SIGPIPE, SIG_IGN);
    printf("vsock-test: listening on %s (%s)\n", addr, mode);
    fflush(stdout);
    while (count <= 0 || served < count) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        served++;
        if (fork() == 0) {
            close(lfd);
            _exit(serve_one(fd, mode));
        }
        live++;
        close(fd);
        while (live && waitpid(-1, &status, WNOHANG) > 0)
            live--;
    }
    while (wait(&status) > 0)
        bad |= !WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3);
    return bad;
}

/* ---- client ---- */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Streams n bytes and checks what comes back (echo) while sending: poll on both directions. */
static int run_echo(int fd, unsigned long long n, uint64_t seed)
{
    struct prng tx = {seed | 1, 0, 0}, rx = tx;
    unsigned long long sent = 0, got = 0;
    size_t pend = 0, off = 0;

    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        if (poll(&p, 1, 10000) <= 0)
            return fprintf(stdout, "vsock-test: FAIL echo stalled at %llu/%llu\n", got, n), 1;
        if ((p.revents & POLLOUT) && sent < n) {
            if (!pend) {
                pend = n - sent < CHUNK ? (size_t)(n - sent) : CHUNK;
                prng_fill(&tx, bufa, pend);
                off = 0;
            }
            ssize_t w = send(fd, bufa + off, pend - off, MSG_DONTWAIT);
            if (w > 0) {
                off += (size_t)w;
                sent += (size_t)w;
                if (off == pend)
                    pend = 0;
                if (sent == n)
                    shutdown(fd, SHUT_WR);
            } else if (w < 0 && errno != EAGAIN) {
                return 2;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            static uint8_t want[CHUNK];
            ssize_t r = recv(fd, bufb, sizeof(bufb), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                return 2;
            if (r > 0) {
                prng_fill(&rx, want, (size_t)r);
                if (memcmp(want, bufb, (size_t)r))
                    return printf("vsock-test: FAIL echo differs near byte %llu\n", got), 1;
                got += (size_t)r;
            }
        }
    }
    return 0;
}

static int run_send(int fd, unsigned long long n, uint64_t seed, int check)
{
    struct prng g = {seed | 1, 0, 0};
    struct sum s = {0, 0};
    unsigned long long left = n, rn;
    char line[80], want[80];
    size_t len = 0;

    if (!check) /* throughput only: one pseudo-random chunk, sent over and over */
        prng_fill(&g, bufa, CHUNK);
    while (left) {
        size_t k = left < CHUNK ? (size_t)left : CHUNK;
        if (check) {
            prng_fill(&g, bufa, k);
            sum_add(&s, bufa, k);
        }
        if (write_all(fd, bufa, k))
            return 2;
        left -= k;
    }
    shutdown(fd, SHUT_WR);
    while (len < sizeof(line) - 1) {
        ssize_t r = read(fd, line + len, sizeof(line) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    line[len] = '\0';
    if (sscanf(line, "%llu", &rn) != 1 || rn != n)
        return printf("vsock-test: FAIL sink saw \"%s\", sent %llu bytes\n", line, n), 1;
    snprintf(want, sizeof(want), "%llu %016llx%016llx\n", n, (unsigned long long)s.a,
             (unsigned long long)s.b);
    if (check && strcmp(line, want))
        return printf("vsock-test: FAIL checksum \"%s\", want \"%s\"\n", line, want), 1;
    return 0;
}

static int run_rr(int fd, long count, size_t size, double *med, double *p90)
{
    double *t = calloc((size_t)count, sizeof(double));
    memset(bufa, 0x42, size);
    for (long i = 0; i < count; i++) {
        double t0 = now_s();
        size_t got = 0;
        if (write_all(fd, bufa, size))
            return 2;
        while (got < size) {
            ssize_t r = read(fd, bufb + got, size - got);
            if (r <= 0)
                return 2;
            got += (size_t)r;
        }
        t[i] = (now_s() - t0) * 1e6;
    }
    qsort(t, (size_t)count, sizeof(double), cmp_double);
    *med = count % 2 ? t[count / 2] : (t[count / 2 - 1] + t[count / 2]) / 2;
    *p90 = t[(count * 9 + 9) / 10 - 1];
    free(t);
    return 0;
}

static int client_one(const char *addr, const char *mode, long retry_ms, uint64_t seed)
{
    int fd = connect_retry(addr, retry_ms), r;
    unsigned long long n = strtoull(strchr(mode, ':') ? strchr(mode, ':') + 1 : "0", NULL, 0);
    double t0 = now_s(), med = 0, p90 = 0;

    if (fd < 0)
        return printf("vsock-test: FAIL connect %s: %s\n", addr, strerror(errno)), 1;
    if (!strncmp(mode, "echo:", 5))
        r = run_echo(fd, n, seed);
    else if (!strncmp(mode, "send:", 5) || !strncmp(mode, "blast:", 6))
        r = run_send(fd, n, seed, mode[0] == 's');
    else if (!strncmp(mode, "rr:", 3)) {
        long count = strtol(mode + 3, NULL, 0);
        const char *sz = strchr(mode + 3, ':');
        r = run_rr(fd, count, sz ? (size_t)strtoul(sz + 1, NULL, 0) : 64, &med, &p90);
        if (!r)
            printf("vsock-test: OK rr count=%ld median_us=%.1f p90_us=%.1f\n", count, med, p90);
        close(fd);
        return r;
    } else if (!strncmp(mode, "abort:", 6)) {
        r = run_send(fd, n, seed, 1);
        close(fd);
        if (r == 0)
            return printf("vsock-test: FAIL the transfer of %llu bytes did not break\n", n), 1;
        printf("vsock-test: OK transfer broke as expected\n");
        return 0;
    } else {
        return printf("vsock-test: FAIL unknown mode %s\n", mode), 1;
    }
    close(fd);
    if (r == 2)
        printf("vsock-test: FAIL %s on %s: connection broke: %s\n", mode, addr, strerror(errno));
    if (r)
        return 1;
    double secs = now_s() - t0;
    printf("vsock-test: OK %s bytes=%llu secs=%.3f MiBps=%.1f\n", mode, n, secs,
           (double)n / secs / 1048576.0);
    return 0;
}

int main(int argc, char **argv)
{
    long count = 0, conc = 1, retry_ms = 0;
    uint64_t seed = 12345;
    int opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 4) {
        fprintf(stderr, "usage: vsock-test serve ADDR MODE [-n COUNT] | client ADDR MODE [-c "
                        "CONC] [-r RETRY_MS] [-s SEED]\n");
        return 2;
    }
    optind = 4;
    while ((opt = getopt(argc, argv, "n:c:r:s:")) != -1) {
        if (opt == 'n')
            count = strtol(optarg, NULL, 0);
        else if (opt == 'c')
            conc = strtol(optarg, NULL, 0);
        else if (opt == 'r')
            retry_ms = strtol(optarg, NULL, 0);
        else if (opt == 's')
            seed = strtoull(optarg, NULL, 0);
        else
            return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(argv[1], "serve"))
        return serve(argv[2], argv[3], count);
    if (strcmp(argv[1], "client"))
        return 2;
    if (conc <= 1)
        return client_one(argv[2], argv[3], retry_ms, seed);
    /* Concurrent connections: one child each, all must pass. */
    double t0 = now_s();
    int failed = 0, status;
    for (long i = 0; i < conc; i++) {
        if (fork() == 0) {
            int fd = open("/dev/null", 1);
            dup2(fd, 1); /* children stay quiet unless they fail: see the exit code */
            _exit(client_one(argv[2], argv[3], retry_ms, seed + (uint64_t)i));
        }
    }
    while (wait(&status) > 0)
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (failed)
        return printf("vsock-test: FAIL %d of %ld concurrent connections\n", failed, conc), 1;
    printf("vsock-test: OK %ld concurrent %s secs=%.3f\n", conc, argv[3], now_s() - t0);
    return 0;
}
