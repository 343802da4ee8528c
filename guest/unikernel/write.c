/* write.c: writes argv[2] (and a newline) to the mounted file argv[1], reads it back through
 * lseek, checks it, and with argv[3] == "unlink" removes it again. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    char back[256];
    long fd, len, n;

    (void)envp;
    if (argc < 3) {
        puts("usage: write FILE TEXT [unlink]");
        return 2;
    }
    len = (long)strlen(argv[2]);
    if (len + 1 > (long)sizeof(back))
        return 2;
    fd = uk_open(argv[1], KILN_HVC_O_RDWR | KILN_HVC_O_CREAT | KILN_HVC_O_TRUNC, 0644);
    if (fd < 0) {
        printf("write: open %s: error %ld\n", argv[1], fd);
        return 1;
    }
    if (uk_write((int)fd, argv[2], (size_t)len) != len || uk_write((int)fd, "\n", 1) != 1) {
        puts("write: short write");
        return 1;
    }
    if (uk_lseek((int)fd, 0, KILN_HVC_SEEK_SET) != 0)
        return 1;
    n = uk_read((int)fd, back, sizeof(back));
    if (n != len + 1 || memcmp(back, argv[2], (size_t)len) != 0) {
        printf("write: read back %ld bytes, expected %ld\n", n, len + 1);
        return 1;
    }
    uk_close((int)fd);
    if (argc > 3 && !strcmp(argv[3], "unlink") && uk_unlink(argv[1]) != 0)
        return 1;
    printf("wrote %ld bytes to %s\n", len + 1, argv[1]);
    return 0;
}
