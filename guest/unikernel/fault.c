/* fault.c: negative guest: argv[1] "null" dereferences NULL (page 0 is unmapped; with no IDT the
 * page fault becomes a triple fault, exit 243); "hlt" halts without exit (exit 244). */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    volatile uintptr_t null_page = 0x10;

    (void)envp;
    if (argc > 1 && !strcmp(argv[1], "hlt"))
        __asm__ volatile("cli; hlt");
    else
        *(volatile int *)null_page = 1;
    puts("FAIL: the guest survived its fault");
    return 1;
}
