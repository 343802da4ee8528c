/* rundir.c: the per-VM runtime directory (control socket, vsock sockets, pid file). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/lib.h"
#include "machine.h"

#define PID_FILE "pid"

bool rundir_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > RUNDIR_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const char *base_dir(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    /* Only an absolute XDG_RUNTIME_DIR counts, as the XDG spec says. */
    if (xdg && xdg[0] == '/') {
        snprintf(buf, len, "%s/kiln", xdg);
        return buf;
    }
    return "/run/kiln";
}

int rundir_path(const char *name, char *out, size_t outlen)
{
    char base[PATH_MAX];
    int n = snprintf(out, outlen, "%s/%s", base_dir(base, sizeof(base)), name);

    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* mkdir -p for the base directory; each level private to the user. */
static int make_dirs(const char *path)
{
    char tmp[PATH_MAX];

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The pid file stays open and flock()ed for the life of the VMM: the lock, not the pid (which
 * the kernel recycles), is what says the directory is in use. One VMM per process (DESIGN.md). */
static int lock_fd = -1;

static void remove_entries(const char *path, bool keep_pid_file)
{
    DIR *d = opendir(path);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        if (e->d_type == DT_DIR || (keep_pid_file && !strcmp(e->d_name, PID_FILE)))
            continue;
        (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

int rundir_create(const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
    char base[PATH_MAX], pidpath[PATH_MAX], text[32];
    ssize_t n;
    int fd, ret;

    if (!rundir_name_valid(name)) {
        snprintf(err, errlen,
                 "invalid VM name '%s': use 1 to %d characters of A-Z a-z 0-9 . _ - "
                 "(not starting with '.')",
                 name ? name : "", RUNDIR_NAME_MAX);
        return -EINVAL;
    }
    if (lock_fd >= 0) {
        snprintf(err, errlen, "this process already owns a runtime directory");
        return -EBUSY;
    }
    ret = rundir_path(name, out, outlen);
    if (ret == 0 && snprintf(pidpath, sizeof(pidpath), "%s/" PID_FILE, out) >= (int)sizeof(pidpath))
        ret = -ENAMETOOLONG;
    if (ret < 0) {
        snprintf(err, errlen, "runtime directory path for '%s' is too long", name);
        return ret;
    }
    ret = make_dirs(base_dir(base, sizeof(base)));
    if (ret < 0) {
        snprintf(err, errlen, "cannot create %s: %s", base, strerror(-ret));
        return ret;
    }
    if (mkdir(out, 0700) < 0 && errno != EEXIST) {
        ret = -errno;
        snprintf(err, errlen, "cannot create %s: %s", out, strerror(errno));
        return ret;
    }
    fd = open(pidpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot open %s: %s", pidpath, strerror(errno));
        return ret;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        ret = errno == EWOULDBLOCK ? -EEXIST : -errno;
        n = pread(fd, text, sizeof(text) - 1, 0);
        text[n > 0 ? n : 0] = '\0';
        text[strcspn(text, "\n")] = '\0';
        if (ret == -EEXIST)
            snprintf(err, errlen, "a VM named '%s' is already running (pid %s, %s)", name,
                     *text ? text : "?", out);
        else
            snprintf(err, errlen, "cannot lock %s: %s", pidpath, strerror(-ret));
        close(fd);
        return ret;
    }
    /* Whatever a dead owner left (sockets, files) goes; the pid file is ours now. */
    remove_entries(out, true);
    snprintf(text, sizeof(text), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, strlen(text), 0) != (ssize_t)strlen(text)) {
        ret = -errno;
        snprintf(err, errlen, "cannot write %s: %s", pidpath, strerror(errno));
        close(fd);
        return ret;
    }
    lock_fd = fd;
    return 0;
}

void rundir_remove(const char *path)
{
    if (path && *path) {
        remove_entries(path, false);
        (void)rmdir(path);
    }
    if (lock_fd >= 0) {
        close(lock_fd);
        lock_fd = -1;
    }
}
