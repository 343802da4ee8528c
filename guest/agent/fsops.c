/* fsops.c: kiln-agent's path operations: STAT, LIST (streamed while the connection has room),
 * MKDIR (-p) and REMOVE (-r), docs/agent-protocol.md "Files". */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

static void fill_stat(struct kiln_agent_stat *out, const struct stat *st)
{
    *out = (struct kiln_agent_stat){
        .mode = st->st_mode,
        .uid = st->st_uid,
        .gid = st->st_gid,
        .nlink = (uint32_t)st->st_nlink,
        .size = (uint64_t)st->st_size,
        .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
    };
}

/* Parses a path-only payload; returns 0 with *path set, 0 with the request failed (BAD_PATH),
 * or PROTOCOL for the connection to die of. */
static int path_arg(struct req *r, const uint8_t *p, uint32_t len, const char **path)
{
    *path = NULL;
    int st = agent_parse_path(p, len, path);
    if (st == KILN_AGENT_E_PROTOCOL)
        return st;
    if (st) {
        *path = NULL;
        req_fail(r, (uint32_t)st, 0, "%s: bad path (absolute, at most %u bytes, no NUL)",
                 agent_type_name(r->type), KILN_AGENT_MAX_PATH);
    }
    return 0;
}

static void fail_path(struct req *r, int err, const char *what, const char *path)
{
    req_fail(r, agent_status_from_errno(err), err, "%s %s: %s", what, path, strerror(err));
}

static void ok(struct req *r)
{
    conn_send(r->conn, KILN_AGENT_OK, 0, r->id, NULL, 0, NULL, 0);
    r->done = true;
}

int file_stat(struct req *r, const uint8_t *p, uint32_t len)
{
    const char *path;
    int st = path_arg(r, p, len, &path);
    if (st || !path)
        return st;
    struct stat sb;
    if (stat(path, &sb) < 0) {
        fail_path(r, errno, "stat", path);
        return 0;
    }
    struct kiln_agent_stat out;
    fill_stat(&out, &sb);
    conn_send(r->conn, KILN_AGENT_STAT_RESULT, 0, r->id, &out, sizeof(out), NULL, 0);
    r->done = true;
    return 0;
}

int file_list(struct req *r, const uint8_t *p, uint32_t len)
{
    const char *path;
    int st = path_arg(r, p, len, &path);
    if (st || !path)
        return st;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || !(r->dir = fdopendir(fd))) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        fail_path(r, err, "opendir", path);
    }
    return 0;
}

void file_list_pump(struct req *r)
{
    /* An entry is at most 32 + 256 bytes; stop while the connection is full. */
    while (!r->done && conn_room(r->conn) >= 512) {
        errno = 0;
        struct dirent *d = readdir(r->dir);
        if (!d) {
            if (errno) {
                req_fail_errno(r, errno, "readdir");
                return;
            }
            conn_send(r->conn, KILN_AGENT_LIST_ENTRY, KILN_AGENT_F_END, r->id, NULL, 0, NULL, 0);
            r->done = true;
            return;
        }
        if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
            continue;
        struct stat sb;
        if (fstatat(dirfd(r->dir), d->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* removed since readdir */
        struct kiln_agent_stat out;
        fill_stat(&out, &sb);
        conn_send(r->conn, KILN_AGENT_LIST_ENTRY, 0, r->id, &out, sizeof(out), d->d_name,
                  strlen(d->d_name) + 1);
    }
}

int file_mkdir_p(const char *path, mode_t mode)
{
    char buf[KILN_AGENT_MAX_PATH + 1];
    size_t n = strlen(path);
    if (n > KILN_AGENT_MAX_PATH)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    /* Create each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        if (buf[i - 1] == '/') /* "//" or a trailing '/' */
            continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, mode) < 0) {
            if (errno != EEXIST)
                return -errno;
            struct stat sb;
            if (stat(buf, &sb) < 0)
                return -errno;
            if (!S_ISDIR(sb.st_mode))
                return c ? -ENOTDIR : -EEXIST;
        }
        buf[i] = c;
    }
    return 0;
}

int file_mkdir(struct req *r, const uint8_t *p, uint32_t len)
{
    struct kiln_agent_mkdir m;
    const char *path;
    int st = agent_parse_mkdir(p, len, &m, &path);
    if (st == KILN_AGENT_E_PROTOCOL)
        return st;
    if (st) {
        req_fail(r, (uint32_t)st, 0, "MKDIR: bad path");
        return 0;
    }
    mode_t mode = m.mode ? m.mode : 0755;
    int err = m.parents ? -file_mkdir_p(path, mode) : (mkdir(path, mode) < 0 ? errno : 0);
    if (err)
        fail_path(r, err, "mkdir", path);
    else
        ok(r);
    return 0;
}

static int rm_err;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    (void)flag;
    if (remove(path) < 0 && errno != ENOENT) {
        rm_err = errno;
        return 1;
    }
    return 0;
}

int file_remove(struct req *r, const uint8_t *p, uint32_t len)
{
    struct kiln_agent_remove m;
    const char *path;
    int st = agent_parse_remove(p, len, &m, &path);
    if (st == KILN_AGENT_E_PROTOCOL)
        return st;
    if (st) {
        req_fail(r, (uint32_t)st, 0, "REMOVE: bad path");
        return 0;
    }
    struct stat sb;
    int err = 0;
    if (lstat(path, &sb) < 0) {
        err = errno;
    } else if (S_ISDIR(sb.st_mode) && m.recursive) {
        rm_err = 0;
        if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) != 0)
            err = rm_err ? rm_err : errno;
    } else if (remove(path) < 0) {
        err = errno == EEXIST ? ENOTEMPTY : errno;
    }
    if (err)
        fail_path(r, err, "remove", path);
    else
        ok(r);
    return 0;
}
