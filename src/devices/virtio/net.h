/* net.h: the net device's internals shared by virtio_net.c, tap.c and the unit tests: the tap
 * backend (tap.c) and the test hooks of the virtio-net device (docs/net.md). */
#ifndef KILN_NET_H
#define KILN_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* <linux/virtio_net.h> declares its own struct virtio_net_config (the guest-visible config
 * space), which would clash with kiln's device configuration of the same name in virtio.h:
 * include the UAPI header under another name for that one struct. */
#define virtio_net_config linux_virtio_net_config
#include <linux/virtio_net.h>
#undef virtio_net_config

#include "virtio.h"

/* The header in front of every frame, on the tap and in the guest's buffers: virtio 1.x always
 * uses the 12-byte layout with num_buffers (section 5.1.6). */
#define NET_HDR_LEN ((uint32_t)sizeof(struct virtio_net_hdr_v1))
/* The largest frame the tap can hand us: a 64 KiB GSO super-frame, an Ethernet and a VLAN
 * header and the virtio header, rounded up. */
#define NET_FRAME_MAX (65536 + 256)

/* ---- tap backend (tap.c) ---------------------------------------------------------------------
 * Opens /dev/net/tun and attaches to the tap `name` (an existing persistent tap the caller may
 * use, or a new one if the process has CAP_NET_ADMIN) with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
 * a 12-byte vnet header, non-blocking and close-on-exec. Returns the fd, or -errno with a message
 * naming the interface and what the host must provide in err. */
int tap_open(const char *name, char *err, size_t errlen);
/* Checks an interface name as the kernel would (1..15 bytes, no '/', ':' or white space, not
 * "." or ".."). Returns 0 or -EINVAL with the reason in err. */
int tap_check_name(const char *name, char *err, size_t errlen);
/* Returns the TUN_F_* offloads (CSUM, TSO4, TSO6, TSO_ECN) this tap accepts, found by trying
 * them, and leaves all offloads off. */
unsigned tap_probe_offloads(int fd);
/* TUNSETOFFLOAD: which offloaded frames the tap may hand us. Returns 0 or -errno. */
int tap_set_offloads(int fd, unsigned tun_flags);

/* ---- the device's state (virtio_net.c builds it, net_io.c moves the frames) ------------------
 */
#define NET_RXQ 0
#define NET_TXQ 1

struct virtio_net_stats {
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
    uint64_t rx_dropped;                 /* too big for the guest's buffers, or truncated */
    uint64_t tx_errors;                  /* frames the tap refused */
    uint64_t rx_throttled, tx_throttled; /* times a rate limiter stopped a direction */
};

struct rx_used {
    uint16_t head;
    uint32_t len;
};

struct net {
    struct virtio_dev *dev;
    struct evloop *loop;
    pthread_mutex_t lock; /* everything below: the event loop vs. activate/reset on vCPUs */
    int tap_fd, rx_timer, tx_timer, kick_fd;
    bool is_tap;           /* false: a test socket that takes no tap ioctls */
    unsigned tun_offloads; /* TUN_F_* the tap accepts */
    uint8_t mac[6];
    struct rate_limit_config rx_cfg, tx_cfg;
    uint32_t tap_events; /* registered on the event loop now */

    /* Per driver session: set by activate, cleared by reset. */
    bool active, mrg, rx_dead, tx_off;
    bool rx_limited, tx_limited, rx_throttled, tx_throttled;
    bool rx_no_buffers; /* the guest has no rx buffers: the tap is not polled until it adds some */
    bool tx_blocked;    /* the tap said EAGAIN: wait for EPOLLOUT */
    struct rate_limiter rx_rl, tx_rl;

    /* The frame being delivered: read from the tap, copied into guest chains as they come. */
    uint8_t *frame;
    size_t frame_len, frame_off;
    bool frame_pending, frame_charged;
    struct rx_used used[VIRTQ_MAX_SIZE]; /* chains filled for it, pushed when it is complete */
    unsigned nused;
    uint8_t *num_buffers[2]; /* where the first chain's num_buffers bytes are */
    struct virtq_chain rx_chain;

    struct virtq_chain tx_chain; /* popped, not yet written to the tap */
    bool tx_pending, tx_charged;

    /* Raised by net_finish() at the end of a processing pass. */
    bool rx_used_added, tx_used_added, fail_pending;
    char fail_why[160];

    struct virtio_net_stats stats;
    uint64_t drop_log_ns;
};

/* Move frames until the direction has to wait (no buffers, no frames, EAGAIN, throttled) or its
 * budget is spent. Called with net->lock held, on the event loop. */
void net_rx_process(struct net *net);
void net_tx_process(struct net *net);
/* Re-registers the tap for what the device waits for, raises the device failure and used-ring
 * interrupts the pass asked for, and drops net->lock. */
void net_finish(struct net *net);
/* Registers the tap for the events the device wants now (net->lock held). */
void net_update_watch(struct net *net);
/* The tap's event-loop callback (virtio_net.c); opaque is the struct net. */
void net_tap_ready(void *opaque, uint32_t events);

/* ---- virtio-net test hooks (virtio_net.c) ------------------------------------------------------
 */
/* Builds the device around an already-open descriptor that behaves like a tap with a 12-byte
 * vnet header (a socketpair in unit tests): each read returns one header + frame, each write
 * takes one. `tun_offloads` is what the fake tap claims to accept (TUN_F_*); offload ioctls are
 * skipped. Takes ownership of fd (also on failure). */
struct virtio_dev *virtio_net_create_fd(const struct virtio_env *env,
                                        const struct virtio_net_config *cfg, int fd,
                                        unsigned tun_offloads, char *err, size_t errlen);
/* Runs the tap's event handler as the event loop would for `events` (EPOLLIN, EPOLLOUT). */
void virtio_net_tap_event(struct virtio_dev *dev, uint32_t events);
/* Runs the rate limiters' timer handlers as if they had expired. */
void virtio_net_timer_event(struct virtio_dev *dev);
/* The events the device currently waits for on the tap (0 when idle or reset). */
uint32_t virtio_net_tap_events(struct virtio_dev *dev);
void virtio_net_get_stats(struct virtio_dev *dev, struct virtio_net_stats *out);

#endif
