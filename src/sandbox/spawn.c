/* spawn.c: starting a VMM process for a sandbox: posix_spawn of the kiln binary (a library must
 * not fork without exec), in its own session, then waiting for the READY line it writes on fd 3
 * once the guest's agent has announced itself (src/machine/ready.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/lib.h"
#include "sandbox.h"

#define READY_FD 3

extern char **environ;

int sandbox_find_kiln(const char *configured, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *env = getenv("KILN_BIN");
    char exe[PATH_MAX];
    ssize_t n;
    char *slash;

    if (configured && *configured)
        snprintf(out, outlen, "%s", configured);
    else if (env && *env)
        snprintf(out, outlen, "%s", env);
    else {
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n < 0) {
            snprintf(err, errlen, "cannot find the kiln binary: /proc/self/exe: %s; set KILN_BIN",
                     strerror(errno));
            return -ENOENT;
        }
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(out, outlen, "%s/kiln", exe);
    }
    if (access(out, X_OK) < 0) {
        snprintf(err, errlen,
                 "cannot run the kiln binary %s: %s (set KILN_BIN or the config's "
                 "kiln_bin)",
                 out, strerror(errno));
        return -ENOENT;
    }
    return 0;
}

int sandbox_parse_ready(const char *line, struct kiln_ready_info *ready)
{
    unsigned long long k, a, v;
    char nl;

    if (sscanf(line, "READY %llu %llu %llu%c", &k, &a, &v, &nl) != 4 || nl != '\n')
        return -EPROTO;
    ready->kernel_us = k;
    ready->agent_us = a;
    ready->vmm_us = v;
    return 0;
}

int sandbox_reap(pid_t pid, unsigned timeout_ms)
{
    uint64_t deadline = agent_deadline(timeout_ms);
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (r < 0 && errno != EINTR)
            return -1; /* not our child (attached), or reaped by someone else */
        if (time_now_ns() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(2000);
    }
}

/* The last lines the VMM wrote (its error messages), for the caller's error text. */
static void log_tail(int memfd, char *out, size_t outlen)
{
    off_t size = lseek(memfd, 0, SEEK_END);
    off_t from = size > 600 ? size - 600 : 0;
    ssize_t n;

    out[0] = '\0';
    if (size <= 0 || outlen < 2)
        return;
    n = pread(memfd, out, outlen - 1 < (size_t)(size - from) ? outlen - 1 : (size_t)(size - from),
              from);
    out[n > 0 ? n : 0] = '\0';
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
}

/* Reads the READY line (or EOF: the VMM ended before it) until deadline. */
static int wait_ready(int fd, uint64_t deadline, char *line, size_t cap)
{
    size_t n = 0;

    while (n + 1 < cap) {
        ssize_t r;
        int ret = agent_wait_readable(fd, deadline);

        if (ret < 0)
            return ret;
        r = read(fd, line + n, cap - 1 - n);
        if (r == 0)
            return -ECHILD;
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (r > 0) {
            n += (size_t)r;
            line[n] = '\0';
            if (strchr(line, '\n'))
                return 0;
        }
    }
    return -EPROTO;
}

static int spawn_child(const char *bin, char *const argv[], int ready_w, int logfd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    int ret;

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGCHLD);
    sigaddset(&defaults, SIGPIPE);
    /* Its own session: the terminal's ^C goes to the caller, who decides what the VM gets. */
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, logfd, 1);
    posix_spawn_file_actions_adddup2(&fa, logfd, 2);
    posix_spawn_file_actions_adddup2(&fa, ready_w, READY_FD);
    /* The caller's other descriptors are none of the VMM's business. */
    posix_spawn_file_actions_addclosefrom_np(&fa, READY_FD + 1);
    ret = -posix_spawn(pid, bin, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return ret;
}

int sandbox_spawn(const char *bin, char *const argv[], unsigned timeout_ms, pid_t *pid,
                  struct kiln_ready_info *ready, char *err, size_t errlen)
{
    uint64_t start = time_now_ns(), deadline = agent_deadline(timeout_ms);
    char line[128], tail[640];
    int pipefd[2], ready_w = -1, logfd, ret, code;

    logfd = memfd_create("kiln-vmm-log", MFD_CLOEXEC);
    if (logfd < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot create the VMM's pipes: %s", strerror(errno));
        goto fail_pipe;
    }
    /* Above READY_FD, so that dup2 onto it really happens (and clears close-on-exec). */
    ready_w = fcntl(pipefd[1], F_DUPFD_CLOEXEC, 10);
    close(pipefd[1]);
    if (ready_w < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot set up the READY pipe: %s", strerror(errno));
        goto fail_spawn;
    }
    ret = spawn_child(bin, argv, ready_w, logfd, pid);
    close(ready_w);
    if (ret < 0) {
        snprintf(err, errlen, "cannot start %s: %s", bin, strerror(-ret));
        goto fail_spawn;
    }
    ret = wait_ready(pipefd[0], deadline, line, sizeof(line));
    if (ret == 0)
        ret = sandbox_parse_ready(line, ready);
    if (ret < 0) {
        if (ret != -ECHILD)
            kill(*pid, SIGTERM);
        code = sandbox_reap(*pid, 3000);
        log_tail(logfd, tail, sizeof(tail));
        if (ret == -ECHILD)
            snprintf(err, errlen, "the VM exited (code %d) before its agent was ready%s%s", code,
                     *tail ? ":\n" : "", tail);
        else if (ret == -ETIMEDOUT)
            snprintf(err, errlen, "no READY from the guest agent within %u ms%s%s", timeout_ms,
                     *tail ? ":\n" : "", tail);
        else
            snprintf(err, errlen, "bad READY report from the VMM (%s)", strerror(-ret));
        goto fail_spawn;
    }
    ready->total_us = (time_now_ns() - start) / 1000;
    close(pipefd[0]);
    close(logfd);
    return 0;

fail_spawn:
    close(pipefd[0]);
fail_pipe:
    if (logfd >= 0)
        close(logfd);
    return ret;
}
