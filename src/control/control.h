/* control.h: the control plane's internal API: the codec of include/kiln/control.h, the address
 * allocator for registered memory, the socket server and the VM backend behind it. The protocol
 * is specified in docs/control-protocol.md. */
#ifndef KILN_CONTROL_INTERNAL_H
#define KILN_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kiln/control.h"
#include "vmm/vmm.h"

struct virtio_dev;

/* ---- codec (codec.c): pure, so the fuzzer drives it ---------------------------------------- */
/* True for the request types that carry a descriptor (RegisterMemory, RegisterIoevent,
 * RegisterIrqfd). */
bool ctl_request_needs_fd(uint32_t type);
/* Decodes one received datagram of `len` bytes that came with `nfds` descriptors (the server
 * closes them; the decoder never touches fds). Returns 0, or the negative errno the server
 * answers with: -ENOTCONN for len 0 (the peer closed: no answer), -EMSGSIZE for a size other than
 * 24, -EOPNOTSUPP for an unknown type, -EINVAL for non-zero reserved fields or a descriptor on a
 * request that takes none or more than one, -EBADF for a request that needs one and has none. */
int ctl_decode_request(const void *buf, size_t len, unsigned nfds, struct kiln_ctl_request *out);
void ctl_encode_request(const struct kiln_ctl_request *req, uint8_t out[KILN_CTL_MSG_SIZE]);
/* As ctl_decode_request for responses: -ENOTCONN, -EMSGSIZE, -EOPNOTSUPP (unknown type), -EINVAL
 * (an Err without an errno, or a descriptor where the type has none), -EBADF (Metrics without
 * its memfd). */
int ctl_decode_response(const void *buf, size_t len, unsigned nfds, struct kiln_ctl_response *out);
void ctl_encode_response(const struct kiln_ctl_response *resp, uint8_t out[KILN_CTL_MSG_SIZE]);
const char *ctl_request_name(uint32_t type); /* "exit", ... or "unknown" */
const char *ctl_state_name(uint32_t state);  /* "running", "paused", "exiting" or "unknown" */

/* Sends one message with an optional descriptor (fd < 0: none). Returns 0 or -errno. */
int ctl_send(int sock, const uint8_t msg[KILN_CTL_MSG_SIZE], int fd, int flags);
/* Receives one datagram into buf (at least KILN_CTL_MSG_SIZE + 1 bytes so an oversized message is
 * seen as such): returns its real length (0 when the peer closed) or -errno. At most one
 * descriptor is returned in *fd (else -1); extra ones are closed and counted in *nfds. */
ssize_t ctl_recv(int sock, uint8_t *buf, size_t buflen, int *fd, unsigned *nfds, int flags);

/* ---- address allocator (memslots.c) -------------------------------------------------------
 * First fit over [base, base+size) in units of `align` bytes, keeping free ranges sorted and
 * merging neighbours on free, so a freed range is reused whole. */
#define CTL_ALLOC_MAX_RANGES 64

struct ctl_alloc {
    uint64_t base, size, align;
    unsigned nfree;
    struct {
        uint64_t start, len;
    } free[CTL_ALLOC_MAX_RANGES + 1];
};

/* align must be a power of two dividing base and size. */
void ctl_alloc_init(struct ctl_alloc *a, uint64_t base, uint64_t size, uint64_t align);
/* Takes len bytes (rounded up to align) into *addr. Returns 0, -EINVAL for len 0 or overflow,
 * -ENOSPC when no free range is large enough. */
int ctl_alloc_take(struct ctl_alloc *a, uint64_t len, uint64_t *addr);
/* Gives back a range ctl_alloc_take returned (with the same len). Returns 0, or -EINVAL for a
 * range outside the window or overlapping free space (a caller bug), -ENOSPC if the free list is
 * full (cannot happen with at most CTL_ALLOC_MAX_RANGES allocations). */
int ctl_alloc_give(struct ctl_alloc *a, uint64_t addr, uint64_t len);
uint64_t ctl_alloc_free_bytes(const struct ctl_alloc *a);

/* ---- the server (server.c) ------------------------------------------------------------------
 * Listens on a SOCK_SEQPACKET Unix socket from the event loop. Each connection is answered one
 * request at a time, in order, on the loop thread. Descriptors a handler does not keep are closed
 * by the server. */
struct ctl_ops {
    /* Each returns 0 or -errno (sent back as Err). A handler that keeps *fd sets it to -1. */
    int (*exit)(void *opaque);
    int (*register_memory)(void *opaque, int *fd, uint64_t size, uint64_t *pfn, uint32_t *slot);
    int (*unregister_memory)(void *opaque, uint32_t slot);
    int (*balloon_adjust)(void *opaque, int32_t pages, uint64_t *target);
    int (*pause)(void *opaque);
    int (*resume)(void *opaque);
    int (*get_state)(void *opaque, uint32_t *state);
    int (*register_ioevent)(void *opaque, int *fd, uint64_t addr, uint32_t len, uint32_t datamatch);
    int (*register_irqfd)(void *opaque, int *fd, uint32_t gsi);
    /* Returns a memfd (owned by the server afterwards) holding len bytes of JSON. */
    int (*get_metrics)(void *opaque, int *memfd, uint64_t *len);
};

/* Decides whether the peer on `sock` may talk to this VM: root and `owner` only. Tests replace
 * it to fake another uid. Returns 0 or -EACCES (-errno if the credentials cannot be read). */
typedef int (*ctl_peer_check_fn)(int sock, uid_t owner);
int ctl_peer_check(int sock, uid_t owner);

#define CTL_MAX_CLIENTS 8

struct ctl_server_config {
    struct evloop *loop;
    const struct ctl_ops *ops;
    void *opaque;
    uid_t owner;                  /* the VM owner (the VMM's effective uid) */
    ctl_peer_check_fn peer_check; /* NULL: ctl_peer_check */
};

struct ctl_server;
/* Binds and listens on `path` (replacing a stale socket file). Returns NULL with errno set and a
 * message in err. path NULL: no listening socket (tests add connections with ctl_server_adopt). */
struct ctl_server *ctl_server_create(const char *path, const struct ctl_server_config *cfg,
                                     char *err, size_t errlen);
/* Runs the peer check on a connected socket and serves it (the server owns it afterwards, even
 * on failure). Returns 0, -EACCES (refused: the peer got one Err EACCES and was closed), or
 * -EMFILE when CTL_MAX_CLIENTS are connected. Loop thread, or before the loop runs. */
int ctl_server_adopt(struct ctl_server *srv, int sock);
/* Stops listening and accepting (the socket file is unlinked); connections stay. */
void ctl_server_close_listener(struct ctl_server *srv);
/* Number of connections being served. */
unsigned ctl_server_clients(const struct ctl_server *srv);
/* Closes everything and frees. The loop must not be running. NULL is fine. */
void ctl_server_destroy(struct ctl_server *srv);

/* ---- the VM backend (vmctl.c) ---------------------------------------------------------------
 * The ctl_ops of a real VM. Registered memory lives in a window above guest RAM:
 * CTL_MEM_WINDOW_SIZE bytes from ALIGN_UP(4 GiB + high RAM, CTL_MEM_ALIGN). */
#define CTL_MEM_ALIGN       (2ULL << 20)  /* 2 MiB: lets the host back a region with huge pages */
#define CTL_MEM_WINDOW_SIZE (64ULL << 30) /* the device-memory window */
#define CTL_MEM_MAX_SLOTS   32            /* registered regions at a time */
#define CTL_MEM_MAX_TOTAL   (32ULL << 30) /* registered bytes at a time */
#define CTL_MAX_EVENTFDS    32            /* ioeventfds + irqfds kept for the VM's life */

struct vmctl;
/* balloon may be NULL (BalloonAdjust then answers ENODEV). Returns NULL on ENOMEM. */
struct vmctl *vmctl_create(struct vm *vm, struct virtio_dev *balloon);
/* Removes every registered region and closes kept eventfds. The vCPUs must be stopped. */
void vmctl_destroy(struct vmctl *vc);
extern const struct ctl_ops vmctl_ops;
/* The GPA where the device-memory window starts for this VM. */
uint64_t vmctl_window_base(const struct vm *vm);
/* Writes the metrics JSON document into buf (snprintf semantics: returns the length needed). */
int vmctl_metrics_json(struct vmctl *vc, char *buf, size_t len);

#endif
