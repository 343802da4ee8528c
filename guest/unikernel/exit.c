/* exit.c: exits with the code given as argv[1] (default 42). */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    return argc > 1 ? (int)atol(argv[1]) : 42;
}
