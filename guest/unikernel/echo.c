/* echo.c: prints its arguments and environment, one per line, and the boot info it got. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (int i = 0; envp[i]; i++)
        printf("env[%d]=%s\n", i, envp[i]);
    if (uk_boot_info)
        printf("cmdline=%s\nmem=%lu MiB\n", (const char *)(uintptr_t)uk_boot_info->cmdline,
               (unsigned long)(uk_boot_info->mem_size >> 20));
    return 0;
}
