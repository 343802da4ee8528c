/* files.c: the unikernel's files, confined beneath the --mount directory: path checks, openat2
 * with RESOLVE_BENEATH (or a careful component walk), and a bounded descriptor table. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/lib.h"
#include "uk.h"

#define PATH_BUF (KILN_HVC_MAX_PATH + 1)

int uk_files_init(struct uk_files *f, const char *mount)
{
    memset(f, 0, sizeof(*f));
    f->root_fd = -1;
    for (unsigned i = 0; i < UK_MAX_FILES; i++)
        f->fds[i] = -1;
    if (!mount)
        return 0;
    f->root_fd = open(mount, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return f->root_fd < 0 ? -errno : 0;
}

void uk_files_close_all(struct uk_files *f)
{
    for (unsigned i = 0; i < UK_MAX_FILES; i++) {
        if (f->fds[i] >= 0)
            close(f->fds[i]);
        f->fds[i] = -1;
    }
    if (f->root_fd >= 0)
        close(f->root_fd);
    f->root_fd = -1;
}

/* Copies a guest path into buf as a C string after the checks every file call shares. */
static int check_path(const struct uk_files *f, const char *path, size_t len, char *buf)
{
    if (f->root_fd < 0)
        return -EACCES;
    if (len == 0 || len > KILN_HVC_MAX_PATH || memchr(path, '\0', len))
        return -EINVAL;
    if (path[0] == '/')
        return -EXDEV; /* absolute: outside the mount by definition */
    memcpy(buf, path, len);
    buf[len] = '\0';
    return 0;
}

static int host_flags(uint32_t flags, int *out)
{
    static const uint32_t known = KILN_HVC_O_ACCMODE | KILN_HVC_O_CREAT | KILN_HVC_O_EXCL |
                                  KILN_HVC_O_TRUNC | KILN_HVC_O_APPEND;
    int fl;

    if ((flags & ~known) || (flags & KILN_HVC_O_ACCMODE) == KILN_HVC_O_ACCMODE)
        return -EINVAL;
    fl = (flags & KILN_HVC_O_ACCMODE) == KILN_HVC_O_WRONLY ? O_WRONLY
         : (flags & KILN_HVC_O_ACCMODE) == KILN_HVC_O_RDWR ? O_RDWR
                                                           : O_RDONLY;
    if (flags & KILN_HVC_O_CREAT)
        fl |= O_CREAT;
    if (flags & KILN_HVC_O_EXCL)
        fl |= O_EXCL;
    if (flags & KILN_HVC_O_TRUNC)
        fl |= O_TRUNC;
    if (flags & KILN_HVC_O_APPEND)
        fl |= O_APPEND;
    /* Never block the vCPU on a FIFO, never take a controlling terminal. */
    *out = fl | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    return 0;
}

/* A failed O_NOFOLLOW open: a symlink in the way is an escape attempt as far as the guest
 * knows (-EXDEV, as openat2 reports one); anything else keeps its errno. */
static int nofollow_error(int dir, const char *name, int err)
{
    struct stat st;

    if ((err == ELOOP || err == ENOTDIR) && fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        return -EXDEV;
    return -err;
}

/* Without openat2: one component at a time, refusing "..", and every symlink (O_NOFOLLOW), so
 * nothing can lead outside. Returns the final component's directory fd and name. */
static int walk_parent(int root, char *path, int *dir_out, const char **name_out)
{
    int dir = root;
    char *comp = path, *slash;

    while ((slash = strchr(comp, '/'))) {
        int next;
        *slash = '\0';
        if (!strcmp(comp, ".."))
            goto escape;
        if (*comp && strcmp(comp, ".")) {
            next = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (next < 0) {
                int ret = nofollow_error(dir, comp, errno);
                if (dir != root)
                    close(dir);
                return ret;
            }
            if (dir != root)
                close(dir);
            dir = next;
        }
        comp = slash + 1;
    }
    if (!strcmp(comp, ".."))
        goto escape;
    *dir_out = dir;
    *name_out = comp;
    return 0;
escape:
    if (dir != root)
        close(dir);
    return -EXDEV;
}

static int open_beneath(const struct uk_files *f, char *path, int flags, mode_t mode)
{
    struct open_how how = {.flags = (uint64_t)flags,
                           .mode = (flags & O_CREAT) ? mode : 0,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    const char *name = NULL;
    int dir = -1, fd, ret;

    if (!f->force_walk) {
        fd = (int)syscall(SYS_openat2, f->root_fd, path, &how, sizeof(how));
        if (fd >= 0 || errno != ENOSYS)
            return fd >= 0 ? fd : -errno;
    }
    ret = walk_parent(f->root_fd, path, &dir, &name);
    if (ret < 0)
        return ret;
    fd = openat(dir, *name ? name : ".", flags | O_NOFOLLOW, mode);
    ret = fd >= 0 ? fd : nofollow_error(dir, *name ? name : ".", errno);
    if (dir != f->root_fd)
        close(dir);
    return ret;
}

int uk_files_open(struct uk_files *f, const char *path, size_t len, uint32_t flags, uint32_t mode)
{
    char buf[PATH_BUF];
    struct stat st = {0};
    int fl = 0, fd, slot, ret;

    ret = check_path(f, path, len, buf);
    if (ret == 0)
        ret = host_flags(flags, &fl);
    if (ret < 0)
        return ret;
    for (slot = 0; slot < UK_MAX_FILES && f->fds[slot] >= 0; slot++)
        ;
    if (slot == UK_MAX_FILES)
        return -EMFILE;
    fd = open_beneath(f, buf, fl, mode & 0777);
    if (fd < 0)
        return fd;
    /* Regular files only: no devices, FIFOs, sockets or directories. */
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL; /* st is zeroed if fstat failed */
        close(fd);
        return ret;
    }
    /* O_NONBLOCK served the open; regular files ignore it, but drop it all the same. */
    (void)fcntl(fd, F_SETFL, fl & O_APPEND);
    f->fds[slot] = fd;
    return UK_FD_FIRST + slot;
}

int uk_files_unlink(struct uk_files *f, const char *path, size_t len)
{
    char buf[PATH_BUF], *slash;
    const char *name = buf;
    int dir = -1, ret;

    ret = check_path(f, path, len, buf);
    if (ret < 0)
        return ret;
    slash = strrchr(buf, '/');
    if (slash) {
        /* The parent, resolved beneath the mount exactly as open does. */
        *slash = '\0';
        name = slash + 1;
        dir = open_beneath(f, buf, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        if (dir < 0)
            return dir;
    }
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
        ret = !strcmp(name, "..") ? -EXDEV : -EINVAL;
    } else {
        ret = unlinkat(dir >= 0 ? dir : f->root_fd, name, 0) < 0 ? -errno : 0;
    }
    if (dir >= 0)
        close(dir);
    return ret;
}

int uk_files_host_fd(const struct uk_files *f, uint64_t fd)
{
    if (fd < UK_FD_FIRST)
        return (int)fd;
    if (fd - UK_FD_FIRST >= UK_MAX_FILES || f->fds[fd - UK_FD_FIRST] < 0)
        return -EBADF;
    return f->fds[fd - UK_FD_FIRST];
}

int uk_files_close(struct uk_files *f, uint64_t fd)
{
    if (fd < UK_FD_FIRST || fd - UK_FD_FIRST >= UK_MAX_FILES || f->fds[fd - UK_FD_FIRST] < 0)
        return -EBADF;
    close(f->fds[fd - UK_FD_FIRST]);
    f->fds[fd - UK_FD_FIRST] = -1;
    return 0;
}
