/* sandboxbench.c: the sandbox benchmark (docs/sandbox.md, docs/benchmarks.md), side by side with
 * its baselines measured in the same place and the same run:
 *   cold start  kiln_sandbox_create() -> READY     vs  a bare `kiln run` boot to init's marker
 *   exec        `true` round trip in a sandbox     vs  a bare vsock 1-byte ping-pong (and PING)
 *   transfer    kiln_file_write/read of SIZE       vs  bare vsock streams of SIZE, both ways
 * Prints a table and one JSON line ("JSON {...}"). Static: the test bed has no glibc. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kiln.h"
#include "lib/lib.h"
#include "sandbox/sandbox.h"

extern char **environ;

struct opts {
    const char *kiln, *tools_initrd, *place, *json;
    int n, m;
    size_t size;
};

struct stats {
    double p50, p99, min;
};

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static struct stats summarize(double *v, int n)
{
    struct stats s = {0};

    if (n <= 0)
        return s;
    qsort(v, (size_t)n, sizeof(*v), cmp);
    s.p50 = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    s.p99 = v[(n * 99 + 99) / 100 - 1];
    s.min = v[0];
    return s;
}

static double ms_since(uint64_t t0)
{
    return (double)(time_now_ns() - t0) / 1e6;
}

/* A bare boot: `kiln run` of the default image whose init prints a marker, then reboots. */
static double bare_boot(const struct opts *o)
{
    char *argv[] = {(char *)o->kiln,
                    "run",
                    "--timeout",
                    "120",
                    "--append",
                    "kiln.exit=reboot -- echo KILN-BENCH-$((6*7))",
                    NULL};
    posix_spawn_file_actions_t fa;
    char buf[8192];
    size_t have = 0;
    double ms = -1;
    int p[2], st;
    pid_t pid;
    uint64_t t0;

    if (pipe(p) < 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    t0 = time_now_ns();
    if (posix_spawn(&pid, o->kiln, &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    while (pid > 0) {
        ssize_t n = read(p[0], buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        if (ms < 0 && strstr(buf, "KILN-BENCH-42"))
            ms = ms_since(t0);
        if (have > sizeof(buf) / 2) { /* keep the tail, where a split marker would be */
            memmove(buf, buf + have - 64, 64);
            have = 64;
        }
    }
    close(p[0]);
    if (pid > 0)
        waitpid(pid, &st, 0);
    return ms;
}

/* An exec whose process keeps running while we measure (a vsock-test server in the guest). */
static kiln_process *start_guest(kiln_sandbox *sb, const char *cmd)
{
    struct kiln_exec_opts e = {.shell = cmd};
    kiln_process *p = NULL;
    char msg[256];

    if (kiln_exec_start(sb, &e, &p) < 0)
        fprintf(stderr, "sandboxbench: %s: %s\n", cmd, kiln_sandbox_last_error(sb, msg, 256));
    return p;
}

static int dial_retry(const char *vsock, uint32_t port)
{
    char err[256];

    for (int i = 0; i < 200; i++) {
        int fd = agent_dial(vsock, port, 2000, err, sizeof(err));
        if (fd >= 0)
            return fd;
        usleep(20000);
    }
    fprintf(stderr, "sandboxbench: vsock port %u: %s\n", port, err);
    return -1;
}

static int read_full(int fd, void *b, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (uint8_t *)b + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Host -> guest stream of o->size bytes to a `count` server; MiB/s. */
static double bare_send(const char *vsock, size_t size, uint8_t *buf)
{
    int fd = dial_retry(vsock, 5001);
    char line[128] = "";
    uint64_t t0 = time_now_ns();
    double s;

    if (fd < 0)
        return -1;
    for (size_t off = 0; off < size; off += 256 * 1024)
        if (write_all(fd, buf, 256 * 1024) < 0)
            break;
    shutdown(fd, SHUT_WR);
    if (read(fd, line, sizeof(line) - 1) <= 0)
        line[0] = '\0';
    s = (double)(time_now_ns() - t0) / 1e9;
    close(fd);
    return strtoull(line, NULL, 10) == size ? (double)size / (1 << 20) / s : -1;
}

/* Guest -> host: the guest's vsock-test blasts into our <vsock>_5002 listener; MiB/s. */
static double bare_recv(kiln_sandbox *sb, const char *vsock, size_t size, uint8_t *buf)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char cmd[128];
    kiln_process *p;
    uint64_t t0 = 0, got = 0;
    double mibps = -1;
    int lfd, fd;

    if (strlen(vsock) + 6 > sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, vsock, strlen(vsock));
    memcpy(sa.sun_path + strlen(vsock), "_5002", 6);
    unlink(sa.sun_path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "vsock-test client vsock:2:5002 blast:%zu >/dev/null", size);
    p = start_guest(sb, cmd);
    fd = p ? accept(lfd, NULL, NULL) : -1;
    if (fd >= 0) {
        ssize_t n;
        t0 = time_now_ns();
        while ((n = read(fd, buf, 256 * 1024)) > 0)
            got += (uint64_t)n;
        mibps = (double)got / (1 << 20) / ((double)(time_now_ns() - t0) / 1e9);
        dprintf(fd, "%llu 00000000000000000000000000000000\n", (unsigned long long)got);
        close(fd);
    }
    if (p) {
        kiln_exec_wait(p, NULL, NULL, NULL, NULL);
        kiln_exec_free(p);
    }
    close(lfd);
    unlink(sa.sun_path);
    return got == size ? mibps : -1;
}

static void row(const char *what, struct stats s, const char *unit)
{
    printf("  %-34s p50 %9.3f  p99 %9.3f  min %9.3f %s\n", what, s.p50, s.p99, s.min, unit);
}

/* One exec to completion: its round trip and the guest's own account of it, in microseconds. */
static int time_exec(kiln_sandbox *sb, const struct kiln_exec_opts *e, double *rtt_us,
                     double *guest_us)
{
    struct kiln_exec_result res;
    uint64_t t0 = time_now_ns();

    if (kiln_exec(sb, e, &res) < 0)
        return -1;
    *rtt_us = ms_since(t0) * 1000;
    *guest_us = (double)res.status.runtime_us;
    int code = res.status.exit_code;
    kiln_exec_result_free(&res);
    return code ? -1 : 0;
}

/* MiB/s of a transfer of size bytes that started at t0 and just ended, or -1 if it failed. */
static double mibps(bool ok, size_t size, uint64_t t0)
{
    return ok ? (double)size / (1 << 20) / ((double)(time_now_ns() - t0) / 1e9) : -1;
}

static double upload_mibps(kiln_sandbox *sb, const uint8_t *buf, size_t size)
{
    uint64_t t0 = time_now_ns();
    return mibps(kiln_file_write(sb, "/tmp/bench", buf, size, NULL) == 0, size, t0);
}

/* /tmp/bench back to the host: into a buffer kiln_file_read grows, or into /dev/null. */
static double download_mibps(kiln_sandbox *sb, size_t size, bool to_devnull)
{
    uint8_t *back = NULL;
    size_t len = 0;
    double v = -1;
    uint64_t t0;

    if (to_devnull) {
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        t0 = time_now_ns();
        if (fd >= 0) {
            v = mibps(kiln_file_read_fd(sb, "/tmp/bench", fd, NULL) == 0, size, t0);
            close(fd);
        }
        return v;
    }
    t0 = time_now_ns();
    v = mibps(kiln_file_read(sb, "/tmp/bench", &back, &len, 0) == 0 && len == size, size, t0);
    free(back);
    return v;
}

static void transfer_row(const char *what, double v, double bare, const char *note)
{
    printf("  %s %8.1f   bare vsock %8.1f   ratio %.2f (%s)\n", what, v, bare, v / bare, note);
}

static int running_phase(const struct opts *o, FILE *json)
{
    struct kiln_sandbox_config cfg = {
        .kiln_bin = o->kiln, .initrd = o->tools_initrd, .mem_bytes = 512ULL << 20};
    double *ex = calloc((size_t)o->m, sizeof(double)), *pg = calloc((size_t)o->m, sizeof(double));
    /* The agent's own account of each exec: child started -> reaped, in the guest's clock. */
    double *gx = calloc((size_t)o->m, sizeof(double));
    /* and the same for nop, the smallest static program (tests/guest/nop.c) */
    double *nx = calloc((size_t)o->m, sizeof(double)), *ng = calloc((size_t)o->m, sizeof(double));
    double *rt = calloc((size_t)o->m, sizeof(double)), wr, wr2, rd, rd1, rd2, bs, br;
    const char *argv_true[] = {"true", NULL}, *argv_nop[] = {"/usr/bin/nop", NULL};
    struct kiln_exec_opts e = {.argv = argv_true}, en = {.argv = argv_nop};
    uint8_t *buf = malloc(o->size), c = 'x';
    struct stats sx, sg, sp, sr, snx, sng;
    char err[2048], vsock[256];
    kiln_process *echo;
    kiln_sandbox *sb;
    uint64_t t0;
    int fd;

    if (!ex || !gx || !nx || !ng || !pg || !rt || !buf ||
        kiln_sandbox_create(&cfg, &sb, err, sizeof(err)) < 0) {
        fprintf(stderr, "sandboxbench: cannot start the sandbox: %s\n", err);
        return -1;
    }
    memset(buf, 0xa5, o->size);
    sandbox_vsock_path(kiln_sandbox_name(sb), vsock, sizeof(vsock));
    for (int i = 0; i < o->m; i++) {
        if (time_exec(sb, &e, &ex[i], &gx[i]) < 0)
            return -1;
        t0 = time_now_ns();
        kiln_sandbox_ping(sb, 5000);
        pg[i] = ms_since(t0) * 1000;
        if (time_exec(sb, &en, &nx[i], &ng[i]) < 0)
            return -1;
    }
    echo = start_guest(sb, "vsock-test serve vsock:5000 echo -n 1 >/dev/null");
    fd = echo ? dial_retry(vsock, 5000) : -1;
    for (int i = 0; fd >= 0 && i < o->m; i++) {
        t0 = time_now_ns();
        if (write(fd, &c, 1) != 1 || read_full(fd, &c, 1) < 0)
            return -1;
        rt[i] = ms_since(t0) * 1000;
    }
    if (fd >= 0)
        close(fd);
    kiln_exec_free(echo);
    sx = summarize(ex, o->m);
    sg = summarize(gx, o->m);
    sp = summarize(pg, o->m);
    snx = summarize(nx, o->m);
    sng = summarize(ng, o->m);
    sr = summarize(rt, fd >= 0 ? o->m : 0);
    wr = upload_mibps(sb, buf, o->size);
    /* Once more (truncated, rewritten): the guest reuses the pages it just freed, which the host
     * already backs, so this one shows the transfer path without the first touch of fresh
     * guest memory (docs/sandbox.md). */
    wr2 = upload_mibps(sb, buf, o->size);
    rd = download_mibps(sb, o->size, false);
    /* Once more: where the place is itself a VM (the test bed), the first download's buffer is
     * memory the place had never used, so that one also paid the place's own first touch. */
    rd1 = download_mibps(sb, o->size, false);
    /* The same into /dev/null: the transfer path alone, receiving as the bare stream does,
     * without growing a 64 MiB buffer in this process (docs/sandbox.md). */
    rd2 = download_mibps(sb, o->size, true);
    kiln_file_remove(sb, "/tmp/bench", false);
    kiln_process *sink = start_guest(sb, "vsock-test serve vsock:5001 count -n 1 >/dev/null");
    bs = sink ? bare_send(vsock, o->size, buf) : -1;
    kiln_exec_free(sink);
    br = bare_recv(sb, vsock, o->size, buf);
    kiln_sandbox_destroy(sb);

    printf("\nin one running sandbox (%d runs each; microseconds):\n", o->m);
    row("exec `true` round trip", sx, "us");
    row("  of which the guest process", sg, "us");
    row("exec `nop` round trip", snx, "us");
    row("  of which the guest process", sng, "us");
    row("agent PING round trip", sp, "us");
    row("bare vsock 1-byte ping-pong", sr, "us");
    printf("  exec / bare vsock ping-pong (p50)    %.2fx   (target <= 2x); nop %.2fx\n",
           sx.p50 / sr.p50, snx.p50 / sr.p50);
    printf("\nfile transfer of %zu MiB (MiB/s):\n", o->size >> 20);
    transfer_row("host -> guest  kiln_file_write", wr, bs, "target >= 0.5");
    transfer_row("host -> guest  same, rewritten", wr2, bs, "guest memory already touched");
    transfer_row("guest -> host  kiln_file_read ", rd, br, "target >= 0.5");
    transfer_row("guest -> host  same, again    ", rd1, br, "buffer memory used before");
    transfer_row("guest -> host  same, /dev/null", rd2, br, "no buffer to grow here");
    fprintf(
        json,
        ",\"exec_us\":{\"p50\":%.1f,\"p99\":%.1f,\"min\":%.1f},\"exec_guest_us\":{\"p50\":%.1f},"
        "\"exec_nop_us\":{\"p50\":%.1f,\"p99\":%.1f},\"exec_nop_guest_us\":{\"p50\":%.1f},"
        "\"ping_us\":{\"p50\":%.1f,\"p99\":%.1f},"
        "\"vsock_rtt_us\":{\"p50\":%.1f,\"p99\":%.1f,\"min\":%.1f},"
        "\"exec_vs_vsock_p50\":%.3f,\"size_mib\":%zu,\"write_mibps\":%.1f,"
        "\"rewrite_mibps\":%.1f,\"vsock_h2g_mibps\":%.1f,\"read_mibps\":%.1f,\"reread_mibps\":%.1f,"
        "\"read_devnull_mibps\":%.1f,\"vsock_g2h_mibps\":%.1f",
        sx.p50, sx.p99, sx.min, sg.p50, snx.p50, snx.p99, sng.p50, sp.p50, sp.p99, sr.p50, sr.p99,
        sr.min, sx.p50 / sr.p50, o->size >> 20, wr, wr2, bs, rd, rd1, rd2, br);
    free(ex);
    free(gx);
    free(nx);
    free(ng);
    free(pg);
    free(rt);
    free(buf);
    return 0;
}

static int cold_phase(const struct opts *o, FILE *json)
{
    double *cold = calloc((size_t)o->n, sizeof(double)), *bare = calloc((size_t)o->n, 8);
    double *vmm = calloc((size_t)o->n, 8), *kern = calloc((size_t)o->n, 8);
    double *agent = calloc((size_t)o->n, 8), *stop = calloc((size_t)o->n, 8);
    struct kiln_sandbox_config cfg = {.kiln_bin = o->kiln};
    struct stats sc, sb_, sv, sk, sa, ss;
    char err[2048];

    for (int i = 0; i < o->n; i++) {
        struct kiln_ready_info r;
        kiln_sandbox *sb;
        uint64_t t0;

        /* Alternate which goes first, so drift spreads over both. */
        if (i % 2)
            bare[i] = bare_boot(o);
        if (kiln_sandbox_create(&cfg, &sb, err, sizeof(err)) < 0) {
            fprintf(stderr, "sandboxbench: run %d: %s\n", i, err);
            return -1;
        }
        kiln_sandbox_ready_info(sb, &r);
        cold[i] = (double)r.total_us / 1e3;
        vmm[i] = (double)r.vmm_us / 1e3;
        kern[i] = (double)r.kernel_us / 1e3;
        agent[i] = (double)r.agent_us / 1e3;
        t0 = time_now_ns();
        kiln_sandbox_destroy(sb);
        stop[i] = ms_since(t0);
        if (i % 2 == 0)
            bare[i] = bare_boot(o);
        fprintf(stderr, "\rsandboxbench: cold start %d/%d", i + 1, o->n);
        if (bare[i] < 0) {
            fprintf(stderr, "sandboxbench: bare boot %d saw no marker\n", i);
            return -1;
        }
    }
    sc = summarize(cold, o->n);
    sb_ = summarize(bare, o->n);
    sv = summarize(vmm, o->n);
    sk = summarize(kern, o->n);
    sa = summarize(agent, o->n);
    ss = summarize(stop, o->n);
    printf("cold start, %d runs each, alternating (milliseconds):\n", o->n);
    row("sandbox create -> READY (caller)", sc, "ms");
    row("  VMM start -> READY (VMM's clock)", sv, "ms");
    row("  guest: kernel until agent start", sk, "ms");
    row("  guest: agent ready (boot clock)", sa, "ms");
    row("sandbox destroy (stop + reap)", ss, "ms");
    row("bare kiln run -> init's marker", sb_, "ms");
    printf("  cold start / bare boot (p50)          %.2fx   (target <= 1.2x)\n", sc.p50 / sb_.p50);
    fprintf(json,
            "\"runs\":%d,\"cold_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"min\":%.2f},\"vmm_ready_ms\":"
            "{\"p50\":%.2f},\"guest_kernel_ms\":{\"p50\":%.2f},\"guest_agent_ms\":{\"p50\":%.2f},"
            "\"destroy_ms\":{\"p50\":%.2f},\"bare_boot_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"min\":"
            "%.2f},\"cold_vs_bare_p50\":%.3f",
            o->n, sc.p50, sc.p99, sc.min, sv.p50, sk.p50, sa.p50, ss.p50, sb_.p50, sb_.p99, sb_.min,
            sc.p50 / sb_.p50);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.n = 30, .m = 200, .size = 64u << 20, .place = "unknown", .json = NULL};
    char *text = NULL;
    size_t textlen = 0;
    FILE *json = open_memstream(&text, &textlen);
    int ret;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--kiln"))
            o.kiln = argv[i + 1];
        else if (!strcmp(argv[i], "--tools-initrd"))
            o.tools_initrd = argv[i + 1];
        else if (!strcmp(argv[i], "--place"))
            o.place = argv[i + 1];
        else if (!strcmp(argv[i], "--json"))
            o.json = argv[i + 1];
        else if (!strcmp(argv[i], "-n"))
            o.n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-m"))
            o.m = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size-mib"))
            o.size = (size_t)atoi(argv[i + 1]) << 20;
    }
    if (!o.kiln || !o.tools_initrd || o.n < 1 || o.m < 1 || o.size < (1 << 20) || !json) {
        fprintf(stderr, "usage: sandboxbench --kiln PATH --tools-initrd PATH [-n RUNS] [-m "
                        "ROUNDS] [--size-mib N] [--place TEXT] [--json FILE]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows through the test bed's console */
    log_set_level(LOG_ERROR);
    fprintf(json, "{\"place\":\"%s\",", o.place);
    printf("sandbox benchmark in: %s\n\n", o.place);
    ret = cold_phase(&o, json);
    if (ret == 0)
        ret = running_phase(&o, json);
    fputs("}", json);
    fclose(json);
    if (ret < 0)
        return 1;
    printf("\nJSON %s\n", text);
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (f) {
            fprintf(f, "%s\n", text);
            fclose(f);
        }
    }
    free(text);
    return 0;
}
