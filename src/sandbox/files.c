/* files.c: moving files in and out of a sandbox and managing its directories: FILE_WRITE and
 * FILE_READ streamed under WINDOW credit (no size limit, bounded memory), STAT, LIST, MKDIR and
 * REMOVE (docs/sandbox.md, docs/agent-protocol.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/lib.h"
#include "sandbox.h"

#define ANSWER_TIMEOUT_MS 60000
#define DEFAULT_READ_MAX  (1ULL << 30)

static int check_path(kiln_sandbox *sb, const char *op, const char *path)
{
    size_t n = path ? strlen(path) : 0;

    if (n == 0 || path[0] != '/' || n > KILN_AGENT_MAX_PATH)
        return sandbox_errorf(sb, -EINVAL,
                              "%s: invalid guest path '%.200s': give an absolute path of 1 to %d "
                              "bytes",
                              op, path ? path : "", KILN_AGENT_MAX_PATH);
    return 0;
}

/* Opens a request and sends its first frame: head (hlen bytes) then the NUL-terminated path. */
static int request(kiln_sandbox *sb, const char *op, uint16_t type, const void *head, size_t hlen,
                   const char *path, struct agent_req **out)
{
    int ret = check_path(sb, op, path);

    if (ret < 0)
        return ret;
    ret = agent_req_open(sb->conn, out);
    if (ret < 0)
        return sandbox_errorf(sb, ret, "%s: no request id left on this connection", op);
    ret = agent_req_send(*out, type, 0, head, hlen, path, strlen(path) + 1);
    if (ret < 0) {
        char err[AGENT_ERR_MAX];
        agent_conn_status(sb->conn, err, sizeof(err));
        agent_req_close(*out);
        return sandbox_errorf(sb, ret, "%s %s: %s", op, path, err);
    }
    return 0;
}

/* Waits for the request's next frame; an ERROR becomes its errno and message. */
static int next(kiln_sandbox *sb, struct agent_req *r, const char *op, const char *path,
                uint64_t deadline, struct agent_msg **m)
{
    char err[AGENT_ERR_MAX], what[AGENT_ERR_MAX];
    int ret = agent_req_next(r, deadline, m, err, sizeof(err));

    snprintf(what, sizeof(what), "%s %.300s", op, path);
    if (ret < 0)
        return sandbox_errorf(sb, ret, "%s: %s", what, err);
    if ((*m)->type == KILN_AGENT_ERROR) {
        ret = agent_msg_error(*m, what, err, sizeof(err));
        agent_req_release(r, *m);
        *m = NULL;
        return sandbox_error(sb, ret, err);
    }
    return 0;
}

/* The end of a request answered by OK. */
static int expect_ok(kiln_sandbox *sb, struct agent_req *r, const char *op, const char *path)
{
    struct agent_msg *m;
    int ret = next(sb, r, op, path, agent_deadline(ANSWER_TIMEOUT_MS), &m);

    if (ret == 0 && m->type != KILN_AGENT_OK) {
        agent_conn_fail(agent_req_conn(r), -EPROTO,
                        "agent protocol violation: %s answered %s "
                        "with %s",
                        op, path, agent_type_name(m->type));
        ret = sandbox_errorf(sb, -EPROTO, "%s %s: the agent answered with %s", op, path,
                             agent_type_name(m->type));
    }
    if (m)
        agent_req_release(r, m);
    return ret;
}

/* SIGNAL cancels a file transfer (ERROR(CANCELLED) follows; closing the request drops it). */
static void cancel(struct agent_req *r)
{
    struct kiln_agent_signal sig = {.signo = 9};

    agent_req_send(r, KILN_AGENT_SIGNAL, 0, &sig, sizeof(sig), NULL, 0);
}

static struct kiln_agent_file_open open_head(const struct kiln_file_opts *o)
{
    struct kiln_agent_file_open h = {.mode = 0644};

    if (o) {
        h.mode = o->mode ? o->mode : 0644;
        h.flags = (o->mkdirs ? KILN_AGENT_FILE_MKDIRS : 0) |
                  (o->append ? KILN_AGENT_FILE_APPEND : 0) | (o->chown ? KILN_AGENT_FILE_CHOWN : 0);
        h.uid = o->uid;
        h.gid = o->gid;
    }
    return h;
}

/* Streams from memory (data) or from fd to the guest file. */
static int write_common(kiln_sandbox *sb, const char *path, const void *data, size_t len, int fd,
                        const struct kiln_file_opts *opts)
{
    struct kiln_agent_file_open h = open_head(opts);
    uint32_t chunk = agent_conn_max_payload(sb->conn);
    struct agent_req *r;
    uint8_t *buf = NULL;
    int ret;

    if (opts && opts->mode > 07777)
        return sandbox_errorf(sb, -EINVAL, "write %s: invalid mode %#o (at most 07777)", path,
                              opts->mode);
    if (fd >= 0 && !(buf = malloc(chunk)))
        return sandbox_error(sb, -ENOMEM, "write: out of memory");
    ret = request(sb, "write", KILN_AGENT_FILE_WRITE, &h, sizeof(h), path, &r);
    if (ret < 0)
        goto out;
    if (fd < 0) {
        ret = agent_req_write(r, KILN_AGENT_FILE_DATA, data, len, true, 0);
    } else {
        for (;;) {
            ssize_t n = read(fd, buf, chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                ret = sandbox_errorf(sb, -errno, "write %s: reading the source: %s", path,
                                     strerror(errno));
                cancel(r);
                goto out_req;
            }
            ret = agent_req_write(r, KILN_AGENT_FILE_DATA, buf, (size_t)n, n == 0, 0);
            if (ret < 0 || n == 0)
                break;
        }
    }
    /* -EPIPE: the agent answered early (an ERROR); read it. */
    if (ret == 0 || ret == -EPIPE)
        ret = expect_ok(sb, r, "write", path);
    else
        sandbox_errorf(sb, ret, "write %s: %s", path, kiln_strerror(ret));
out_req:
    agent_req_close(r);
out:
    free(buf);
    return ret;
}

int kiln_file_write(kiln_sandbox *sb, const char *path, const void *data, size_t len,
                    const struct kiln_file_opts *opts)
{
    return write_common(sb, path, data, len, -1, opts);
}

int kiln_file_write_fd(kiln_sandbox *sb, const char *path, int fd,
                       const struct kiln_file_opts *opts)
{
    if (fd < 0)
        return sandbox_error(sb, -EBADF, "write: invalid source descriptor");
    return write_common(sb, path, NULL, 0, fd, opts);
}

/* Receives FILE_DATA until F_END, handing each chunk to sink (which returns 0 or -errno). */
static int read_common(kiln_sandbox *sb, const char *path,
                       int (*sink)(void *opaque, const uint8_t *p, size_t n), void *opaque)
{
    struct kiln_agent_file_open h = {0};
    struct agent_req *r;
    struct agent_msg *m;
    bool end = false;
    int ret = request(sb, "read", KILN_AGENT_FILE_READ, &h, sizeof(h), path, &r);

    if (ret < 0)
        return ret;
    while (ret == 0 && !end) {
        ret = next(sb, r, "read", path, 0, &m);
        if (ret < 0)
            break;
        if (m->type != KILN_AGENT_FILE_DATA) {
            agent_conn_fail(sb->conn, -EPROTO, "agent protocol violation: %s in a file read",
                            agent_type_name(m->type));
            ret = sandbox_errorf(sb, -EPROTO, "read %s: the agent sent %s", path,
                                 agent_type_name(m->type));
        } else {
            end = m->flags & KILN_AGENT_F_END;
            ret = m->len ? sink(opaque, m->data, m->len) : 0;
            if (ret < 0) {
                sandbox_errorf(sb, ret, "read %s: %s", path,
                               ret == -EFBIG ? "larger than the size limit" : strerror(-ret));
                if (!end)
                    cancel(r);
            }
        }
        agent_req_release(r, m);
    }
    agent_req_close(r);
    return ret;
}

struct membuf {
    uint8_t *buf;
    size_t len, cap, max;
};

static int to_mem(void *opaque, const uint8_t *p, size_t n)
{
    struct membuf *b = opaque;

    if (b->len + n > b->max)
        return -EFBIG;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        uint8_t *nb;
        while (cap < b->len + n + 1)
            cap *= 2;
        nb = realloc(b->buf, cap);
        if (!nb)
            return -ENOMEM;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return 0;
}

int kiln_file_read(kiln_sandbox *sb, const char *path, uint8_t **data, size_t *len, size_t max_size)
{
    struct membuf b = {.max = max_size ? max_size : DEFAULT_READ_MAX};
    int ret = read_common(sb, path, to_mem, &b);

    if (ret == 0 && !b.buf && !(b.buf = calloc(1, 1)))
        ret = -ENOMEM;
    if (ret < 0) {
        free(b.buf);
        return ret;
    }
    *data = b.buf;
    *len = b.len;
    return 0;
}

struct fdsink {
    int fd;
    uint64_t written;
};

static int to_fd(void *opaque, const uint8_t *p, size_t n)
{
    struct fdsink *s = opaque;
    int ret = write_all(s->fd, p, n);

    if (ret == 0)
        s->written += n;
    return ret;
}

int kiln_file_read_fd(kiln_sandbox *sb, const char *path, int fd, uint64_t *written)
{
    struct fdsink s = {.fd = fd};
    int ret = read_common(sb, path, to_fd, &s);

    if (written)
        *written = s.written;
    return ret;
}

static void stat_copy(const struct kiln_agent_stat *a, struct kiln_stat *st)
{
    *st = (struct kiln_stat){.mode = a->mode,
                             .uid = a->uid,
                             .gid = a->gid,
                             .nlink = a->nlink,
                             .size = a->size,
                             .mtime_ns = a->mtime_ns};
}

int kiln_file_stat(kiln_sandbox *sb, const char *path, struct kiln_stat *st)
{
    struct kiln_agent_stat a;
    struct agent_req *r;
    struct agent_msg *m;
    int ret = request(sb, "stat", KILN_AGENT_STAT, NULL, 0, path, &r);

    if (ret < 0)
        return ret;
    ret = next(sb, r, "stat", path, agent_deadline(ANSWER_TIMEOUT_MS), &m);
    if (ret == 0 && m->type == KILN_AGENT_STAT_RESULT) {
        agent_parse_stat(m->data, m->len, &a);
        stat_copy(&a, st);
    } else if (ret == 0) {
        agent_conn_fail(sb->conn, -EPROTO, "agent protocol violation: STAT answered with %s",
                        agent_type_name(m->type));
        ret = sandbox_errorf(sb, -EPROTO, "stat %s: the agent answered with %s", path,
                             agent_type_name(m->type));
    }
    if (m)
        agent_req_release(r, m);
    agent_req_close(r);
    return ret;
}

void kiln_file_list_free(struct kiln_dirent *entries, size_t count)
{
    for (size_t i = 0; entries && i < count; i++)
        free(entries[i].name);
    free(entries);
}

int kiln_file_list(kiln_sandbox *sb, const char *path, struct kiln_dirent **entries, size_t *count)
{
    struct kiln_dirent *list = NULL;
    size_t n = 0, cap = 0;
    struct kiln_agent_stat a;
    struct agent_req *r;
    struct agent_msg *m;
    const char *name;
    bool end = false;
    int ret = request(sb, "list", KILN_AGENT_LIST, NULL, 0, path, &r);

    if (ret < 0)
        return ret;
    while (!end && (ret = next(sb, r, "list", path, agent_deadline(ANSWER_TIMEOUT_MS), &m)) == 0) {
        if (m->type != KILN_AGENT_LIST_ENTRY) {
            agent_conn_fail(sb->conn, -EPROTO, "agent protocol violation: %s in a LIST",
                            agent_type_name(m->type));
            ret = sandbox_errorf(sb, -EPROTO, "list %s: the agent sent %s", path,
                                 agent_type_name(m->type));
        } else {
            agent_parse_list_entry(m->data, m->len, &a, &name);
            end = (m->flags & KILN_AGENT_F_END) || !name;
            if (name && n == cap) {
                struct kiln_dirent *bigger =
                    realloc(list, (cap = cap ? cap * 2 : 32) * sizeof(*list));
                if (!bigger)
                    ret = -ENOMEM;
                else
                    list = bigger;
            }
            if (name && ret == 0) {
                stat_copy(&a, &list[n].st);
                list[n].name = strdup(name);
                ret = list[n].name ? 0 : -ENOMEM;
                n += ret == 0;
            }
        }
        agent_req_release(r, m);
        if (ret < 0)
            break;
    }
    agent_req_close(r);
    if (ret < 0) {
        kiln_file_list_free(list, n);
        return ret == -ENOMEM ? sandbox_error(sb, ret, "list: out of memory") : ret;
    }
    *entries = list;
    *count = n;
    return 0;
}

int kiln_file_mkdir(kiln_sandbox *sb, const char *path, uint32_t mode, bool parents)
{
    struct kiln_agent_mkdir h = {.mode = mode ? mode : 0755, .parents = parents};
    struct agent_req *r;
    int ret;

    if (mode > 07777)
        return sandbox_errorf(sb, -EINVAL, "mkdir %s: invalid mode %#o (at most 07777)", path,
                              mode);
    ret = request(sb, "mkdir", KILN_AGENT_MKDIR, &h, sizeof(h), path, &r);
    if (ret < 0)
        return ret;
    ret = expect_ok(sb, r, "mkdir", path);
    agent_req_close(r);
    return ret;
}

int kiln_file_remove(kiln_sandbox *sb, const char *path, bool recursive)
{
    struct kiln_agent_remove h = {.recursive = recursive};
    struct agent_req *r;
    int ret = request(sb, "remove", KILN_AGENT_REMOVE, &h, sizeof(h), path, &r);

    if (ret < 0)
        return ret;
    ret = expect_ok(sb, r, "remove", path);
    agent_req_close(r);
    return ret;
}
