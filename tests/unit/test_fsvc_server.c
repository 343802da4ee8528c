/* test_fsvc_server.c: the file service over an in-memory transport (socketpair): each message
 * type and each error, path traversal by `..`, backslash and symlinks (openat2 and the O_NOFOLLOW
 * walk), both backings, flow control with small socket buffers, the connection limit, and the
 * Unix-socket listener. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "fileservice/fileservice.h"

#define BIG_SIZE (200 * 1024 + 7)

static char top[64], root[96];
static struct fsvc *svc;
static int cli = -1; /* the guest's end */
static uint8_t resp[KILN_FS_MAX_RESPONSE];

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

static void put(const char *rel, const void *data, size_t len)
{
    char p[256];
    FILE *f;

    snprintf(p, sizeof(p), "%s/%s", top, rel);
    f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* top/outside.txt (not served), top/root/{hello.txt, sub/dir/f, big, fifo, in -> hello.txt,
 * abs -> /etc/passwd, up -> ../outside.txt, subup -> sub/../../outside.txt} */
static int setup_tree(void **state)
{
    static uint8_t big[BIG_SIZE];
    char p[256];

    (void)state;
    snprintf(top, sizeof(top), "/tmp/kiln-fsvc-XXXXXX");
    assert_non_null(mkdtemp(top));
    snprintf(root, sizeof(root), "%s/root", top);
    assert_int_equal(mkdir(root, 0755), 0);
    put("outside.txt", "secret\n", 7);
    put("root/hello.txt", "hello\n", 6);
    snprintf(p, sizeof(p), "%s/sub", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/sub/dir", root);
    assert_int_equal(mkdir(p, 0755), 0);
    put("root/sub/dir/f", "f", 1);
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = pattern(i);
    put("root/big", big, sizeof(big));
    snprintf(p, sizeof(p), "%s/fifo", root);
    assert_int_equal(mkfifo(p, 0644), 0);
    snprintf(p, sizeof(p), "%s/in", root);
    assert_int_equal(symlink("hello.txt", p), 0);
    snprintf(p, sizeof(p), "%s/abs", root);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof(p), "%s/up", root);
    assert_int_equal(symlink("../outside.txt", p), 0);
    snprintf(p, sizeof(p), "%s/subup", root);
    assert_int_equal(symlink("sub/../../outside.txt", p), 0);
    return 0;
}

static int teardown_tree(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    return system(cmd);
}

/* A service over root (plus extra --file values) with one connection; cli is its peer. */
static void start(const char *const *files, unsigned nfiles, bool handshake);

static void stop(void)
{
    if (cli >= 0)
        close(cli);
    cli = -1;
    fsvc_destroy(svc);
    svc = NULL;
}

static int stop_each(void **state)
{
    (void)state;
    stop();
    return 0;
}

/* Sends msg, runs the service until one whole response arrived; returns its size, or 0 when the
 * service closed the connection. */
static size_t exchange(const uint8_t *msg, size_t len)
{
    size_t got = 0, size = 8;

    if (len)
        assert_int_equal(send(cli, msg, len, MSG_NOSIGNAL), (ssize_t)len);
    for (int round = 0; round < 10000; round++) {
        fsvc_poll(svc);
        /* Only this response's bytes: a pipelined next one stays in the socket. */
        ssize_t n = recv(cli, resp + got, size - got, MSG_DONTWAIT);
        if (n == 0)
            return 0;
        if (n > 0)
            got += (size_t)n;
        if (got == 8 && size == 8) {
            uint32_t s32;
            memcpy(&s32, resp, 4);
            assert_true(s32 >= 8 && s32 <= sizeof(resp));
            size = s32;
        }
        if (got == size)
            return size;
    }
    fail_msg("no response");
    return 0;
}

static uint32_t u32at(size_t off)
{
    uint32_t v;
    memcpy(&v, resp + off, 4);
    return v;
}

static uint64_t u64at(size_t off)
{
    uint64_t v;
    memcpy(&v, resp + off, 8);
    return v;
}

static void version(uint32_t v, uint32_t expect_status)
{
    uint8_t m[16];

    fsvc_encode_version_request(m, sizeof(m), v);
    assert_int_equal(exchange(m, 16), 16);
    assert_int_equal(u32at(4), KILN_FS_MSG_VERSION_RESPONSE);
    assert_int_equal(u32at(8), expect_status);
}

static void start(const char *const *files, unsigned nfiles, bool handshake)
{
    struct fsvc_config cfg = {.dir = root, .files = files, .nfiles = nfiles};
    char err[256];
    int sv[2];

    svc = fsvc_create(&cfg, err, sizeof(err));
    assert_non_null(svc);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fsvc_add_conn(svc, sv[0]), 0);
    cli = sv[1];
    if (handshake)
        version(KILN_FS_VERSION, KILN_FS_VERSION_SUPPORTED);
}

/* GetFileInfo: status; flags and size through the pointers. */
static uint32_t info(const char *path, size_t len, uint32_t *flags, uint64_t *size)
{
    uint8_t m[KILN_FS_MAX_REQUEST];
    size_t n = fsvc_encode_get_file_info(m, sizeof(m), path, len);

    assert_int_equal(exchange(m, n), 24);
    assert_int_equal(u32at(4), KILN_FS_MSG_GET_FILE_INFO_RESPONSE);
    if (flags)
        *flags = u32at(12);
    if (size)
        *size = u64at(16);
    return u32at(8);
}

/* ReadFile: status; the data is at resp + 16, its length in *count. */
static uint32_t readf(const char *path, uint64_t off, uint32_t want, uint32_t *count)
{
    uint8_t m[KILN_FS_MAX_REQUEST];
    size_t n = fsvc_encode_read_file(m, sizeof(m), want, off, path, strlen(path));
    size_t size = exchange(m, n);

    assert_true(size >= 16);
    assert_int_equal(u32at(4), KILN_FS_MSG_READ_FILE_RESPONSE);
    assert_int_equal(size, 16 + u32at(12));
    if (count)
        *count = u32at(12);
    return u32at(8);
}

static void handshake(void **state)
{
    (void)state;
    start(NULL, 0, false);
    version(2, KILN_FS_VERSION_UNSUPPORTED); /* still in the version state: may try again */
    version(0, KILN_FS_VERSION_UNSUPPORTED);
    version(KILN_FS_VERSION, KILN_FS_VERSION_SUPPORTED);
    assert_int_equal(info("hello.txt", 9, NULL, NULL), KILN_FS_SUCCESS);
    /* A second VersionRequest once ready is a protocol error: closed. */
    uint8_t m[16];
    fsvc_encode_version_request(m, sizeof(m), 1);
    assert_int_equal(exchange(m, 16), 0);
    assert_int_equal(fsvc_nconns(svc), 0);
}

static void request_before_handshake(void **state)
{
    uint8_t m[64];

    (void)state;
    start(NULL, 0, false);
    assert_int_equal(exchange(m, fsvc_encode_get_file_info(m, sizeof(m), "hello.txt", 9)), 0);
    stop();
    start(NULL, 0, false);
    assert_int_equal(exchange(m, fsvc_encode_read_file(m, sizeof(m), 1, 0, "hello.txt", 9)), 0);
    stop();
    start(NULL, 0, false);
    version(7, KILN_FS_VERSION_UNSUPPORTED);
    assert_int_equal(exchange(m, fsvc_encode_get_file_info(m, sizeof(m), "hello.txt", 9)), 0);
}

static void get_file_info(void **state)
{
    uint32_t flags;
    uint64_t size;

    (void)state;
    start(NULL, 0, true);
    assert_int_equal(info("hello.txt", 9, &flags, &size), KILN_FS_SUCCESS);
    assert_int_equal(flags, 0);
    assert_int_equal(size, 6);
    assert_int_equal(info("/big", 4, &flags, &size), KILN_FS_SUCCESS);
    assert_int_equal(size, BIG_SIZE);
    assert_int_equal(info("sub/dir", 7, &flags, &size), KILN_FS_SUCCESS);
    assert_int_equal(flags, KILN_FS_FLAG_DIRECTORY);
    assert_int_equal(size, 0);
    assert_int_equal(info("", 0, &flags, NULL), KILN_FS_SUCCESS);
    assert_int_equal(flags, KILN_FS_FLAG_DIRECTORY);
    assert_int_equal(info("/", 1, &flags, NULL), KILN_FS_SUCCESS);
    assert_int_equal(flags, KILN_FS_FLAG_DIRECTORY);
    assert_int_equal(info("sub\\dir\\f", 9, &flags, &size), KILN_FS_SUCCESS);
    assert_int_equal(size, 1);
    assert_int_equal(info("in", 2, &flags, &size), KILN_FS_SUCCESS); /* a symlink inside */
    assert_int_equal(size, 6);
}

static void get_file_info_errors(void **state)
{
    (void)state;
    start(NULL, 0, true);
    assert_int_equal(info("missing", 7, NULL, NULL), KILN_FS_NOT_FOUND);
    assert_int_equal(info("hello.txt/x", 11, NULL, NULL), KILN_FS_NOT_FOUND);
    assert_int_equal(info("fifo", 4, NULL, NULL), KILN_FS_NOT_A_FILE);
    assert_int_equal(info("hel\0lo.txt", 10, NULL, NULL), KILN_FS_INVALID_PATH);
    assert_int_equal(info("\xff", 1, NULL, NULL), KILN_FS_INVALID_PATH);
    assert_int_equal(info("../outside.txt", 14, NULL, NULL), KILN_FS_INVALID_PATH);
    assert_int_equal(info("sub/../../outside.txt", 21, NULL, NULL), KILN_FS_INVALID_PATH);
    assert_int_equal(info("..\\outside.txt", 14, NULL, NULL), KILN_FS_INVALID_PATH);
    assert_int_equal(info("abs", 3, NULL, NULL), KILN_FS_INVALID_PATH);
    assert_int_equal(info("up", 2, NULL, NULL), KILN_FS_INVALID_PATH);
    assert_int_equal(info("subup", 5, NULL, NULL), KILN_FS_INVALID_PATH);
    /* The connection survives every status. */
    assert_int_equal(info("hello.txt", 9, NULL, NULL), KILN_FS_SUCCESS);
}

static void read_file(void **state)
{
    uint32_t n;
    size_t off = 0;

    (void)state;
    start(NULL, 0, true);
    assert_int_equal(readf("hello.txt", 0, 100, &n), KILN_FS_SUCCESS);
    assert_int_equal(n, 6);
    assert_memory_equal(resp + 16, "hello\n", 6);
    assert_int_equal(readf("hello.txt", 2, 2, &n), KILN_FS_SUCCESS);
    assert_memory_equal(resp + 16, "ll", 2);
    assert_int_equal(readf("hello.txt", 6, 10, &n), KILN_FS_SUCCESS); /* at the end: empty */
    assert_int_equal(n, 0);
    assert_int_equal(readf("hello.txt", 0, 0, &n), KILN_FS_SUCCESS);
    assert_int_equal(n, 0);
    assert_int_equal(readf("in", 0, 6, &n), KILN_FS_SUCCESS);
    assert_memory_equal(resp + 16, "hello\n", 6);
    /* The big file in maximum-size chunks, checked byte for byte. */
    while (off < BIG_SIZE) {
        assert_int_equal(readf("big", off, KILN_FS_MAX_READ, &n), KILN_FS_SUCCESS);
        assert_true(n == KILN_FS_MAX_READ || off + n == BIG_SIZE);
        for (uint32_t i = 0; i < n; i++)
            if (resp[16 + i] != pattern(off + i))
                fail_msg("byte %zu differs", off + i);
        off += n;
    }
}

static void read_file_errors(void **state)
{
    uint32_t n;

    (void)state;
    start(NULL, 0, true);
    assert_int_equal(readf("hello.txt", 7, 1, &n), KILN_FS_READ_PAST_END);
    assert_int_equal(n, 0);
    assert_int_equal(readf("hello.txt", UINT64_MAX, 1, &n), KILN_FS_READ_PAST_END);
    assert_int_equal(readf("hello.txt", 0, KILN_FS_MAX_READ + 1, &n), KILN_FS_READ_TOO_LARGE);
    assert_int_equal(readf("hello.txt", 0, UINT32_MAX, &n), KILN_FS_READ_TOO_LARGE);
    assert_int_equal(readf("sub", 0, 1, &n), KILN_FS_NOT_A_FILE);
    assert_int_equal(readf("", 0, 1, &n), KILN_FS_NOT_A_FILE);
    assert_int_equal(readf("fifo", 0, 1, &n), KILN_FS_NOT_A_FILE);
    assert_int_equal(readf("nope", 0, 1, &n), KILN_FS_NOT_FOUND);
    assert_int_equal(readf("../outside.txt", 0, 1, &n), KILN_FS_INVALID_PATH);
    assert_int_equal(readf("..\\outside.txt", 0, 1, &n), KILN_FS_INVALID_PATH);
    assert_int_equal(readf("abs", 0, 1, &n), KILN_FS_INVALID_PATH);
    assert_int_equal(readf("up", 0, 1, &n), KILN_FS_INVALID_PATH);
    assert_int_equal(readf("\xc0\xae\xc0\xae/outside.txt", 0, 1, &n), KILN_FS_INVALID_PATH);
    assert_int_equal(readf("hello.txt", 0, 6, &n), KILN_FS_SUCCESS);
}

/* Each message the protocol cannot answer closes the connection; the service carries on. */
static void malformed_closes(void **state)
{
    uint8_t m[64];

    (void)state;
    for (int kind = 0; kind < 7; kind++) {
        size_t len = fsvc_encode_read_file(m, sizeof(m), 1, 0, "hello.txt", 9);
        start(NULL, 0, true);
        switch (kind) {
        case 0:
            m[6] = 1;
            break; /* reserved header field */
        case 1:
            m[0] = 4;
            break; /* size below the header */
        case 2:
            m[0] = 0;
            m[1] = 0x80;
            break; /* size above the largest request */
        case 3:
            m[0] = 20;
            len = 20;
            break; /* ReadFile too short */
        case 4:
            m[4] = 99;
            break; /* unknown type */
        case 5:
            m[4] = KILN_FS_MSG_READ_FILE_RESPONSE;
            break;
        case 6:
            m[12] = 1;
            break; /* ReadFile reserved */
        }
        assert_int_equal(exchange(m, len), 0);
        assert_int_equal(fsvc_nconns(svc), 0);
        stop();
    }
    /* The peer ends inside a message. */
    start(NULL, 0, true);
    fsvc_encode_read_file(m, sizeof(m), 1, 0, "hello.txt", 9);
    assert_int_equal(send(cli, m, 10, 0), 10);
    shutdown(cli, SHUT_WR);
    assert_int_equal(exchange(NULL, 0), 0);
    assert_int_equal(fsvc_nconns(svc), 0);
}

/* Requests split at every byte and several in one write are answered in order. */
static void stream_framing(void **state)
{
    uint8_t m[256];
    size_t a, b;

    (void)state;
    start(NULL, 0, true);
    a = fsvc_encode_get_file_info(m, sizeof(m), "hello.txt", 9);
    for (size_t i = 0; i < a; i++) {
        assert_int_equal(send(cli, m + i, 1, 0), 1);
        fsvc_poll(svc);
    }
    assert_int_equal(exchange(NULL, 0), 24);
    assert_int_equal(u64at(16), 6);
    b = fsvc_encode_read_file(m + a, sizeof(m) - a, 5, 0, "hello.txt", 9);
    assert_int_equal(send(cli, m, a + b, 0), (ssize_t)(a + b));
    assert_int_equal(exchange(NULL, 0), 24);
    assert_int_equal(exchange(NULL, 0), 21);
    assert_memory_equal(resp + 16, "hello", 5);
}

/* With tiny socket buffers a 64 KiB response goes out in pieces, and the next request waits. */
static void flow_control(void **state)
{
    uint8_t m[256], data[KILN_FS_MAX_READ + 64];
    size_t a, got = 0, want = 2 * (16 + KILN_FS_MAX_READ);
    int small = 4096;
    static uint8_t all[2 * (16 + KILN_FS_MAX_READ)];

    (void)state;
    (void)data;
    start(NULL, 0, true);
    assert_int_equal(setsockopt(cli, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    a = fsvc_encode_read_file(m, sizeof(m), KILN_FS_MAX_READ, 0, "big", 3);
    memcpy(m + a, m, a);
    assert_int_equal(send(cli, m, 2 * a, 0), (ssize_t)(2 * a));
    for (int round = 0; got < want && round < 100000; round++) {
        fsvc_poll(svc);
        ssize_t n = recv(cli, all + got, 1000, MSG_DONTWAIT); /* a slow reader */
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, want);
    for (int r = 0; r < 2; r++) {
        const uint8_t *p = all + r * (16 + KILN_FS_MAX_READ);
        assert_int_equal(p[8], KILN_FS_SUCCESS);
        for (size_t i = 0; i < KILN_FS_MAX_READ; i++)
            if (p[16 + i] != pattern(i))
                fail_msg("response %d byte %zu differs", r, i);
    }
}

static void single_files(void **state)
{
    static char spec1[160], spec2[160];
    const char *files[2] = {spec1, spec2};
    uint32_t flags, n;
    uint64_t size;

    (void)state;
    snprintf(spec1, sizeof(spec1), "/config/init.env=%s/outside.txt", top);
    snprintf(spec2, sizeof(spec2), "hello.txt=%s/sub/dir/f", root); /* shadows the directory's */
    start(files, 2, true);
    assert_int_equal(info("config", 6, &flags, &size), KILN_FS_SUCCESS);
    assert_int_equal(flags, KILN_FS_FLAG_DIRECTORY);
    assert_int_equal(info("config/init.env", 15, &flags, &size), KILN_FS_SUCCESS);
    assert_int_equal(flags, 0);
    assert_int_equal(size, 7);
    assert_int_equal(readf("\\config\\init.env", 0, 100, &n), KILN_FS_SUCCESS);
    assert_int_equal(n, 7);
    assert_memory_equal(resp + 16, "secret\n", 7);
    assert_int_equal(readf("config", 0, 1, &n), KILN_FS_NOT_A_FILE);
    assert_int_equal(readf("config/init.env", 8, 1, &n), KILN_FS_READ_PAST_END);
    assert_int_equal(info("config/other", 12, NULL, NULL), KILN_FS_NOT_FOUND);
    assert_int_equal(info("conf", 4, NULL, NULL), KILN_FS_NOT_FOUND);
    assert_int_equal(readf("hello.txt", 0, 10, &n), KILN_FS_SUCCESS);
    assert_int_equal(n, 1);
    assert_int_equal(info("big", 3, NULL, &size), KILN_FS_SUCCESS); /* the directory still */
    assert_int_equal(size, BIG_SIZE);
}

static void config_errors(void **state)
{
    struct fsvc_config cfg = {.dir = "/nonexistent-kiln-dir"};
    const char *bad[] = {"x=/nonexistent-kiln-file"};
    char err[256];

    (void)state;
    assert_null(fsvc_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent-kiln-dir"));
    cfg.dir = "/etc/passwd";
    assert_null(fsvc_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "not a directory"));
    cfg.dir = NULL;
    cfg.files = bad;
    cfg.nfiles = 1;
    assert_null(fsvc_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent-kiln-file"));
    bad[0] = "x=/tmp";
    assert_null(fsvc_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "directory"));
    bad[0] = "a/../b=/etc/passwd";
    assert_null(fsvc_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "a/../b"));
}

/* Without openat2 every symlink is refused, and nothing outside the root is reachable. */
static void walk_fallback(void **state)
{
    char err[256];
    struct fsvc_backing *b = fsvc_backing_dir_create(root, true, err, sizeof(err));
    struct fsvc_node node;

    (void)state;
    assert_non_null(b);
    assert_int_equal(b->ops->lookup(b, "hello.txt", true, &node), 0);
    assert_int_equal(node.kind, FSVC_FILE);
    assert_int_equal(node.size, 6);
    assert_true(node.fd >= 0 && node.owned);
    close(node.fd);
    assert_int_equal(b->ops->lookup(b, "sub/dir/f", false, &node), 0);
    assert_int_equal(node.kind, FSVC_FILE);
    assert_int_equal(b->ops->lookup(b, "sub/dir", false, &node), 0);
    assert_int_equal(node.kind, FSVC_DIR);
    assert_int_equal(b->ops->lookup(b, "", false, &node), 0);
    assert_int_equal(node.kind, FSVC_DIR);
    assert_int_equal(b->ops->lookup(b, "fifo", true, &node), 0);
    assert_int_equal(node.kind, FSVC_OTHER);
    assert_int_equal(node.fd, -1);
    assert_int_equal(b->ops->lookup(b, "missing", false, &node), -ENOENT);
    assert_int_equal(b->ops->lookup(b, "hello.txt/x", false, &node), -ENOENT);
    assert_int_equal(b->ops->lookup(b, "in", false, &node), -EXDEV);
    assert_int_equal(b->ops->lookup(b, "in", true, &node), -EXDEV);
    assert_int_equal(b->ops->lookup(b, "abs", true, &node), -EXDEV);
    assert_int_equal(b->ops->lookup(b, "up", false, &node), -EXDEV);
    b->ops->destroy(b);
}

static void connection_limit(void **state)
{
    struct fsvc_config cfg = {.dir = root, .max_conns = 2};
    char err[256];
    int sv[3][2];

    (void)state;
    svc = fsvc_create(&cfg, err, sizeof(err));
    assert_non_null(svc);
    for (int i = 0; i < 3; i++)
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
    assert_int_equal(fsvc_add_conn(svc, sv[0][0]), 0);
    assert_int_equal(fsvc_add_conn(svc, sv[1][0]), 0);
    assert_int_equal(fsvc_add_conn(svc, sv[2][0]), -EMFILE);
    assert_int_equal(fsvc_nconns(svc), 2);
    close(sv[0][1]); /* a peer leaves: its slot frees */
    fsvc_poll(svc);
    assert_int_equal(fsvc_nconns(svc), 1);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[0]), 0);
    assert_int_equal(fsvc_add_conn(svc, sv[0][0]), 0);
    for (int i = 0; i < 3; i++)
        close(sv[i][1]);
}

static void unix_listener(void **state)
{
    struct fsvc_config cfg = {.dir = root};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char err[256], path[128];
    struct stat st;

    (void)state;
    snprintf(path, sizeof(path), "%s/vsock.sock_%u", top, KILN_FS_PORT);
    put("vsock.sock_1026", "x", 1); /* not a socket: refused */
    svc = fsvc_create(&cfg, err, sizeof(err));
    assert_int_equal(fsvc_listen(svc, path, err, sizeof(err)), -EEXIST);
    unlink(path);
    assert_int_equal(fsvc_listen(svc, path, err, sizeof(err)), 0);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    cli = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(cli, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fsvc_poll(svc); /* accept */
    assert_int_equal(fsvc_nconns(svc), 1);
    version(KILN_FS_VERSION, KILN_FS_VERSION_SUPPORTED);
    assert_int_equal(info("hello.txt", 9, NULL, NULL), KILN_FS_SUCCESS);
    stop();
    assert_int_equal(stat(path, &st), -1); /* removed */
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(handshake, stop_each),
        cmocka_unit_test_teardown(request_before_handshake, stop_each),
        cmocka_unit_test_teardown(get_file_info, stop_each),
        cmocka_unit_test_teardown(get_file_info_errors, stop_each),
        cmocka_unit_test_teardown(read_file, stop_each),
        cmocka_unit_test_teardown(read_file_errors, stop_each),
        cmocka_unit_test_teardown(malformed_closes, stop_each),
        cmocka_unit_test_teardown(stream_framing, stop_each),
        cmocka_unit_test_teardown(flow_control, stop_each),
        cmocka_unit_test_teardown(single_files, stop_each),
        cmocka_unit_test(config_errors),
        cmocka_unit_test(walk_fallback),
        cmocka_unit_test_teardown(connection_limit, stop_each),
        cmocka_unit_test_teardown(unix_listener, stop_each),
    };
    return cmocka_run_group_tests(tests, setup_tree, teardown_tree);
}
