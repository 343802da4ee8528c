/* test_vsock_flow.c: vsock data flow: credit both ways, stalls on a full host socket or an empty
 * rx queue, half-close, peers vanishing, many connections, interrupt batching. */
#include "vsock_harness.h"

/* A guest-initiated connection to a host listener at <uds>_port; returns the accepted fd. */
static int guest_connect(uint32_t gport, uint32_t hport, uint32_t buf_alloc, int *lfd)
{
    char path[160];
    struct vsock_hdr h = pkt(VSOCK_OP_REQUEST, gport, hport);
    int fd;

    snprintf(path, sizeof(path), "%s_%u", F->uds, hport);
    if (*lfd < 0)
        *lfd = unix_listen(path);
    h.buf_alloc = buf_alloc;
    tx(h, NULL, 0);
    expect_pkt(VSOCK_OP_RESPONSE);
    fd = accept(*lfd, NULL, NULL);
    assert_true(fd >= 0);
    return fd;
}

/* Drains the rx ring; returns RW payload bytes for gport (CREDIT_REQUESTs counted in *creq). */
static uint32_t rx_drain(uint32_t gport, uint8_t *out, unsigned *creq, unsigned *other)
{
    struct vsock_hdr h;
    static uint8_t buf[RXPAY];
    uint32_t total = 0;

    poll_dev();
    while (rx_get(&h, buf)) {
        if (h.op == VSOCK_OP_RW && h.dst_port == gport) {
            if (out)
                memcpy(out + total, buf, h.len);
            total += h.len;
        } else if (h.op == VSOCK_OP_CREDIT_REQUEST && creq) {
            (*creq)++;
        } else if (other) {
            (*other)++;
        }
        poll_dev();
    }
    return total;
}

static void test_host_to_guest_credit(void **state)
{
    int lfd = -1, fd = guest_connect(100, 7000, 8192, &lfd);
    static uint8_t data[20000], got[20000];
    unsigned creq = 0;
    uint32_t n;
    struct vsock_hdr h;

    (void)state;
    for (unsigned i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(write(fd, data, sizeof(data)), sizeof(data));
    /* Exactly the 8 KiB the guest gave, then a request for more. */
    n = rx_drain(100, got, &creq, NULL);
    assert_int_equal(n, 8192);
    assert_int_equal(creq, 1);
    h = pkt(VSOCK_OP_CREDIT_UPDATE, 100, 7000);
    h.buf_alloc = 8192;
    h.fwd_cnt = 8192;
    tx(h, NULL, 0);
    n += rx_drain(100, got + n, &creq, NULL);
    assert_int_equal(n, 16384);
    h.fwd_cnt = 16384;
    tx(h, NULL, 0);
    n += rx_drain(100, got + n, &creq, NULL);
    assert_int_equal(n, sizeof(data));
    assert_memory_equal(got, data, sizeof(data));
    close(fd);
    close(lfd);
}

static void test_rx_starved_then_refilled(void **state)
{
    int lfd = -1, fd = guest_connect(101, 7001, 1 << 20, &lfd);
    static uint8_t data[3 * RXPAY * NRX];
    uint32_t n = 0, w = 0;

    (void)state;
    for (unsigned i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)i;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (w < sizeof(data)) {
        ssize_t r = write(fd, data + w, sizeof(data) - w);
        assert_true(r > 0);
        w += (uint32_t)r;
        /* The ring holds NRX buffers: the device fills them and waits, without spinning. */
        poll_dev();
        assert_int_equal((uint16_t)(used(0)->idx - F->uidx[0]), NRX);
        n += rx_drain(101, NULL, NULL, NULL); /* reposts and notifies as it goes */
    }
    n += rx_drain(101, NULL, NULL, NULL);
    assert_int_equal(n, sizeof(data));
    close(fd);
    close(lfd);
}

static void test_guest_to_host_stall_and_credit_update(void **state)
{
    int lfd = -1, fd = guest_connect(102, 7002, 1 << 20, &lfd);
    static uint8_t chunk[VSOCK_MAX_PKT], sink[VSOCK_MAX_PKT];
    uint32_t sent = 0, got = 0, last_fwd = 0;
    unsigned other = 0;
    struct vsock_hdr h;

    (void)state;
    memset(chunk, 0x5a, sizeof(chunk));
    /* The host side reads nothing: the device buffers up to the credit it gave (256 KiB)
     * beyond what the socket holds, and the guest stops there. */
    int sndbuf = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
    for (int i = 0; i < 4; i++) {
        tx(pkt(VSOCK_OP_RW, 102, 7002), chunk, sizeof(chunk));
        sent += sizeof(chunk);
    }
    /* Now drain on the host: the device flushes its buffer and owes a credit update. */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int spin = 0; spin < 1000 && got < sent; spin++) {
        ssize_t r = read(fd, sink, sizeof(sink));
        if (r > 0)
            got += (uint32_t)r;
        poll_dev();
        while (rx_get(&h, NULL)) {
            if (h.op == VSOCK_OP_CREDIT_UPDATE && h.dst_port == 102)
                last_fwd = h.fwd_cnt;
            else
                other++;
        }
    }
    assert_int_equal(got, sent);
    assert_int_equal(other, 0);
    assert_true(last_fwd >= sent - VSOCK_CREDIT_THRESHOLD);
    close(fd);
    close(lfd);
}

static void test_guest_beyond_credit_is_reset(void **state)
{
    int lfd = -1, fd = guest_connect(103, 7003, 1 << 20, &lfd);
    static uint8_t chunk[VSOCK_MAX_PKT];
    int rcv = 4096;

    (void)state;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    /* 1 MiB against 256 KiB of credit (plus what the socket holds), nobody reading */
    for (int i = 0; i < 16; i++)
        tx(pkt(VSOCK_OP_RW, 103, 7003), chunk, sizeof(chunk));
    struct vsock_hdr h;
    bool rst = false;
    poll_dev();
    while (rx_get(&h, NULL))
        rst |= h.op == VSOCK_OP_RST; /* after CREDIT_UPDATEs for what the socket took */
    assert_true(rst);
    assert_false(F->dev->failed);
    close(fd);
    close(lfd);
}

static void test_half_close_both_ways(void **state)
{
    int lfd = -1, fd = guest_connect(104, 7004, 1 << 20, &lfd);
    struct vsock_hdr h;
    char buf[16];

    (void)state;
    /* Host EOF -> SHUTDOWN(SEND); the guest can still send. */
    shutdown(fd, SHUT_WR);
    h = expect_pkt(VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    tx(pkt(VSOCK_OP_RW, 104, 7004), "after", 5);
    assert_int_equal(read_some(fd, buf, sizeof(buf)), 5);
    /* Guest SHUTDOWN(SEND) -> the host reads EOF; the connection stays for the guest's close. */
    h = pkt(VSOCK_OP_SHUTDOWN, 104, 7004);
    h.flags = VSOCK_SHUTDOWN_SEND;
    tx(h, NULL, 0);
    assert_true(peer_closed(fd));
    expect_none();
    /* Both bits: the guest waits for our RST. */
    h.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
    tx(h, NULL, 0);
    expect_pkt(VSOCK_OP_RST);
    close(fd);
    close(lfd);
}

static void test_data_then_eof_in_one_edge(void **state)
{
    int lfd = -1, fd = guest_connect(108, 7008, 1 << 20, &lfd);
    struct vsock_hdr h;
    uint8_t buf[16];

    (void)state;
    /* Data and the EOF behind it arrive before the device looks: one edge for both. */
    assert_int_equal(write(fd, "bye", 3), 3);
    shutdown(fd, SHUT_WR);
    poll_dev();
    assert_true(rx_get(&h, buf));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_memory_equal(buf, "bye", 3);
    h = expect_pkt(VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    close(fd);
    close(lfd);
}

static void test_host_peer_vanishes(void **state)
{
    int lfd = -1, fd = guest_connect(105, 7005, 1 << 20, &lfd);
    static uint8_t chunk[4096];

    (void)state;
    close(fd); /* host side killed mid-transfer */
    tx(pkt(VSOCK_OP_RW, 105, 7005), chunk, sizeof(chunk));
    poll_dev();
    /* EOF first (SHUTDOWN) or the failed write (RST): either way an RST ends it. */
    struct vsock_hdr h;
    bool rst = false;
    while (rx_get(&h, NULL))
        rst |= h.op == VSOCK_OP_RST;
    if (!rst) {
        tx(pkt(VSOCK_OP_RW, 105, 7005), chunk, sizeof(chunk));
        expect_pkt(VSOCK_OP_RST);
    }
    /* The next connection works. */
    fd = guest_connect(106, 7005, 1 << 20, &lfd);
    close(fd);
    close(lfd);
}

static void test_many_connections(void **state)
{
    int lfd = -1, fds[64];
    uint8_t buf[8];

    (void)state;
    for (unsigned i = 0; i < 64; i++)
        fds[i] = guest_connect(2000 + i, 7100, 1 << 20, &lfd);
    for (unsigned i = 0; i < 64; i++) {
        uint32_t v = i;
        tx(pkt(VSOCK_OP_RW, 2000 + i, 7100), &v, 4);
        assert_int_equal(write(fds[i], &v, 4), 4);
    }
    poll_dev();
    unsigned seen = 0;
    struct vsock_hdr h;
    while (rx_get(&h, buf)) {
        uint32_t v;
        memcpy(&v, buf, 4);
        assert_int_equal(h.op, VSOCK_OP_RW);
        assert_int_equal(h.dst_port, 2000 + v);
        seen++;
        poll_dev();
    }
    assert_int_equal(seen, 64);
    for (unsigned i = 0; i < 64; i++) {
        uint32_t v;
        assert_int_equal(read_some(fds[i], &v, 4), 4);
        assert_int_equal(v, i);
        close(fds[i]);
    }
    close(lfd);
}

static void test_one_interrupt_per_batch(void **state)
{
    int lfd = -1, fd = guest_connect(107, 7007, 1 << 20, &lfd);
    static uint8_t data[8 * RXPAY];
    uint64_t irqs = 0;

    (void)state;
    (void)!read(F->dev->irq_fd, &irqs, sizeof(irqs)); /* forget set-up interrupts */
    assert_int_equal(write(fd, data, sizeof(data)), sizeof(data));
    vsock_poll(F->dev);
    assert_int_equal(used(0)->idx - F->uidx[0], 8); /* 8 packets... */
    assert_int_equal(read(F->dev->irq_fd, &irqs, sizeof(irqs)), 8);
    assert_int_equal(irqs, 1); /* ...one interrupt */
    close(fd);
    close(lfd);
}

/* A tx completion's interrupt waits for the next rx one (one interrupt for both), or for
 * VSOCK_TX_IRQ_DELAY_NS when no rx traffic comes; half a ring of them goes at once. */
static void test_tx_interrupt_coalesced(void **state)
{
    int lfd = -1, fd = guest_connect(108, 7008, 1 << 20, &lfd);
    uint64_t irqs = 0;
    uint8_t b[64] = {0}, got[64];
    struct vsock_hdr h = pkt(VSOCK_OP_RW, 108, 7008);
    struct timespec ts = {0, 3 * VSOCK_TX_IRQ_DELAY_NS};

    (void)state;
    (void)!read(F->dev->irq_fd, &irqs, sizeof(irqs)); /* forget set-up interrupts */
    tx(h, b, sizeof(b));
    assert_int_equal(read_some(fd, got, sizeof(got)), sizeof(got));
    assert_int_equal(read(F->dev->irq_fd, &irqs, sizeof(irqs)), -1); /* held back */
    /* The host answers: one interrupt covers the rx packet and the tx completion. */
    assert_int_equal(write(fd, b, sizeof(b)), sizeof(b));
    poll_dev();
    assert_int_equal(read(F->dev->irq_fd, &irqs, sizeof(irqs)), 8);
    assert_int_equal(irqs, 1);
    assert_int_equal(F->dev->queues[VSOCK_QUEUE_TX].signalled_used, used(1)->idx);
    expect_pkt(VSOCK_OP_RW);
    (void)!read(F->dev->irq_fd, &irqs, sizeof(irqs));
    /* No answer: the timer lets it out. */
    tx(h, b, sizeof(b));
    assert_int_equal(read(F->dev->irq_fd, &irqs, sizeof(irqs)), -1);
    nanosleep(&ts, NULL);
    poll_dev();
    assert_int_equal(read(F->dev->irq_fd, &irqs, sizeof(irqs)), 8);
    assert_int_equal(F->dev->queues[VSOCK_QUEUE_TX].signalled_used, used(1)->idx);
    /* Half the tx ring waiting: at once. */
    for (unsigned i = 0; i < QS / 2; i++)
        tx(h, b, sizeof(b));
    assert_int_equal(read(F->dev->irq_fd, &irqs, sizeof(irqs)), 8);
    close(fd);
    close(lfd);
}

static void test_connect_timeout(void **state)
{
    int fd = unix_connect(F->uds);
    char buf[8];
    struct vsock_hdr h;

    (void)state;
    dprintf(fd, "CONNECT 55\n");
    h = expect_pkt(VSOCK_OP_REQUEST);
    /* The guest never answers: after the timeout the client is closed, the guest gets RST. */
    for (int i = 0; i < 30 && read_some(fd, buf, sizeof(buf)) != 0; i++)
        vsock_poll(F->dev);
    h = expect_pkt(VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 55);
    close(fd);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_host_to_guest_credit),
        T(test_rx_starved_then_refilled),
        T(test_guest_to_host_stall_and_credit_update),
        T(test_guest_beyond_credit_is_reset),
        T(test_half_close_both_ways),
        T(test_data_then_eof_in_one_edge),
        T(test_host_peer_vanishes),
        T(test_many_connections),
        T(test_one_interrupt_per_batch),
        T(test_tx_interrupt_coalesced),
        T(test_connect_timeout),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
