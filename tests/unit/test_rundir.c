/* test_rundir.c: runtime directory names, creation, live-owner refusal and stale take-over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "machine/machine.h"

static char base[PATH_MAX];

static int setup(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/kiln-rundir-test.XXXXXX");
    if (!mkdtemp(base))
        return -1;
    setenv("XDG_RUNTIME_DIR", base, 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_names(void **state)
{
    char long_name[RUNDIR_NAME_MAX + 2];

    (void)state;
    assert_true(rundir_name_valid("vm1"));
    assert_true(rundir_name_valid("a.b_c-D9"));
    assert_false(rundir_name_valid(""));
    assert_false(rundir_name_valid(NULL));
    assert_false(rundir_name_valid(".hidden"));
    assert_false(rundir_name_valid(".."));
    assert_false(rundir_name_valid("a/b"));
    assert_false(rundir_name_valid("a b"));
    assert_false(rundir_name_valid("caf\xc3\xa9"));
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_false(rundir_name_valid(long_name));
    long_name[RUNDIR_NAME_MAX] = '\0';
    assert_true(rundir_name_valid(long_name));
}

static void test_create_and_remove(void **state)
{
    char path[PATH_MAX], want[PATH_MAX + 16], pidfile[PATH_MAX + 8], err[256];
    struct stat st;

    (void)state;
    snprintf(want, sizeof(want), "%s/kiln/vm1", base);
    assert_int_equal(rundir_path("vm1", path, sizeof(path)), 0);
    assert_string_equal(path, want);
    assert_int_equal(rundir_create("vm1", path, sizeof(path), err, sizeof(err)), 0);
    assert_string_equal(path, want);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(pidfile, sizeof(pidfile), "%s/pid", path);
    assert_int_equal(access(pidfile, R_OK), 0);
    /* One directory per process. */
    assert_int_equal(rundir_create("vm2", path, sizeof(path), err, sizeof(err)), -EBUSY);
    rundir_remove(want);
    assert_int_not_equal(stat(want, &st), 0);
}

static void test_bad_name_refused(void **state)
{
    char path[PATH_MAX], err[256];

    (void)state;
    assert_int_equal(rundir_create("../etc", path, sizeof(path), err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "../etc"));
}

static void test_stale_taken_over(void **state)
{
    char path[PATH_MAX], file[PATH_MAX + 16], err[256];
    FILE *f;

    (void)state;
    /* A directory left by a dead VMM: a pid file nobody locks, and a leftover socket file. */
    assert_int_equal(rundir_path("stale", path, sizeof(path)), 0);
    snprintf(file, sizeof(file), "%s/kiln", base);
    mkdir(file, 0700);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(file, sizeof(file), "%s/pid", path);
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("999999\n", f);
    fclose(f);
    snprintf(file, sizeof(file), "%s/control.sock", path);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(rundir_create("stale", path, sizeof(path), err, sizeof(err)), 0);
    assert_int_not_equal(access(file, F_OK), 0);
    rundir_remove(path);
}

static void test_live_owner_refused(void **state)
{
    char path[PATH_MAX], err[256];
    int ready[2], done[2];
    char byte;
    pid_t child;

    (void)state;
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char cpath[PATH_MAX], cerr[256];
        int ok = rundir_create("busy", cpath, sizeof(cpath), cerr, sizeof(cerr)) == 0;
        (void)!write(ready[1], ok ? "y" : "n", 1);
        (void)!read(done[0], &byte, 1);
        rundir_remove(cpath);
        _exit(0);
    }
    assert_int_equal(read(ready[0], &byte, 1), 1);
    assert_int_equal(byte, 'y');
    assert_int_equal(rundir_create("busy", path, sizeof(path), err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "already running"));
    (void)!write(done[1], "x", 1);
    waitpid(child, NULL, 0);
    /* Once the owner is gone the name is free again. */
    assert_int_equal(rundir_create("busy", path, sizeof(path), err, sizeof(err)), 0);
    rundir_remove(path);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_create_and_remove),
        cmocka_unit_test(test_bad_name_refused),
        cmocka_unit_test(test_stale_taken_over),
        cmocka_unit_test(test_live_owner_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
