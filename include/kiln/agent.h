/* kiln/agent.h: the agent protocol between a host and kiln-agent in the guest, version 1.
 * One self-contained ABI header shared by both sides (the agent is built with musl, the host with
 * glibc): fixed-width little-endian fields, explicit padding, every size asserted, grown only by
 * appending. The protocol is described in docs/agent-protocol.md; this header is its reference.
 *
 * Transport: a byte stream (vsock; a Unix socket or a socket pair in tests). The agent listens on
 * guest vsock port KILN_AGENT_PORT and serves any number of connections; on start it also connects
 * to the host's port KILN_AGENT_READY_PORT, sends one READY frame and closes.
 *
 * Every message is a frame: struct kiln_agent_hdr, then `len` payload bytes. A request carries an
 * id chosen by the host (non-zero, unique among that connection's open requests); every frame the
 * agent sends about that request carries the same id, so several requests and streams share one
 * connection. The first frame on a connection must be HELLO; anything else is answered with
 * ERROR(KILN_AGENT_E_PROTOCOL) and the connection is closed. */
#ifndef KILN_AGENT_H
#define KILN_AGENT_H

#include <stdint.h>

#define KILN_AGENT_VERSION        1
#define KILN_AGENT_PORT           1024          /* guest vsock port the agent listens on */
#define KILN_AGENT_READY_PORT     1025          /* host vsock port the agent announces READY to */
#define KILN_AGENT_MAX_PAYLOAD    (256 * 1024)  /* larger frames are a protocol error */
#define KILN_AGENT_INITIAL_WINDOW (1024 * 1024) /* first credit of each data stream, bytes */
#define KILN_AGENT_MAX_ARGS       4096          /* argv + env entries in one EXEC */
#define KILN_AGENT_MAX_PATH       4096          /* bytes of a path, without the NUL */

struct kiln_agent_hdr {
    uint32_t len;      /* payload bytes after this header, <= KILN_AGENT_MAX_PAYLOAD */
    uint16_t type;     /* enum kiln_agent_type */
    uint16_t flags;    /* KILN_AGENT_F_* */
    uint32_t id;       /* request id; 0 only for HELLO, READY, PING and connection errors */
    uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct kiln_agent_hdr) == 16, "agent frame header is 16 bytes");

/* Frame flags. */
#define KILN_AGENT_F_END 0x0001 /* last frame of a data stream (stdin EOF, end of a file) */

enum kiln_agent_type {
    /* connection */
    KILN_AGENT_HELLO = 1,  /* H->A kiln_agent_hello; answered by HELLO with the chosen version */
    KILN_AGENT_READY = 2,  /* A->H kiln_agent_ready, on the READY connection only */
    KILN_AGENT_PING = 3,   /* H->A any payload (<= 64 bytes); answered by PONG with it */
    KILN_AGENT_PONG = 4,   /* A->H */
    KILN_AGENT_ERROR = 5,  /* A->H kiln_agent_error + message text: the request `id` failed */
    KILN_AGENT_WINDOW = 6, /* both ways kiln_agent_window: more credit for a data stream */
    /* processes */
    KILN_AGENT_EXEC = 16,    /* H->A kiln_agent_exec + strings: start a process */
    KILN_AGENT_STARTED = 17, /* A->H kiln_agent_started: the process runs */
    KILN_AGENT_STDIN = 18,   /* H->A data; F_END closes the process's stdin */
    KILN_AGENT_STDOUT = 19,  /* A->H data; F_END: the process closed stdout */
    KILN_AGENT_STDERR = 20,  /* A->H data; F_END: the process closed stderr */
    KILN_AGENT_SIGNAL = 21,  /* H->A kiln_agent_signal: deliver a signal to the process group */
    KILN_AGENT_RESIZE = 22,  /* H->A kiln_agent_resize: PTY window size */
    KILN_AGENT_EXIT = 23,    /* A->H kiln_agent_exit: the request is over (after STDOUT/ERR END) */
    /* files */
    KILN_AGENT_FILE_WRITE = 32, /* H->A kiln_agent_file_open + path; then FILE_DATA frames */
    KILN_AGENT_FILE_READ = 33,  /* H->A kiln_agent_file_open + path; A->H FILE_DATA frames */
    KILN_AGENT_FILE_DATA = 34,  /* data of a file stream, either way; F_END after the last */
    KILN_AGENT_STAT = 35,       /* H->A path; answered by STAT_RESULT */
    KILN_AGENT_STAT_RESULT = 36,
    KILN_AGENT_LIST = 37,       /* H->A path; answered by LIST_ENTRY frames, the last with F_END */
    KILN_AGENT_LIST_ENTRY = 38, /* A->H kiln_agent_stat + name (an empty payload ends the list) */
    KILN_AGENT_MKDIR = 39,      /* H->A kiln_agent_mkdir + path; answered by OK */
    KILN_AGENT_REMOVE = 40,     /* H->A kiln_agent_remove + path; answered by OK */
    KILN_AGENT_OK = 41,         /* A->H: the request succeeded (FILE_WRITE, MKDIR, REMOVE) */
};

/* Statuses in ERROR frames (and negative in the C API). Stable numbers: documented in
 * docs/agent-protocol.md. */
enum kiln_agent_status {
    KILN_AGENT_E_OK = 0,
    KILN_AGENT_E_PROTOCOL = 1,    /* malformed frame, wrong state, unknown type */
    KILN_AGENT_E_VERSION = 2,     /* no common protocol version */
    KILN_AGENT_E_TOO_LARGE = 3,   /* frame or field beyond its limit */
    KILN_AGENT_E_BUSY_ID = 4,     /* request id already in use on this connection */
    KILN_AGENT_E_NOT_FOUND = 5,   /* ENOENT: the path or the executable does not exist */
    KILN_AGENT_E_PERMISSION = 6,  /* EACCES/EPERM */
    KILN_AGENT_E_EXISTS = 7,      /* EEXIST */
    KILN_AGENT_E_NO_SPACE = 8,    /* ENOSPC/EDQUOT */
    KILN_AGENT_E_IS_DIR = 9,      /* EISDIR: a file operation on a directory */
    KILN_AGENT_E_NOT_DIR = 10,    /* ENOTDIR */
    KILN_AGENT_E_NOT_EMPTY = 11,  /* ENOTEMPTY: REMOVE of a directory without recursive */
    KILN_AGENT_E_BAD_PATH = 12,   /* empty, not absolute, NUL inside, too long */
    KILN_AGENT_E_IO = 13,         /* EIO and anything else from the kernel (message says) */
    KILN_AGENT_E_NO_REQUEST = 14, /* STDIN/SIGNAL/... for an id that is not running */
    KILN_AGENT_E_RESOURCES = 15,  /* too many requests, out of memory, fork failed */
    KILN_AGENT_E_CANCELLED = 16,  /* the host abandoned the stream */
};

/* HELLO, both ways: the host offers [min, max]; the agent answers with the version it chose. */
struct kiln_agent_hello {
    uint32_t version_min;
    uint32_t version_max;
    uint32_t max_payload; /* the sender's frame payload limit */
    uint32_t reserved;
};
_Static_assert(sizeof(struct kiln_agent_hello) == 16, "hello is 16 bytes");

/* READY: where the guest's milliseconds went (CLOCK_BOOTTIME of the guest, microseconds). */
struct kiln_agent_ready {
    uint32_t version; /* KILN_AGENT_VERSION the agent speaks (at most) */
    uint32_t reserved;
    uint64_t kernel_us; /* boot time when the agent started (the kernel's share) */
    uint64_t agent_us;  /* boot time when the agent was ready to serve */
};
_Static_assert(sizeof(struct kiln_agent_ready) == 24, "ready is 24 bytes");

struct kiln_agent_error {
    uint32_t status; /* enum kiln_agent_status */
    uint32_t err;    /* the guest errno behind it, 0 if none */
    /* followed by a UTF-8 message, not NUL-terminated, to the end of the payload */
};
_Static_assert(sizeof(struct kiln_agent_error) == 8, "error is 8 bytes");

/* WINDOW: the receiver of a data stream grants `bytes` more. A sender never has more than the
 * granted credit of a stream in flight: memory on both sides stays bounded. */
struct kiln_agent_window {
    uint32_t stream; /* KILN_AGENT_STDIN/STDOUT/STDERR/FILE_DATA: which stream of request id */
    uint32_t bytes;
};
_Static_assert(sizeof(struct kiln_agent_window) == 8, "window is 8 bytes");

/* EXEC flags. */
#define KILN_AGENT_EXEC_SHELL     0x0001 /* argv[0] is a shell command line run by /bin/sh -c */
#define KILN_AGENT_EXEC_PTY       0x0002 /* run on a pseudo-terminal: one output stream (STDOUT) */
#define KILN_AGENT_EXEC_STDIN     0x0004 /* the host will send STDIN; else stdin is /dev/null */
#define KILN_AGENT_EXEC_ENV_CLEAR 0x0008 /* start from an empty environment, not the agent's */
/* The host does not wait for STARTED: the agent may hold it back and send it just before the
 * request's first other frame (output, END, WINDOW or EXIT). */
#define KILN_AGENT_EXEC_LATE_START 0x0010

struct kiln_agent_exec {
    uint32_t flags;      /* KILN_AGENT_EXEC_* */
    uint32_t timeout_ms; /* 0: none; else SIGKILL to the process group after it, EXIT says so */
    uint32_t uid, gid;   /* credentials to run with (0/0: root) */
    uint16_t argc;       /* >= 1 */
    uint16_t envc;       /* "NAME=value" entries added to (or forming) the environment */
    uint16_t rows, cols; /* PTY size (0: 24x80) */
    /* followed by argc + envc + 1 NUL-terminated strings: argv..., env..., cwd ("" = "/") */
};
_Static_assert(sizeof(struct kiln_agent_exec) == 24, "exec is 24 bytes");

struct kiln_agent_started {
    uint32_t pid; /* in the guest */
    uint32_t reserved;
};
_Static_assert(sizeof(struct kiln_agent_started) == 8, "started is 8 bytes");

struct kiln_agent_signal {
    uint32_t signo;
    uint32_t reserved;
};
_Static_assert(sizeof(struct kiln_agent_signal) == 8, "signal is 8 bytes");

struct kiln_agent_resize {
    uint16_t rows, cols;
    uint32_t reserved;
};
_Static_assert(sizeof(struct kiln_agent_resize) == 8, "resize is 8 bytes");

/* EXIT flags. */
#define KILN_AGENT_EXIT_SIGNALED  0x0001 /* `code` is the signal that ended the process */
#define KILN_AGENT_EXIT_TIMED_OUT 0x0002 /* killed because timeout_ms expired */
#define KILN_AGENT_EXIT_KILLED    0x0004 /* killed on the host's SIGNAL request */

struct kiln_agent_exit {
    int32_t code;   /* exit status, or the signal number with EXIT_SIGNALED */
    uint32_t flags; /* KILN_AGENT_EXIT_* */
    uint64_t runtime_us;
};
_Static_assert(sizeof(struct kiln_agent_exit) == 16, "exit is 16 bytes");

/* FILE_WRITE / FILE_READ flags. */
#define KILN_AGENT_FILE_MKDIRS 0x0001 /* create missing parent directories (mode 0755) */
#define KILN_AGENT_FILE_APPEND 0x0002 /* append instead of truncating */
#define KILN_AGENT_FILE_CHOWN  0x0004 /* set uid/gid */
#define KILN_AGENT_FILE_AS_USER                                                                    \
    0x0008 /* open (and create parents) with uid/gid as the identity                               \
            */

struct kiln_agent_file_open {
    uint32_t flags; /* KILN_AGENT_FILE_* */
    uint32_t mode;  /* permission bits for a new file (FILE_WRITE) */
    uint32_t uid, gid;
    uint64_t offset; /* FILE_READ: start here */
    uint64_t length; /* FILE_READ: at most this many bytes (0: to the end) */
    /* followed by the path, NUL-terminated */
};
_Static_assert(sizeof(struct kiln_agent_file_open) == 32, "file_open is 32 bytes");

/* STAT_RESULT, and the head of each LIST_ENTRY (then the entry's name, NUL-terminated). */
struct kiln_agent_stat {
    uint32_t mode; /* st_mode: type and permission bits */
    uint32_t uid, gid;
    uint32_t nlink;
    uint64_t size;
    int64_t mtime_ns;
};
_Static_assert(sizeof(struct kiln_agent_stat) == 32, "stat is 32 bytes");

struct kiln_agent_mkdir {
    uint32_t mode;
    uint32_t parents; /* 1: like mkdir -p (existing directories are fine) */
};
_Static_assert(sizeof(struct kiln_agent_mkdir) == 8, "mkdir is 8 bytes");

struct kiln_agent_remove {
    uint32_t recursive; /* 1: like rm -r */
    uint32_t reserved;
};
_Static_assert(sizeof(struct kiln_agent_remove) == 8, "remove is 8 bytes");

#endif
