/* tools.h: the kiln CLI's commands, one file each. */
#ifndef KILN_TOOLS_H
#define KILN_TOOLS_H

#include <stdint.h>

/* `kiln doctor [--quiet] [--json]`: exit 0 if Linux guests can run, 2 if /dev/kvm exists but
 * cannot run them (e.g. PVM), 1 if there is no usable /dev/kvm. */
int cmd_doctor(int argc, char **argv);
/* Before booting a Linux guest: warns once on stderr if the probe says this host's KVM cannot
 * run one, naming the test bed as the way out. Quiet when KILN_NO_PROBE=1. */
void doctor_warn_if_unfit(const char *kvm_path);

/* `kiln unikernel [OPTIONS] APP.elf [-- ARGS]` (tools/unikernel.c): the guest's exit code, or
 * the codes of docs/exit-codes.md. */
int cmd_unikernel(int argc, char **argv, uint64_t start_ns);

/* `kiln ctl NAME|SOCKET COMMAND [ARGS]` (tools/ctl.c): 0 done, 1 refused or unreachable,
 * 2 bad usage. */
int cmd_ctl(int argc, char **argv);

/* The sandbox commands (docs/sandbox.md): tools/exec.c, shell.c, cp.c, sandbox_cmds.c. exec and
 * shell exit with the command's code (125/126/127: kiln, not executable, not found). */
int cmd_exec(int argc, char **argv);
int cmd_shell(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_ls(int argc, char **argv);
struct cli_run;
/* `kiln run --detach`: spawns `kiln run ... --ready-fd 3` in its own session and returns 0 once
 * the guest agent is READY (printing the sandbox's name), else 1 with the reason. */
int cmd_run_detached(int argc, char **argv, const struct cli_run *run);

#endif
