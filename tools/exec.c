/* exec.c: `kiln exec`: run a command in a fresh sandbox (booted from kiln run options) or in a
 * running one (NAME), streaming its output and exiting with its code; and the process session
 * the sandbox commands share (sandbox_cli.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/lib.h"
#include "sandbox_cli.h"
#include "tools.h"

#define MAX_ENV 256

static const char usage_exec[] =
    "usage: kiln exec [EXEC OPTIONS] [VM OPTIONS] -- COMMAND [ARGS...]\n"
    "       kiln exec [EXEC OPTIONS] NAME -- COMMAND [ARGS...]\n"
    "\n"
    "Runs COMMAND in a sandbox and exits with its exit code (128+N when signal N ended it).\n"
    "Without NAME a fresh sandbox is booted with the VM options of kiln run (e.g. --mem 512M,\n"
    "--cpus 2, --kernel/--initrd) and stopped afterwards; with NAME the command runs in the\n"
    "running sandbox started by `kiln run --name NAME --detach`. Output streams as it comes,\n"
    "stdout and stderr apart; stdin is passed on unless it is a terminal (then give -i).\n"
    "\n"
    "Exec options:\n"
    "  -i, --interactive      pass stdin on even when it is a terminal\n"
    "  -t, --tty              run on a pseudo-terminal (raw mode here; one output stream)\n"
    "  -e, --env NAME=VALUE   add to the command's environment (repeatable)\n"
    "  -w, --cwd DIR          working directory in the guest (default /)\n"
    "  -u, --user UID[:GID]   run as this user (default root)\n"
    "  --sh                   COMMAND ARGS are joined into one /bin/sh -c command line\n"
    "  --cmd-timeout SECONDS  the guest kills the command after this long (exit code 124)\n"
    "\n"
    "Exit codes: the command's; 124 its timeout expired; 125 kiln could not run it (no such\n"
    "sandbox, boot failure); 126 not executable; 127 not found; 2 bad usage.\n";

/* ---- booting and attaching ---- */

/* Whether argv[i] is --OPT or --OPT=VALUE for this option. */
static bool is_opt(const char *arg, const char *opt)
{
    size_t n = strlen(opt);
    return !strncmp(arg, opt, n) && (arg[n] == '\0' || arg[n] == '=');
}

kiln_sandbox *sandbox_cli_boot(const char *cmd, int argc, char **argv, int *code)
{
    struct kiln_sandbox_config cfg = {0};
    static struct cli_run run; /* large: keep it off the stack */
    const char **vmm_args = calloc((size_t)argc + 1, sizeof(char *));
    char err[2048];
    kiln_sandbox *sb = NULL;
    int n = 0;

    *code = 2;
    if (!vmm_args)
        return NULL;
    if (cli_parse_run(argc, argv, &run, err, sizeof(err)) < 0) {
        fprintf(stderr, "kiln %s: %s\n", cmd, err);
        goto out;
    }
    if (run.detach || run.cfg.ready_fd) {
        fprintf(stderr,
                "kiln %s: --detach and --ready-fd are for kiln run; kiln %s stops its "
                "sandbox when the command ends\n",
                cmd, cmd);
        goto out;
    }
    /* --name and --append go through the config (the library adds its own); the rest as is. */
    for (int i = 0; i < argc; i++) {
        if (is_opt(argv[i], "--name") || is_opt(argv[i], "--append")) {
            i += strchr(argv[i], '=') ? 0 : 1;
            continue;
        }
        vmm_args[n++] = argv[i];
    }
    cfg.name = run.cfg.name;
    cfg.append = run.append;
    cfg.vmm_args = vmm_args;
    log_set_level(run.verbosity < 0 ? LOG_ERROR : run.verbosity == 0 ? LOG_WARN : LOG_INFO);
    if (kiln_sandbox_create(&cfg, &sb, err, sizeof(err)) < 0) {
        fprintf(stderr, "kiln %s: cannot start the sandbox: %s\n", cmd, err);
        *code = EXEC_EXIT_KILN;
        sb = NULL;
    } else {
        struct kiln_ready_info r;
        kiln_sandbox_ready_info(sb, &r);
        log_info("%s: sandbox %s ready in %.1f ms (VMM start to READY %.1f ms; guest clock: "
                 "kernel %.1f ms, agent ready %.1f ms)",
                 cmd, kiln_sandbox_name(sb), (double)r.total_us / 1e3, (double)r.vmm_us / 1e3,
                 (double)r.kernel_us / 1e3, (double)r.agent_us / 1e3);
    }
out:
    free(vmm_args);
    return sb;
}

kiln_sandbox *sandbox_cli_attach(const char *cmd, const char *name)
{
    kiln_sandbox *sb;
    char err[1024];

    if (kiln_sandbox_attach(name, &sb, err, sizeof(err)) < 0) {
        fprintf(stderr, "kiln %s: sandbox '%s': %s\n", cmd, name, err);
        return NULL;
    }
    return sb;
}

/* ---- the session: one process, its output, our stdin, signals ---- */
struct session {
    kiln_process *proc;
    pthread_mutex_t lock; /* `done` and every use of proc from the helper threads */
    bool done;
    int stop_pipe[2];
    sigset_t sigs;
};

static void *stdin_main(void *arg)
{
    struct session *s = arg;
    uint8_t buf[65536];

    for (;;) {
        struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = s->stop_pipe[0], .events = POLLIN}};
        ssize_t n;
        int ret;

        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!p[0].revents)
            continue;
        n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        pthread_mutex_lock(&s->lock);
        ret = s->done ? -EPIPE
              : n > 0 ? kiln_exec_write_stdin(s->proc, buf, (size_t)n)
                      : kiln_exec_close_stdin(s->proc);
        pthread_mutex_unlock(&s->lock);
        if (ret < 0 || n <= 0)
            break;
    }
    return NULL;
}

static void resize(struct session *s)
{
    struct winsize ws;

    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
        kiln_exec_resize(s->proc, ws.ws_row, ws.ws_col);
}

/* Passes the signals we get on to the process (SIGWINCH: the terminal's new size). */
static void *signal_main(void *arg)
{
    struct session *s = arg;
    int sig;

    for (;;) {
        if (sigwait(&s->sigs, &sig) != 0)
            continue;
        pthread_mutex_lock(&s->lock);
        if (s->done) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        if (sig == SIGWINCH)
            resize(s);
        else if (sig != SIGUSR2)
            kiln_exec_signal(s->proc, sig);
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

static int start_error(const char *cmd, kiln_sandbox *sb, int ret)
{
    char msg[512];

    fprintf(stderr, "kiln %s: %s\n", cmd, kiln_sandbox_last_error(sb, msg, sizeof(msg)));
    return ret == -ENOENT                    ? EXEC_EXIT_NOT_FOUND
           : ret == -EACCES                  ? EXEC_EXIT_NOEXEC
           : ret == -EINVAL || ret == -E2BIG ? 2
                                             : EXEC_EXIT_KILN;
}

int sandbox_cli_run(const char *cmd, kiln_sandbox *sb, struct kiln_exec_opts *opts,
                    bool stream_stdin, bool tty)
{
    struct session s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct kiln_exec_event ev;
    struct termios saved, raw;
    bool restore = false, out_ok = true;
    pthread_t in_thread, sig_thread;
    bool in_started = false;
    int ret, code = EXEC_EXIT_KILN;
    char msg[512];

    signal(SIGPIPE, SIG_IGN);
    opts->stdin_stream = stream_stdin;
    opts->pty = tty;
    if (tty) {
        struct winsize ws;
        if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
            opts->rows = ws.ws_row;
            opts->cols = ws.ws_col;
        }
    }
    /* Signals are taken by one thread and forwarded; none interrupts the others. */
    sigemptyset(&s.sigs);
    sigaddset(&s.sigs, SIGINT);
    sigaddset(&s.sigs, SIGTERM);
    sigaddset(&s.sigs, SIGHUP);
    sigaddset(&s.sigs, SIGQUIT);
    sigaddset(&s.sigs, SIGWINCH);
    sigaddset(&s.sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s.sigs, NULL);
    ret = kiln_exec_start(sb, opts, &s.proc);
    if (ret < 0)
        return start_error(cmd, sb, ret);
    if (pipe2(s.stop_pipe, O_CLOEXEC) < 0)
        goto out_proc;
    if (tty && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        cfmakeraw(&raw);
        restore = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    in_started = stream_stdin && pthread_create(&in_thread, NULL, stdin_main, &s) == 0;
    if (pthread_create(&sig_thread, NULL, signal_main, &s) != 0)
        goto out_term;
    pthread_detach(sig_thread);
    while ((ret = kiln_exec_next(s.proc, -1, &ev)) == 0 && ev.type != KILN_EXEC_EXIT) {
        int fd = ev.type == KILN_EXEC_STDOUT ? STDOUT_FILENO : STDERR_FILENO;
        if (ev.len && out_ok && write_all(fd, ev.data, ev.len) < 0) {
            out_ok = false; /* our reader went away (a closed pipe): the command goes too */
            kiln_exec_signal(s.proc, SIGPIPE);
        }
    }
    if (ret < 0) {
        fprintf(stderr, "%skiln %s: %s\n", restore ? "\r\n" : "", cmd,
                kiln_sandbox_last_error(sb, msg, sizeof(msg)));
    } else {
        code = ev.status.exit_code;
        if (ev.status.timed_out) {
            fprintf(stderr, "kiln %s: the command timed out (--cmd-timeout)\n", cmd);
            code = 124;
        }
    }
out_term:
    if (restore)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    pthread_mutex_lock(&s.lock);
    s.done = true;
    pthread_mutex_unlock(&s.lock);
    (void)write(s.stop_pipe[1], "x", 1);
    if (in_started)
        pthread_join(in_thread, NULL);
    close(s.stop_pipe[0]);
    close(s.stop_pipe[1]);
out_proc:
    pthread_mutex_lock(&s.lock);
    s.done = true;
    kiln_exec_free(s.proc);
    pthread_mutex_unlock(&s.lock);
    return code;
}

/* ---- kiln exec ---- */
struct exec_args {
    struct kiln_exec_opts o;
    const char *env[MAX_ENV + 1];
    unsigned nenv;
    bool interactive, tty, sh;
    int nrest;
    char **rest; /* NAME, or the VM options */
};

static int parse_user(const char *v, struct kiln_exec_opts *o)
{
    uint64_t uid, gid;
    char buf[64], *colon;

    if (strlen(v) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, v);
    colon = strchr(buf, ':');
    if (colon)
        *colon = '\0';
    if (parse_uint(buf, 0, UINT32_MAX - 1, &uid) < 0 ||
        (colon && parse_uint(colon + 1, 0, UINT32_MAX - 1, &gid) < 0))
        return -EINVAL;
    o->uid = (uint32_t)uid;
    o->gid = colon ? (uint32_t)gid : (uint32_t)uid;
    return 0;
}

/* Takes the exec options out of argv[0..argc); the others stay in a->rest. */
static int parse_exec_args(int argc, char **argv, struct exec_args *a)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        uint64_t n;

#define TAKE(s, l)                                                                                 \
    ((!strcmp(arg, s) || !strcmp(arg, l)) && i + 1 < argc ? (v = argv[++i]) != NULL                \
     : !strncmp(arg, l "=", sizeof(l))                    ? (v = arg + sizeof(l)) != NULL          \
                                                          : false)
        if (!strcmp(arg, "-i") || !strcmp(arg, "--interactive")) {
            a->interactive = true;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--tty")) {
            a->tty = true;
        } else if (!strcmp(arg, "--sh")) {
            a->sh = true;
        } else if (TAKE("-e", "--env")) {
            if (!strchr(v, '=') || v[0] == '=' || a->nenv >= MAX_ENV) {
                fprintf(stderr, "kiln exec: invalid --env '%s': give NAME=VALUE (at most %d)\n", v,
                        MAX_ENV);
                return -EINVAL;
            }
            a->env[a->nenv++] = v;
        } else if (TAKE("-w", "--cwd")) {
            a->o.cwd = v;
        } else if (TAKE("-u", "--user")) {
            if (parse_user(v, &a->o) < 0) {
                fprintf(stderr, "kiln exec: invalid --user '%s': give UID or UID:GID (numbers)\n",
                        v);
                return -EINVAL;
            }
        } else if (TAKE("--cmd-timeout", "--cmd-timeout")) {
            if (parse_uint(v, 1, 4000000, &n) < 0) {
                fprintf(stderr,
                        "kiln exec: invalid --cmd-timeout '%s': give whole seconds from "
                        "1 to 4000000\n",
                        v);
                return -EINVAL;
            }
            a->o.timeout_ms = (unsigned)n * 1000;
        } else {
            a->rest[a->nrest++] = argv[i];
        }
#undef TAKE
    }
    return 0;
}

int cmd_exec(int argc, char **argv)
{
    static struct exec_args a;
    char *joined = NULL;
    kiln_sandbox *sb;
    int dash = -1, code;

    for (int i = 0; i < argc && dash < 0; i++)
        if (!strcmp(argv[i], "--"))
            dash = i;
    for (int i = 0; i < (dash < 0 ? argc : dash); i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_exec, stdout);
            return 0;
        }
    if (dash < 0 || dash == argc - 1) {
        fprintf(stderr, "kiln exec: give the command after `--` (kiln exec --help)\n");
        return 2;
    }
    a.rest = calloc((size_t)dash + 1, sizeof(char *));
    if (!a.rest || parse_exec_args(dash, argv, &a) < 0)
        return 2;
    a.o.env = a.nenv ? a.env : NULL;
    if (a.sh) {
        size_t len = 1;
        for (int i = dash + 1; i < argc; i++)
            len += strlen(argv[i]) + 1;
        joined = calloc(1, len);
        if (!joined)
            return 1;
        for (int i = dash + 1; i < argc; i++)
            strcat(strcat(joined, i > dash + 1 ? " " : ""), argv[i]);
        a.o.shell = joined;
    } else {
        a.o.argv = (const char *const *)argv + dash + 1;
    }
    if (a.nrest == 1 && a.rest[0][0] != '-') {
        sb = sandbox_cli_attach("exec", a.rest[0]);
        code = EXEC_EXIT_KILN;
    } else {
        sb = sandbox_cli_boot("exec", a.nrest, a.rest, &code);
    }
    if (sb) {
        code = sandbox_cli_run("exec", sb, &a.o, a.interactive || !isatty(STDIN_FILENO), a.tty);
        kiln_sandbox_destroy(sb);
    }
    free(joined);
    free(a.rest);
    return code;
}
