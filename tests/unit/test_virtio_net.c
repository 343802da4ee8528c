/* test_virtio_net.c: the virtio-net device against fake rings in a guest-memory arena, with a
 * SOCK_SEQPACKET socketpair standing in for the tap (one message = vnet header + frame). */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/net.h"
#include "lib/lib.h"

#define QSIZE 16
#define BUF   0x100000ULL /* guest buffers from here, 64 KiB per slot */
#define SLOT  0x10000ULL
#define HDR   12
#define F(b)  (1ULL << (b))

static const uint64_t ring_base[2] = {0x1000,
                                      0x8000}; /* rx, tx: desc, +0x1000 avail, +0x2000 used */

struct fx {
    struct guest_mem mem;
    struct evloop *loop;
    struct virtio_dev *dev;
    int peer;         /* the "host network" end of the fake tap */
    int devfd;        /* the device's end */
    uint16_t aidx[2]; /* the driver's avail index per queue */
    uint16_t next[2]; /* next free descriptor per queue */
    unsigned slot;    /* next free buffer slot */
    char err[256];
};
static struct fx *X;

static void *gp(uint64_t gpa, uint64_t len)
{
    void *p = guest_mem_ptr(&X->mem, gpa, len);
    assert_non_null(p);
    return p;
}

static struct vring_avail *avail(unsigned q)
{
    return gp(ring_base[q] + 0x1000, 6 + 2 * QSIZE);
}

static struct vring_used *used(unsigned q)
{
    return gp(ring_base[q] + 0x2000, 6 + 8 * QSIZE);
}

static uint64_t new_buf(void)
{
    return BUF + SLOT * (X->slot++ % 64);
}

/* Offers one chain of `n` segments on queue q (segment i writable if bit i of wmask is set),
 * filled from data if given; returns its first buffer's gpa. */
static uint64_t offer_mixed(unsigned q, unsigned n, const uint32_t *lens, unsigned wmask,
                            const void *data)
{
    uint16_t head = X->next[q];
    uint64_t first = 0;
    size_t off = 0;

    for (unsigned i = 0; i < n; i++) {
        uint16_t d = (uint16_t)((head + i) % QSIZE);
        uint64_t gpa = new_buf();
        struct vring_desc desc = {.addr = gpa, .len = lens[i]};
        if (i == 0)
            first = gpa;
        if (data && lens[i]) {
            memcpy(gp(gpa, lens[i]), (const uint8_t *)data + off, lens[i]);
            off += lens[i];
        }
        desc.flags = (uint16_t)(((wmask >> i) & 1 ? VRING_DESC_F_WRITE : 0) |
                                (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        desc.next = (uint16_t)((d + 1) % QSIZE);
        memcpy(gp(ring_base[q] + 16ULL * d, 16), &desc, 16);
    }
    X->next[q] = (uint16_t)((head + n) % QSIZE);
    avail(q)->ring[X->aidx[q] % QSIZE] = head;
    __atomic_store_n(&avail(q)->idx, ++X->aidx[q], __ATOMIC_RELEASE);
    return first;
}

static uint64_t offer(unsigned q, unsigned n, const uint32_t *lens, bool writable, const void *data)
{
    return offer_mixed(q, n, lens, writable ? ~0U : 0, data);
}

static uint64_t offer_rx(uint32_t len)
{
    return offer(NET_RXQ, 1, &len, true, NULL);
}

static struct vring_used_elem used_elem(unsigned q, unsigned k)
{
    return used(q)->ring[k % QSIZE];
}

static void send_frame(size_t payload, uint8_t seed)
{
    uint8_t buf[4096] = {0};

    assert_true(HDR + payload <= sizeof(buf));
    for (size_t i = 0; i < payload; i++)
        buf[HDR + i] = (uint8_t)(seed + i);
    buf[10] = buf[11] = 0xee; /* the tap leaves num_buffers alone: the device must set it */
    assert_int_equal(send(X->peer, buf, HDR + payload, 0), (ssize_t)(HDR + payload));
}

static void make_dev(const struct virtio_net_config *cfg, uint64_t acked)
{
    struct virtio_env env = {.loop = X->loop, .mem = &X->mem};
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
    X->peer = sv[1];
    X->devfd = sv[0];
    X->dev = virtio_net_create_fd(&env, cfg, sv[0], TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, X->err,
                                  sizeof(X->err));
    assert_non_null(X->dev);
    X->dev->mem = &X->mem;
    X->dev->irq_fd = eventfd(0, EFD_NONBLOCK);
    for (unsigned q = 0; q < 2; q++) {
        struct virtq *vq = &X->dev->queues[q];
        *vq = (struct virtq){.size = QSIZE,
                             .desc_gpa = ring_base[q],
                             .avail_gpa = ring_base[q] + 0x1000,
                             .used_gpa = ring_base[q] + 0x2000,
                             .mem = &X->mem};
        assert_int_equal(virtq_validate(vq, 256, X->err, sizeof(X->err)), 0);
        virtq_reset(vq);
        vq->ready = true;
    }
    assert_true((acked & ~X->dev->features) == 0);
    X->dev->acked = acked | F(VIRTIO_F_VERSION_1);
    X->dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    assert_int_equal(X->dev->ops->activate(X->dev), 0);
}

static void default_dev(uint64_t acked)
{
    struct virtio_net_config cfg = {.tap = "tap-test"};
    make_dev(&cfg, acked);
}

static int setup(void **state)
{
    (void)state;
    X = calloc(1, sizeof(*X));
    assert_int_equal(guest_mem_init(&X->mem, 16 * MiB, 3 * GiB), 0);
    X->loop = evloop_create();
    assert_non_null(X->loop);
    X->peer = -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    virtio_dev_destroy(X->dev);
    if (X->peer >= 0)
        close(X->peer);
    evloop_destroy(X->loop);
    guest_mem_destroy(&X->mem);
    free(X);
    return 0;
}

static struct virtio_net_stats stats(void)
{
    struct virtio_net_stats s;
    virtio_net_get_stats(X->dev, &s);
    return s;
}

static bool irq_raised(void)
{
    uint64_t v;
    return read(X->dev->irq_fd, &v, sizeof(v)) == sizeof(v);
}

/* ---- transmit -------------------------------------------------------------------------------- */
static void test_tx_single(void **state)
{
    uint8_t frame[HDR + 60], got[256];
    uint32_t len = sizeof(frame);

    (void)state;
    default_dev(0);
    for (size_t i = 0; i < sizeof(frame); i++)
        frame[i] = (uint8_t)(i * 7);
    offer(NET_TXQ, 1, &len, false, frame);
    X->dev->ops->notify(X->dev, NET_TXQ);
    assert_int_equal(recv(X->peer, got, sizeof(got), 0), sizeof(frame));
    assert_memory_equal(got, frame, sizeof(frame)); /* the header passes through as it is */
    assert_int_equal(used(NET_TXQ)->idx, 1);
    assert_int_equal(used_elem(NET_TXQ, 0).len, 0);
    assert_true(irq_raised());
    assert_int_equal(stats().tx_packets, 1);
    assert_int_equal(stats().tx_bytes, 60);
}

static void test_tx_multi_descriptor(void **state)
{
    uint8_t frame[HDR + 1500], got[2048];
    uint32_t lens[4] = {HDR, 500, 999, 1}; /* header alone, then the frame in three pieces */

    (void)state;
    default_dev(F(VIRTIO_NET_F_CSUM));
    for (size_t i = 0; i < sizeof(frame); i++)
        frame[i] = (uint8_t)(i ^ 0x5a);
    offer(NET_TXQ, 4, lens, false, frame);
    offer(NET_TXQ, 1, lens + 1, false, frame); /* a second frame in the same kick */
    X->dev->ops->notify(X->dev, NET_TXQ);
    assert_int_equal(recv(X->peer, got, sizeof(got), 0), sizeof(frame));
    assert_memory_equal(got, frame, sizeof(frame));
    assert_int_equal(recv(X->peer, got, sizeof(got), 0), 500);
    assert_int_equal(used(NET_TXQ)->idx, 2);
    assert_int_equal(stats().tx_packets, 2);
}

/* A full tap: the chain stays pending, the device waits for EPOLLOUT, nothing is lost. */
static void test_tx_eagain_keeps_frame(void **state)
{
    uint8_t got[4096];
    uint32_t len = 3000;
    int small = 4096, n = 0;

    (void)state;
    default_dev(0);
    assert_int_equal(setsockopt(X->peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    assert_int_equal(setsockopt(X->devfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    for (int i = 0; i < QSIZE; i++)
        offer(NET_TXQ, 1, &len, false, NULL);
    X->dev->ops->notify(X->dev, NET_TXQ);
    assert_true(virtio_net_tap_events(X->dev) & EPOLLOUT);
    assert_true(used(NET_TXQ)->idx < QSIZE);
    while (n < QSIZE) {
        ssize_t r = recv(X->peer, got, sizeof(got), 0);
        if (r < 0) {
            assert_int_equal(errno, EAGAIN);
            assert_true(virtio_net_tap_events(X->dev) & EPOLLOUT);
            virtio_net_tap_event(X->dev, EPOLLOUT);
            continue;
        }
        assert_int_equal(r, 3000);
        n++;
    }
    virtio_net_tap_event(X->dev, EPOLLOUT);
    assert_int_equal(used(NET_TXQ)->idx, QSIZE);
    assert_false(virtio_net_tap_events(X->dev) & EPOLLOUT);
    assert_int_equal(stats().tx_packets, QSIZE);
}

/* ---- receive --------------------------------------------------------------------------------- */
static void check_payload(uint64_t gpa, size_t off, size_t len, uint8_t seed, size_t frame_off)
{
    const uint8_t *p = gp(gpa + off, len);
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(seed + frame_off + i))
            fail_msg("byte %zu of the frame differs", frame_off + i);
}

static void test_rx_without_mrg(void **state)
{
    struct virtio_net_hdr_v1 hdr;
    uint64_t buf;

    (void)state;
    default_dev(0);
    buf = offer_rx(1526);
    send_frame(100, 3);
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(used(NET_RXQ)->idx, 1);
    assert_int_equal(used_elem(NET_RXQ, 0).len, HDR + 100);
    memcpy(&hdr, gp(buf, HDR), HDR);
    assert_int_equal(hdr.num_buffers, 1);
    check_payload(buf, HDR, 100, 3, 0);
    assert_true(irq_raised());
    assert_int_equal(stats().rx_packets, 1);
    assert_int_equal(stats().rx_bytes, 100);
}

static void test_rx_mrg_spans_chains(void **state)
{
    struct virtio_net_hdr_v1 hdr;
    uint64_t b[3];

    (void)state;
    default_dev(F(VIRTIO_NET_F_MRG_RXBUF));
    for (int i = 0; i < 3; i++)
        b[i] = offer_rx(256);
    send_frame(600, 9); /* 612 bytes: 256 + 256 + 100 */
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(used(NET_RXQ)->idx, 3);
    assert_int_equal(used_elem(NET_RXQ, 0).len, 256);
    assert_int_equal(used_elem(NET_RXQ, 1).len, 256);
    assert_int_equal(used_elem(NET_RXQ, 2).len, 100);
    memcpy(&hdr, gp(b[0], HDR), HDR);
    assert_int_equal(hdr.num_buffers, 3);
    check_payload(b[0], HDR, 256 - HDR, 9, 0);
    check_payload(b[1], 0, 256, 9, 256 - HDR);
    check_payload(b[2], 0, 100, 9, 512 - HDR);
}

/* A frame that needs more buffers than are offered waits for the guest to add some. */
static void test_rx_mrg_waits_for_buffers(void **state)
{
    struct virtio_net_hdr_v1 hdr;
    uint64_t b0;

    (void)state;
    default_dev(F(VIRTIO_NET_F_MRG_RXBUF));
    b0 = offer_rx(256);
    send_frame(600, 1);
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(used(NET_RXQ)->idx, 0);
    assert_int_equal(virtio_net_tap_events(X->dev), 0); /* the tap is not polled meanwhile */
    offer_rx(256);
    offer_rx(256);
    offer_rx(256); /* one to spare, so the tap is polled again */
    X->dev->ops->notify(X->dev, NET_RXQ);
    assert_int_equal(used(NET_RXQ)->idx, 3);
    memcpy(&hdr, gp(b0, HDR), HDR);
    assert_int_equal(hdr.num_buffers, 3);
    assert_int_equal(virtio_net_tap_events(X->dev), EPOLLIN);
}

static void test_rx_empty_queue_stops_polling(void **state)
{
    uint64_t buf;

    (void)state;
    default_dev(0);
    assert_int_equal(virtio_net_tap_events(X->dev), EPOLLIN);
    send_frame(64, 5);
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(virtio_net_tap_events(X->dev), 0);
    /* The driver was asked to kick when it adds buffers. */
    assert_int_equal(used(NET_RXQ)->flags & VRING_USED_F_NO_NOTIFY, 0);
    buf = offer_rx(1526);
    X->dev->ops->notify(X->dev, NET_RXQ);
    assert_int_equal(used(NET_RXQ)->idx, 1);
    check_payload(buf, HDR, 64, 5, 0);                  /* the frame waited in the tap, not lost */
    assert_int_equal(virtio_net_tap_events(X->dev), 0); /* that was the only buffer */
    offer_rx(1526);
    X->dev->ops->notify(X->dev, NET_RXQ);
    assert_int_equal(virtio_net_tap_events(X->dev), EPOLLIN);
}

static void test_rx_too_big_without_mrg(void **state)
{
    uint64_t buf;

    (void)state;
    default_dev(0);
    offer_rx(64);
    send_frame(100, 0);
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(used(NET_RXQ)->idx, 1);
    assert_int_equal(used_elem(NET_RXQ, 0).len, 0); /* handed back empty, nothing overflowed */
    assert_int_equal(stats().rx_dropped, 1);
    assert_false(X->dev->failed);
    buf = offer_rx(1526); /* the next frame that fits goes through */
    send_frame(40, 2);
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(used(NET_RXQ)->idx, 2);
    check_payload(buf, HDR, 40, 2, 0);
}

static void test_rx_too_big_with_mrg(void **state)
{
    (void)state;
    default_dev(F(VIRTIO_NET_F_MRG_RXBUF));
    for (int i = 0; i < QSIZE; i++)
        offer_rx(32); /* the whole ring holds 512 bytes */
    send_frame(600, 0);
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(used(NET_RXQ)->idx, QSIZE);
    for (int i = 0; i < QSIZE; i++)
        assert_int_equal(used_elem(NET_RXQ, i).len, 0);
    assert_int_equal(stats().rx_dropped, 1);
    assert_false(X->dev->failed);
}

/* ---- config space, features ------------------------------------------------------------------ */
static void test_config_mac_status(void **state)
{
    struct virtio_net_config cfg = {
        .tap = "t0", .mac_set = true, .mac = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
    uint8_t d[8], z[4] = {0};

    (void)state;
    make_dev(&cfg, F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS));
    X->dev->ops->config_read(X->dev, 0, d, 6);
    assert_memory_equal(d, cfg.mac, 6);
    X->dev->ops->config_read(X->dev, 6, d, 2);
    assert_int_equal(d[0] | d[1] << 8, VIRTIO_NET_S_LINK_UP);
    memset(d, 0xff, sizeof(d));
    X->dev->ops->config_read(X->dev, 0x80, d, 4);
    assert_memory_equal(d, z, 4);
    assert_true(X->dev->features & F(VIRTIO_NET_F_GUEST_TSO4));
    assert_true(X->dev->features & F(VIRTIO_NET_F_HOST_TSO6));
    assert_false(X->dev->features & F(VIRTIO_NET_F_CTRL_VQ));
    assert_int_equal(X->dev->nqueues, 2);
}

static void test_config_derived_mac_and_bad_mac(void **state)
{
    struct virtio_env env = {.loop = X->loop, .mem = &X->mem};
    struct virtio_net_config cfg = {.tap = "t0", .mac_set = true, .mac = {0x01, 0, 0, 0, 0, 1}};
    uint8_t a[6], b[6];
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    close(sv[1]);
    assert_null(virtio_net_create_fd(&env, &cfg, sv[0], 0, X->err, sizeof(X->err)));
    assert_non_null(strstr(X->err, "multicast"));
    default_dev(0);
    X->dev->ops->config_read(X->dev, 0, a, 6);
    assert_int_equal(a[0], 0x02); /* locally administered, unicast */
    virtio_dev_destroy(X->dev);
    X->dev = NULL;
    close(X->peer);
    default_dev(0);
    X->dev->ops->config_read(X->dev, 0, b, 6);
    assert_memory_equal(a, b, 6); /* stable for one tap name */
    /* No GUEST_* offloads when the tap takes none. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    close(sv[1]);
    cfg.mac_set = false;
    {
        struct virtio_dev *d = virtio_net_create_fd(&env, &cfg, sv[0], 0, X->err, sizeof(X->err));
        assert_non_null(d);
        assert_false(d->features & F(VIRTIO_NET_F_GUEST_CSUM));
        assert_true(d->features & F(VIRTIO_NET_F_CSUM));
        virtio_dev_destroy(d);
    }
}

static void test_tap_name_checks(void **state)
{
    char err[128];

    (void)state;
    assert_int_equal(tap_check_name("kiln0", err, sizeof(err)), 0);
    assert_int_equal(tap_check_name("", err, sizeof(err)), -EINVAL);
    assert_int_equal(tap_check_name("0123456789abcdef", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "1 to 15"));
    assert_int_equal(tap_check_name("a/b", err, sizeof(err)), -EINVAL);
    assert_int_equal(tap_check_name("a b", err, sizeof(err)), -EINVAL);
    assert_int_equal(tap_check_name("..", err, sizeof(err)), -EINVAL);
}

/* ---- malformed chains fail the device -------------------------------------------------------- */
static void expect_failed(void)
{
    assert_true(X->dev->failed);
    assert_true(X->dev->status & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(virtio_net_tap_events(X->dev), 0);
}

static void test_tx_writable_buffer_fails(void **state)
{
    uint32_t lens[2] = {HDR + 20, 64};

    (void)state;
    default_dev(0);
    offer_mixed(NET_TXQ, 2, lens, 2, NULL); /* readable header + frame, then a writable buffer */
    X->dev->ops->notify(X->dev, NET_TXQ);
    expect_failed();
}

static void test_tx_short_chain_fails(void **state)
{
    uint32_t len = HDR - 1;

    (void)state;
    default_dev(0);
    offer(NET_TXQ, 1, &len, false, NULL);
    X->dev->ops->notify(X->dev, NET_TXQ);
    expect_failed();
}

static void test_rx_readable_buffer_fails(void **state)
{
    uint32_t len = 1526;

    (void)state;
    default_dev(0);
    offer(NET_RXQ, 1, &len, false, NULL);
    send_frame(64, 0);
    virtio_net_tap_event(X->dev, EPOLLIN);
    expect_failed();
}

static void test_rx_tiny_buffer_fails(void **state)
{
    (void)state;
    default_dev(F(VIRTIO_NET_F_MRG_RXBUF));
    offer_rx(HDR - 2);
    send_frame(64, 0);
    virtio_net_tap_event(X->dev, EPOLLIN);
    expect_failed();
}

static void test_rx_buffer_outside_ram_fails(void **state)
{
    struct vring_desc *d;

    (void)state;
    default_dev(0);
    offer_rx(1526);
    d = gp(ring_base[NET_RXQ], 16);
    d->addr = 15 * MiB; /* runs past the end of the 16 MiB arena */
    d->len = 2 * MiB;
    send_frame(64, 0);
    virtio_net_tap_event(X->dev, EPOLLIN);
    expect_failed();
}

/* ---- rate limiting, reset -------------------------------------------------------------------- */
static void test_tx_rate_limit(void **state)
{
    struct virtio_net_config cfg = {.tap = "t0", .tx_limit = {.ops_per_s = 200, .ops_burst = 1}};
    uint32_t len = HDR + 10;
    uint8_t got[64];

    (void)state;
    make_dev(&cfg, 0);
    offer(NET_TXQ, 1, &len, false, NULL);
    offer(NET_TXQ, 1, &len, false, NULL);
    X->dev->ops->notify(X->dev, NET_TXQ);
    assert_int_equal(used(NET_TXQ)->idx, 1);
    assert_int_equal(stats().tx_throttled, 1);
    X->dev->ops->notify(X->dev, NET_TXQ); /* a kick while throttled changes nothing */
    assert_int_equal(used(NET_TXQ)->idx, 1);
    usleep(10000);
    virtio_net_timer_event(X->dev);
    assert_int_equal(used(NET_TXQ)->idx, 2);
    assert_int_equal(recv(X->peer, got, sizeof(got), 0), HDR + 10);
    assert_int_equal(recv(X->peer, got, sizeof(got), 0), HDR + 10);
}

static void test_rx_rate_limit(void **state)
{
    struct virtio_net_config cfg = {.tap = "t0",
                                    .rx_limit = {.bytes_per_s = 10000, .bytes_burst = 100}};

    (void)state;
    make_dev(&cfg, 0);
    for (int i = 0; i < 3; i++)
        offer_rx(1526);
    send_frame(100, 0);
    send_frame(100, 1);
    virtio_net_tap_event(X->dev, EPOLLIN);
    assert_int_equal(used(NET_RXQ)->idx, 1);
    assert_int_equal(stats().rx_throttled, 1);
    assert_int_equal(virtio_net_tap_events(X->dev), 0); /* throttled: the tap is not polled */
    usleep(15000);
    virtio_net_timer_event(X->dev);
    assert_int_equal(used(NET_RXQ)->idx, 2);
    assert_int_equal(virtio_net_tap_events(X->dev), EPOLLIN);
}

static void test_reset_stops_everything(void **state)
{
    (void)state;
    default_dev(0);
    assert_int_equal(virtio_net_tap_events(X->dev), EPOLLIN);
    X->dev->status = 0;
    X->dev->ops->reset(X->dev);
    assert_int_equal(virtio_net_tap_events(X->dev), 0);
    send_frame(64, 0);
    virtio_net_tap_event(X->dev, EPOLLIN); /* a stale event after reset touches nothing */
    assert_int_equal(used(NET_RXQ)->idx, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tx_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_multi_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_eagain_keeps_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_without_mrg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_mrg_spans_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_mrg_waits_for_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_empty_queue_stops_polling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_too_big_without_mrg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_too_big_with_mrg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_mac_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_derived_mac_and_bad_mac, setup, teardown),
        cmocka_unit_test(test_tap_name_checks),
        cmocka_unit_test_setup_teardown(test_tx_writable_buffer_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_short_chain_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_readable_buffer_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_tiny_buffer_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_buffer_outside_ram_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_stops_everything, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
