/* kiln-fetch.c: the guest's client of kiln's read-only file service (docs/file-service.md): stat,
 * cat or copy one file from the host over vsock. Static (musl); no kiln code but the ABI header.
 *
 *   kiln-fetch [-q] [-t MS] [-p PORT] [-c CID] [-u UNIXPATH] stat PATH | cat PATH | get PATH DEST
 *
 * Exit codes: 0 done, 1 error, 2 usage, 3 not found, 4 another refusal (invalid path, not a file,
 * ...), 5 no service (no vsock, nothing listening, or no answer within the timeout). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "kiln/fileservice.h"

/* From <linux/vm_sockets.h>, which musl's include path lacks. */
#define VMADDR_CID_HOST 2
struct sockaddr_vm {
    sa_family_t svm_family;
    unsigned short svm_reserved1;
    unsigned int svm_port;
    unsigned int svm_cid;
    unsigned char svm_flags;
    unsigned char svm_zero[3];
};
_Static_assert(sizeof(struct sockaddr_vm) == 16, "sockaddr_vm is 16 bytes");

enum { EXIT_ERR = 1, EXIT_USAGE = 2, EXIT_NOTFOUND = 3, EXIT_REFUSED = 4, EXIT_NOSERVICE = 5 };
#define WINDOW 4 /* ReadFile requests in flight */

static int quiet;
static const char *statuses[] = {"success",       "not found",     "not a file",
                                 "invalid path",  "read past end", "I/O error on the host",
                                 "read too large"};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int fail(int code, const char *fmt, const char *a, const char *b)
{
    if (!quiet || (code != EXIT_NOTFOUND && code != EXIT_NOSERVICE)) {
        fprintf(stderr, "kiln-fetch: ");
        fprintf(stderr, fmt, a, b);
        fputc('\n', stderr);
    }
    return code;
}

static int io_all(int fd, void *buf, size_t len, int wr)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = wr ? write(fd, (char *)buf + done, len - done)
                       : read(fd, (char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? -EPIPE : -errno;
        done += (size_t)n;
    }
    return 0;
}

/* Connects with a timeout (non-blocking connect, then poll). Returns the fd or -errno. */
static int dial(const char *unix_path, unsigned cid, unsigned port, int timeout_ms)
{
    struct sockaddr_vm vm = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = cid};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr *sa = (struct sockaddr *)&vm;
    socklen_t salen = sizeof(vm);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    struct pollfd pfd;
    int fd, err = 0;
    socklen_t errlen = sizeof(err);

    if (unix_path) {
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", unix_path);
        sa = (struct sockaddr *)&un;
        salen = sizeof(un);
    }
    fd = socket(unix_path ? AF_UNIX : AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, sa, salen) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN)
            goto fail;
        pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, timeout_ms) != 1) {
            errno = ETIMEDOUT;
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err) {
            errno = err ? err : errno;
            goto fail;
        }
    }
    /* Blocking from here on, each read or write bounded by the same timeout. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        goto fail;
    return fd;
fail:
    err = -errno;
    close(fd);
    return err;
}

/* Message builders: each appends one request at m and returns its size. */
static size_t msg_version(uint8_t *m)
{
    memset(m, 0, 16);
    put32(m, 16);
    m[4] = KILN_FS_MSG_VERSION_REQUEST;
    put32(m + 8, KILN_FS_VERSION);
    return 16;
}

static size_t msg_info(uint8_t *m, const char *path, size_t len)
{
    memset(m, 0, 8);
    put32(m, (uint32_t)(8 + len));
    m[4] = KILN_FS_MSG_GET_FILE_INFO;
    memcpy(m + 8, path, len);
    return 8 + len;
}

static size_t msg_read(uint8_t *m, const char *path, size_t len, uint64_t off, uint32_t count)
{
    memset(m, 0, 24);
    put32(m, (uint32_t)(24 + len));
    m[4] = KILN_FS_MSG_READ_FILE;
    put32(m + 8, count);
    put32(m + 16, (uint32_t)off);
    put32(m + 20, (uint32_t)(off >> 32));
    memcpy(m + 24, path, len);
    return 24 + len;
}

static int recv_version(int fd)
{
    uint8_t m[16];

    if (io_all(fd, m, 16, 0) < 0)
        return fail(EXIT_NOSERVICE, "no answer to the version handshake%s%s", "", "");
    if (get32(m) != 16 || m[4] != KILN_FS_MSG_VERSION_RESPONSE)
        return fail(EXIT_ERR, "malformed VersionResponse%s%s", "", "");
    if (get32(m + 8) != KILN_FS_VERSION_SUPPORTED)
        return fail(EXIT_ERR, "the host does not speak file service version 1%s%s", "", "");
    return 0;
}

static int status_exit(uint32_t st, const char *path)
{
    const char *name = st < sizeof(statuses) / sizeof(statuses[0]) ? statuses[st] : "unknown";
    return fail(st == KILN_FS_NOT_FOUND ? EXIT_NOTFOUND : EXIT_REFUSED, "%s: %s", path, name);
}

/* The GetFileInfoResponse. Returns 0 with *is_dir and *size, or an exit code. */
static int recv_info(int fd, const char *path, int *is_dir, uint64_t *size)
{
    uint8_t m[24];

    if (io_all(fd, m, 24, 0) < 0)
        return fail(EXIT_ERR, "%s: the connection broke%s", path, "");
    if (get32(m) != 24 || m[4] != KILN_FS_MSG_GET_FILE_INFO_RESPONSE)
        return fail(EXIT_ERR, "%s: malformed GetFileInfoResponse%s", path, "");
    if (get32(m + 8) != KILN_FS_SUCCESS)
        return status_exit(get32(m + 8), path);
    *is_dir = !!(get32(m + 12) & KILN_FS_FLAG_DIRECTORY);
    *size = (uint64_t)get32(m + 16) | (uint64_t)get32(m + 20) << 32;
    return 0;
}

static int send_read(int fd, const char *path, uint64_t off, uint32_t count)
{
    static uint8_t m[24 + KILN_FS_MAX_PATH];

    return io_all(fd, m, msg_read(m, path, strlen(path), off, count), 1);
}

/* Copies the file to out in KILN_FS_MAX_READ chunks, WINDOW requests in flight. */
static int copy(int fd, const char *path, uint64_t size, int out)
{
    static uint8_t buf[KILN_FS_MAX_READ];
    /* The first ReadFile (offset 0, KILN_FS_MAX_READ) went out with the GetFileInfo. */
    uint64_t sent = size < KILN_FS_MAX_READ ? size : KILN_FS_MAX_READ, done = 0;
    unsigned inflight = 1;
    int eof = 0;

    while (done < size || inflight) {
        while (!eof && inflight < WINDOW && sent < size) {
            uint32_t n =
                size - sent < KILN_FS_MAX_READ ? (uint32_t)(size - sent) : KILN_FS_MAX_READ;
            if (send_read(fd, path, sent, n) < 0)
                return fail(EXIT_ERR, "%s: the connection broke%s", path, "");
            sent += n;
            inflight++;
        }
        if (!inflight)
            break;
        uint8_t h[16];
        if (io_all(fd, h, 16, 0) < 0)
            return fail(EXIT_ERR, "%s: the connection broke%s", path, "");
        uint32_t st = get32(h + 8), n = get32(h + 12);
        if (h[4] != KILN_FS_MSG_READ_FILE_RESPONSE || get32(h) != 16 + n || n > KILN_FS_MAX_READ)
            return fail(EXIT_ERR, "%s: malformed ReadFileResponse%s", path, "");
        inflight--;
        if (io_all(fd, buf, n, 0) < 0)
            return fail(EXIT_ERR, "%s: the connection broke%s", path, "");
        if (eof)
            continue; /* the file shrank: drain what is still in flight */
        if (st != KILN_FS_SUCCESS)
            return status_exit(st, path);
        if (n && io_all(out, buf, n, 1) < 0)
            return fail(EXIT_ERR, "%s: write failed: %s", path, strerror(errno));
        done += n;
        if (n < KILN_FS_MAX_READ && done < size)
            eof = 1;
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: kiln-fetch [-q] [-t MS] [-p PORT] [-c CID] [-u UNIXPATH] "
                    "stat PATH | cat PATH | get PATH DEST\n");
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    unsigned port = KILN_FS_PORT, cid = VMADDR_CID_HOST;
    int timeout_ms = 2000, opt, fd, ret, is_dir = 0, out = STDOUT_FILENO;
    const char *unix_path = NULL, *cmd, *path;
    uint64_t size = 0;
    static uint8_t first[16 + 8 + 24 + 2 * KILN_FS_MAX_PATH];
    size_t len;

    while ((opt = getopt(argc, argv, "qt:p:c:u:")) != -1) {
        switch (opt) {
        case 'q':
            quiet = 1;
            break;
        case 't':
            timeout_ms = atoi(optarg);
            break;
        case 'p':
            port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            cid = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'u':
            unix_path = optarg;
            break;
        default:
            return usage();
        }
    }
    if (argc - optind < 2 || timeout_ms <= 0)
        return usage();
    cmd = argv[optind];
    path = argv[optind + 1];
    if (strcmp(cmd, "stat") && strcmp(cmd, "cat") && strcmp(cmd, "get"))
        return usage();
    if (!strcmp(cmd, "get") != (argc - optind == 3) || argc - optind > 3)
        return usage();
    if (strlen(path) > KILN_FS_MAX_PATH)
        return fail(EXIT_USAGE, "%s: longer than %s bytes", path, "4096");
    fd = dial(unix_path, cid, port, timeout_ms);
    if (fd < 0)
        return fail(EXIT_NOSERVICE, "cannot reach the file service: %s%s", strerror(-fd), "");
    /* One write, one round trip: VersionRequest, GetFileInfo and, to fetch, the first ReadFile
     * (a file up to 64 KiB needs no more). The service answers them in order. */
    len = msg_version(first);
    len += msg_info(first + len, path, strlen(path));
    if (strcmp(cmd, "stat"))
        len += msg_read(first + len, path, strlen(path), 0, KILN_FS_MAX_READ);
    if (io_all(fd, first, len, 1) < 0)
        return fail(EXIT_NOSERVICE, "cannot reach the file service: %s%s", strerror(errno), "");
    if ((ret = recv_version(fd)) || (ret = recv_info(fd, path, &is_dir, &size)))
        return ret;
    if (!strcmp(cmd, "stat")) {
        if (is_dir)
            printf("directory\n");
        else
            printf("file %llu\n", (unsigned long long)size);
        return 0;
    }
    if (is_dir)
        return fail(EXIT_REFUSED, "%s: a directory%s", path, "");
    if (!strcmp(cmd, "get") && strcmp(argv[optind + 2], "-")) {
        out = open(argv[optind + 2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0)
            return fail(EXIT_ERR, "%s: %s", argv[optind + 2], strerror(errno));
    }
    ret = copy(fd, path, size, out);
    if (!ret && out != STDOUT_FILENO && close(out) < 0)
        return fail(EXIT_ERR, "%s: %s", argv[optind + 2], strerror(errno));
    return ret;
}
