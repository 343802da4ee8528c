/* console.c: the guest's serial console on the user's terminal or a file, and the panic watch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <termios.h>
#include <unistd.h>

#include "devices/legacy/legacy.h"
#include "lib/lib.h"
#include "machine.h"

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A, as in QEMU */

/* Linux prints this (kernel/panic.c) before it resets a panicked machine. */
static const char panic_banner[] = "Kernel panic - not syncing";

struct console {
    struct vm *vm;
    struct uart *uart;
    struct evloop *loop;
    int out_fd;
    int in_fd;
    bool in_watched;
    bool in_eof;
    bool is_tty;
    bool escape_pending;
    struct termios saved;
    size_t banner_matched; /* touched only by the vCPU thread that writes the UART */
    size_t pending_len;    /* input read but not yet accepted by the UART */
    uint8_t pending[256];
};

struct console *console_create(struct vm *vm, int out_fd, int in_fd)
{
    struct console *con = calloc(1, sizeof(*con));

    if (!con)
        return NULL;
    con->vm = vm;
    con->out_fd = out_fd;
    con->in_fd = in_fd;
    if (in_fd >= 0 && isatty(in_fd) && tcgetattr(in_fd, &con->saved) == 0) {
        struct termios raw = con->saved;
        cfmakeraw(&raw);
        raw.c_oflag |= OPOST | ONLCR; /* keep our own log lines readable */
        if (tcsetattr(in_fd, TCSANOW, &raw) == 0)
            con->is_tty = true;
    }
    return con;
}

void console_output(void *opaque, const uint8_t *buf, size_t len)
{
    struct console *con = opaque;

    for (size_t i = 0; i < len; i++) {
        if (buf[i] == (uint8_t)panic_banner[con->banner_matched])
            con->banner_matched++;
        else
            con->banner_matched = buf[i] == (uint8_t)panic_banner[0];
        if (con->banner_matched == sizeof(panic_banner) - 1) {
            con->vm->panic_seen = true;
            con->banner_matched = 0;
        }
    }
    /* A reader that went away (EPIPE) must not stop the guest; its output is simply lost. */
    (void)write_all(con->out_fd, buf, len);
}

/* Applies the Ctrl-A escapes in place; returns the number of bytes left for the guest. */
static size_t filter_escapes(struct console *con, uint8_t *buf, size_t len)
{
    size_t out = 0;

    for (size_t i = 0; i < len; i++) {
        if (con->escape_pending) {
            con->escape_pending = false;
            if (buf[i] == 'x' || buf[i] == 'X') {
                vm_request_exit(con->vm, VM_EXIT_SIGINT);
                return out;
            }
            if (buf[i] != CONSOLE_ESCAPE)
                continue; /* unknown escape: swallow it */
        } else if (buf[i] == CONSOLE_ESCAPE) {
            con->escape_pending = true;
            continue;
        }
        buf[out++] = buf[i];
    }
    return out;
}

static void flush_pending(struct console *con)
{
    size_t took = uart_receive(con->uart, con->pending, con->pending_len);

    memmove(con->pending, con->pending + took, con->pending_len - took);
    con->pending_len -= took;
}

static void on_input(void *opaque, uint32_t events)
{
    struct console *con = opaque;
    ssize_t n;

    (void)events;
    n = read(con->in_fd, con->pending, sizeof(con->pending));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        /* EOF or error: the guest simply gets no more input. */
        evloop_del(con->loop, con->in_fd);
        con->in_watched = false;
        con->in_eof = true;
        return;
    }
    con->pending_len = (size_t)n;
    if (con->is_tty)
        con->pending_len = filter_escapes(con, con->pending, con->pending_len);
    flush_pending(con);
    if (con->pending_len) {
        /* The FIFO is full: stop reading until console_tick() has drained what we hold. */
        evloop_del(con->loop, con->in_fd);
        con->in_watched = false;
    }
}

int console_attach(struct console *con, struct uart *uart, struct evloop *loop)
{
    int ret;

    con->uart = uart;
    con->loop = loop;
    if (con->in_fd < 0)
        return 0;
    ret = evloop_add(loop, con->in_fd, EPOLLIN, on_input, con);
    if (ret == -EPERM) {
        /* A regular file or /dev/null cannot be polled: it has no interactive input anyway. */
        return 0;
    }
    con->in_watched = ret == 0;
    return ret;
}

void console_tick(struct console *con)
{
    if (!con->uart || con->in_fd < 0 || con->in_eof)
        return;
    if (con->pending_len)
        flush_pending(con);
    if (!con->pending_len && !con->in_watched)
        con->in_watched = evloop_add(con->loop, con->in_fd, EPOLLIN, on_input, con) == 0;
}

void console_destroy(struct console *con)
{
    if (!con)
        return;
    if (con->in_watched)
        evloop_del(con->loop, con->in_fd);
    if (con->is_tty)
        tcsetattr(con->in_fd, TCSANOW, &con->saved);
    free(con);
}
