/* sandbox.c: the sandbox handle's lifecycle: create (spawn a VMM, wait for READY, connect to the
 * agent), attach by name, ping, stop and destroy; error messages per handle. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/lib.h"
#include "sandbox.h"

#define MAX_VMM_ARGS    64
#define STOP_TIMEOUT_MS 10000

int sandbox_error(kiln_sandbox *sb, int ret, const char *msg)
{
    pthread_mutex_lock(&sb->err_lock);
    snprintf(sb->err, sizeof(sb->err), "%s", msg);
    pthread_mutex_unlock(&sb->err_lock);
    return ret;
}

int sandbox_errorf(kiln_sandbox *sb, int ret, const char *fmt, ...)
{
    char msg[AGENT_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sandbox_error(sb, ret, msg);
}

const char *kiln_sandbox_last_error(kiln_sandbox *sb, char *buf, size_t len)
{
    if (!len)
        return buf;
    pthread_mutex_lock(&sb->err_lock);
    snprintf(buf, len, "%s", sb->err[0] ? sb->err : "no error");
    pthread_mutex_unlock(&sb->err_lock);
    return buf;
}

const char *kiln_strerror(int status)
{
    switch (status) {
    case 0:
        return "success";
    case -EPROTO:
        return "the agent broke the protocol";
    case -EPROTONOSUPPORT:
        return "no common agent protocol version";
    case -ETIMEDOUT:
        return "timed out";
    case -ECONNRESET:
        return "the agent closed the connection";
    case -ECONNABORTED:
        return "the sandbox handle was closed";
    case -ESRCH:
        return "no such process (it has ended)";
    case -EINVAL:
        return "invalid argument or path";
    default:
        return status < 0 && status > -4096 ? strerror(-status) : "unknown status";
    }
}

static kiln_sandbox *handle_new(void)
{
    kiln_sandbox *sb = calloc(1, sizeof(*sb));

    if (sb)
        pthread_mutex_init(&sb->err_lock, NULL);
    return sb;
}

static void handle_free(kiln_sandbox *sb)
{
    pthread_mutex_destroy(&sb->err_lock);
    free(sb);
}

int kiln_sandbox_from_fd(int fd, kiln_sandbox **out, char *err, size_t errlen)
{
    char dummy[8];
    kiln_sandbox *sb = handle_new();
    int ret;

    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!sb) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ret = agent_conn_open(fd, AGENT_HELLO_TIMEOUT_MS, &sb->conn, err, errlen);
    if (ret < 0) {
        handle_free(sb);
        return ret;
    }
    *out = sb;
    return 0;
}

/* Connects to the agent of sandbox `name` and says HELLO. */
static int connect_agent(kiln_sandbox *sb, const char *name, char *err, size_t errlen)
{
    char path[PATH_MAX];
    int fd, ret;

    ret = sandbox_vsock_path(name, path, sizeof(path));
    if (ret < 0) {
        snprintf(err, errlen,
                 "invalid sandbox name '%s': use 1 to %d characters of A-Z a-z 0-9 . "
                 "_ - (not starting with '.')",
                 name, RUNDIR_NAME_MAX);
        return ret;
    }
    fd = agent_dial(path, KILN_AGENT_PORT, 10000, err, errlen);
    if (fd < 0)
        return fd;
    return agent_conn_open(fd, AGENT_HELLO_TIMEOUT_MS, &sb->conn, err, errlen);
}

/* The VMM's pid from its runtime directory's pid file (0 if unknown). */
static pid_t read_pid(const char *name)
{
    char dir[PATH_MAX], path[PATH_MAX + 8], text[32] = "";
    FILE *f;

    if (rundir_path(name, dir, sizeof(dir)) < 0)
        return 0;
    snprintf(path, sizeof(path), "%s/pid", dir);
    f = fopen(path, "re");
    if (!f)
        return 0;
    if (!fgets(text, sizeof(text), f))
        text[0] = '\0';
    fclose(f);
    return (pid_t)atoi(text);
}

int kiln_sandbox_attach(const char *name, kiln_sandbox **out, char *err, size_t errlen)
{
    char dummy[8];
    kiln_sandbox *sb = handle_new();
    int ret;

    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!sb)
        return -ENOMEM;
    ret = connect_agent(sb, name, err, errlen);
    if (ret < 0) {
        handle_free(sb);
        return ret;
    }
    snprintf(sb->name, sizeof(sb->name), "%s", name);
    sb->pid = read_pid(name);
    *out = sb;
    return 0;
}

/* True if the kernel command-line words hold a standalone `--`: the default /init would run what
 * follows it instead of exec'ing kiln-agent. */
static bool has_init_command(const char *words)
{
    for (const char *p = words; (p = strstr(p, "--")) != NULL; p += 2)
        if ((p == words || p[-1] == ' ') && (p[2] == '\0' || p[2] == ' '))
            return true;
    return false;
}

/* The `kiln run` command line of a sandbox; strings point into cfg or bufs. */

static int build_argv(const struct kiln_sandbox_config *cfg, const char *bin, const char *name,
                      char bufs[4][PATH_MAX], const char *argv[MAX_VMM_ARGS], char *err,
                      size_t errlen)
{
    int n = 0;

    argv[n++] = bin;
    argv[n++] = "run";
    argv[n++] = "--name";
    argv[n++] = name;
    argv[n++] = "--console";
    if (cfg->console) {
        argv[n++] = cfg->console;
    } else {
        if (rundir_path(name, bufs[0], PATH_MAX - 16) < 0)
            return -ENAMETOOLONG;
        strcat(bufs[0], "/console.log");
        argv[n++] = bufs[0];
    }
    if (cfg->kernel) {
        argv[n++] = "--kernel";
        argv[n++] = cfg->kernel;
    }
    if (cfg->initrd) {
        argv[n++] = "--initrd";
        argv[n++] = cfg->initrd;
    }
    if (cfg->cpus) {
        snprintf(bufs[1], PATH_MAX, "%u", cfg->cpus);
        argv[n++] = "--cpus";
        argv[n++] = bufs[1];
    }
    if (cfg->mem_bytes) {
        snprintf(bufs[2], PATH_MAX, "%llu", (unsigned long long)cfg->mem_bytes);
        argv[n++] = "--mem";
        argv[n++] = bufs[2];
    }
    for (const char *const *a = cfg->vmm_args; a && *a; a++) {
        if (n >= MAX_VMM_ARGS - 6) {
            snprintf(err, errlen, "too many VMM options (at most %d)", MAX_VMM_ARGS - 16);
            return -E2BIG;
        }
        argv[n++] = *a;
    }
    /* No `--` command: the default image's /init then execs kiln-agent as PID 1. */
    if (cfg->append && *cfg->append) {
        if (has_init_command(cfg->append)) {
            snprintf(err, errlen,
                     "append '%s' holds a `--` command for /init, which would run instead of "
                     "kiln-agent; give kernel parameters only and run commands with kiln_exec",
                     cfg->append);
            return -EINVAL;
        }
        if (snprintf(bufs[3], PATH_MAX, "%s", cfg->append) >= PATH_MAX) {
            snprintf(err, errlen, "the kernel command-line words in append are too long");
            return -E2BIG;
        }
        argv[n++] = "--append";
        argv[n++] = bufs[3];
    }
    argv[n++] = "--ready-fd";
    argv[n++] = "3";
    argv[n] = NULL;
    return 0;
}

int kiln_sandbox_create(const struct kiln_sandbox_config *cfg, kiln_sandbox **out, char *err,
                        size_t errlen)
{
    static const struct kiln_sandbox_config defaults;
    char bin[PATH_MAX], name[RUNDIR_NAME_MAX + 1], bufs[4][PATH_MAX], dummy[8];
    const char *argv[MAX_VMM_ARGS];
    kiln_sandbox *sb;
    int ret;

    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!cfg)
        cfg = &defaults;
    if (cfg->name && !rundir_name_valid(cfg->name)) {
        snprintf(err, errlen,
                 "invalid sandbox name '%s': use 1 to %d characters of A-Z a-z 0-9 . "
                 "_ - (not starting with '.')",
                 cfg->name, RUNDIR_NAME_MAX);
        return -EINVAL;
    }
    snprintf(name, sizeof(name), "%s", cfg->name ? cfg->name : "");
    if (!cfg->name) /* unique within this process by the clock, across processes by the pid */
        snprintf(name, sizeof(name), "sbx-%d-%llx", (int)getpid(),
                 (unsigned long long)(time_now_ns() / 1000) & 0xffffffffULL);
    ret = sandbox_find_kiln(cfg->kiln_bin, bin, sizeof(bin), err, errlen);
    if (ret < 0)
        return ret;
    ret = build_argv(cfg, bin, name, bufs, argv, err, errlen);
    if (ret < 0)
        return ret;
    sb = handle_new();
    if (!sb)
        return -ENOMEM;
    snprintf(sb->name, sizeof(sb->name), "%s", name);
    ret =
        sandbox_spawn(bin, (char *const *)argv,
                      cfg->ready_timeout_ms ? cfg->ready_timeout_ms : KILN_SANDBOX_READY_TIMEOUT_MS,
                      &sb->pid, &sb->ready, err, errlen);
    if (ret < 0)
        goto fail_spawn;
    sb->owned = true;
    ret = connect_agent(sb, name, err, errlen);
    if (ret < 0)
        goto fail_connect;
    *out = sb;
    return 0;

fail_connect:
    kill(sb->pid, SIGTERM);
    sandbox_reap(sb->pid, STOP_TIMEOUT_MS);
fail_spawn:
    handle_free(sb);
    return ret;
}

/* Asks the VM to end through its control socket; SIGTERM if that fails. */
static int stop_vm(kiln_sandbox *sb)
{
    kiln_ctl *ctl;
    int ret = kiln_ctl_open(sb->name, &ctl);

    if (ret == 0) {
        ret = kiln_ctl_exit(ctl);
        kiln_ctl_close(ctl);
    }
    if (ret < 0 && sb->pid > 0 && kill(sb->pid, SIGTERM) == 0)
        ret = 0;
    if (sb->owned)
        sandbox_reap(sb->pid, STOP_TIMEOUT_MS);
    return ret;
}

void kiln_sandbox_destroy(kiln_sandbox *sb)
{
    if (!sb)
        return;
    agent_conn_close(sb->conn);
    if (sb->owned)
        stop_vm(sb);
    handle_free(sb);
}

int kiln_sandbox_stop(kiln_sandbox *sb)
{
    int ret;

    if (!sb)
        return -EINVAL;
    agent_conn_close(sb->conn);
    sb->conn = NULL;
    ret = sb->name[0] ? stop_vm(sb) : -EINVAL;
    handle_free(sb);
    return ret;
}

const char *kiln_sandbox_name(const kiln_sandbox *sb)
{
    return sb->name;
}

int kiln_sandbox_vmm_pid(const kiln_sandbox *sb)
{
    return (int)sb->pid;
}

void kiln_sandbox_ready_info(const kiln_sandbox *sb, struct kiln_ready_info *info)
{
    *info = sb->ready;
}

int kiln_sandbox_ping(kiln_sandbox *sb, unsigned timeout_ms)
{
    char err[AGENT_ERR_MAX];
    uint64_t token = time_now_ns();
    int ret = agent_conn_ping(sb->conn, &token, sizeof(token), timeout_ms, err, sizeof(err));

    return ret < 0 ? sandbox_errorf(sb, ret, "ping: %s", err) : 0;
}
