/* client.c: libkiln's control-socket client (include/kiln.h; docs/control-protocol.md). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "kiln.h"
#include "machine/machine.h"

#define METRICS_MAX_SIZE (1U << 20)

struct kiln_ctl {
    int sock;
};

int kiln_ctl_from_fd(int sock, kiln_ctl **out)
{
    struct timeval tv = {.tv_sec = KILN_CTL_TIMEOUT_S};
    kiln_ctl *ctl = malloc(sizeof(*ctl));

    if (!ctl)
        return -ENOMEM;
    (void)setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ctl->sock = sock;
    *out = ctl;
    return 0;
}

int kiln_ctl_open(const char *target, kiln_ctl **out)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char dir[PATH_MAX];
    int sock, ret;

    if (strchr(target, '/')) {
        if (strlen(target) >= sizeof(addr.sun_path))
            return -ENAMETOOLONG;
        strcpy(addr.sun_path, target);
    } else {
        if (!rundir_name_valid(target))
            return -EINVAL;
        ret = rundir_path(target, dir, sizeof(dir));
        if (ret < 0)
            return ret;
        if (strlen(dir) + 1 + strlen(KILN_CTL_SOCKET) >= sizeof(addr.sun_path))
            return -ENAMETOOLONG;
        strcpy(addr.sun_path, dir);
        strcat(addr.sun_path, "/" KILN_CTL_SOCKET);
    }
    sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return -errno;
    if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        ret = -errno;
        close(sock);
        return ret;
    }
    ret = kiln_ctl_from_fd(sock, out);
    if (ret < 0)
        close(sock);
    return ret;
}

void kiln_ctl_close(kiln_ctl *ctl)
{
    if (!ctl)
        return;
    close(ctl->sock);
    free(ctl);
}

/* One round trip. *resp_fd (if not NULL) receives a descriptor that came with the answer. */
static int call(kiln_ctl *ctl, const struct kiln_ctl_request *req, int fd,
                struct kiln_ctl_response *resp, int *resp_fd)
{
    uint8_t msg[KILN_CTL_MSG_SIZE], buf[KILN_CTL_MSG_SIZE * 2];
    unsigned nfds;
    int got_fd, ret;
    ssize_t n;

    ctl_encode_request(req, msg);
    ret = ctl_send(ctl->sock, msg, fd, 0);
    /* A VM that refuses a client answers once and closes: the answer may still be queued. */
    if (ret < 0 && ret != -EPIPE && ret != -ECONNRESET)
        return ret;
    n = ctl_recv(ctl->sock, buf, sizeof(buf), &got_fd, &nfds, ret < 0 ? MSG_DONTWAIT : 0);
    /* A peer that closes with our request unread reports ECONNRESET once, ahead of the answer
     * it queued before closing. */
    if (n == -ECONNRESET) {
        n = ctl_recv(ctl->sock, buf, sizeof(buf), &got_fd, &nfds, MSG_DONTWAIT);
        if (n == -EAGAIN)
            n = -ECONNRESET;
    }
    if (ret < 0 && n <= 0)
        return ret;
    if (n < 0)
        return n == -EAGAIN ? -ETIMEDOUT : (int)n;
    ret = ctl_decode_response(buf, (size_t)n, nfds, resp);
    if (ret == -ENOTCONN)
        ret = -ECONNRESET; /* the VM closed the connection without an answer */
    else if (ret == 0 && resp->type == KILN_CTL_RESP_ERR)
        ret = resp->err > 4095 ? -EPROTO : -(int)resp->err;
    if (ret == 0 && resp_fd)
        *resp_fd = got_fd;
    else if (got_fd >= 0)
        close(got_fd);
    return ret;
}

/* One round trip whose answer must be of type `expect`; any other answer is -EPROTO. */
static int call_expect(kiln_ctl *ctl, const struct kiln_ctl_request *req, int fd, uint32_t expect,
                       struct kiln_ctl_response *resp)
{
    int ret = call(ctl, req, fd, resp, NULL);

    return ret < 0 ? ret : resp->type == expect ? 0 : -EPROTO;
}

/* A request with no arguments, answered by a plain OK. */
static int simple(kiln_ctl *ctl, uint32_t type)
{
    struct kiln_ctl_request req = {.type = type};
    struct kiln_ctl_response resp;

    return call_expect(ctl, &req, -1, KILN_CTL_RESP_OK, &resp);
}

int kiln_ctl_exit(kiln_ctl *ctl)
{
    return simple(ctl, KILN_CTL_REQ_EXIT);
}

int kiln_ctl_pause(kiln_ctl *ctl)
{
    return simple(ctl, KILN_CTL_REQ_PAUSE);
}

int kiln_ctl_resume(kiln_ctl *ctl)
{
    return simple(ctl, KILN_CTL_REQ_RESUME);
}

int kiln_ctl_get_state(kiln_ctl *ctl, enum kiln_vm_state *state)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_GET_STATE};
    struct kiln_ctl_response resp;
    int ret = call_expect(ctl, &req, -1, KILN_CTL_RESP_STATE, &resp);

    if (ret < 0)
        return ret;
    *state = (enum kiln_vm_state)resp.slot;
    return 0;
}

const char *kiln_ctl_state_name(enum kiln_vm_state state)
{
    return ctl_state_name((uint32_t)state);
}

int kiln_ctl_balloon_adjust(kiln_ctl *ctl, int32_t pages, uint64_t *target)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_BALLOON_ADJUST,
                                   .num_pages = (uint32_t)pages};
    struct kiln_ctl_response resp;
    int ret = call_expect(ctl, &req, -1, KILN_CTL_RESP_OK, &resp);

    if (ret < 0)
        return ret;
    if (target)
        *target = resp.pfn;
    return 0;
}

int kiln_ctl_register_memory(kiln_ctl *ctl, int fd, uint64_t size, uint64_t *pfn, uint32_t *slot)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_REGISTER_MEMORY, .size = size};
    struct kiln_ctl_response resp;
    int ret;

    if (fd < 0)
        return -EBADF;
    ret = call_expect(ctl, &req, fd, KILN_CTL_RESP_REGISTER_MEMORY, &resp);
    if (ret < 0)
        return ret;
    *pfn = resp.pfn;
    *slot = resp.slot;
    return 0;
}

int kiln_ctl_unregister_memory(kiln_ctl *ctl, uint32_t slot)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_UNREGISTER_MEMORY, .slot = slot};
    struct kiln_ctl_response resp;

    return call_expect(ctl, &req, -1, KILN_CTL_RESP_OK, &resp);
}

int kiln_ctl_register_ioevent(kiln_ctl *ctl, int fd, uint64_t addr, uint32_t len,
                              uint32_t datamatch)
{
    struct kiln_ctl_request req = {
        .type = KILN_CTL_REQ_REGISTER_IOEVENT, .slot = len, .size = addr, .num_pages = datamatch};
    struct kiln_ctl_response resp;

    if (fd < 0)
        return -EBADF;
    return call_expect(ctl, &req, fd, KILN_CTL_RESP_OK, &resp);
}

int kiln_ctl_register_irqfd(kiln_ctl *ctl, int fd, uint32_t gsi)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_REGISTER_IRQFD, .slot = gsi};
    struct kiln_ctl_response resp;

    if (fd < 0)
        return -EBADF;
    return call_expect(ctl, &req, fd, KILN_CTL_RESP_OK, &resp);
}

int kiln_ctl_get_metrics(kiln_ctl *ctl, char **json, size_t *len)
{
    struct kiln_ctl_request req = {.type = KILN_CTL_REQ_GET_METRICS};
    struct kiln_ctl_response resp;
    int fd = -1, ret;
    char *text;
    ssize_t n;

    ret = call(ctl, &req, -1, &resp, &fd);
    if (ret < 0)
        return ret;
    if (resp.type != KILN_CTL_RESP_METRICS || resp.pfn > METRICS_MAX_SIZE) {
        ret = -EPROTO;
        goto out;
    }
    text = malloc(resp.pfn + 1);
    if (!text) {
        ret = -ENOMEM;
        goto out;
    }
    n = pread(fd, text, resp.pfn, 0);
    if (n != (ssize_t)resp.pfn) {
        ret = n < 0 ? -errno : -EPROTO;
        free(text);
        goto out;
    }
    text[n] = '\0';
    *json = text;
    if (len)
        *len = (size_t)n;
out:
    close(fd);
    return ret;
}
