/* virtio_net.c: the virtio-net device (virtio 1.2 section 5.1) over a tap: features, config space,
 * session start and stop, event-loop wiring. The data path is net_io.c; docs/net.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <linux/if_tun.h>
#include <linux/virtio_ids.h>

#include "lib/lib.h"
#include "net.h"

#define QUEUE_SIZE 256
#define F(bit)     (1ULL << (bit))

/* ---- event-loop callbacks ---------------------------------------------------------------------
 */
void net_tap_ready(void *opaque, uint32_t events)
{
    struct net *net = opaque;

    pthread_mutex_lock(&net->lock);
    if (events & (EPOLLOUT | EPOLLERR)) {
        net->tx_blocked = false;
        net_tx_process(net);
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        net_rx_process(net);
    net_finish(net);
}

static void drain(int fd)
{
    uint64_t v;

    (void)!read(fd, &v, sizeof(v));
}

static void rx_timer_event(void *opaque, uint32_t events)
{
    struct net *net = opaque;

    (void)events;
    drain(net->rx_timer);
    pthread_mutex_lock(&net->lock);
    net->rx_throttled = false;
    net_rx_process(net);
    net_finish(net);
}

static void tx_timer_event(void *opaque, uint32_t events)
{
    struct net *net = opaque;

    (void)events;
    drain(net->tx_timer);
    pthread_mutex_lock(&net->lock);
    net->tx_throttled = false;
    net_tx_process(net);
    net_finish(net);
}

/* Work handed over from a vCPU thread (activate) or left over when a budget ran out. */
static void kick_event(void *opaque, uint32_t events)
{
    struct net *net = opaque;

    (void)events;
    drain(net->kick_fd);
    pthread_mutex_lock(&net->lock);
    net_tx_process(net);
    net_rx_process(net);
    net_finish(net);
}

/* ---- the device contract ---------------------------------------------------------------------
 */
static void net_config_read(struct virtio_dev *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct net *net = dev->priv;
    struct linux_virtio_net_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    memcpy(cfg.mac, net->mac, sizeof(cfg.mac));
    cfg.status = VIRTIO_NET_S_LINK_UP; /* a tap has no carrier to lose; little-endian host */
    memset(data, 0, len);
    if (offset < sizeof(cfg))
        memcpy(data, (uint8_t *)&cfg + offset,
               len < sizeof(cfg) - offset ? len : sizeof(cfg) - offset);
}

static void net_notify(struct virtio_dev *dev, unsigned index)
{
    struct net *net = dev->priv;

    pthread_mutex_lock(&net->lock);
    if (index == NET_RXQ)
        net_rx_process(net); /* new buffers: a waiting frame can go, the tap is polled again */
    else if (index == NET_TXQ)
        net_tx_process(net);
    net_finish(net);
}

/* Forgets the session; the frame being delivered, if any, is lost with it. */
static void session_clear(struct net *net)
{
    struct itimerspec off = {0};

    net->active = net->mrg = net->rx_dead = false;
    net->rx_throttled = net->tx_throttled = net->rx_no_buffers = net->tx_blocked = false;
    net->frame_pending = net->tx_pending = false;
    net->nused = 0;
    (void)timerfd_settime(net->rx_timer, 0, &off, NULL);
    (void)timerfd_settime(net->tx_timer, 0, &off, NULL);
}

static int net_activate(struct virtio_dev *dev)
{
    struct net *net = dev->priv;
    uint64_t acked = dev->acked, now = time_now_ns(), one = 1;
    unsigned tun = 0;
    int ret;

    /* What the guest takes offloaded is what the tap may hand us. */
    if (acked & F(VIRTIO_NET_F_GUEST_CSUM)) {
        tun |= TUN_F_CSUM;
        if (acked & F(VIRTIO_NET_F_GUEST_TSO4))
            tun |= TUN_F_TSO4;
        if (acked & F(VIRTIO_NET_F_GUEST_TSO6))
            tun |= TUN_F_TSO6;
        if (acked & F(VIRTIO_NET_F_GUEST_ECN))
            tun |= TUN_F_TSO_ECN;
    }
    tun &= net->tun_offloads;
    if (net->is_tap) {
        ret = tap_set_offloads(net->tap_fd, tun);
        if (ret < 0) {
            log_error("virtio-%s: the tap refused offloads 0x%x: %s", dev->name, tun,
                      strerror(-ret));
            return ret;
        }
    }
    pthread_mutex_lock(&net->lock);
    session_clear(net);
    net->mrg = acked & F(VIRTIO_NET_F_MRG_RXBUF);
    /* A driver may leave a queue off; that direction then stays idle rather than failing. */
    net->rx_dead = !dev->queues[NET_RXQ].ready;
    net->tx_off = !dev->queues[NET_TXQ].ready;
    ratelimit_init(&net->rx_rl, &net->rx_cfg, now);
    ratelimit_init(&net->tx_rl, &net->tx_cfg, now);
    net->active = true;
    net_update_watch(net);
    ret = net->active ? 0 : -EIO; /* the event loop would not take the tap */
    net->fail_pending = false;
    pthread_mutex_unlock(&net->lock);
    if (ret < 0) {
        log_error("virtio-%s: %s", dev->name, net->fail_why);
        return ret;
    }
    /* Anything the driver queued before DRIVER_OK is picked up on the event loop. */
    (void)!write(net->kick_fd, &one, sizeof(one));
    return 0;
}

static void net_reset(struct virtio_dev *dev)
{
    struct net *net = dev->priv;

    pthread_mutex_lock(&net->lock);
    session_clear(net);
    net_update_watch(net);
    pthread_mutex_unlock(&net->lock);
}

static void net_destroy(struct virtio_dev *dev)
{
    struct net *net = dev->priv;

    if (!net)
        return;
    if (net->tap_events)
        evloop_del(net->loop, net->tap_fd);
    evloop_del(net->loop, net->rx_timer);
    evloop_del(net->loop, net->tx_timer);
    evloop_del(net->loop, net->kick_fd);
    close(net->rx_timer);
    close(net->tx_timer);
    close(net->kick_fd);
    close(net->tap_fd);
    pthread_mutex_destroy(&net->lock);
    free(net->frame);
    free(net);
    dev->priv = NULL;
}

static const struct virtio_dev_ops net_ops = {
    .config_read = net_config_read,
    .activate = net_activate,
    .reset = net_reset,
    .notify = net_notify,
    .destroy = net_destroy,
};

/* ---- construction ----------------------------------------------------------------------------
 */
/* A locally administered unicast address from the tap name (FNV-1a), stable across runs. */
static void derive_mac(const char *name, uint8_t mac[6])
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
    mac[0] = 0x02;
    for (int i = 1; i < 6; i++)
        mac[i] = (uint8_t)(h >> (8 * (i - 1)));
}

static uint64_t offered_features(unsigned tun)
{
    /* Frames from the guest may carry partial checksums and GSO: a tap with a vnet header
     * accepts both. No control queue: no MAC filtering, VLAN or multiqueue to configure. */
    uint64_t f = F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_MRG_RXBUF) |
                 F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) |
                 F(VIRTIO_NET_F_HOST_ECN);

    if (tun & TUN_F_CSUM)
        f |= F(VIRTIO_NET_F_GUEST_CSUM);
    if ((tun & TUN_F_CSUM) && (tun & TUN_F_TSO4))
        f |= F(VIRTIO_NET_F_GUEST_TSO4);
    if ((tun & TUN_F_CSUM) && (tun & TUN_F_TSO6))
        f |= F(VIRTIO_NET_F_GUEST_TSO6);
    if ((tun & TUN_F_CSUM) && (tun & TUN_F_TSO_ECN) && (tun & (TUN_F_TSO4 | TUN_F_TSO6)))
        f |= F(VIRTIO_NET_F_GUEST_ECN);
    return f;
}

static int check_config(const struct virtio_net_config *cfg, char *err, size_t errlen)
{
    const uint8_t *m = cfg->mac;

    if (!cfg->mac_set)
        return 0;
    if ((m[0] & 1) || !(m[0] | m[1] | m[2] | m[3] | m[4] | m[5])) {
        snprintf(err, errlen,
                 "virtio-net: mac %02x:%02x:%02x:%02x:%02x:%02x is %s; give a unicast address "
                 "(lowest bit of "
                 "the first byte clear), e.g. 02:00:00:00:00:01",
                 m[0], m[1], m[2], m[3], m[4], m[5], (m[0] & 1) ? "a multicast address" : "zero");
        return -EINVAL;
    }
    return 0;
}

static int watch(struct net *net, int fd, evloop_fn fn)
{
    return fd < 0 ? -errno : evloop_add(net->loop, fd, EPOLLIN, fn, net);
}

static struct virtio_dev *build(const struct virtio_env *env, const struct virtio_net_config *cfg,
                                int fd, bool is_tap, unsigned tun, char *err, size_t errlen)
{
    struct virtio_dev *dev;
    struct net *net;
    int ret = -ENOMEM;

    dev = virtio_dev_alloc();
    net = calloc(1, sizeof(*net));
    if (!dev || !net || !(net->frame = malloc(NET_FRAME_MAX)))
        goto fail_alloc;
    net->dev = dev;
    net->loop = env->loop;
    net->tap_fd = fd;
    net->is_tap = is_tap;
    net->tun_offloads = tun;
    net->rx_cfg = cfg->rx_limit;
    net->tx_cfg = cfg->tx_limit;
    net->rx_limited = ratelimit_enabled(&cfg->rx_limit);
    net->tx_limited = ratelimit_enabled(&cfg->tx_limit);
    if (cfg->mac_set)
        memcpy(net->mac, cfg->mac, sizeof(net->mac));
    else
        derive_mac(cfg->tap ? cfg->tap : "", net->mac);
    pthread_mutex_init(&net->lock, NULL);
    net->rx_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    net->tx_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    net->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    dev->priv = net;
    dev->ops = &net_ops;
    if ((ret = watch(net, net->rx_timer, rx_timer_event)) < 0 ||
        (ret = watch(net, net->tx_timer, tx_timer_event)) < 0 ||
        (ret = watch(net, net->kick_fd, kick_event)) < 0) {
        snprintf(err, errlen, "virtio-net: cannot set up the device's timers: %s", strerror(-ret));
        virtio_dev_destroy(dev); /* net_destroy closes fd */
        errno = -ret;
        return NULL;
    }
    dev->name = "net";
    dev->device_id = VIRTIO_ID_NET;
    dev->features = offered_features(tun);
    dev->nqueues = 2;
    dev->queue_max[NET_RXQ] = QUEUE_SIZE;
    dev->queue_max[NET_TXQ] = QUEUE_SIZE;
    return dev;

fail_alloc:
    snprintf(err, errlen, "virtio-net: out of memory");
    if (net)
        free(net->frame);
    free(net);
    virtio_dev_destroy(dev);
    close(fd);
    errno = -ret;
    return NULL;
}

struct virtio_dev *virtio_net_create(const struct virtio_env *env,
                                     const struct virtio_net_config *cfg, char *err, size_t errlen)
{
    char why[320];
    unsigned tun;
    int fd;

    if (check_config(cfg, err, errlen) < 0) {
        errno = EINVAL;
        return NULL;
    }
    fd = tap_open(cfg->tap, why, sizeof(why));
    if (fd < 0) {
        snprintf(err, errlen, "virtio-net: %s", why);
        errno = -fd;
        return NULL;
    }
    tun = tap_probe_offloads(fd);
    log_debug("virtio-net: tap %s accepts offloads 0x%x", cfg->tap, tun);
    return build(env, cfg, fd, true, tun, err, errlen);
}

struct virtio_dev *virtio_net_create_fd(const struct virtio_env *env,
                                        const struct virtio_net_config *cfg, int fd,
                                        unsigned tun_offloads, char *err, size_t errlen)
{
    if (check_config(cfg, err, errlen) < 0) {
        close(fd);
        errno = EINVAL;
        return NULL;
    }
    return build(env, cfg, fd, false, tun_offloads, err, errlen);
}

/* ---- test hooks ------------------------------------------------------------------------------ */
void virtio_net_tap_event(struct virtio_dev *dev, uint32_t events)
{
    net_tap_ready(dev->priv, events);
}

void virtio_net_timer_event(struct virtio_dev *dev)
{
    rx_timer_event(dev->priv, EPOLLIN);
    tx_timer_event(dev->priv, EPOLLIN);
}

uint32_t virtio_net_tap_events(struct virtio_dev *dev)
{
    struct net *net = dev->priv;
    uint32_t events;

    pthread_mutex_lock(&net->lock);
    events = net->tap_events;
    pthread_mutex_unlock(&net->lock);
    return events;
}

void virtio_net_get_stats(struct virtio_dev *dev, struct virtio_net_stats *out)
{
    struct net *net = dev->priv;

    pthread_mutex_lock(&net->lock);
    *out = net->stats;
    pthread_mutex_unlock(&net->lock);
}
