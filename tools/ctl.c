/* ctl.c: `kiln ctl NAME|SOCKET COMMAND`: a thin client of libkiln's control API. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln.h"
#include "lib/lib.h"
#include "tools.h"

static const char usage_ctl[] =
    "usage: kiln ctl NAME|SOCKET COMMAND [ARGS]\n"
    "\n"
    "Controls a running VM through its control socket: NAME is the --name it was started with,\n"
    "SOCKET a path to a control.sock (anything containing a '/').\n"
    "\n"
    "Commands:\n"
    "  state                      print running, paused or exiting\n"
    "  pause                      hold every vCPU (guest time stands still)\n"
    "  resume                     let the vCPUs run again\n"
    "  exit                       stop the VM (its kiln run exits with code 0)\n"
    "  balloon PAGES              grow (+N) or shrink (-N) the balloon by N 4 KiB pages\n"
    "  metrics                    print the VM's counters as JSON\n"
    "  register-memory FILE SIZE  map SIZE bytes of FILE into guest memory above RAM; prints\n"
    "                             the guest-physical address, page frame number and slot\n"
    "  unregister-memory SLOT     remove a registered region\n"
    "\n"
    "Exit codes: 0 done, 1 the VM refused or cannot be reached, 2 bad usage.\n";

static int fail(const char *target, const char *what, int err)
{
    fprintf(stderr, "kiln ctl: %s: %s: %s%s\n", target, what, strerror(-err),
            err == -EACCES ? " (only root and the VM's owner may control it)" : "");
    return 1;
}

static int usage_error(const char *fmt, const char *arg)
{
    fputs("kiln ctl: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(kiln ctl --help lists the commands)\n", stderr);
    return 2;
}

static int want_args(const char *cmd, int have, int want)
{
    if (have == want)
        return 0;
    fprintf(stderr, "kiln ctl: %s takes %d argument%s, not %d\n", cmd, want, want == 1 ? "" : "s",
            have);
    return 2;
}

static int register_memory(kiln_ctl *ctl, const char *target, const char *path, const char *text)
{
    uint64_t size, pfn;
    uint32_t slot;
    int fd, ret;

    if (parse_size(text, &size) < 0 || size == 0 || size % 4096)
        return usage_error("invalid SIZE '%s': use a non-zero multiple of 4096 (e.g. 2M)", text);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == EACCES)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "kiln ctl: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    ret = kiln_ctl_register_memory(ctl, fd, size, &pfn, &slot);
    close(fd);
    if (ret < 0)
        return fail(target, "register-memory", ret);
    printf("gpa %#llx pfn %#llx slot %u\n", (unsigned long long)(pfn * 4096),
           (unsigned long long)pfn, slot);
    return 0;
}

static int run_command(kiln_ctl *ctl, const char *target, const char *cmd, int argc, char **argv)
{
    enum kiln_vm_state state;
    uint64_t value;
    char *json;
    int ret;

    if (!strcmp(cmd, "state")) {
        if ((ret = want_args(cmd, argc, 0)) || (ret = kiln_ctl_get_state(ctl, &state)) < 0)
            return ret > 0 ? ret : fail(target, cmd, ret);
        printf("%s\n", kiln_ctl_state_name(state));
        return 0;
    }
    if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume") || !strcmp(cmd, "exit")) {
        if ((ret = want_args(cmd, argc, 0)))
            return ret;
        ret = !strcmp(cmd, "pause")    ? kiln_ctl_pause(ctl)
              : !strcmp(cmd, "resume") ? kiln_ctl_resume(ctl)
                                       : kiln_ctl_exit(ctl);
        return ret < 0 ? fail(target, cmd, ret) : 0;
    }
    if (!strcmp(cmd, "balloon")) {
        const char *num;
        bool neg;

        if ((ret = want_args(cmd, argc, 1)))
            return ret;
        neg = argv[0][0] == '-';
        num = argv[0] + (argv[0][0] == '-' || argv[0][0] == '+');
        if (parse_uint(num, 0, neg ? 0x80000000ULL : 0x7fffffffULL, &value) < 0)
            return usage_error("invalid PAGES '%s': use +N or -N, |N| < 2^31", argv[0]);
        ret =
            kiln_ctl_balloon_adjust(ctl, neg ? (int32_t) - (int64_t)value : (int32_t)value, &value);
        if (ret < 0)
            return fail(target, cmd, ret);
        printf("balloon target %llu pages\n", (unsigned long long)value);
        return 0;
    }
    if (!strcmp(cmd, "metrics")) {
        if ((ret = want_args(cmd, argc, 0)) || (ret = kiln_ctl_get_metrics(ctl, &json, NULL)) < 0)
            return ret > 0 ? ret : fail(target, cmd, ret);
        fputs(json, stdout);
        free(json);
        return 0;
    }
    if (!strcmp(cmd, "register-memory")) {
        if ((ret = want_args(cmd, argc, 2)))
            return ret;
        return register_memory(ctl, target, argv[0], argv[1]);
    }
    if (!strcmp(cmd, "unregister-memory")) {
        if ((ret = want_args(cmd, argc, 1)))
            return ret;
        if (parse_uint(argv[0], 0, UINT32_MAX, &value) < 0)
            return usage_error("invalid SLOT '%s': use the number register-memory printed",
                               argv[0]);
        ret = kiln_ctl_unregister_memory(ctl, (uint32_t)value);
        return ret < 0 ? fail(target, cmd, ret) : 0;
    }
    return usage_error("unknown command '%s'", cmd);
}

int cmd_ctl(int argc, char **argv)
{
    kiln_ctl *ctl;
    int ret;

    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        fputs(usage_ctl, stdout);
        return 0;
    }
    if (argc < 2) {
        fputs(usage_ctl, stderr);
        return 2;
    }
    ret = kiln_ctl_open(argv[0], &ctl);
    if (ret == -EINVAL)
        return usage_error("invalid VM name '%s': use the --name given to kiln run, or a "
                           "socket path",
                           argv[0]);
    if (ret < 0) {
        fprintf(stderr, "kiln ctl: cannot reach VM %s: %s%s\n", argv[0], strerror(-ret),
                ret == -ENOENT || ret == -ECONNREFUSED ? " (is it running?)" : "");
        return 1;
    }
    ret = run_command(ctl, argv[0], argv[1], argc - 2, argv + 2);
    kiln_ctl_close(ctl);
    return ret;
}
