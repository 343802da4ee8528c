/* test_ratelimit.c: the token buckets of ratelimit.c against a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "devices/virtio/virtio.h"
#include "lib/lib.h"

#define MS  1000000ULL
#define SEC 1000000000ULL
#define T0  (1000 * SEC) /* an arbitrary non-zero start */

static void test_unlimited(void **state)
{
    struct rate_limit_config cfg = {0};
    struct rate_limiter rl;

    (void)state;
    assert_false(ratelimit_enabled(&cfg));
    ratelimit_init(&rl, &cfg, T0);
    for (int i = 0; i < 1000; i++)
        assert_true(ratelimit_take(&rl, 1ULL << 40, T0));
    assert_int_equal(ratelimit_wait_ns(&rl, UINT64_MAX, T0), 0);
}

static void test_enabled(void **state)
{
    struct rate_limit_config bw = {.bytes_per_s = 1}, ops = {.ops_per_s = 1};
    struct rate_limit_config burst_only = {.bytes_burst = 100, .ops_burst = 5};

    (void)state;
    assert_true(ratelimit_enabled(&bw));
    assert_true(ratelimit_enabled(&ops));
    assert_false(ratelimit_enabled(&burst_only)); /* a burst without a rate limits nothing */
}

/* The bucket starts full (one second's worth by default), then refills at the rate. */
static void test_burst_then_refill(void **state)
{
    struct rate_limit_config cfg = {.bytes_per_s = 1 * MiB};
    struct rate_limiter rl;

    (void)state;
    ratelimit_init(&rl, &cfg, T0);
    assert_true(ratelimit_take(&rl, 512 * KiB, T0));
    assert_true(ratelimit_take(&rl, 512 * KiB, T0));
    assert_false(ratelimit_take(&rl, 4096, T0));
    /* 4096 bytes at 1 MiB/s take 3.90625 ms. */
    assert_int_equal(ratelimit_wait_ns(&rl, 4096, T0), 3906250);
    assert_false(ratelimit_take(&rl, 4096, T0 + 3906249));
    assert_true(ratelimit_take(&rl, 4096, T0 + 3906250));
    /* Half a second refills half the bucket, and never more than the bucket. */
    assert_true(ratelimit_take(&rl, 512 * KiB, T0 + 3906250 + SEC / 2));
    assert_false(ratelimit_take(&rl, 1, T0 + 3906250 + SEC / 2));
    assert_true(ratelimit_take(&rl, 1 * MiB, T0 + 100 * SEC));
    assert_false(ratelimit_take(&rl, 1, T0 + 100 * SEC));
}

/* Fractions of a token are not lost between refills: many tiny steps add up to the rate. */
static void test_fractional_refill(void **state)
{
    struct rate_limit_config cfg = {.bytes_per_s = 3, .bytes_burst = 3};
    struct rate_limiter rl;
    uint64_t t = T0, taken = 0;

    (void)state;
    ratelimit_init(&rl, &cfg, T0);
    assert_true(ratelimit_take(&rl, 3, t));
    /* Step 0.1 s at a time for 10 s: 30 tokens, one byte at a time. */
    for (int i = 0; i < 100; i++) {
        t += SEC / 10;
        while (ratelimit_take(&rl, 1, t))
            taken++;
    }
    assert_int_equal(taken, 30);
}

static void test_explicit_burst(void **state)
{
    struct rate_limit_config cfg = {.bytes_per_s = 1000, .bytes_burst = 10000};
    struct rate_limiter rl;

    (void)state;
    ratelimit_init(&rl, &cfg, T0);
    assert_true(ratelimit_take(&rl, 10000, T0));
    assert_false(ratelimit_take(&rl, 1000, T0));
    assert_int_equal(ratelimit_wait_ns(&rl, 1000, T0), SEC);
    assert_int_equal(ratelimit_wait_ns(&rl, 2000, T0 + SEC / 2), SEC * 3 / 2);
}

/* A request larger than the bucket goes once the bucket is full, and is paid for in time. */
static void test_large_request(void **state)
{
    struct rate_limit_config cfg = {.bytes_per_s = 1000, .bytes_burst = 1000};
    struct rate_limiter rl;

    (void)state;
    ratelimit_init(&rl, &cfg, T0);
    assert_true(ratelimit_take(&rl, 1, T0));
    /* Not full: waits for the bucket to fill (1 ms for the missing token). */
    assert_false(ratelimit_take(&rl, 5000, T0));
    assert_int_equal(ratelimit_wait_ns(&rl, 5000, T0), 1 * MS);
    assert_true(ratelimit_take(&rl, 5000, T0 + 1 * MS));
    /* In debt for the 4000 bytes beyond the bucket: 4 s, then 1 s more for the next 1000. */
    assert_false(ratelimit_take(&rl, 1000, T0 + 1 * MS + 4 * SEC));
    assert_int_equal(ratelimit_wait_ns(&rl, 1000, T0 + 1 * MS), 5 * SEC);
    assert_int_equal(ratelimit_wait_ns(&rl, 1, T0 + 1 * MS + 4 * SEC), 1 * MS);
    assert_true(ratelimit_take(&rl, 1000, T0 + 1 * MS + 5 * SEC));
    /* Many large requests average out at the rate: 10 x 5000 bytes take about 50 s. */
    uint64_t t = T0 + 1 * MS + 5 * SEC, start;
    start = t;
    for (int i = 0; i < 10; i++) {
        t += ratelimit_wait_ns(&rl, 5000, t);
        assert_true(ratelimit_take(&rl, 5000, t));
    }
    assert_in_range(t - start, 45 * SEC, 50 * SEC);
    /* A zero-byte request (a flush) is not held up by byte debt. */
    assert_true(ratelimit_take(&rl, 0, t));
}

static void test_ops_bucket(void **state)
{
    struct rate_limit_config cfg = {.ops_per_s = 10, .ops_burst = 2};
    struct rate_limiter rl;

    (void)state;
    ratelimit_init(&rl, &cfg, T0);
    assert_true(ratelimit_take(&rl, 1 * GiB, T0));
    assert_true(ratelimit_take(&rl, 0, T0));
    assert_false(ratelimit_take(&rl, 0, T0));
    assert_int_equal(ratelimit_wait_ns(&rl, 0, T0), 100 * MS);
    assert_true(ratelimit_take(&rl, 0, T0 + 100 * MS));
}

/* Both buckets or neither: a request refused on one bucket spends nothing from the other. */
static void test_both_or_neither(void **state)
{
    struct rate_limit_config cfg = {.bytes_per_s = 1000, .ops_per_s = 1, .ops_burst = 1};
    struct rate_limiter rl;

    (void)state;
    ratelimit_init(&rl, &cfg, T0);
    assert_true(ratelimit_take(&rl, 100, T0));
    assert_false(ratelimit_take(&rl, 100, T0)); /* refused for operations */
    assert_int_equal(rl.bytes.tokens, 900);
    assert_int_equal(ratelimit_wait_ns(&rl, 100, T0), SEC);

    cfg = (struct rate_limit_config){.bytes_per_s = 1000, .ops_per_s = 10};
    ratelimit_init(&rl, &cfg, T0);
    assert_true(ratelimit_take(&rl, 1000, T0));
    assert_false(ratelimit_take(&rl, 1, T0)); /* refused for bytes */
    assert_int_equal(rl.ops.tokens, 9);
}

/* Huge rates and sizes do not overflow the arithmetic. */
static void test_extremes(void **state)
{
    struct rate_limit_config cfg = {.bytes_per_s = UINT64_MAX, .ops_per_s = 1};
    struct rate_limiter rl;

    (void)state;
    ratelimit_init(&rl, &cfg, 0);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 0));
    assert_false(ratelimit_take(&rl, 1, 0)); /* the op bucket is empty */
    assert_true(ratelimit_take(&rl, UINT64_MAX, UINT64_MAX / 2));

    cfg = (struct rate_limit_config){.bytes_per_s = 1, .bytes_burst = 1};
    ratelimit_init(&rl, &cfg, 0);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 0)); /* debt beyond the clock's range */
    assert_true(ratelimit_wait_ns(&rl, 1, 0) > 0);
    /* Time going backwards (a caller bug) neither refills nor crashes. */
    ratelimit_init(&rl, &cfg, 10 * SEC);
    assert_true(ratelimit_take(&rl, 1, 10 * SEC));
    assert_false(ratelimit_take(&rl, 1, 5 * SEC));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),         cmocka_unit_test(test_enabled),
        cmocka_unit_test(test_burst_then_refill), cmocka_unit_test(test_fractional_refill),
        cmocka_unit_test(test_explicit_burst),    cmocka_unit_test(test_large_request),
        cmocka_unit_test(test_ops_bucket),        cmocka_unit_test(test_both_or_neither),
        cmocka_unit_test(test_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
