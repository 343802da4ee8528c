/* vsock_harness.h: drives the vsock device through a fake guest-memory arena and rings (the test
 * plays the guest's driver) against real Unix sockets on the host side. Included by
 * test_vsock*.c only (static helpers; one copy per test binary). */
#ifndef KILN_VSOCK_HARNESS_H
#define KILN_VSOCK_HARNESS_H
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/vsock.h"
#include "lib/lib.h"

#define MEM_SIZE (8 * MiB)
#define QS       64
#define NRX      (QS / 2) /* rx buffers: header and payload descriptors, as Linux 6.1 posts */
#define RXPAY    4096
#define CID      3
#define RING(q)  (0x1000 + (uint64_t)(q)*0x3000) /* desc, avail, used: 0x1000 apart */
#define RXBUF(i) (0x10000 + (uint64_t)(i)*0x2000)
#define TXBUF(i) (0x100000 + (uint64_t)(i)*0x11000)

struct fx {
    struct guest_mem mem;
    struct evloop *loop;
    struct virtio_dev *dev;
    char dir[64], uds[128];
    uint16_t aidx[3], uidx[3];
    unsigned txslot;
};
static struct fx *F;

static inline void *gp(uint64_t gpa, uint64_t len)
{
    void *p = guest_mem_ptr(&F->mem, gpa, len);
    assert_non_null(p);
    return p;
}
static inline struct vring_desc *desc(unsigned q, unsigned i)
{
    return gp(RING(q) + 16ULL * i, 16);
}
static inline struct vring_avail *avail(unsigned q)
{
    return gp(RING(q) + 0x1000, 6 + 2 * QS);
}
static inline struct vring_used *used(unsigned q)
{
    return gp(RING(q) + 0x2000, 6 + 8 * QS);
}
static inline void offer(unsigned q, uint16_t head)
{
    avail(q)->ring[F->aidx[q] % QS] = head;
    __atomic_store_n(&avail(q)->idx, ++F->aidx[q], __ATOMIC_RELEASE);
}

static inline void rx_post(unsigned i)
{
    *desc(0, 2 * i) = (struct vring_desc){RXBUF(i), VSOCK_HDR_SIZE,
                                          VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2 * i + 1};
    *desc(0, 2 * i + 1) = (struct vring_desc){RXBUF(i) + 64, RXPAY, VRING_DESC_F_WRITE, 0};
    offer(0, 2 * i);
}

static inline void rx_fill(unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        rx_post(i);
    F->dev->ops->notify(F->dev, VSOCK_QUEUE_RX);
}

/* The next packet in the rx used ring (reposting its buffer); false if none. */
static inline bool rx_get(struct vsock_hdr *h, uint8_t *data)
{
    struct vring_used_elem e;
    unsigned i;

    if (used(0)->idx == F->uidx[0])
        return false;
    e = used(0)->ring[F->uidx[0]++ % QS];
    i = e.id / 2;
    assert_true(e.len >= VSOCK_HDR_SIZE);
    memcpy(h, gp(RXBUF(i), VSOCK_HDR_SIZE), VSOCK_HDR_SIZE);
    assert_int_equal(e.len, VSOCK_HDR_SIZE + h->len);
    assert_true(h->len <= RXPAY);
    if (data)
        memcpy(data, gp(RXBUF(i) + 64, h->len), h->len);
    assert_int_equal(h->src_cid, VSOCK_HOST_CID);
    assert_int_equal(h->dst_cid, CID);
    rx_post(i);
    return true;
}

static inline struct vsock_hdr pkt(uint16_t op, uint32_t gport, uint32_t hport)
{
    return (struct vsock_hdr){.src_cid = CID,
                              .dst_cid = VSOCK_HOST_CID,
                              .src_port = gport,
                              .dst_port = hport,
                              .type = VSOCK_TYPE_STREAM,
                              .op = op,
                              .buf_alloc = 256 * 1024};
}

/* Queues one tx packet: header and payload in one readable descriptor (chain_len bytes). */
static inline void tx_raw(const struct vsock_hdr *h, const void *data, uint32_t chain_len)
{
    unsigned s = F->txslot++ % QS;

    memcpy(gp(TXBUF(s), VSOCK_HDR_SIZE), h, VSOCK_HDR_SIZE);
    if (h->len && data)
        memcpy(gp(TXBUF(s) + VSOCK_HDR_SIZE, h->len), data, h->len);
    *desc(1, s) = (struct vring_desc){TXBUF(s), chain_len, 0, 0};
    offer(1, s);
    F->dev->ops->notify(F->dev, VSOCK_QUEUE_TX);
    assert_int_equal(used(1)->idx, F->aidx[1]); /* tx chains are consumed at once */
}
static inline void tx(struct vsock_hdr h, const void *data, uint32_t len)
{
    h.len = len;
    tx_raw(&h, data, VSOCK_HDR_SIZE + len);
}

static inline void poll_dev(void)
{
    for (int i = 0; i < 3; i++)
        vsock_poll(F->dev);
}

static inline struct vsock_hdr expect_pkt(uint16_t op)
{
    struct vsock_hdr h;

    poll_dev();
    if (!rx_get(&h, NULL))
        fail_msg("no packet; wanted op %u", op);
    if (h.op != op)
        fail_msg("op %u, wanted %u", h.op, op);
    return h;
}
static inline void expect_none(void)
{
    struct vsock_hdr h;

    poll_dev();
    if (rx_get(&h, NULL))
        fail_msg("unexpected packet op %u len %u", h.op, h.len);
}

static inline int unix_listen(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 128), 0);
    return fd;
}
static inline int unix_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}
/* Reads what is there (up to len) without blocking for long. */
static inline ssize_t read_some(int fd, void *buf, size_t len)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    if (poll(&p, 1, 200) <= 0) {
        errno = EAGAIN;
        return -1;
    }
    return read(fd, buf, len);
}

/* True if the peer closed: EOF, or ECONNRESET when it closed with our bytes unread. */
static inline bool peer_closed(int fd)
{
    char b[64];
    ssize_t n = read_some(fd, b, sizeof(b));
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static inline int setup(void **state)
{
    struct virtio_env env;
    struct virtio_vsock_config cfg = {.guest_cid = CID};
    char err[256];

    (void)state;
    F = calloc(1, sizeof(*F));
    F->mem.fd = -1;
    F->mem.nregions = 1;
    F->mem.regions[0] = (struct guest_region){.gpa = 0, .size = MEM_SIZE};
    F->mem.regions[0].hva = aligned_alloc(4096, MEM_SIZE);
    memset(F->mem.regions[0].hva, 0, MEM_SIZE);
    F->mem.size = MEM_SIZE;
    F->loop = evloop_create();
    snprintf(F->dir, sizeof(F->dir), "/tmp/kiln-vsock-XXXXXX");
    assert_non_null(mkdtemp(F->dir));
    snprintf(F->uds, sizeof(F->uds), "%s/v.sock", F->dir);
    cfg.uds_path = F->uds;
    env = (struct virtio_env){.loop = F->loop, .mem = &F->mem};
    F->dev = virtio_vsock_create(&env, &cfg, err, sizeof(err));
    if (!F->dev)
        fail_msg("%s", err);
    F->dev->mem = &F->mem;
    F->dev->irq_fd = eventfd(0, EFD_NONBLOCK);
    for (unsigned q = 0; q < 3; q++) {
        struct virtq *vq = &F->dev->queues[q];
        *vq = (struct virtq){.size = QS,
                             .desc_gpa = RING(q),
                             .avail_gpa = RING(q) + 0x1000,
                             .used_gpa = RING(q) + 0x2000,
                             .mem = &F->mem};
        assert_int_equal(virtq_validate(vq, VIRTQ_MAX_SIZE, err, sizeof(err)), 0);
        virtq_reset(vq);
        vq->ready = true;
    }
    F->dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    assert_int_equal(F->dev->ops->activate(F->dev), 0);
    rx_fill(NRX);
    return 0;
}

static inline int teardown(void **state)
{
    char cmd[128];

    (void)state;
    virtio_dev_destroy(F->dev);
    evloop_destroy(F->loop);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", F->dir);
    assert_int_equal(system(cmd), 0);
    free(F->mem.regions[0].hva);
    free(F);
    return 0;
}

/* A host client through the CONNECT handshake, answered by the guest; returns the client fd. */
static inline int host_connect(uint32_t gport, uint32_t *local)
{
    int fd = unix_connect(F->uds);
    char line[32], want[32];
    struct vsock_hdr h;
    ssize_t n;

    dprintf(fd, "CONNECT %u\n", gport);
    h = expect_pkt(VSOCK_OP_REQUEST);
    assert_int_equal(h.dst_port, gport);
    assert_true(h.src_port >= VSOCK_PORT_MIN);
    assert_int_equal(h.buf_alloc, VSOCK_CONN_BUF);
    tx(pkt(VSOCK_OP_RESPONSE, gport, h.src_port), NULL, 0);
    n = read_some(fd, line, sizeof(line) - 1);
    assert_true(n > 0);
    line[n] = 0;
    *local = h.src_port;
    snprintf(want, sizeof(want), "OK %u\n", h.src_port);
    assert_string_equal(line, want);
    return fd;
}

#endif
