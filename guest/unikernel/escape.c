/* escape.c: negative guest: tries to leave the --mount directory (.., absolute paths, symlinks
 * that point out, unlink outside). Every attempt must fail; prints SUCCESS and exits 0 if so.
 * argv[1] "nomount": every file call must fail with -EACCES (no --mount). */
#include "rt/rt.h"

#define EACCES 13

static int failures;

static void must_fail(const char *what, long ret)
{
    printf("%s: %ld\n", what, ret);
    if (ret >= 0) {
        printf("FAIL: %s succeeded\n", what);
        failures++;
    }
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc > 1 && !strcmp(argv[1], "nomount")) {
        long r = uk_open("hello.txt", KILN_HVC_O_RDONLY, 0);
        long u = uk_unlink("hello.txt");
        printf("open: %ld unlink: %ld\n", r, u);
        if (r != -EACCES || u != -EACCES)
            return 1;
        puts("SUCCESS");
        return 0;
    }
    must_fail("dotdot", uk_open("../outside.txt", KILN_HVC_O_RDONLY, 0));
    must_fail("sub-dotdot", uk_open("sub/../../outside.txt", KILN_HVC_O_RDONLY, 0));
    must_fail("absolute", uk_open("/etc/passwd", KILN_HVC_O_RDONLY, 0));
    must_fail("symlink-dir-out", uk_open("link-dir/passwd", KILN_HVC_O_RDONLY, 0));
    must_fail("symlink-file-out", uk_open("link-file", KILN_HVC_O_RDONLY, 0));
    must_fail("symlink-create-out",
              uk_open("link-new", KILN_HVC_O_WRONLY | KILN_HVC_O_CREAT, 0644));
    must_fail("unlink-dotdot", uk_unlink("../outside.txt"));
    must_fail("unlink-via-link", uk_unlink("link-dir/outside.txt"));
    must_fail("directory", uk_open("sub", KILN_HVC_O_RDONLY, 0));
    must_fail("bad-flags", uk_open("hello.txt", 0x80000000u, 0));
    /* The mount itself still works. */
    long fd = uk_open("sub/inner.txt", KILN_HVC_O_RDONLY, 0);
    if (fd < 0) {
        printf("FAIL: a legitimate open failed: %ld\n", fd);
        failures++;
    }
    if (failures)
        return 1;
    puts("SUCCESS");
    return 0;
}
