/* ukbench.c: the unikernel benchmark's runner (docs/benchmarks.md): runs one command N times and
 * reports process start -> exit (and -> a marker line on stdout) as median, p90 and minimum, plus
 * kiln's own set-up time when the command writes --stats. Static: the test bed has busybox only. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 1000

extern char **environ;

struct series {
    double v[MAX_RUNS];
    int n;
};

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median (mean of the middle two when even), p90 (nearest rank), min */
static void summarize(const struct series *s, double out[3])
{
    double v[MAX_RUNS];

    if (!s->n) {
        out[0] = out[1] = out[2] = NAN;
        return;
    }
    memcpy(v, s->v, s->n * sizeof(double));
    qsort(v, s->n, sizeof(double), cmp);
    out[0] = s->n % 2 ? v[s->n / 2] : (v[s->n / 2 - 1] + v[s->n / 2]) / 2;
    out[1] = v[(int)ceil(0.9 * s->n) - 1];
    out[2] = v[0];
}

/* ,"key":{"median":..,"p90":..,"min":..} with null for a series that has no samples */
static void json_triple(const char *key, const double v[3])
{
    if (isnan(v[0])) {
        printf(",\"%s\":null", key);
        return;
    }
    printf(",\"%s\":{\"median\":%.3f,\"p90\":%.3f,\"min\":%.3f}", key, v[0], v[1], v[2]);
}

static double stats_setup_us(const char *path)
{
    char buf[1024] = "";
    FILE *f = fopen(path, "r");
    const char *p;

    if (!f)
        return NAN;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    p = strstr(buf, "\"setup_us\":");
    return p ? strtod(p + 11, NULL) : NAN;
}

/* One run: start -> marker seen (or NAN), start -> exit; returns the exit code or -1. */
static int run_timeout_s = 120;

static int run_once(char **cmd, const char *marker, double *mark_ms, double *exit_ms)
{
    posix_spawn_file_actions_t fa;
    char buf[4096], tail[8192] = "";
    size_t tail_len = 0;
    int pipefd[2], status;
    pid_t pid;
    double t0;
    ssize_t n;

    *mark_ms = NAN;
    if (pipe(pipefd) < 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    t0 = now_ms();
    if (posix_spawn(&pid, cmd[0], &fa, NULL, cmd, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    for (;;) {
        struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
        int left = (int)(t0 + run_timeout_s * 1e3 - now_ms());

        if (left <= 0 || poll(&p, 1, left) == 0) {
            kill(pid, SIGKILL); /* a stuck run counts as a failure, not a hang */
            break;
        }
        n = read(pipefd[0], buf, sizeof(buf));
        if (n <= 0)
            break;
        if (!marker || !isnan(*mark_ms))
            continue;
        /* keep a tail so a marker split across reads is still found */
        if (tail_len + (size_t)n >= sizeof(tail)) {
            size_t keep = strlen(marker);
            memmove(tail, tail + tail_len - keep, keep);
            tail_len = keep;
        }
        memcpy(tail + tail_len, buf, n < (ssize_t)(sizeof(tail) - tail_len - 1) ? (size_t)n : 0);
        tail_len += (size_t)n < sizeof(tail) - tail_len - 1 ? (size_t)n : 0;
        tail[tail_len] = '\0';
        if (strstr(tail, marker))
            *mark_ms = now_ms() - t0;
    }
    close(pipefd[0]);
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    *exit_ms = now_ms() - t0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    const char *name = "run", *marker = NULL, *stats = NULL;
    static struct series exits, marks, setups;
    int n = 30, want = 0, failures = 0, i;
    double s[3][3];

    setvbuf(stdout, NULL, _IOLBF, 0); /* results arrive line by line through the test bed */
    for (i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (!strcmp(argv[i], "--marker") && i + 1 < argc)
            marker = argv[++i];
        else if (!strcmp(argv[i], "--stats") && i + 1 < argc)
            stats = argv[++i];
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            run_timeout_s = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--expect") && i + 1 < argc)
            want = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: ukbench [-n N] [--name NAME] [--marker TEXT] [--stats FILE] "
                            "[--expect CODE] [--timeout S] -- COMMAND...\n");
            return 2;
        }
    }
    if (i + 1 >= argc || n < 1 || n > MAX_RUNS) {
        fprintf(stderr, "ukbench: give -n 1..%d and a command after --\n", MAX_RUNS);
        return 2;
    }
    for (int r = 0; r < n; r++) {
        double mark, ex;
        int code = run_once(&argv[i + 1], marker, &mark, &ex);

        if (code != want || (marker && isnan(mark))) {
            failures++;
            continue;
        }
        exits.v[exits.n++] = ex;
        if (marker)
            marks.v[marks.n++] = mark;
        if (stats) {
            double su = stats_setup_us(stats);
            if (!isnan(su))
                setups.v[setups.n++] = su;
        }
    }
    summarize(&exits, s[0]);
    summarize(&marks, s[1]);
    summarize(&setups, s[2]);
    printf("%-34s n=%-3d exit median %8.2f ms  p90 %8.2f  min %8.2f", name, exits.n, s[0][0],
           s[0][1], s[0][2]);
    if (marker)
        printf("  | marker median %8.2f ms", s[1][0]);
    if (stats)
        printf("  | set-up median %7.1f us (min %.1f)", s[2][0], s[2][2]);
    printf("%s\n", failures ? "  (some runs failed)" : "");
    printf("JSON {\"name\":\"%s\",\"n\":%d,\"failures\":%d", name, exits.n, failures);
    json_triple("exit_ms", s[0]);
    json_triple("marker_ms", s[1]);
    json_triple("setup_us", s[2]);
    printf("}\n");
    return exits.n ? 0 : 1;
}
