/* ratelimit.c: token buckets for bytes and operations, shared by the block and net devices.
 *
 * Pure code over a caller-supplied clock, so tests drive it with a fake one. A bucket holds at
 * most `size` tokens and gains `rate` per second. A request larger than the bucket is let through
 * once the bucket is full and leaves the bucket in debt: last_ns moves into the future by the
 * time the excess takes to earn, so large requests still average out at the configured rate
 * instead of getting one bucket's worth for free. */
#include <stdint.h>

#include "virtio.h"

#define NS_PER_S 1000000000ULL

static uint64_t clamp_u64(unsigned __int128 v)
{
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static void bucket_init(struct token_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ns)
{
    b->rate = rate;
    b->size = burst ? burst : rate;
    if (b->rate && !b->size)
        b->size = 1;
    b->tokens = b->size; /* start full: a fresh device may burst at once */
    b->last_ns = now_ns;
}

/* The bucket as it stands at now_ns, without changing it: tokens earned since last_ns are added,
 * and last_ns advances only by the time those whole tokens took, so fractions carry over. */
static void bucket_view(const struct token_bucket *b, uint64_t now_ns, uint64_t *tokens,
                        uint64_t *last_ns)
{
    unsigned __int128 earned;
    uint64_t elapsed;

    *tokens = b->tokens;
    *last_ns = b->last_ns;
    if (!b->rate || now_ns <= b->last_ns)
        return;
    elapsed = now_ns - b->last_ns;
    earned = (unsigned __int128)elapsed * b->rate / NS_PER_S;
    if (earned >= b->size - b->tokens) {
        *tokens = b->size;
        *last_ns = now_ns;
        return;
    }
    *tokens = b->tokens + (uint64_t)earned;
    *last_ns = b->last_ns + (uint64_t)(earned * NS_PER_S / b->rate);
}

/* Tokens a request of `amount` needs before it may go: all of it, or a full bucket if larger. */
static uint64_t bucket_need(const struct token_bucket *b, uint64_t amount)
{
    return amount < b->size ? amount : b->size;
}

static uint64_t bucket_wait(const struct token_bucket *b, uint64_t amount, uint64_t now_ns)
{
    uint64_t tokens, last, need, ready_at;
    unsigned __int128 t;

    if (!b->rate)
        return 0;
    bucket_view(b, now_ns, &tokens, &last);
    need = bucket_need(b, amount);
    if (tokens >= need) /* in debt tokens is 0, so only a zero-sized request passes */
        return 0;
    /* tokens(t) = tokens + floor((t - last) * rate / 1e9) reaches need at this t. */
    t = ((unsigned __int128)(need - tokens) * NS_PER_S + b->rate - 1) / b->rate;
    ready_at = clamp_u64((unsigned __int128)last + t);
    return ready_at > now_ns ? ready_at - now_ns : 1;
}

static void bucket_take(struct token_bucket *b, uint64_t amount, uint64_t now_ns)
{
    unsigned __int128 debt_ns;

    if (!b->rate)
        return;
    bucket_view(b, now_ns, &b->tokens, &b->last_ns);
    if (amount <= b->tokens) {
        b->tokens -= amount;
        return;
    }
    /* Oversized (the bucket is full, bucket_wait said so): pay the excess in time. */
    debt_ns = ((unsigned __int128)(amount - b->tokens) * NS_PER_S + b->rate - 1) / b->rate;
    b->tokens = 0;
    b->last_ns = clamp_u64((unsigned __int128)b->last_ns + debt_ns);
}

void ratelimit_init(struct rate_limiter *rl, const struct rate_limit_config *cfg, uint64_t now_ns)
{
    bucket_init(&rl->bytes, cfg->bytes_per_s, cfg->bytes_burst, now_ns);
    bucket_init(&rl->ops, cfg->ops_per_s, cfg->ops_burst, now_ns);
}

uint64_t ratelimit_wait_ns(const struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns)
{
    uint64_t wb = bucket_wait(&rl->bytes, bytes, now_ns);
    uint64_t wo = bucket_wait(&rl->ops, 1, now_ns);

    return wb > wo ? wb : wo;
}

bool ratelimit_take(struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns)
{
    /* Both buckets or neither: a request throttled on operations must not spend bytes. */
    if (ratelimit_wait_ns(rl, bytes, now_ns))
        return false;
    bucket_take(&rl->bytes, bytes, now_ns);
    bucket_take(&rl->ops, 1, now_ns);
    return true;
}

bool ratelimit_enabled(const struct rate_limit_config *cfg)
{
    return cfg->bytes_per_s || cfg->ops_per_s;
}
