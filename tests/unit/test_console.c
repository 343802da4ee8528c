/* test_console.c: the console's output path and its panic-banner watch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "machine/machine.h"

static void feed(struct console *con, const char *s)
{
    console_output(con, (const uint8_t *)s, strlen(s));
}

static void test_output_reaches_fd(void **state)
{
    struct vm vm = {0};
    int fds[2];
    char buf[64] = {0};
    struct console *con;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    con = console_create(&vm, fds[1], -1);
    assert_non_null(con);
    feed(con, "hello\r\n");
    assert_int_equal(read(fds[0], buf, sizeof(buf)), 7);
    assert_string_equal(buf, "hello\r\n");
    console_destroy(con);
    close(fds[0]);
    close(fds[1]);
}

static void test_panic_banner_split_across_writes(void **state)
{
    struct vm vm = {0};
    struct console *con;
    int null = open("/dev/null", O_WRONLY);

    (void)state;
    con = console_create(&vm, null, -1);
    feed(con, "[    1.0] Kernel pan");
    assert_false(vm.panic_seen);
    feed(con, "ic - not syncing: sysrq triggered crash\r\n");
    assert_true(vm.panic_seen);
    console_destroy(con);
    close(null);
}

static void test_near_misses_are_not_panics(void **state)
{
    struct vm vm = {0};
    struct console *con;
    int fds[2];

    (void)state;
    assert_int_equal(pipe(fds), 0);
    con = console_create(&vm, fds[1], -1);
    feed(con, "Kernel panic - not syncin\n");
    feed(con, "Kernel Panic - not syncing\n");
    feed(con, "KKernel panic - not syncinKernel");
    assert_false(vm.panic_seen);
    /* A restart of the match inside a partial one still counts. */
    feed(con, " panic - not syncing");
    assert_true(vm.panic_seen);
    console_destroy(con);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_reaches_fd),
        cmocka_unit_test(test_panic_banner_split_across_writes),
        cmocka_unit_test(test_near_misses_are_not_panics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
