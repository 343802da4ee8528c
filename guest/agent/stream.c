/* stream.c: a running EXEC's data: stdout/stderr to the host within its WINDOW credit and the
 * connection's room, stdin from the host (the agent grants credit once bytes reach the pipe),
 * signals, PTY resize, the deadline and the final EXIT (docs/agent-protocol.md, "EXEC"). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"

static const uint16_t stream_type[2] = {KILN_AGENT_STDOUT, KILN_AGENT_STDERR};

void exec_announce(struct req *r)
{
    if (!r->start_held)
        return;
    struct kiln_agent_started started = {.pid = r->start_held};
    r->start_held = 0;
    conn_send(r->conn, KILN_AGENT_STARTED, 0, r->id, &started, sizeof(started), NULL, 0);
}

/* A stream's end is usually the process exiting: its END waits for the reap (at most
 * AGENT_END_HOLD_NS), so END, END and EXIT reach the host in one write. The exiting process
 * closes stdout and stderr one at a time and each close wakes the agent; sending each END at
 * once cost a vsock notification apiece (about 1 ms of a `true` under nested virtualization). */
static void end_stream(struct req *r, int i)
{
    r->out_end[i] = true;
    r->end_held[i] = true;
    if (!r->end_hold_ns)
        r->end_hold_ns = agent_now_ns() + AGENT_END_HOLD_NS;
    loop_close(&r->out[i]);
}

static void send_ends(struct req *r)
{
    for (int i = 0; i < 2; i++) {
        if (!r->end_held[i])
            continue;
        exec_announce(r);
        conn_send(r->conn, stream_type[i], KILN_AGENT_F_END, r->id, NULL, 0, NULL, 0);
        r->end_held[i] = false;
    }
}

static void grant_stdin(struct req *r, uint64_t bytes)
{
    exec_announce(r);
    req_grant(r, KILN_AGENT_STDIN, bytes);
}

/* One read of stream i into a frame; returns true if it moved data or ended the stream. */
static bool read_stream(struct req *r, int i)
{
    if (r->out_end[i] || r->out[i].fd < 0)
        return false;
    size_t n = conn_room(r->conn);
    if (n > r->out_credit[i])
        n = (size_t)r->out_credit[i];
    if (n == 0)
        return false;
    /* A held STARTED goes out before data, but not before a bare EOF: that END is held too */
    int avail = 1;
    if (r->start_held && (ioctl(r->out[i].fd, FIONREAD, &avail) < 0 || avail > 0))
        exec_announce(r);
    uint8_t *buf = conn_frame_begin(r->conn, n);
    if (!buf)
        return false;
    ssize_t k = read(r->out[i].fd, buf, n);
    if (k > 0) {
        conn_frame_commit(r->conn, stream_type[i], 0, r->id, (size_t)k);
        r->out_credit[i] -= (uint64_t)k;
        return true;
    }
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
        r->out_ready[i] = false;
        /* Once the process is gone, an empty pipe is the end even if a background child still
         * holds it open. */
        if (!r->reaped)
            return false;
    }
    end_stream(r, i); /* EOF, or EIO: the PTY's last slave closed */
    return true;
}

static void send_exit(struct req *r)
{
    struct kiln_agent_exit x = {.runtime_us = (agent_now_ns() - r->start_ns) / 1000};
    if (WIFSIGNALED(r->status)) {
        x.code = WTERMSIG(r->status);
        x.flags = KILN_AGENT_EXIT_SIGNALED;
        if (r->timed_out)
            x.flags |= KILN_AGENT_EXIT_TIMED_OUT;
        else if (r->host_signaled)
            x.flags |= KILN_AGENT_EXIT_KILLED;
    } else {
        x.code = WEXITSTATUS(r->status);
    }
    loop_close(&r->in);
    send_ends(r);
    conn_send(r->conn, KILN_AGENT_EXIT, 0, r->id, &x, sizeof(x), NULL, 0);
    r->done = true;
}

void exec_pump(struct req *r)
{
    for (int i = 0; i < 2; i++) {
        if (r->out[i].fd < 0)
            continue;
        /* Reading is driven by readability, except after the exit, when an empty pipe must be
         * noticed (read_stream then ends it). */
        bool can = r->out_credit[i] > 0 && conn_room(r->conn) > 0;
        if (can && r->reaped)
            for (int k = 0; k < 4 && read_stream(r, i); k++) {
            }
        else if (can && r->out_ready[i])
            read_stream(r, i);
        if (r->out[i].fd >= 0)
            loop_set(&r->out[i], r->out_credit[i] > 0 && conn_room(r->conn) > 0 ? EPOLLIN : 0);
    }
    /* Both outputs at their end usually means the process is gone: collecting it here rather
     * than at its SIGCHLD puts the END frames and EXIT into one write to the host. */
    if (!r->reaped && r->pid > 0 && r->out_end[0] && r->out_end[1]) {
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid)
            exec_reaped(r, status);
    }
    if ((r->end_held[0] || r->end_held[1]) && (r->reaped || agent_now_ns() >= r->end_hold_ns))
        send_ends(r);
    if (r->reaped && r->out_end[0] && r->out_end[1] && !r->done)
        send_exit(r);
}

void exec_window(struct req *r, int stream, uint32_t bytes)
{
    if (r->pty && stream == 1)
        return;
    r->out_credit[stream] += bytes;
}

/* Writes what stdin holds; grants the host credit for what went into the pipe. */
static void drain_stdin(struct req *r)
{
    size_t done = 0;
    while (r->in.fd >= 0 && done < r->in_len) {
        ssize_t n = write(r->in.fd, r->in_buf + done, r->in_len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else { /* EPIPE: the process closed its stdin; what is left is dropped */
            loop_close(&r->in);
            done = r->in_len;
        }
    }
    if (done) {
        memmove(r->in_buf, r->in_buf + done, r->in_len - done);
        r->in_len -= done;
        grant_stdin(r, done);
    }
    if (r->in.fd >= 0 && r->in_len == 0 && r->in_eof && !r->pty)
        loop_close(&r->in);
    if (r->in.fd >= 0)
        loop_set(&r->in, r->in_len ? EPOLLOUT : 0);
}

void exec_on_stdin_room(struct watch *w, uint32_t events)
{
    (void)events;
    struct req *r = w->ctx;
    if (!r->done)
        drain_stdin(r);
}

int exec_stdin(struct req *r, uint16_t flags, const uint8_t *p, uint32_t len)
{
    if (!r->want_stdin || (r->in_eof && !r->pty))
        return KILN_AGENT_E_PROTOCOL; /* no stdin asked for, or data after its END */
    if (len > r->in_credit)
        return KILN_AGENT_E_PROTOCOL;
    r->in_credit -= len;
    if (flags & KILN_AGENT_F_END)
        r->in_eof = true;
    if (r->in.fd < 0) { /* stdin already closed: drop, but keep the host's credit flowing */
        grant_stdin(r, len);
        return 0;
    }
    if (len) {
        uint8_t *b = realloc(r->in_buf, r->in_len + len);
        if (!b) {
            grant_stdin(r, len);
            return 0;
        }
        r->in_buf = b;
        memcpy(r->in_buf + r->in_len, p, len);
        r->in_len += len;
    }
    drain_stdin(r);
    return 0;
}

void exec_signal(struct req *r, int signo)
{
    if (r->pid <= 0 || r->reaped)
        return;
    r->host_signaled = true;
    if (kill(-r->pid, signo) < 0)
        kill(r->pid, signo);
}

void exec_resize(struct req *r, uint16_t rows, uint16_t cols)
{
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    if (r->pty && r->out[0].fd >= 0)
        ioctl(r->out[0].fd, TIOCSWINSZ, &ws);
    else if (r->pty && r->in.fd >= 0)
        ioctl(r->in.fd, TIOCSWINSZ, &ws);
}

void exec_reaped(struct req *r, int status)
{
    r->reaped = true;
    r->status = status;
    r->deadline_ns = 0;
}

void exec_check_deadline(struct req *r, uint64_t now, uint64_t *next)
{
    if (r->type != KILN_AGENT_EXEC || r->reaped)
        return;
    if ((r->end_held[0] || r->end_held[1]) && (!*next || r->end_hold_ns < *next))
        *next = r->end_hold_ns; /* the loop wakes to send them */
    if (!r->deadline_ns)
        return;
    if (now >= r->deadline_ns) {
        r->timed_out = true;
        r->deadline_ns = 0;
        kill(-r->pid, SIGKILL);
        kill(r->pid, SIGKILL);
        return;
    }
    if (!*next || r->deadline_ns < *next)
        *next = r->deadline_ns;
}
