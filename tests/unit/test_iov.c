/* test_iov.c: iov_copy_from/iov_copy_to with offsets spanning segments, empty segments and short
 * lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/virtio.h"

static void test_iov_copy(void **state)
{
    char a[4] = "abcd", b[3] = "efg", c[5] = "hijkl", out[16];
    struct iovec iov[] = {{a, 4}, {NULL, 0}, {b, 3}, {c, 5}};

    (void)state;
    memset(out, 0, sizeof(out));
    assert_int_equal(iov_copy_from(iov, 4, 0, out, sizeof(out)), 12); /* short: list ends */
    assert_memory_equal(out, "abcdefghijkl", 12);
    assert_int_equal(iov_copy_from(iov, 4, 3, out, 5), 5); /* spans three segments */
    assert_memory_equal(out, "defgh", 5);
    assert_int_equal(iov_copy_from(iov, 4, 7, out, 2), 2);
    assert_memory_equal(out, "hi", 2);
    assert_int_equal(iov_copy_from(iov, 4, 12, out, 1), 0);
    assert_int_equal(iov_copy_from(iov, 4, 100, out, 1), 0);
    assert_int_equal(iov_copy_from(iov, 0, 0, out, 1), 0);
    assert_int_equal(iov_copy_from(iov, 2, 1, out, 16), 3); /* a short list */
    assert_int_equal(iov_copy_to(iov, 4, 2, "XYZW", 4), 4);
    assert_memory_equal(a, "abXY", 4);
    assert_memory_equal(b, "ZWg", 3);
    assert_int_equal(iov_copy_to(iov, 4, 10, "123", 3), 2);
    assert_memory_equal(c, "hij12", 5);
    assert_int_equal(iov_copy_to(iov, 4, 0, "", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iov_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
