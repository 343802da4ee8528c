/* dial.c: reaching a guest vsock port from the host through the VM's hybrid vsock socket
 * (docs/vsock.md): connect to the Unix socket, "CONNECT <port>\n", then "OK <n>\n". */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/lib.h"
#include "sandbox.h"

int sandbox_vsock_path(const char *name, char *out, size_t outlen)
{
    char dir[256];
    int ret;

    if (!rundir_name_valid(name))
        return -EINVAL;
    ret = rundir_path(name, dir, sizeof(dir));
    if (ret < 0)
        return ret;
    return snprintf(out, outlen, "%s/vsock.sock", dir) < (int)outlen ? 0 : -ENAMETOOLONG;
}

/* Reads the answer line one byte at a time: what follows it is the agent's, not ours. */
static int read_line(int fd, char *line, size_t cap, uint64_t deadline)
{
    size_t n = 0;

    while (n + 1 < cap) {
        ssize_t r;
        int ret = agent_wait_readable(fd, deadline);

        if (ret < 0)
            return ret;
        r = recv(fd, line + n, 1, MSG_DONTWAIT);
        if (r == 0)
            return -ECONNREFUSED; /* the VMM closes when the guest refuses the port */
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (r == 1 && line[n++] == '\n') {
            line[n] = '\0';
            return 0;
        }
    }
    return -EPROTO;
}

int agent_dial(const char *vsock_path, uint32_t port, unsigned timeout_ms, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint64_t deadline = agent_deadline(timeout_ms ? timeout_ms : 10000);
    char line[64];
    int fd, ret;

    if (strlen(vsock_path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "vsock socket path %s is longer than %zu bytes", vsock_path,
                 sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, vsock_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ret = -errno;
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return ret;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot connect to %s: %s%s", vsock_path, strerror(errno),
                 errno == ENOENT || errno == ECONNREFUSED ? " (is the sandbox running?)" : "");
        goto fail;
    }
    snprintf(line, sizeof(line), "CONNECT %u\n", port);
    ret = send(fd, line, strlen(line), MSG_NOSIGNAL) == (ssize_t)strlen(line) ? 0 : -EPIPE;
    if (ret == 0)
        ret = read_line(fd, line, sizeof(line), deadline);
    if (ret == 0 && strncmp(line, "OK ", 3) != 0)
        ret = -EPROTO;
    if (ret < 0) {
        snprintf(err, errlen, "vsock port %u in the guest: %s", port,
                 ret == -ECONNREFUSED ? "connection refused (is kiln-agent running?)"
                 : ret == -ETIMEDOUT  ? "no answer in time"
                 : ret == -EPROTO     ? "unexpected answer from the VMM"
                                      : strerror(-ret));
        goto fail;
    }
    return fd;

fail:
    close(fd);
    return ret;
}
