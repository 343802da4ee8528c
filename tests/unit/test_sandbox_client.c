/* test_sandbox_client.c: libkiln's agent client (src/sandbox) against a scripted fake agent on a
 * socket pair: HELLO, request multiplexing, WINDOW credit both ways, and a misbehaving guest
 * (malformed, oversized, unexpected frames, credit overruns, a vanished peer) getting a clear
 * error and no crash. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "kiln.h"
#include "lib/lib.h"
#include "sandbox/frame.h"
#include "sandbox/sandbox.h"

struct fake {
    int fd;
    pthread_t thread;
    void (*script)(struct fake *f);
    uint64_t stdin_bytes, stdin_window_peak; /* what the host sent on STDIN, its max in flight */
    uint64_t windows;                        /* WINDOW bytes the host granted */
    int ok;                                  /* the script's own checks passed */
};

static int fake_read(struct fake *f, struct kiln_agent_hdr *h, uint8_t *payload)
{
    uint8_t raw[AGENT_HDR_SIZE];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = read(f->fd, raw + got, sizeof(raw) - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    if (agent_hdr_decode(raw, KILN_AGENT_MAX_PAYLOAD, h) != 0)
        return -1;
    for (got = 0; got < h->len;) {
        ssize_t n = read(f->fd, payload + got, h->len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

/* send() without SIGPIPE: the host may be gone by the time the fake speaks. */
static void raw_send(int fd, const void *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p = (const uint8_t *)p + n;
        len -= (size_t)n;
    }
}

static void fake_send(struct fake *f, uint16_t type, uint16_t flags, uint32_t id, const void *p,
                      size_t len)
{
    uint8_t hdr[AGENT_HDR_SIZE];

    agent_hdr_encode(hdr, type, flags, id, (uint32_t)len);
    raw_send(f->fd, hdr, sizeof(hdr));
    if (len)
        raw_send(f->fd, p, len);
}

static void fake_hello(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    struct kiln_agent_hello h = {1, 1, KILN_AGENT_MAX_PAYLOAD, 0};
    struct kiln_agent_hdr hdr;

    if (fake_read(f, &hdr, buf) < 0 || hdr.type != KILN_AGENT_HELLO)
        return;
    fake_send(f, KILN_AGENT_HELLO, 0, 0, &h, sizeof(h));
}

/* Reads frames until one of `type` (WINDOWs and STDIN are counted on the way). */
static uint32_t fake_expect(struct fake *f, uint16_t type, uint8_t *buf, uint32_t *len)
{
    struct kiln_agent_hdr h;

    while (fake_read(f, &h, buf) == 0) {
        if (h.type == KILN_AGENT_WINDOW)
            f->windows += ((struct kiln_agent_window *)buf)->bytes;
        if (h.type == type) {
            if (len)
                *len = h.len;
            return h.id;
        }
    }
    return 0;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;

    fake_hello(f);
    f->script(f);
    return NULL;
}

static kiln_sandbox *start(struct fake *f, void (*script)(struct fake *))
{
    int sv[2];
    kiln_sandbox *sb = NULL;
    char err[256];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->fd = sv[1];
    f->script = script;
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    assert_int_equal(kiln_sandbox_from_fd(sv[0], &sb, err, sizeof(err)), 0);
    return sb;
}

static void finish(struct fake *f, kiln_sandbox *sb)
{
    kiln_sandbox_destroy(sb);
    pthread_join(f->thread, NULL);
    close(f->fd);
}

static const char *last(kiln_sandbox *sb)
{
    static char msg[512];
    return kiln_sandbox_last_error(sb, msg, sizeof(msg));
}

static void send_exit(struct fake *f, uint32_t id, int32_t code, uint32_t flags)
{
    struct kiln_agent_exit x = {.code = code, .flags = flags, .runtime_us = 5};
    fake_send(f, KILN_AGENT_EXIT, 0, id, &x, sizeof(x));
}

static void send_started(struct fake *f, uint32_t id)
{
    struct kiln_agent_started s = {.pid = 42};
    fake_send(f, KILN_AGENT_STARTED, 0, id, &s, sizeof(s));
}

static int run_echo(kiln_sandbox *sb, struct kiln_exec_result *res)
{
    const char *argv[] = {"echo", "hi", NULL};
    struct kiln_exec_opts o = {.argv = argv};
    return kiln_exec(sb, &o, res);
}

/* ---- the happy path ---- */
static void script_exec(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    struct agent_exec_msg m;
    uint32_t len = 0, id = fake_expect(f, KILN_AGENT_EXEC, buf, &len);

    /* kiln_exec does not wait for STARTED (docs/agent-protocol.md, LATE_START) */
    f->ok = agent_parse_exec(buf, len, &m) == 0 && !strcmp(m.strings, "echo") &&
            (m.h.flags & KILN_AGENT_EXEC_LATE_START);
    send_started(f, id);
    fake_send(f, KILN_AGENT_STDOUT, 0, id, "hi\n", 3);
    fake_send(f, KILN_AGENT_STDERR, KILN_AGENT_F_END, id, "e", 1);
    fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, id, NULL, 0);
    send_exit(f, id, 9, KILN_AGENT_EXIT_SIGNALED);
    fake_expect(f, 0xffff, buf, NULL); /* until the host closes */
}

static void exec_collects_output_and_status(void **state)
{
    struct fake f = {0};
    struct kiln_exec_result res;
    kiln_sandbox *sb = start(&f, script_exec);

    (void)state;
    assert_int_equal(run_echo(sb, &res), 0);
    assert_int_equal(res.out_len, 3);
    assert_string_equal((char *)res.out, "hi\n");
    assert_string_equal((char *)res.err, "e");
    assert_int_equal(res.status.signal, 9);
    assert_int_equal(res.status.exit_code, 128 + 9);
    kiln_exec_result_free(&res);
    finish(&f, sb);
    assert_true(f.ok);
}

/* ---- two requests answered out of order on one connection ---- */
static void script_mux(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    uint32_t a = fake_expect(f, KILN_AGENT_EXEC, buf, NULL), b;

    send_started(f, a);
    b = fake_expect(f, KILN_AGENT_EXEC, buf, NULL);
    send_started(f, b);
    fake_send(f, KILN_AGENT_STDOUT, 0, b, "B", 1);
    fake_send(f, KILN_AGENT_STDOUT, 0, a, "A", 1);
    fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, b, "b", 1);
    send_exit(f, b, 2, 0);
    fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, a, "a", 1);
    send_exit(f, a, 1, 0);
    fake_expect(f, 0xffff, buf, NULL);
}

static void requests_are_demultiplexed(void **state)
{
    struct fake f = {0};
    const char *argv[] = {"x", NULL};
    struct kiln_exec_opts o = {.argv = argv};
    kiln_sandbox *sb = start(&f, script_mux);
    kiln_process *pa, *pb;
    struct kiln_exec_event ev;
    char out_a[8] = "", out_b[8] = "";
    int code_a = -1, code_b = -1;

    (void)state;
    assert_int_equal(kiln_exec_start(sb, &o, &pa), 0);
    assert_int_equal(kiln_exec_start(sb, &o, &pb), 0);
    while (kiln_exec_next(pb, 2000, &ev) == 0 && ev.type != KILN_EXEC_EXIT)
        strncat(out_b, (const char *)ev.data, ev.len);
    code_b = ev.status.exit_code;
    while (kiln_exec_next(pa, 2000, &ev) == 0 && ev.type != KILN_EXEC_EXIT)
        strncat(out_a, (const char *)ev.data, ev.len);
    code_a = ev.status.exit_code;
    assert_string_equal(out_a, "Aa");
    assert_string_equal(out_b, "Bb");
    assert_int_equal(code_a, 1);
    assert_int_equal(code_b, 2);
    assert_int_equal(kiln_exec_next(pa, 0, &ev), -ESRCH);
    kiln_exec_free(pa);
    kiln_exec_free(pb);
    finish(&f, sb);
}

/* ---- 16 threads on one handle ---- */
static void script_serve_execs(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    struct agent_exec_msg m;
    uint32_t len = 0, id;

    while ((id = fake_expect(f, KILN_AGENT_EXEC, buf, &len)) != 0) {
        if (agent_parse_exec(buf, len, &m) != 0)
            return;
        send_started(f, id);
        fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, id, m.strings, strlen(m.strings));
        fake_send(f, KILN_AGENT_STDERR, KILN_AGENT_F_END, id, NULL, 0);
        send_exit(f, id, (int32_t)strlen(m.strings), 0);
    }
}

struct worker {
    kiln_sandbox *sb;
    char word[40];
    int good;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const char *argv[] = {w->word, NULL};
    struct kiln_exec_opts o = {.argv = argv};

    for (int i = 0; i < 20; i++) {
        struct kiln_exec_result res;
        if (kiln_exec(w->sb, &o, &res) == 0 && !strcmp((char *)res.out, w->word) &&
            res.status.exit_code == (int)strlen(w->word))
            w->good++;
        kiln_exec_result_free(&res);
    }
    return NULL;
}

static void concurrent_requests_on_one_handle(void **state)
{
    struct fake f = {0};
    struct worker w[16];
    pthread_t t[16];
    kiln_sandbox *sb = start(&f, script_serve_execs);

    (void)state;
    for (int i = 0; i < 16; i++) {
        w[i] = (struct worker){.sb = sb};
        snprintf(w[i].word, sizeof(w[i].word), "worker-%02d-%.*s", i, i + 1, "abcdefghijklmnop");
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].good, 20);
    }
    finish(&f, sb);
}

/* ---- credit: the agent may send 1 MiB, then only what the host grants back ---- */
static void script_credit(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD], chunk[65536];
    uint32_t id = fake_expect(f, KILN_AGENT_EXEC, buf, NULL);
    uint64_t sent = 0, total = 4 * KILN_AGENT_INITIAL_WINDOW;

    send_started(f, id);
    while (sent < total) {
        /* Never beyond the credit: initial window plus what the host granted. */
        while (sent + sizeof(chunk) > KILN_AGENT_INITIAL_WINDOW + f->windows)
            if (!fake_expect(f, KILN_AGENT_WINDOW, buf, NULL))
                return;
        fake_send(f, KILN_AGENT_STDOUT, 0, id, chunk, sizeof(chunk));
        sent += sizeof(chunk);
    }
    fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, id, NULL, 0);
    fake_send(f, KILN_AGENT_STDERR, KILN_AGENT_F_END, id, NULL, 0);
    send_exit(f, id, 0, 0);
    f->ok = 1;
    fake_expect(f, 0xffff, buf, NULL);
}

static void output_credit_is_granted_as_consumed(void **state)
{
    struct fake f = {0};
    struct kiln_exec_result res;
    kiln_sandbox *sb = start(&f, script_credit);

    (void)state;
    assert_int_equal(run_echo(sb, &res), 0);
    assert_int_equal(res.out_len, 4 * KILN_AGENT_INITIAL_WINDOW);
    kiln_exec_result_free(&res);
    finish(&f, sb);
    assert_true(f.ok);
    assert_true(f.windows >= 3 * KILN_AGENT_INITIAL_WINDOW);
}

/* The host's STDIN never exceeds the agent's grants. */
static void script_stdin(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    struct kiln_agent_window w = {.stream = KILN_AGENT_STDIN};
    struct kiln_agent_hdr h;
    uint64_t granted = KILN_AGENT_INITIAL_WINDOW;
    uint32_t id = fake_expect(f, KILN_AGENT_EXEC, buf, NULL);

    send_started(f, id);
    f->ok = 1;
    while (fake_read(f, &h, buf) == 0 && h.type == KILN_AGENT_STDIN) {
        f->stdin_bytes += h.len;
        if (f->stdin_bytes > granted)
            f->ok = 0;
        if (h.flags & KILN_AGENT_F_END)
            break;
        /* Grant slowly: only after each 512 KiB. */
        if (f->stdin_bytes + 512 * 1024 > granted) {
            w.bytes = 512 * 1024;
            granted += w.bytes;
            fake_send(f, KILN_AGENT_WINDOW, 0, id, &w, sizeof(w));
        }
    }
    fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, id, NULL, 0);
    fake_send(f, KILN_AGENT_STDERR, KILN_AGENT_F_END, id, NULL, 0);
    send_exit(f, id, 0, 0);
    fake_expect(f, 0xffff, buf, NULL);
}

static void stdin_respects_agent_credit(void **state)
{
    static uint8_t data[5 * 1024 * 1024 + 17];
    const char *argv[] = {"cat", NULL};
    struct kiln_exec_opts o = {.argv = argv, .stdin_data = data, .stdin_len = sizeof(data)};
    struct kiln_exec_result res;
    struct fake f = {0};
    kiln_sandbox *sb = start(&f, script_stdin);

    (void)state;
    assert_int_equal(kiln_exec(sb, &o, &res), 0);
    kiln_exec_result_free(&res);
    finish(&f, sb);
    assert_true(f.ok);
    assert_int_equal(f.stdin_bytes, sizeof(data));
}

/* ---- a misbehaving agent ---- */
static uint32_t bad_id;
static void (*bad_action)(struct fake *f, uint32_t id);

static void script_bad(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    uint32_t id = fake_expect(f, KILN_AGENT_EXEC, buf, NULL);

    bad_id = id;
    bad_action(f, id);
    fake_expect(f, 0xffff, buf, NULL);
}

static void expect_failure(void (*action)(struct fake *, uint32_t), int want, const char *text)
{
    struct fake f = {0};
    struct kiln_exec_result res;
    kiln_sandbox *sb;

    bad_action = action;
    sb = start(&f, script_bad);
    assert_int_equal(run_echo(sb, &res), want);
    if (!strstr(last(sb), text))
        fail_msg("error '%s' does not mention '%s'", last(sb), text);
    /* The connection is dead for every later request too, with the same reason. */
    assert_int_equal(run_echo(sb, &res), want);
    if (!strstr(last(sb), text))
        fail_msg("a later request's error '%s' does not mention '%s'", last(sb), text);
    finish(&f, sb);
}

static void act_oversized(struct fake *f, uint32_t id)
{
    uint8_t hdr[AGENT_HDR_SIZE];
    agent_hdr_encode(hdr, KILN_AGENT_STDOUT, 0, id, KILN_AGENT_MAX_PAYLOAD + 1);
    raw_send(f->fd, hdr, sizeof(hdr));
}

static void act_unknown_type(struct fake *f, uint32_t id)
{
    fake_send(f, 200, 0, id, NULL, 0);
}

static void act_host_only_type(struct fake *f, uint32_t id)
{
    fake_send(f, KILN_AGENT_STDIN, 0, id, "x", 1);
}

static void act_unknown_id(struct fake *f, uint32_t id)
{
    send_started(f, id + 1000);
}

static void act_short_exit(struct fake *f, uint32_t id)
{
    send_started(f, id);
    fake_send(f, KILN_AGENT_EXIT, 0, id, "abc", 3);
}

static void act_credit_overrun(struct fake *f, uint32_t id)
{
    static uint8_t chunk[KILN_AGENT_MAX_PAYLOAD];
    send_started(f, id);
    for (int i = 0; i < 5; i++) /* 1.25 MiB without waiting for any WINDOW */
        fake_send(f, KILN_AGENT_STDOUT, 0, id, chunk, sizeof(chunk));
}

static void act_data_after_end(struct fake *f, uint32_t id)
{
    send_started(f, id);
    fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, id, "a", 1);
    fake_send(f, KILN_AGENT_STDOUT, 0, id, "b", 1);
}

static void act_bad_reserved(struct fake *f, uint32_t id)
{
    uint8_t hdr[AGENT_HDR_SIZE];
    agent_hdr_encode(hdr, KILN_AGENT_STARTED, 0, id, 0);
    hdr[12] = 1;
    raw_send(f->fd, hdr, sizeof(hdr));
}

static void act_hangup(struct fake *f, uint32_t id)
{
    (void)id;
    shutdown(f->fd, SHUT_RDWR);
}

static void act_cut_frame(struct fake *f, uint32_t id)
{
    uint8_t hdr[AGENT_HDR_SIZE];
    agent_hdr_encode(hdr, KILN_AGENT_STARTED, 0, id, 8);
    raw_send(f->fd, hdr, sizeof(hdr));
    shutdown(f->fd, SHUT_WR);
}

static void act_conn_error(struct fake *f, uint32_t id)
{
    uint8_t buf[64];
    ssize_t n = agent_error_build(buf, sizeof(buf), 0, KILN_AGENT_E_PROTOCOL, 0, "go away");
    (void)id;
    raw_send(f->fd, buf, (size_t)n);
}

static void act_output_before_started(struct fake *f, uint32_t id)
{
    fake_send(f, KILN_AGENT_STDOUT, 0, id, "x", 1);
}

static void act_exec_error(struct fake *f, uint32_t id)
{
    uint8_t buf[128];
    ssize_t n = agent_error_build(buf, sizeof(buf), id, KILN_AGENT_E_NOT_FOUND, ENOENT,
                                  "execve echo: No such file or directory");
    raw_send(f->fd, buf, (size_t)n);
}

static void bad_frames_fail_the_connection_clearly(void **state)
{
    (void)state;
    expect_failure(act_oversized, -EPROTO, "bad frame header");
    expect_failure(act_unknown_type, -EPROTO, "bad frame header");
    expect_failure(act_host_only_type, -EPROTO, "STDIN");
    expect_failure(act_unknown_id, -EPROTO, "never made");
    expect_failure(act_short_exit, -EPROTO, "malformed EXIT");
    expect_failure(act_data_after_end, -EPROTO, "after its end");
    expect_failure(act_bad_reserved, -EPROTO, "bad frame header");
    expect_failure(act_hangup, -ECONNRESET, "closed the connection");
    expect_failure(act_cut_frame, -EPROTO, "inside a frame");
    expect_failure(act_conn_error, -EPROTO, "go away");
    expect_failure(act_output_before_started, -EPROTO, "STDOUT before STARTED");
}

/* Credit overrun: the host consumes nothing while the agent sends 1.25 MiB. */
static void credit_overrun_fails_the_connection(void **state)
{
    const char *argv[] = {"x", NULL};
    struct kiln_exec_opts o = {.argv = argv};
    struct kiln_exec_event ev;
    struct fake f = {0};
    kiln_process *p;
    kiln_sandbox *sb;
    int ret;

    (void)state;
    bad_action = act_credit_overrun;
    sb = start(&f, script_bad);
    assert_int_equal(kiln_exec_start(sb, &o, &p), 0);
    usleep(300 * 1000); /* the reader takes in every frame before we release any */
    while ((ret = kiln_exec_next(p, 5000, &ev)) == 0)
        ;
    assert_int_equal(ret, -EPROTO);
    assert_non_null(strstr(last(sb), "credit"));
    kiln_exec_free(p);
    finish(&f, sb);
}

static void exec_error_is_the_request_only(void **state)
{
    struct fake f = {0};
    struct kiln_exec_result res;
    kiln_sandbox *sb;

    (void)state;
    bad_action = act_exec_error;
    sb = start(&f, script_bad);
    assert_int_equal(run_echo(sb, &res), -ENOENT);
    assert_non_null(strstr(last(sb), "No such file"));
    finish(&f, sb);
}

/* lazy_start: kiln_exec_start returns at once; the pid is known from the first event on. */
static void script_lazy(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    struct agent_exec_msg m;
    uint32_t len = 0, id = fake_expect(f, KILN_AGENT_EXEC, buf, &len);

    f->ok = agent_parse_exec(buf, len, &m) == 0 && (m.h.flags & KILN_AGENT_EXEC_LATE_START);
    usleep(100 * 1000); /* the caller has its handle before STARTED exists */
    send_started(f, id);
    fake_send(f, KILN_AGENT_STDOUT, KILN_AGENT_F_END, id, "hi", 2);
    fake_send(f, KILN_AGENT_STDERR, KILN_AGENT_F_END, id, NULL, 0);
    send_exit(f, id, 0, 0);
    fake_expect(f, 0xffff, buf, NULL);
}

static void lazy_start_returns_before_started(void **state)
{
    struct fake f = {0};
    const char *argv[] = {"echo", NULL};
    struct kiln_exec_opts o = {.argv = argv, .lazy_start = true};
    kiln_sandbox *sb = start(&f, script_lazy);
    struct kiln_exec_event ev;
    kiln_process *p;

    (void)state;
    assert_int_equal(kiln_exec_start(sb, &o, &p), 0);
    assert_int_equal(kiln_exec_pid(p), 0);
    assert_int_equal(kiln_exec_next(p, 5000, &ev), 0);
    assert_int_equal(ev.type, KILN_EXEC_STDOUT);
    assert_int_equal(kiln_exec_pid(p), 42);
    while (ev.type != KILN_EXEC_EXIT)
        assert_int_equal(kiln_exec_next(p, 5000, &ev), 0);
    assert_int_equal(ev.status.exit_code, 0);
    kiln_exec_free(p);
    finish(&f, sb);
    assert_true(f.ok);
}

/* ---- HELLO ---- */
static void *hello_refuser(void *arg)
{
    struct fake *f = arg;
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    struct kiln_agent_hdr h;
    uint8_t out[64];
    ssize_t n = agent_error_build(out, sizeof(out), 0, KILN_AGENT_E_VERSION, 0, "only v7");

    if (fake_read(f, &h, buf) == 0)
        raw_send(f->fd, out, (size_t)n);
    return NULL;
}

static void *hello_garbage(void *arg)
{
    struct fake *f = arg;
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    struct kiln_agent_hdr h;

    if (fake_read(f, &h, buf) == 0)
        raw_send(f->fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
    return NULL;
}

static void hello_failures(void **state)
{
    void *(*fns[2])(void *) = {hello_refuser, hello_garbage};
    const char *texts[2] = {"only v7", "bad answer header"};
    int codes[2] = {-EPROTONOSUPPORT, -EPROTO};

    (void)state;
    for (int i = 0; i < 2; i++) {
        struct fake f = {0};
        kiln_sandbox *sb = NULL;
        char err[256];
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        f.fd = sv[1];
        pthread_create(&f.thread, NULL, fns[i], &f);
        assert_int_equal(kiln_sandbox_from_fd(sv[0], &sb, err, sizeof(err)), codes[i]);
        assert_non_null(strstr(err, texts[i]));
        pthread_join(f.thread, NULL);
        close(sv[1]);
    }
}

/* ---- files: an early ERROR stops a write that waits for credit ---- */
static void script_write_denied(struct fake *f)
{
    static uint8_t buf[KILN_AGENT_MAX_PAYLOAD];
    uint8_t out[128];
    uint32_t id = fake_expect(f, KILN_AGENT_FILE_WRITE, buf, NULL);
    ssize_t n = agent_error_build(out, sizeof(out), id, KILN_AGENT_E_PERMISSION, EACCES,
                                  "open /root/x: Permission denied");

    raw_send(f->fd, out, (size_t)n);
    fake_expect(f, 0xffff, buf, NULL);
}

static void file_write_error_ends_a_blocked_write(void **state)
{
    static uint8_t data[3 * 1024 * 1024];
    struct fake f = {0};
    kiln_sandbox *sb = start(&f, script_write_denied);

    (void)state;
    assert_int_equal(kiln_file_write(sb, "/root/x", data, sizeof(data), NULL), -EACCES);
    assert_non_null(strstr(last(sb), "Permission denied"));
    assert_int_equal(kiln_file_write(sb, "relative", data, 1, NULL), -EINVAL);
    assert_non_null(strstr(last(sb), "absolute"));
    finish(&f, sb);
}

/* ---- the VMM's READY line and the options behind it ---- */
static void ready_line_parses_strictly(void **state)
{
    struct kiln_ready_info r = {0};

    (void)state;
    assert_int_equal(sandbox_parse_ready("READY 1 2 3\n", &r), 0);
    assert_int_equal(r.kernel_us, 1);
    assert_int_equal(r.agent_us, 2);
    assert_int_equal(r.vmm_us, 3);
    assert_int_equal(sandbox_parse_ready("READY 1 2\n", &r), -EPROTO);
    assert_int_equal(sandbox_parse_ready("READY 1 2 3", &r), -EPROTO);
    assert_int_equal(sandbox_parse_ready("STEADY 1 2 3\n", &r), -EPROTO);
}

static void detach_options_are_checked(void **state)
{
    static struct cli_run run;
    char *bad_fd[] = {"--ready-fd", "2"}, *junk_fd[] = {"--ready-fd=x"};
    char *no_vsock[] = {"--detach", "--no-vsock"}, *ok[] = {"--detach", "--ready-fd", "3"};
    char err[256];

    (void)state;
    assert_int_equal(cli_parse_run(2, bad_fd, &run, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--ready-fd"));
    assert_int_equal(cli_parse_run(1, junk_fd, &run, err, sizeof(err)), -EINVAL);
    assert_int_equal(cli_parse_run(2, no_vsock, &run, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "vsock"));
    assert_int_equal(cli_parse_run(3, ok, &run, err, sizeof(err)), 0);
    assert_true(run.detach);
    assert_int_equal(run.cfg.ready_fd, 3);
    assert_true(run.cfg.vsock);
}

/* The library never runs something that is not there. */
static void missing_kiln_binary_is_named(void **state)
{
    struct kiln_sandbox_config cfg = {.kiln_bin = "/nonexistent/kiln"};
    kiln_sandbox *sb;
    char err[512];

    (void)state;
    assert_int_equal(kiln_sandbox_create(&cfg, &sb, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/kiln"));
    cfg = (struct kiln_sandbox_config){.name = "../x"};
    assert_int_equal(kiln_sandbox_create(&cfg, &sb, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "invalid sandbox name"));
    assert_int_equal(kiln_sandbox_attach("no/such", &sb, err, sizeof(err)), -EINVAL);
}

/* A `--` command in the kernel words would make /init run it instead of kiln-agent. */
static void init_command_in_append_is_refused(void **state)
{
    static const char *const bad[] = {"-- ls", "quiet --", "a -- b"};
    struct kiln_sandbox_config cfg = {.kiln_bin = "/bin/true"};
    kiln_sandbox *sb;
    char err[512];

    (void)state;
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.append = bad[i];
        assert_int_equal(kiln_sandbox_create(&cfg, &sb, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "holds a `--` command"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exec_collects_output_and_status),
        cmocka_unit_test(requests_are_demultiplexed),
        cmocka_unit_test(concurrent_requests_on_one_handle),
        cmocka_unit_test(output_credit_is_granted_as_consumed),
        cmocka_unit_test(stdin_respects_agent_credit),
        cmocka_unit_test(bad_frames_fail_the_connection_clearly),
        cmocka_unit_test(credit_overrun_fails_the_connection),
        cmocka_unit_test(exec_error_is_the_request_only),
        cmocka_unit_test(lazy_start_returns_before_started),
        cmocka_unit_test(hello_failures),
        cmocka_unit_test(file_write_error_ends_a_blocked_write),
        cmocka_unit_test(ready_line_parses_strictly),
        cmocka_unit_test(detach_options_are_checked),
        cmocka_unit_test(missing_kiln_binary_is_named),
        cmocka_unit_test(init_command_in_append_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
