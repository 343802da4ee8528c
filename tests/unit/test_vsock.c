/* test_vsock.c: vsock connection set-up both ways, refusals, and every check on guest packets
 * and host clients (the harness plays the guest driver: vsock_harness.h). */
#include "vsock_harness.h"

static void test_config_and_create(void **state)
{
    struct virtio_vsock_config cfg = {.guest_cid = 2, .uds_path = F->uds};
    struct virtio_env env = {.loop = F->loop, .mem = &F->mem};
    char err[256], path[200];
    uint8_t b[12];

    (void)state;
    F->dev->ops->config_read(F->dev, 0, b, 8);
    assert_int_equal(b[0], CID);
    F->dev->ops->config_read(F->dev, 4, b, 8); /* past the field: zeros */
    assert_int_equal(b[0] | b[4], 0);
    /* The listening socket exists; a bad CID, a long path or a non-socket are refused. */
    struct stat st;
    assert_int_equal(stat(F->uds, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_null(virtio_vsock_create(&env, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "guest CID 2 is reserved"));
    cfg.guest_cid = 5;
    memset(path, 'a', sizeof(path) - 1);
    path[sizeof(path) - 1] = 0;
    cfg.uds_path = path;
    assert_null(virtio_vsock_create(&env, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "must be 1.."));
    snprintf(path, sizeof(path), "%s/file", F->dir);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    assert_null(virtio_vsock_create(&env, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "is not a socket"));
}

static void test_parse_connect(void **state)
{
    uint32_t p = 0;

    (void)state;
    assert_int_equal(vsock_parse_connect("CONNECT 52\n", 11, &p), 0);
    assert_int_equal(p, 52);
    assert_int_equal(vsock_parse_connect("CONNECT 4294967295\r\n", 20, &p), 0);
    assert_int_equal(p, UINT32_MAX);
    const char *bad[] = {"CONNECT 4294967296\n", "CONNECT \n", "CONNECT -1\n", "CONNECT 5x\n",
                         "connect 5\n",          "CONNECT 5",  "CONNECT  5\n", "OK 5\n"};
    for (unsigned i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(vsock_parse_connect(bad[i], strlen(bad[i]), &p), -EINVAL);
}

static void test_host_initiated(void **state)
{
    uint32_t local;
    int fd = host_connect(5000, &local);
    struct vsock_hdr h;
    uint8_t buf[64];

    (void)state;
    assert_int_equal(write(fd, "hello", 5), 5);
    poll_dev();
    assert_true(rx_get(&h, buf));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 5);
    assert_int_equal(h.src_port, local);
    assert_int_equal(h.dst_port, 5000);
    assert_memory_equal(buf, "hello", 5);
    tx(pkt(VSOCK_OP_RW, 5000, local), "world!", 6);
    assert_int_equal(read_some(fd, buf, sizeof(buf)), 6);
    assert_memory_equal(buf, "world!", 6);
    /* A second client gets another local port. */
    uint32_t local2;
    int fd2 = host_connect(5000, &local2);
    assert_int_not_equal(local, local2);
    close(fd);
    close(fd2);
}

static void test_host_data_after_line(void **state)
{
    int fd = unix_connect(F->uds);
    struct vsock_hdr h;
    uint8_t buf[64];

    (void)state;
    /* Bytes after the CONNECT line belong to the stream, not to the handshake. */
    assert_int_equal(write(fd, "CONNECT 7\nearly", 15), 15);
    h = expect_pkt(VSOCK_OP_REQUEST);
    tx(pkt(VSOCK_OP_RESPONSE, 7, h.src_port), NULL, 0);
    poll_dev();
    assert_true(rx_get(&h, buf));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 5);
    assert_memory_equal(buf, "early", 5);
    close(fd);
}

static void test_host_refused_and_bad_line(void **state)
{
    int fd = unix_connect(F->uds), fd2;
    struct vsock_hdr h;

    (void)state;
    dprintf(fd, "CONNECT 9\n");
    h = expect_pkt(VSOCK_OP_REQUEST);
    tx(pkt(VSOCK_OP_RST, 9, h.src_port), NULL, 0); /* nobody listens on 9 in the guest */
    poll_dev();
    assert_true(peer_closed(fd));
    close(fd);

    fd = unix_connect(F->uds);
    dprintf(fd, "HELLO 9\n");
    fd2 = unix_connect(F->uds);
    assert_int_equal(write(fd2, "CONNECT 123456789012345678901234567890", 38), 38);
    poll_dev();
    assert_true(peer_closed(fd));
    assert_true(peer_closed(fd2));
    expect_none();
    close(fd);
    close(fd2);
}

static void test_host_line_in_pieces(void **state)
{
    int fd = unix_connect(F->uds);
    struct vsock_hdr h;

    (void)state;
    assert_int_equal(write(fd, "CONN", 4), 4);
    expect_none();
    assert_int_equal(write(fd, "ECT 77\n", 7), 7);
    h = expect_pkt(VSOCK_OP_REQUEST);
    assert_int_equal(h.dst_port, 77);
    close(fd);
}

static void test_guest_initiated(void **state)
{
    char path[160];
    int lfd, fd;
    struct vsock_hdr h;
    uint8_t buf[64];

    (void)state;
    snprintf(path, sizeof(path), "%s_%u", F->uds, 6000);
    lfd = unix_listen(path);
    tx(pkt(VSOCK_OP_REQUEST, 40000, 6000), NULL, 0);
    h = expect_pkt(VSOCK_OP_RESPONSE);
    assert_int_equal(h.src_port, 6000);
    assert_int_equal(h.dst_port, 40000);
    fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    tx(pkt(VSOCK_OP_RW, 40000, 6000), "ping", 4);
    assert_int_equal(read_some(fd, buf, sizeof(buf)), 4);
    assert_int_equal(write(fd, "pong", 4), 4);
    poll_dev();
    assert_true(rx_get(&h, buf));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_memory_equal(buf, "pong", 4);
    /* A second REQUEST on the same ports is a protocol error: RST, and the host sees EOF. */
    tx(pkt(VSOCK_OP_REQUEST, 40000, 6000), NULL, 0);
    expect_pkt(VSOCK_OP_RST);
    assert_true(peer_closed(fd));
    close(fd);
    close(lfd);
}

static void test_guest_refused(void **state)
{
    struct vsock_hdr h;

    (void)state;
    tx(pkt(VSOCK_OP_REQUEST, 40001, 6001), NULL, 0); /* no listener at <uds>_6001 */
    h = expect_pkt(VSOCK_OP_RST);
    assert_int_equal(h.src_port, 6001);
    assert_int_equal(h.dst_port, 40001);
    tx(pkt(VSOCK_OP_RW, 40001, 6001), "x", 1); /* unknown connection */
    expect_pkt(VSOCK_OP_RST);
    tx(pkt(VSOCK_OP_RST, 40001, 6001), NULL, 0); /* an RST is never answered */
    expect_none();
}

static void test_bad_packets(void **state)
{
    struct vsock_hdr h = pkt(VSOCK_OP_REQUEST, 1, 2);

    (void)state;
    h.src_cid = 7; /* not the guest's CID: dropped */
    tx(h, NULL, 0);
    h = pkt(VSOCK_OP_REQUEST, 1, 2);
    h.dst_cid = 9; /* not the host: dropped */
    tx(h, NULL, 0);
    expect_none();
    h = pkt(VSOCK_OP_REQUEST, 1, 2);
    h.type = 2; /* seqpacket was not offered: RST */
    tx(h, NULL, 0);
    expect_pkt(VSOCK_OP_RST);
    h = pkt(VSOCK_OP_RW, 1, 2);
    h.len = 100; /* more than the chain holds */
    tx_raw(&h, NULL, VSOCK_HDR_SIZE + 10);
    expect_pkt(VSOCK_OP_RST);
    h = pkt(VSOCK_OP_REQUEST, 1, 2);
    h.len = 4; /* payload on a control packet */
    tx_raw(&h, NULL, VSOCK_HDR_SIZE + 4);
    expect_pkt(VSOCK_OP_RST);
    h = pkt(VSOCK_OP_RW, 1, 2);
    h.len = VSOCK_MAX_PKT + 1; /* beyond the packet limit */
    tx_raw(&h, NULL, VSOCK_HDR_SIZE + VSOCK_MAX_PKT + 1);
    expect_pkt(VSOCK_OP_RST);
    assert_false(F->dev->failed);
}

static void test_unknown_op_resets(void **state)
{
    uint32_t local;
    int fd = host_connect(5000, &local);

    (void)state;
    tx(pkt(42, 5000, local), NULL, 0);
    expect_pkt(VSOCK_OP_RST);
    assert_true(peer_closed(fd));
    close(fd);
}

static void test_malformed_tx_chain_fails_device(void **state)
{
    struct vsock_hdr h = pkt(VSOCK_OP_REQUEST, 1, 2);

    (void)state;
    tx_raw(&h, NULL, 20); /* shorter than a header */
    assert_true(F->dev->failed);
    assert_true(F->dev->status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_tx_chain_with_writable_fails_device(void **state)
{
    struct vsock_hdr h = pkt(VSOCK_OP_REQUEST, 1, 2);

    (void)state;
    memcpy(gp(TXBUF(0), VSOCK_HDR_SIZE), &h, VSOCK_HDR_SIZE);
    *desc(1, 0) = (struct vring_desc){TXBUF(0), VSOCK_HDR_SIZE, VRING_DESC_F_NEXT, 1};
    *desc(1, 1) = (struct vring_desc){TXBUF(0) + 64, 64, VRING_DESC_F_WRITE, 0};
    offer(1, 0);
    F->dev->ops->notify(F->dev, VSOCK_QUEUE_TX);
    assert_true(F->dev->failed);
}

static void test_bad_ring_fails_device(void **state)
{
    (void)state;
    *desc(1, 0) = (struct vring_desc){MEM_SIZE - 8, 64, 0, 0}; /* past the end of RAM */
    offer(1, 0);
    F->dev->ops->notify(F->dev, VSOCK_QUEUE_TX);
    assert_true(F->dev->failed);
}

static void test_small_rx_buffer_fails_device(void **state)
{
    (void)state;
    /* Use up the posted buffers' stash with a fresh queue holding one 8-byte buffer. */
    F->dev->ops->reset(F->dev);
    virtq_reset(&F->dev->queues[0]);
    avail(0)->idx = used(0)->idx = 0;
    F->aidx[0] = F->uidx[0] = 0;
    *desc(0, 0) = (struct vring_desc){RXBUF(0), 8, VRING_DESC_F_WRITE, 0};
    offer(0, 0);
    tx(pkt(VSOCK_OP_RW, 1, 2), "x", 1); /* owes an RST: needs an rx buffer */
    assert_true(F->dev->failed);
}

static void test_reset_closes_everything(void **state)
{
    uint32_t local;
    int fd = host_connect(5000, &local);

    (void)state;
    F->dev->ops->reset(F->dev);
    assert_true(peer_closed(fd));
    close(fd);
    /* The listener survives a driver reset. */
    fd = unix_connect(F->uds);
    close(fd);
}

static void test_destroy_removes_socket(void **state)
{
    struct stat st;

    (void)state;
    virtio_dev_destroy(F->dev);
    F->dev = NULL;
    assert_int_equal(stat(F->uds, &st), -1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_and_create),
        T(test_parse_connect),
        T(test_host_initiated),
        T(test_host_data_after_line),
        T(test_host_refused_and_bad_line),
        T(test_host_line_in_pieces),
        T(test_guest_initiated),
        T(test_guest_refused),
        T(test_bad_packets),
        T(test_unknown_op_resets),
        T(test_malformed_tx_chain_fails_device),
        T(test_tx_chain_with_writable_fails_device),
        T(test_bad_ring_fails_device),
        T(test_small_rx_buffer_fails_device),
        T(test_reset_closes_everything),
        T(test_destroy_removes_socket),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
