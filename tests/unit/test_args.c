/* test_args.c: `kiln run` option parsing, including every rejected value. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "lib/lib.h"

static char err[256];

static int parse(struct cli_run *run, int argc, char **argv)
{
    err[0] = '\0';
    return cli_parse_run(argc, argv, run, err, sizeof(err));
}

static void test_defaults(void **state)
{
    struct cli_run run;

    (void)state;
    assert_int_equal(parse(&run, 0, NULL), 0);
    assert_int_equal(run.cfg.mem_size, CLI_DEFAULT_MEM);
    assert_int_equal(run.cfg.ncpus, CLI_DEFAULT_CPUS);
    assert_true(run.cfg.acpi);
    assert_null(run.cfg.kernel_path);
    assert_null(run.cfg.cmdline);
    assert_int_equal(run.cfg.timeout_s, 0);
}

static void test_all_options(void **state)
{
    char *argv[] = {"--kernel",  "k",  "--initrd=i", "--cmdline", "console=ttyS0 -- x",
                    "--cpus",    "4",  "--mem=2G",   "--console", "out.log",
                    "--timeout", "30", "--no-acpi",  "--stats",   "s.json",
                    "-v",        "-v", "--kvm",      "/dev/kvm2"};
    struct cli_run run;

    (void)state;
    assert_int_equal(parse(&run, (int)ARRAY_SIZE(argv), argv), 0);
    assert_string_equal(run.cfg.kernel_path, "k");
    assert_string_equal(run.cfg.initrd_path, "i");
    assert_string_equal(run.cfg.cmdline, "console=ttyS0 -- x");
    assert_int_equal(run.cfg.ncpus, 4);
    assert_int_equal(run.cfg.mem_size, 2 * GiB);
    assert_string_equal(run.cfg.console_path, "out.log");
    assert_int_equal(run.cfg.timeout_s, 30);
    assert_false(run.cfg.acpi);
    assert_string_equal(run.cfg.stats_path, "s.json");
    assert_int_equal(run.verbosity, 2);
    assert_string_equal(run.cfg.kvm_path, "/dev/kvm2");
}

static void expect_error(char **argv, int argc, const char *needle)
{
    struct cli_run run;

    assert_int_equal(parse(&run, argc, argv), -EINVAL);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_rejects(void **state)
{
    (void)state;
    expect_error((char *[]){"--cpus", "0"}, 2, "--cpus '0'");
    expect_error((char *[]){"--cpus", "33"}, 2, "1 to 32");
    expect_error((char *[]){"--cpus", "2x"}, 2, "--cpus '2x'");
    expect_error((char *[]){"--cpus", "-1"}, 2, "--cpus '-1'");
    expect_error((char *[]){"--mem", "8M"}, 2, "--mem '8M'");
    expect_error((char *[]){"--mem", "2Q"}, 2, "16M to 1T");
    expect_error((char *[]){"--mem", "2T"}, 2, "--mem '2T'");
    expect_error((char *[]){"--mem", "99999999999999999999"}, 2, "--mem");
    expect_error((char *[]){"--timeout", "0"}, 2, "--timeout '0'");
    expect_error((char *[]){"--timeout", "1.5"}, 2, "whole seconds");
    expect_error((char *[]){"--kernel"}, 1, "--kernel needs a value");
    expect_error((char *[]){"--bogus"}, 1, "unknown option '--bogus'");
    expect_error((char *[]){"--kernelx", "k"}, 2, "unknown option '--kernelx'");
    expect_error((char *[]){"--console="}, 1, "--console");
    expect_error((char *[]){"--cmdline", "a", "--append", "b"}, 4, "do not go together");
}

static void test_sizes(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(parse_size("4k", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(parse_size("256MiB", &v), 0);
    assert_int_equal(v, 256 * MiB);
    assert_int_equal(parse_size("1GB", &v), 0);
    assert_int_equal(v, GiB);
    assert_int_equal(parse_size("", &v), -EINVAL);
    assert_int_equal(parse_size("M", &v), -EINVAL);
    assert_int_equal(parse_size("1MX", &v), -EINVAL);
    assert_int_equal(parse_size(" 1M", &v), -EINVAL);
    assert_int_equal(parse_size("18446744073709551615K", &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_options),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
