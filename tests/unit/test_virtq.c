/* test_virtq.c: the split-virtqueue walker against a fake guest-memory arena: happy paths, index
 * wrap, interrupt and notification suppression, and one refusal for every check (iov_copy_*:
 * test_iov.c). */
#include <errno.h>
#include <linux/virtio_ring.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/virtio.h"
#include "lib/lib.h"

#define LOW_SIZE  (16 * MiB) /* region 0 at gpa 0 */
#define HIGH_GPA  (4 * GiB)  /* region 1, as above the MMIO hole */
#define HIGH_SIZE (64 * KiB)
#define QSIZE     16
#define DESC      0x1000
#define AVAIL     0x2000
#define USED      0x3000
#define TABLE     0x8000 /* an indirect table */
#define BUF       0x10000

struct fx {
    struct guest_mem mem;
    struct virtq q;
    struct virtq_chain c;
    char why[256];
    uint16_t aidx; /* the driver's avail index */
};
static struct fx *F;

static void *gp(uint64_t gpa, uint64_t len)
{
    void *p = guest_mem_ptr(&F->mem, gpa, len);
    assert_non_null(p);
    return p;
}

static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
    memcpy(gp(table + 16ULL * i, 16), &d, 16);
}

/* The rings and the event-index fields after them. */
#define avail()       ((struct vring_avail *)gp(AVAIL, 6 + 2 * QSIZE))
#define used()        ((struct vring_used *)gp(USED, 6 + 8 * QSIZE))
#define used_event()  ((uint16_t *)gp(AVAIL + 4 + 2 * QSIZE, 2))
#define avail_event() ((uint16_t *)gp(USED + 4 + 8 * QSIZE, 2))

static void offer(uint16_t head)
{
    avail()->ring[F->aidx % QSIZE] = head;
    avail()->idx = ++F->aidx;
}

static int pop(void)
{
    F->why[0] = 0;
    return virtq_pop(&F->q, &F->c, F->why, sizeof(F->why));
}

/* Expects a refusal naming `needle`, then steps past the bad entry for the next case. */
static void refused(const char *needle)
{
    assert_int_equal(pop(), -EINVAL);
    if (!strstr(F->why, needle))
        fail_msg("why \"%s\" lacks \"%s\"", F->why, needle);
    F->q.last_avail++;
}

static int setup(void **state)
{
    (void)state;
    F = calloc(1, sizeof(*F));
    F->mem.fd = -1;
    F->mem.nregions = 2;
    F->mem.regions[0] = (struct guest_region){0, LOW_SIZE, 0, aligned_alloc(4096, LOW_SIZE)};
    F->mem.regions[1] =
        (struct guest_region){HIGH_GPA, HIGH_SIZE, 0, aligned_alloc(4096, HIGH_SIZE)};
    F->mem.size = LOW_SIZE + HIGH_SIZE;
    memset(F->mem.regions[0].hva, 0, 1 * MiB); /* the rest is only ever addressed, not touched */
    memset(F->mem.regions[1].hva, 0, HIGH_SIZE);
    F->q = (struct virtq){.size = QSIZE, .desc_gpa = DESC, .avail_gpa = AVAIL, .used_gpa = USED};
    F->q.indirect = true;
    F->q.mem = &F->mem;
    assert_int_equal(virtq_validate(&F->q, 256, F->why, sizeof(F->why)), 0);
    virtq_reset(&F->q);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(F->mem.regions[0].hva);
    free(F->mem.regions[1].hva);
    free(F);
    return 0;
}

/* ---- validation ---------------------------------------------------------------------------- */

static void validate_refuses(uint16_t size, uint64_t desc, uint64_t av, uint64_t us,
                             const char *needle)
{
    struct virtq q = F->q;

    q.size = size;
    q.desc_gpa = desc;
    q.avail_gpa = av;
    q.used_gpa = us;
    assert_int_equal(virtq_validate(&q, 64, F->why, sizeof(F->why)), -EINVAL);
    if (!strstr(F->why, needle))
        fail_msg("why \"%s\" lacks \"%s\"", F->why, needle);
    assert_null(q.desc);
    assert_int_equal(virtq_pop(&q, &F->c, F->why, sizeof(F->why)), -EINVAL);
    assert_false(virtq_has_work(&q));
}

static void test_validate(void **state)
{
    struct virtq q = F->q;

    (void)state;
    assert_non_null(F->q.desc);
    validate_refuses(0, DESC, AVAIL, USED, "queue size 0 is not a power of two in 1..64");
    validate_refuses(12, DESC, AVAIL, USED, "queue size 12");
    validate_refuses(128, DESC, AVAIL, USED, "queue size 128 is not a power of two in 1..64");
    validate_refuses(QSIZE, DESC + 8, AVAIL, USED, "descriptor ring at 0x1008 is not 16-byte");
    validate_refuses(QSIZE, DESC, AVAIL + 1, USED, "available ring at 0x2001 is not 2-byte");
    validate_refuses(QSIZE, DESC, AVAIL, USED + 2, "used ring at 0x3002 is not 4-byte");
    validate_refuses(QSIZE, LOW_SIZE - 16 * 15, AVAIL, USED, "descriptor ring 0xffff10");
    validate_refuses(QSIZE, 3 * GiB, AVAIL, USED, "outside guest RAM");
    /* The event-index fields count: a ring that fits only without them is refused. */
    validate_refuses(QSIZE, DESC, LOW_SIZE - (4 + 2 * QSIZE), USED, "available ring");
    validate_refuses(QSIZE, DESC, AVAIL, LOW_SIZE - (4 + 8 * QSIZE), "used ring");
    validate_refuses(QSIZE, DESC, AVAIL, UINT64_MAX - 3, "used ring");
    /* Ending exactly at the end of RAM is fine, and so is the region above 4 GiB. */
    q.avail_gpa = LOW_SIZE - (6 + 2 * QSIZE);
    q.used_gpa = HIGH_GPA + HIGH_SIZE - (8 + 8 * QSIZE); /* 4-aligned, 2 bytes to spare */
    q.desc_gpa = HIGH_GPA;
    assert_int_equal(virtq_validate(&q, 256, F->why, sizeof(F->why)), 0);
    q.size = 1;
    assert_int_equal(virtq_validate(&q, 1, F->why, sizeof(F->why)), 0);
    q.size = 512; /* beyond VIRTQ_MAX_SIZE even if the caller allows more */
    assert_int_equal(virtq_validate(&q, UINT16_MAX, F->why, sizeof(F->why)), -EINVAL);
}

/* ---- happy paths ----------------------------------------------------------------------------- */

static void test_empty_and_single(void **state)
{
    (void)state;
    assert_false(virtq_has_work(&F->q));
    assert_int_equal(pop(), 0);
    put_desc(DESC, 5, BUF, 100, 0, 0);
    offer(5);
    assert_true(virtq_has_work(&F->q));
    assert_int_equal(pop(), 1);
    assert_int_equal(F->c.head, 5);
    assert_int_equal(F->c.nrd, 1);
    assert_int_equal(F->c.nwr, 0);
    assert_int_equal(F->c.rd_len, 100);
    assert_ptr_equal(F->c.rd[0].iov_base, gp(BUF, 100));
    assert_int_equal(F->c.rd[0].iov_len, 100);
    assert_false(virtq_has_work(&F->q));
    assert_int_equal(pop(), 0);
}

static void test_readable_then_writable(void **state)
{
    (void)state;
    put_desc(DESC, 0, BUF, 16, VRING_DESC_F_NEXT, 3);
    put_desc(DESC, 3, BUF + 0x100, 512, VRING_DESC_F_NEXT, 1);
    put_desc(DESC, 1, BUF + 0x1000, 0, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2); /* skipped */
    put_desc(DESC, 2, BUF + 0x2000, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 4);
    put_desc(DESC, 4, HIGH_GPA, 1, VRING_DESC_F_WRITE, 0); /* the other region */
    offer(0);
    assert_int_equal(pop(), 1);
    assert_int_equal(F->c.nrd, 2);
    assert_int_equal(F->c.nwr, 2);
    assert_int_equal(F->c.rd_len, 528);
    assert_int_equal(F->c.wr_len, 4097);
    assert_ptr_equal(F->c.rd[1].iov_base, gp(BUF + 0x100, 1));
    assert_ptr_equal(F->c.wr[0].iov_base, gp(BUF + 0x2000, 1));
    assert_ptr_equal(F->c.wr[1].iov_base, gp(HIGH_GPA, 1));
    /* A chain of exactly the queue size is fine. */
    for (unsigned i = 0; i < QSIZE; i++)
        put_desc(DESC, i, BUF, 1, i + 1 < QSIZE ? VRING_DESC_F_NEXT : 0, i + 1);
    offer(0);
    assert_int_equal(pop(), 1);
    assert_int_equal(F->c.nrd, QSIZE);
}

static void test_indirect(void **state)
{
    (void)state;
    /* A direct readable header, then an indirect table above 4 GiB: the walk crosses regions. */
    put_desc(DESC, 7, BUF, 10, VRING_DESC_F_NEXT, 8);
    put_desc(DESC, 8, HIGH_GPA + 0x100, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
    put_desc(HIGH_GPA + 0x100, 0, BUF + 0x100, 20, VRING_DESC_F_NEXT, 2);
    put_desc(HIGH_GPA + 0x100, 2, BUF + 0x200, 30, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    put_desc(HIGH_GPA + 0x100, 1, HIGH_GPA + 0x1000, 40, VRING_DESC_F_WRITE, 0);
    offer(7);
    assert_int_equal(pop(), 1);
    assert_int_equal(F->c.head, 7);
    assert_int_equal(F->c.nrd, 2);
    assert_int_equal(F->c.nwr, 2);
    assert_int_equal(F->c.rd_len, 30);
    assert_int_equal(F->c.wr_len, 70);
    assert_ptr_equal(F->c.wr[1].iov_base, gp(HIGH_GPA + 0x1000, 40));
    /* An unaligned indirect table of the maximum size. */
    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
        put_desc(TABLE + 4, i, BUF, 1, i + 1 < VIRTQ_MAX_SIZE ? VRING_DESC_F_NEXT : 0, i + 1);
    put_desc(DESC, 0, TABLE + 4, 16 * VIRTQ_MAX_SIZE, VRING_DESC_F_INDIRECT, 0);
    offer(0);
    assert_int_equal(pop(), 1);
    assert_int_equal(F->c.nrd, VIRTQ_MAX_SIZE);
}

static void test_wrap_and_push(void **state)
{
    (void)state;
    F->q.last_avail = F->aidx = 65534;
    F->q.used_idx = F->q.signalled_used = 65534;
    avail()->idx = 65534;
    assert_int_equal(pop(), 0);
    for (uint16_t i = 0; i < 3; i++) {
        put_desc(DESC, i, BUF, 8, VRING_DESC_F_WRITE, 0);
        offer(i);
    }
    assert_int_equal(avail()->idx, 1);
    for (uint16_t i = 0; i < 3; i++) {
        assert_int_equal(pop(), 1);
        assert_int_equal(F->c.head, i);
        virtq_push(&F->q, F->c.head, 8 - i);
    }
    assert_int_equal(pop(), 0);
    assert_int_equal(F->q.last_avail, 1);
    assert_int_equal(used()->idx, 1);
    /* Entries 65534, 65535, 0 land in ring slots 14, 15, 0. */
    assert_int_equal(used()->ring[14].id, 0);
    assert_int_equal(used()->ring[14].len, 8);
    assert_int_equal(used()->ring[15].id, 1);
    assert_int_equal(used()->ring[0].id, 2);
    assert_int_equal(used()->ring[0].len, 6);
}

static void test_interrupt_flags(void **state)
{
    (void)state;
    assert_false(virtq_should_interrupt(&F->q)); /* nothing pushed since reset */
    virtq_push(&F->q, 0, 0);
    assert_true(virtq_should_interrupt(&F->q));
    assert_false(virtq_should_interrupt(&F->q)); /* nothing new */
    avail()->flags = VRING_AVAIL_F_NO_INTERRUPT;
    virtq_push(&F->q, 1, 0);
    assert_false(virtq_should_interrupt(&F->q));
    avail()->flags = 0;
    virtq_push(&F->q, 2, 0);
    assert_true(virtq_should_interrupt(&F->q));
}

static void test_interrupt_event_idx(void **state)
{
    (void)state;
    F->q.event_idx = true;
    avail()->flags = VRING_AVAIL_F_NO_INTERRUPT; /* ignored with EVENT_IDX */
    *used_event() = 3;
    virtq_push(&F->q, 0, 0);
    assert_true(virtq_should_interrupt(&F->q)); /* first one: no reference yet */
    virtq_push(&F->q, 0, 0);                    /* used idx 2 */
    assert_false(virtq_should_interrupt(&F->q));
    virtq_push(&F->q, 0, 0); /* used idx 3: entry 2 is not past used_event 3 */
    assert_false(virtq_should_interrupt(&F->q));
    virtq_push(&F->q, 0, 0); /* used idx 4: entry 3 is the one the driver waits for */
    assert_true(virtq_should_interrupt(&F->q));
    virtq_push(&F->q, 0, 0);
    virtq_push(&F->q, 0, 0);
    assert_false(virtq_should_interrupt(&F->q)); /* used_event 3 is behind */
    /* Wrap: the driver waits for entry 65535, the device pushed 65534..0 in one batch. */
    F->q.used_idx = F->q.signalled_used = 65534;
    *used_event() = 65535;
    virtq_push(&F->q, 0, 0);
    virtq_push(&F->q, 0, 0);
    assert_int_equal(used()->idx, 0);
    assert_true(virtq_should_interrupt(&F->q));
    /* Half the index space pushed unchecked: the next check interrupts whatever used_event says. */
    *used_event() = F->q.used_idx - 100;
    for (unsigned i = 0; i < 32768; i++)
        virtq_push(&F->q, 0, 0);
    assert_true(virtq_should_interrupt(&F->q));
}

static void test_notify(void **state)
{
    (void)state;
    virtq_set_notify(&F->q, false);
    assert_int_equal(used()->flags, VRING_USED_F_NO_NOTIFY);
    virtq_set_notify(&F->q, true);
    assert_int_equal(used()->flags, 0);
    assert_int_equal(*avail_event(), 0); /* untouched without EVENT_IDX */

    F->q.event_idx = true;
    put_desc(DESC, 0, BUF, 8, 0, 0);
    offer(0);
    offer(0);
    assert_int_equal(pop(), 1);
    assert_int_equal(*avail_event(), 1); /* kick me for entry 1 on */
    virtq_set_notify(&F->q, false);
    assert_int_equal(pop(), 1);
    assert_int_equal(*avail_event(), 1); /* left behind: the driver stops kicking */
    assert_int_equal(used()->flags, 0);
    virtq_set_notify(&F->q, true);
    assert_int_equal(*avail_event(), 2);
    assert_false(virtq_has_work(&F->q));
    virtq_reset(&F->q);
    assert_int_equal(F->q.last_avail, 0);
    assert_true(virtq_has_work(&F->q));
}

/* ---- refusals: one per check ------------------------------------------------------------------
 */

static void test_avail_jump(void **state)
{
    (void)state;
    F->q.last_avail = 5;
    avail()->idx = 300;
    refused("avail index jumped from 5 to 300 (queue size 16)");
    F->q.last_avail = 5;
    avail()->idx = 4; /* backwards is a jump of 65535 */
    refused("avail index jumped from 5 to 4");
    F->q.last_avail = 5;
    avail()->idx = 5 + QSIZE; /* a full ring is fine */
    put_desc(DESC, 0, BUF, 1, 0, 0);
    assert_int_equal(pop(), 1);
}

static void test_bad_head_and_next(void **state)
{
    (void)state;
    offer(QSIZE);
    refused("head index 16 out of range");
    put_desc(DESC, 2, BUF, 1, VRING_DESC_F_NEXT, 300);
    offer(2);
    refused("descriptor 2: next index 300 out of range");
}

static void test_buffer_outside_ram(void **state)
{
    static const struct {
        uint64_t addr;
        uint32_t len;
    } bad[] = {{LOW_SIZE - 4095, 4096},   {LOW_SIZE, 1},          {3 * GiB, 1}, {HIGH_GPA - 1, 2},
               {HIGH_GPA + HIGH_SIZE, 1}, {UINT64_MAX - 10, 4096}};

    (void)state;
    for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
        put_desc(DESC, 7, bad[i].addr, bad[i].len, 0, 0);
        offer(7);
        refused("descriptor 7: buffer 0x");
        assert_non_null(strstr(F->why, "outside guest RAM"));
    }
    /* A zero-length descriptor is skipped, wherever it points. */
    put_desc(DESC, 7, UINT64_MAX, 0, 0, 0);
    offer(7);
    assert_int_equal(pop(), 1);
    assert_int_equal(F->c.nrd + F->c.nwr, 0);
}

static void test_loops(void **state)
{
    (void)state;
    put_desc(DESC, 3, BUF, 1, VRING_DESC_F_NEXT, 4);
    put_desc(DESC, 4, BUF, 1, VRING_DESC_F_NEXT, 3);
    offer(3);
    refused("chain from head 3 loops or is longer than the queue (17 descriptors)");
    put_desc(DESC, 5, BUF, 1, VRING_DESC_F_NEXT, 5); /* a descriptor pointing to itself */
    offer(5);
    refused("chain from head 5 loops");
    put_desc(DESC, 0, TABLE, 2 * 16, VRING_DESC_F_INDIRECT, 0);
    put_desc(TABLE, 0, BUF, 1, VRING_DESC_F_NEXT, 1);
    put_desc(TABLE, 1, BUF, 1, VRING_DESC_F_NEXT, 0);
    offer(0);
    refused("loops in its indirect table");
    put_desc(TABLE, 1, BUF, 1, VRING_DESC_F_NEXT, 2);
    offer(0);
    refused("indirect descriptor 1: next index 2 out of range (2 descriptors)");
}

static void test_readable_after_writable(void **state)
{
    (void)state;
    put_desc(DESC, 1, BUF, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 4);
    put_desc(DESC, 4, BUF, 8, 0, 0);
    offer(1);
    refused("descriptor 4: readable buffer after a writable one");
    /* The same across the step into an indirect table. */
    put_desc(DESC, 4, TABLE, 16, VRING_DESC_F_INDIRECT, 0);
    put_desc(TABLE, 0, BUF, 8, 0, 0);
    offer(1);
    refused("indirect descriptor 0: readable buffer after a writable one");
}

static void test_indirect_refusals(void **state)
{
    static const struct {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        const char *why;
    } bad[] = {
        {TABLE, 20, 0, "descriptor 6: indirect table length 20 not a multiple of 16"},
        {TABLE, 0, 0, "descriptor 6: zero-length indirect table"},
        {TABLE, 16, VRING_DESC_F_NEXT, "descriptor 6: INDIRECT together with NEXT"},
        {TABLE, 16 * (VIRTQ_MAX_SIZE + 1), 0, "indirect table of 257 descriptors (at most 256)"},
        {LOW_SIZE - 16, 32, 0, "descriptor 6: indirect table 0xfffff0 len 32 outside guest RAM"},
        {UINT64_MAX - 15, 32, 0, "outside guest RAM"},
    };

    (void)state;
    for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
        put_desc(DESC, 6, bad[i].addr, bad[i].len, VRING_DESC_F_INDIRECT | bad[i].flags, 0);
        offer(6);
        refused(bad[i].why);
    }
    /* Nested tables. */
    put_desc(DESC, 6, TABLE, 32, VRING_DESC_F_INDIRECT, 0);
    put_desc(TABLE, 0, BUF, 8, VRING_DESC_F_NEXT, 1);
    put_desc(TABLE, 1, TABLE, 32, VRING_DESC_F_INDIRECT, 0);
    offer(6);
    refused("indirect table inside an indirect table");
    /* Not negotiated. */
    F->q.indirect = false;
    offer(6);
    refused("descriptor 6: INDIRECT flag without VIRTIO_F_INDIRECT_DESC negotiated");
}

static void test_chain_too_long(void **state)
{
    (void)state;
    /* 15 direct descriptors and a full indirect table: more buffers than a chain holds. */
    for (unsigned i = 0; i < QSIZE - 1; i++)
        put_desc(DESC, i, BUF, 1, VRING_DESC_F_NEXT, i + 1);
    put_desc(DESC, QSIZE - 1, TABLE, 16 * VIRTQ_MAX_SIZE, VRING_DESC_F_INDIRECT, 0);
    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
        put_desc(TABLE, i, BUF, 1, i + 1 < VIRTQ_MAX_SIZE ? VRING_DESC_F_NEXT : 0, i + 1);
    offer(0);
    refused("chain from head 0 has more than 256 descriptors");
}

static void test_total_length(void **state)
{
    (void)state;
    /* 256 buffers of 16 MiB (all the same memory) make exactly 4 GiB: one byte too many. */
    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
        put_desc(TABLE, i, 0, LOW_SIZE, i + 1 < VIRTQ_MAX_SIZE ? VRING_DESC_F_NEXT : 0, i + 1);
    put_desc(DESC, 0, TABLE, 16 * VIRTQ_MAX_SIZE, VRING_DESC_F_INDIRECT, 0);
    offer(0);
    refused("chain from head 0: total length exceeds 4 GiB");
    put_desc(TABLE, VIRTQ_MAX_SIZE - 1, 0, LOW_SIZE - 1, 0, 0);
    offer(0);
    assert_int_equal(pop(), 1);
    assert_int_equal(F->c.rd_len, UINT32_MAX);
}

/* The diagnostic line a hung guest's queues are logged with: one chain waiting, one taken and
 * not completed, one completed; and a queue never set up says so. */
static void test_describe(void **state)
{
    char line[200];
    struct virtq blank = {0};

    (void)state;
    F->q.event_idx = true;
    *used_event() = 7;
    for (uint16_t i = 0; i < 3; i++) {
        put_desc(DESC, i, BUF, 8, VRING_DESC_F_WRITE, 0);
        offer(i);
    }
    assert_int_equal(pop(), 1);
    assert_int_equal(pop(), 1);
    virtq_push(&F->q, F->c.head, 8);
    virtq_describe(&F->q, line, sizeof(line));
    assert_string_equal(line, "avail=3 taken=2 used=1 signalled=none avail_flags=0 used_event=7");
    assert_true(virtq_should_interrupt(&F->q));
    virtq_describe(&F->q, line, sizeof(line));
    assert_string_equal(line, "avail=3 taken=2 used=1 signalled=1 avail_flags=0 used_event=7");
    virtq_describe(&blank, line, sizeof(line));
    assert_string_equal(line, "not set up");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_validate),
        T(test_empty_and_single),
        T(test_readable_then_writable),
        T(test_indirect),
        T(test_wrap_and_push),
        T(test_interrupt_flags),
        T(test_interrupt_event_idx),
        T(test_notify),
        T(test_avail_jump),
        T(test_bad_head_and_next),
        T(test_buffer_outside_ram),
        T(test_loops),
        T(test_readable_after_writable),
        T(test_indirect_refusals),
        T(test_chain_too_long),
        T(test_total_length),
        T(test_describe),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
