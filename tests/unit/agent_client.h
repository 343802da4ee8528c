/* agent_client.h: a tiny host side of the agent protocol for the tests that run kiln-agent as a
 * host process (test_agent_host.c, test_agent_files.c): spawn the agent on a socket pair, queue
 * frames, drive execs and file transfers with WINDOW credit. Static functions, header only. */
#ifndef KILN_TEST_AGENT_CLIENT_H
#define KILN_TEST_AGENT_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/frame.h"

static char agent_path[PATH_MAX];

/* The host build of the agent sits next to the test binaries: BUILD/tests/x -> BUILD/agent/. */
static void agent_locate(const char *argv0)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", argv0);
    snprintf(agent_path, sizeof(agent_path), "%s/../agent/kiln-agent-host", dirname(tmp));
}

struct ac {
    int fd;
    pid_t pid;
    uint8_t *in, *out;
    size_t in_len, in_off, out_len, out_off;
};
#define AC_BUF (4 * AGENT_FRAME_MAX)

static void ac_open(struct ac *a, int fd)
{
    memset(a, 0, sizeof(*a));
    a->fd = fd;
    a->pid = -1;
    a->in = malloc(AC_BUF);
    a->out = malloc(AC_BUF);
    if (!a->in || !a->out)
        abort();
    fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* Starts kiln-agent --serve-fd on one end of a socket pair (no HELLO yet). */
static void ac_spawn_raw(struct ac *a)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(sv[1], 3);
        execl(agent_path, "kiln-agent", "--serve-fd", "3", (char *)NULL);
        _exit(126);
    }
    close(sv[1]);
    ac_open(a, sv[0]);
    a->pid = pid;
}

static void ac_queue(struct ac *a, uint16_t type, uint16_t flags, uint32_t id, const void *p,
                     size_t len, const void *q, size_t qlen)
{
    if (a->out_off == a->out_len)
        a->out_off = a->out_len = 0;
    if (AC_BUF - a->out_len < AGENT_HDR_SIZE + len + qlen) {
        memmove(a->out, a->out + a->out_off, a->out_len - a->out_off);
        a->out_len -= a->out_off;
        a->out_off = 0;
    }
    ssize_t n = agent_frame_build(a->out + a->out_len, AC_BUF - a->out_len, type, flags, id, p, len,
                                  q, qlen);
    if (n < 0)
        abort();
    a->out_len += (size_t)n;
}

/* Raw bytes (malformed frames). */
static void ac_queue_raw(struct ac *a, const void *p, size_t len)
{
    memmove(a->out, a->out + a->out_off, a->out_len - a->out_off);
    a->out_len -= a->out_off;
    a->out_off = 0;
    if (AC_BUF - a->out_len < len)
        abort();
    memcpy(a->out + a->out_len, p, len);
    a->out_len += len;
}

static size_t ac_unsent(const struct ac *a)
{
    return a->out_len - a->out_off;
}

/* One round of I/O: writes what it can, reads what there is. Returns false at EOF. */
static bool ac_io(struct ac *a, int timeout_ms)
{
    struct pollfd p = {.fd = a->fd, .events = POLLIN | (ac_unsent(a) ? POLLOUT : 0)};
    if (poll(&p, 1, timeout_ms) <= 0)
        return true;
    if (p.revents & POLLOUT) {
        ssize_t n = write(a->fd, a->out + a->out_off, ac_unsent(a));
        if (n > 0)
            a->out_off += (size_t)n;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        if (a->in_off) {
            memmove(a->in, a->in + a->in_off, a->in_len - a->in_off);
            a->in_len -= a->in_off;
            a->in_off = 0;
        }
        ssize_t n = read(a->fd, a->in + a->in_len, AC_BUF - a->in_len);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return false;
        if (n > 0)
            a->in_len += (size_t)n;
    }
    return true;
}

/* The next frame (payload valid until the next call), or false at EOF or after timeout_ms. */
static bool ac_next(struct ac *a, struct kiln_agent_hdr *h, const uint8_t **p, int timeout_ms)
{
    int waited = 0;
    for (;;) {
        ssize_t n = agent_frame_next(a->in + a->in_off, a->in_len - a->in_off,
                                     KILN_AGENT_MAX_PAYLOAD, h, p);
        if (n < 0) {
            fprintf(stderr, "agent sent a bad frame: status %zd\n", -n);
            abort();
        }
        if (n > 0) {
            a->in_off += (size_t)n;
            return true;
        }
        if (waited >= timeout_ms || !ac_io(a, 10))
            return false;
        waited += 10;
    }
}

static void ac_hello(struct ac *a)
{
    struct kiln_agent_hello h = {1, 1, KILN_AGENT_MAX_PAYLOAD, 0};
    ac_queue(a, KILN_AGENT_HELLO, 0, 0, &h, sizeof(h), NULL, 0);
    struct kiln_agent_hdr hdr;
    const uint8_t *p;
    if (!ac_next(a, &hdr, &p, 5000) || hdr.type != KILN_AGENT_HELLO)
        abort();
}

static void ac_spawn(struct ac *a)
{
    ac_spawn_raw(a);
    ac_hello(a);
}

/* Closes our end and returns the agent's wait status (after at most ~5 s, else SIGKILL). */
static int ac_close(struct ac *a)
{
    close(a->fd);
    free(a->in);
    free(a->out);
    int st = -1;
    if (a->pid > 0) {
        for (int i = 0; i < 500; i++) {
            if (waitpid(a->pid, &st, WNOHANG) == a->pid)
                return st;
            usleep(10000);
        }
        kill(a->pid, SIGKILL);
        waitpid(a->pid, &st, 0);
    }
    return st;
}

/* ---- exec requests ----------------------------------------------------------------------------
 */
struct xr {
    uint32_t id;
    const uint8_t *in; /* stdin to stream, then END (with KILN_AGENT_EXEC_STDIN) */
    size_t in_len, in_off;
    bool in_end_sent, hold_window; /* hold_window: grant no output credit */
    uint64_t in_credit;
    uint8_t *out[2];
    size_t cap[2], len[2]; /* bytes kept (at most cap) */
    uint64_t total[2];
    bool end[2], started, done;
    bool pty; /* one stream: no STDERR END to expect */
    uint32_t pid;
    struct kiln_agent_exit exit;
    bool exited;
    uint32_t err; /* ERROR status, 0 if none */
    char msg[256];
};

static void xr_send(struct ac *a, struct xr *x, struct kiln_agent_exec *h, const char *const *argv,
                    const char *const *env, const char *cwd)
{
    uint8_t *f = malloc(AGENT_FRAME_MAX);
    ssize_t n = agent_exec_build(f, AGENT_FRAME_MAX, x->id, h, argv, env, cwd);
    if (n < 0)
        abort();
    ac_queue_raw(a, f, (size_t)n);
    free(f);
    x->in_credit = KILN_AGENT_INITIAL_WINDOW;
    for (int i = 0; i < 2; i++)
        if (x->cap[i] && !x->out[i])
            x->out[i] = calloc(1, x->cap[i] + 1);
}

static struct xr *xr_find(struct xr **xs, int n, uint32_t id)
{
    for (int i = 0; i < n; i++)
        if (xs[i]->id == id)
            return xs[i];
    return NULL;
}

/* Handles one frame for the execs in xs; false if it belongs to none of them. */
static bool xr_frame(struct ac *a, struct xr **xs, int n, const struct kiln_agent_hdr *h,
                     const uint8_t *p)
{
    struct xr *x = xr_find(xs, n, h->id);
    if (!x)
        return false;
    /* The protocol's order: STARTED (or ERROR) first, every END before EXIT. */
    if (!x->started && h->type != KILN_AGENT_STARTED && h->type != KILN_AGENT_ERROR) {
        fprintf(stderr, "%s before STARTED for exec %u\n", agent_type_name(h->type), x->id);
        abort();
    }
    if (h->type == KILN_AGENT_EXIT && !(x->end[0] && (x->end[1] || x->pty))) {
        fprintf(stderr, "EXIT before the END of every stream for exec %u\n", x->id);
        abort();
    }
    switch (h->type) {
    case KILN_AGENT_STARTED:
        x->started = true;
        memcpy(&x->pid, p, 4);
        break;
    case KILN_AGENT_STDOUT:
    case KILN_AGENT_STDERR: {
        int s = h->type == KILN_AGENT_STDERR;
        size_t keep = x->cap[s] - x->len[s] < h->len ? x->cap[s] - x->len[s] : h->len;
        if (keep)
            memcpy(x->out[s] + x->len[s], p, keep);
        x->len[s] += keep;
        x->total[s] += h->len;
        if (h->flags & KILN_AGENT_F_END)
            x->end[s] = true;
        if (h->len && !x->hold_window) {
            struct kiln_agent_window w = {h->type, h->len};
            ac_queue(a, KILN_AGENT_WINDOW, 0, x->id, &w, sizeof(w), NULL, 0);
        }
        break;
    }
    case KILN_AGENT_WINDOW: {
        struct kiln_agent_window w;
        memcpy(&w, p, sizeof(w));
        x->in_credit += w.bytes;
        break;
    }
    case KILN_AGENT_EXIT:
        memcpy(&x->exit, p, sizeof(x->exit));
        x->exited = x->done = true;
        break;
    case KILN_AGENT_ERROR: {
        struct kiln_agent_error e;
        memcpy(&e, p, sizeof(e));
        x->err = e.status;
        snprintf(x->msg, sizeof(x->msg), "%.*s", (int)(h->len - 8), (const char *)p + 8);
        x->done = true;
        break;
    }
    default:
        fprintf(stderr, "unexpected %s for exec %u\n", agent_type_name(h->type), x->id);
        abort();
    }
    return true;
}

/* Streams stdin within credit (64 KiB frames while our queue is short). */
static void xr_feed(struct ac *a, struct xr *x)
{
    while (x->in && !x->in_end_sent && !x->done && ac_unsent(a) < 512 * 1024) {
        size_t n = x->in_len - x->in_off;
        if (n > 65536)
            n = 65536;
        if (n > x->in_credit)
            n = (size_t)x->in_credit;
        bool end = x->in_off + n == x->in_len;
        if (n == 0 && !end)
            return;
        ac_queue(a, KILN_AGENT_STDIN, end ? KILN_AGENT_F_END : 0, x->id, x->in + x->in_off, n, NULL,
                 0);
        x->in_off += n;
        x->in_credit -= n;
        x->in_end_sent = end;
    }
}

/* Drives the execs until all are done; false on EOF or after timeout_ms without a frame. */
static bool xr_run(struct ac *a, struct xr **xs, int n, int timeout_ms)
{
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++) {
            xr_feed(a, xs[i]);
            all &= xs[i]->done;
        }
        if (all)
            return true;
        struct kiln_agent_hdr h;
        const uint8_t *p;
        if (!ac_next(a, &h, &p, timeout_ms))
            return false;
        if (!xr_frame(a, xs, n, &h, p)) {
            fprintf(stderr, "frame %s for unknown id %u\n", agent_type_name(h.type), h.id);
            return false;
        }
    }
}

static void xr_free(struct xr *x)
{
    free(x->out[0]);
    free(x->out[1]);
}

/* Runs one command (argv, no shell) with optional stdin; keeps up to 1 MiB of each output. */
static void xr_simple(struct ac *a, struct xr *x, uint32_t id, uint32_t flags,
                      const char *const *argv)
{
    struct kiln_agent_exec h = {.flags = flags};
    x->id = id;
    x->cap[0] = x->cap[1] = 1 << 20;
    xr_send(a, x, &h, argv, NULL, NULL);
    if (!xr_run(a, &x, 1, 10000))
        abort();
}

/* ---- /proc helpers ------------------------------------------------------------------------- */
/* Peak RSS (VmHWM) of a process in KiB, -1 if unknown. */
static __attribute__((unused)) long vm_hwm_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* True once a process has exited (gone, or a zombie nobody reaped yet). */
static __attribute__((unused)) bool gone_or_zombie(pid_t pid)
{
    char path[64], buf[256] = "";
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] == 'Z';
}

#endif
