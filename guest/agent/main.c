/* main.c: kiln-agent's entry: PID-1 duties (hostname, reaping every zombie, never exiting), the
 * listeners (vsock in the guest; a Unix socket or an inherited socket for host-side tests), the
 * READY announcement and the single reaper that hands exit statuses to exec requests. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

/* struct sockaddr_vm of <linux/vm_sockets.h>, which musl's headers lack (a stable kernel ABI). */
struct vsock_addr {
    sa_family_t family;
    unsigned short reserved1;
    unsigned int port;
    unsigned int cid;
    unsigned char flags;
    unsigned char zero[3];
};
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define VSOCK_SO_BUFFER_SIZE     0 /* SO_VM_SOCKETS_BUFFER_SIZE */
#define VSOCK_SO_BUFFER_MAX_SIZE 2 /* SO_VM_SOCKETS_BUFFER_MAX_SIZE */
#define AGENT_VSOCK_BUFFER       (2ULL * 1024 * 1024)
#define VSOCK_CID_ANY            (-1U)
#define VSOCK_CID_HOST           2

static uint64_t boottime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void reap_one(struct req *r, void *arg)
{
    const int *st = arg; /* st[0] pid, st[1] status */
    if (r->type == KILN_AGENT_EXEC && r->pid == st[0] && !r->reaped)
        exec_reaped(r, st[1]);
}

void agent_reap(void)
{
    int st[2];
    while ((st[0] = waitpid(-1, &st[1], WNOHANG)) > 0)
        conns_each_req(reap_one, st); /* no owner: an orphan PID 1 inherited, or a failed exec */
}

static void on_signal(struct watch *w, uint32_t events)
{
    (void)events;
    struct signalfd_siginfo si;
    while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
    }
    agent_reap();
}

static void on_listen(struct watch *w, uint32_t events)
{
    (void)events;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                agent_log("accept: %s", strerror(errno));
            return;
        }
        if (w->tag == AF_VSOCK) {
            /* A deeper receive buffer than vsock's 256 KiB default: the host keeps streaming
             * while the agent writes a FILE_DATA frame out (max first: size may not exceed it). */
            unsigned long long sz = AGENT_VSOCK_BUFFER;
            setsockopt(fd, AF_VSOCK, VSOCK_SO_BUFFER_MAX_SIZE, &sz, sizeof(sz));
            setsockopt(fd, AF_VSOCK, VSOCK_SO_BUFFER_SIZE, &sz, sizeof(sz));
        }
        int err = conn_new(fd, false);
        if (err)
            agent_log("connection dropped: %s", strerror(-err));
    }
}

static struct watch sig_watch = {.fd = -1}, listen_watch = {.fd = -1};

static int listen_on(int fd, const struct sockaddr *sa, socklen_t len, const char *what)
{
    int family = sa->sa_family;
    if (bind(fd, sa, len) < 0 || listen(fd, 64) < 0) {
        agent_log("%s: %s", what, strerror(errno));
        close(fd);
        return -1;
    }
    listen_watch = (struct watch){.fd = fd, .fn = on_listen, .tag = family};
    return loop_add(&listen_watch, EPOLLIN);
}

static int listen_vsock(void)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        agent_log("vsock socket: %s (no virtio-vsock device?)", strerror(errno));
        return -1;
    }
    struct vsock_addr a = {.family = AF_VSOCK, .port = KILN_AGENT_PORT, .cid = VSOCK_CID_ANY};
    return listen_on(fd, (struct sockaddr *)&a, sizeof(a), "vsock listen");
}

static int listen_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path)) {
        agent_log("--listen-unix %s: longer than %zu bytes", path, sizeof(a.sun_path) - 1);
        return -1;
    }
    strcpy(a.sun_path, path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    return listen_on(fd, (struct sockaddr *)&a, sizeof(a), path);
}

/* READY to the host's vsock port, retried while the host is not listening yet. A child process
 * does it so the agent serves at once (the reaper collects it as an orphan). */
static void announce_ready(uint64_t kernel_us)
{
    struct kiln_agent_ready ready = {.version = KILN_AGENT_VERSION, .kernel_us = kernel_us};
    ready.agent_us = boottime_us();
    pid_t pid = fork();
    if (pid != 0) {
        if (pid < 0)
            agent_log("READY not sent: fork: %s", strerror(errno));
        return;
    }
    struct vsock_addr a = {
        .family = AF_VSOCK, .port = KILN_AGENT_READY_PORT, .cid = VSOCK_CID_HOST};
    uint8_t frame[AGENT_HDR_SIZE + sizeof(ready)];
    for (int attempt = 0; attempt < 250; attempt++) {
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            agent_frame_build(frame, sizeof(frame), KILN_AGENT_READY, 0, 0, &ready, sizeof(ready),
                              NULL, 0);
            ssize_t n = write(fd, frame, sizeof(frame));
            close(fd);
            if (n == (ssize_t)sizeof(frame))
                _exit(0);
            break;
        }
        close(fd);
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
    }
    agent_log("READY not delivered over vsock (the host is not listening on port %d)",
              KILN_AGENT_READY_PORT);
    _exit(1);
}

/* PID 1: /init mounted the file systems; the hostname and a usable environment are ours. */
static void pid1_setup(void)
{
    char name[65] = "kiln";
    int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, name, sizeof(name) - 1);
        close(fd);
        if (n > 0) {
            name[n] = 0;
            name[strcspn(name, "\n")] = 0;
        }
    }
    if (sethostname(name, strlen(name)) < 0)
        agent_log("sethostname %s: %s", name, strerror(errno));
    int con = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (con >= 0) { /* our log and the READY line go to the console */
        dup2(con, 1);
        dup2(con, 2);
        if (con > 2)
            close(con);
    }
    if (!getenv("HOME"))
        setenv("HOME", "/root", 1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kiln-agent [--listen-unix PATH | --serve-fd N]\n"
            "  without options: the guest's PID 1 serving vsock port %d\n",
            KILN_AGENT_PORT);
}

int main(int argc, char **argv)
{
    uint64_t kernel_us = boottime_us();
    const char *unix_path = NULL;
    int serve_fd = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen-unix") && i + 1 < argc) {
            unix_path = argv[++i];
        } else if (!strcmp(argv[i], "--serve-fd") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 65535) {
                fprintf(stderr, "kiln-agent: --serve-fd '%s' is not a descriptor number\n",
                        argv[i]);
                return 2;
            }
            serve_fd = (int)v;
        } else {
            usage();
            return 2;
        }
    }
    bool pid1 = !unix_path && serve_fd < 0;
    if (pid1) {
        pid1_setup();
        if (getpid() == 1)
            dprintf(1, "kiln-agent: PID 1, started at %llu us of boot\n",
                    (unsigned long long)kernel_us);
    }
    /* Both the agent and host tests want the same defaults here. */
    setenv("PATH",
           getenv("PATH") ? getenv("PATH")
                          : "/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                            "/usr/bin:/sbin:/bin",
           1);
    signal(SIGPIPE, SIG_IGN);
    exec_note_ignored_signals();
    umask(0); /* FILE_WRITE's mode is exact; children get 022 */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int err = loop_init();
    sig_watch =
        (struct watch){.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK), .fn = on_signal};
    if (err || sig_watch.fd < 0 || loop_add(&sig_watch, EPOLLIN) < 0) {
        agent_log("event loop: %s", strerror(errno));
        if (!pid1)
            return 1;
        goto idle;
    }
    if (serve_fd >= 0) {
        fcntl(serve_fd, F_SETFD, FD_CLOEXEC);
        fcntl(serve_fd, F_SETFL, fcntl(serve_fd, F_GETFL) | O_NONBLOCK);
        if ((err = conn_new(serve_fd, true))) {
            agent_log("--serve-fd %d: %s", serve_fd, strerror(-err));
            return 1;
        }
    } else if (unix_path) {
        if (listen_unix(unix_path) < 0)
            return 1;
    } else if (listen_vsock() == 0) {
        announce_ready(kernel_us);
    }
    if (pid1) /* the serial fallback: the console says the agent serves */
        dprintf(1, "kiln-agent: READY\n");
    loop_run();
    if (!pid1)
        return 0;
idle:
    /* PID 1 must never exit (the kernel would panic): keep reaping. */
    for (;;) {
        sigset_t any;
        int sig;
        sigemptyset(&any);
        sigaddset(&any, SIGCHLD);
        sigwait(&any, &sig);
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
    }
}
