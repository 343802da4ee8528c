/* badptr.c: negative guest: hands kiln a pointer outside guest memory (argv[1]: struct, buf, wrap,
 * path). kiln must stop it with exit code 240 and never touch host memory. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    uint64_t end = uk_boot_info->mem_size;
    const char *mode = argc > 1 ? argv[1] : "struct";

    (void)envp;
    if (!strcmp(mode, "struct")) {
        uk_hvc(KILN_HVC_WRITE, (void *)(uintptr_t)(end + 0x1000));
    } else if (!strcmp(mode, "buf")) {
        struct kiln_hvc_write a = {.fd = 1, .buf = end - 16, .len = 64};
        uk_hvc(KILN_HVC_WRITE, &a);
    } else if (!strcmp(mode, "wrap")) {
        struct kiln_hvc_read a = {.fd = 0, .buf = 0xfffffffffffff000ULL, .len = 0x2000};
        uk_hvc(KILN_HVC_READ, &a);
    } else if (!strcmp(mode, "path")) {
        struct kiln_hvc_open a = {.path = end - 2, .path_len = 100};
        uk_hvc(KILN_HVC_OPEN, &a);
    } else if (!strcmp(mode, "cmdval")) {
        struct kiln_hvc_cmdval a = {
            .argv = end, .argbuf = 0x200000, .envp = 0x201000, .envbuf = 0x202000};
        uk_hvc(KILN_HVC_CMDVAL, &a);
    }
    puts("FAIL: kiln resumed the guest after a bad pointer");
    return 1;
}
