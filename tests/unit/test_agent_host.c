/* test_agent_host.c: kiln-agent run as a host process over a socket pair (no VM): exec with exit
 * codes and signals, stdout/stderr separation, every byte value, stdin, timeouts, SIGNAL, PTY and
 * resize, 16 concurrent execs, 1 GiB of output in bounded agent memory, flow control, disconnects
 * and malformed frames (docs/agent-protocol.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <cmocka.h>

#include "agent_client.h"

#define ID 7

static void test_ping(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    ac_queue(&a, KILN_AGENT_PING, 0, 0, "hello", 5, NULL, 0);
    struct kiln_agent_hdr h;
    const uint8_t *p;
    assert_true(ac_next(&a, &h, &p, 5000));
    assert_int_equal(h.type, KILN_AGENT_PONG);
    assert_int_equal(h.len, 5);
    assert_memory_equal(p, "hello", 5);
    int st = ac_close(&a);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_exit_codes(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {0}, y = {0}, z = {0};
    xr_simple(&a, &x, 1, KILN_AGENT_EXEC_SHELL, (const char *[]){"exit 3", NULL});
    assert_true(x.started && x.exited);
    assert_int_equal(x.exit.code, 3);
    assert_int_equal(x.exit.flags, 0);
    xr_simple(&a, &y, 1, 0, (const char *[]){"true", NULL}); /* id reused after EXIT */
    assert_int_equal(y.exit.code, 0);
    xr_simple(&a, &z, 2, KILN_AGENT_EXEC_SHELL, (const char *[]){"kill -TERM $$", NULL});
    assert_int_equal(z.exit.code, SIGTERM);
    assert_int_equal(z.exit.flags, KILN_AGENT_EXIT_SIGNALED);
    xr_free(&x);
    xr_free(&y);
    xr_free(&z);
    ac_close(&a);
}

static void test_stdout_stderr(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {0};
    xr_simple(&a, &x, ID, KILN_AGENT_EXEC_SHELL,
              (const char *[]){"echo out; echo err >&2; echo $0 $1", "zero", "one", NULL});
    assert_true(x.end[0] && x.end[1]);
    assert_string_equal((char *)x.out[0], "out\nzero one\n");
    assert_string_equal((char *)x.out[1], "err\n");
    xr_free(&x);
    ac_close(&a);
}

static void test_every_byte(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    uint8_t all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (uint8_t)i;
    /* stdin -> stdout and stdin -> stderr, byte for byte */
    const char *cmds[] = {"cat", "cat >&2"};
    for (int s = 0; s < 2; s++) {
        struct xr x = {.id = ID, .in = all, .in_len = sizeof(all), .cap = {1024, 1024}};
        struct kiln_agent_exec h = {.flags = KILN_AGENT_EXEC_SHELL | KILN_AGENT_EXEC_STDIN};
        xr_send(&a, &x, &h, (const char *[]){cmds[s], NULL}, NULL, NULL);
        struct xr *xs = &x;
        assert_true(xr_run(&a, &xs, 1, 10000));
        assert_int_equal(x.exit.code, 0);
        assert_int_equal(x.len[s], sizeof(all));
        assert_int_equal(x.len[!s], 0);
        assert_memory_equal(x.out[s], all, sizeof(all));
        xr_free(&x);
    }
    ac_close(&a);
}

static void test_env_cwd_credentials(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {.id = 1, .cap = {4096, 4096}};
    struct kiln_agent_exec h = {.flags = KILN_AGENT_EXEC_ENV_CLEAR};
    xr_send(&a, &x, &h, (const char *[]){"/usr/bin/env", NULL}, (const char *[]){"FOO=bar", NULL},
            NULL);
    struct xr *xs = &x;
    assert_true(xr_run(&a, &xs, 1, 10000));
    assert_string_equal((char *)x.out[0], "FOO=bar\n");
    xr_free(&x);

    struct xr y = {.id = 2, .cap = {4096, 4096}};
    struct kiln_agent_exec hy = {.flags = KILN_AGENT_EXEC_SHELL};
    xr_send(&a, &y, &hy, (const char *[]){"pwd; echo $FOO", NULL},
            (const char *[]){"FOO=added", NULL}, "/usr");
    xs = &y;
    assert_true(xr_run(&a, &xs, 1, 10000));
    assert_string_equal((char *)y.out[0], "/usr\nadded\n");
    xr_free(&y);

    if (geteuid() == 0) {
        struct xr z = {.id = 3, .cap = {4096, 4096}};
        struct kiln_agent_exec hz = {.flags = KILN_AGENT_EXEC_SHELL, .uid = 65534, .gid = 65533};
        xr_send(&a, &z, &hz, (const char *[]){"id -u; id -g; id -G", NULL}, NULL, NULL);
        xs = &z;
        assert_true(xr_run(&a, &xs, 1, 10000));
        assert_string_equal((char *)z.out[0], "65534\n65533\n65533\n");
        xr_free(&z);
    }
    ac_close(&a);
}

static void expect_start_error(struct ac *a, uint32_t flags, uint32_t uid, const char *argv0,
                               const char *cwd, uint32_t status, const char *msg_part)
{
    struct xr x = {.id = 9};
    struct kiln_agent_exec h = {.flags = flags, .uid = uid, .gid = uid};
    xr_send(a, &x, &h, (const char *[]){argv0, NULL}, NULL, cwd);
    struct xr *xs = &x;
    assert_true(xr_run(a, &xs, 1, 10000));
    assert_false(x.started);
    assert_int_equal(x.err, status);
    assert_non_null(strstr(x.msg, msg_part));
    xr_free(&x);
}

static void test_exec_errors(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    expect_start_error(&a, 0, 0, "/nonexistent/prog", NULL, KILN_AGENT_E_NOT_FOUND, "execve");
    expect_start_error(&a, 0, 0, "no-such-program-kiln", NULL, KILN_AGENT_E_NOT_FOUND, "execve");
    expect_start_error(&a, 0, 0, "true", "/nonexistent", KILN_AGENT_E_NOT_FOUND, "chdir");
    expect_start_error(&a, 0, 0, "/etc/passwd", NULL, KILN_AGENT_E_PERMISSION, "execve");
    expect_start_error(&a, 0, 0, "true", "relative", KILN_AGENT_E_BAD_PATH, "EXEC");
    if (geteuid() == 0) {
        char dir[] = "/tmp/kiln-agent-XXXXXX";
        assert_non_null(mkdtemp(dir));
        chmod(dir, 0700);
        expect_start_error(&a, 0, 65534, "true", dir, KILN_AGENT_E_PERMISSION, "chdir");
        rmdir(dir);
    }
    ac_close(&a);
}

static void test_timeout_and_signal(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {.id = 1};
    struct kiln_agent_exec h = {.timeout_ms = 200};
    xr_send(&a, &x, &h, (const char *[]){"sleep", "30", NULL}, NULL, NULL);
    struct xr *xs = &x;
    assert_true(xr_run(&a, &xs, 1, 10000));
    assert_int_equal(x.exit.flags, KILN_AGENT_EXIT_SIGNALED | KILN_AGENT_EXIT_TIMED_OUT);
    assert_int_equal(x.exit.code, SIGKILL);
    assert_true(x.exit.runtime_us >= 150000 && x.exit.runtime_us < 10000000);

    /* SIGNAL to a running process */
    struct xr y = {.id = 2};
    struct kiln_agent_exec hy = {0};
    xr_send(&a, &y, &hy, (const char *[]){"sleep", "30", NULL}, NULL, NULL);
    struct kiln_agent_hdr fh;
    const uint8_t *p;
    assert_true(ac_next(&a, &fh, &p, 5000));
    assert_int_equal(fh.type, KILN_AGENT_STARTED);
    xs = &y;
    xr_frame(&a, &xs, 1, &fh, p);
    struct kiln_agent_signal sg = {SIGTERM, 0};
    ac_queue(&a, KILN_AGENT_SIGNAL, 0, 2, &sg, sizeof(sg), NULL, 0);
    assert_true(xr_run(&a, &xs, 1, 10000));
    assert_int_equal(y.exit.code, SIGTERM);
    assert_int_equal(y.exit.flags, KILN_AGENT_EXIT_SIGNALED | KILN_AGENT_EXIT_KILLED);

    /* SIGNAL for an id nobody uses: NO_REQUEST, the connection lives on */
    ac_queue(&a, KILN_AGENT_SIGNAL, 0, 77, &sg, sizeof(sg), NULL, 0);
    assert_true(ac_next(&a, &fh, &p, 5000));
    assert_int_equal(fh.type, KILN_AGENT_ERROR);
    assert_int_equal(fh.id, 77);
    assert_int_equal(((const struct kiln_agent_error *)(const void *)p)->status,
                     KILN_AGENT_E_NO_REQUEST);
    struct xr z = {0};
    xr_simple(&a, &z, 3, 0, (const char *[]){"true", NULL});
    assert_true(z.exited);
    xr_free(&z);
    ac_close(&a);
}

static void test_pty(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {.id = 1, .cap = {4096, 4096}, .pty = true};
    struct kiln_agent_exec h = {
        .flags = KILN_AGENT_EXEC_SHELL | KILN_AGENT_EXEC_PTY, .rows = 30, .cols = 100};
    xr_send(&a, &x, &h,
            (const char *[]){"stty size; tty; read l; stty size; echo got $l; exit 4", NULL}, NULL,
            NULL);
    struct xr *xs = &x;
    struct kiln_agent_hdr fh;
    const uint8_t *p;
    /* the first size, then a resize, then the line `read` waits for */
    while (!strstr((const char *)x.out[0], "/dev/pts/") && ac_next(&a, &fh, &p, 5000))
        xr_frame(&a, &xs, 1, &fh, p);
    struct kiln_agent_resize rz = {40, 120, 0};
    ac_queue(&a, KILN_AGENT_RESIZE, 0, 1, &rz, sizeof(rz), NULL, 0);
    x.in = (const uint8_t *)"go\n";
    x.in_len = 3;
    assert_true(xr_run(&a, &xs, 1, 10000));
    assert_int_equal(x.exit.code, 4);
    assert_int_equal(x.total[1], 0); /* one stream on a terminal */
    const char *out = (const char *)x.out[0];
    assert_non_null(strstr(out, "30 100"));
    assert_non_null(strstr(out, "/dev/pts/"));
    assert_non_null(strstr(out, "40 120"));
    assert_non_null(strstr(out, "got go"));
    xr_free(&x);
    ac_close(&a);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* LATE_START: STARTED still comes first (xr_frame checks the order), stdin credit included; a
 * failure is an ERROR without STARTED as before. */
static void test_late_start(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {0};
    xr_simple(&a, &x, 1, KILN_AGENT_EXEC_SHELL | KILN_AGENT_EXEC_LATE_START,
              (const char *[]){"echo hi; echo err >&2; exit 5", NULL});
    assert_true(x.started && x.pid > 0 && x.end[0] && x.end[1]);
    assert_string_equal((char *)x.out[0], "hi\n");
    assert_string_equal((char *)x.out[1], "err\n");
    assert_int_equal(x.exit.code, 5);
    xr_free(&x);

    static uint8_t big[1 << 20]; /* more than the initial window: WINDOW frames flow */
    memset(big, 'k', sizeof(big));
    struct xr y = {.id = 2, .in = big, .in_len = sizeof(big), .cap = {64, 64}};
    struct kiln_agent_exec h = {.flags = KILN_AGENT_EXEC_SHELL | KILN_AGENT_EXEC_STDIN |
                                         KILN_AGENT_EXEC_LATE_START};
    xr_send(&a, &y, &h, (const char *[]){"wc -c", NULL}, NULL, NULL);
    struct xr *ys = &y;
    assert_true(xr_run(&a, &ys, 1, 10000));
    assert_true(y.started);
    assert_int_equal(atoi((char *)y.out[0]), sizeof(big));
    xr_free(&y);

    expect_start_error(&a, KILN_AGENT_EXEC_LATE_START, 0, "/nonexistent/prog", NULL,
                       KILN_AGENT_E_NOT_FOUND, "execve");
    ac_close(&a);
}

/* An END waits for the process's EXIT only briefly: a process that closes stdout and keeps
 * running has its stdout ended long before it exits. */
static void test_end_not_held_for_long(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {.id = 3, .cap = {64, 64}};
    struct kiln_agent_exec h = {.flags = KILN_AGENT_EXEC_SHELL};
    xr_send(&a, &x, &h, (const char *[]){"exec >&-; sleep 1; echo late >&2", NULL}, NULL, NULL);
    struct xr *xs = &x;
    struct kiln_agent_hdr fh;
    const uint8_t *p;
    uint64_t t0 = now_ms(), end_at = 0;
    while (!x.done && ac_next(&a, &fh, &p, 5000)) {
        xr_frame(&a, &xs, 1, &fh, p);
        if (x.end[0] && !end_at)
            end_at = now_ms();
    }
    assert_true(x.done && x.exited);
    assert_true(end_at > 0);
    assert_true(end_at - t0 < 700); /* the hold is 10 ms; the process runs for 1 s */
    assert_string_equal((char *)x.out[1], "late\n");
    xr_free(&x);
    ac_close(&a);
}

/* The agent ignores SIGPIPE; its children start with every signal at its default, unblocked. */
static void test_child_signals_default(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {0};
    xr_simple(&a, &x, 1, KILN_AGENT_EXEC_SHELL,
              (const char *[]){"grep -E '^Sig(Ign|Blk)' /proc/self/status", NULL});
    assert_non_null(strstr((char *)x.out[0], "SigBlk:\t0000000000000000"));
    assert_non_null(strstr((char *)x.out[0], "SigIgn:\t0000000000000000"));
    xr_free(&x);
    ac_close(&a);
}

static void test_concurrent(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x[16];
    struct xr *xs[16];
    char names[16][16], idx[16][16];
    for (int i = 0; i < 16; i++) {
        x[i] = (struct xr){.id = 100 + (uint32_t)i, .cap = {1 << 20, 4096}};
        snprintf(names[i], sizeof(names[i]), "w%02d", i);
        snprintf(idx[i], sizeof(idx[i]), "%d", i);
        struct kiln_agent_exec h = {.flags = KILN_AGENT_EXEC_SHELL};
        xr_send(&a, &x[i], &h,
                (const char *[]){"i=0; while [ $i -lt 3000 ]; do echo $0; i=$((i+1)); done; "
                                 "exit $1",
                                 names[i], idx[i], NULL},
                NULL, NULL);
        xs[i] = &x[i];
    }
    assert_true(xr_run(&a, xs, 16, 20000));
    for (int i = 0; i < 16; i++) {
        assert_true(x[i].exited);
        assert_int_equal(x[i].exit.code, i);
        assert_int_equal(x[i].total[0], 3000 * 4);
        for (size_t k = 0; k < x[i].len[0]; k += 4)
            assert_memory_equal(x[i].out[0] + k, names[i], 3);
        xr_free(&x[i]);
    }
    ac_close(&a);
}

#if defined(__SANITIZE_ADDRESS__)
#define RSS_LIMIT_KIB (1024 * 1024) /* ASan's shadow and quarantine */
#else
#define RSS_LIMIT_KIB (24 * 1024)
#endif

static void test_gigabyte(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {.id = 1, .cap = {4096, 4096}};
    struct kiln_agent_exec h = {0};
    xr_send(&a, &x, &h, (const char *[]){"head", "-c", "1073741824", "/dev/zero", NULL}, NULL,
            NULL);
    struct xr *xs = &x;
    assert_true(xr_run(&a, &xs, 1, 20000));
    assert_int_equal(x.exit.code, 0);
    assert_int_equal(x.total[0], 1ull << 30);
    long kib = vm_hwm_kib(a.pid);
    fprintf(stderr, "agent peak RSS after 1 GiB of output: %ld KiB\n", kib);
    assert_true(kib > 0 && kib < RSS_LIMIT_KIB);
    xr_free(&x);
    ac_close(&a);
}

static void test_window_backpressure(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct xr x = {.id = 1, .hold_window = true};
    struct kiln_agent_exec h = {0};
    xr_send(&a, &x, &h, (const char *[]){"head", "-c", "10000000", "/dev/zero", NULL}, NULL, NULL);
    struct xr *xs = &x;
    assert_false(xr_run(&a, &xs, 1, 500)); /* stalls: no credit */
    assert_int_equal(x.total[0], KILN_AGENT_INITIAL_WINDOW);
    x.hold_window = false;
    struct kiln_agent_window w = {KILN_AGENT_STDOUT, 0xffffffffu};
    ac_queue(&a, KILN_AGENT_WINDOW, 0, 1, &w, sizeof(w), NULL, 0);
    assert_true(xr_run(&a, &xs, 1, 10000));
    assert_int_equal(x.total[0], 10000000);
    ac_close(&a);
}

static void test_disconnect(void **state)
{
    (void)state;
    /* Two connections to one agent on a Unix socket: one vanishes mid-stream, the other goes on. */
    char dir[] = "/tmp/kiln-agent-XXXXXX", sock[64];
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/agent.sock", dir);
    pid_t agent = fork();
    if (agent == 0) {
        execl(agent_path, "kiln-agent", "--listen-unix", sock, (char *)NULL);
        _exit(126);
    }
    struct ac a, b;
    int fds[2];
    for (int i = 0; i < 2; i++) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", sock);
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = -1;
        for (int t = 0; t < 200 && ok < 0; t++) {
            ok = connect(fds[i], (struct sockaddr *)&un, sizeof(un));
            if (ok < 0)
                usleep(10000);
        }
        assert_int_equal(ok, 0);
    }
    ac_open(&a, fds[0]);
    ac_open(&b, fds[1]);
    ac_hello(&a);
    ac_hello(&b);
    struct xr x = {.id = 1};
    struct kiln_agent_exec h = {0};
    xr_send(&a, &x, &h, (const char *[]){"sh", "-c", "sleep 60 & exec cat /dev/zero", NULL}, NULL,
            NULL);
    struct kiln_agent_hdr fh;
    const uint8_t *p;
    while (ac_next(&a, &fh, &p, 5000) && fh.type != KILN_AGENT_STDOUT) {
        struct xr *xs = &x;
        xr_frame(&a, &xs, 1, &fh, p);
    }
    assert_true(x.started);
    ac_close(&a); /* mid-stream */
    for (int i = 0; i < 200 && !gone_or_zombie((pid_t)x.pid); i++)
        usleep(10000);
    assert_true(gone_or_zombie((pid_t)x.pid));
    struct xr y = {0};
    xr_simple(&b, &y, 1, KILN_AGENT_EXEC_SHELL, (const char *[]){"echo alive", NULL});
    assert_string_equal((char *)y.out[0], "alive\n");
    xr_free(&y);
    ac_close(&b);
    assert_int_equal(waitpid(agent, NULL, WNOHANG), 0); /* the agent survived both */
    kill(agent, SIGTERM);
    waitpid(agent, NULL, 0);
    unlink(sock);
    rmdir(dir);
}

/* A fresh agent gets bytes; it must answer ERROR(status) and close, and exit cleanly. */
static void expect_fatal(bool hello, const void *bytes, size_t len, uint32_t status)
{
    struct ac a;
    ac_spawn_raw(&a);
    if (hello)
        ac_hello(&a);
    ac_queue_raw(&a, bytes, len);
    struct kiln_agent_hdr h;
    const uint8_t *p;
    assert_true(ac_next(&a, &h, &p, 5000));
    assert_int_equal(h.type, KILN_AGENT_ERROR);
    assert_int_equal(((const struct kiln_agent_error *)(const void *)p)->status, status);
    assert_false(ac_next(&a, &h, &p, 5000)); /* then EOF */
    int st = ac_close(&a);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_malformed(void **state)
{
    (void)state;
    uint8_t f[256];
    agent_hdr_encode(f, KILN_AGENT_PING, 0, 0, 0);
    expect_fatal(false, f, 16, KILN_AGENT_E_PROTOCOL); /* no HELLO first */
    struct kiln_agent_hello v9 = {9, 9, 65536, 0};
    agent_frame_build(f, sizeof(f), KILN_AGENT_HELLO, 0, 0, &v9, 16, NULL, 0);
    expect_fatal(false, f, 32, KILN_AGENT_E_VERSION);
    agent_hdr_encode(f, KILN_AGENT_STDIN, 0, 1, 0x7fffffff);
    expect_fatal(true, f, 16, KILN_AGENT_E_TOO_LARGE); /* oversized */
    agent_hdr_encode(f, 200, 0, 1, 0);
    expect_fatal(true, f, 16, KILN_AGENT_E_PROTOCOL); /* unknown type */
    memset(f, 0xa5, sizeof(f));
    expect_fatal(true, f, sizeof(f), KILN_AGENT_E_TOO_LARGE); /* garbage */
    agent_hdr_encode(f, KILN_AGENT_STDOUT, 0, 1, 0);
    expect_fatal(true, f, 16, KILN_AGENT_E_PROTOCOL); /* an agent-only type */
    ssize_t n = agent_frame_build(f, sizeof(f), KILN_AGENT_EXEC, 0, 1, "\0\0\0", 3, NULL, 0);
    expect_fatal(true, f, (size_t)n, KILN_AGENT_E_PROTOCOL); /* short EXEC */
    n = agent_frame_build(f, sizeof(f), KILN_AGENT_STAT, 0, 0, "/", 2, NULL, 0);
    expect_fatal(true, f, (size_t)n, KILN_AGENT_E_PROTOCOL); /* request id 0 */
    agent_hdr_encode(f, KILN_AGENT_PING, 0, 0, 65);
    memset(f + 16, 0, 65);
    expect_fatal(true, f, 16 + 65, KILN_AGENT_E_TOO_LARGE);
    /* a busy id: two EXECs with id 5 */
    struct kiln_agent_exec h = {0};
    n = agent_exec_build(f, sizeof(f), 5, &h, (const char *[]){"sleep", "5", NULL}, NULL, NULL);
    memcpy(f + n, f, (size_t)n);
    struct ac a;
    ac_spawn(&a);
    ac_queue_raw(&a, f, (size_t)n * 2);
    struct kiln_agent_hdr fh;
    const uint8_t *p;
    assert_true(ac_next(&a, &fh, &p, 5000));
    assert_int_equal(fh.type, KILN_AGENT_STARTED);
    assert_true(ac_next(&a, &fh, &p, 5000));
    assert_int_equal(fh.type, KILN_AGENT_ERROR);
    assert_int_equal(((const struct kiln_agent_error *)(const void *)p)->status,
                     KILN_AGENT_E_BUSY_ID);
    ac_close(&a);
    /* STDIN beyond the granted window */
    ac_spawn(&a);
    struct kiln_agent_exec hs = {.flags = KILN_AGENT_EXEC_STDIN};
    n = agent_exec_build(f, sizeof(f), 1, &hs, (const char *[]){"sleep", "5", NULL}, NULL, NULL);
    ac_queue_raw(&a, f, (size_t)n);
    uint8_t *big = calloc(1, KILN_AGENT_MAX_PAYLOAD);
    for (int i = 0; i < 5; i++) {
        ac_queue(&a, KILN_AGENT_STDIN, 0, 1, big, KILN_AGENT_MAX_PAYLOAD, NULL, 0);
        while (ac_unsent(&a) > AGENT_FRAME_MAX && ac_io(&a, 10)) {
        }
    }
    free(big);
    uint32_t last = 0;
    while (ac_next(&a, &fh, &p, 5000))
        if (fh.type == KILN_AGENT_ERROR)
            last = ((const struct kiln_agent_error *)(const void *)p)->status;
    assert_int_equal(last, KILN_AGENT_E_PROTOCOL);
    int st = ac_close(&a);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    agent_locate(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_stdout_stderr),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_env_cwd_credentials),
        cmocka_unit_test(test_exec_errors),
        cmocka_unit_test(test_timeout_and_signal),
        cmocka_unit_test(test_pty),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_gigabyte),
        cmocka_unit_test(test_window_backpressure),
        cmocka_unit_test(test_disconnect),
        cmocka_unit_test(test_late_start),
        cmocka_unit_test(test_end_not_held_for_long),
        cmocka_unit_test(test_child_signals_default),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
