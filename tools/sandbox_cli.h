/* sandbox_cli.h: what the sandbox commands of the kiln CLI share (tools/exec.c, shell.c, cp.c,
 * sandbox_cmds.c): opening a sandbox from the command line and running one interactive or
 * streamed process to its end. docs/sandbox.md documents the commands. */
#ifndef KILN_TOOLS_SANDBOX_CLI_H
#define KILN_TOOLS_SANDBOX_CLI_H

#include <stdbool.h>

#include "kiln.h"

/* Exit codes of kiln exec/shell besides the command's own (as a shell or docker run would). */
#define EXEC_EXIT_KILN      125 /* kiln could not run the command: no sandbox, boot failed ... */
#define EXEC_EXIT_NOEXEC    126 /* the command is not executable (permission) */
#define EXEC_EXIT_NOT_FOUND 127 /* the command does not exist */

/* Boots a fresh sandbox from `kiln run` options (argv[0..argc), validated like kiln run's; no
 * --detach, --ready-fd). Prints the reason and returns NULL on failure (*code: the exit code). */
kiln_sandbox *sandbox_cli_boot(const char *cmd, int argc, char **argv, int *code);
/* Connects to running sandbox `name`, or prints why not and returns NULL. */
kiln_sandbox *sandbox_cli_attach(const char *cmd, const char *name);

/* Runs one process started with `opts` to its end: output to stdout/stderr, stdin from ours when
 * stream_stdin, the terminal in raw mode with window-size changes forwarded when tty, SIGINT/
 * SIGTERM/SIGHUP passed on to the process. Returns the exit code for kiln (the command's, 128+N
 * for a signal, EXEC_EXIT_* when it could not run). */
int sandbox_cli_run(const char *cmd, kiln_sandbox *sb, struct kiln_exec_opts *opts,
                    bool stream_stdin, bool tty);

#endif
