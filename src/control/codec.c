/* codec.c: encoding and decoding of control messages (docs/control-protocol.md), and the
 * datagram send/receive with one SCM_RIGHTS descriptor. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

bool ctl_request_needs_fd(uint32_t type)
{
    return type == KILN_CTL_REQ_REGISTER_MEMORY || type == KILN_CTL_REQ_REGISTER_IOEVENT ||
           type == KILN_CTL_REQ_REGISTER_IRQFD;
}

/* Requests and responses share one layout (docs/control-protocol.md, "Layout"): type, a u32, a
 * u64, a u32 and padding, little endian. It never changes, so it is spelled out once, here. */
struct words {
    uint32_t type, w1;
    uint64_t q;
    uint32_t w2, padding;
};

static int get_words(const void *buf, size_t len, struct words *w)
{
    const uint8_t *p = buf;

    if (len == 0)
        return -ENOTCONN;
    if (len != KILN_CTL_MSG_SIZE)
        return -EMSGSIZE;
    w->type = get32(p);
    w->w1 = get32(p + 4);
    w->q = get64(p + 8);
    w->w2 = get32(p + 16);
    w->padding = get32(p + 20);
    return 0;
}

static void put_words(uint8_t out[KILN_CTL_MSG_SIZE], const struct words *w)
{
    put32(out, w->type);
    put32(out + 4, w->w1);
    put64(out + 8, w->q);
    put32(out + 16, w->w2);
    put32(out + 20, w->padding);
}

/* A message carries exactly one descriptor when its type wants one, and none otherwise. */
static int check_fds(bool wants_fd, unsigned nfds)
{
    if (wants_fd)
        return nfds == 0 ? -EBADF : nfds > 1 ? -EINVAL : 0;
    return nfds ? -EINVAL : 0;
}

int ctl_decode_request(const void *buf, size_t len, unsigned nfds, struct kiln_ctl_request *out)
{
    struct words w;
    int ret = get_words(buf, len, &w);

    if (ret < 0)
        return ret;
    *out = (struct kiln_ctl_request){
        .type = w.type, .slot = w.w1, .size = w.q, .num_pages = w.w2, .padding = w.padding};
    if (out->type < KILN_CTL_REQ_EXIT || out->type > KILN_CTL_REQ_MAX)
        return -EOPNOTSUPP;
    if (out->padding)
        return -EINVAL;
    return check_fds(ctl_request_needs_fd(out->type), nfds);
}

void ctl_encode_request(const struct kiln_ctl_request *req, uint8_t out[KILN_CTL_MSG_SIZE])
{
    put_words(out, &(struct words){.type = req->type,
                                   .w1 = req->slot,
                                   .q = req->size,
                                   .w2 = req->num_pages,
                                   .padding = req->padding});
}

int ctl_decode_response(const void *buf, size_t len, unsigned nfds, struct kiln_ctl_response *out)
{
    struct words w;
    int ret = get_words(buf, len, &w);

    if (ret < 0)
        return ret;
    *out = (struct kiln_ctl_response){
        .type = w.type, .err = w.w1, .pfn = w.q, .slot = w.w2, .padding = w.padding};
    if (out->type < KILN_CTL_RESP_OK || out->type > KILN_CTL_RESP_MAX)
        return -EOPNOTSUPP;
    if (out->type == KILN_CTL_RESP_ERR && out->err == 0)
        return -EINVAL;
    return check_fds(out->type == KILN_CTL_RESP_METRICS, nfds);
}

void ctl_encode_response(const struct kiln_ctl_response *resp, uint8_t out[KILN_CTL_MSG_SIZE])
{
    put_words(out, &(struct words){.type = resp->type,
                                   .w1 = resp->err,
                                   .q = resp->pfn,
                                   .w2 = resp->slot,
                                   .padding = resp->padding});
}

const char *ctl_request_name(uint32_t type)
{
    static const char *const names[] = {
        [KILN_CTL_REQ_EXIT] = "exit",
        [KILN_CTL_REQ_REGISTER_MEMORY] = "register-memory",
        [KILN_CTL_REQ_UNREGISTER_MEMORY] = "unregister-memory",
        [KILN_CTL_REQ_BALLOON_ADJUST] = "balloon-adjust",
        [KILN_CTL_REQ_PAUSE] = "pause",
        [KILN_CTL_REQ_RESUME] = "resume",
        [KILN_CTL_REQ_GET_STATE] = "get-state",
        [KILN_CTL_REQ_REGISTER_IOEVENT] = "register-ioevent",
        [KILN_CTL_REQ_REGISTER_IRQFD] = "register-irqfd",
        [KILN_CTL_REQ_GET_METRICS] = "get-metrics",
    };

    return type < sizeof(names) / sizeof(names[0]) && names[type] ? names[type] : "unknown";
}

const char *ctl_state_name(uint32_t state)
{
    switch (state) {
    case KILN_CTL_STATE_RUNNING:
        return "running";
    case KILN_CTL_STATE_PAUSED:
        return "paused";
    case KILN_CTL_STATE_EXITING:
        return "exiting";
    }
    return "unknown";
}

int ctl_send(int sock, const uint8_t msg[KILN_CTL_MSG_SIZE], int fd, int flags)
{
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } cmsg;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = KILN_CTL_MSG_SIZE};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    if (fd >= 0) {
        memset(&cmsg, 0, sizeof(cmsg));
        mh.msg_control = cmsg.buf;
        mh.msg_controllen = sizeof(cmsg.buf);
        cmsg.hdr.cmsg_level = SOL_SOCKET;
        cmsg.hdr.cmsg_type = SCM_RIGHTS;
        cmsg.hdr.cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(&cmsg.hdr), &fd, sizeof(int));
    }
    do
        n = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == KILN_CTL_MSG_SIZE ? 0 : -EIO;
}

ssize_t ctl_recv(int sock, uint8_t *buf, size_t buflen, int *fd, unsigned *nfds, int flags)
{
    /* Room for a few descriptors, so that a peer sending several gets them all closed. */
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(8 * sizeof(int))];
    } cmsg;
    struct iovec iov = {.iov_base = buf, .iov_len = buflen};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cmsg.buf, .msg_controllen = sizeof(cmsg)};
    ssize_t n;

    *fd = -1;
    *nfds = 0;
    do
        n = recvmsg(sock, &mh, flags | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        size_t count;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*fd < 0)
                *fd = got;
            else
                close(got);
            (*nfds)++;
        }
    }
    /* Descriptors that did not fit were closed by the kernel; still count the message as
     * carrying more than one. */
    if (mh.msg_flags & MSG_CTRUNC)
        (*nfds)++;
    return n;
}
