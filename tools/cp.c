/* cp.c: `kiln cp SRC DST`: copies a file between the host and a running sandbox, either way; a
 * guest path is written NAME:/path. Streams in both directions, any size, in bounded memory. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox_cli.h"
#include "tools.h"

static const char usage_cp[] =
    "usage: kiln cp SRC DST\n"
    "\n"
    "Copies one file between the host and a running sandbox: exactly one of SRC and DST is a\n"
    "guest path, written NAME:/absolute/path. A host path of - is stdin or stdout. A DST that\n"
    "is a directory (or ends in /) receives the file under SRC's name. A file copied in keeps\n"
    "its permission bits; missing parent directories in the guest are created.\n"
    "\n"
    "Exit codes: 0 copied, 1 failed (the message says why), 2 bad usage.\n";

/* Splits "NAME:/path" (NAME a valid sandbox name); returns the path, or NULL for a host path. */
static const char *guest_path(char *arg, const char **name)
{
    char *colon = strchr(arg, ':');

    if (!colon || colon == arg || colon[1] != '/' || strchr(arg, '/') < colon)
        return NULL;
    *colon = '\0';
    *name = arg;
    return colon + 1;
}

static int fail(kiln_sandbox *sb, int ret)
{
    char msg[512];

    fprintf(stderr, "kiln cp: %s\n", kiln_sandbox_last_error(sb, msg, sizeof(msg)));
    (void)ret;
    return 1;
}

static int copy_in(kiln_sandbox *sb, const char *src, const char *dst)
{
    struct kiln_file_opts o = {.mode = 0644, .mkdirs = true};
    char path[PATH_MAX + 256], tmp[PATH_MAX];
    struct stat st;
    int fd = strcmp(src, "-") ? open(src, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    int ret;

    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "kiln cp: cannot read %s: %s\n", src, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kiln cp: %s is a directory: kiln cp copies one file\n", src);
        return 1;
    }
    if (S_ISREG(st.st_mode))
        o.mode = st.st_mode & 07777;
    snprintf(path, sizeof(path), "%s", dst);
    if (dst[strlen(dst) - 1] == '/' && strcmp(src, "-")) {
        snprintf(tmp, sizeof(tmp), "%s", src);
        snprintf(path, sizeof(path), "%s%s", dst, basename(tmp));
    }
    ret = kiln_file_write_fd(sb, path, fd, &o);
    if (fd != STDIN_FILENO)
        close(fd);
    return ret < 0 ? fail(sb, ret) : 0;
}

static int copy_out(kiln_sandbox *sb, const char *src, const char *dst)
{
    char path[PATH_MAX + 256], tmp[PATH_MAX];
    struct kiln_stat gst;
    struct stat st;
    int fd, ret;

    snprintf(path, sizeof(path), "%s", dst);
    if (strcmp(dst, "-") && stat(dst, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(tmp, sizeof(tmp), "%s", src);
        snprintf(path, sizeof(path), "%s/%s", dst, basename(tmp));
    }
    /* Stat first: a missing guest file must not leave an empty host file behind. */
    ret = kiln_file_stat(sb, src, &gst);
    if (ret < 0)
        return fail(sb, ret);
    if (S_ISDIR(gst.mode)) {
        fprintf(stderr, "kiln cp: %s is a directory in the guest: kiln cp copies one file\n", src);
        return 1;
    }
    fd = strcmp(dst, "-") ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                                 gst.mode & 0777 ? gst.mode & 0777 : 0644)
                          : STDOUT_FILENO;
    if (fd < 0) {
        fprintf(stderr, "kiln cp: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    ret = kiln_file_read_fd(sb, src, fd, NULL);
    if (fd != STDOUT_FILENO && close(fd) < 0 && ret == 0) {
        fprintf(stderr, "kiln cp: writing %s: %s\n", path, strerror(errno));
        return 1;
    }
    return ret < 0 ? fail(sb, ret) : 0;
}

int cmd_cp(int argc, char **argv)
{
    const char *sname = NULL, *dname = NULL, *spath, *dpath;
    kiln_sandbox *sb;
    int code;

    if (argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
        fputs(usage_cp, stdout);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "kiln cp: give SRC and DST, one of them NAME:/path (kiln cp --help)\n");
        return 2;
    }
    spath = guest_path(argv[0], &sname);
    dpath = guest_path(argv[1], &dname);
    if (!!spath == !!dpath) {
        fprintf(stderr,
                "kiln cp: exactly one of SRC and DST must be a guest path NAME:/path "
                "(got %s)\n",
                spath ? "two" : "none");
        return 2;
    }
    sb = sandbox_cli_attach("cp", spath ? sname : dname);
    if (!sb)
        return 1;
    code = spath ? copy_out(sb, spath, argv[1]) : copy_in(sb, argv[0], dpath);
    kiln_sandbox_destroy(sb);
    return code;
}
