/* cmdline.c: editing the kernel command line (virtio-mmio announcements go before init's `--`). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "machine.h"

/* Offset of the first `--` word outside double quotes (as the kernel's parser sees words), or
 * the length of the line when there is none. */
static size_t dashdash(const char *s)
{
    bool quoted = false;

    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '"')
            quoted = !quoted;
        else if (!quoted && s[i] == '-' && s[i + 1] == '-' && (i == 0 || s[i - 1] == ' ') &&
                 (s[i + 2] == ' ' || s[i + 2] == '\0'))
            return i;
    }
    return strlen(s);
}

int machine_cmdline_insert(const char *cmdline, const char *words, char *out, size_t outlen)
{
    size_t at = dashdash(cmdline), head = at;
    int n;

    while (head > 0 && cmdline[head - 1] == ' ')
        head--;
    n = snprintf(out, outlen, "%.*s%s%s%s%s", (int)head, cmdline, head ? " " : "", words,
                 cmdline[at] ? " " : "", cmdline + at);
    return n < 0 || (size_t)n >= outlen ? -E2BIG : 0;
}
