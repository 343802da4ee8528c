/* files.c: kiln-agent's streamed file transfers: FILE_WRITE (host data in, fsync, OK) and
 * FILE_READ (file data out within the WINDOW credit), docs/agent-protocol.md "Files". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

/* FILE_AS_USER: the file-system identity of the open (the agent is single-threaded, and the
 * identity is the thread's, so switching around one call is exact). */
static void as_user(const struct kiln_agent_file_open *h, bool on)
{
    if (!(h->flags & KILN_AGENT_FILE_AS_USER))
        return;
    setfsgid(on ? h->gid : 0);
    setfsuid(on ? h->uid : 0);
}

static char *parent_of(const char *path)
{
    char *dup = strdup(path);
    if (!dup)
        return NULL;
    char *slash = strrchr(dup, '/');
    if (slash == dup)
        slash[1] = 0;
    else
        *slash = 0;
    return dup;
}

/* Opens path and refuses what the agent cannot stream without blocking (FIFOs, sockets) and
 * directories. Returns the fd or -errno; *what names the failed step. */
static int open_checked(const char *path, int flags, mode_t mode, const char **what)
{
    *what = "open";
    int fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, mode);
    if (fd < 0)
        return -errno;
    struct stat st;
    int err = 0;
    *what = "fstat";
    if (fstat(fd, &st) < 0)
        err = -errno;
    else if (S_ISDIR(st.st_mode))
        err = -EISDIR;
    else if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode))
        err = -EIO, *what = "not a regular file";
    else if (S_ISREG(st.st_mode) && fcntl(fd, F_SETFL, flags & O_APPEND) < 0)
        err = -errno;
    if (err) {
        close(fd);
        return err;
    }
    return fd;
}

static void fail_path(struct req *r, int err, const char *what, const char *path)
{
    req_fail(r, agent_status_from_errno(err), err, "%s %s: %s", what, path, strerror(err));
}

int file_write_start(struct req *r, const uint8_t *p, uint32_t len)
{
    struct agent_file_msg m;
    int st = agent_parse_file_open(p, len, &m);
    if (st == KILN_AGENT_E_PROTOCOL)
        return st;
    if (st) {
        req_fail(r, (uint32_t)st, 0, "FILE_WRITE: %s", agent_status_name((uint32_t)st));
        return 0;
    }
    const char *what = "mkdir -p";
    int fd = 0;
    as_user(&m.h, true);
    if (m.h.flags & KILN_AGENT_FILE_MKDIRS) {
        char *parent = parent_of(m.path);
        fd = parent ? file_mkdir_p(parent, 0755) : -ENOMEM;
        free(parent);
    }
    int oflags = O_WRONLY | O_CREAT | (m.h.flags & KILN_AGENT_FILE_APPEND ? O_APPEND : O_TRUNC);
    if (fd == 0)
        fd = open_checked(m.path, oflags, m.h.mode ? m.h.mode : 0644, &what);
    as_user(&m.h, false);
    if (fd >= 0 && (m.h.flags & KILN_AGENT_FILE_CHOWN) && fchown(fd, m.h.uid, m.h.gid) < 0) {
        what = "chown";
        int err = -errno;
        close(fd);
        fd = err;
    }
    if (fd < 0) {
        fail_path(r, -fd, what, m.path);
        return 0;
    }
    r->fd = fd;
    r->in_credit = KILN_AGENT_INITIAL_WINDOW;
    return 0;
}

int file_data(struct req *r, uint16_t flags, const uint8_t *p, uint32_t len)
{
    if (len > r->in_credit)
        return KILN_AGENT_E_PROTOCOL;
    r->in_credit -= len;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(r->fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            req_fail_errno(r, n < 0 ? errno : EIO, "write");
            return 0;
        }
        done += (size_t)n;
    }
    if (len)
        req_grant(r, KILN_AGENT_FILE_DATA, len);
    if (flags & KILN_AGENT_F_END) {
        int fd = r->fd;
        r->fd = -1;
        /* fsync fails with EINVAL on what cannot sync (a character device): nothing to do */
        if ((fsync(fd) < 0 && errno != EINVAL && errno != EROFS) || close(fd) < 0) {
            req_fail_errno(r, errno, "fsync");
            return 0;
        }
        conn_send(r->conn, KILN_AGENT_OK, 0, r->id, NULL, 0, NULL, 0);
        r->done = true;
    }
    return 0;
}

int file_read_start(struct req *r, const uint8_t *p, uint32_t len)
{
    struct agent_file_msg m;
    int st = agent_parse_file_open(p, len, &m);
    if (st == KILN_AGENT_E_PROTOCOL)
        return st;
    if (st) {
        req_fail(r, (uint32_t)st, 0, "FILE_READ: %s", agent_status_name((uint32_t)st));
        return 0;
    }
    const char *what;
    as_user(&m.h, true);
    int fd = open_checked(m.path, O_RDONLY, 0, &what);
    as_user(&m.h, false);
    if (fd < 0) {
        fail_path(r, -fd, what, m.path);
        return 0;
    }
    r->fd = fd;
    r->pos = m.h.offset;
    r->remaining = m.h.length ? m.h.length : UINT64_MAX;
    r->out_credit[0] = KILN_AGENT_INITIAL_WINDOW;
    return 0;
}

static void read_pump(struct req *r)
{
    while (!r->done) {
        size_t n = conn_room(r->conn);
        if (n > r->out_credit[0])
            n = (size_t)r->out_credit[0];
        if (n > r->remaining)
            n = (size_t)r->remaining;
        if (n == 0 && r->remaining)
            return; /* no credit or no room: WINDOW or the socket wakes us */
        uint8_t *buf = conn_frame_begin(r->conn, n);
        if (!buf)
            return;
        ssize_t k = n ? pread(r->fd, buf, n, (off_t)r->pos) : 0;
        if (k < 0 && errno == ESPIPE) /* a character device without positions */
            k = read(r->fd, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno != EAGAIN) {
            req_fail_errno(r, errno, "read");
            return;
        }
        if (k < 0)
            k = 0; /* a character device with nothing more now: the end */
        r->pos += (uint64_t)k;
        r->remaining -= (uint64_t)k;
        r->out_credit[0] -= (uint64_t)k;
        bool end = k == 0 || r->remaining == 0;
        conn_frame_commit(r->conn, KILN_AGENT_FILE_DATA, end ? KILN_AGENT_F_END : 0, r->id,
                          (size_t)k);
        if (end)
            r->done = true;
    }
}

void file_pump(struct req *r)
{
    if (r->type == KILN_AGENT_FILE_READ)
        read_pump(r);
    else if (r->type == KILN_AGENT_LIST)
        file_list_pump(r);
}

void file_release(struct req *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->dir)
        closedir(r->dir);
    r->dir = NULL;
}
