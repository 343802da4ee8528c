/* test_uk_files.c: unikernel file confinement: opens and unlinks stay beneath the mount through
 * openat2 and through the fallback component walk; bad paths and flags; the bounded fd table. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "unikernel/uk.h"

static char top[64], mnt[96];

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* top/outside.txt, top/mnt/{hello.txt, sub/inner.txt, link-dir -> /etc, link-file ->
 * ../outside.txt, link-in -> hello.txt, fifo} */
static int setup(void **state)
{
    char p[160];

    (void)state;
    snprintf(top, sizeof(top), "/tmp/kiln-ukfiles.XXXXXX");
    if (!mkdtemp(top))
        return -1;
    snprintf(mnt, sizeof(mnt), "%s/mnt", top);
    mkdir(mnt, 0755);
    snprintf(p, sizeof(p), "%s/outside.txt", top);
    put(p, "secret");
    snprintf(p, sizeof(p), "%s/hello.txt", mnt);
    put(p, "hi");
    snprintf(p, sizeof(p), "%s/sub", mnt);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/sub/inner.txt", mnt);
    put(p, "inner");
    snprintf(p, sizeof(p), "%s/link-dir", mnt);
    if (symlink("/etc", p) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/link-file", mnt);
    if (symlink("../outside.txt", p) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/link-in", mnt);
    if (symlink("hello.txt", p) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/fifo", mnt);
    if (mkfifo(p, 0644) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : -1;
}

static int open_s(struct uk_files *f, const char *path, uint32_t flags)
{
    return uk_files_open(f, path, strlen(path), flags, 0644);
}

static void check_confinement(bool walk)
{
    struct uk_files f;
    char buf[16] = "";
    int fd;

    assert_int_equal(uk_files_init(&f, mnt), 0);
    f.force_walk = walk;
    fd = open_s(&f, "hello.txt", KILN_HVC_O_RDONLY);
    assert_true(fd >= UK_FD_FIRST);
    assert_int_equal(read(uk_files_host_fd(&f, (uint64_t)fd), buf, sizeof(buf)), 2);
    assert_string_equal(buf, "hi");
    assert_int_equal(uk_files_close(&f, (uint64_t)fd), 0);
    assert_int_equal(uk_files_close(&f, (uint64_t)fd), -EBADF);
    assert_true(open_s(&f, "sub/inner.txt", KILN_HVC_O_RDONLY) >= UK_FD_FIRST);
    assert_true(open_s(&f, "./sub//inner.txt", KILN_HVC_O_RDONLY) >= UK_FD_FIRST);

    assert_int_equal(open_s(&f, "../outside.txt", KILN_HVC_O_RDONLY), -EXDEV);
    assert_int_equal(open_s(&f, "sub/../../outside.txt", KILN_HVC_O_RDONLY), -EXDEV);
    assert_int_equal(open_s(&f, "/etc/passwd", KILN_HVC_O_RDONLY), -EXDEV);
    assert_int_equal(open_s(&f, "link-dir/passwd", KILN_HVC_O_RDONLY), -EXDEV);
    assert_int_equal(open_s(&f, "link-file", KILN_HVC_O_RDONLY), -EXDEV);
    assert_int_equal(open_s(&f, "link-file", KILN_HVC_O_WRONLY | KILN_HVC_O_CREAT), -EXDEV);
    assert_int_equal(open_s(&f, "sub", KILN_HVC_O_RDONLY), -EISDIR);
    assert_int_equal(open_s(&f, "fifo", KILN_HVC_O_RDONLY), -EINVAL);
    assert_int_equal(open_s(&f, "missing", KILN_HVC_O_RDONLY), -ENOENT);
    /* a symlink inside the mount: followed by openat2, refused by the walk */
    assert_int_equal(open_s(&f, "link-in", KILN_HVC_O_RDONLY) >= UK_FD_FIRST, !walk);

    assert_int_equal(uk_files_unlink(&f, "../outside.txt", 14), -EXDEV);
    assert_int_equal(uk_files_unlink(&f, "link-dir/passwd", 15), -EXDEV);
    assert_int_equal(uk_files_unlink(&f, "sub/..", 6), -EXDEV);
    assert_int_equal(uk_files_unlink(&f, "sub/", 4), -EINVAL);
    fd = open_s(&f, "new.txt", KILN_HVC_O_WRONLY | KILN_HVC_O_CREAT | KILN_HVC_O_EXCL);
    assert_true(fd >= UK_FD_FIRST);
    assert_int_equal(open_s(&f, "new.txt", KILN_HVC_O_WRONLY | KILN_HVC_O_CREAT | KILN_HVC_O_EXCL),
                     -EEXIST);
    assert_int_equal(uk_files_unlink(&f, "new.txt", 7), 0);
    assert_int_equal(uk_files_unlink(&f, "new.txt", 7), -ENOENT);
    uk_files_close_all(&f);
    assert_int_equal(access(top, F_OK), 0);
}

static void test_confinement_openat2(void **state)
{
    (void)state;
    check_confinement(false);
}

static void test_confinement_walk(void **state)
{
    (void)state;
    check_confinement(true);
}

static void test_bad_paths_and_flags(void **state)
{
    struct uk_files f;
    char long_path[KILN_HVC_MAX_PATH + 2];

    (void)state;
    assert_int_equal(uk_files_init(&f, mnt), 0);
    assert_int_equal(uk_files_open(&f, "", 0, 0, 0), -EINVAL);
    assert_int_equal(uk_files_open(&f, "hello.txt\0x", 11, 0, 0), -EINVAL);
    memset(long_path, 'a', sizeof(long_path));
    assert_int_equal(uk_files_open(&f, long_path, KILN_HVC_MAX_PATH + 1, 0, 0), -EINVAL);
    assert_int_equal(uk_files_open(&f, "hello.txt", 9, 0x80000000u, 0), -EINVAL);
    assert_int_equal(uk_files_open(&f, "hello.txt", 9, KILN_HVC_O_ACCMODE, 0), -EINVAL);
    assert_int_equal(uk_files_unlink(&f, "", 0), -EINVAL);
    assert_int_equal(uk_files_host_fd(&f, 0), 0);
    assert_int_equal(uk_files_host_fd(&f, 2), 2);
    assert_int_equal(uk_files_host_fd(&f, 3), -EBADF);
    assert_int_equal(uk_files_host_fd(&f, UINT64_MAX), -EBADF);
    assert_int_equal(uk_files_close(&f, 1), -EBADF);
    assert_int_equal(uk_files_close(&f, UINT64_MAX), -EBADF);
    uk_files_close_all(&f);
}

static void test_no_mount(void **state)
{
    struct uk_files f;

    (void)state;
    assert_int_equal(uk_files_init(&f, NULL), 0);
    assert_int_equal(uk_files_open(&f, "hello.txt", 9, 0, 0), -EACCES);
    assert_int_equal(uk_files_unlink(&f, "hello.txt", 9), -EACCES);
    uk_files_close_all(&f);
    assert_int_equal(uk_files_init(&f, "/nonexistent/kiln"), -ENOENT);
}

static void test_table_is_bounded(void **state)
{
    struct uk_files f;
    int fd = 0;

    (void)state;
    assert_int_equal(uk_files_init(&f, mnt), 0);
    for (unsigned i = 0; i < UK_MAX_FILES; i++) {
        fd = open_s(&f, "hello.txt", KILN_HVC_O_RDONLY);
        assert_int_equal(fd, UK_FD_FIRST + (int)i);
    }
    assert_int_equal(open_s(&f, "hello.txt", KILN_HVC_O_RDONLY), -EMFILE);
    assert_int_equal(uk_files_close(&f, UK_FD_FIRST + 5), 0);
    assert_int_equal(open_s(&f, "hello.txt", KILN_HVC_O_RDONLY), UK_FD_FIRST + 5);
    uk_files_close_all(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confinement_openat2), cmocka_unit_test(test_confinement_walk),
        cmocka_unit_test(test_bad_paths_and_flags), cmocka_unit_test(test_no_mount),
        cmocka_unit_test(test_table_is_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
