/* frame.c: the agent protocol's frame codec (contract in frame.h, protocol in
 * docs/agent-protocol.md). Pure libc: compiled into kiln-agent with musl and into libkiln-core. */
#include "sandbox/frame.h"

#include <errno.h>
#include <string.h>

/* Every ABI struct is naturally aligned fixed-width fields, so on a little-endian machine its
 * memory image is its wire image: memcpy in and out (which also handles any alignment of p). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the agent ABI is little-endian");

#define OK    KILN_AGENT_E_OK
#define PROTO KILN_AGENT_E_PROTOCOL

void agent_hdr_encode(uint8_t out[AGENT_HDR_SIZE], uint16_t type, uint16_t flags, uint32_t id,
                      uint32_t len)
{
    struct kiln_agent_hdr h = {.len = len, .type = type, .flags = flags, .id = id};
    memcpy(out, &h, sizeof(h));
}

static int type_known(uint16_t type)
{
    return (type >= KILN_AGENT_HELLO && type <= KILN_AGENT_WINDOW) ||
           (type >= KILN_AGENT_EXEC && type <= KILN_AGENT_EXIT) ||
           (type >= KILN_AGENT_FILE_WRITE && type <= KILN_AGENT_OK);
}

int agent_hdr_decode(const uint8_t in[AGENT_HDR_SIZE], uint32_t max_payload,
                     struct kiln_agent_hdr *out)
{
    memcpy(out, in, sizeof(*out));
    if (out->len > max_payload || out->len > KILN_AGENT_MAX_PAYLOAD)
        return KILN_AGENT_E_TOO_LARGE;
    if (!type_known(out->type) || (out->flags & ~AGENT_FLAGS_ALL) || out->reserved != 0)
        return PROTO;
    return OK;
}

ssize_t agent_frame_next(const uint8_t *buf, size_t avail, uint32_t max_payload,
                         struct kiln_agent_hdr *hdr, const uint8_t **payload)
{
    if (avail < AGENT_HDR_SIZE)
        return 0;
    int st = agent_hdr_decode(buf, max_payload, hdr);
    if (st != OK)
        return -st;
    if (avail - AGENT_HDR_SIZE < hdr->len)
        return 0;
    *payload = buf + AGENT_HDR_SIZE;
    return (ssize_t)(AGENT_HDR_SIZE + hdr->len);
}

ssize_t agent_frame_build(uint8_t *out, size_t cap, uint16_t type, uint16_t flags, uint32_t id,
                          const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen > KILN_AGENT_MAX_PAYLOAD || blen > KILN_AGENT_MAX_PAYLOAD - alen)
        return -EMSGSIZE;
    size_t len = alen + blen;
    if (cap < AGENT_HDR_SIZE || cap - AGENT_HDR_SIZE < len)
        return -ENOBUFS;
    agent_hdr_encode(out, type, flags, id, (uint32_t)len);
    if (alen)
        memcpy(out + AGENT_HDR_SIZE, a, alen);
    if (blen)
        memcpy(out + AGENT_HDR_SIZE + alen, b, blen);
    return (ssize_t)(AGENT_HDR_SIZE + len);
}

ssize_t agent_error_build(uint8_t *out, size_t cap, uint32_t id, uint32_t status, uint32_t err,
                          const char *msg)
{
    struct kiln_agent_error e = {.status = status, .err = err};
    size_t mlen = msg ? strlen(msg) : 0;
    if (cap < AGENT_HDR_SIZE + sizeof(e))
        return -ENOBUFS;
    size_t room = cap - AGENT_HDR_SIZE - sizeof(e);
    if (room > KILN_AGENT_MAX_PAYLOAD - sizeof(e))
        room = KILN_AGENT_MAX_PAYLOAD - sizeof(e);
    if (mlen > room)
        mlen = room;
    return agent_frame_build(out, cap, KILN_AGENT_ERROR, 0, id, &e, sizeof(e), msg, mlen);
}

ssize_t agent_exec_build(uint8_t *out, size_t cap, uint32_t id, struct kiln_agent_exec *h,
                         const char *const *argv, const char *const *env, const char *cwd)
{
    size_t argc = 0, envc = 0, len = sizeof(*h);
    for (; argv && argv[argc]; argc++) {
        if (argc >= KILN_AGENT_MAX_ARGS)
            return -E2BIG;
        len += strlen(argv[argc]) + 1;
        if (len > KILN_AGENT_MAX_PAYLOAD)
            return -EMSGSIZE;
    }
    for (; env && env[envc]; envc++) {
        if (argc + envc >= KILN_AGENT_MAX_ARGS)
            return -E2BIG;
        len += strlen(env[envc]) + 1;
        if (len > KILN_AGENT_MAX_PAYLOAD)
            return -EMSGSIZE;
    }
    if (!cwd)
        cwd = "";
    len += strlen(cwd) + 1;
    if (len > KILN_AGENT_MAX_PAYLOAD)
        return -EMSGSIZE;
    if (cap < AGENT_HDR_SIZE || cap - AGENT_HDR_SIZE < len)
        return -ENOBUFS;
    h->argc = (uint16_t)argc;
    h->envc = (uint16_t)envc;
    agent_hdr_encode(out, KILN_AGENT_EXEC, 0, id, (uint32_t)len);
    uint8_t *w = out + AGENT_HDR_SIZE;
    memcpy(w, h, sizeof(*h));
    w += sizeof(*h);
    for (size_t i = 0; i < argc + envc + 1; i++) {
        const char *s = i < argc ? argv[i] : i < argc + envc ? env[i - argc] : cwd;
        size_t n = strlen(s) + 1;
        memcpy(w, s, n);
        w += n;
    }
    return (ssize_t)(AGENT_HDR_SIZE + len);
}

const char *agent_type_name(uint16_t type)
{
    static const char *const names[] = {
        [KILN_AGENT_HELLO] = "HELLO",
        [KILN_AGENT_READY] = "READY",
        [KILN_AGENT_PING] = "PING",
        [KILN_AGENT_PONG] = "PONG",
        [KILN_AGENT_ERROR] = "ERROR",
        [KILN_AGENT_WINDOW] = "WINDOW",
        [KILN_AGENT_EXEC] = "EXEC",
        [KILN_AGENT_STARTED] = "STARTED",
        [KILN_AGENT_STDIN] = "STDIN",
        [KILN_AGENT_STDOUT] = "STDOUT",
        [KILN_AGENT_STDERR] = "STDERR",
        [KILN_AGENT_SIGNAL] = "SIGNAL",
        [KILN_AGENT_RESIZE] = "RESIZE",
        [KILN_AGENT_EXIT] = "EXIT",
        [KILN_AGENT_FILE_WRITE] = "FILE_WRITE",
        [KILN_AGENT_FILE_READ] = "FILE_READ",
        [KILN_AGENT_FILE_DATA] = "FILE_DATA",
        [KILN_AGENT_STAT] = "STAT",
        [KILN_AGENT_STAT_RESULT] = "STAT_RESULT",
        [KILN_AGENT_LIST] = "LIST",
        [KILN_AGENT_LIST_ENTRY] = "LIST_ENTRY",
        [KILN_AGENT_MKDIR] = "MKDIR",
        [KILN_AGENT_REMOVE] = "REMOVE",
        [KILN_AGENT_OK] = "OK",
    };
    if (type < sizeof(names) / sizeof(names[0]) && names[type])
        return names[type];
    return "unknown";
}

static const struct {
    const char *name;
    int err;
} statuses[] = {
    [KILN_AGENT_E_OK] = {"ok", 0},
    [KILN_AGENT_E_PROTOCOL] = {"protocol error", EPROTO},
    [KILN_AGENT_E_VERSION] = {"no common protocol version", EPROTONOSUPPORT},
    [KILN_AGENT_E_TOO_LARGE] = {"too large", EMSGSIZE},
    [KILN_AGENT_E_BUSY_ID] = {"request id in use", EBUSY},
    [KILN_AGENT_E_NOT_FOUND] = {"not found", ENOENT},
    [KILN_AGENT_E_PERMISSION] = {"permission denied", EACCES},
    [KILN_AGENT_E_EXISTS] = {"already exists", EEXIST},
    [KILN_AGENT_E_NO_SPACE] = {"no space left", ENOSPC},
    [KILN_AGENT_E_IS_DIR] = {"is a directory", EISDIR},
    [KILN_AGENT_E_NOT_DIR] = {"not a directory", ENOTDIR},
    [KILN_AGENT_E_NOT_EMPTY] = {"directory not empty", ENOTEMPTY},
    [KILN_AGENT_E_BAD_PATH] = {"bad path", EINVAL},
    [KILN_AGENT_E_IO] = {"I/O error", EIO},
    [KILN_AGENT_E_NO_REQUEST] = {"no such request", ESRCH},
    [KILN_AGENT_E_RESOURCES] = {"out of resources", ENOMEM},
    [KILN_AGENT_E_CANCELLED] = {"cancelled", ECANCELED},
};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))

const char *agent_status_name(uint32_t status)
{
    return status < NSTATUS ? statuses[status].name : "unknown status";
}

int agent_errno_from_status(uint32_t status)
{
    return status < NSTATUS ? statuses[status].err : EIO;
}

uint32_t agent_status_from_errno(int err)
{
    switch (err) {
    case 0:
        return KILN_AGENT_E_OK;
    case ENOENT:
        return KILN_AGENT_E_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return KILN_AGENT_E_PERMISSION;
    case EEXIST:
        return KILN_AGENT_E_EXISTS;
    case ENOSPC:
    case EDQUOT:
        return KILN_AGENT_E_NO_SPACE;
    case EISDIR:
        return KILN_AGENT_E_IS_DIR;
    case ENOTDIR:
        return KILN_AGENT_E_NOT_DIR;
    case ENOTEMPTY:
        return KILN_AGENT_E_NOT_EMPTY;
    case ENAMETOOLONG:
        return KILN_AGENT_E_BAD_PATH;
    case E2BIG:
    case EMSGSIZE:
    case EFBIG:
        return KILN_AGENT_E_TOO_LARGE;
    case ENOMEM:
    case EAGAIN:
    case EMFILE:
    case ENFILE:
        return KILN_AGENT_E_RESOURCES;
    default:
        return KILN_AGENT_E_IO;
    }
}

/* ---- payloads -------------------------------------------------------------------------------- */

/* A string that ends exactly at p[len-1] with its only NUL. */
static int one_string(const uint8_t *p, size_t len, const char **s)
{
    if (len == 0 || p[len - 1] != 0 || memchr(p, 0, len) != p + len - 1)
        return PROTO;
    *s = (const char *)p;
    return OK;
}

static int path_ok(const char *s, size_t n)
{
    if (n == 0 || s[0] != '/' || n > KILN_AGENT_MAX_PATH)
        return KILN_AGENT_E_BAD_PATH;
    return OK;
}

int agent_parse_path(const uint8_t *p, size_t len, const char **path)
{
    /* A NUL inside is a bad path (the host's caller made it), not a framing error. */
    if (len == 0 || p[len - 1] != 0)
        return PROTO;
    if (memchr(p, 0, len) != p + len - 1)
        return KILN_AGENT_E_BAD_PATH;
    int st = path_ok((const char *)p, len - 1);
    if (st == OK)
        *path = (const char *)p;
    return st;
}

#define FIXED(p, len, out)                                                                         \
    do {                                                                                           \
        if ((len) != sizeof(*(out)))                                                               \
            return PROTO;                                                                          \
        memcpy((out), (p), sizeof(*(out)));                                                        \
    } while (0)

int agent_parse_hello(const uint8_t *p, size_t len, struct kiln_agent_hello *out)
{
    if (len < sizeof(*out))
        return PROTO;
    memcpy(out, p, sizeof(*out));
    if (out->version_min == 0 || out->version_min > out->version_max)
        return PROTO;
    if (out->max_payload < 4096)
        return PROTO; /* too small for a path: nobody could talk to it */
    return OK;
}

uint32_t agent_version_choose(const struct kiln_agent_hello *peer)
{
    if (peer->version_min > KILN_AGENT_VERSION || peer->version_max < 1)
        return 0;
    return peer->version_max < KILN_AGENT_VERSION ? peer->version_max : KILN_AGENT_VERSION;
}

int agent_parse_ready(const uint8_t *p, size_t len, struct kiln_agent_ready *out)
{
    FIXED(p, len, out);
    return out->version >= 1 ? OK : PROTO;
}

int agent_parse_error(const uint8_t *p, size_t len, struct kiln_agent_error *out, const char **msg,
                      size_t *msg_len)
{
    if (len < sizeof(*out))
        return PROTO;
    memcpy(out, p, sizeof(*out));
    if (out->status == KILN_AGENT_E_OK || out->status >= NSTATUS)
        return PROTO;
    *msg = (const char *)p + sizeof(*out);
    *msg_len = len - sizeof(*out);
    return OK;
}

int agent_parse_window(const uint8_t *p, size_t len, struct kiln_agent_window *out)
{
    FIXED(p, len, out);
    switch (out->stream) {
    case KILN_AGENT_STDIN:
    case KILN_AGENT_STDOUT:
    case KILN_AGENT_STDERR:
    case KILN_AGENT_FILE_DATA:
        return out->bytes > 0 ? OK : PROTO;
    default:
        return PROTO;
    }
}

int agent_parse_exec(const uint8_t *p, size_t len, struct agent_exec_msg *out)
{
    if (len < sizeof(out->h))
        return PROTO;
    memcpy(&out->h, p, sizeof(out->h));
    const struct kiln_agent_exec *h = &out->h;
    if ((h->flags & ~AGENT_EXEC_FLAGS_ALL) || h->argc == 0)
        return PROTO;
    if ((uint32_t)h->argc + h->envc > KILN_AGENT_MAX_ARGS)
        return KILN_AGENT_E_TOO_LARGE;
    const char *s = (const char *)p + sizeof(*h), *end = (const char *)p + len;
    out->strings = s;
    uint32_t want = (uint32_t)h->argc + h->envc + 1;
    for (uint32_t i = 0; i < want; i++) {
        const char *nul = s < end ? memchr(s, 0, (size_t)(end - s)) : NULL;
        if (!nul)
            return PROTO; /* fewer strings than argc + envc + 1 */
        size_t n = (size_t)(nul - s);
        if (i == 0 && n == 0)
            return PROTO;
        if (i >= h->argc && i < want - 1) {
            const char *eq = memchr(s, '=', n);
            if (!eq || eq == s)
                return PROTO;
        }
        if (i == want - 1) {
            if (n > 0 && path_ok(s, n) != OK)
                return KILN_AGENT_E_BAD_PATH;
            out->cwd = n ? s : "/";
        }
        s = nul + 1;
    }
    return s == end ? OK : PROTO; /* trailing bytes */
}

void agent_exec_vectors(const struct agent_exec_msg *m, const char **argv, const char **envp)
{
    const char *s = m->strings;
    for (uint32_t i = 0; i < (uint32_t)m->h.argc + m->h.envc; i++) {
        if (i < m->h.argc)
            argv[i] = s;
        else
            envp[i - m->h.argc] = s;
        s += strlen(s) + 1;
    }
    argv[m->h.argc] = NULL;
    envp[m->h.envc] = NULL;
}

int agent_parse_started(const uint8_t *p, size_t len, struct kiln_agent_started *out)
{
    FIXED(p, len, out);
    return OK;
}

int agent_parse_signal(const uint8_t *p, size_t len, struct kiln_agent_signal *out)
{
    FIXED(p, len, out);
    return out->signo >= 1 && out->signo <= 64 && out->reserved == 0 ? OK : PROTO;
}

int agent_parse_resize(const uint8_t *p, size_t len, struct kiln_agent_resize *out)
{
    FIXED(p, len, out);
    return out->rows && out->cols && out->reserved == 0 ? OK : PROTO;
}

int agent_parse_exit(const uint8_t *p, size_t len, struct kiln_agent_exit *out)
{
    FIXED(p, len, out);
    return out->flags & ~AGENT_EXIT_FLAGS_ALL ? PROTO : OK;
}

int agent_parse_file_open(const uint8_t *p, size_t len, struct agent_file_msg *out)
{
    if (len < sizeof(out->h))
        return PROTO;
    memcpy(&out->h, p, sizeof(out->h));
    const struct kiln_agent_file_open *h = &out->h;
    if ((h->flags & ~AGENT_FILE_FLAGS_ALL) || h->mode > 07777)
        return PROTO;
    if (h->offset > INT64_MAX || h->length > INT64_MAX - h->offset)
        return KILN_AGENT_E_TOO_LARGE;
    return agent_parse_path(p + sizeof(out->h), len - sizeof(out->h), &out->path);
}

int agent_parse_stat(const uint8_t *p, size_t len, struct kiln_agent_stat *out)
{
    FIXED(p, len, out);
    return OK;
}

int agent_parse_list_entry(const uint8_t *p, size_t len, struct kiln_agent_stat *out,
                           const char **name)
{
    *name = NULL;
    if (len == 0)
        return OK;
    if (len < sizeof(*out))
        return PROTO;
    memcpy(out, p, sizeof(*out));
    const char *s;
    if (one_string(p + sizeof(*out), len - sizeof(*out), &s) != OK)
        return PROTO;
    size_t n = len - sizeof(*out) - 1;
    if (n == 0 || n > 255 || memchr(s, '/', n))
        return PROTO;
    *name = s;
    return OK;
}

int agent_parse_mkdir(const uint8_t *p, size_t len, struct kiln_agent_mkdir *out, const char **path)
{
    if (len < sizeof(*out))
        return PROTO;
    memcpy(out, p, sizeof(*out));
    if (out->mode > 07777 || out->parents > 1)
        return PROTO;
    return agent_parse_path(p + sizeof(*out), len - sizeof(*out), path);
}

int agent_parse_remove(const uint8_t *p, size_t len, struct kiln_agent_remove *out,
                       const char **path)
{
    if (len < sizeof(*out))
        return PROTO;
    memcpy(out, p, sizeof(*out));
    if (out->recursive > 1 || out->reserved != 0)
        return PROTO;
    return agent_parse_path(p + sizeof(*out), len - sizeof(*out), path);
}
