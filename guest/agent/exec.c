/* exec.c: kiln-agent's EXEC: validates the request, sets up pipes or a PTY, forks the child and
 * switches it to the requested cwd, environment and credentials. A close-on-exec pipe reports a
 * failure before execve (which step, which errno) so the host gets a precise ERROR. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"

struct child_error {
    int err;
    char what[120];
};

struct spawn {
    const struct agent_exec_msg *m;
    const char **argv, **envp;
    int fd_in, fd_out, fd_err; /* the child's ends (pipes mode) */
    const char *pty_name;      /* PTY mode: the slave to open */
    int report;                /* write end of the error pipe */
};

static void __attribute__((noreturn)) child_fail(const struct spawn *s, const char *what)
{
    struct child_error e = {.err = errno};
    snprintf(e.what, sizeof(e.what), "%s", what);
    ssize_t n = write(s->report, &e, sizeof(e));
    (void)n;
    _exit(127);
}

/* Runs in the child after fork: never returns. Single-threaded, so libc calls are safe. */
static void __attribute__((noreturn)) child(const struct spawn *s)
{
    char what[sizeof(((struct child_error *)0)->what)];
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL); /* the agent ignores SIGPIPE; ignoring survives execve */
    if (setsid() < 0)
        child_fail(s, "setsid");
    if (s->pty_name) {
        int fd = open(s->pty_name, O_RDWR);
        if (fd < 0)
            child_fail(s, "open pty");
        if (ioctl(fd, TIOCSCTTY, 0) < 0)
            child_fail(s, "TIOCSCTTY");
        if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            child_fail(s, "dup2");
        if (fd > 2)
            close(fd);
    } else {
        int in = s->fd_in >= 0 ? s->fd_in : open("/dev/null", O_RDONLY);
        if (in < 0)
            child_fail(s, "open /dev/null");
        if (dup2(in, 0) < 0 || dup2(s->fd_out, 1) < 0 || dup2(s->fd_err, 2) < 0)
            child_fail(s, "dup2");
        if (in > 2 && in != s->fd_in)
            close(in); /* /dev/null: not left open in the program */
    }
    umask(022);
    const struct kiln_agent_exec *h = &s->m->h;
    if (h->flags & KILN_AGENT_EXEC_ENV_CLEAR)
        clearenv();
    for (unsigned i = 0; i < h->envc; i++)
        if (putenv((char *)s->envp[i]) != 0)
            child_fail(s, "putenv");
    /* credentials first: the cwd must be reachable by the user, not by root */
    if (h->uid || h->gid) {
        if (setgroups(0, NULL) < 0)
            child_fail(s, "setgroups");
        snprintf(what, sizeof(what), "setgid %u", h->gid);
        if (setgid(h->gid) < 0)
            child_fail(s, what);
        snprintf(what, sizeof(what), "setuid %u", h->uid);
        if (setuid(h->uid) < 0)
            child_fail(s, what);
    }
    snprintf(what, sizeof(what), "chdir %s", s->m->cwd);
    if (chdir(s->m->cwd) < 0)
        child_fail(s, what);
    snprintf(what, sizeof(what), "execve %s",
             h->flags & KILN_AGENT_EXEC_SHELL ? "/bin/sh" : s->argv[0]);
    if (h->flags & KILN_AGENT_EXEC_SHELL)
        execv("/bin/sh", (char *const *)s->argv);
    else
        execvp(s->argv[0], (char *const *)s->argv);
    child_fail(s, what);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

/* Our ends of the pipes (or the PTY master) go on the loop: the outputs readable, stdin
 * watched for room only while data waits. */
static void on_output(struct watch *w, uint32_t events)
{
    (void)events;
    struct req *r = w->ctx;
    if (!r->done)
        exec_pump(r);
}

static int watch_fds(struct req *r)
{
    int err = 0;
    for (int i = 0; i < 2; i++) {
        if (r->out[i].fd < 0)
            continue;
        r->out[i].fn = on_output;
        r->out[i].ctx = r;
        r->out[i].tag = i;
        if ((err = nonblock(r->out[i].fd)) || (err = loop_add(&r->out[i], EPOLLIN)))
            return err;
    }
    if (r->in.fd >= 0) {
        r->in.fn = exec_on_stdin_room;
        r->in.ctx = r;
        if ((err = nonblock(r->in.fd)) || (err = loop_add(&r->in, 0)))
            return err;
    }
    return 0;
}

static int open_pty(struct req *r, const struct kiln_agent_exec *h, char *name, size_t len)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    struct winsize ws = {.ws_row = h->rows ? h->rows : 24, .ws_col = h->cols ? h->cols : 80};
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, len) != 0 ||
        ioctl(m, TIOCSWINSZ, &ws) < 0) {
        int err = -errno;
        close(m);
        return err;
    }
    r->out[0].fd = m;
    r->in.fd = fcntl(m, F_DUPFD_CLOEXEC, 0);
    return r->in.fd < 0 ? -errno : 0;
}

int exec_start(struct req *r, const uint8_t *p, uint32_t len)
{
    struct agent_exec_msg m;
    int st = agent_parse_exec(p, len, &m);
    if (st == KILN_AGENT_E_PROTOCOL)
        return st;
    if (st) {
        req_fail(r, (uint32_t)st, 0, "EXEC: %s", agent_status_name((uint32_t)st));
        return 0;
    }
    const struct kiln_agent_exec *h = &m.h;
    r->pty = h->flags & KILN_AGENT_EXEC_PTY;
    r->want_stdin = r->pty || (h->flags & KILN_AGENT_EXEC_STDIN);
    /* argv with room for "sh -c" in front of a shell command line */
    const char **vec = calloc((size_t)h->argc + 3, sizeof(*vec)), **argv = vec;
    const char **envp = calloc((size_t)h->envc + 1, sizeof(*envp));
    char pty_name[64];
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1};
    const char *what = "pipe";
    int e = 0;
    if (!vec || !envp) {
        e = -ENOMEM;
        what = "memory";
        goto fail;
    }
    agent_exec_vectors(&m, argv + 2, envp);
    if (h->flags & KILN_AGENT_EXEC_SHELL) {
        argv[0] = "sh";
        argv[1] = "-c";
    } else {
        argv += 2;
    }
    struct spawn s = {.m = &m, .argv = argv, .envp = envp, .fd_in = -1};
    if (r->pty) {
        what = "pty";
        if ((e = open_pty(r, h, pty_name, sizeof(pty_name))))
            goto fail;
        s.pty_name = pty_name;
    } else {
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
            (r->want_stdin && pipe2(in, O_CLOEXEC) < 0)) {
            e = -errno;
            goto fail;
        }
        s.fd_in = in[0];
        s.fd_out = out[1];
        s.fd_err = err[1];
        r->out[0].fd = out[0];
        r->out[1].fd = err[0];
        r->in.fd = in[1];
        out[0] = err[0] = in[1] = -1;
    }
    if (pipe2(rep, O_CLOEXEC) < 0) {
        e = -errno;
        goto fail;
    }
    s.report = rep[1];
    r->start_ns = agent_now_ns();
    pid_t pid = fork();
    if (pid == 0)
        child(&s);
    if (pid < 0) {
        e = -errno;
        what = "fork";
        goto fail;
    }
    close_fd(&rep[1]);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    struct child_error ce;
    ssize_t n;
    do
        n = read(rep[0], &ce, sizeof(ce));
    while (n < 0 && errno == EINTR);
    close_fd(&rep[0]);
    if (n > 0) { /* the child failed before execve; the reaper collects it as an orphan */
        ce.what[sizeof(ce.what) - 1] = 0;
        req_fail_errno(r, ce.err, ce.what);
        goto out;
    }
    r->pid = pid;
    if (h->timeout_ms)
        r->deadline_ns = r->start_ns + (uint64_t)h->timeout_ms * 1000000u;
    r->out_credit[0] = r->out_credit[1] = KILN_AGENT_INITIAL_WINDOW;
    r->in_credit = KILN_AGENT_INITIAL_WINDOW;
    if (r->pty)
        r->out_end[1] = true; /* one stream: the terminal */
    if (!r->want_stdin)
        r->in_eof = true;
    if ((e = watch_fds(r))) { /* cannot happen short of running out of memory */
        kill(-pid, SIGKILL);
        r->pid = 0;
        what = "epoll";
        goto fail;
    }
    struct kiln_agent_started started = {.pid = (uint32_t)pid};
    conn_send(r->conn, KILN_AGENT_STARTED, 0, r->id, &started, sizeof(started), NULL, 0);
    goto out;
fail:
    req_fail_errno(r, -e, what);
    exec_release(r);
out:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&err[i]);
        close_fd(&rep[i]);
    }
    free(vec);
    free(envp);
    return 0;
}

void exec_release(struct req *r)
{
    if (r->pid > 0 && !r->reaped) {
        kill(-r->pid, SIGKILL);
        kill(r->pid, SIGKILL);
    }
    r->pid = 0;
    loop_close(&r->out[0]);
    loop_close(&r->out[1]);
    loop_close(&r->in);
    free(r->in_buf);
    r->in_buf = NULL;
    r->in_len = 0;
}
