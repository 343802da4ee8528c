/* exec.c: running commands in a sandbox: start (EXEC, then STARTED or ERROR), an event iterator
 * over STDOUT/STDERR/EXIT, callbacks on top of it, stdin, signals, PTY resize, and the buffered
 * kiln_exec() (docs/sandbox.md). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lib.h"
#include "sandbox.h"

#define START_TIMEOUT_MS 30000
#define DEFAULT_MAX_OUT  (64u * 1024 * 1024)
#define FREE_GRANT       (4u * 1024 * 1024) /* credit left to an abandoned process's streams */

struct kiln_process {
    kiln_sandbox *sb;
    struct agent_req *req;
    uint32_t pid;
    bool awaiting_start; /* lazy_start: STARTED or ERROR is still to come */
    char name[64];       /* argv[0] (or "sh"), for messages */
    bool stdin_open;
    bool exited;
    struct kiln_exec_status status;
    struct agent_msg *cur; /* the frame the last event points into */
};

static int exec_fail(kiln_process *ex, int ret, const char *msg)
{
    return sandbox_error(ex->sb, ret, msg);
}

/* The answer to EXEC: STARTED (0, the pid noted) or ERROR (its status, the message naming the
 * failed step); anything else breaks the protocol. Releases m. */
static int take_start(kiln_process *ex, struct agent_msg *m)
{
    struct kiln_agent_started started;
    char err[AGENT_ERR_MAX], what[96];
    int ret = 0;

    if (m->type == KILN_AGENT_ERROR) {
        snprintf(what, sizeof(what), "exec %s", ex->name);
        ret = agent_msg_error(m, what, err, sizeof(err));
        sandbox_error(ex->sb, ret, err);
    } else if (m->type != KILN_AGENT_STARTED) {
        agent_conn_fail(ex->sb->conn, -EPROTO, "agent protocol violation: %s before STARTED",
                        agent_type_name(m->type));
        ret =
            sandbox_errorf(ex->sb, -EPROTO, "exec %s: agent protocol violation: %s before STARTED",
                           ex->name, agent_type_name(m->type));
    } else {
        agent_parse_started(m->data, m->len, &started);
        ex->pid = started.pid;
        ex->awaiting_start = false;
    }
    agent_req_release(ex->req, m);
    return ret;
}

static void status_from_exit(const struct kiln_agent_exit *x, struct kiln_exec_status *st)
{
    memset(st, 0, sizeof(*st));
    if (x->flags & KILN_AGENT_EXIT_SIGNALED) {
        st->signal = x->code;
        st->exit_code = 128 + x->code;
    } else {
        st->exit_code = x->code;
    }
    st->timed_out = x->flags & KILN_AGENT_EXIT_TIMED_OUT;
    st->runtime_us = x->runtime_us;
}

int kiln_exec_start(kiln_sandbox *sb, const struct kiln_exec_opts *opts, kiln_process **out)
{
    struct kiln_agent_exec h = {.timeout_ms = opts->timeout_ms,
                                .uid = opts->uid,
                                .gid = opts->gid,
                                .rows = opts->rows,
                                .cols = opts->cols};
    const char *shell_argv[2] = {opts->shell, NULL};
    const char *const *argv = opts->shell ? shell_argv : opts->argv;
    char err[AGENT_ERR_MAX];
    struct agent_msg *m = NULL;
    uint8_t *frame;
    ssize_t size;
    kiln_process *ex;
    int ret;

    if (!argv || !argv[0] || !argv[0][0])
        return sandbox_error(sb, -EINVAL, "exec: no command (give argv or shell)");
    h.flags = (opts->shell ? KILN_AGENT_EXEC_SHELL : 0) | (opts->pty ? KILN_AGENT_EXEC_PTY : 0) |
              (opts->stdin_stream || opts->stdin_data ? KILN_AGENT_EXEC_STDIN : 0) |
              (opts->env_clear ? KILN_AGENT_EXEC_ENV_CLEAR : 0) |
              (opts->lazy_start ? KILN_AGENT_EXEC_LATE_START : 0);
    ex = calloc(1, sizeof(*ex));
    frame = malloc(AGENT_FRAME_MAX);
    if (!ex || !frame) {
        ret = sandbox_error(sb, -ENOMEM, "exec: out of memory");
        goto fail_alloc;
    }
    ex->sb = sb;
    snprintf(ex->name, sizeof(ex->name), "%s", argv[0]);
    ex->stdin_open = opts->stdin_stream || opts->stdin_data;
    ret = agent_req_open(sb->conn, &ex->req);
    if (ret < 0) {
        sandbox_error(sb, ret, "exec: no request id left on this connection");
        goto fail_alloc;
    }
    size = agent_exec_build(frame, AGENT_FRAME_MAX, agent_req_id(ex->req), &h, argv, opts->env,
                            opts->cwd);
    if (size < 0) {
        ret = sandbox_errorf(sb, size == -E2BIG ? -E2BIG : -EMSGSIZE,
                             "exec: the command's arguments and environment %s",
                             size == -E2BIG ? "have too many entries (at most 4096)"
                                            : "exceed the 256 KiB frame limit");
        goto fail_req;
    }
    ret = agent_req_send(ex->req, KILN_AGENT_EXEC, 0, frame + AGENT_HDR_SIZE,
                         (size_t)size - AGENT_HDR_SIZE, NULL, 0);
    ex->awaiting_start = true;
    if (ret < 0) { /* the connection is gone: its status says why */
        agent_conn_status(sb->conn, err, sizeof(err));
    } else if (!opts->lazy_start) {
        ret = agent_req_next(ex->req, agent_deadline(START_TIMEOUT_MS), &m, err, sizeof(err));
        if (ret == 0 && (ret = take_start(ex, m)) < 0)
            goto fail_req; /* take_start said why */
    }
    if (ret < 0) {
        sandbox_errorf(sb, ret, "exec %s: %s", argv[0], err);
        goto fail_req;
    }
    free(frame);
    *out = ex;
    return 0;

fail_req:
    agent_req_close(ex->req);
fail_alloc:
    free(frame);
    free(ex);
    return ret;
}

int kiln_exec_pid(const kiln_process *ex)
{
    return (int)ex->pid;
}

int kiln_exec_next(kiln_process *ex, int timeout_ms, struct kiln_exec_event *ev)
{
    char err[AGENT_ERR_MAX];
    struct kiln_agent_exit x;
    struct agent_msg *m;
    int ret;

    if (ex->cur) {
        agent_req_release(ex->req, ex->cur);
        ex->cur = NULL;
    }
    memset(ev, 0, sizeof(*ev));
    if (ex->exited)
        return -ESRCH;
    uint64_t deadline = timeout_ms < 0 ? 0 : agent_deadline((unsigned)timeout_ms ?: 1);
    ret = agent_req_next(ex->req, deadline, &m, err, sizeof(err));
    if (ret == 0 && ex->awaiting_start) { /* lazy_start: the answer to EXEC comes first */
        if ((ret = take_start(ex, m)) < 0) {
            ex->exited = true;
            agent_req_cancel(ex->req);
            return ret;
        }
        ret = agent_req_next(ex->req, deadline, &m, err, sizeof(err));
    }
    if (ret == -ETIMEDOUT)
        return ret;
    if (ret < 0)
        return exec_fail(ex, ret, err);
    switch (m->type) {
    case KILN_AGENT_STDOUT:
    case KILN_AGENT_STDERR:
        ev->type = m->type == KILN_AGENT_STDOUT ? KILN_EXEC_STDOUT : KILN_EXEC_STDERR;
        ev->data = m->data;
        ev->len = m->len;
        ev->eof = m->flags & KILN_AGENT_F_END;
        ex->cur = m;
        return 0;
    case KILN_AGENT_EXIT:
        agent_parse_exit(m->data, m->len, &x);
        status_from_exit(&x, &ex->status);
        ev->type = KILN_EXEC_EXIT;
        ev->status = ex->status;
        ex->exited = true;
        agent_req_cancel(ex->req); /* a writer still waiting for stdin credit gives up */
        agent_req_release(ex->req, m);
        return 0;
    case KILN_AGENT_ERROR:
        ret = agent_msg_error(m, "exec", err, sizeof(err));
        agent_req_release(ex->req, m);
        ex->exited = true;
        agent_req_cancel(ex->req);
        return exec_fail(ex, ret, err);
    default:
        snprintf(err, sizeof(err), "agent protocol violation: %s frame for a running process",
                 agent_type_name(m->type));
        agent_req_release(ex->req, m);
        agent_conn_fail(ex->sb->conn, -EPROTO, "%s", err);
        return exec_fail(ex, -EPROTO, err);
    }
}

int kiln_exec_wait(kiln_process *ex, kiln_output_fn on_stdout, kiln_output_fn on_stderr,
                   void *opaque, struct kiln_exec_status *status)
{
    struct kiln_exec_event ev;
    int ret;

    for (;;) {
        ret = kiln_exec_next(ex, -1, &ev);
        if (ret < 0)
            return ret;
        if (ev.type == KILN_EXEC_EXIT)
            break;
        kiln_output_fn fn = ev.type == KILN_EXEC_STDOUT ? on_stdout : on_stderr;
        if (fn && ev.len && (ret = fn(opaque, ev.data, ev.len)) != 0) {
            kiln_exec_signal(ex, SIGKILL);
            return ret;
        }
    }
    if (status)
        *status = ev.status;
    return 0;
}

int kiln_exec_write_stdin(kiln_process *ex, const void *data, size_t len)
{
    int ret;

    if (!ex->stdin_open)
        return sandbox_error(ex->sb, -EBADF,
                             "exec: stdin is closed or was not requested "
                             "(set stdin_stream)");
    ret = agent_req_write(ex->req, KILN_AGENT_STDIN, data, len, false, 0);
    return ret < 0 ? sandbox_errorf(ex->sb, ret, "exec: writing stdin: %s", kiln_strerror(ret)) : 0;
}

int kiln_exec_close_stdin(kiln_process *ex)
{
    int ret;

    if (!ex->stdin_open)
        return 0;
    ex->stdin_open = false;
    ret = agent_req_write(ex->req, KILN_AGENT_STDIN, NULL, 0, true, 0);
    return ret == -EPIPE ? 0 : ret;
}

int kiln_exec_signal(kiln_process *ex, int signo)
{
    struct kiln_agent_signal s = {.signo = (uint32_t)signo};

    if (signo < 1 || signo > 64)
        return sandbox_errorf(ex->sb, -EINVAL, "exec: invalid signal %d (1 to 64)", signo);
    if (ex->exited)
        return -ESRCH;
    return agent_req_send(ex->req, KILN_AGENT_SIGNAL, 0, &s, sizeof(s), NULL, 0);
}

int kiln_exec_resize(kiln_process *ex, uint16_t rows, uint16_t cols)
{
    struct kiln_agent_resize r = {.rows = rows, .cols = cols};

    if (!rows || !cols)
        return sandbox_errorf(ex->sb, -EINVAL, "exec: invalid window size %ux%u", rows, cols);
    if (ex->exited)
        return -ESRCH;
    return agent_req_send(ex->req, KILN_AGENT_RESIZE, 0, &r, sizeof(r), NULL, 0);
}

void kiln_exec_free(kiln_process *ex)
{
    if (!ex)
        return;
    if (ex->cur)
        agent_req_release(ex->req, ex->cur);
    if (!ex->exited) {
        struct kiln_agent_window w = {.bytes = FREE_GRANT};
        kiln_exec_signal(ex, SIGKILL);
        /* Enough credit for the agent to flush what the killed process left and finish. */
        w.stream = KILN_AGENT_STDOUT;
        agent_req_send(ex->req, KILN_AGENT_WINDOW, 0, &w, sizeof(w), NULL, 0);
        w.stream = KILN_AGENT_STDERR;
        agent_req_send(ex->req, KILN_AGENT_WINDOW, 0, &w, sizeof(w), NULL, 0);
    }
    agent_req_close(ex->req);
    free(ex);
}

/* ---- buffered ---- */
struct collect {
    uint8_t *buf;
    size_t len, cap, max;
    bool truncated;
};

static int collect_add(struct collect *c, const uint8_t *data, size_t len)
{
    if (c->len + len > c->max) {
        c->truncated = true;
        len = c->max - c->len;
    }
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        uint8_t *p;
        while (cap < c->len + len + 1)
            cap *= 2;
        p = realloc(c->buf, cap);
        if (!p)
            return -ENOMEM;
        c->buf = p;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->buf[c->len] = '\0';
    return 0;
}

struct feeder {
    kiln_process *ex;
    const void *data;
    size_t len;
};

/* Stdin is written from its own thread: the process may need its output drained before it
 * reads more input. */
static void *feed_stdin(void *arg)
{
    struct feeder *f = arg;

    if (kiln_exec_write_stdin(f->ex, f->data, f->len) == 0)
        kiln_exec_close_stdin(f->ex);
    return NULL;
}

static int on_out(void *opaque, const uint8_t *data, size_t len)
{
    return collect_add(&((struct collect *)opaque)[0], data, len);
}

static int on_err(void *opaque, const uint8_t *data, size_t len)
{
    return collect_add(&((struct collect *)opaque)[1], data, len);
}

int kiln_exec(kiln_sandbox *sb, const struct kiln_exec_opts *opts, struct kiln_exec_result *res)
{
    size_t max = opts->max_output ? opts->max_output : DEFAULT_MAX_OUT;
    struct collect c[2] = {{.max = max}, {.max = max}};
    struct kiln_exec_opts o = *opts;
    struct feeder f;
    pthread_t feeder;
    bool feeding = false;
    kiln_process *ex;
    int ret;

    memset(res, 0, sizeof(*res));
    o.stdin_stream = false;
    o.lazy_start = true; /* nothing here needs the pid before the output */
    ret = kiln_exec_start(sb, &o, &ex);
    if (ret < 0)
        return ret;
    if (opts->stdin_data) {
        f = (struct feeder){.ex = ex, .data = opts->stdin_data, .len = opts->stdin_len};
        feeding = pthread_create(&feeder, NULL, feed_stdin, &f) == 0;
        if (!feeding)
            kiln_exec_close_stdin(ex);
    }
    ret = kiln_exec_wait(ex, on_out, on_err, c, &res->status);
    if (ret == -ENOMEM)
        sandbox_error(sb, ret, "exec: out of memory collecting output");
    if (feeding) {
        agent_req_cancel(ex->req);
        pthread_join(feeder, NULL);
    }
    kiln_exec_free(ex);
    if (ret < 0) {
        free(c[0].buf);
        free(c[1].buf);
        memset(res, 0, sizeof(*res));
        return ret;
    }
    for (int i = 0; i < 2; i++)
        if (!c[i].buf && collect_add(&c[i], (const uint8_t *)"", 0) < 0)
            return -ENOMEM;
    res->out = c[0].buf;
    res->out_len = c[0].len;
    res->out_truncated = c[0].truncated;
    res->err = c[1].buf;
    res->err_len = c[1].len;
    res->err_truncated = c[1].truncated;
    return 0;
}

void kiln_exec_result_free(struct kiln_exec_result *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->err);
    memset(res, 0, sizeof(*res));
}
