/* shell.c: `kiln shell [NAME]`: an interactive shell on a pseudo-terminal in a sandbox (a fresh
 * one when no NAME is given), with the terminal in raw mode and window-size changes forwarded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox_cli.h"
#include "tools.h"

static const char usage_shell[] =
    "usage: kiln shell [NAME]\n"
    "       kiln shell [VM OPTIONS]\n"
    "\n"
    "Opens an interactive /bin/sh on a pseudo-terminal in sandbox NAME, or in a fresh sandbox\n"
    "booted with the VM options of kiln run and stopped when the shell exits. The terminal is\n"
    "in raw mode while the shell runs (^C and ^D go to the guest) and restored afterwards.\n"
    "Exits with the shell's exit code.\n";

int cmd_shell(int argc, char **argv)
{
    const char *shell_argv[] = {"/bin/sh", "-l", NULL};
    const char *env[2] = {NULL, NULL};
    struct kiln_exec_opts o = {.argv = shell_argv};
    char term[128];
    kiln_sandbox *sb;
    int code = EXEC_EXIT_KILN;

    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_shell, stdout);
            return 0;
        }
    if (!isatty(STDIN_FILENO))
        fprintf(stderr, "kiln shell: stdin is not a terminal; the shell reads it as is\n");
    snprintf(term, sizeof(term), "TERM=%s", getenv("TERM") ? getenv("TERM") : "vt100");
    env[0] = term;
    o.env = env;
    if (argc == 1 && argv[0][0] != '-')
        sb = sandbox_cli_attach("shell", argv[0]);
    else
        sb = sandbox_cli_boot("shell", argc, argv, &code);
    if (!sb)
        return code;
    code = sandbox_cli_run("shell", sb, &o, true, true);
    kiln_sandbox_destroy(sb);
    return code;
}
