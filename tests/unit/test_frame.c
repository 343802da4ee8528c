/* test_frame.c: the agent protocol codec (src/sandbox/frame.c): golden bytes for every builder,
 * each payload parser on a valid message and on every malformed case it must reject. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sandbox/frame.h"

static uint8_t buf[AGENT_FRAME_MAX + 64];

static void test_header_golden(void **state)
{
    (void)state;
    static const uint8_t want[16] = {0x10, 0, 0, 0, 0x10, 0, 0x01, 0, 4, 3, 2, 1, 0, 0, 0, 0};
    uint8_t out[16];
    agent_hdr_encode(out, KILN_AGENT_EXEC, KILN_AGENT_F_END, 0x01020304, 16);
    assert_memory_equal(out, want, 16);
    struct kiln_agent_hdr h;
    assert_int_equal(agent_hdr_decode(out, KILN_AGENT_MAX_PAYLOAD, &h), 0);
    assert_int_equal(h.len, 16);
    assert_int_equal(h.type, KILN_AGENT_EXEC);
    assert_int_equal(h.flags, KILN_AGENT_F_END);
    assert_int_equal(h.id, 0x01020304);
}

static void test_header_bad(void **state)
{
    (void)state;
    uint8_t b[16];
    struct kiln_agent_hdr h;
    agent_hdr_encode(b, KILN_AGENT_PING, 0, 7, KILN_AGENT_MAX_PAYLOAD + 1);
    assert_int_equal(agent_hdr_decode(b, KILN_AGENT_MAX_PAYLOAD, &h), KILN_AGENT_E_TOO_LARGE);
    assert_int_equal(h.id, 7); /* still decoded, so the ERROR names it */
    agent_hdr_encode(b, KILN_AGENT_PING, 0, 7, 4097);
    assert_int_equal(agent_hdr_decode(b, 4096, &h), KILN_AGENT_E_TOO_LARGE);
    static const uint16_t bad_types[] = {0, 7, 15, 24, 31, 42, 0xffff};
    for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
        agent_hdr_encode(b, bad_types[i], 0, 1, 0);
        assert_int_equal(agent_hdr_decode(b, KILN_AGENT_MAX_PAYLOAD, &h), KILN_AGENT_E_PROTOCOL);
    }
    agent_hdr_encode(b, KILN_AGENT_PING, 0x0002, 1, 0);
    assert_int_equal(agent_hdr_decode(b, KILN_AGENT_MAX_PAYLOAD, &h), KILN_AGENT_E_PROTOCOL);
    agent_hdr_encode(b, KILN_AGENT_PING, 0, 1, 0);
    b[15] = 1; /* reserved */
    assert_int_equal(agent_hdr_decode(b, KILN_AGENT_MAX_PAYLOAD, &h), KILN_AGENT_E_PROTOCOL);
}

static void test_frame_next(void **state)
{
    (void)state;
    struct kiln_agent_hdr h;
    const uint8_t *p;
    ssize_t n = agent_frame_build(buf, sizeof(buf), KILN_AGENT_PING, 0, 9, "abc", 3, "de", 2);
    assert_int_equal(n, 21);
    for (size_t avail = 0; avail < 21; avail++)
        assert_int_equal(agent_frame_next(buf, avail, KILN_AGENT_MAX_PAYLOAD, &h, &p), 0);
    assert_int_equal(agent_frame_next(buf, 40, KILN_AGENT_MAX_PAYLOAD, &h, &p), 21);
    assert_memory_equal(p, "abcde", 5);
    agent_hdr_encode(buf, KILN_AGENT_PING, 0, 9, 0xffffffff);
    assert_int_equal(agent_frame_next(buf, 16, KILN_AGENT_MAX_PAYLOAD, &h, &p),
                     -KILN_AGENT_E_TOO_LARGE);
    agent_hdr_encode(buf, 99, 0, 9, 0);
    assert_int_equal(agent_frame_next(buf, 16, KILN_AGENT_MAX_PAYLOAD, &h, &p),
                     -KILN_AGENT_E_PROTOCOL);
}

static void test_build_limits(void **state)
{
    (void)state;
    assert_int_equal(agent_frame_build(buf, sizeof(buf), KILN_AGENT_STDOUT, 0, 1, buf,
                                       KILN_AGENT_MAX_PAYLOAD, "x", 1),
                     -EMSGSIZE);
    assert_int_equal(agent_frame_build(buf, 20, KILN_AGENT_STDOUT, 0, 1, "12345", 5, NULL, 0),
                     -ENOBUFS);
    assert_int_equal(agent_frame_build(buf, 8, KILN_AGENT_OK, 0, 1, NULL, 0, NULL, 0), -ENOBUFS);
    assert_int_equal(agent_frame_build(buf, 16, KILN_AGENT_OK, 0, 1, NULL, 0, NULL, 0), 16);
}

static void test_hello(void **state)
{
    (void)state;
    struct kiln_agent_hello h = {1, 1, KILN_AGENT_MAX_PAYLOAD, 0}, out;
    static const uint8_t want[32] = {16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     1,  0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0};
    assert_int_equal(
        agent_frame_build(buf, sizeof(buf), KILN_AGENT_HELLO, 0, 0, &h, sizeof(h), NULL, 0), 32);
    assert_memory_equal(buf, want, 32);
    assert_int_equal(agent_parse_hello(buf + 16, 16, &out), 0);
    assert_int_equal(agent_version_choose(&out), 1);
    uint8_t longer[24] = {0};
    memcpy(longer, buf + 16, 16); /* a later version appends: accepted */
    assert_int_equal(agent_parse_hello(longer, 24, &out), 0);
    assert_int_equal(agent_parse_hello(buf + 16, 15, &out), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_hello bad[] = {{0, 1, 65536, 0}, {2, 1, 65536, 0}, {1, 1, 100, 0}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(agent_parse_hello((uint8_t *)&bad[i], 16, &out), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_hello future = {2, 5, 65536, 0}, wide = {1, 9, 65536, 0};
    assert_int_equal(agent_version_choose(&future), 0);
    assert_int_equal(agent_version_choose(&wide), 1);
}

static void test_ready_error_window(void **state)
{
    (void)state;
    struct kiln_agent_ready r = {1, 0, 1000, 2000}, ro;
    assert_int_equal(agent_parse_ready((uint8_t *)&r, sizeof(r), &ro), 0);
    assert_int_equal(ro.agent_us, 2000);
    assert_int_equal(agent_parse_ready((uint8_t *)&r, sizeof(r) - 1, &ro), KILN_AGENT_E_PROTOCOL);
    r.version = 0;
    assert_int_equal(agent_parse_ready((uint8_t *)&r, sizeof(r), &ro), KILN_AGENT_E_PROTOCOL);

    static const uint8_t want[] = {10, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0,   0,
                                   0,  0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 'n', 'o'};
    assert_int_equal(agent_error_build(buf, sizeof(buf), 3, KILN_AGENT_E_NOT_FOUND, 2, "no"), 26);
    assert_memory_equal(buf, want, sizeof(want));
    struct kiln_agent_error e;
    const char *msg;
    size_t mlen;
    assert_int_equal(agent_parse_error(buf + 16, 10, &e, &msg, &mlen), 0);
    assert_int_equal(e.status, KILN_AGENT_E_NOT_FOUND);
    assert_int_equal(mlen, 2);
    assert_memory_equal(msg, "no", 2);
    /* a message longer than the buffer is cut, not overflowed */
    assert_int_equal(agent_error_build(buf, 30, 3, KILN_AGENT_E_IO, 5, "0123456789abcdef"), 30);
    assert_int_equal(agent_error_build(buf, 20, 3, KILN_AGENT_E_IO, 5, "x"), -ENOBUFS);
    assert_int_equal(agent_parse_error(buf + 16, 7, &e, &msg, &mlen), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_error bad[] = {{0, 0}, {17, 0}, {0xffffffff, 0}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(agent_parse_error((uint8_t *)&bad[i], 8, &e, &msg, &mlen),
                         KILN_AGENT_E_PROTOCOL);

    struct kiln_agent_window w = {KILN_AGENT_STDOUT, 4096}, wo;
    assert_int_equal(agent_parse_window((uint8_t *)&w, 8, &wo), 0);
    assert_int_equal(agent_parse_window((uint8_t *)&w, 9, &wo), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_window badw[] = {{KILN_AGENT_STDOUT, 0}, {KILN_AGENT_EXEC, 1}, {0, 1}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(agent_parse_window((uint8_t *)&badw[i], 8, &wo), KILN_AGENT_E_PROTOCOL);
}

static void test_exec_golden(void **state)
{
    (void)state;
    const char *argv[] = {"ls", "-l", NULL}, *env[] = {"A=1", NULL};
    struct kiln_agent_exec h = {.flags = KILN_AGENT_EXEC_STDIN, .timeout_ms = 500, .uid = 7};
    ssize_t n = agent_exec_build(buf, sizeof(buf), 42, &h, argv, env, "/tmp");
    /* clang-format off */
    static const uint8_t want[] = {
        39, 0, 0, 0, 16, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, /* header */
        4, 0, 0, 0, 244, 1, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,  /* flags timeout uid gid */
        2, 0, 1, 0, 0, 0, 0, 0,                            /* argc envc rows cols */
        'l', 's', 0, '-', 'l', 0, 'A', '=', '1', 0, '/', 't', 'm', 'p', 0,
    };
    /* clang-format on */
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    struct agent_exec_msg m;
    assert_int_equal(agent_parse_exec(buf + 16, (size_t)n - 16, &m), 0);
    assert_string_equal(m.cwd, "/tmp");
    const char *av[3], *ev[2];
    agent_exec_vectors(&m, av, ev);
    assert_string_equal(av[0], "ls");
    assert_string_equal(av[1], "-l");
    assert_null(av[2]);
    assert_string_equal(ev[0], "A=1");
    assert_null(ev[1]);
    /* cwd "" means / */
    n = agent_exec_build(buf, sizeof(buf), 1, &h, argv, NULL, NULL);
    assert_int_equal(agent_parse_exec(buf + 16, (size_t)n - 16, &m), 0);
    assert_string_equal(m.cwd, "/");
}

/* Builds an EXEC payload by hand: the header then raw string bytes. */
static size_t raw_exec(uint8_t *out, uint32_t flags, uint16_t argc, uint16_t envc, const void *s,
                       size_t slen)
{
    struct kiln_agent_exec h = {.flags = flags, .argc = argc, .envc = envc};
    memcpy(out, &h, sizeof(h));
    memcpy(out + sizeof(h), s, slen);
    return sizeof(h) + slen;
}

static void test_exec_bad(void **state)
{
    (void)state;
    struct agent_exec_msg m;
    uint8_t p[256];
    struct {
        uint32_t flags;
        uint16_t argc, envc;
        const char *s;
        size_t slen;
        int want;
    } cases[] = {
        {0, 1, 0, "ls\0", 4, 0},
        {0, 0, 0, "", 1, KILN_AGENT_E_PROTOCOL},          /* argc 0 */
        {0x100, 1, 0, "ls\0", 4, KILN_AGENT_E_PROTOCOL},  /* unknown flag */
        {0, 1, 0, "ls", 3, KILN_AGENT_E_PROTOCOL},        /* no cwd string */
        {0, 1, 0, "ls\0\0x", 5, KILN_AGENT_E_PROTOCOL},   /* trailing bytes */
        {0, 1, 0, "ls\0", 3, KILN_AGENT_E_PROTOCOL},      /* cwd without NUL */
        {0, 1, 0, "\0", 2, KILN_AGENT_E_PROTOCOL},        /* empty argv[0] */
        {0, 1, 1, "ls\0AB\0", 7, KILN_AGENT_E_PROTOCOL},  /* env without = */
        {0, 1, 1, "ls\0=x\0", 7, KILN_AGENT_E_PROTOCOL},  /* env with empty name */
        {0, 1, 0, "ls\0tmp", 7, KILN_AGENT_E_BAD_PATH},   /* relative cwd */
        {0, 4000, 97, "ls\0", 4, KILN_AGENT_E_TOO_LARGE}, /* argc + envc > 4096 */
        {0, 2, 0, "ls\0", 4, KILN_AGENT_E_PROTOCOL},      /* fewer strings than argc */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n =
            raw_exec(p, cases[i].flags, cases[i].argc, cases[i].envc, cases[i].s, cases[i].slen);
        assert_int_equal(agent_parse_exec(p, n, &m), cases[i].want);
    }
    assert_int_equal(agent_parse_exec(p, 23, &m), KILN_AGENT_E_PROTOCOL); /* short header */
    /* a cwd longer than KILN_AGENT_MAX_PATH */
    static uint8_t big[24 + 3 + KILN_AGENT_MAX_PATH + 2];
    memset(big, 'a', sizeof(big));
    size_t n = raw_exec(big, 0, 1, 0, "ls\0/", 4);
    big[sizeof(big) - 1] = 0;
    (void)n;
    assert_int_equal(agent_parse_exec(big, sizeof(big), &m), KILN_AGENT_E_BAD_PATH);
    big[sizeof(big) - 2] = 0; /* exactly 4096 bytes, then one trailing byte */
    assert_int_equal(agent_parse_exec(big, sizeof(big), &m), KILN_AGENT_E_PROTOCOL);
    assert_int_equal(agent_parse_exec(big, sizeof(big) - 1, &m), 0);
}

static void test_exec_build_limits(void **state)
{
    (void)state;
    static const char *many[KILN_AGENT_MAX_ARGS + 2];
    for (size_t i = 0; i < KILN_AGENT_MAX_ARGS + 1; i++)
        many[i] = "x";
    struct kiln_agent_exec h = {0};
    assert_int_equal(agent_exec_build(buf, sizeof(buf), 1, &h, many, NULL, NULL), -E2BIG);
    many[KILN_AGENT_MAX_ARGS] = NULL;
    assert_true(agent_exec_build(buf, sizeof(buf), 1, &h, many, NULL, NULL) > 0);
    assert_int_equal(h.argc, KILN_AGENT_MAX_ARGS);
    const char *one[] = {"x", NULL};
    assert_int_equal(agent_exec_build(buf, sizeof(buf), 1, &h, many, one, NULL), -E2BIG);
    static char huge[KILN_AGENT_MAX_PAYLOAD];
    memset(huge, 'a', sizeof(huge) - 1);
    const char *hv[] = {huge, NULL};
    assert_int_equal(agent_exec_build(buf, sizeof(buf), 1, &h, hv, NULL, NULL), -EMSGSIZE);
    assert_int_equal(agent_exec_build(buf, 30, 1, &h, one, NULL, NULL), -ENOBUFS);
}

static void test_path(void **state)
{
    (void)state;
    const char *path;
    assert_int_equal(agent_parse_path((const uint8_t *)"/a/b", 5, &path), 0);
    assert_string_equal(path, "/a/b");
    assert_int_equal(agent_parse_path((const uint8_t *)"/", 2, &path), 0);
    assert_int_equal(agent_parse_path((const uint8_t *)"", 0, &path), KILN_AGENT_E_PROTOCOL);
    assert_int_equal(agent_parse_path((const uint8_t *)"/ab", 3, &path), KILN_AGENT_E_PROTOCOL);
    assert_int_equal(agent_parse_path((const uint8_t *)"", 1, &path), KILN_AGENT_E_BAD_PATH);
    assert_int_equal(agent_parse_path((const uint8_t *)"a/b", 4, &path), KILN_AGENT_E_BAD_PATH);
    assert_int_equal(agent_parse_path((const uint8_t *)"/a\0b", 5, &path), KILN_AGENT_E_BAD_PATH);
    static uint8_t p[KILN_AGENT_MAX_PATH + 2];
    memset(p, 'a', sizeof(p));
    p[0] = '/';
    p[KILN_AGENT_MAX_PATH] = 0;
    assert_int_equal(agent_parse_path(p, KILN_AGENT_MAX_PATH + 1, &path), 0);
    p[KILN_AGENT_MAX_PATH] = 'a';
    p[KILN_AGENT_MAX_PATH + 1] = 0;
    assert_int_equal(agent_parse_path(p, KILN_AGENT_MAX_PATH + 2, &path), KILN_AGENT_E_BAD_PATH);
}

static void test_small_structs(void **state)
{
    (void)state;
    struct kiln_agent_signal s = {9, 0}, so;
    assert_int_equal(agent_parse_signal((uint8_t *)&s, 8, &so), 0);
    assert_int_equal(so.signo, 9);
    assert_int_equal(agent_parse_signal((uint8_t *)&s, 4, &so), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_signal bads[] = {{0, 0}, {65, 0}, {9, 1}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(agent_parse_signal((uint8_t *)&bads[i], 8, &so), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_resize z = {24, 80, 0}, zo;
    assert_int_equal(agent_parse_resize((uint8_t *)&z, 8, &zo), 0);
    struct kiln_agent_resize badz[] = {{0, 80, 0}, {24, 0, 0}, {24, 80, 1}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(agent_parse_resize((uint8_t *)&badz[i], 8, &zo), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_exit x = {-1, KILN_AGENT_EXIT_SIGNALED, 5}, xo;
    assert_int_equal(agent_parse_exit((uint8_t *)&x, 16, &xo), 0);
    assert_int_equal(agent_parse_exit((uint8_t *)&x, 15, &xo), KILN_AGENT_E_PROTOCOL);
    x.flags = 8;
    assert_int_equal(agent_parse_exit((uint8_t *)&x, 16, &xo), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_started st = {77, 0}, sto;
    assert_int_equal(agent_parse_started((uint8_t *)&st, 8, &sto), 0);
    assert_int_equal(sto.pid, 77);
    assert_int_equal(agent_parse_started((uint8_t *)&st, 0, &sto), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_stat t = {0100644, 1, 2, 1, 10, 5}, to;
    assert_int_equal(agent_parse_stat((uint8_t *)&t, 32, &to), 0);
    assert_int_equal(to.size, 10);
    assert_int_equal(agent_parse_stat((uint8_t *)&t, 33, &to), KILN_AGENT_E_PROTOCOL);
}

static size_t with_path(uint8_t *out, const void *head, size_t hlen, const char *path, size_t plen)
{
    memcpy(out, head, hlen);
    memcpy(out + hlen, path, plen);
    return hlen + plen;
}

static void test_file_ops(void **state)
{
    (void)state;
    uint8_t p[128];
    struct agent_file_msg fm;
    struct kiln_agent_file_open fo = {.flags = KILN_AGENT_FILE_MKDIRS, .mode = 0600, .offset = 5};
    size_t n = with_path(p, &fo, sizeof(fo), "/x", 3);
    static const uint8_t want[] = {1, 0, 0, 0, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,   0,   5, 0,
                                   0, 0, 0, 0, 0,    0, 0, 0, 0, 0, 0, 0, 0, 0, '/', 'x', 0};
    assert_memory_equal(p, want, sizeof(want));
    assert_int_equal(agent_parse_file_open(p, n, &fm), 0);
    assert_string_equal(fm.path, "/x");
    assert_int_equal(fm.h.offset, 5);
    assert_int_equal(agent_parse_file_open(p, 31, &fm), KILN_AGENT_E_PROTOCOL);
    assert_int_equal(agent_parse_file_open(p, 32, &fm), KILN_AGENT_E_PROTOCOL); /* no path */
    n = with_path(p, &fo, sizeof(fo), "x", 2);
    assert_int_equal(agent_parse_file_open(p, n, &fm), KILN_AGENT_E_BAD_PATH);
    struct kiln_agent_file_open badf[] = {{.flags = 0x10},
                                          {.mode = 010000},
                                          {.offset = (uint64_t)INT64_MAX + 1},
                                          {.offset = 10, .length = (uint64_t)INT64_MAX - 5}};
    int wantf[] = {KILN_AGENT_E_PROTOCOL, KILN_AGENT_E_PROTOCOL, KILN_AGENT_E_TOO_LARGE,
                   KILN_AGENT_E_TOO_LARGE};
    for (size_t i = 0; i < 4; i++) {
        n = with_path(p, &badf[i], sizeof(badf[i]), "/x", 3);
        assert_int_equal(agent_parse_file_open(p, n, &fm), wantf[i]);
    }

    struct kiln_agent_mkdir mk = {0755, 1}, mko;
    const char *path;
    n = with_path(p, &mk, 8, "/d", 3);
    assert_int_equal(agent_parse_mkdir(p, n, &mko, &path), 0);
    assert_int_equal(mko.parents, 1);
    assert_int_equal(agent_parse_mkdir(p, 7, &mko, &path), KILN_AGENT_E_PROTOCOL);
    struct kiln_agent_mkdir badm[] = {{010000, 0}, {0755, 2}};
    for (size_t i = 0; i < 2; i++) {
        n = with_path(p, &badm[i], 8, "/d", 3);
        assert_int_equal(agent_parse_mkdir(p, n, &mko, &path), KILN_AGENT_E_PROTOCOL);
    }
    struct kiln_agent_remove rm = {1, 0}, rmo;
    n = with_path(p, &rm, 8, "/d", 3);
    assert_int_equal(agent_parse_remove(p, n, &rmo, &path), 0);
    struct kiln_agent_remove badr[] = {{2, 0}, {1, 1}};
    for (size_t i = 0; i < 2; i++) {
        n = with_path(p, &badr[i], 8, "/d", 3);
        assert_int_equal(agent_parse_remove(p, n, &rmo, &path), KILN_AGENT_E_PROTOCOL);
    }
    n = with_path(p, &rm, 8, "/d\0e", 5);
    assert_int_equal(agent_parse_remove(p, n, &rmo, &path), KILN_AGENT_E_BAD_PATH);
}

static void test_list_entry(void **state)
{
    (void)state;
    uint8_t p[512] = {0};
    struct kiln_agent_stat st = {040755, 0, 0, 2, 4096, 0}, so;
    const char *name = "x";
    assert_int_equal(agent_parse_list_entry(p, 0, &so, &name), 0);
    assert_null(name); /* the end of the list */
    size_t n = with_path(p, &st, 32, "etc", 4);
    assert_int_equal(agent_parse_list_entry(p, n, &so, &name), 0);
    assert_string_equal(name, "etc");
    const struct {
        const char *s;
        size_t len;
    } bad[] = {{"", 1}, {"a/b", 4}, {"ab", 2}, {"a\0b", 4}};
    for (size_t i = 0; i < 4; i++) {
        n = with_path(p, &st, 32, bad[i].s, bad[i].len);
        assert_int_equal(agent_parse_list_entry(p, n, &so, &name), KILN_AGENT_E_PROTOCOL);
    }
    assert_int_equal(agent_parse_list_entry(p, 20, &so, &name), KILN_AGENT_E_PROTOCOL);
    memset(p + 32, 'a', 256);
    p[32 + 256] = 0; /* a 256-byte name is over NAME_MAX */
    assert_int_equal(agent_parse_list_entry(p, 32 + 257, &so, &name), KILN_AGENT_E_PROTOCOL);
    p[32 + 255] = 0;
    assert_int_equal(agent_parse_list_entry(p, 32 + 256, &so, &name), 0);
}

static void test_status_errno(void **state)
{
    (void)state;
    const struct {
        int err;
        uint32_t st;
    } map[] = {
        {0, KILN_AGENT_E_OK},
        {ENOENT, KILN_AGENT_E_NOT_FOUND},
        {EACCES, KILN_AGENT_E_PERMISSION},
        {EPERM, KILN_AGENT_E_PERMISSION},
        {EEXIST, KILN_AGENT_E_EXISTS},
        {ENOSPC, KILN_AGENT_E_NO_SPACE},
        {EDQUOT, KILN_AGENT_E_NO_SPACE},
        {EISDIR, KILN_AGENT_E_IS_DIR},
        {ENOTDIR, KILN_AGENT_E_NOT_DIR},
        {ENOTEMPTY, KILN_AGENT_E_NOT_EMPTY},
        {ENAMETOOLONG, KILN_AGENT_E_BAD_PATH},
        {EMFILE, KILN_AGENT_E_RESOURCES},
        {ENOMEM, KILN_AGENT_E_RESOURCES},
        {EIO, KILN_AGENT_E_IO},
        {EXDEV, KILN_AGENT_E_IO},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        assert_int_equal(agent_status_from_errno(map[i].err), map[i].st);
    for (uint32_t s = 1; s <= KILN_AGENT_E_CANCELLED; s++) {
        assert_string_not_equal(agent_status_name(s), "unknown status");
        assert_true(agent_errno_from_status(s) > 0);
    }
    assert_string_equal(agent_status_name(17), "unknown status");
    assert_int_equal(agent_errno_from_status(KILN_AGENT_E_NOT_FOUND), ENOENT);
    assert_string_equal(agent_type_name(KILN_AGENT_EXEC), "EXEC");
    assert_string_equal(agent_type_name(KILN_AGENT_OK), "OK");
    assert_string_equal(agent_type_name(7), "unknown");
    assert_string_equal(agent_type_name(0xffff), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_golden),
        cmocka_unit_test(test_header_bad),
        cmocka_unit_test(test_frame_next),
        cmocka_unit_test(test_build_limits),
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_ready_error_window),
        cmocka_unit_test(test_exec_golden),
        cmocka_unit_test(test_exec_bad),
        cmocka_unit_test(test_exec_build_limits),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_small_structs),
        cmocka_unit_test(test_file_ops),
        cmocka_unit_test(test_list_entry),
        cmocka_unit_test(test_status_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
