/* test_control_codec.c: the control protocol's wire format: golden bytes for every request and
 * response, and each way a message can be malformed (docs/control-protocol.md). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "control/control.h"

struct req_vector {
    struct kiln_ctl_request req;
    unsigned nfds;
    uint8_t bytes[KILN_CTL_MSG_SIZE];
};

/* Little-endian: type, slot, size (u64), num_pages, padding. */
static const struct req_vector req_vectors[] = {
    {{.type = 1}, 0, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 2, .size = 0x200000}, 1, {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0,
                                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0}},
    {{.type = 3, .slot = 7}, 0, {3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,
                                 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 4, .num_pages = (uint32_t)-256}, 0, {4, 0, 0, 0, 0,    0,    0,    0,    0, 0, 0, 0,
                                                   0, 0, 0, 0, 0x00, 0xff, 0xff, 0xff, 0, 0, 0, 0}},
    {{.type = 4, .num_pages = 0x12345678}, 0, {4, 0, 0, 0, 0,    0,    0,    0,    0, 0, 0, 0,
                                               0, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0}},
    {{.type = 5}, 0, {5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 6}, 0, {6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 7}, 0, {7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 8, .slot = 4, .size = 0xd0000050ULL, .num_pages = 3},
     1,
     {8, 0, 0, 0, 4, 0, 0, 0, 0x50, 0, 0, 0xd0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 9, .slot = 23}, 1, {9, 0, 0, 0, 23, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0}},
    {{.type = 10}, 0, {10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 2, .size = 0x0102030405060708ULL}, 1, {2, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5,
                                                     4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0}},
};

struct resp_vector {
    struct kiln_ctl_response resp;
    unsigned nfds;
    uint8_t bytes[KILN_CTL_MSG_SIZE];
};

/* Little-endian: type, errno, pfn (u64), slot, padding. */
static const struct resp_vector resp_vectors[] = {
    {{.type = 1}, 0, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 1, .pfn = 4096}, 0, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0,
                                   0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0, 0}},
    {{.type = 2, .err = EMSGSIZE}, 0, {2, 0, 0, 0, 90, 0, 0, 0, 0, 0, 0, 0,
                                       0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0}},
    {{.type = 2, .err = EBADF}, 0, {2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 3, .pfn = 0x140000, .slot = 2}, 0, {3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, 0,
                                                  0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,    0}},
    {{.type = 4, .slot = 2}, 0, {4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
    {{.type = 5, .pfn = 321}, 1, {5, 0, 0, 0, 0, 0, 0, 0, 0x41, 1, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0, 0,    0, 0, 0}},
};

static void test_request_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(req_vectors) / sizeof(req_vectors[0]); i++) {
        const struct req_vector *v = &req_vectors[i];
        uint8_t out[KILN_CTL_MSG_SIZE];
        struct kiln_ctl_request got;

        ctl_encode_request(&v->req, out);
        assert_memory_equal(out, v->bytes, KILN_CTL_MSG_SIZE);
        assert_int_equal(ctl_decode_request(v->bytes, KILN_CTL_MSG_SIZE, v->nfds, &got), 0);
        assert_memory_equal(&got, &v->req, sizeof(got));
    }
}

static void test_response_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(resp_vectors) / sizeof(resp_vectors[0]); i++) {
        const struct resp_vector *v = &resp_vectors[i];
        uint8_t out[KILN_CTL_MSG_SIZE];
        struct kiln_ctl_response got;

        ctl_encode_response(&v->resp, out);
        assert_memory_equal(out, v->bytes, KILN_CTL_MSG_SIZE);
        assert_int_equal(ctl_decode_response(v->bytes, KILN_CTL_MSG_SIZE, v->nfds, &got), 0);
        assert_memory_equal(&got, &v->resp, sizeof(got));
    }
}

static void test_request_malformed(void **state)
{
    uint8_t buf[64];
    struct kiln_ctl_request req;

    (void)state;
    memset(buf, 0, sizeof(buf));
    buf[0] = KILN_CTL_REQ_GET_STATE;
    /* No data: the peer closed. */
    assert_int_equal(ctl_decode_request(buf, 0, 0, &req), -ENOTCONN);
    /* Wrong sizes, short and long. */
    assert_int_equal(ctl_decode_request(buf, 7, 0, &req), -EMSGSIZE);
    assert_int_equal(ctl_decode_request(buf, 23, 0, &req), -EMSGSIZE);
    assert_int_equal(ctl_decode_request(buf, 25, 0, &req), -EMSGSIZE);
    assert_int_equal(ctl_decode_request(buf, 64, 0, &req), -EMSGSIZE);
    /* 24 bytes of 0x0c: type 0x0c0c0c0c is unknown. */
    memset(buf, 0x0c, KILN_CTL_MSG_SIZE);
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 0, &req), -EOPNOTSUPP);
    /* Type 0 and the first number past the last are unknown too. */
    memset(buf, 0, sizeof(buf));
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 0, &req), -EOPNOTSUPP);
    buf[0] = KILN_CTL_REQ_MAX + 1;
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 0, &req), -EOPNOTSUPP);
    /* Reserved padding must be zero. */
    buf[0] = KILN_CTL_REQ_PAUSE;
    buf[20] = 1;
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 0, &req), -EINVAL);
    buf[20] = 0;
    /* A descriptor where none belongs, and two where one does. */
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 1, &req), -EINVAL);
    buf[0] = KILN_CTL_REQ_REGISTER_MEMORY;
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 2, &req), -EINVAL);
    /* Each descriptor-carrying request without one. */
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 0, &req), -EBADF);
    buf[0] = KILN_CTL_REQ_REGISTER_IOEVENT;
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 0, &req), -EBADF);
    buf[0] = KILN_CTL_REQ_REGISTER_IRQFD;
    assert_int_equal(ctl_decode_request(buf, KILN_CTL_MSG_SIZE, 0, &req), -EBADF);
}

static void test_response_malformed(void **state)
{
    uint8_t buf[32] = {0};
    struct kiln_ctl_response resp;

    (void)state;
    assert_int_equal(ctl_decode_response(buf, 0, 0, &resp), -ENOTCONN);
    assert_int_equal(ctl_decode_response(buf, 7, 0, &resp), -EMSGSIZE);
    memset(buf, 0x0c, KILN_CTL_MSG_SIZE);
    assert_int_equal(ctl_decode_response(buf, KILN_CTL_MSG_SIZE, 0, &resp), -EOPNOTSUPP);
    memset(buf, 0, sizeof(buf));
    buf[0] = KILN_CTL_RESP_ERR; /* an Err without an errno */
    assert_int_equal(ctl_decode_response(buf, KILN_CTL_MSG_SIZE, 0, &resp), -EINVAL);
    buf[0] = KILN_CTL_RESP_METRICS; /* Metrics without its memfd */
    assert_int_equal(ctl_decode_response(buf, KILN_CTL_MSG_SIZE, 0, &resp), -EBADF);
    buf[0] = KILN_CTL_RESP_OK;
    assert_int_equal(ctl_decode_response(buf, KILN_CTL_MSG_SIZE, 1, &resp), -EINVAL);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(ctl_request_name(KILN_CTL_REQ_EXIT), "exit");
    assert_string_equal(ctl_request_name(KILN_CTL_REQ_GET_METRICS), "get-metrics");
    assert_string_equal(ctl_request_name(0), "unknown");
    assert_string_equal(ctl_request_name(0x0c0c0c0c), "unknown");
    assert_string_equal(ctl_state_name(KILN_CTL_STATE_PAUSED), "paused");
    assert_string_equal(ctl_state_name(99), "unknown");
    assert_true(ctl_request_needs_fd(KILN_CTL_REQ_REGISTER_MEMORY));
    assert_false(ctl_request_needs_fd(KILN_CTL_REQ_UNREGISTER_MEMORY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_golden),
        cmocka_unit_test(test_response_golden),
        cmocka_unit_test(test_request_malformed),
        cmocka_unit_test(test_response_malformed),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
