/* agent.h: kiln-agent's internal API: the event loop, connections and their requests, exec and
 * file operations. The protocol is docs/agent-protocol.md; the codec is src/sandbox/frame.h. */
#ifndef KILN_AGENT_INTERNAL_H
#define KILN_AGENT_INTERNAL_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/frame.h"

#define AGENT_OUT_HIGH     (1024 * 1024)     /* producers pause while this much output is unsent */
#define AGENT_MAX_REQUESTS 1024              /* open requests per connection */
#define AGENT_READ_BUDGET  (4 * 1024 * 1024) /* bytes read per connection per loop turn */
#define AGENT_END_HOLD_NS  (10 * 1000000ull) /* how long an END may wait for its EXIT (stream.c) */

/* Logs to stderr (the console when PID 1) with a "kiln-agent: " prefix. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t agent_now_ns(void); /* CLOCK_MONOTONIC */

/* ---- event loop (loop.c): level-triggered epoll, single thread ------------------------------ */
struct watch {
    int fd;
    uint32_t events; /* current interest (EPOLLIN/EPOLLOUT) */
    bool added;
    void (*fn)(struct watch *w, uint32_t events);
    void *ctx;
    int tag;
};
int loop_init(void);
/* Starts watching w->fd (fd must be set) with `events`; 0 or -errno. */
int loop_add(struct watch *w, uint32_t events);
/* Changes the interest; a no-op when unchanged. */
void loop_set(struct watch *w, uint32_t events);
/* Stops watching and closes w->fd (then -1). Safe on a watch never added or already closed. */
void loop_close(struct watch *w);
/* Runs forever: waits for events or the nearest exec deadline, then pumps every connection.
 * Returns only when `agent_quit` is set. */
void loop_run(void);
extern bool agent_quit;

/* ---- connections and requests (conn.c) ----------------------------------------------------- */
struct conn;

struct req {
    struct req *next;
    struct conn *conn;
    uint32_t id;
    uint16_t type;
    bool done;          /* its final frame is queued: freed by the next pump */
    uint64_t in_credit; /* STDIN / FILE_DATA bytes the host may still send */
    /* EXEC */
    pid_t pid;
    bool pty, reaped, host_signaled, timed_out, in_eof, want_stdin;
    int status;
    uint64_t start_ns, deadline_ns; /* deadline 0: none */
    struct watch out[2];            /* stdout, stderr (PTY: out[0] is the master) */
    uint64_t out_credit[2];
    bool out_end[2];
    bool out_ready[2];    /* epoll said readable and no read has come back empty since */
    bool end_held[2];     /* an ended stream's END, waiting to go out with the EXIT */
    uint64_t end_hold_ns; /* ... but no later than this */
    uint32_t start_held;  /* LATE_START: the pid whose STARTED goes out with the next frame */
    struct watch in;      /* stdin write end (PTY: a dup of the master) */
    uint8_t *in_buf;
    size_t in_len;
    /* files */
    int fd;
    uint64_t pos, remaining;
    DIR *dir;
};

/* Wraps an accepted or inherited stream socket in a connection on the loop. `exit_on_close`
 * ends the agent when it closes (--serve-fd). 0 or -errno. */
int conn_new(int fd, bool exit_on_close);
/* Queues one frame to the connection (payload a then b). 0, or -ENOMEM (the connection is then
 * marked broken and closes at the next pump). */
int conn_send(struct conn *c, uint16_t type, uint16_t flags, uint32_t id, const void *a,
              size_t alen, const void *b, size_t blen);
/* Zero-copy data frames: frame_begin returns room for a payload of up to `max` bytes (NULL when
 * out of memory), frame_commit queues it with its real length. */
uint8_t *conn_frame_begin(struct conn *c, size_t max);
void conn_frame_commit(struct conn *c, uint16_t type, uint16_t flags, uint32_t id, size_t len);
/* Payload bytes a producer may queue now: min(room below AGENT_OUT_HIGH, the peer's max). */
size_t conn_room(const struct conn *c);
/* A protocol error: queues ERROR(id, status, msg) and closes the connection once it is sent. */
void conn_fatal(struct conn *c, uint32_t id, uint32_t status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Ends a request with ERROR(status, err, message). */
void req_fail(struct req *r, uint32_t status, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Ends a request with ERROR from an errno (status by agent_status_from_errno), message
 * "<what>: <strerror>". */
void req_fail_errno(struct req *r, int err, const char *what);
/* Grants the host `bytes` more credit of `stream` (sends WINDOW). */
void req_grant(struct req *r, uint32_t stream, uint64_t bytes);

/* Calls fn for every open request of every connection (the reaper and deadlines use it). */
void conns_each_req(void (*fn)(struct req *r, void *arg), void *arg);
/* Pumps every connection: runs producers, sends EXITs, flushes output, closes finished
 * connections, frees finished requests. Returns true when a producer could do more at once. */
bool conns_pump(void);

/* ---- exec (exec.c: start and child; stream.c: stdin, output, exit) -------------------------- */
/* Notes the signals the agent ignores (SIGPIPE, and any it inherited ignored), which a child
 * must set back to default: an ignored disposition survives execve. Once, at start-up. */
void exec_note_ignored_signals(void);
/* Each handler gets a new request (id and type set). Returns 0, or a positive status for a
 * protocol error the connection dies of. */
int exec_start(struct req *r, const uint8_t *p, uint32_t len);
int exec_stdin(struct req *r, uint16_t flags, const uint8_t *p, uint32_t len);
void exec_signal(struct req *r, int signo);
void exec_resize(struct req *r, uint16_t rows, uint16_t cols);
void exec_window(struct req *r, int stream, uint32_t bytes);
/* Sends a held STARTED (LATE_START); every other frame of an EXEC goes after this. */
void exec_announce(struct req *r);
/* The stdin watch's callback: the pipe has room again. */
void exec_on_stdin_room(struct watch *w, uint32_t events);
/* Producer step: reads output within credit and room, sends EXIT when everything is over. */
void exec_pump(struct req *r);
/* The process ended (from the reaper). */
void exec_reaped(struct req *r, int status);
/* Releases the request's descriptors; kills the process group if it still runs. */
void exec_release(struct req *r);
/* SIGKILLs the process group at its deadline; returns the nearest deadline still pending. */
void exec_check_deadline(struct req *r, uint64_t now, uint64_t *next);

/* ---- files (files.c, fileio.c) -------------------------------------------------------------- */
int file_write_start(struct req *r, const uint8_t *p, uint32_t len);
int file_data(struct req *r, uint16_t flags, const uint8_t *p, uint32_t len);
int file_read_start(struct req *r, const uint8_t *p, uint32_t len);
int file_stat(struct req *r, const uint8_t *p, uint32_t len);
int file_list(struct req *r, const uint8_t *p, uint32_t len);
int file_mkdir(struct req *r, const uint8_t *p, uint32_t len);
int file_remove(struct req *r, const uint8_t *p, uint32_t len);
/* Producer step of FILE_READ and LIST. */
void file_pump(struct req *r);
void file_release(struct req *r);
void file_list_pump(struct req *r); /* fsops.c */
/* mkdir -p: creates `path` and its missing parents with `mode`; an existing directory is fine.
 * 0 or -errno. */
int file_mkdir_p(const char *path, mode_t mode);

/* ---- the reaper (main.c) -------------------------------------------------------------------- */
/* Reaps every exited child and hands each to its exec request (unknown pids are orphans). */
void agent_reap(void);

#endif
