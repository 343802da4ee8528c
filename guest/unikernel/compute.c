/* compute.c: a compute loop for the benchmark: counts the primes below argv[1] (default 100000)
 * by trial division and prints the count and the time the host clock saw. */
#include "rt/rt.h"

int main(int argc, char **argv, char **envp)
{
    long limit = argc > 1 ? atol(argv[1]) : 100000, count = 0;
    uint64_t t0 = uk_clock_ns();

    (void)envp;
    for (long n = 2; n < limit; n++) {
        int prime = 1;
        for (long d = 2; d * d <= n; d++) {
            if (n % d == 0) {
                prime = 0;
                break;
            }
        }
        count += prime;
    }
    printf("primes below %ld: %ld (%lu us)\n", limit, count,
           (unsigned long)((uk_clock_ns() - t0) / 1000));
    return 0;
}
