/* sandbox.h: libkiln's sandbox internals: the agent connection with its request multiplexing and
 * flow control (conn.c), dialing the guest through the hybrid vsock socket (dial.c), spawning a
 * VMM process and waiting for READY (spawn.c), and the handle exec.c and files.c share. The wire
 * format is include/kiln/agent.h, coded by frame.h; docs/sandbox.md describes the whole. */
#ifndef KILN_SANDBOX_H
#define KILN_SANDBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"
#include "kiln.h"
#include "machine/machine.h"

#define AGENT_ERR_MAX 512
#define AGENT_STREAMS 4 /* STDIN, STDOUT, STDERR, FILE_DATA */
#define AGENT_CREDIT_BATCH                                                                         \
    (KILN_AGENT_INITIAL_WINDOW / 4) /* WINDOW sent once this much is consumed */
/* Bytes of frames without credit (EXIT, LIST_ENTRY, ...) one request may have queued: an agent
 * flooding a request the host does not drain fails the connection instead of growing memory. */
#define AGENT_QUEUE_MAX        (16u * 1024 * 1024)
#define AGENT_HELLO_TIMEOUT_MS 10000

/* One frame queued for the request it names. */
struct agent_msg {
    struct agent_msg *next;
    uint16_t type, flags;
    uint32_t len;
    uint8_t data[];
};

struct agent_conn;
struct agent_req;

/* CLOCK_MONOTONIC deadline timeout_ms from now; 0 (no deadline) when timeout_ms is 0. */
uint64_t agent_deadline(unsigned timeout_ms);
/* Waits until fd is readable (or has hung up) or deadline_ns passes. Returns 0 (also on EINTR:
 * the caller retries), -ETIMEDOUT, or -errno from poll. */
int agent_wait_readable(int fd, uint64_t deadline_ns);

/* ---- connection (conn.c) ---------------------------------------------------------------------
 * Takes ownership of fd (a connected stream), does the HELLO exchange (within timeout_ms) and
 * starts the reader thread that routes every frame to the request it names. Thread-safe: any
 * number of threads may open and drive requests at once. Returns 0 or -errno with err set. */
int agent_conn_open(int fd, unsigned timeout_ms, struct agent_conn **out, char *err, size_t errlen);
/* Fails every open request with -ECONNABORTED, stops the reader, closes the socket. */
void agent_conn_close(struct agent_conn *c);
/* 0 while the connection works, else its -errno with the reason in err. */
int agent_conn_status(struct agent_conn *c, char *err, size_t errlen);
/* Ends the connection: every waiter returns err with this message (a protocol violation). */
void agent_conn_fail(struct agent_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* PING with `len` bytes (<= AGENT_PING_MAX), waits for the matching PONG. */
int agent_conn_ping(struct agent_conn *c, const void *data, size_t len, unsigned timeout_ms,
                    char *err, size_t errlen);
/* The agent's frame payload limit from HELLO (<= KILN_AGENT_MAX_PAYLOAD). */
uint32_t agent_conn_max_payload(const struct agent_conn *c);

/* ---- requests (conn.c) ------------------------------------------------------------------------
 * A request owns a fresh id until closed; frames for it queue in arrival order. */
int agent_req_open(struct agent_conn *c, struct agent_req **out);
/* Forgets the request: frames still arriving for its id are dropped. */
void agent_req_close(struct agent_req *r);
/* Makes agent_req_write() calls, waiting or future, return -EPIPE (the process has ended). */
void agent_req_cancel(struct agent_req *r);
uint32_t agent_req_id(const struct agent_req *r);
struct agent_conn *agent_req_conn(const struct agent_req *r);
/* Sends one frame for this request: payload a then b (either may be empty). */
int agent_req_send(struct agent_req *r, uint16_t type, uint16_t flags, const void *a, size_t alen,
                   const void *b, size_t blen);
/* Sends data on an outbound stream (STDIN or FILE_DATA), cut into frames, each waiting for the
 * agent's credit; `end` sets F_END on the last one (an empty END frame when len is 0). Returns 0,
 * -ETIMEDOUT at deadline_ns (0: none), -EPIPE once the request was answered (ERROR, EXIT, OK:
 * read it with agent_req_next) or cancelled, or the connection's error. */
int agent_req_write(struct agent_req *r, uint16_t type, const void *buf, size_t len, bool end,
                    uint64_t deadline_ns);
/* Waits for the request's next frame (until deadline_ns; 0: none). Returns 0 with *out, which
 * the caller hands back with agent_req_release(), -ETIMEDOUT, or the connection's -errno with
 * the reason in err. Frames that arrived before a failure are still delivered. */
int agent_req_next(struct agent_req *r, uint64_t deadline_ns, struct agent_msg **out, char *err,
                   size_t errlen);
/* Frees a frame from agent_req_next(); for a data frame, its bytes go back to the agent as
 * WINDOW credit (in batches), which is what keeps a fast producer from outrunning the consumer. */
void agent_req_release(struct agent_req *r, struct agent_msg *m);
/* An ERROR frame (already validated by the reader) as -errno, its message in err. */
int agent_msg_error(const struct agent_msg *m, const char *what, char *err, size_t errlen);

/* ---- dialing (dial.c) ------------------------------------------------------------------------
 * Connects to guest port `port` through the VM's hybrid vsock socket (docs/vsock.md): connect,
 * "CONNECT <port>\n", "OK <n>\n". Returns a connected fd or -errno with err set. */
int agent_dial(const char *vsock_path, uint32_t port, unsigned timeout_ms, char *err,
               size_t errlen);
/* The vsock socket of sandbox `name`: vsock.sock in its runtime directory. */
int sandbox_vsock_path(const char *name, char *out, size_t outlen);

/* ---- VMM processes (spawn.c) ----------------------------------------------------------------
 * The kiln binary to spawn: `configured` if set, else $KILN_BIN, else "kiln" beside
 * /proc/self/exe. Returns 0 or -ENOENT with err set. */
int sandbox_find_kiln(const char *configured, char *out, size_t outlen, char *err, size_t errlen);
/* posix_spawn()s `bin` with argv (argv[0] included; "--ready-fd 3" is appended by the caller) in
 * a new session, its stdout/stderr kept in memory for error reports, and waits up to timeout_ms
 * for the VMM's READY line on fd 3. Returns 0 with *pid and *ready, or -errno with err naming
 * what went wrong (the VMM's own messages included); a VMM that did not become ready is gone. */
int sandbox_spawn(const char *bin, char *const argv[], unsigned timeout_ms, pid_t *pid,
                  struct kiln_ready_info *ready, char *err, size_t errlen);
/* Parses the VMM's "READY <kernel_us> <agent_us> <vmm_us>\n" line. Returns 0 or -EPROTO. */
int sandbox_parse_ready(const char *line, struct kiln_ready_info *ready);
/* Waits up to timeout_ms for child `pid` to exit; then SIGKILL. Returns its exit code, or -1. */
int sandbox_reap(pid_t pid, unsigned timeout_ms);

/* ---- the handle (sandbox.c) ------------------------------------------------------------------ */
struct kiln_sandbox {
    struct agent_conn *conn;
    char name[RUNDIR_NAME_MAX + 1];
    pid_t pid;  /* the VMM (0: unknown) */
    bool owned; /* created by this handle: destroy stops the VM */
    struct kiln_ready_info ready;
    pthread_mutex_t err_lock;
    char err[AGENT_ERR_MAX];
};

/* Records `msg` as the handle's last error and returns ret. */
int sandbox_error(kiln_sandbox *sb, int ret, const char *msg);
int sandbox_errorf(kiln_sandbox *sb, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
