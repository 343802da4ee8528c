/* fileservice.h: the read-only file service's internal API (docs/file-service.md): the codec of
 * include/kiln/fileservice.h, path rules, backings behind one small interface, the per-connection
 * state machine and the Unix-socket server the guest reaches over vsock. */
#ifndef KILN_FILESERVICE_INTERNAL_H
#define KILN_FILESERVICE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/fileservice.h"

struct evloop;

/* ---- codec (codec.c): pure, so the fuzzer drives it ---------------------------------------- */
/* A decoded request; path points into the buffer it was decoded from (not NUL-terminated). */
struct fsvc_request {
    uint16_t type; /* KILN_FS_MSG_VERSION_REQUEST, _GET_FILE_INFO or _READ_FILE */
    uint32_t version;
    uint32_t byte_count;
    uint64_t offset;
    const uint8_t *path;
    size_t path_len;
};

/* Decodes the request at the start of buf (len bytes received so far). Returns the message's
 * size (> 0) when it is complete and well-formed, 0 when more bytes are needed, or, for a
 * message the protocol cannot answer (the connection must close), -EMSGSIZE (size field below
 * 8 or above KILN_FS_MAX_REQUEST), -EBADMSG (too short for its type, or reserved bits set) or
 * -EPROTO (unknown or response type); *why then says which. */
int fsvc_decode_request(const uint8_t *buf, size_t len, struct fsvc_request *out, const char **why);
/* Encoders write a whole response into out (room for KILN_FS_MAX_RESPONSE is always enough) and
 * return its size. read_file_response writes the header only; its byte_count data bytes must
 * already be at out + sizeof(struct kiln_fs_read_file_response). */
size_t fsvc_encode_version_response(uint8_t *out, uint32_t status);
size_t fsvc_encode_file_info_response(uint8_t *out, uint32_t status, uint32_t flags, uint64_t size);
size_t fsvc_encode_read_file_response(uint8_t *out, uint32_t status, uint32_t byte_count);
/* Client-side encoders (kiln-fetch has its own copy; these serve the tests). Return the size, or
 * 0 when out (outlen bytes) is too small. */
size_t fsvc_encode_version_request(uint8_t *out, size_t outlen, uint32_t version);
size_t fsvc_encode_get_file_info(uint8_t *out, size_t outlen, const char *path, size_t path_len);
size_t fsvc_encode_read_file(uint8_t *out, size_t outlen, uint32_t byte_count, uint64_t offset,
                             const char *path, size_t path_len);

/* ---- paths (path.c) ----------------------------------------------------------------------- */
/* Turns a wire path into the canonical form backings see: components joined by single '/', no
 * leading or trailing '/', "" for the root. '\' counts as '/'; empty and "." components are
 * dropped. Returns 0, or -EINVAL for a NUL, invalid UTF-8 (overlongs, surrogates and code points
 * above U+10FFFF included), a ".." component or one longer than KILN_FS_MAX_NAME, a path longer
 * than KILN_FS_MAX_PATH; -ENAMETOOLONG when out (outlen) is too small. */
int fsvc_path_normalize(const uint8_t *in, size_t len, char *out, size_t outlen);
/* True when s[0..len) is valid UTF-8. */
bool fsvc_utf8_valid(const uint8_t *s, size_t len);

/* ---- backings (backing_dir.c, backing_file.c) ---------------------------------------------
 * A backing answers for part of the guest-visible namespace. The service asks each backing in
 * order (single files first, then the directory) and takes the first answer that is not
 * -ENOENT. */
enum fsvc_kind { FSVC_FILE, FSVC_DIR, FSVC_OTHER };

struct fsvc_node {
    enum fsvc_kind kind;
    uint64_t size; /* FSVC_FILE: bytes */
    int fd;        /* FSVC_FILE when opened for reading: readable with pread(), else -1 */
    bool owned;    /* fd is the caller's to close */
};

struct fsvc_backing;
struct fsvc_backing_ops {
    /* Looks up canonical path `path` (fsvc_path_normalize). With `want_fd`, a regular file comes
     * back with an fd for pread(). Returns 0, -ENOENT (not here), -EXDEV (the path would leave
     * the backing: a symlink out of the root, an absolute symlink) or another -errno. */
    int (*lookup)(struct fsvc_backing *b, const char *path, bool want_fd, struct fsvc_node *out);
    void (*destroy)(struct fsvc_backing *b);
};
struct fsvc_backing {
    const struct fsvc_backing_ops *ops;
    struct fsvc_backing *next;
};

/* A host directory, read-only, resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
 * where openat2 is missing (or `walk_only`, for tests) a component walk with O_NOFOLLOW that
 * refuses every symlink. NULL with err set when dir cannot be opened as a directory. */
struct fsvc_backing *fsvc_backing_dir_create(const char *dir, bool walk_only, char *err,
                                             size_t errlen);
/* One host file under guest path `name` (any form fsvc_path_normalize takes); the host file is
 * opened now and served as it was then. Its parent directories appear as empty directories. */
struct fsvc_backing *fsvc_backing_file_create(const char *name, const char *host_path, char *err,
                                              size_t errlen);
/* Checks a --file NAME=HOSTPATH value without touching the host file. Returns 0, or -EINVAL with
 * err naming the problem; *name_len is the length of NAME. */
int fsvc_file_spec_check(const char *spec, size_t *name_len, char *err, size_t errlen);

/* ---- the state machine (session.c) --------------------------------------------------------- */
enum fsvc_state { FSVC_STATE_VERSION, FSVC_STATE_READY };

/* Answers one decoded request for a connection in *state over the backings list. Writes the
 * response into out (KILN_FS_MAX_RESPONSE bytes) and returns its size, or -EPROTO for a request
 * the current state does not take (the connection must close; *why says why). */
int fsvc_session_handle(enum fsvc_state *state, struct fsvc_backing *backings,
                        const struct fsvc_request *req, uint8_t *out, const char **why);

/* ---- the server (server.c) -----------------------------------------------------------------
 * Non-blocking sockets on one epoll fd that the event loop watches: no thread per request. Each
 * connection holds one request buffer (KILN_FS_MAX_REQUEST) and one response buffer
 * (KILN_FS_MAX_RESPONSE); it is not read while a response is still being written. */
#define FSVC_MAX_CONNS 16

struct fsvc_config {
    const char *dir;          /* --files DIR, or NULL */
    const char *const *files; /* --file NAME=HOSTPATH values */
    unsigned nfiles;
    unsigned max_conns; /* 0: FSVC_MAX_CONNS */
};

struct fsvc;
/* Opens the backings (the user's mistakes in err). NULL with errno and err set. */
struct fsvc *fsvc_create(const struct fsvc_config *cfg, char *err, size_t errlen);
/* Listens on the Unix socket `path` (a stale socket there is replaced). Returns 0 or -errno. */
int fsvc_listen(struct fsvc *s, const char *path, char *err, size_t errlen);
/* Serves an already connected stream socket (tests use a socketpair end); takes fd. Returns 0,
 * or -EMFILE at the connection limit (fd closed). */
int fsvc_add_conn(struct fsvc *s, int fd);
/* Handles whatever is ready without blocking (the event loop's callback; tests call it). */
void fsvc_poll(struct fsvc *s);
/* Watches the service from the event loop. Returns 0 or -errno. */
int fsvc_attach(struct fsvc *s, struct evloop *loop);
unsigned fsvc_nconns(const struct fsvc *s);
/* Closes every connection and the listener (removing its socket file) and frees. NULL is fine. */
void fsvc_destroy(struct fsvc *s);

#endif
