/* nop.c: exits 0 at once. The smallest static program, so bench/sandbox can time an exec round
 * trip apart from what busybox's own start-up costs (docs/sandbox.md). */
int main(void)
{
    return 0;
}
