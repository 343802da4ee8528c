/* test_fsvc_codec.c: the file service's codec and path rules: golden byte vectors for every
 * message, every decoder refusal, partial messages, and each path rule with its negative. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fileservice/fileservice.h"

/* ---- golden vectors -------------------------------------------------------------------------- */
static const uint8_t gold_version_request[] = {0x10, 0, 0, 0, 0x01, 0, 0, 0,
                                               0x01, 0, 0, 0, 0,    0, 0, 0};
static const uint8_t gold_version_supported[] = {0x10, 0, 0, 0, 0x02, 0, 0, 0,
                                                 0x00, 0, 0, 0, 0,    0, 0, 0};
static const uint8_t gold_version_unsupported[] = {0x10, 0, 0, 0, 0x02, 0, 0, 0,
                                                   0x01, 0, 0, 0, 0,    0, 0, 0};
static const uint8_t gold_get_file_info[] = {0x0b, 0, 0, 0, 0x03, 0, 0, 0, 'a', '/', 'b'};
static const uint8_t gold_file_info_response[] = {0x18, 0,    0,    0,    0x04, 0, 0, 0,
                                                  0x00, 0,    0,    0,    0x00, 0, 0, 0,
                                                  0x05, 0x04, 0x03, 0x02, 0x01, 0, 0, 0};
static const uint8_t gold_dir_info_response[] = {0x18, 0, 0, 0, 0x04, 0, 0, 0, 0x00, 0, 0, 0,
                                                 0x01, 0, 0, 0, 0,    0, 0, 0, 0,    0, 0, 0};
static const uint8_t gold_not_found_response[] = {0x18, 0, 0, 0, 0x04, 0, 0, 0, 0x01, 0, 0, 0,
                                                  0x00, 0, 0, 0, 0,    0, 0, 0, 0,    0, 0, 0};
static const uint8_t gold_read_file[] = {0x19, 0,    0,    0, 0x05, 0, 0,  0,    0x00,
                                         0x00, 0x01, 0x00, 0, 0,    0, 0,  0x00, 0,
                                         0,    0,    0x01, 0, 0,    0, 'x'};
static const uint8_t gold_read_file_response[] = {0x13, 0, 0,    0, 0x06, 0, 0,   0,   0x00, 0,
                                                  0,    0, 0x03, 0, 0,    0, 'a', 'b', 'c'};
static const uint8_t gold_read_past_end[] = {0x10, 0, 0, 0, 0x06, 0, 0, 0,
                                             0x04, 0, 0, 0, 0,    0, 0, 0};

static void encode_requests(void **state)
{
    uint8_t buf[64];

    (void)state;
    assert_int_equal(fsvc_encode_version_request(buf, sizeof(buf), 1), 16);
    assert_memory_equal(buf, gold_version_request, 16);
    assert_int_equal(fsvc_encode_get_file_info(buf, sizeof(buf), "a/b", 3), 11);
    assert_memory_equal(buf, gold_get_file_info, 11);
    assert_int_equal(fsvc_encode_read_file(buf, sizeof(buf), 65536, 1ULL << 32, "x", 1), 25);
    assert_memory_equal(buf, gold_read_file, 25);
    /* Too small a buffer encodes nothing. */
    assert_int_equal(fsvc_encode_version_request(buf, 15, 1), 0);
    assert_int_equal(fsvc_encode_get_file_info(buf, 10, "a/b", 3), 0);
    assert_int_equal(fsvc_encode_read_file(buf, 24, 1, 0, "x", 1), 0);
}

static void encode_responses(void **state)
{
    static uint8_t buf[KILN_FS_MAX_RESPONSE];

    (void)state;
    assert_int_equal(fsvc_encode_version_response(buf, KILN_FS_VERSION_SUPPORTED), 16);
    assert_memory_equal(buf, gold_version_supported, 16);
    assert_int_equal(fsvc_encode_version_response(buf, KILN_FS_VERSION_UNSUPPORTED), 16);
    assert_memory_equal(buf, gold_version_unsupported, 16);
    assert_int_equal(fsvc_encode_file_info_response(buf, 0, 0, 0x0102030405ULL), 24);
    assert_memory_equal(buf, gold_file_info_response, 24);
    assert_int_equal(fsvc_encode_file_info_response(buf, 0, KILN_FS_FLAG_DIRECTORY, 0), 24);
    assert_memory_equal(buf, gold_dir_info_response, 24);
    assert_int_equal(fsvc_encode_file_info_response(buf, KILN_FS_NOT_FOUND, 0, 0), 24);
    assert_memory_equal(buf, gold_not_found_response, 24);
    memcpy(buf + 16, "abc", 3);
    assert_int_equal(fsvc_encode_read_file_response(buf, 0, 3), 19);
    assert_memory_equal(buf, gold_read_file_response, 19);
    assert_int_equal(fsvc_encode_read_file_response(buf, KILN_FS_READ_PAST_END, 0), 16);
    assert_memory_equal(buf, gold_read_past_end, 16);
}

static void decode_golden(void **state)
{
    struct fsvc_request r;
    const char *why;

    (void)state;
    assert_int_equal(fsvc_decode_request(gold_version_request, 16, &r, &why), 16);
    assert_int_equal(r.type, KILN_FS_MSG_VERSION_REQUEST);
    assert_int_equal(r.version, 1);
    assert_int_equal(fsvc_decode_request(gold_get_file_info, 11, &r, &why), 11);
    assert_int_equal(r.type, KILN_FS_MSG_GET_FILE_INFO);
    assert_int_equal(r.path_len, 3);
    assert_memory_equal(r.path, "a/b", 3);
    assert_int_equal(fsvc_decode_request(gold_read_file, 25, &r, &why), 25);
    assert_int_equal(r.type, KILN_FS_MSG_READ_FILE);
    assert_int_equal(r.byte_count, 65536);
    assert_int_equal(r.offset, 1ULL << 32);
    assert_int_equal(r.path_len, 1);
    assert_int_equal(r.path[0], 'x');
}

static void decode_partial(void **state)
{
    struct fsvc_request r;
    const char *why;
    uint8_t two[32];

    (void)state;
    for (size_t len = 0; len < sizeof(gold_read_file); len++)
        assert_int_equal(fsvc_decode_request(gold_read_file, len, &r, &why), 0);
    /* Two messages back to back: the first one's size comes back. */
    memcpy(two, gold_version_request, 16);
    memcpy(two + 16, gold_get_file_info, 11);
    assert_int_equal(fsvc_decode_request(two, 27, &r, &why), 16);
    assert_int_equal(fsvc_decode_request(two + 16, 11, &r, &why), 11);
}

static void decode_errors(void **state)
{
    struct fsvc_request r;
    const char *why;
    uint8_t m[64];

    (void)state;
    /* Size below the header, above the largest request. */
    memcpy(m, gold_version_request, 16);
    m[0] = 7;
    assert_int_equal(fsvc_decode_request(m, 16, &r, &why), -EMSGSIZE);
    assert_non_null(why);
    m[0] = 0;
    m[1] = 0x20; /* 8192 > 4120 */
    assert_int_equal(fsvc_decode_request(m, 16, &r, &why), -EMSGSIZE);
    /* Reserved header field. */
    memcpy(m, gold_version_request, 16);
    m[7] = 1;
    assert_int_equal(fsvc_decode_request(m, 16, &r, &why), -EBADMSG);
    /* VersionRequest of the wrong size, with reserved bits. */
    memcpy(m, gold_version_request, 16);
    m[0] = 12;
    assert_int_equal(fsvc_decode_request(m, 16, &r, &why), -EBADMSG);
    m[0] = 20;
    assert_int_equal(fsvc_decode_request(m, 20, &r, &why), -EBADMSG);
    memcpy(m, gold_version_request, 16);
    m[13] = 1;
    assert_int_equal(fsvc_decode_request(m, 16, &r, &why), -EBADMSG);
    /* ReadFile too short for its fixed part; with reserved bits. */
    memcpy(m, gold_read_file, 25);
    m[0] = 20;
    assert_int_equal(fsvc_decode_request(m, 25, &r, &why), -EBADMSG);
    memcpy(m, gold_read_file, 25);
    m[12] = 1;
    assert_int_equal(fsvc_decode_request(m, 25, &r, &why), -EBADMSG);
    /* Unknown types and response types. */
    memcpy(m, gold_version_request, 16);
    for (unsigned t = 0; t < 10; t++) {
        m[4] = (uint8_t)t;
        int ret = fsvc_decode_request(m, 16, &r, &why);
        if (t == 1)
            assert_int_equal(ret, 16);
        else if (t == 3)
            assert_int_equal(ret, 16); /* a GetFileInfo with an 8-byte path */
        else if (t == 5)
            assert_int_equal(ret, -EBADMSG); /* too short */
        else
            assert_int_equal(ret, -EPROTO);
    }
    m[4] = 0;
    m[5] = 1; /* type 256 */
    assert_int_equal(fsvc_decode_request(m, 16, &r, &why), -EPROTO);
}

static int norm(const char *in, size_t len, char *out)
{
    return fsvc_path_normalize((const uint8_t *)in, len, out, KILN_FS_MAX_PATH + 1);
}

static void path_rules(void **state)
{
    char out[KILN_FS_MAX_PATH + 1];
    static char longp[KILN_FS_MAX_PATH + 2];

    (void)state;
    assert_int_equal(norm("", 0, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(norm("/", 1, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(norm("/config/init.env", 16, out), 0);
    assert_string_equal(out, "config/init.env");
    assert_int_equal(norm("a//b/./c/", 9, out), 0);
    assert_string_equal(out, "a/b/c");
    assert_int_equal(norm("a\\b\\c", 5, out), 0);
    assert_string_equal(out, "a/b/c");
    assert_int_equal(norm("d\xc3\xa9j\xc3\xa0/\xe2\x82\xac/\xf0\x9f\x98\x80", 15, out), 0);
    assert_int_equal(norm("..a/b..", 7, out), 0); /* only a whole ".." component is refused */
    /* Refusals: .., ..\, NUL, bad UTF-8 of each kind, too long. */
    assert_int_equal(norm("..", 2, out), -EINVAL);
    assert_int_equal(norm("a/../b", 6, out), -EINVAL);
    assert_int_equal(norm("a\\..\\..\\etc", 11, out), -EINVAL);
    assert_int_equal(norm("/..", 3, out), -EINVAL);
    assert_int_equal(norm("a\0b", 3, out), -EINVAL);
    assert_int_equal(norm("\x80", 1, out), -EINVAL);             /* lone continuation */
    assert_int_equal(norm("\xc0\xaf", 2, out), -EINVAL);         /* overlong '/' */
    assert_int_equal(norm("\xe0\x80\xaf", 3, out), -EINVAL);     /* overlong 3-byte */
    assert_int_equal(norm("\xed\xa0\x80", 3, out), -EINVAL);     /* surrogate */
    assert_int_equal(norm("\xf4\x90\x80\x80", 4, out), -EINVAL); /* > U+10FFFF */
    assert_int_equal(norm("\xc3", 1, out), -EINVAL);             /* truncated */
    assert_int_equal(norm("\xe2\x82/", 3, out), -EINVAL);        /* bad continuation */
    memset(longp, 'a', 256);
    assert_int_equal(norm(longp, 255, out), 0);
    assert_int_equal(norm(longp, 256, out), -EINVAL); /* component > 255 */
    for (size_t i = 0; i < sizeof(longp); i++)
        longp[i] = i % 2 ? '/' : 'a';
    assert_int_equal(norm(longp, KILN_FS_MAX_PATH, out), 0);
    assert_int_equal(norm(longp, KILN_FS_MAX_PATH + 1, out), -EINVAL);
    /* An output buffer too small. */
    assert_int_equal(fsvc_path_normalize((const uint8_t *)"abc", 3, out, 3), -ENAMETOOLONG);
    assert_int_equal(fsvc_path_normalize((const uint8_t *)"abc", 3, out, 4), 0);
}

static void file_spec(void **state)
{
    char err[256];
    size_t n;

    (void)state;
    assert_int_equal(fsvc_file_spec_check("config/init.env=/tmp/x", &n, err, sizeof(err)), 0);
    assert_int_equal(n, 15);
    assert_int_equal(fsvc_file_spec_check("a=b=c", &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(fsvc_file_spec_check("noequals", &n, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "NAME=HOSTPATH"));
    assert_int_equal(fsvc_file_spec_check("=x", &n, err, sizeof(err)), -EINVAL);
    assert_int_equal(fsvc_file_spec_check("a=", &n, err, sizeof(err)), -EINVAL);
    assert_int_equal(fsvc_file_spec_check("../x=y", &n, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'../x'"));
    assert_int_equal(fsvc_file_spec_check("/=y", &n, err, sizeof(err)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_requests), cmocka_unit_test(encode_responses),
        cmocka_unit_test(decode_golden),   cmocka_unit_test(decode_partial),
        cmocka_unit_test(decode_errors),   cmocka_unit_test(path_rules),
        cmocka_unit_test(file_spec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
