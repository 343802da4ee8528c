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

static void test_devices(void **state)
{
    char *argv[] = {"--kernel", "k",
                    "--disk",   "a.img",
                    "--disk",   "b.img,ro,bw=10M,iops=500",
                    "--net",    "tap=tap0,mac=52:54:00:12:34:56,bw=1M,pps=100",
                    "--vsock",  "/tmp/v.sock",
                    "--cid",    "7",
                    "--rng",    "--balloon",
                    "64M",      "--name",
                    "vm-1.a"};
    struct cli_run run;

    (void)state;
    assert_int_equal(parse(&run, (int)ARRAY_SIZE(argv), argv), 0);
    assert_int_equal(run.cfg.ndisks, 2);
    assert_string_equal(run.cfg.disks[0].path, "a.img");
    assert_false(run.cfg.disks[0].read_only);
    assert_false(ratelimit_enabled(&run.cfg.disks[0].limit));
    assert_string_equal(run.cfg.disks[1].path, "b.img");
    assert_true(run.cfg.disks[1].read_only);
    assert_int_equal(run.cfg.disks[1].limit.bytes_per_s, 10 * MiB);
    assert_int_equal(run.cfg.disks[1].limit.ops_per_s, 500);
    assert_true(run.cfg.net);
    assert_string_equal(run.cfg.net_cfg.tap, "tap0");
    assert_true(run.cfg.net_cfg.mac_set);
    assert_memory_equal(run.cfg.net_cfg.mac, ((uint8_t[]){0x52, 0x54, 0, 0x12, 0x34, 0x56}), 6);
    assert_int_equal(run.cfg.net_cfg.rx_limit.bytes_per_s, MiB);
    assert_int_equal(run.cfg.net_cfg.tx_limit.ops_per_s, 100);
    assert_true(run.cfg.vsock);
    assert_string_equal(run.cfg.vsock_path, "/tmp/v.sock");
    assert_int_equal(run.cfg.vsock_cid, 7);
    assert_true(run.cfg.rng);
    assert_true(run.cfg.balloon);
    assert_int_equal(run.cfg.balloon_cfg.target_pages, 64 * MiB / 4096);
    assert_string_equal(run.cfg.name, "vm-1.a");
}

static void test_device_defaults(void **state)
{
    struct cli_run run;

    (void)state;
    /* The default image gets vsock (path chosen later) and rng. */
    assert_int_equal(parse(&run, 0, NULL), 0);
    assert_true(run.cfg.vsock);
    assert_null(run.cfg.vsock_path);
    assert_true(run.cfg.rng);
    assert_false(run.cfg.net);
    assert_false(run.cfg.balloon);
    assert_int_equal(run.cfg.ndisks, 0);
    assert_int_equal(parse(&run, 2, (char *[]){"--no-vsock", "--no-rng"}), 0);
    assert_false(run.cfg.vsock);
    assert_false(run.cfg.rng);
    /* Your own kernel gets only what you ask for. */
    assert_int_equal(parse(&run, 2, (char *[]){"--kernel", "k"}), 0);
    assert_false(run.cfg.vsock);
    assert_false(run.cfg.rng);
    /* A zero balloon: the device, nothing taken yet. */
    assert_int_equal(parse(&run, 2, (char *[]){"--balloon", "0"}), 0);
    assert_true(run.cfg.balloon);
    assert_int_equal(run.cfg.balloon_cfg.target_pages, 0);
    assert_int_equal(parse(&run, 2, (char *[]){"--disk", "x,rw"}), 0);
    assert_false(run.cfg.disks[0].read_only);
}

static void test_device_rejects(void **state)
{
    char *many[2 * (MACHINE_MAX_DISKS + 1)];

    (void)state;
    expect_error((char *[]){"--disk", ""}, 2, "--disk ''");
    expect_error((char *[]){"--disk", ",ro"}, 2, "PATH[,ro]");
    expect_error((char *[]){"--disk", "a,rox"}, 2, "'rox'");
    expect_error((char *[]){"--disk", "a,bw=0"}, 2, "bw=10M");
    expect_error((char *[]){"--disk", "a,bw=fast"}, 2, "'bw=fast'");
    expect_error((char *[]){"--disk", "a,iops=0"}, 2, "'iops=0'");
    expect_error((char *[]){"--disk", "a,iops=-5"}, 2, "whole number");
    for (unsigned i = 0; i < ARRAY_SIZE(many); i += 2) {
        many[i] = "--disk";
        many[i + 1] = "d.img";
    }
    expect_error(many, (int)ARRAY_SIZE(many), "at most 8");
    expect_error((char *[]){"--net", "mac=52:54:00:12:34:56"}, 2, "tap=NAME");
    expect_error((char *[]){"--net", "tap="}, 2, "tap name ''");
    expect_error((char *[]){"--net", "tap=averyveryverylongname"}, 2, "1 to 15 characters");
    expect_error((char *[]){"--net", "tap=a/b"}, 2, "tap name 'a/b'");
    expect_error((char *[]){"--net", "tap=t,mac=52:54:00:12:34"}, 2, "six hex bytes");
    expect_error((char *[]){"--net", "tap=t,mac=52:54:00:12:34:5g"}, 2, "'52:54:00:12:34:5g'");
    expect_error((char *[]){"--net", "tap=t,mac=01:00:5e:00:00:01"}, 2, "unicast");
    expect_error((char *[]){"--net", "tap=t,mac=52:54:00:12:34:56:"}, 2, "six hex bytes");
    expect_error((char *[]){"--net", "tap=t,speed=1"}, 2, "'speed=1'");
    expect_error((char *[]){"--net", "tap=t,pps=0"}, 2, "'pps=0'");
    expect_error((char *[]){"--net", "tap=a", "--net", "tap=b"}, 4, "twice");
    expect_error((char *[]){"--vsock", ""}, 2, "--vsock ''");
    expect_error((char *[]){"--vsock", "x", "--no-vsock"}, 3, "do not go together");
    expect_error((char *[]){"--rng", "--no-rng"}, 2, "do not go together");
    expect_error((char *[]){"--cid", "2"}, 2, "--cid '2'");
    expect_error((char *[]){"--cid", "4294967295"}, 2, "reserved");
    expect_error((char *[]){"--kernel", "k", "--cid", "5"}, 4, "add --vsock");
    expect_error((char *[]){"--no-vsock", "--cid", "5"}, 3, "--cid is for");
    expect_error((char *[]){"--balloon", "1000"}, 2, "multiple of 4K");
    expect_error((char *[]){"--balloon", "lots"}, 2, "--balloon 'lots'");
    expect_error((char *[]){"--balloon", "256M"}, 2, "less than --mem");
    expect_error((char *[]){"--name", ".hidden"}, 2, "--name '.hidden'");
    expect_error((char *[]){"--name", "a/b"}, 2, "A-Z a-z 0-9");
    expect_error((char *[]){"--name", ""}, 2, "--name ''");
}

/* --files DIR and --file NAME=HOSTPATH (the read-only file service). */
static void test_files(void **state)
{
    char *many[2 * (MACHINE_MAX_FILES + 1)];
    struct cli_run run;

    (void)state;
    assert_int_equal(
        parse(&run, 5, (char *[]){"--files", "d", "--file", "a/b=x", "--file=config/init.env=y=z"}),
        0);
    assert_string_equal(run.cfg.files_dir, "d");
    assert_int_equal(run.cfg.nfiles, 2);
    assert_string_equal(run.cfg.files[0], "a/b=x");
    assert_string_equal(run.cfg.files[1], "config/init.env=y=z");
    assert_true(run.cfg.vsock); /* the default image has vsock */
    expect_error((char *[]){"--files", ""}, 2, "--files ''");
    expect_error((char *[]){"--files", "a", "--files", "b"}, 4, "twice");
    expect_error((char *[]){"--file", "noequals"}, 2, "NAME=HOSTPATH");
    expect_error((char *[]){"--file", "=x"}, 2, "NAME=HOSTPATH");
    expect_error((char *[]){"--file", "a="}, 2, "NAME=HOSTPATH");
    expect_error((char *[]){"--file", "../a=x"}, 2, "'../a'");
    expect_error((char *[]){"--files", "d", "--no-vsock"}, 3, "add --vsock");
    expect_error((char *[]){"--kernel", "k", "--file", "a=b"}, 4, "served over vsock");
    for (unsigned i = 0; i < ARRAY_SIZE(many); i += 2) {
        many[i] = "--file";
        many[i + 1] = "a=b";
    }
    expect_error(many, (int)ARRAY_SIZE(many), "at most 32");
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
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_all_options),
        cmocka_unit_test(test_rejects),        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_devices),        cmocka_unit_test(test_device_defaults),
        cmocka_unit_test(test_device_rejects), cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
