/* badport.c: negative guest: writes to an I/O port that is neither a hypercall nor the UART.
 * kiln must stop it with exit code 242. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    uk_outb(0x1234, 1);
    puts("FAIL: kiln resumed the guest after an unknown port");
    return 1;
}
