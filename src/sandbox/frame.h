/* frame.h: the pure codec of the agent protocol (include/kiln/agent.h, docs/agent-protocol.md),
 * shared by kiln-agent (built with musl) and libkiln (built into libkiln-core). It needs only libc:
 * no logging, no allocation, no I/O, so the fuzzer and the unit tests drive it directly.
 *
 * Parsers take a frame's payload (`p`, `len` bytes, any alignment) and return 0 or the positive
 * enum kiln_agent_status the receiver answers with (KILN_AGENT_E_PROTOCOL for a wrong size or a
 * bad field, KILN_AGENT_E_TOO_LARGE for a count beyond its limit, KILN_AGENT_E_BAD_PATH for a
 * path that is not absolute, too long or has a NUL inside). Pointers they return point into `p`.
 * Builders write a whole frame (header + payload) into `out` and return its size, or -EMSGSIZE
 * when the payload would exceed KILN_AGENT_MAX_PAYLOAD, or -ENOBUFS when `cap` is too small. */
#ifndef KILN_SANDBOX_FRAME_H
#define KILN_SANDBOX_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kiln/agent.h"

#define AGENT_HDR_SIZE  ((uint32_t)sizeof(struct kiln_agent_hdr))
#define AGENT_FRAME_MAX (AGENT_HDR_SIZE + KILN_AGENT_MAX_PAYLOAD)
#define AGENT_PING_MAX  64 /* PING/PONG payload limit */
#define AGENT_FLAGS_ALL KILN_AGENT_F_END
#define AGENT_EXEC_FLAGS_ALL                                                                       \
    (KILN_AGENT_EXEC_SHELL | KILN_AGENT_EXEC_PTY | KILN_AGENT_EXEC_STDIN |                         \
     KILN_AGENT_EXEC_ENV_CLEAR | KILN_AGENT_EXEC_LATE_START)
#define AGENT_EXIT_FLAGS_ALL                                                                       \
    (KILN_AGENT_EXIT_SIGNALED | KILN_AGENT_EXIT_TIMED_OUT | KILN_AGENT_EXIT_KILLED)
#define AGENT_FILE_FLAGS_ALL                                                                       \
    (KILN_AGENT_FILE_MKDIRS | KILN_AGENT_FILE_APPEND | KILN_AGENT_FILE_CHOWN |                     \
     KILN_AGENT_FILE_AS_USER)

/* ---- frames -------------------------------------------------------------------------------- */
void agent_hdr_encode(uint8_t out[AGENT_HDR_SIZE], uint16_t type, uint16_t flags, uint32_t id,
                      uint32_t len);
/* Decodes a header into *out (filled even on failure, so an ERROR can name the id) and checks it:
 * returns 0, KILN_AGENT_E_TOO_LARGE when len > max_payload, KILN_AGENT_E_PROTOCOL for an unknown
 * type, unknown flag bits or a non-zero reserved field. Which types are valid in which direction
 * and state is the receiver's business. */
int agent_hdr_decode(const uint8_t in[AGENT_HDR_SIZE], uint32_t max_payload,
                     struct kiln_agent_hdr *out);
/* Finds the next whole frame at the start of buf[0, avail): returns its total size (header +
 * payload; *hdr and *payload set), 0 when more bytes are needed, or minus the status of
 * agent_hdr_decode when the header is bad (*hdr still set). */
ssize_t agent_frame_next(const uint8_t *buf, size_t avail, uint32_t max_payload,
                         struct kiln_agent_hdr *hdr, const uint8_t **payload);
/* A frame whose payload is a (may be NULL with alen 0) followed by b (may be NULL with blen 0). */
ssize_t agent_frame_build(uint8_t *out, size_t cap, uint16_t type, uint16_t flags, uint32_t id,
                          const void *a, size_t alen, const void *b, size_t blen);
/* An ERROR frame; the message is truncated to what fits in KILN_AGENT_MAX_PAYLOAD and cap. */
ssize_t agent_error_build(uint8_t *out, size_t cap, uint32_t id, uint32_t status, uint32_t err,
                          const char *msg);
/* An EXEC frame from NULL-terminated argv and env (env may be NULL) and cwd (NULL: "/"). Also
 * returns -E2BIG for more than KILN_AGENT_MAX_ARGS strings or more than 65535 of either. It sets
 * h->argc and h->envc from the vectors. */
ssize_t agent_exec_build(uint8_t *out, size_t cap, uint32_t id, struct kiln_agent_exec *h,
                         const char *const *argv, const char *const *env, const char *cwd);

const char *agent_type_name(uint16_t type);     /* "EXEC" ... or "unknown" */
const char *agent_status_name(uint32_t status); /* "not found" ... or "unknown status" */
uint32_t agent_status_from_errno(int err);      /* ENOENT -> NOT_FOUND, ... ; EIO for the rest */
int agent_errno_from_status(uint32_t status);   /* the closest errno (positive) */

/* ---- payloads -------------------------------------------------------------------------------- */
/* A path: non-empty, starts with '/', at most KILN_AGENT_MAX_PATH bytes; p[len-1] is its NUL and
 * there is no other. Checks p[0, len) and sets *path. */
int agent_parse_path(const uint8_t *p, size_t len, const char **path);

/* HELLO: at least 16 bytes (later versions may append), 1 <= version_min <= version_max. */
int agent_parse_hello(const uint8_t *p, size_t len, struct kiln_agent_hello *out);
/* Chooses the version to speak with a peer offering [min, max]: 0 when none is common. */
uint32_t agent_version_choose(const struct kiln_agent_hello *peer);
int agent_parse_ready(const uint8_t *p, size_t len, struct kiln_agent_ready *out);
/* ERROR: a known non-zero status; *msg (not NUL-terminated) and *msg_len the text after it. */
int agent_parse_error(const uint8_t *p, size_t len, struct kiln_agent_error *out, const char **msg,
                      size_t *msg_len);
/* WINDOW: stream is STDIN, STDOUT, STDERR or FILE_DATA; bytes > 0. */
int agent_parse_window(const uint8_t *p, size_t len, struct kiln_agent_window *out);

struct agent_exec_msg {
    struct kiln_agent_exec h;
    const char *strings; /* argc + envc + 1 NUL-terminated strings */
    const char *cwd;     /* "/" when the frame gave "" */
};
/* EXEC: known flags; argc >= 1; argc + envc <= KILN_AGENT_MAX_ARGS (else TOO_LARGE); exactly
 * argc + envc + 1 strings fill the rest of the payload; argv[0] non-empty; each env entry is
 * NAME=value with a non-empty NAME; cwd empty or a valid path. */
int agent_parse_exec(const uint8_t *p, size_t len, struct agent_exec_msg *out);
/* Points argv[0..argc) and envp[0..envc) at the strings of a parsed EXEC and NULL-terminates
 * both: argv has room for argc + 1 entries, envp for envc + 1. */
void agent_exec_vectors(const struct agent_exec_msg *m, const char **argv, const char **envp);

int agent_parse_started(const uint8_t *p, size_t len, struct kiln_agent_started *out);
/* SIGNAL: 1 <= signo <= 64, reserved 0. */
int agent_parse_signal(const uint8_t *p, size_t len, struct kiln_agent_signal *out);
/* RESIZE: rows and cols non-zero, reserved 0. */
int agent_parse_resize(const uint8_t *p, size_t len, struct kiln_agent_resize *out);
int agent_parse_exit(const uint8_t *p, size_t len, struct kiln_agent_exit *out);

struct agent_file_msg {
    struct kiln_agent_file_open h;
    const char *path;
};
/* FILE_WRITE / FILE_READ: known flags, mode <= 07777, offset + length without overflow, a path. */
int agent_parse_file_open(const uint8_t *p, size_t len, struct agent_file_msg *out);
/* STAT_RESULT: exactly 32 bytes. */
int agent_parse_stat(const uint8_t *p, size_t len, struct kiln_agent_stat *out);
/* LIST_ENTRY: a stat and a NUL-terminated name (non-empty, no '/', at most 255 bytes). An empty
 * payload is the end of the list: returns 0 with *name NULL. */
int agent_parse_list_entry(const uint8_t *p, size_t len, struct kiln_agent_stat *out,
                           const char **name);
/* MKDIR: mode <= 07777, parents 0 or 1, then a path. */
int agent_parse_mkdir(const uint8_t *p, size_t len, struct kiln_agent_mkdir *out,
                      const char **path);
/* REMOVE: recursive 0 or 1, reserved 0, then a path. */
int agent_parse_remove(const uint8_t *p, size_t len, struct kiln_agent_remove *out,
                       const char **path);

#endif
