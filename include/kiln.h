/* kiln.h: libkiln, the C API applications use to drive kiln microVMs. Functions return 0 or a
 * negative errno; handles are opaque. */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the control socket (docs/control-protocol.md) ----------------------------------------
 * One connection to a running VM's control socket. A handle is used by one thread at a time;
 * each call sends one request and waits (up to KILN_CTL_TIMEOUT_S) for its answer. Errors the VM
 * reports come back as their negative errno (e.g. -EACCES: not root nor the VM's owner). */
#define KILN_CTL_TIMEOUT_S 30

typedef struct kiln_ctl kiln_ctl;

enum kiln_vm_state {
    KILN_VM_RUNNING = 1,
    KILN_VM_PAUSED = 2,
    KILN_VM_EXITING = 3,
};

/* `target` is a VM name (its socket is control.sock in the VM's runtime directory:
 * $XDG_RUNTIME_DIR/kiln/NAME or /run/kiln/NAME) or, if it contains a '/', a socket path.
 * Returns 0 with *out set, -EINVAL for an invalid name, or the connect errno (-ENOENT: no such
 * VM, -ECONNREFUSED: the VM is gone). */
int kiln_ctl_open(const char *target, kiln_ctl **out);
/* Wraps an already connected SOCK_SEQPACKET socket (the handle owns it). */
int kiln_ctl_from_fd(int sock, kiln_ctl **out);
void kiln_ctl_close(kiln_ctl *ctl);

/* Stops the VM; its VMM then exits with code 0. */
int kiln_ctl_exit(kiln_ctl *ctl);
/* Hold / release every vCPU; answered once done. Both are idempotent. */
int kiln_ctl_pause(kiln_ctl *ctl);
int kiln_ctl_resume(kiln_ctl *ctl);
int kiln_ctl_get_state(kiln_ctl *ctl, enum kiln_vm_state *state);
const char *kiln_ctl_state_name(enum kiln_vm_state state);
/* Grows (pages > 0) or shrinks the balloon by `pages` 4 KiB pages; *target (may be NULL)
 * receives the new target. -ENODEV: the VM has no balloon. */
int kiln_ctl_balloon_adjust(kiln_ctl *ctl, int32_t pages, uint64_t *target);
/* Maps `size` bytes of fd (a memfd or file; read-only if fd is) into guest-physical memory above
 * RAM. *pfn is the guest page frame number, *slot the handle for unregistering. The VM keeps its
 * own mapping: the caller may close fd. */
int kiln_ctl_register_memory(kiln_ctl *ctl, int fd, uint64_t size, uint64_t *pfn, uint32_t *slot);
int kiln_ctl_unregister_memory(kiln_ctl *ctl, uint32_t slot);
/* KVM signals eventfd `fd` when the guest writes `datamatch` (len 1, 2, 4 or 8 bytes) to MMIO
 * address addr. */
int kiln_ctl_register_ioevent(kiln_ctl *ctl, int fd, uint64_t addr, uint32_t len,
                              uint32_t datamatch);
/* Each write to eventfd `fd` raises interrupt line `gsi`. */
int kiln_ctl_register_irqfd(kiln_ctl *ctl, int fd, uint32_t gsi);
/* The VM's counters as a NUL-terminated JSON document in *json (free() it). */
int kiln_ctl_get_metrics(kiln_ctl *ctl, char **json, size_t *len);

/* ---- sandboxes (docs/sandbox.md) -------------------------------------------------------------
 * A sandbox is a microVM running kiln-agent; libkiln talks to the agent over vsock
 * (docs/agent-protocol.md). Handles are thread-safe: several threads may run commands and move
 * files through one sandbox at once. Calls return 0 or a negative errno; the agent's statuses
 * map to errnos (-ENOENT not found, -EACCES permission, -EEXIST, -ENOSPC, -EISDIR, -ENOTDIR,
 * -ENOTEMPTY, -EINVAL bad path, -EIO, -EPROTO the agent broke the protocol, -ETIMEDOUT ...), and
 * kiln_sandbox_last_error() says more. libkiln keeps no global state. */

typedef struct kiln_sandbox kiln_sandbox;
typedef struct kiln_process kiln_process; /* a running command (kiln_exec_start) */

#define KILN_SANDBOX_READY_TIMEOUT_MS 60000

/* Where a sandbox's start-up time went (microseconds). */
struct kiln_ready_info {
    uint64_t kernel_us; /* guest boot time when the agent started: the kernel's share */
    uint64_t agent_us;  /* guest boot time when the agent was ready */
    uint64_t vmm_us;    /* VMM process start -> READY received, as the VMM saw it */
    uint64_t total_us;  /* kiln_sandbox_create() -> READY, as the caller saw it (0: attached) */
};

struct kiln_sandbox_config {
    const char *name;     /* NULL: "sbx-<pid>-<n>"; names the runtime directory */
    const char *kernel;   /* NULL: the default guest image */
    const char *initrd;   /* NULL: the default image's initramfs */
    unsigned cpus;        /* 0: 1 */
    uint64_t mem_bytes;   /* 0: 256 MiB */
    const char *append;   /* more kernel command-line words (before the agent's) or NULL */
    const char *console;  /* guest console log; NULL: console.log in the runtime directory */
    const char *kiln_bin; /* the kiln binary; NULL: $KILN_BIN, else kiln beside this program */
    const char *const *vmm_args; /* more `kiln run` options, NULL-terminated, or NULL */
    unsigned ready_timeout_ms;   /* 0: KILN_SANDBOX_READY_TIMEOUT_MS */
};

/* Boots a VM (a child process running `kiln run`) and waits until its agent is READY. err
 * (errlen bytes, may be NULL) receives the reason for a failure, the VMM's messages included. */
int kiln_sandbox_create(const struct kiln_sandbox_config *cfg, kiln_sandbox **out, char *err,
                        size_t errlen);
/* Connects to a running sandbox by name (`kiln run --name NAME --detach`). */
int kiln_sandbox_attach(const char *name, kiln_sandbox **out, char *err, size_t errlen);
/* Wraps a stream already connected to an agent (a socket pair in tests); takes ownership. */
int kiln_sandbox_from_fd(int fd, kiln_sandbox **out, char *err, size_t errlen);
/* Closes the connection; a sandbox this handle created is stopped (its VMM reaped). */
void kiln_sandbox_destroy(kiln_sandbox *sb);
/* Stops the VM (created or attached) through its control socket, then destroys the handle. */
int kiln_sandbox_stop(kiln_sandbox *sb);
const char *kiln_sandbox_name(const kiln_sandbox *sb);
int kiln_sandbox_vmm_pid(const kiln_sandbox *sb);
void kiln_sandbox_ready_info(const kiln_sandbox *sb, struct kiln_ready_info *info);
/* A round trip to the agent. */
int kiln_sandbox_ping(kiln_sandbox *sb, unsigned timeout_ms);
/* Copies the message of the handle's last failed call into buf (NUL-terminated); returns buf.
 * With several threads on one handle it is the most recent failure's. */
const char *kiln_sandbox_last_error(kiln_sandbox *sb, char *buf, size_t len);
/* A short text for a status returned by this API (like strerror). */
const char *kiln_strerror(int status);

/* ---- running commands ---- */
struct kiln_exec_opts {
    const char *const *argv; /* NULL-terminated; argv[0] searched in PATH */
    const char *shell;       /* instead of argv: a command line for /bin/sh -c */
    const char *const *env;  /* "NAME=value", NULL-terminated, added to the agent's (or NULL) */
    bool env_clear;          /* start from an empty environment */
    const char *cwd;         /* NULL: "/" */
    uint32_t uid, gid;       /* 0: root */
    unsigned timeout_ms;     /* 0: none; else the guest kills the process group after it */
    bool pty;                /* a pseudo-terminal: stdout and stderr arrive as one stream */
    uint16_t rows, cols;     /* PTY size (0: 24x80) */
    bool stdin_stream;       /* kiln_exec_start: stdin comes from kiln_exec_write_stdin() */
    const void *stdin_data;  /* kiln_exec: bytes fed to stdin (then EOF); NULL: /dev/null */
    size_t stdin_len;
    size_t max_output; /* kiln_exec: bytes kept per stream, 0: 64 MiB; more is dropped */
    /* kiln_exec_start returns once the request is sent, without waiting for the guest to start
     * the process: a start failure then comes from the first kiln_exec_next(), and
     * kiln_exec_pid() is 0 until an event arrived. The guest sends one message instead of
     * several for a short command. kiln_exec() always starts this way. */
    bool lazy_start;
};

struct kiln_exec_status {
    int exit_code;  /* the exit status; 128 + signal when killed (like a shell) */
    int signal;     /* the signal that ended it, or 0 */
    bool timed_out; /* killed because timeout_ms expired */
    uint64_t runtime_us;
};

struct kiln_exec_result {
    struct kiln_exec_status status;
    uint8_t *out, *err; /* malloc'd, NUL-terminated (not counted in the lengths) */
    size_t out_len, err_len;
    bool out_truncated, err_truncated; /* more than max_output was produced */
};

/* Runs a command to completion, collecting its output. */
int kiln_exec(kiln_sandbox *sb, const struct kiln_exec_opts *opts, struct kiln_exec_result *res);
void kiln_exec_result_free(struct kiln_exec_result *res);

/* Streaming: start a process, then pull its events with kiln_exec_next() (or kiln_exec_wait()
 * with callbacks) while other threads may write stdin, signal or resize it. */
int kiln_exec_start(kiln_sandbox *sb, const struct kiln_exec_opts *opts, kiln_process **out);
int kiln_exec_pid(const kiln_process *ex); /* the process id in the guest */

enum kiln_exec_event_type { KILN_EXEC_STDOUT = 1, KILN_EXEC_STDERR = 2, KILN_EXEC_EXIT = 3 };
struct kiln_exec_event {
    enum kiln_exec_event_type type;
    const uint8_t *data; /* STDOUT/STDERR: valid until the next kiln_exec_next() */
    size_t len;          /* 0 with eof set: the stream ended */
    bool eof;
    struct kiln_exec_status status; /* EXIT */
};
/* The next event (waiting up to timeout_ms; -1: forever). Returns 0, -ETIMEDOUT, or an error;
 * after EXIT it returns -ESRCH. */
int kiln_exec_next(kiln_process *ex, int timeout_ms, struct kiln_exec_event *ev);

typedef int (*kiln_output_fn)(void *opaque, const uint8_t *data, size_t len);
/* Drives the process to its end: each chunk of output goes to on_stdout/on_stderr (either may
 * be NULL: dropped); a callback returning non-zero kills the process and that value is returned.
 * *status (may be NULL) receives how it ended. */
int kiln_exec_wait(kiln_process *ex, kiln_output_fn on_stdout, kiln_output_fn on_stderr,
                   void *opaque, struct kiln_exec_status *status);
/* Writes to the process's stdin (kiln_exec_opts.stdin_stream), blocking for flow control. */
int kiln_exec_write_stdin(kiln_process *ex, const void *data, size_t len);
int kiln_exec_close_stdin(kiln_process *ex);
int kiln_exec_signal(kiln_process *ex, int signo); /* to the process group */
int kiln_exec_resize(kiln_process *ex, uint16_t rows, uint16_t cols);
/* Frees the handle; a process still running is killed. */
void kiln_exec_free(kiln_process *ex);

/* ---- files (absolute guest paths) ---- */
struct kiln_file_opts {
    uint32_t mode; /* new files: permission bits (0: 0644) */
    bool mkdirs;   /* create missing parent directories */
    bool append;   /* append instead of truncating */
    bool chown;    /* set uid/gid */
    uint32_t uid, gid;
};
struct kiln_stat {
    uint32_t mode; /* st_mode: type and permission bits */
    uint32_t uid, gid, nlink;
    uint64_t size;
    int64_t mtime_ns;
};
struct kiln_dirent {
    char *name;
    struct kiln_stat st;
};

/* opts may be NULL (0644, no parents). */
int kiln_file_write(kiln_sandbox *sb, const char *path, const void *data, size_t len,
                    const struct kiln_file_opts *opts);
/* Streams fd (a file, pipe or socket) to its end into the guest file. */
int kiln_file_write_fd(kiln_sandbox *sb, const char *path, int fd,
                       const struct kiln_file_opts *opts);
/* Reads a whole guest file into a malloc'd buffer (NUL-terminated, not counted); -EFBIG when it
 * is larger than max_size (0: 1 GiB). */
int kiln_file_read(kiln_sandbox *sb, const char *path, uint8_t **data, size_t *len,
                   size_t max_size);
/* Streams a guest file into fd; *written (may be NULL) receives the byte count. */
int kiln_file_read_fd(kiln_sandbox *sb, const char *path, int fd, uint64_t *written);
int kiln_file_stat(kiln_sandbox *sb, const char *path, struct kiln_stat *st);
/* A directory's entries (without . and ..); free with kiln_file_list_free(). */
int kiln_file_list(kiln_sandbox *sb, const char *path, struct kiln_dirent **entries, size_t *count);
void kiln_file_list_free(struct kiln_dirent *entries, size_t count);
int kiln_file_mkdir(kiln_sandbox *sb, const char *path, uint32_t mode, bool parents);
int kiln_file_remove(kiln_sandbox *sb, const char *path, bool recursive);

#ifdef __cplusplus
}
#endif

#endif
