/* vsock.h: internal contract between the vsock device's three files (docs/vsock.md):
 * virtio_vsock.c (queues, the event-loop entry points), vsock_conn.c (connection table, state
 * machine, credit accounting) and vsock_host.c (the host's Unix sockets).
 *
 * Threads: everything below runs on the event-loop thread with vs->lock held, except reset
 * (vCPU thread, also under vs->lock). The lock is never held while calling into the transport
 * (virtio_dev_fail, virtio_dev_notify_used): vsock_leave() does that after unlocking. */
#ifndef KILN_VSOCK_H
#define KILN_VSOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/lib.h"
#include "virtio.h"

/* The wire format (virtio 1.2 section 5.10.6; <linux/virtio_vsock.h> cannot be included beside
 * virtio.h, whose struct virtio_vsock_config is kiln's configuration). Little-endian (x86). */
struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port;
    uint32_t len; /* payload bytes after the header (RW only) */
    uint16_t type, op;
    uint32_t flags;     /* SHUTDOWN: VSOCK_SHUTDOWN_* */
    uint32_t buf_alloc; /* the sender's receive buffer for this connection */
    uint32_t fwd_cnt;   /* bytes the sender has consumed from it */
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

enum { VSOCK_TYPE_STREAM = 1 };
enum {
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};
#define VSOCK_SHUTDOWN_RCV          1u /* the sender will receive no more */
#define VSOCK_SHUTDOWN_SEND         2u /* the sender will send no more */
#define VSOCK_EVENT_TRANSPORT_RESET 0u

#define VSOCK_HOST_CID           2
#define VSOCK_HDR_SIZE           ((uint32_t)sizeof(struct vsock_hdr)) /* 44 */
#define VSOCK_QUEUE_RX           0
#define VSOCK_QUEUE_TX           1
#define VSOCK_QUEUE_EVT          2
#define VSOCK_CONN_BUF           ((uint32_t)(256 * KiB)) /* buf_alloc we advertise = bound per connection */
#define VSOCK_MAX_CONNS          256 /* x VSOCK_CONN_BUF: the global bound on buffered bytes, 64 MiB */
#define VSOCK_MAX_PKT            ((uint32_t)(64 * KiB)) /* largest RW payload either way */
#define VSOCK_CREDIT_THRESHOLD   (VSOCK_CONN_BUF / 4)   /* send CREDIT_UPDATE after this much */
#define VSOCK_RX_BATCH           16                     /* rx chains one readv() may fill */
#define VSOCK_HASH_SIZE          512  /* buckets of the connection table (a power of two) */
#define VSOCK_RST_RING           256  /* RSTs owed for packets that have no connection */
#define VSOCK_PORT_MIN           1024 /* first local port for host-initiated connections */
#define VSOCK_LINE_MAX           32   /* "CONNECT 4294967295\n" fits */
#define VSOCK_CONNECT_TIMEOUT_NS (2ULL * 1000 * 1000 * 1000)
/* Longest a tx completion waits for an rx interrupt to ride on (docs/vsock.md, "Interrupts"). */
#define VSOCK_TX_IRQ_DELAY_NS (1000 * 1000)

enum vsock_state {
    VSOCK_LINE,        /* host client accepted; its "CONNECT <port>\n" not read yet */
    VSOCK_REQUESTED,   /* REQUEST owed or sent to the guest; waiting for RESPONSE or RST */
    VSOCK_ESTABLISHED, /* data flows (subject to the shutdown bits) */
    VSOCK_CLOSED,      /* off the table, fd closed; freed at the end of the batch */
};

/* Control packets a connection owes the guest, sent by the rx pump. */
enum {
    VSOCK_PEND_REQUEST = 1u << 0,
    VSOCK_PEND_RESPONSE = 1u << 1,
    VSOCK_PEND_CREDIT_UPDATE = 1u << 2,
    VSOCK_PEND_CREDIT_REQUEST = 1u << 3,
    VSOCK_PEND_SHUTDOWN = 1u << 4, /* flags in shut_send */
};

struct vsock_dev;

struct vsock_conn {
    struct vsock_dev *vs;
    struct vsock_conn *hnext;         /* hash chain */
    struct vsock_conn *qnext, *qprev; /* rx queue (owes the guest a packet) */
    bool queued;                      /* on the rx queue */
    bool hashed;                      /* in the table (has both ports) */
    enum vsock_state state;
    int fd;
    uint32_t host_port, guest_port;
    uint32_t pending;        /* VSOCK_PEND_* */
    uint32_t shut_send;      /* VSOCK_SHUTDOWN_* for the pending SHUTDOWN */
    bool readable, writable; /* edge-triggered readiness; cleared at EAGAIN or a short op */
    bool host_eof;           /* the host peer will send no more (read returned 0) */
    bool host_hup;     /* EPOLLRDHUP/HUP seen: no later edge will announce the EOF behind data */
    bool host_wr_shut; /* shutdown(SHUT_WR) done after the guest's SHUTDOWN(SEND) */
    bool credit_requested; /* CREDIT_REQUEST sent; cleared by the guest's next packet */
    uint32_t guest_shut;   /* VSOCK_SHUTDOWN_* bits the guest sent */
    /* guest -> host: credit we give */
    uint32_t rx_cnt;       /* payload bytes received from the guest */
    uint32_t fwd_cnt;      /* of those, bytes the host socket took */
    uint32_t last_fwd_cnt; /* fwd_cnt last told to the guest */
    /* host -> guest: credit the guest gives */
    uint32_t peer_buf_alloc, peer_fwd_cnt;
    uint32_t tx_cnt; /* payload bytes sent to the guest */
    /* guest -> host bytes the host socket did not take yet (ring of VSOCK_CONN_BUF, lazy) */
    uint8_t *buf;
    uint32_t buf_head, buf_len;
    uint64_t deadline_ns; /* VSOCK_REQUESTED after the REQUEST went out: give up then */
};

struct vsock_rst {
    uint32_t host_port, guest_port;
};

struct vsock_dev {
    struct virtio_dev *dev;
    struct evloop *loop;
    pthread_mutex_t lock;
    uint64_t guest_cid;
    char uds_path[108];
    int listen_fd, epfd, timer_fd;
    bool timer_armed;
    char listen_tag, timer_tag, txirq_tag; /* epoll data.ptr markers */
    /* Tx completions whose interrupt is held back for the next rx interrupt, or until the
     * one-shot txirq_fd fires (VSOCK_TX_IRQ_DELAY_NS). */
    int txirq_fd;
    bool tx_irq_owed, tx_irq_due, txirq_armed;

    struct vsock_conn *table[VSOCK_HASH_SIZE];
    unsigned nconns; /* all connections including VSOCK_LINE ones */
    struct vsock_conn *rxq_head, *rxq_tail;
    struct vsock_conn *dead; /* closed during this batch (linked by qnext) */
    struct vsock_rst rst[VSOCK_RST_RING];
    unsigned rst_head, rst_count;
    uint32_t next_port;

    struct virtq_chain *stash; /* popped rx chains not used yet (VSOCK_RX_BATCH) */
    unsigned nstash;
    struct virtq_chain *txc; /* scratch for tx chains */

    bool rx_used, tx_used, evt_used; /* chains pushed since the last interrupt */
    char fail_why[192];              /* set: fail the device after unlocking */
    /* rate-limited log (anything a guest can repeat) */
    uint64_t log_window_ns;
    unsigned log_count, log_dropped;
    /* counters, for tests and docs */
    uint64_t stat_rx_pkts, stat_tx_pkts, stat_rx_reads;
    uint64_t stat_tx_ops[8]; /* guest packets by op (0: unknown) */
};

/* ---- virtio_vsock.c ---- */
/* Logs "vsock: ..." at most 20 times per 5 s per device (guest-triggerable). */
void vsock_log(struct vsock_dev *vs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a protocol violation; the device fails once vs->lock is released. */
void vsock_fail(struct vsock_dev *vs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Processes ready host sockets and owed packets once, without blocking (the event loop's
 * callback; tests call it directly). */
void vsock_poll(struct virtio_dev *dev);
/* Queues VSOCK_EVENT_TRANSPORT_RESET on the event queue (for snapshot restore; the
 * guest then drops all its connections). Returns 0, or -EAGAIN without an event buffer. */
int vsock_send_transport_reset(struct virtio_dev *dev);
/* True while queue processing may run: the driver is up and no failure is pending. */
bool vsock_running(struct vsock_dev *vs);

/* ---- vsock_rx.c ---- */
/* Runs the rx pump: owed RSTs, control packets and host data into the guest's rx buffers. */
void vsock_rx_pump(struct vsock_dev *vs);

/* ---- vsock_conn.c ---- */
struct vsock_conn *vsock_conn_new(struct vsock_dev *vs, int fd);
struct vsock_conn *vsock_conn_find(struct vsock_dev *vs, uint32_t host_port, uint32_t guest_port);
/* Puts c in the table under its ports (must be free). */
void vsock_conn_hash(struct vsock_conn *c);
/* Closes the host socket, drops c from the table and the rx queue; freed by vsock_conn_reap. */
void vsock_conn_close(struct vsock_conn *c);
/* Closes c and owes the guest an RST for it (if it has guest-side ports). */
void vsock_conn_reset(struct vsock_conn *c);
void vsock_conn_reap(struct vsock_dev *vs);
void vsock_conn_close_all(struct vsock_dev *vs);
/* Owes the guest an RST for (host_port, guest_port) with no connection behind it. */
void vsock_owe_rst(struct vsock_dev *vs, uint32_t host_port, uint32_t guest_port);
/* Puts c on the rx queue if it owes the guest anything it can send now. */
void vsock_conn_kick(struct vsock_conn *c);
/* Credit the guest gives us for host -> guest data. */
uint32_t vsock_conn_peer_credit(const struct vsock_conn *c);
/* True if c may send host data to the guest now. */
bool vsock_conn_can_send(const struct vsock_conn *c);
/* A packet from the guest's tx queue; payload is hdr->len bytes at `off` into iov. */
void vsock_conn_packet(struct vsock_dev *vs, const struct vsock_hdr *hdr, const struct iovec *iov,
                       unsigned niov, size_t off);
/* Epoll readiness of c's host socket. */
void vsock_conn_event(struct vsock_conn *c, uint32_t events);
/* Fills a header for a packet of c (or for bare ports when c is NULL) with our credit. */
void vsock_hdr_fill(struct vsock_dev *vs, struct vsock_conn *c, struct vsock_hdr *h, uint16_t op,
                    uint32_t host_port, uint32_t guest_port);

/* ---- vsock_host.c ---- */
/* Listens on cfg's uds_path (a stale socket file is replaced). Returns 0 or -errno (err set). */
int vsock_host_listen(struct vsock_dev *vs, char *err, size_t errlen);
void vsock_host_accept(struct vsock_dev *vs);
/* VSOCK_LINE: reads the client's "CONNECT <port>\n" if it is complete. */
void vsock_host_read_line(struct vsock_conn *c);
/* Parses "CONNECT <port>\n" (also "\r\n"); returns 0 or -EINVAL. */
int vsock_parse_connect(const char *line, size_t len, uint32_t *port);
/* The guest sent REQUEST to host port hdr->dst_port: connect to "<uds_path>_<port>". */
void vsock_host_connect(struct vsock_dev *vs, const struct vsock_hdr *hdr);
/* A REQUEST went out: make sure the timeout timer runs. */
void vsock_host_arm_timer(struct vsock_dev *vs);
/* The timer fired: gives up on connections the guest did not answer in time. */
void vsock_host_timer(struct vsock_dev *vs);

#endif
