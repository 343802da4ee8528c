/* badcall.c: negative guest: malformed hypercalls (argv[1]: exit, pad, width, read, nr0, nr99).
 * kiln must stop it with exit code 241. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    const char *mode = argc > 1 ? argv[1] : "exit";
    uint8_t v;

    (void)envp;
    if (!strcmp(mode, "exit")) {
        struct kiln_hvc_exit a = {.code = 300};
        uk_hvc(KILN_HVC_EXIT, &a);
    } else if (!strcmp(mode, "pad")) {
        struct kiln_hvc_lseek a = {.fd = 3, .pad = 1};
        uk_hvc(KILN_HVC_LSEEK, &a);
    } else if (!strcmp(mode, "width")) {
        uk_outb(KILN_HVC_PORT(KILN_HVC_WRITE), 1);
    } else if (!strcmp(mode, "read")) {
        __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"((uint16_t)KILN_HVC_PORT(KILN_HVC_CLOCK)));
    } else if (!strcmp(mode, "nr0")) {
        struct kiln_hvc_clock a;
        uk_hvc(0, &a);
    } else if (!strcmp(mode, "pathlen")) {
        struct kiln_hvc_open a = {.path = 0x200000, .path_len = KILN_HVC_MAX_PATH + 1};
        uk_hvc(KILN_HVC_OPEN, &a);
    }
    puts("FAIL: kiln resumed the guest after a malformed call");
    return 1;
}
