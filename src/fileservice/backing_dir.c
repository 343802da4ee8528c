/* backing_dir.c: a host directory as a file-service backing (--files DIR): every lookup stays
 * beneath the directory, whatever symlinks, `..` or renames the host side holds. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "fileservice.h"

struct dir_backing {
    struct fsvc_backing base;
    int root_fd; /* O_PATH | O_DIRECTORY */
    bool walk_only;
};

/* RESOLVE_BENEATH refuses `..` above the root and absolute symlinks (EXDEV) and allows
 * symlinks that stay inside; RESOLVE_NO_MAGICLINKS refuses /proc-style links. */
static int open_beneath(int root, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};

    for (int tries = 0; tries < 8; tries++) {
        long fd = syscall(SYS_openat2, root, path, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno != EAGAIN && errno != EINTR) /* EAGAIN: a rename raced the walk */
            return -errno;
    }
    return -EAGAIN;
}

/* The fallback without openat2: one component at a time, never following a symlink. */
static int open_walk(int root, const char *path, int flags)
{
    int cur = root, ret = 0;
    char comp[KILN_FS_MAX_NAME + 1];

    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        bool last = !slash;
        struct stat st;
        int fd;

        if (len > KILN_FS_MAX_NAME) {
            ret = -ENAMETOOLONG;
            break;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        fd = openat(cur, comp, (last ? flags : O_PATH) | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            /* O_NOFOLLOW on a final symlink opened for reading: ELOOP. */
            ret = errno == ELOOP ? -EXDEV : -errno;
            break;
        }
        if (fstat(fd, &st) < 0)
            ret = -errno;
        else if (S_ISLNK(st.st_mode))
            ret = -EXDEV;
        if (ret < 0) {
            close(fd);
            break;
        }
        if (cur != root)
            close(cur);
        cur = fd;
        if (last)
            return fd;
        if (!S_ISDIR(st.st_mode)) {
            ret = -ENOTDIR;
            break;
        }
        p = slash + 1;
    }
    if (cur != root)
        close(cur);
    return ret;
}

static int open_at(struct dir_backing *d, const char *path, int flags)
{
    int fd;

    if (!d->walk_only) {
        fd = open_beneath(d->root_fd, path, flags);
        if (fd != -ENOSYS && fd != -EPERM) /* EPERM: a seccomp filter that refuses openat2 */
            return fd;
        d->walk_only = true;
    }
    return open_walk(d->root_fd, path, flags);
}

static int node_from_fd(int fd, struct fsvc_node *out)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return -errno;
    out->kind = S_ISREG(st.st_mode) ? FSVC_FILE : S_ISDIR(st.st_mode) ? FSVC_DIR : FSVC_OTHER;
    out->size = out->kind == FSVC_FILE ? (uint64_t)st.st_size : 0;
    return 0;
}

static int dir_lookup(struct fsvc_backing *b, const char *path, bool want_fd, struct fsvc_node *out)
{
    struct dir_backing *d = (struct dir_backing *)b;
    int fd, ret;

    *out = (struct fsvc_node){.fd = -1};
    if (!*path)
        return node_from_fd(d->root_fd, out);
    fd = open_at(d, path, O_PATH);
    if (fd < 0)
        return fd == -ENOTDIR ? -ENOENT : fd == -ELOOP ? -EXDEV : fd;
    ret = node_from_fd(fd, out);
    close(fd);
    if (ret < 0 || out->kind != FSVC_FILE || !want_fd)
        return ret;
    /* Only now open for reading, and never block: a FIFO swapped in since is refused below. */
    fd = open_at(d, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return fd == -ENOTDIR ? -ENOENT : fd == -ELOOP ? -EXDEV : fd;
    ret = node_from_fd(fd, out);
    if (ret < 0 || out->kind != FSVC_FILE) {
        close(fd);
        return ret;
    }
    out->fd = fd;
    out->owned = true;
    return 0;
}

static void dir_destroy(struct fsvc_backing *b)
{
    struct dir_backing *d = (struct dir_backing *)b;

    close(d->root_fd);
    free(d);
}

static const struct fsvc_backing_ops dir_ops = {.lookup = dir_lookup, .destroy = dir_destroy};

struct fsvc_backing *fsvc_backing_dir_create(const char *dir, bool walk_only, char *err,
                                             size_t errlen)
{
    struct dir_backing *d = calloc(1, sizeof(*d));
    int saved;

    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base.ops = &dir_ops;
    d->walk_only = walk_only;
    d->root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (d->root_fd < 0) {
        saved = errno;
        snprintf(err, errlen, "cannot serve --files %s: %s", dir,
                 saved == ENOTDIR ? "not a directory" : strerror(saved));
        free(d);
        errno = saved;
        return NULL;
    }
    return &d->base;
}
