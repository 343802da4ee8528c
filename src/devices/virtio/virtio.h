/* virtio.h: virtio 1.2 over MMIO: the split-virtqueue walker, the transport, the device contract
 * and the device constructors. The protocol and kiln's choices are documented in docs/virtio.md.
 *
 * Layering (as kvmtool): the virtqueue code knows guest memory and the ring layout only; the MMIO
 * transport knows registers, feature negotiation, the status machine, ioeventfd and irqfd, and no
 * device semantics; a device knows its own queues and config space. Transport and device meet in
 * struct virtio_dev_ops. Only the machine builder (src/machine) wires devices to a VM.
 *
 * Threads: register accesses arrive on vCPU threads (the transport takes dev->lock); queue
 * notifications arrive through an ioeventfd on the event-loop thread, which calls ops->notify.
 * A device may hand work to its own worker threads; it then owns the locking of its queues.
 * Nothing here ever blocks a vCPU thread on I/O. */
#ifndef KILN_VIRTIO_H
#define KILN_VIRTIO_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/vmm.h"

/* ---- split virtqueue (virtq.c) ---------------------------------------------------------------
 * Pure code over struct guest_mem: every ring, descriptor and buffer address goes through
 * guest_mem_ptr(), so unit tests and the fuzzer drive it with a fake arena. What is checked, the
 * memory-ordering rules and EVENT_IDX are described in docs/virtqueue.md. */
#define VIRTQ_MAX_SIZE 256 /* the largest queue any kiln device offers (a power of two) */

struct vring_desc;
struct vring_avail;
struct vring_used;

struct virtq {
    /* Set by the transport from the driver's registers. */
    uint16_t size; /* QueueNum: a power of two, 1..the device's maximum */
    bool ready;    /* QueueReady, accepted only after virtq_validate() */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    bool event_idx; /* VIRTIO_F_RING_EVENT_IDX negotiated */
    bool indirect;  /* VIRTIO_F_INDIRECT_DESC negotiated */
    const struct guest_mem *mem;

    /* Host pointers to the three rings, filled by a successful virtq_validate() (NULL before:
     * virtq_pop() then refuses) so the hot path does no address look-ups. Guest RAM stays mapped
     * for the VM's life, so they stay safe to use; they follow the gpa fields only through
     * virtq_validate(), which the transport calls whenever the driver makes a queue ready. */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;

    /* Device-side state (cleared by virtq_reset()). */
    uint16_t last_avail;     /* free-running index of the next available entry to take */
    uint16_t used_idx;       /* free-running index of the next used entry to fill */
    uint16_t signalled_used; /* used_idx at the last virtq_should_interrupt() (EVENT_IDX) */
    bool signalled_valid;
    bool no_notify; /* virtq_set_notify(q, false) is in force */
};

/* One descriptor chain, resolved to host memory. Device-readable buffers (driver -> device) come
 * first in a chain, device-writable ones after; the walker refuses any other order, so a device
 * only ever writes through wr[] and can never write into a buffer the driver marked readable.
 * Zero-length descriptors are skipped (no empty iovecs); rd_len + wr_len never exceeds
 * UINT32_MAX. */
struct virtq_chain {
    uint16_t head; /* descriptor index to hand back with virtq_push() */
    unsigned nrd, nwr;
    uint64_t rd_len, wr_len; /* total bytes in rd[] and wr[] */
    struct iovec rd[VIRTQ_MAX_SIZE];
    struct iovec wr[VIRTQ_MAX_SIZE];
};

/* Checks a queue the driver wants to enable: size a power of two within max_size (at most
 * VIRTQ_MAX_SIZE), the three rings (event-index fields included) inside guest RAM with the
 * alignment virtio 1.2 section 2.7 requires. On success fills the host ring pointers and returns
 * 0; else -EINVAL with the reason in why (the pointers are then NULL). */
int virtq_validate(struct virtq *q, uint16_t max_size, char *why, size_t whylen);
/* Forgets all device-side state (the driver reset the device or the queue): indices, interrupt
 * and notification state. The ring pointers stay until the next virtq_validate(). */
void virtq_reset(struct virtq *q);
/* Takes the next available chain. Returns 1 with *chain filled, 0 when the ring is empty, or
 * -EINVAL when the driver broke the rules: a ring index that jumped more than the queue size, a
 * head or next index out of range, an address or length outside guest RAM or overflowing, a
 * loop, a chain longer than the queue, a readable buffer after a writable one, a nested or
 * malformed indirect table. why then says which; the caller fails the device. Also -EINVAL on a
 * queue virtq_validate() has not accepted. Allocates nothing. */
int virtq_pop(struct virtq *q, struct virtq_chain *chain, char *why, size_t whylen);
/* True if the driver has made chains available that virtq_pop() has not taken. */
bool virtq_has_work(const struct virtq *q);
/* Returns a chain to the driver: `written` bytes were written into its writable buffers. The
 * used index is published with release semantics, so the driver sees the element first. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);
/* True if the driver wants an interrupt for the chains pushed since the previous call (honours
 * VRING_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). Call once per batch of pushes. */
bool virtq_should_interrupt(struct virtq *q);
/* Writes a one-line account of the queue's indices for diagnostics ("avail=12 taken=12 used=11
 * ..."): the driver's side read racily, which a snapshot for a log line tolerates. */
void virtq_describe(const struct virtq *q, char *buf, size_t len);
/* Asks the driver to notify (kick) the device for new chains, or not to bother while the device
 * is draining the queue anyway (used->flags, or avail_event with EVENT_IDX). After enabling,
 * the caller must check virtq_has_work() again: the driver may have added work meanwhile. */
void virtq_set_notify(struct virtq *q, bool enable);

/* Scatter-gather copies between a chain's buffers and a flat buffer, starting `offset` bytes into
 * the iovec list. Return the bytes copied (short when the list ends first). */
size_t iov_copy_from(const struct iovec *iov, unsigned niov, size_t offset, void *buf, size_t len);
size_t iov_copy_to(const struct iovec *iov, unsigned niov, size_t offset, const void *buf,
                   size_t len);

/* ---- the device contract ----------------------------------------------------------------------
 */
#define VIRTIO_MAX_QUEUES 4

struct virtio_dev;

struct virtio_dev_ops {
    /* Device-specific config space (offset is from the start of it, register 0x100). Called on
     * vCPU threads with dev->lock held; reads fill data[0..len). Out-of-range reads must fill
     * zeros; writes to read-only fields are ignored. NULL: no config space (reads as zeros). */
    void (*config_read)(struct virtio_dev *dev, uint32_t offset, uint8_t *data, uint32_t len);
    void (*config_write)(struct virtio_dev *dev, uint32_t offset, const uint8_t *data,
                         uint32_t len);
    /* The driver set DRIVER_OK: features (dev->acked) are final and the queues it enabled are
     * valid. Called with dev->lock held, on a vCPU thread: hand work to the event loop, do not
     * block. Return 0, or -errno to put the device into DEVICE_NEEDS_RESET. */
    int (*activate)(struct virtio_dev *dev);
    /* The driver wrote 0 to Status: stop touching the queues, drop per-session state. Called
     * with dev->lock held, after Status already reads 0 (so virtio_dev_running() is false) and
     * before the transport resets the queues: it must wait until no thread of the device is
     * still inside queue processing. The usual pattern is a device lock taken both here and
     * around every processing pass, with virtio_dev_running() checked under it. May be NULL. */
    void (*reset)(struct virtio_dev *dev);
    /* The driver notified queue `index` (event-loop thread, dev->lock NOT held). Not called
     * unless virtio_dev_running(). */
    void (*notify)(struct virtio_dev *dev, unsigned index);
    /* Frees the device's private state (dev itself is freed by virtio_dev_destroy()). */
    void (*destroy)(struct virtio_dev *dev);
};

struct virtio_dev {
    /* Filled by the device constructor. */
    const struct virtio_dev_ops *ops;
    const char *name;   /* "block", "vsock", ... for messages */
    uint32_t device_id; /* VIRTIO_ID_* */
    uint64_t features;  /* offered; the transport adds VIRTIO_F_VERSION_1 */
    unsigned nqueues;   /* 1..VIRTIO_MAX_QUEUES */
    uint16_t queue_max[VIRTIO_MAX_QUEUES];
    void *priv;

    /* Owned by the transport. While the device is running (DRIVER_OK), the transport changes
     * dev->queues[] only in a reset, after ops->reset returned; before DRIVER_OK the device must
     * not touch them. */
    pthread_mutex_t lock; /* register state vs. vCPU threads */
    uint64_t acked;       /* features the driver accepted (final once FEATURES_OK is set) */
    _Atomic uint32_t status;
    _Atomic uint32_t isr; /* InterruptStatus: bit 0 used ring, bit 1 config change */
    _Atomic uint32_t config_generation;
    struct virtq queues[VIRTIO_MAX_QUEUES];
    _Atomic bool failed; /* DEVICE_NEEDS_RESET is set: no more queue processing until reset */
    const struct guest_mem *mem;
    struct evloop *loop;
    const struct dev_host *host;
    uint64_t base; /* MMIO window, X86_VIRTIO_MMIO_SIZE bytes */
    uint32_t gsi;
    int irq_fd;                       /* irqfd eventfd; -1 before attach or without irqfd */
    int notify_fd[VIRTIO_MAX_QUEUES]; /* notification eventfd per queue, -1 before attach */
    unsigned index;                   /* virtio-mmio slot number, for messages */
    /* Register state (under lock). */
    uint32_t device_features_sel, driver_features_sel, queue_sel;
    bool notify_by_write;       /* no ioeventfd: QueueNotify writes signal notify_fd[] themselves */
    bool watching;              /* notify_fd[] are watched by loop */
    _Atomic unsigned nfailures; /* sessions that failed, for rate-limiting the log */
    struct virtio_qctx {
        struct virtio_dev *dev;
        unsigned index;
    } qctx[VIRTIO_MAX_QUEUES]; /* event-loop callback contexts */
    /* Transport features withheld from the offer (set at attach: KILN_VIRTIO_NO_EVENT_IDX). */
    uint64_t withheld;
    /* Counters for benchmarks, logged at -v when the device is destroyed: notifications the
     * driver sent per queue (ioeventfd counts), event-loop wake-ups they caused, interrupts
     * raised, and used-buffer signals the driver's suppression made unnecessary. */
    _Atomic uint64_t stat_kicks[VIRTIO_MAX_QUEUES], stat_wakeups[VIRTIO_MAX_QUEUES];
    _Atomic uint64_t stat_irqs, stat_irqs_suppressed;
    bool stat_event_idx; /* EVENT_IDX was negotiated in some session */
};

/* Features the transport offers for every device on top of dev->features (VERSION_1 is also
 * required from the driver). The environment variable KILN_VIRTIO_NO_EVENT_IDX=1, read once at
 * attach, withholds EVENT_IDX: a benchmarking knob (docs/virtio.md), not an option. */
#define VIRTIO_TRANSPORT_FEATURES                                                                  \
    ((1ULL << 32) /* VIRTIO_F_VERSION_1 */ | (1ULL << 29) /* VIRTIO_F_RING_EVENT_IDX */ |          \
     (1ULL << 28) /* VIRTIO_F_INDIRECT_DESC */)
/* The vendor id kiln's devices report ("KILN" little-endian). */
#define VIRTIO_KILN_VENDOR_ID 0x4e4c494bU

/* What a device needs from the VM, given to constructors and to the transport. */
struct virtio_env {
    struct bus *bus;
    struct evloop *loop;
    const struct guest_mem *mem;
    const struct dev_host *host;
};

/* For device constructors: allocates a zeroed device with its lock initialised and fds at -1.
 * Returns NULL on ENOMEM. */
struct virtio_dev *virtio_dev_alloc(void);
/* Calls ops->destroy, closes the transport's fds and frees. NULL is fine. */
void virtio_dev_destroy(struct virtio_dev *dev);
/* Signals "used buffers" for queue q if virtq_should_interrupt() says the driver wants it. Any
 * thread. */
void virtio_dev_notify_used(struct virtio_dev *dev, unsigned q);
/* The same for every queue whose bit is set in `mask`, with at most one interrupt for all of
 * them (the driver's handler looks at every queue). Any thread. */
void virtio_dev_notify_used_mask(struct virtio_dev *dev, unsigned mask);
/* Signals a configuration change (the device changed its config space). Any thread. */
void virtio_dev_config_changed(struct virtio_dev *dev);
/* The guest broke the protocol: logs the reason (once per device session, rate-limited), sets
 * DEVICE_NEEDS_RESET, raises a config interrupt, and stops queue processing until the driver
 * resets the device. The VMM and other devices carry on. Any thread, dev->lock held or not. */
void virtio_dev_fail(struct virtio_dev *dev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Logs (at warning level) every ready queue's indices, the pending interrupt status and the
 * counters: called when a VM is stopped for hanging, to tell a request kiln never completed
 * from a completion the guest never saw. Any thread. */
void virtio_dev_log_state(const struct virtio_dev *dev);
/* True once DRIVER_OK is set and the device has not failed: queue processing may run. */
bool virtio_dev_running(const struct virtio_dev *dev);

/* ---- MMIO transport (virtio_mmio.c) ----------------------------------------------------------
 * virtio-mmio version 2 register layout at `base` (X86_VIRTIO_MMIO_SIZE bytes), interrupts on
 * `gsi` through an irqfd, QueueNotify writes through one ioeventfd per queue (datamatch = the
 * queue index) watched by the event loop. Returns 0 or -errno (logged). */
int virtio_mmio_attach(struct virtio_dev *dev, const struct virtio_env *env, unsigned index,
                       uint64_t base, uint32_t gsi);
/* The MMIO register handler (exported for unit tests; registered on the bus by attach). */
void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* ---- rate limiting (ratelimit.c) -------------------------------------------------------------
 * Two token buckets, bytes and operations, as in Firecracker. A zero rate means unlimited. */
struct rate_limit_config {
    uint64_t bytes_per_s; /* sustained bandwidth; 0 = unlimited */
    uint64_t bytes_burst; /* bucket size; 0 = one second's worth */
    uint64_t ops_per_s;   /* sustained operations (requests, packets); 0 = unlimited */
    uint64_t ops_burst;
};

struct token_bucket {
    uint64_t rate;    /* tokens per second, 0 = unlimited */
    uint64_t size;    /* capacity */
    uint64_t tokens;  /* available now */
    uint64_t last_ns; /* last refill */
};

struct rate_limiter {
    struct token_bucket bytes, ops;
};

void ratelimit_init(struct rate_limiter *rl, const struct rate_limit_config *cfg, uint64_t now_ns);
/* Takes `bytes` and one operation if both buckets hold enough (a request larger than a bucket is
 * allowed once the bucket is full, so it cannot stall forever). Returns true if taken; false
 * means throttled: retry after ratelimit_wait_ns(). */
bool ratelimit_take(struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns);
/* Nanoseconds until a request of `bytes` could be taken (0 = now). */
uint64_t ratelimit_wait_ns(const struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns);
/* True if the configuration limits anything. */
bool ratelimit_enabled(const struct rate_limit_config *cfg);

/* ---- devices -----------------------------------------------------------------------------------
 * Each constructor checks its configuration and opens its backend, returning NULL with a message
 * naming the bad value in err (a user mistake), or the device ready for virtio_mmio_attach(). */

/* entropy (virtio_rng.c): fills the guest's buffers from getrandom(). */
struct virtio_dev *virtio_rng_create(const struct virtio_env *env, char *err, size_t errlen);

/* block (virtio_blk.c): a raw image file; I/O off the event loop (docs/virtio.md says how). */
struct virtio_blk_config {
    const char *path;
    bool read_only;
    struct rate_limit_config limit;
};
struct virtio_dev *virtio_blk_create(const struct virtio_env *env,
                                     const struct virtio_blk_config *cfg, char *err, size_t errlen);

/* vsock (virtio_vsock*.c): the hybrid model of shared/DESIGN.md and docs/vsock.md. The VMM
 * listens on uds_path; a host client connects and writes "CONNECT <port>\n"; a guest connecting
 * to host port P reaches the Unix socket "<uds_path>_P". */
#define VSOCK_DEFAULT_GUEST_CID 3
struct virtio_vsock_config {
    uint64_t guest_cid; /* >= 3 */
    const char *uds_path;
};
struct virtio_dev *virtio_vsock_create(const struct virtio_env *env,
                                       const struct virtio_vsock_config *cfg, char *err,
                                       size_t errlen);

/* balloon (virtio_balloon.c): inflated pages are returned to the host (guest_mem_discard). */
struct virtio_balloon_config {
    uint64_t target_pages; /* 4 KiB pages to take from the guest at start (0 = none) */
    bool deflate_on_oom;
    unsigned stats_period_s; /* 0: no statistics polling */
};
struct virtio_balloon_stats {
    uint64_t target_pages, actual_pages;
    uint64_t mem_free, mem_total,
        mem_available; /* bytes, from the guest's stats queue; 0 if none */
    uint64_t stats_ns; /* when the stats were last updated, 0 = never */
};
struct virtio_dev *virtio_balloon_create(const struct virtio_env *env,
                                         const struct virtio_balloon_config *cfg, char *err,
                                         size_t errlen);
/* Sets the balloon's target size in 4 KiB pages (thread-safe; raises a config change). Returns 0
 * or -EINVAL when pages exceed guest RAM. */
int virtio_balloon_set_target(struct virtio_dev *dev, uint64_t pages);
void virtio_balloon_get_stats(struct virtio_dev *dev, struct virtio_balloon_stats *out);

/* net (virtio_net.c): a tap device the host already set up (or may create, given the
 * permission), with checksum/TSO offloads when the tap supports them. */
struct virtio_net_config {
    const char *tap; /* interface name */
    uint8_t mac[6];
    bool mac_set; /* else a locally administered MAC derived from the tap name */
    struct rate_limit_config rx_limit, tx_limit;
};
struct virtio_dev *virtio_net_create(const struct virtio_env *env,
                                     const struct virtio_net_config *cfg, char *err, size_t errlen);

#endif
