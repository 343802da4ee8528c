/* bootbench.c: boot-time benchmark runner, kiln against QEMU microvm (docs/benchmarks.md). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bootbench.h"

#define MAX_ARGS   48
#define TAIL_BYTES 16384 /* > the read size: a marker split across reads stays whole */
/* The guest prints KILN-BENCH-42 by evaluating $((6*7)): the literal marker is never part of the
 * command line, so no echo of the command line can be mistaken for userspace running. */
#define MARKER       "KILN-BENCH-42"
#define GUEST_CMD    "-- echo KILN-BENCH-$((6*7))"
#define BASE_CMDLINE "console=ttyS0 reboot=k panic=-1 io_delay=none quiet kiln.exit=reboot"

extern char **environ;

static struct {
    const char *mode, *kiln, *qemu, *qemu_data, *qemu_machine, *qemu_cpu, *qemu_accel;
    const char *kernel, *initrd, *mem, *json, *place, *only;
    int n, timeout_s;
} opt = {
    .kiln = "build/kiln",
    .qemu = "qemu-system-x86_64",
    .qemu_machine = "microvm,x-option-roms=off,rtc=off,pit=off,pic=off",
    .qemu_cpu = "host",
    .qemu_accel = "kvm",
    .kernel = "build/guest/vmlinux",
    .initrd = "build/guest/initramfs.cpio.gz",
    .mem = "256M",
    .place = "",
    .n = 20,
    .timeout_s = 120,
};

static struct series data[NVMM][NMETRIC];
static int failures[NVMM];
static char stats_path[256];

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void add(int vmm, int m, double v)
{
    struct series *s = &data[vmm][m];

    if (s->n < BENCH_MAX_RUNS)
        s->v[s->n++] = v;
}

/* The number after "key": in a flat JSON object, or NAN. */
static double json_num(const char *json, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(json, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

struct run {
    double mark_ms, exit_ms;
    long maxrss_kib;
    int status;
    char tail[TAIL_BYTES + 1]; /* the last output, shown when the run fails */
    size_t tail_len;
};

/* Appends len (< TAIL_BYTES) bytes to the tail, dropping the oldest. */
static void keep_tail(struct run *r, const char *buf, size_t len)
{
    if (r->tail_len + len > TAIL_BYTES) {
        size_t drop = r->tail_len + len - TAIL_BYTES;
        memmove(r->tail, r->tail + drop, r->tail_len - drop);
        r->tail_len -= drop;
    }
    memcpy(r->tail + r->tail_len, buf, len);
    r->tail_len += len;
    r->tail[r->tail_len] = '\0';
}

/* Spawns argv with stdout and stderr on a pipe and stdin on /dev/null, timestamps the marker
 * line and the exit. Times count from just before posix_spawn. Returns 0 or -errno. */
static int spawn_and_time(char *const argv[], struct run *r)
{
    posix_spawn_file_actions_t fa;
    int fds[2], err, marked = 0;
    double t0, deadline;
    struct rusage ru;
    pid_t pid;
    char buf[8192];

    memset(r, 0, sizeof(*r));
    r->mark_ms = -1;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    t0 = now_ms();
    err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err) {
        close(fds[0]);
        return -err;
    }
    deadline = t0 + opt.timeout_s * 1e3;
    for (;;) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        double left = deadline - now_ms();
        int ready = left > 0 ? poll(&pfd, 1, (int)left + 1) : 0;
        ssize_t n;

        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            kill(pid, SIGKILL);
            wait4(pid, &r->status, 0, &ru);
            close(fds[0]);
            return -ETIMEDOUT;
        }
        n = read(fds[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        keep_tail(r, buf, (size_t)n);
        if (!marked && memmem(r->tail, r->tail_len, MARKER, strlen(MARKER))) {
            r->mark_ms = now_ms() - t0;
            marked = 1;
        }
    }
    close(fds[0]);
    if (wait4(pid, &r->status, 0, &ru) < 0)
        return -errno;
    r->exit_ms = now_ms() - t0;
    r->maxrss_kib = ru.ru_maxrss;
    return 0;
}

static void argv_print(FILE *f, char *const argv[])
{
    for (int i = 0; argv[i]; i++)
        fprintf(f, "%s%s", i ? " " : "", argv[i]);
}

/* Reports a failed run on stderr with its last output. */
static void run_failed(int vmm, int i, char *const argv[], const struct run *r, const char *why)
{
    failures[vmm]++;
    fprintf(stderr, "bootbench: %s run %d failed: %s\n  command: ", vmm_name[vmm], i + 1, why);
    argv_print(stderr, argv);
    fprintf(stderr, "\n  last output:\n%s\n", r->tail);
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Reads kiln's --stats file into buf; returns 0 or -errno. */
static int read_stats(char *buf, size_t len)
{
    FILE *f = fopen(stats_path, "re");
    size_t n;

    if (!f)
        return -errno;
    n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n ? 0 : -ENODATA;
}

static void build_kiln_argv(char **av, const char *cmdline, int host_mode)
{
    int a = 0;

    av[a++] = (char *)opt.kiln;
    av[a++] = "run";
    av[a++] = "--kernel", av[a++] = (char *)opt.kernel;
    av[a++] = "--initrd", av[a++] = (char *)opt.initrd;
    av[a++] = "--cmdline", av[a++] = (char *)cmdline;
    av[a++] = "--cpus", av[a++] = "1";
    av[a++] = "--mem", av[a++] = (char *)opt.mem;
    av[a++] = "--stats", av[a++] = stats_path;
    if (host_mode) {
        /* The guest crawls on PVM: only set-up and RSS matter, so stop after a second. */
        av[a++] = "--timeout", av[a++] = "1";
        av[a++] = "--console", av[a++] = "/dev/null";
    }
    av[a] = NULL;
}

static void build_qemu_argv(char **av, const char *cmdline)
{
    static char accel[64];
    int a = 0;

    snprintf(accel, sizeof(accel), "%s", opt.qemu_accel);
    av[a++] = (char *)opt.qemu;
    av[a++] = "-M", av[a++] = (char *)opt.qemu_machine;
    av[a++] = "-accel", av[a++] = accel;
    av[a++] = "-cpu", av[a++] = (char *)opt.qemu_cpu;
    av[a++] = "-smp", av[a++] = "1";
    av[a++] = "-m", av[a++] = (char *)opt.mem;
    av[a++] = "-nodefaults", av[a++] = "-no-user-config", av[a++] = "-nographic";
    av[a++] = "-serial", av[a++] = "stdio";
    /* microvm has no keyboard controller; with one, reboot=k resets the machine and -no-reboot
     * turns that into an exit, the same path kiln takes (its i8042 reset ends the VM). */
    av[a++] = "-device", av[a++] = "i8042";
    av[a++] = "-no-reboot";
    av[a++] = "-kernel", av[a++] = (char *)opt.kernel;
    av[a++] = "-initrd", av[a++] = (char *)opt.initrd;
    av[a++] = "-append", av[a++] = (char *)cmdline;
    if (opt.qemu_data)
        av[a++] = "-L", av[a++] = (char *)opt.qemu_data;
    av[a] = NULL;
}

/* One boot of one VMM in guest mode; appends its samples or counts a failure. */
static void guest_run(int vmm, int i, const char *cmdline)
{
    char *av[MAX_ARGS], js[1024];
    struct run r;
    int err, want = vmm == KILN ? 3 : 0;

    if (vmm == KILN)
        build_kiln_argv(av, cmdline, 0);
    else
        build_qemu_argv(av, cmdline);
    unlink(stats_path);
    err = spawn_and_time(av, &r);
    if (err == -ETIMEDOUT)
        return run_failed(vmm, i, av, &r, "timed out");
    if (err) {
        char why[128];
        snprintf(why, sizeof(why), "cannot start %s: %s", av[0], strerror(-err));
        return run_failed(vmm, i, av, &r, why);
    }
    if (r.mark_ms < 0)
        return run_failed(vmm, i, av, &r, "the marker line " MARKER " never appeared");
    if (exit_code(r.status) != want) {
        char why[128];
        snprintf(why, sizeof(why), "exit code %d, expected %d", exit_code(r.status), want);
        return run_failed(vmm, i, av, &r, why);
    }
    if (vmm == KILN) {
        if (read_stats(js, sizeof(js)) < 0)
            return run_failed(vmm, i, av, &r, "no --stats file");
        add(vmm, M_SETUP, json_num(js, "setup_us") / 1e3);
        add(vmm, M_RSS, json_num(js, "rss_anon_kib") + json_num(js, "rss_file_kib"));
        add(vmm, M_BOOTTIMER, json_num(js, "boot_timer_us") / 1e3);
    }
    add(vmm, M_MARK, r.mark_ms);
    add(vmm, M_EXIT, r.exit_ms);
    add(vmm, M_MAXRSS, (double)r.maxrss_kib);
}

/* One kiln start on this host's own KVM: set-up time and RSS only. */
static void host_run(int i, const char *cmdline)
{
    char *av[MAX_ARGS], js[1024];
    struct run r;
    double setup;
    int err;

    build_kiln_argv(av, cmdline, 1);
    unlink(stats_path);
    err = spawn_and_time(av, &r);
    if (err)
        return run_failed(KILN, i, av, &r, err == -ETIMEDOUT ? "timed out" : strerror(-err));
    if (read_stats(js, sizeof(js)) < 0)
        return run_failed(KILN, i, av, &r, "no --stats file");
    setup = json_num(js, "setup_us");
    if (!(setup > 0))
        return run_failed(KILN, i, av, &r, "the --stats file has no set-up time (no KVM_RUN?)");
    add(KILN, M_SETUP, setup / 1e3);
    add(KILN, M_RSS, json_num(js, "rss_anon_kib") + json_num(js, "rss_file_kib"));
}

static const char usage[] =
    "usage: bootbench host|guest [OPTIONS]\n"
    "  host: kiln's set-up time and RSS overhead on this host's /dev/kvm (--timeout 1 runs)\n"
    "  guest: boots with kiln and QEMU microvm in alternation; times the marker line and exit\n"
    "  -n N              runs per VMM (default 20; env BOOTBENCH_N)\n"
    "  --kiln PATH       kiln binary (default build/kiln)\n"
    "  --qemu PATH       QEMU binary (default qemu-system-x86_64)\n"
    "  --qemu-data DIR   QEMU firmware directory (-L DIR)\n"
    "  --qemu-machine M  default microvm,x-option-roms=off,rtc=off,\n                    "
    "pit=off,pic=off\n"
    "  --qemu-cpu CPU    default host\n"
    "  --qemu-accel A    kvm (default) or tcg (to check the command line without KVM)\n"
    "  --only VMM        kiln or qemu: run one side only (debugging)\n"
    "  --kernel PATH     default build/guest/vmlinux; --initrd PATH "
    "(build/guest/initramfs.cpio.gz)\n"
    "  --mem SIZE        guest RAM for both (default 256M)\n"
    "  --timeout S       per-run limit (default 120)\n"
    "  --place TEXT      where this runs, for the report\n"
    "  --json FILE       also write the JSON there\n";

/* A whole decimal number, or -1. */
static int to_int(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 0 || v > 1000000 ? -1 : (int)v;
}

static int parse_args(int argc, char **argv)
{
    const char *env = getenv("BOOTBENCH_N");

    if (argc < 2 || (strcmp(argv[1], "host") && strcmp(argv[1], "guest"))) {
        fprintf(stderr, "bootbench: the mode must be host or guest, not '%s'\n",
                argc < 2 ? "" : argv[1]);
        return -EINVAL;
    }
    opt.mode = argv[1];
    if (env && *env)
        opt.n = to_int(env);
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **sp = NULL;

        if (!v) {
            fprintf(stderr, "bootbench: option '%s' needs a value\n", o);
            return -EINVAL;
        }
        if (!strcmp(o, "-n"))
            opt.n = to_int(v);
        else if (!strcmp(o, "--timeout"))
            opt.timeout_s = to_int(v);
        else if (!strcmp(o, "--kiln"))
            sp = &opt.kiln;
        else if (!strcmp(o, "--qemu"))
            sp = &opt.qemu;
        else if (!strcmp(o, "--qemu-data"))
            sp = &opt.qemu_data;
        else if (!strcmp(o, "--qemu-machine"))
            sp = &opt.qemu_machine;
        else if (!strcmp(o, "--qemu-cpu"))
            sp = &opt.qemu_cpu;
        else if (!strcmp(o, "--qemu-accel"))
            sp = &opt.qemu_accel;
        else if (!strcmp(o, "--only"))
            sp = &opt.only;
        else if (!strcmp(o, "--kernel"))
            sp = &opt.kernel;
        else if (!strcmp(o, "--initrd"))
            sp = &opt.initrd;
        else if (!strcmp(o, "--mem"))
            sp = &opt.mem;
        else if (!strcmp(o, "--place"))
            sp = &opt.place;
        else if (!strcmp(o, "--json"))
            sp = &opt.json;
        else {
            fprintf(stderr, "bootbench: unknown option '%s'\n", o);
            return -EINVAL;
        }
        if (sp)
            *sp = v;
        i++;
    }
    if (opt.n < 1 || opt.n > BENCH_MAX_RUNS) {
        fprintf(stderr, "bootbench: -n (or BOOTBENCH_N) must be a number from 1 to %d\n",
                BENCH_MAX_RUNS);
        return -EINVAL;
    }
    if (opt.timeout_s < 1) {
        fprintf(stderr, "bootbench: --timeout must be a whole number of seconds, at least 1\n");
        return -EINVAL;
    }
    if (opt.only && strcmp(opt.only, "kiln") && strcmp(opt.only, "qemu")) {
        fprintf(stderr, "bootbench: --only must be kiln or qemu, not '%s'\n", opt.only);
        return -EINVAL;
    }
    return 0;
}

/* The kernel and initrd must be readable before any timing starts: a typo should not show up
 * as 2*N failed runs. */
static int check_inputs(int guest)
{
    int kiln = !guest || !opt.only || !strcmp(opt.only, "kiln");
    const char *need[] = {opt.kernel, opt.initrd, opt.kiln};

    for (size_t i = 0; i < (kiln ? 3u : 2u); i++) {
        if (access(need[i], R_OK) < 0) {
            fprintf(stderr, "bootbench: cannot read %s: %s\n", need[i], strerror(errno));
            return -errno;
        }
    }
    if (guest && opt.qemu_data && access(opt.qemu_data, R_OK | X_OK) < 0) {
        fprintf(stderr, "bootbench: --qemu-data %s: %s\n", opt.qemu_data, strerror(errno));
        return -errno;
    }
    return 0;
}

static int report(const struct report_info *info)
{
    printf("bootbench %s mode: N=%d per VMM, 1 vCPU, %s RAM, guest %s\n", opt.mode, opt.n, opt.mem,
           opt.kernel);
    if (*opt.place)
        printf("place: %s\n", opt.place);
    if (info->guest) {
        printf("qemu: %s\n", info->qemu_command);
        printf("exit figure: kiln.exit=reboot + reboot=k for both (kiln exits 3 on the i8042 "
               "reset; QEMU, given an i8042, exits through -no-reboot)\n");
    }
    bench_print_table(info, data);
    printf("JSON ");
    bench_write_json(stdout, info, data);
    if (opt.json) {
        FILE *f = fopen(opt.json, "we");
        if (!f) {
            fprintf(stderr, "bootbench: cannot write %s: %s\n", opt.json, strerror(errno));
            return -errno;
        }
        bench_write_json(f, info, data);
        if (fclose(f) != 0)
            return -errno;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static char cmdline[512], qemu_command[4096];
    char *qemu_argv[MAX_ARGS];
    struct report_info info = {0};
    size_t off = 0;
    int guest;

    if (parse_args(argc, argv) < 0) {
        fputs(usage, stderr);
        return 2;
    }
    guest = !strcmp(opt.mode, "guest");
    if (check_inputs(guest) < 0)
        return 2;
    snprintf(cmdline, sizeof(cmdline), "%s %s", BASE_CMDLINE, GUEST_CMD);
    snprintf(stats_path, sizeof(stats_path), "%s/bootbench-%d.json",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    build_qemu_argv(qemu_argv, cmdline);
    for (int i = 0; qemu_argv[i] && off < sizeof(qemu_command); i++)
        off += (size_t)snprintf(qemu_command + off, sizeof(qemu_command) - off, "%s%s",
                                i ? " " : "", qemu_argv[i]);
    /* Alternate the two VMMs (and which goes first) so drift, a noisy neighbour or the page
     * cache spreads over both; the first boots count too: nothing is discarded. */
    for (int i = 0; i < opt.n; i++) {
        if (!guest)
            host_run(i, cmdline);
        for (int v = 0; guest && v < NVMM; v++) {
            int vmm = (i % 2) ? NVMM - 1 - v : v;
            if (!opt.only || !strcmp(opt.only, vmm_name[vmm]))
                guest_run(vmm, i, cmdline);
        }
        fprintf(stderr, "bootbench: %s run %d/%d done\n", opt.mode, i + 1, opt.n);
    }
    unlink(stats_path);
    info = (struct report_info){
        .mode = opt.mode,
        .place = opt.place,
        .kernel = opt.kernel,
        .mem = opt.mem,
        .cmdline = cmdline,
        .qemu_command = guest ? qemu_command : NULL,
        .n = opt.n,
        .guest = guest,
        .failures = {failures[KILN], failures[QEMU]},
    };
    if (report(&info) < 0)
        return 1;
    return failures[KILN] || failures[QEMU] ? 1 : 0;
}
