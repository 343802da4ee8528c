/* exec.c: kiln-agent's EXEC: validates the request, sets up pipes or a PTY, starts the child
 * (vfork-style) and switches it to the requested cwd, environment and credentials. A failure
 * before execve (which step, which errno) comes back through shared memory so the host gets a
 * precise ERROR. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"

/* What the child shares with the agent: clone(CLONE_VM | CLONE_VFORK) runs it in the agent's
 * memory with the agent suspended until execve or _exit, so it copies no page tables (fork of
 * the agent cost most of an EXEC round trip under nested virtualization) and reports a failure
 * by storing err/what here. Everything the child needs is prepared by the parent: it makes only
 * plain system calls (no malloc, no stdio, no environment changes). */
struct spawn {
    const struct agent_exec_msg *m;
    const char **argv, **envp;
    const char *file, *path;   /* execve target: file (with a '/'), else searched in path */
    int fd_in, fd_out, fd_err; /* the child's ends (pipes mode) */
    const char *pty_name;      /* PTY mode: the slave to open */
    char setgid_what[32], setuid_what[32], chdir_what[120], exec_what[120];
    int err;          /* set by a failing child: its errno */
    const char *what; /* and the step */
};

static void __attribute__((noreturn)) child_fail(struct spawn *s, const char *what)
{
    s->err = errno ? errno : EIO;
    s->what = what;
    _exit(127);
}

/* execvp with the request's PATH (from its final environment), not the agent's. A directory
 * without the file is skipped with access() rather than a failing execve: the kernel builds a
 * whole new address space and copies argv and the environment into it before it even looks for
 * the file, which made `true` (in /bin, the sixth directory of the default PATH) cost five
 * throw-away address spaces per EXEC: 0.7 ms of the 9.8 ms its EXEC took in the guest in the
 * test bed (docs/sandbox.md). */
static void exec_search(struct spawn *s)
{
    char buf[PATH_MAX];
    size_t flen = strlen(s->file);
    int err = ENOENT;
    if (strchr(s->file, '/')) {
        execve(s->file, (char *const *)s->argv, (char *const *)s->envp);
        return;
    }
    for (const char *p = s->path, *z; flen < NAME_MAX; p = z + 1) {
        z = strchrnul(p, ':');
        size_t dlen = (size_t)(z - p);
        if (dlen + 1 + flen < sizeof(buf)) {
            memcpy(buf, p, dlen);
            buf[dlen] = '/';
            memcpy(buf + dlen + (dlen > 0), s->file, flen + 1);
            if (access(buf, X_OK) == 0 || (errno != ENOENT && errno != ENOTDIR))
                execve(buf, (char *const *)s->argv, (char *const *)s->envp);
            if (errno == EACCES)
                err = EACCES;
            else if (errno != ENOENT && errno != ENOTDIR)
                err = errno;
        }
        if (!*z)
            break;
    }
    errno = err;
}

/* The kernel's struct sigaction. The raw call sees every signal (libc's refuses the ones it
 * reserves, 32-34, which a parent may still have left ignored) and takes no libc lock (the
 * child runs in the agent's memory). */
struct ksigaction {
    unsigned long handler, flags, restorer, mask;
};

/* The signals the agent ignores: execve resets handled signals, not ignored ones. Noting them
 * once spares each child 64 sigaction calls (0.6 ms of an EXEC under nested virtualization). */
static int ignored_sigs[64];
static unsigned nignored;

void exec_note_ignored_signals(void)
{
    nignored = 0;
    for (int sig = 1; sig < 65; sig++) {
        struct ksigaction old;
        if (syscall(SYS_rt_sigaction, sig, NULL, &old, 8) == 0 &&
            old.handler == (unsigned long)SIG_IGN)
            ignored_sigs[nignored++] = sig;
    }
}

static int child(void *arg)
{
    struct spawn *s = arg;
    sigset_t all;
    sigemptyset(&all);
    struct ksigaction dfl = {0};
    for (unsigned i = 0; i < nignored; i++)
        syscall(SYS_rt_sigaction, ignored_sigs[i], &dfl, NULL, 8);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
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
    /* credentials first: the cwd must be reachable by the user, not by root; raw calls, as
     * libc's set*id synchronize threads through shared state */
    if (h->uid || h->gid) {
        if (syscall(SYS_setgroups, 0, NULL) < 0)
            child_fail(s, "setgroups");
        if (syscall(SYS_setgid, h->gid) < 0)
            child_fail(s, s->setgid_what);
        if (syscall(SYS_setuid, h->uid) < 0)
            child_fail(s, s->setuid_what);
    }
    if (chdir(s->m->cwd) < 0)
        child_fail(s, s->chdir_what);
    exec_search(s);
    child_fail(s, s->exec_what);
}

/* The child's environment: the agent's own unless ENV_CLEAR, then the request's entries (a
 * later entry of the same name wins, as putenv did). NULL when out of memory. */
static const char **child_env(const struct agent_exec_msg *m, const char **req, const char **path)
{
    size_t n = 0, k = 0;
    bool keep = !(m->h.flags & KILN_AGENT_EXEC_ENV_CLEAR);
    for (char **e = environ; keep && *e; e++)
        n++;
    const char **env = calloc(n + m->h.envc + 1, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(environ[i], "=");
        bool over = false;
        for (unsigned j = 0; j < m->h.envc && !over; j++)
            over = !strncmp(req[j], environ[i], len) && req[j][len] == '=';
        if (!over)
            env[k++] = environ[i];
    }
    for (unsigned j = 0; j < m->h.envc; j++) {
        size_t len = strcspn(req[j], "=");
        bool later = false;
        for (unsigned l = j + 1; l < m->h.envc && !later; l++)
            later = !strncmp(req[l], req[j], len) && req[l][len] == '=';
        if (!later)
            env[k++] = req[j];
    }
    *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (size_t i = 0; i < k; i++)
        if (!strncmp(env[i], "PATH=", 5))
            *path = env[i] + 5;
    return env;
}

/* Starts the child; 0 with *pid, or -errno of clone (s->err tells a failure of the child). */
static int spawn_child(struct spawn *s, pid_t *pid)
{
    static uint8_t stack[64 * 1024] __attribute__((aligned(16)));
    const struct kiln_agent_exec *h = &s->m->h;
    snprintf(s->setgid_what, sizeof(s->setgid_what), "setgid %u", h->gid);
    snprintf(s->setuid_what, sizeof(s->setuid_what), "setuid %u", h->uid);
    snprintf(s->chdir_what, sizeof(s->chdir_what), "chdir %s", s->m->cwd);
    snprintf(s->exec_what, sizeof(s->exec_what), "execve %s", s->file);
    s->err = 0;
    *pid = clone(child, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, s);
    return *pid < 0 ? -errno : 0;
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
    r->out_ready[w->tag] = true;
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
    const char **env = NULL;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
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
    struct spawn s = {.m = &m, .argv = argv, .fd_in = -1};
    s.file = h->flags & KILN_AGENT_EXEC_SHELL ? "/bin/sh" : argv[0];
    if (!(s.envp = env = child_env(&m, envp, &s.path))) {
        e = -ENOMEM;
        what = "memory";
        goto fail;
    }
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
    r->start_ns = agent_now_ns();
    pid_t pid;
    if ((e = spawn_child(&s, &pid))) {
        what = "clone";
        goto fail;
    }
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    if (s.err) { /* the child failed before execve; the reaper collects it as an orphan */
        req_fail_errno(r, s.err, s.what);
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
    /* LATE_START: the host is not waiting, so STARTED rides with the first output, END or
     * EXIT; for a short command the agent then writes to the host once, not four times. */
    r->start_held = (uint32_t)pid;
    if (!(h->flags & KILN_AGENT_EXEC_LATE_START))
        exec_announce(r);
    goto out;
fail:
    req_fail_errno(r, -e, what);
    exec_release(r);
out:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&err[i]);
    }
    free(vec);
    free(envp);
    free(env);
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
