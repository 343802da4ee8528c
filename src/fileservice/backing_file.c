/* backing_file.c: one host file under a chosen guest path as a file-service backing
 * (--file NAME=HOSTPATH); its parent directories appear as empty directories. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileservice.h"

struct file_backing {
    struct fsvc_backing base;
    int fd;
    size_t name_len;
    char name[]; /* canonical guest path */
};

static int file_lookup(struct fsvc_backing *b, const char *path, bool want_fd,
                       struct fsvc_node *out)
{
    struct file_backing *f = (struct file_backing *)b;
    size_t len = strlen(path);
    struct stat st;

    *out = (struct fsvc_node){.fd = -1};
    if (len == f->name_len && !memcmp(path, f->name, len)) {
        if (fstat(f->fd, &st) < 0)
            return -errno;
        out->kind = FSVC_FILE;
        out->size = (uint64_t)st.st_size; /* it may have grown or shrunk since */
        out->fd = want_fd ? f->fd : -1;
        return 0;
    }
    if (len == 0 || (len < f->name_len && !memcmp(path, f->name, len) && f->name[len] == '/')) {
        out->kind = FSVC_DIR;
        return 0;
    }
    return -ENOENT;
}

static void file_destroy(struct fsvc_backing *b)
{
    struct file_backing *f = (struct file_backing *)b;

    close(f->fd);
    free(f);
}

static const struct fsvc_backing_ops file_ops = {.lookup = file_lookup, .destroy = file_destroy};

static int check_name(const char *name, size_t len, char *canon, size_t canonlen)
{
    return fsvc_path_normalize((const uint8_t *)name, len, canon, canonlen) < 0 || !canon[0]
               ? -EINVAL
               : 0;
}

int fsvc_file_spec_check(const char *spec, size_t *name_len, char *err, size_t errlen)
{
    const char *eq = strchr(spec, '=');
    char canon[KILN_FS_MAX_PATH + 1];

    if (!eq || eq == spec || !eq[1]) {
        snprintf(err, errlen,
                 "invalid --file '%s': give NAME=HOSTPATH, e.g. config/init.env=./my.env", spec);
        return -EINVAL;
    }
    *name_len = (size_t)(eq - spec);
    if (check_name(spec, *name_len, canon, sizeof(canon)) < 0) {
        snprintf(err, errlen,
                 "invalid --file name '%.*s': a UTF-8 path below the root, components up to "
                 "%u bytes, no '..'",
                 (int)*name_len, spec, KILN_FS_MAX_NAME);
        return -EINVAL;
    }
    return 0;
}

struct fsvc_backing *fsvc_backing_file_create(const char *name, const char *host_path, char *err,
                                              size_t errlen)
{
    char canon[KILN_FS_MAX_PATH + 1];
    struct file_backing *f;
    struct stat st;
    int saved;

    if (check_name(name, strlen(name), canon, sizeof(canon)) < 0) {
        snprintf(err, errlen, "invalid --file name '%s': a path below the root without '..'", name);
        errno = EINVAL;
        return NULL;
    }
    f = calloc(1, sizeof(*f) + strlen(canon) + 1);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->base.ops = &file_ops;
    f->name_len = strlen(canon);
    memcpy(f->name, canon, f->name_len + 1);
    f->fd = open(host_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f->fd < 0 || fstat(f->fd, &st) < 0) {
        saved = errno;
        snprintf(err, errlen, "cannot serve --file %s=%s: %s", name, host_path, strerror(saved));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        saved = EINVAL;
        snprintf(err, errlen, "cannot serve --file %s=%s: %s", name, host_path,
                 S_ISDIR(st.st_mode) ? "a directory (use --files DIR)" : "not a regular file");
        goto fail;
    }
    return &f->base;

fail:
    if (f->fd >= 0)
        close(f->fd);
    free(f);
    errno = saved;
    return NULL;
}
