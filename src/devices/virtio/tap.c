/* tap.c: the net device's backend: a Linux tap interface with a virtio-net header on every frame.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "lib/lib.h"
#include "net.h"

#define TUN_PATH "/dev/net/tun"
#define HOST_NEEDS                                                                                 \
    "--net needs the tun module and CAP_NET_ADMIN, or a persistent tap owned by you "              \
    "(ip tuntap add NAME mode tap user $USER)"

int tap_check_name(const char *name, char *err, size_t errlen)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len >= IFNAMSIZ) {
        snprintf(err, errlen, "tap name '%s' must be 1 to %d characters", name ? name : "",
                 IFNAMSIZ - 1);
        return -EINVAL;
    }
    if (!strcmp(name, ".") || !strcmp(name, "..")) {
        snprintf(err, errlen, "tap name '%s' is not a valid interface name", name);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == ':' || c <= ' ' || c >= 0x7f) {
            snprintf(err, errlen,
                     "tap name '%s' has a character an interface name cannot have (no '/', ':', "
                     "white space or control characters)",
                     name);
            return -EINVAL;
        }
    }
    return 0;
}

int tap_open(const char *name, char *err, size_t errlen)
{
    struct ifreq ifr;
    int hdr_len = (int)NET_HDR_LEN;
    int fd, ret;

    ret = tap_check_name(name, err, errlen);
    if (ret < 0)
        return ret;
    fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot open %s: %s; %s", TUN_PATH, strerror(-ret), HOST_NEEDS);
        return ret;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name));
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        ret = -errno;
        if (ret == -EPERM)
            snprintf(err, errlen, "cannot attach to tap '%s': %s; %s", name, strerror(-ret),
                     HOST_NEEDS);
        else if (ret == -EBUSY)
            snprintf(err, errlen, "tap '%s' is busy: another process has it open", name);
        else if (ret == -EINVAL)
            snprintf(err, errlen,
                     "'%s' exists but is not a single-queue tap (a tun, multi-queue tap or "
                     "another kind of interface); name a tap or a free name",
                     name);
        else
            snprintf(err, errlen, "cannot attach to tap '%s': %s", name, strerror(-ret));
        goto fail_close;
    }
    /* The tap must put exactly the 12-byte virtio 1.x header in front of each frame, the same
     * layout the guest uses, so headers pass through without conversion. */
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
        ret = -errno;
        snprintf(err, errlen, "tap '%s': cannot set a %d-byte vnet header: %s", name, hdr_len,
                 strerror(-ret));
        goto fail_close;
    }
    return fd;

fail_close:
    close(fd);
    return ret;
}

int tap_set_offloads(int fd, unsigned tun_flags)
{
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)tun_flags) < 0 ? -errno : 0;
}

unsigned tap_probe_offloads(int fd)
{
    static const unsigned tries[] = {
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
        TUN_F_CSUM,
    };
    unsigned got = 0;

    /* Older kernels refuse flags they do not know as a whole, so try from the richest set down. */
    for (size_t i = 0; i < ARRAY_SIZE(tries) && !got; i++)
        if (tap_set_offloads(fd, tries[i]) == 0)
            got = tries[i];
    (void)tap_set_offloads(fd, 0);
    return got;
}
