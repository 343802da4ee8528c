/* kiln.c: the kiln command-line tool: run, doctor, version, help. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/lib.h"
#include "tools.h"

#ifndef KILN_VERSION
#define KILN_VERSION "0.1.0"
#endif

static const char usage_main[] =
    "usage: kiln COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  run       boot a Linux microVM (the default guest image, or your own kernel)\n"
    "  doctor    report what this host offers kiln and whether Linux guests can run here\n"
    "  unikernel run a freestanding ELF on kiln's hypercall ABI, without a kernel\n"
    "  ctl       control a running VM (pause, resume, state, metrics, memory, balloon, exit)\n"
    "  exec      run a command in a sandbox (fresh, or a running one by name)\n"
    "  shell     an interactive shell in a sandbox\n"
    "  cp        copy a file between the host and a sandbox (NAME:/path)\n"
    "  stop      stop a named sandbox or VM\n"
    "  ls        list the running sandboxes and VMs\n"
    "  version   print the version\n"
    "  help      print this help (kiln COMMAND --help for a command's options)\n";

static const char usage_run[] =
    "usage: kiln run [OPTIONS]\n"
    "\n"
    "Boots a microVM. Without --kernel/--initrd the default guest image is used (its vmlinux and\n"
    "initramfs.cpio.gz from $KILN_IMAGE_DIR, else the guest/ directory beside the kiln binary).\n"
    "The guest's serial console is this terminal unless --console names a file; Ctrl-A x ends\n"
    "the VM.\n"
    "\n"
    "  --kernel PATH      bzImage or ELF vmlinux (PVH entry when the image has one)\n"
    "  --initrd PATH      initramfs or initrd image\n"
    "  --cmdline TEXT     the whole kernel command line (default: \"" CLI_DEFAULT_CMDLINE "\")\n"
    "  --append TEXT      words added to the default command line (e.g. \"-- uname -a\")\n"
    "  --cpus N           vCPUs, 1 to 32 (default 1)\n"
    "  --mem SIZE         guest RAM, 16M to 1T (default 256M)\n"
    "  --console FILE     write the guest console to FILE instead of the terminal\n"
    "  --timeout SECONDS  stop the VM after this long (exit code 124)\n"
    "  --no-acpi          no ACPI tables (the MP table still describes the CPUs)\n"
    "  --no-hugepages     guest RAM on 4 KiB pages (default: 2 MiB pages where the host's\n"
    "                     shmem_enabled allows them; always 4 KiB with --balloon)\n"
    "  --stats FILE       write a JSON summary (exit, set-up and boot times, RSS) at exit\n"
    "  --kvm PATH         the KVM device (default /dev/kvm)\n"
    "  -v, --verbose      more log output (repeat for debug)\n"
    "  -q, --quiet        errors only\n"
    "  --name NAME        names the VM and its runtime directory (A-Z a-z 0-9 . _ -)\n"
    "  --detach           run as a sandbox in the background: return (printing its name) once\n"
    "                     the guest agent is READY; console in the runtime directory\n"
    "\n"
    "Devices (virtio-mmio; docs/virtio.md). The default image gets vsock and rng unless told\n"
    "otherwise; with --kernel only what is asked for.\n"
    "  --disk PATH[,ro][,bw=RATE][,iops=N]\n"
    "                     a raw disk image, /dev/vda, vdb, ... in order (up to 8); RATE is\n"
    "                     bytes per second (e.g. 10M), N operations per second\n"
    "  --net tap=NAME[,mac=XX:XX:XX:XX:XX:XX][,bw=RATE][,pps=N]\n"
    "                     a network device on an existing tap interface\n"
    "  --vsock PATH       vsock, its host side the Unix socket PATH (default image: vsock.sock\n"
    "                     in the runtime directory)\n"
    "  --no-vsock         no vsock device\n"
    "  --cid N            the guest's vsock CID, 3 or more (default 3)\n"
    "  --rng, --no-rng    an entropy device (virtio-rng), or none\n"
    "  --balloon SIZE     a memory balloon, inflated to SIZE at boot (0: none taken yet)\n"
    "\n"
    "Files for the guest, read-only over vsock port 1026 (kiln-fetch in the guest;\n"
    "docs/file-service.md). The default /init applies /config/init.env from them.\n"
    "  --files DIR        serve the host directory DIR (nothing outside it is reachable)\n"
    "  --file NAME=PATH   serve the host file PATH as NAME, e.g. config/init.env=./my.env\n"
    "                     (repeatable; takes precedence over --files)\n"
    "\n"
    "Exit codes: 0 poweroff, 1 host error, 2 bad usage or input, 3 reboot, 4 guest panic,\n"
    "5 triple fault, 6 vCPU error, 124 timeout, 130 SIGINT or Ctrl-A x, 143 SIGTERM\n"
    "(docs/exit-codes.md).\n";

/* The default image directory: $KILN_IMAGE_DIR, else <directory of the kiln binary>/guest. */
static int default_image_dir(char *out, size_t len)
{
    const char *env = getenv("KILN_IMAGE_DIR");
    char exe[PATH_MAX];
    ssize_t n;
    char *slash;

    if (env && *env)
        return snprintf(out, len, "%s", env) < (int)len ? 0 : -ENAMETOOLONG;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return -errno;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    return snprintf(out, len, "%s/guest", exe) < (int)len ? 0 : -ENAMETOOLONG;
}

static int image_file(const char *dir, const char *name, char *out, size_t len)
{
    if (snprintf(out, len, "%s/%s", dir, name) < (int)len && access(out, R_OK) == 0)
        return 0;
    fprintf(stderr,
            "kiln: the default guest image has no %s (looked in %s).\n"
            "kiln: build it with `make guest`, set KILN_IMAGE_DIR, or pass --kernel/--initrd.\n",
            name, dir);
    return -ENOENT;
}

static int cmd_run(int argc, char **argv, uint64_t start_ns)
{
    static char kernel[PATH_MAX], initrd[PATH_MAX], dir[PATH_MAX];
    static char cmdline[8192];
    struct cli_run run;
    char err[256];

    if (cli_parse_run(argc, argv, &run, err, sizeof(err)) < 0) {
        fprintf(stderr, "kiln run: %s\n", err);
        return 2;
    }
    if (run.help) {
        fputs(usage_run, stdout);
        return 0;
    }
    if (run.detach)
        return cmd_run_detached(argc, argv, &run);
    log_set_level(run.verbosity < 0    ? LOG_ERROR
                  : run.verbosity == 0 ? LOG_WARN
                  : run.verbosity == 1 ? LOG_INFO
                                       : LOG_DEBUG);
    if (!run.cfg.kernel_path || !run.cfg.initrd_path) {
        if (default_image_dir(dir, sizeof(dir)) < 0) {
            fprintf(stderr, "kiln run: cannot locate the default guest image\n");
            return 2;
        }
        if (!run.cfg.kernel_path) {
            if (image_file(dir, "vmlinux", kernel, sizeof(kernel)) < 0)
                return 2;
            run.cfg.kernel_path = kernel;
        }
        if (!run.cfg.initrd_path) {
            if (image_file(dir, "initramfs.cpio.gz", initrd, sizeof(initrd)) < 0)
                return 2;
            run.cfg.initrd_path = initrd;
        }
    }
    if (!run.cfg.cmdline) {
        int n = snprintf(cmdline, sizeof(cmdline), "%s%s%s", CLI_DEFAULT_CMDLINE,
                         run.append ? " " : "", run.append ? run.append : "");
        if (n >= (int)sizeof(cmdline)) {
            fprintf(stderr, "kiln run: --append makes the command line longer than %zu bytes\n",
                    sizeof(cmdline) - 1);
            return 2;
        }
        run.cfg.cmdline = cmdline;
    }
    doctor_warn_if_unfit(run.cfg.kvm_path);
    return machine_run(&run.cfg, start_ns);
}

int main(int argc, char **argv)
{
    uint64_t start_ns = time_now_ns();
    const char *cmd = argc > 1 ? argv[1] : "help";

    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 2, argv + 2, start_ns);
    if (!strcmp(cmd, "doctor"))
        return cmd_doctor(argc - 2, argv + 2);
    if (!strcmp(cmd, "unikernel"))
        return cmd_unikernel(argc - 2, argv + 2, start_ns);
    if (!strcmp(cmd, "ctl"))
        return cmd_ctl(argc - 2, argv + 2);
    if (!strcmp(cmd, "exec"))
        return cmd_exec(argc - 2, argv + 2);
    if (!strcmp(cmd, "shell"))
        return cmd_shell(argc - 2, argv + 2);
    if (!strcmp(cmd, "cp"))
        return cmd_cp(argc - 2, argv + 2);
    if (!strcmp(cmd, "stop"))
        return cmd_stop(argc - 2, argv + 2);
    if (!strcmp(cmd, "ls"))
        return cmd_ls(argc - 2, argv + 2);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("kiln %s\n", KILN_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_main, stdout);
        return 0;
    }
    fprintf(stderr, "kiln: unknown command '%s'\n%s", cmd, usage_main);
    return 2;
}
