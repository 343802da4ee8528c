/* cat.c: copies the mounted file named by argv[1] to stdout; exit 0, or 1 with the error. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    static char buf[4096];
    struct kiln_hvc_fstat st;
    long fd, n, total = 0;

    (void)envp;
    if (argc < 2) {
        puts("usage: cat FILE");
        return 2;
    }
    fd = uk_open(argv[1], KILN_HVC_O_RDONLY, 0);
    if (fd < 0) {
        printf("cat: %s: error %ld\n", argv[1], fd);
        return 1;
    }
    if (uk_fstat((int)fd, &st) < 0 || st.kind != KILN_HVC_S_REG)
        return 1;
    while ((n = uk_read((int)fd, buf, sizeof(buf))) > 0) {
        uk_write(1, buf, (size_t)n);
        total += n;
    }
    uk_close((int)fd);
    if (n < 0 || (uint64_t)total != st.size) {
        printf("cat: read error %ld after %ld of %lu bytes\n", n, total, (unsigned long)st.size);
        return 1;
    }
    return 0;
}
