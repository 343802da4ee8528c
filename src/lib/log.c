/* log.c: the process-wide logger; one write() per line so threads never interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "lib.h"

static _Atomic int log_level = LOG_WARN;
static _Atomic int log_fd = STDERR_FILENO;

void log_set_level(enum log_level level)
{
    log_level = level;
}

enum log_level log_get_level(void)
{
    return (enum log_level)log_level;
}

void log_set_fd(int fd)
{
    log_fd = fd;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    char line[1024];
    va_list ap;
    int n;

    if ((int)level > log_level)
        return;
    n = snprintf(line, sizeof(line), "kiln: %s: ", names[level]);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    (void)write_all(log_fd, line, (size_t)n);
}
