/* test_control_server.c: the control server over socketpair(SEQPACKET) with a fake VM: a round
 * trip for every request through libkiln's client, each malformed message answered as documented,
 * descriptors closed when not kept, the peer-credential check and the client limit. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "control/control.h"
#include "kiln.h"

/* ---- the fake VM ---------------------------------------------------------------------------- */
struct fake {
    int calls[KILN_CTL_REQ_MAX + 1];
    uint64_t size, addr;
    uint32_t slot, len, datamatch, gsi;
    int32_t pages;
    int kept_fd; /* a descriptor a handler kept */
    int fail;    /* next handler result */
};

static struct fake fk;

static int fake_exit(void *o)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_EXIT]++;
    return fk.fail;
}

static int fake_register_memory(void *o, int *fd, uint64_t size, uint64_t *pfn, uint32_t *slot)
{
    (void)o;
    (void)fd; /* not kept: the server must close it */
    fk.calls[KILN_CTL_REQ_REGISTER_MEMORY]++;
    fk.size = size;
    *pfn = 0x140000;
    *slot = 2;
    return fk.fail;
}

static int fake_unregister_memory(void *o, uint32_t slot)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_UNREGISTER_MEMORY]++;
    fk.slot = slot;
    return slot == 2 ? 0 : -ENOENT;
}

static int fake_balloon(void *o, int32_t pages, uint64_t *target)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_BALLOON_ADJUST]++;
    fk.pages = pages;
    *target = (uint64_t)(1000 + pages);
    return 0;
}

static int fake_pause(void *o)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_PAUSE]++;
    return 0;
}

static int fake_resume(void *o)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_RESUME]++;
    return 0;
}

static int fake_state(void *o, uint32_t *state)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_GET_STATE]++;
    *state = fk.calls[KILN_CTL_REQ_PAUSE] > fk.calls[KILN_CTL_REQ_RESUME] ? KILN_CTL_STATE_PAUSED
                                                                          : KILN_CTL_STATE_RUNNING;
    return 0;
}

static int fake_ioevent(void *o, int *fd, uint64_t addr, uint32_t len, uint32_t datamatch)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_REGISTER_IOEVENT]++;
    fk.addr = addr;
    fk.len = len;
    fk.datamatch = datamatch;
    fk.kept_fd = *fd;
    *fd = -1;
    return 0;
}

static int fake_irqfd(void *o, int *fd, uint32_t gsi)
{
    (void)o;
    fk.calls[KILN_CTL_REQ_REGISTER_IRQFD]++;
    fk.gsi = gsi;
    fk.kept_fd = *fd;
    *fd = -1;
    return 0;
}

static int fake_metrics(void *o, int *memfd, uint64_t *len)
{
    static const char doc[] = "{\"exits\":{\"io\":42}}\n";
    int fd = memfd_create("fake-metrics", MFD_CLOEXEC);

    (void)o;
    fk.calls[KILN_CTL_REQ_GET_METRICS]++;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, doc, sizeof(doc) - 1), (ssize_t)sizeof(doc) - 1);
    *memfd = fd;
    *len = sizeof(doc) - 1;
    return 0;
}

static const struct ctl_ops fake_ops = {
    .exit = fake_exit,
    .register_memory = fake_register_memory,
    .unregister_memory = fake_unregister_memory,
    .balloon_adjust = fake_balloon,
    .pause = fake_pause,
    .resume = fake_resume,
    .get_state = fake_state,
    .register_ioevent = fake_ioevent,
    .register_irqfd = fake_irqfd,
    .get_metrics = fake_metrics,
};

/* The peer's uid as the fake credential check sees it. */
static uid_t fake_uid;
static int fake_peer_check(int sock, uid_t owner)
{
    (void)sock;
    return fake_uid == 0 || fake_uid == owner ? 0 : -EACCES;
}

/* ---- harness: the server on an event loop thread ----------------------------------------------
 */
struct rig {
    struct evloop *loop;
    struct ctl_server *srv;
    pthread_t thread;
    int client; /* our end of the first connection */
};

static void *loop_thread(void *arg)
{
    evloop_run(arg);
    return NULL;
}

static int connect_pair(struct rig *r)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)ctl_server_adopt(r->srv, sv[0]);
    return sv[1];
}

static void rig_start(struct rig *r)
{
    struct ctl_server_config cfg = {.ops = &fake_ops, .owner = 1000, .peer_check = fake_peer_check};
    char err[128];

    memset(&fk, 0, sizeof(fk));
    fk.kept_fd = -1;
    fake_uid = 1000;
    r->loop = evloop_create();
    assert_non_null(r->loop);
    cfg.loop = r->loop;
    r->srv = ctl_server_create(NULL, &cfg, err, sizeof(err));
    assert_non_null(r->srv);
    r->client = connect_pair(r);
}

/* Starts serving; connections are adopted before this, while the loop is idle. */
static void rig_run(struct rig *r)
{
    assert_int_equal(pthread_create(&r->thread, NULL, loop_thread, r->loop), 0);
}

static void rig_stop(struct rig *r)
{
    evloop_stop(r->loop);
    pthread_join(r->thread, NULL);
    ctl_server_destroy(r->srv);
    evloop_destroy(r->loop);
    if (r->client >= 0)
        close(r->client);
    if (fk.kept_fd >= 0)
        close(fk.kept_fd);
}

/* Sends raw bytes (and up to two descriptors), returns the decoded answer's errno (0 for Ok). */
static int raw_call(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } cmsg;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    struct kiln_ctl_response resp;
    uint8_t in[64];
    unsigned got_nfds;
    int got_fd;
    ssize_t n;

    if (nfds) {
        memset(&cmsg, 0, sizeof(cmsg));
        mh.msg_control = cmsg.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        cmsg.hdr.cmsg_level = SOL_SOCKET;
        cmsg.hdr.cmsg_type = SCM_RIGHTS;
        cmsg.hdr.cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(&cmsg.hdr), fds, nfds * sizeof(int));
    }
    assert_int_equal(sendmsg(sock, &mh, 0), (ssize_t)len);
    n = ctl_recv(sock, in, sizeof(in), &got_fd, &got_nfds, 0);
    assert_int_equal(n, KILN_CTL_MSG_SIZE);
    assert_int_equal(ctl_decode_response(in, (size_t)n, got_nfds, &resp), 0);
    if (got_fd >= 0)
        close(got_fd);
    return resp.type == KILN_CTL_RESP_ERR ? (int)resp.err : 0;
}

/* True once every copy of a pipe's write end is closed: the read end then sees EOF. */
static bool write_end_closed(int rd)
{
    char c;
    return read(rd, &c, 1) == 0;
}

static void pipe_nb(int p[2])
{
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
}

/* ---- tests --------------------------------------------------------------------------------------
 */
static void test_round_trips(void **state)
{
    struct rig r;
    kiln_ctl *ctl;
    enum kiln_vm_state st;
    uint64_t pfn, target;
    uint32_t slot;
    char *json;
    size_t len;
    int p[2], efd;

    (void)state;
    rig_start(&r);
    rig_run(&r);
    assert_int_equal(kiln_ctl_from_fd(r.client, &ctl), 0);
    r.client = -1;

    assert_int_equal(kiln_ctl_get_state(ctl, &st), 0);
    assert_int_equal(st, KILN_VM_RUNNING);
    assert_int_equal(kiln_ctl_pause(ctl), 0);
    assert_int_equal(kiln_ctl_get_state(ctl, &st), 0);
    assert_int_equal(st, KILN_VM_PAUSED);
    assert_string_equal(kiln_ctl_state_name(st), "paused");
    assert_int_equal(kiln_ctl_resume(ctl), 0);
    assert_int_equal(fk.calls[KILN_CTL_REQ_RESUME], 1);

    pipe_nb(p);
    assert_int_equal(kiln_ctl_register_memory(ctl, p[1], 2 << 20, &pfn, &slot), 0);
    assert_int_equal(pfn, 0x140000);
    assert_int_equal(slot, 2);
    assert_int_equal(fk.size, 2 << 20);
    close(p[1]);
    assert_true(write_end_closed(p[0])); /* the server closed the descriptor it did not keep */
    close(p[0]);
    assert_int_equal(kiln_ctl_unregister_memory(ctl, 2), 0);
    assert_int_equal(kiln_ctl_unregister_memory(ctl, 3), -ENOENT);

    assert_int_equal(kiln_ctl_balloon_adjust(ctl, -200, &target), 0);
    assert_int_equal(fk.pages, -200);
    assert_int_equal(target, 800);

    efd = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(kiln_ctl_register_ioevent(ctl, efd, 0xd0000050, 4, 3), 0);
    assert_int_equal(fk.addr, 0xd0000050);
    assert_int_equal(fk.len, 4);
    assert_int_equal(fk.datamatch, 3);
    assert_true(fk.kept_fd >= 0);
    close(fk.kept_fd);
    assert_int_equal(kiln_ctl_register_irqfd(ctl, efd, 23), 0);
    assert_int_equal(fk.gsi, 23);
    close(efd);
    assert_int_equal(kiln_ctl_register_irqfd(ctl, -1, 23), -EBADF);

    assert_int_equal(kiln_ctl_get_metrics(ctl, &json, &len), 0);
    assert_string_equal(json, "{\"exits\":{\"io\":42}}\n");
    assert_int_equal(len, strlen(json));
    free(json);

    fk.fail = -EBUSY; /* a handler's error comes back as its errno */
    assert_int_equal(kiln_ctl_exit(ctl), -EBUSY);
    fk.fail = 0;
    assert_int_equal(kiln_ctl_exit(ctl), 0);
    assert_int_equal(fk.calls[KILN_CTL_REQ_EXIT], 2);
    kiln_ctl_close(ctl);
    rig_stop(&r);
}

static void test_malformed(void **state)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_GET_STATE};
    uint8_t buf[64];
    struct rig r;
    int p[2], q[2], fds[2];

    (void)state;
    rig_start(&r);
    rig_run(&r);
    memset(buf, 0, sizeof(buf));
    /* A 7-byte datagram, then one of 25 bytes: EMSGSIZE, and the connection stays usable. */
    assert_int_equal(raw_call(r.client, buf, 7, NULL, 0), EMSGSIZE);
    assert_int_equal(raw_call(r.client, buf, 25, NULL, 0), EMSGSIZE);
    /* 24 bytes of 0x0c: an unknown type. */
    memset(buf, 0x0c, KILN_CTL_MSG_SIZE);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, NULL, 0), EOPNOTSUPP);
    /* RegisterMemory without a descriptor. */
    req.type = KILN_CTL_REQ_REGISTER_MEMORY;
    req.size = 4096;
    ctl_encode_request(&req, buf);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, NULL, 0), EBADF);
    assert_int_equal(fk.calls[KILN_CTL_REQ_REGISTER_MEMORY], 0);
    /* RegisterMemory with two descriptors: refused, both closed. */
    pipe_nb(p);
    pipe_nb(q);
    fds[0] = p[1];
    fds[1] = q[1];
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, fds, 2), EINVAL);
    close(p[1]);
    close(q[1]);
    assert_true(write_end_closed(p[0]));
    assert_true(write_end_closed(q[0]));
    close(p[0]);
    close(q[0]);
    /* A descriptor on a request that takes none: refused and closed. */
    pipe_nb(p);
    req = (struct kiln_ctl_request){.type = KILN_CTL_REQ_PAUSE};
    ctl_encode_request(&req, buf);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, &p[1], 1), EINVAL);
    close(p[1]);
    assert_true(write_end_closed(p[0]));
    close(p[0]);
    assert_int_equal(fk.calls[KILN_CTL_REQ_PAUSE], 0);
    /* A descriptor with a malformed message is closed too. */
    pipe_nb(p);
    assert_int_equal(raw_call(r.client, buf, 7, &p[1], 1), EMSGSIZE);
    close(p[1]);
    assert_true(write_end_closed(p[0]));
    close(p[0]);
    /* Non-zero padding. */
    req = (struct kiln_ctl_request){.type = KILN_CTL_REQ_GET_STATE, .padding = 1};
    ctl_encode_request(&req, buf);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, NULL, 0), EINVAL);
    /* After all that, a good request still works. */
    req.padding = 0;
    ctl_encode_request(&req, buf);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, NULL, 0), 0);
    assert_int_equal(fk.calls[KILN_CTL_REQ_GET_STATE], 1);
    rig_stop(&r);
}

static void wait_clients(struct ctl_server *srv, unsigned want)
{
    for (int i = 0; i < 2000 && ctl_server_clients(srv) != want; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(ctl_server_clients(srv), want);
}

static void test_peer_shutdown_and_clients(void **state)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_GET_STATE};
    uint8_t buf[KILN_CTL_MSG_SIZE];
    struct rig r;
    int second;

    (void)state;
    rig_start(&r);
    second = connect_pair(&r);
    rig_run(&r);
    ctl_encode_request(&req, buf);
    /* Several clients, each answered. */
    assert_int_equal(raw_call(second, buf, KILN_CTL_MSG_SIZE, NULL, 0), 0);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, NULL, 0), 0);
    wait_clients(r.srv, 2);
    /* The peer shuts down: the server drops that connection, the other one carries on. */
    shutdown(second, SHUT_RDWR);
    wait_clients(r.srv, 1);
    close(second);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, NULL, 0), 0);
    /* A zero-length datagram counts as the peer closing. */
    assert_int_equal(send(r.client, buf, 0, 0), 0);
    wait_clients(r.srv, 0);
    assert_int_equal(recv(r.client, buf, sizeof(buf), 0), 0);
    rig_stop(&r);
}

static void test_other_uid_refused(void **state)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_GET_STATE};
    uint8_t buf[KILN_CTL_MSG_SIZE];
    struct rig r;
    kiln_ctl *ctl;
    enum kiln_vm_state st;
    int sock;

    (void)state;
    rig_start(&r);
    ctl_encode_request(&req, buf);
    /* uid 1001 is neither root nor the owner (1000): one Err EACCES, then the connection ends. */
    fake_uid = 1001;
    sock = connect_pair(&r);
    assert_int_equal(ctl_server_clients(r.srv), 1);
    assert_int_equal(kiln_ctl_from_fd(sock, &ctl), 0);
    assert_int_equal(kiln_ctl_get_state(ctl, &st), -EACCES);
    kiln_ctl_close(ctl);
    /* Root is admitted. */
    fake_uid = 0;
    sock = connect_pair(&r);
    assert_int_equal(ctl_server_clients(r.srv), 2);
    close(sock);
    /* The real check admits this process (it is root or the owner it names). */
    {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(ctl_peer_check(sv[0], geteuid()), 0);
        if (geteuid() != 0)
            assert_int_equal(ctl_peer_check(sv[0], geteuid() + 1), -EACCES);
        close(sv[0]);
        close(sv[1]);
    }
    rig_run(&r);
    assert_int_equal(raw_call(r.client, buf, KILN_CTL_MSG_SIZE, NULL, 0), 0);
    rig_stop(&r);
}

static void test_client_limit(void **state)
{
    struct rig r;
    int socks[CTL_MAX_CLIENTS];
    kiln_ctl *ctl;
    enum kiln_vm_state st;

    (void)state;
    rig_start(&r);
    for (int i = 1; i < CTL_MAX_CLIENTS; i++)
        socks[i] = connect_pair(&r);
    assert_int_equal(ctl_server_clients(r.srv), CTL_MAX_CLIENTS);
    /* One more is answered EMFILE and closed. */
    assert_int_equal(kiln_ctl_from_fd(connect_pair(&r), &ctl), 0);
    assert_int_equal(kiln_ctl_get_state(ctl, &st), -EMFILE);
    kiln_ctl_close(ctl);
    for (int i = 1; i < CTL_MAX_CLIENTS; i++)
        close(socks[i]);
    rig_run(&r);
    rig_stop(&r);
}

static void test_listen_and_open(void **state)
{
    struct ctl_server_config cfg = {.ops = &fake_ops, .owner = 1000, .peer_check = fake_peer_check};
    char dir[] = "/tmp/kiln-ctl-test.XXXXXX", path[128], err[256];
    struct ctl_server *srv;
    struct evloop *loop;
    pthread_t thread;
    kiln_ctl *ctl;
    enum kiln_vm_state st;

    (void)state;
    memset(&fk, 0, sizeof(fk));
    fake_uid = 1000;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/control.sock", dir);
    loop = evloop_create();
    cfg.loop = loop;
    srv = ctl_server_create(path, &cfg, err, sizeof(err));
    assert_non_null(srv);
    assert_int_equal(pthread_create(&thread, NULL, loop_thread, loop), 0);
    assert_int_equal(kiln_ctl_open(path, &ctl), 0);
    assert_int_equal(kiln_ctl_get_state(ctl, &st), 0);
    assert_int_equal(st, KILN_VM_RUNNING);
    kiln_ctl_close(ctl);
    /* Names must be valid; a missing VM is ENOENT. */
    assert_int_equal(kiln_ctl_open("bad name", &ctl), -EINVAL);
    assert_int_equal(kiln_ctl_open("/nonexistent/control.sock", &ctl), -ENOENT);
    evloop_stop(loop);
    pthread_join(thread, NULL);
    ctl_server_destroy(srv);
    evloop_destroy(loop);
    /* The socket file went with the server. */
    assert_int_equal(access(path, F_OK), -1);
    rmdir(dir);
    /* A path longer than sun_path is refused with a message. */
    memset(path, 'x', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_null(ctl_server_create(path, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "longer than"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_peer_shutdown_and_clients),
        cmocka_unit_test(test_other_uid_refused),
        cmocka_unit_test(test_client_limit),
        cmocka_unit_test(test_listen_and_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
