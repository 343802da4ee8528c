/* sandbox_cmds.c: the named-sandbox commands: `kiln run --detach` (start in the background,
 * return once the guest agent is READY), `kiln stop NAME` and `kiln ls` (docs/sandbox.md). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/lib.h"
#include "sandbox/sandbox.h"
#include "sandbox_cli.h"
#include "tools.h"

#define STOP_WAIT_MS 10000

int cmd_run_detached(int argc, char **argv, const struct cli_run *run)
{
    const char **child = calloc((size_t)argc + 16, sizeof(char *));
    char bin[PATH_MAX], name[RUNDIR_NAME_MAX + 1], console[PATH_MAX], err[4096];
    struct kiln_ready_info ready;
    unsigned timeout_ms = KILN_SANDBOX_READY_TIMEOUT_MS;
    pid_t pid;
    int n = 0, ret;

    if (!child)
        return 1;
    ret = sandbox_find_kiln(NULL, bin, sizeof(bin), err, sizeof(err));
    if (ret < 0) {
        fprintf(stderr, "kiln run: %s\n", err);
        free(child);
        return 1;
    }
    snprintf(name, sizeof(name), "%s", run->cfg.name ? run->cfg.name : "");
    if (!run->cfg.name)
        snprintf(name, sizeof(name), "sbx-%d", (int)getpid());
    child[n++] = bin;
    child[n++] = "run";
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--detach"))
            child[n++] = argv[i];
    if (!run->cfg.name) {
        child[n++] = "--name";
        child[n++] = name;
    }
    if (!run->cfg.console_path) {
        if (rundir_path(name, console, sizeof(console) - 16) < 0) {
            fprintf(stderr, "kiln run: the runtime directory path of '%s' is too long\n", name);
            free(child);
            return 2;
        }
        strcat(console, "/console.log");
        child[n++] = "--console";
        child[n++] = console;
    }
    /* The guest's agent: the default image's /init execs kiln-agent as PID 1 when the command
     * line has no `--` command, so nothing is added to the user's own words. */
    child[n++] = "--ready-fd";
    child[n++] = "3";
    if (run->cfg.timeout_s && run->cfg.timeout_s * 1000ULL < timeout_ms)
        timeout_ms = run->cfg.timeout_s * 1000;
    ret = sandbox_spawn(bin, (char *const *)child, timeout_ms, &pid, &ready, err, sizeof(err));
    free(child);
    if (ret < 0) {
        fprintf(stderr, "kiln run: the sandbox did not start: %s\n", err);
        return 1;
    }
    printf("%s\n", name);
    log_info("run: %s (pid %d) ready in %.1f ms (guest kernel %.1f ms, agent %.1f ms)", name,
             (int)pid, (double)ready.total_us / 1e3, (double)ready.kernel_us / 1e3,
             (double)ready.agent_us / 1e3);
    return 0;
}

/* The VMM pid of sandbox `name` (0: none, or its process is gone). */
static pid_t live_pid(const char *dir)
{
    char path[PATH_MAX + 16], comm[64] = "";
    FILE *f;
    int pid = 0;

    snprintf(path, sizeof(path), "%s/pid", dir);
    f = fopen(path, "re");
    if (!f)
        return 0;
    if (fscanf(f, "%d", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 0 || kill(pid, 0) < 0)
        return 0;
    /* A recycled pid belongs to some other program. */
    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    f = fopen(path, "re");
    if (f) {
        if (!fgets(comm, sizeof(comm), f))
            comm[0] = '\0';
        fclose(f);
    }
    return strncmp(comm, "kiln", 4) ? 0 : pid;
}

static const char usage_stop[] = "usage: kiln stop NAME...\n"
                                 "\n"
                                 "Stops running sandboxes (or VMs) by name and waits until they "
                                 "are gone. Exit codes: 0 stopped,\n1 no such sandbox or it did "
                                 "not stop, 2 bad usage.\n";

static int stop_one(const char *name)
{
    char dir[PATH_MAX];
    kiln_ctl *ctl;
    pid_t pid;
    int ret;

    if (!rundir_name_valid(name) || rundir_path(name, dir, sizeof(dir)) < 0) {
        fprintf(stderr, "kiln stop: invalid name '%s'\n", name);
        return 2;
    }
    pid = live_pid(dir);
    ret = kiln_ctl_open(name, &ctl);
    if (ret == 0) {
        ret = kiln_ctl_exit(ctl);
        kiln_ctl_close(ctl);
    }
    if (ret < 0 && pid > 0)
        ret = kill(pid, SIGTERM) < 0 ? -errno : 0;
    if (ret < 0) {
        fprintf(stderr, "kiln stop: %s: %s\n", name,
                ret == -ENOENT || ret == -ECONNREFUSED ? "no such sandbox (kiln ls lists them)"
                                                       : strerror(-ret));
        return 1;
    }
    for (uint64_t end = time_now_ns() + STOP_WAIT_MS * 1000000ULL; pid > 0 && kill(pid, 0) == 0;) {
        if (time_now_ns() > end) {
            fprintf(stderr, "kiln stop: %s (pid %d) did not stop within %d s\n", name, (int)pid,
                    STOP_WAIT_MS / 1000);
            return 1;
        }
        usleep(5000);
    }
    return 0;
}

int cmd_stop(int argc, char **argv)
{
    int code = 0;

    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(usage_stop, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    for (int i = 0; i < argc; i++) {
        int c = stop_one(argv[i]);
        code = c > code ? c : code;
    }
    return code;
}

int cmd_ls(int argc, char **argv)
{
    char base[PATH_MAX], dir[PATH_MAX * 2];
    struct dirent *e;
    DIR *d;

    (void)argv;
    if (argc > 0) {
        printf("usage: kiln ls\n\nLists the VMs and sandboxes of this user: name, VMM pid and "
               "state (running,\npaused; stale for a directory left by a VMM that died).\n");
        return strcmp(argv[0], "-h") && strcmp(argv[0], "--help") ? 2 : 0;
    }
    if (rundir_path("x", base, sizeof(base)) < 0)
        return 1;
    base[strlen(base) - 2] = '\0';
    printf("%-24s %8s  %s\n", "NAME", "PID", "STATE");
    d = opendir(base);
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        enum kiln_vm_state state;
        const char *what = "stale";
        kiln_ctl *ctl;
        struct stat st;
        pid_t pid;

        if (!rundir_name_valid(e->d_name))
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        /* Only directories are VMs (the doctor's probe cache lives beside them as a file). */
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        pid = live_pid(dir);
        if (pid > 0) {
            what = "running";
            if (kiln_ctl_open(e->d_name, &ctl) == 0) {
                if (kiln_ctl_get_state(ctl, &state) == 0)
                    what = kiln_ctl_state_name(state);
                kiln_ctl_close(ctl);
            }
        }
        printf("%-24s %8d  %s\n", e->d_name, (int)pid, what);
    }
    closedir(d);
    return 0;
}
