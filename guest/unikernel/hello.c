/* hello.c: the smallest unikernel: one line out, exit 0. Also the benchmark's subject. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    puts("Hello from a kiln unikernel");
    return 0;
}
